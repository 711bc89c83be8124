//! Bake: the disk images a deployable build needs, made from the image plan
//! (`plan::images`), the rendered artifacts and pinned upstream inputs.
//! Runs after render, never inside it: fetching and image work are I/O.
//!
//! Every image is named by its inputs, and a finished image is kept in the
//! cache (`<cache>/images/<name>`) with a receipt of its sha256, size and
//! upstream pins, so an unchanged input is a cache hit and no image work.
//! Missing host programs are all named before any work starts.
//!
//! With an artifact store (`crate::store`), an image the cache lacks is
//! pulled from it, verified, before anything is baked: only what neither
//! has is baked, so a machine without mmdebstrap or root builds from the
//! store alone.

pub mod debian_image;
pub mod seed_disks;
pub mod talos_image;
pub mod teleport_release;

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::artifact::Artifact;
use crate::lock::Lock;
use crate::net::fetch::Cache;
use crate::plan::images::{BootImage, VmImages};
use crate::store::{ArtifactStore, StoreError};

/// Where upstream inputs are fetched from (overridable for tests and
/// mirrors; the lock file pins the bytes, whatever the host).
#[derive(Clone, Debug)]
pub struct Upstreams {
    pub factory: String,
    pub teleport_cdn: String,
    /// snapshot.debian.org's root.
    pub debian_snapshots: String,
}

/// Progress of one long step: `(what, done, total)` in bytes.
pub type Progress<'a> = &'a dyn Fn(&str, u64, Option<u64>);

/// What baking needs besides the plan.
pub struct Baker<'a> {
    pub cache: &'a Cache,
    pub lock: &'a mut Lock,
    /// `--locked`: fetch nothing the lock does not pin.
    pub locked: bool,
    pub upstreams: &'a Upstreams,
    pub progress: Progress<'a>,
    /// Where images the cache lacks are pulled from before any is baked.
    pub store: Option<&'a ArtifactStore>,
}

/// One baked image, ready to upload.
/// One entry of the tree's `images.json`, as written and read back.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BakedImage {
    /// The name it is uploaded under, as the plan and the qm script say.
    pub file: String,
    /// The VMs booting it.
    pub vms: Vec<String>,
    #[serde(flatten)]
    pub receipt: Receipt,
    #[serde(skip)]
    pub path: PathBuf,
}

