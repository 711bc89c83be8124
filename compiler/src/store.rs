//! The artifact store (`[artifacts]`): what its objects hold and how they
//! move between it and the image cache. Only baked boot images go there —
//! secret-free by the image invariant — each as `images/<file>` (the plan's
//! content-hashed name) and, written after it, its receipt
//! `images/<file>.json` (sha256, size, upstream pins). Seed disks and
//! every other file of the deployable tree never do: [`ArtifactStore::push`]
//! takes [`BakedImage`]s only.
//!
//! A pull streams the object into the cache while hashing it (memory flat
//! whatever the size) and keeps it only if its sha256 and size are the
//! receipt's and the receipt's upstream pins agree with the lock file
//! (under `--locked`, are in it). `build` pulls what its cache lacks and,
//! with `--push`, pushes what the store lacks; `deploy` asks which images
//! the store has and presigns the URLs Proxmox downloads them from.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::bake::{self, BakedImage, Receipt};
use crate::lock::Lock;
use crate::model::ArtifactStore as StoreSettings;
use crate::net::fetch::Cache;
use crate::net::s3::{PresignedUrl, S3Error, S3};
use crate::secrets::{self, SecretError};

/// Where images are kept in the bucket (under the prefix).
const IMAGES: &str = "images";
/// A receipt is a few hundred bytes; anything much larger is not one.
const RECEIPT_LIMIT: u64 = 64 << 10;

