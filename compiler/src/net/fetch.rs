//! Downloading upstream inputs into the content-addressed cache, pinned by
//! the lock file: the first fetch of a URL records its sha256, every later
//! one must match it, and `--locked` refuses URLs the lock does not pin.
//! Downloads stream to a temp file beside the cache entry while hashing
//! (memory stays flat whatever the size) and are renamed in only when
//! complete and verified, so an interrupted fetch never leaves a bad entry.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{http_client, NetError};
use crate::lock::Lock;

/// The content-addressed download cache: `<dir>/sha256/<hex>`.
pub struct Cache {
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("{name} ({url}) is not pinned in the lock file and --locked forbids fetching it; run once without --locked to record it, review, and commit the lock")]
    NotLocked { name: String, url: String },
    #[error("{name} does not match the lock file: expected sha256 {expected}, downloaded {actual} from {url}")]
    Mismatch {
        name: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{name} ({url}) cannot be embedded: {problem}")]
    Unusable {
        name: String,
        url: String,
        problem: String,
    },
    #[error("cache {path}: {source}")]
    Cache {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Cache { dir: dir.into() }
    }

    /// `$WADDLEC_CACHE_DIR`, else `$XDG_CACHE_HOME/waddlec`, else `~/.cache/waddlec`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("WADDLEC_CACHE_DIR") {
            return dir.into();
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from(".cache"));
        base.join("waddlec")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, sha256: &str) -> PathBuf {
        self.dir.join("sha256").join(sha256)
    }

    /// True if the file `lock` pins for `url` is in the cache (a fetch would
    /// not touch the network).
    pub fn has(&self, lock: &Lock, url: &str) -> bool {
        lock.pinned(url)
            .is_some_and(|sha| self.entry(sha).is_file())
    }

    /// The cached file of `url`, downloading it if needed; verified against
    /// (or recorded in) `lock`.
    pub fn fetch(
        &self,
        lock: &mut Lock,
        locked: bool,
        name: &str,
        url: &str,
        progress: &dyn Fn(u64, Option<u64>),
    ) -> Result<PathBuf, FetchError> {
        let pinned = lock.pinned(url).map(str::to_string);
        if let Some(sha) = &pinned {
            let cached = self.entry(sha);
            if cached.is_file() {
                tracing::debug!(%url, "cached");
                return Ok(cached);
            }
        } else if locked {
            return Err(FetchError::NotLocked {
                name: name.into(),
                url: url.into(),
            });
        }
        let (temp, actual) = self.download(url, progress)?;
        if let Some(expected) = pinned {
            if expected != actual {
                return Err(FetchError::Mismatch {
                    name: name.into(),
                    url: url.into(),
                    expected,
                    actual,
                });
            }
        } else {
            lock.record(name, url, &actual);
        }
        let entry = self.entry(&actual);
        temp.persist(&entry).map_err(|e| FetchError::Cache {
            path: entry.display().to_string(),
            source: e.error,
        })?;
        Ok(entry)
    }

    fn download(
        &self,
        url: &str,
        progress: &dyn Fn(u64, Option<u64>),
    ) -> Result<(tempfile::NamedTempFile, String), FetchError> {
        let dir = self.dir.join("sha256");
        let cache_error = |source| FetchError::Cache {
            path: dir.display().to_string(),
            source,
        };
        fs::create_dir_all(&dir).map_err(cache_error)?;
        let request_error = |problem: String| NetError::Request {
            url: url.into(),
            problem,
        };
        tracing::info!(%url, "downloading");
        let mut response = http_client()?
            .get(url)
            .timeout(std::time::Duration::from_secs(3600))
            .send()
            .map_err(|e| request_error(e.to_string()))?;
        if !response.status().is_success() {
            return Err(request_error(format!("HTTP {}", response.status())).into());
        }
        let total = response.content_length();
        let mut temp = tempfile::NamedTempFile::new_in(&dir).map_err(cache_error)?;
        let mut hash = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        let mut done = 0u64;
        loop {
            let n = response
                .read(&mut buffer)
                .map_err(|e| request_error(e.to_string()))?;
            if n == 0 {
                break;
            }
            hash.update(&buffer[..n]);
            temp.write_all(&buffer[..n]).map_err(cache_error)?;
            done += n as u64;
            progress(done, total);
        }
        if total.is_some_and(|t| t != done) {
            return Err(request_error(format!("truncated: {done} of {total:?} bytes")).into());
        }
        temp.as_file().sync_all().map_err(cache_error)?;
        Ok((temp, hex::encode(hash.finalize())))
    }
}