/// What the cache keeps beside a finished image (`<name>.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub sha256: String,
    pub bytes: u64,
    /// Upstream inputs, as pinned in the lock file.
    pub inputs: Vec<Pinned>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinned {
    pub url: String,
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BakeError {
    #[error(transparent)]
    Fetch(#[from] crate::net::fetch::FetchError),
    #[error(transparent)]
    Factory(#[from] crate::net::factory::FactoryError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot bake images on this machine:\n  {}\ninstall what is missing, or build with --no-images", .0.join("\n  "))]
    MissingTools(Vec<String>),
    #[error("image {file}: {message}")]
    Image { file: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl BakeError {
    fn image(file: &str, error: impl std::fmt::Display) -> Self {
        BakeError::Image {
            file: file.to_string(),
            message: error.to_string(),
        }
    }
}

/// Bakes every image of `plans` (each distinct file once), in plan order;
/// with a store, what the cache lacks is pulled first and only what
/// neither has is baked.
pub fn bake(
    plans: &[VmImages],
    artifacts: &[Artifact],
    baker: &mut Baker<'_>,
) -> Result<Vec<BakedImage>, BakeError> {
    let mut distinct: Vec<&VmImages> = Vec::new();
    for plan in plans {
        if !distinct.iter().any(|d| d.boot.file() == plan.boot.file()) {
            distinct.push(plan);
        }
    }
    let mut ready: Vec<Option<(PathBuf, Receipt)>> = Vec::new();
    for plan in &distinct {
        ready.push(match baker.store {
            Some(store) => from_cache_or_store(store, plan.boot.file(), baker)?,
            None => None,
        });
    }
    let to_bake = distinct.iter().zip(&ready).filter(|(_, r)| r.is_none());
    if to_bake
        .into_iter()
        .any(|(plan, _)| matches!(plan.boot, BootImage::Debian(_)))
    {
        let missing = waddle_images::debian::missing_host_tools();
        if !missing.is_empty() {
            return Err(BakeError::MissingTools(missing));
        }
    }
    let mut baked: Vec<BakedImage> = Vec::new();
    for (plan, ready) in distinct.iter().zip(ready) {
        let (path, receipt) = match (ready, &plan.boot) {
            (Some(ready), _) => ready,
            (None, BootImage::Talos(image)) => talos_image::bake(image, baker)?,
            (None, BootImage::Debian(image)) => debian_image::bake(image, artifacts, baker)?,
        };
        let file = plan.boot.file();
        baked.push(BakedImage {
            file: file.to_string(),
            vms: plans
                .iter()
                .filter(|p| p.boot.file() == file)
                .map(|p| p.vm.clone())
                .collect(),
            receipt,
            path,
        });
    }
    Ok(baked)
}

/// With a store: the cache's image `file` if its receipt's pins are the
/// lock's (no upstream is fetched to know), else the store's, pulled.
fn from_cache_or_store(
    store: &ArtifactStore,
    file: &str,
    baker: &mut Baker<'_>,
) -> Result<Option<(PathBuf, Receipt)>, BakeError> {
    let path = images_dir(baker.cache).join(file);
    let receipt: Option<Receipt> = fs::read(receipt_path(&path))
        .ok()
        .and_then(|text| serde_json::from_slice(&text).ok());
    if let Some(receipt) = receipt {
        let pinned = receipt
            .inputs
            .iter()
            .all(|input| baker.lock.pinned(&input.url) == Some(input.sha256.as_str()));
        let size = fs::metadata(&path).map(|m| m.len()).ok();
        if pinned && size == Some(receipt.bytes) {
            tracing::debug!(image = %file, "cached");
            return Ok(Some((path, receipt)));
        }
    }
    let progress = baker.progress;
    let what = format!("pulling {file}");
    Ok(store.pull(
        baker.cache,
        file,
        baker.lock,
        baker.locked,
        &|done, total| progress(&what, done, total),
    )?)
}

/// The finished image `file` in the cache, if its receipt says it was made
/// from `inputs`.
fn cached(cache: &Cache, file: &str, inputs: &[Pinned]) -> Option<(PathBuf, Receipt)> {
    let path = images_dir(cache).join(file);
    let receipt: Receipt = serde_json::from_slice(&fs::read(receipt_path(&path)).ok()?).ok()?;
    let size = fs::metadata(&path).ok()?.len();
    (receipt.inputs == inputs && receipt.bytes == size).then_some((path, receipt))
}

/// Records a finished image's receipt (after the image itself is in place).
fn finish(path: &Path, inputs: Vec<Pinned>) -> Result<Receipt, BakeError> {
    let io = |what: String| move |source| BakeError::Io { what, source };
    let mut file = File::open(path).map_err(io(format!("reading {}", path.display())))?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(io(format!("reading {}", path.display())))?;
        if read == 0 {
            break;
        }
        hash.update(&buffer[..read]);
        bytes += read as u64;
    }
    let receipt = Receipt {
        sha256: hex::encode(hash.finalize()),
        bytes,
        inputs,
    };
    record_receipt(path, &receipt)?;
    Ok(receipt)
}

/// Writes `receipt` beside the finished image at `path`.
pub(crate) fn record_receipt(path: &Path, receipt: &Receipt) -> Result<(), BakeError> {
    let json = serde_json::to_vec_pretty(receipt).expect("plain data serialises");
    let receipt_path = receipt_path(path);
    fs::write(&receipt_path, json).map_err(|source| BakeError::Io {
        what: format!("writing {}", receipt_path.display()),
        source,
    })
}

/// Where finished images are cached.
pub(crate) fn images_dir(cache: &Cache) -> PathBuf {
    cache.dir().join("images")
}

fn receipt_path(image: &Path) -> PathBuf {
    let mut name = image.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// A scratch directory for one image's intermediate files, beside the
/// finished images so renames stay on one filesystem.
fn scratch(cache: &Cache) -> Result<tempfile::TempDir, BakeError> {
    let dir = images_dir(cache);
    fs::create_dir_all(&dir).map_err(|source| BakeError::Io {
        what: format!("creating {}", dir.display()),
        source,
    })?;
    tempfile::Builder::new()
        .prefix(".bake-")
        .tempdir_in(&dir)
        .map_err(|source| BakeError::Io {
            what: format!("creating a scratch directory in {}", dir.display()),
            source,
        })
}

/// raw → qcow2 into the cache, reporting progress as `what`.
fn to_qcow2(
    raw: &Path,
    cache: &Cache,
    file: &str,
    progress: Progress<'_>,
) -> Result<PathBuf, BakeError> {
    let out = images_dir(cache).join(file);
    let what = format!("converting {file}");
    waddle_images::qcow2::convert_file(raw, &out, |p| progress(&what, p.done, Some(p.total)))
        .map_err(|error| BakeError::image(file, error))?;
    Ok(out)
}
