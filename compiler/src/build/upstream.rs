//! Upstream manifests for builds with secrets (and deploy's rebuild): each
//! fetched once into the download cache, pinned in the blueprint's lock
//! file, and read back as text for the renderers.

use std::path::Path;

use crate::lock::{Lock, LockError};
use crate::net::fetch::{Cache, FetchError};
use crate::render::cluster::upstream::UpstreamManifest;

pub struct Upstream {
    lock: Lock,
    cache: Cache,
    locked: bool,
}

impl Upstream {
    /// The lock beside `blueprint` and the cache in `cache`; with `locked`,
    /// nothing the lock does not pin is fetched.
    pub fn open(blueprint: &Path, cache: Cache, locked: bool) -> Result<Self, LockError> {
        Ok(Upstream {
            lock: Lock::load(&Lock::path_for(blueprint))?,
            cache,
            locked,
        })
    }

    pub fn text(&mut self, manifest: &UpstreamManifest) -> Result<String, FetchError> {
        let path = self.cache.fetch(
            &mut self.lock,
            self.locked,
            &manifest.description,
            &manifest.url,
            &|_, _| {},
        )?;
        std::fs::read_to_string(&path).map_err(|source| FetchError::Cache {
            path: path.display().to_string(),
            source,
        })
    }

    /// Writes pins recorded by this build (verified ones are kept even if
    /// the build later fails).
    pub fn save(&self) -> Result<(), LockError> {
        self.lock.save()
    }
}