/// The blueprint's bucket, opened with its credentials.
#[derive(Debug)]
pub struct ArtifactStore {
    s3: S3,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the artifact store's credentials: {0}")]
    Secret(#[from] SecretError),
    #[error(transparent)]
    S3(#[from] S3Error),
    #[error("artifact store: {key} does not match its receipt: expected sha256 {expected} ({bytes} bytes), got {actual}; the object was not used — push it again from a machine that bakes it")]
    Mismatch {
        key: String,
        expected: String,
        bytes: u64,
        actual: String,
    },
    #[error("artifact store: {key}: {problem}")]
    Receipt { key: String, problem: String },
    #[error("artifact store: {key} was made from {url} with sha256 {store}, but the lock file pins {lock}")]
    Pin {
        key: String,
        url: String,
        store: String,
        lock: String,
    },
    #[error("artifact store: {key} was made from {url}, which the lock file does not pin and --locked forbids recording; run once without --locked, review, and commit the lock")]
    NotLocked { key: String, url: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// What a push did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    pub uploaded: Vec<String>,
    pub present: Vec<String>,
}

impl ArtifactStore {
    /// The store `settings` names, its credentials read from their
    /// references (`base`: the blueprint's directory).
    pub fn open(settings: &StoreSettings, base: &Path) -> Result<Self, StoreError> {
        let access_key_id =
            secrets::read("artifacts.access_key_id", &settings.access_key_id, base)?;
        let secret_access_key = secrets::read(
            "artifacts.secret_access_key",
            &settings.secret_access_key,
            base,
        )?;
        let s3 = S3::new(settings, access_key_id, secret_access_key)
            .map_err(|e| StoreError::S3(e.into()))?;
        Ok(ArtifactStore { s3 })
    }

    fn image_key(&self, file: &str) -> String {
        self.s3.key(&format!("{IMAGES}/{file}"))
    }

    fn receipt_key(&self, file: &str) -> String {
        self.s3.key(&format!("{IMAGES}/{file}.json"))
    }

    /// The size of image `file` in the store, if it is there whole (its
    /// receipt written, which happens last).
    pub fn image_size(&self, file: &str) -> Result<Option<u64>, StoreError> {
        if self.s3.head(&self.receipt_key(file))?.is_none() {
            return Ok(None);
        }
        Ok(self.s3.head(&self.image_key(file))?)
    }

    /// A URL Proxmox may download image `file` from for `expires`.
    pub fn presign_image(&self, file: &str, expires: Duration) -> PresignedUrl {
        self.s3.presign_get(&self.image_key(file), expires)
    }

    /// Image `file` from the store into the cache, verified; `None` if
    /// the store does not have it.
    pub fn pull(
        &self,
        cache: &Cache,
        file: &str,
        lock: &mut Lock,
        locked: bool,
        progress: &dyn Fn(u64, Option<u64>),
    ) -> Result<Option<(PathBuf, Receipt)>, StoreError> {
        let receipt_key = self.receipt_key(file);
        let mut text = Vec::new();
        if self
            .s3
            .get(&receipt_key, &mut text, RECEIPT_LIMIT, &|_, _| {})?
            .is_none()
        {
            return Ok(None);
        }
        let receipt: Receipt = serde_json::from_slice(&text).map_err(|e| StoreError::Receipt {
            key: receipt_key.clone(),
            problem: format!("not a receipt: {e}"),
        })?;
        let key = self.image_key(file);
        agree_with_lock(&receipt, lock, locked, &key)?;

        let dir = bake::images_dir(cache);
        let io = |what: String| move |source| StoreError::Io { what, source };
        fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let temp = tempfile::Builder::new()
            .prefix(".pull-")
            .tempfile_in(&dir)
            .map_err(io(format!("creating a file in {}", dir.display())))?;
        let file_handle = temp
            .as_file()
            .try_clone()
            .map_err(io(format!("writing {}", temp.path().display())))?;
        let mut writer = Hashing {
            out: BufWriter::with_capacity(1 << 20, file_handle),
            hash: Sha256::new(),
        };
        tracing::info!(image = %file, bytes = receipt.bytes, "pulling from the artifact store");
        let got = self
            .s3
            .get(&key, &mut writer, receipt.bytes, progress)?
            .ok_or_else(|| StoreError::Receipt {
                key: receipt_key.clone(),
                problem: "a receipt without its image".into(),
            })?;
        let Hashing { mut out, hash } = writer;
        out.flush()
            .map_err(io(format!("writing {}", temp.path().display())))?;
        drop(out);
        let actual = hex::encode(hash.finalize());
        if got != receipt.bytes || actual != receipt.sha256 {
            return Err(StoreError::Mismatch {
                key,
                expected: receipt.sha256,
                bytes: receipt.bytes,
                actual: format!("sha256 {actual} ({got} bytes)"),
            });
        }
        let path = dir.join(file);
        temp.persist(&path)
            .map_err(|e| io(format!("writing {}", path.display()))(e.error))?;
        bake::record_receipt(&path, &receipt).map_err(|e| StoreError::Io {
            what: format!("writing the receipt of {}", path.display()),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(Some((path, receipt)))
    }

    /// Uploads each of `images` the store does not have whole: the image,
    /// then its receipt.
    pub fn push(&self, images: &[BakedImage]) -> Result<Pushed, StoreError> {
        let mut pushed = Pushed::default();
        for image in images {
            if self.image_size(&image.file)? == Some(image.receipt.bytes) {
                pushed.present.push(image.file.clone());
                continue;
            }
            tracing::info!(image = %image.file, bytes = image.receipt.bytes, "pushing to the artifact store");
            self.s3.put_file(
                &self.image_key(&image.file),
                &image.path,
                &image.receipt.sha256,
                image.receipt.bytes,
            )?;
            let receipt = serde_json::to_vec_pretty(&image.receipt).expect("plain data serialises");
            self.s3.put_bytes(&self.receipt_key(&image.file), receipt)?;
            pushed.uploaded.push(image.file.clone());
        }
        Ok(pushed)
    }
}

/// The receipt's upstream pins must be the lock's; new ones are recorded
/// (as a first fetch would), except under `--locked`.
fn agree_with_lock(
    receipt: &Receipt,
    lock: &mut Lock,
    locked: bool,
    key: &str,
) -> Result<(), StoreError> {
    for input in &receipt.inputs {
        match lock.pinned(&input.url) {
            Some(pinned) if pinned == input.sha256 => {}
            Some(pinned) => {
                return Err(StoreError::Pin {
                    key: key.to_string(),
                    url: input.url.clone(),
                    store: input.sha256.clone(),
                    lock: pinned.to_string(),
                })
            }
            None if locked => {
                return Err(StoreError::NotLocked {
                    key: key.to_string(),
                    url: input.url.clone(),
                })
            }
            None => lock.record("image input (artifact store)", &input.url, &input.sha256),
        }
    }
    Ok(())
}

/// Writes through, hashing what passes.
struct Hashing<W: Write> {
    out: W,
    hash: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
