//! The deployable tree's disk images: `bake` run on the plan with the lock
//! file and the cache, and what it made turned into the tree's
//! `images.json` and `images/<file>` entries (links to the cache). With
//! `[artifacts]`, images the cache lacks come from the store, and `push`
//! uploads every image the store lacks.

use std::path::{Path, PathBuf};

use super::workflow::{BuildError, Ui};
use crate::artifact::Artifact;
use crate::bake::{self, Baker, Upstreams};
use crate::lock::Lock;
use crate::net::fetch::Cache;
use crate::store::ArtifactStore;
use crate::Compiled;

/// Where images sit in the deployable tree.
pub const IMAGES_DIR: &str = "images";

/// `images.json`, and the image files to link into the tree as
/// `(tree path, file in the cache)`.
pub struct TreeImages {
    pub list: Artifact,
    pub files: Vec<(String, PathBuf)>,
}

/// Fetches and bakes (or pulls) every image of the model (names are
/// content-addressed by inputs; the files stay in the cache), then with
/// `push` uploads what the store lacks.
pub fn bake_images(
    compiled: &Compiled,
    blueprint: &Path,
    cache: &Cache,
    locked: bool,
    push: bool,
    upstreams: &Upstreams,
    ui: &dyn Ui,
) -> Result<TreeImages, BuildError> {
    let store = match &compiled.model.artifacts {
        Some(settings) => Some(
            ArtifactStore::open(settings, &super::workflow::blueprint_dir(blueprint))
                .map_err(BuildError::Store)?,
        ),
        None if push => return Err(BuildError::NoStore),
        None => None,
    };
    let mut lock = Lock::load(&Lock::path_for(blueprint)).map_err(BuildError::Pins)?;
    let progress = |what: &str, done, total| ui.progress(what, done, total);
    let mut baker = Baker {
        cache,
        lock: &mut lock,
        locked,
        upstreams,
        progress: &progress,
        store: store.as_ref(),
    };
    let baked = bake::bake(&compiled.images, &compiled.artifacts, &mut baker);
    ui.progress_done();
    // Pins are kept even when a later step fails: they were verified.
    lock.save().map_err(BuildError::Pins)?;
    let baked = baked?;
    for image in &baked {
        tracing::info!(image = %image.file, bytes = image.receipt.bytes, sha256 = %image.receipt.sha256, "image ready");
    }
    if let (true, Some(store)) = (push, &store) {
        let pushed = store.push(&baked).map_err(BuildError::Store)?;
        tracing::info!(
            uploaded = pushed.uploaded.len(),
            present = pushed.present.len(),
            "artifact store up to date"
        );
    }
    let json = serde_json::to_string_pretty(&baked)
        .map_err(|err| BuildError::Internal(err.to_string()))?
        + "\n";
    let files = baked
        .iter()
        .map(|image| (format!("{IMAGES_DIR}/{}", image.file), image.path.clone()))
        .collect();
    Ok(TreeImages {
        list: Artifact::file("images.json", "image-list", json),
        files,
    })
}
