//! `build --with-secrets` without `--no-images`: runs `bake` on the plan
//! with the lock file, the cache and a progress bar, and turns what it made
//! into the tree's `images.json` and `images/<file>` entries.

use std::path::PathBuf;

use super::{exit, progress, BuildArgs};
use crate::artifact::Artifact;
use crate::bake::{self, Baker, Upstreams};
use crate::exit::Code as _;
use crate::lock::Lock;
use crate::net::fetch::Cache;
use crate::Compiled;

/// Where images sit in the deployable tree.
pub const IMAGES_DIR: &str = "images";

/// `images.json` and the image files to link into the tree, or an exit code
/// (the error already printed).
pub fn bake_images(
    args: &BuildArgs,
    compiled: &Compiled,
) -> Result<(Artifact, Vec<(String, PathBuf)>), u8> {
    let lock_path = Lock::path_for(&args.common.blueprint);
    let mut lock = Lock::load(&lock_path).map_err(|e| {
        eprintln!("error: {e}");
        exit::IO
    })?;
    let cache = Cache::new(Cache::default_dir());
    let upstreams = Upstreams {
        factory: args.factory.clone(),
        teleport_cdn: args.teleport_cdn.clone(),
        debian_snapshots: args.debian_snapshots.clone(),
    };
    let bar = progress::bytes("baking images");
    let mut baker = Baker {
        cache: &cache,
        lock: &mut lock,
        locked: args.locked,
        upstreams: &upstreams,
        progress: &|what, done, total| bar.step(what, done, total),
    };
    let baked = bake::bake(&compiled.images, &compiled.artifacts, &mut baker);
    bar.finish();
    // Pins are kept even when a later step fails: they were verified.
    if let Err(e) = lock.save() {
        eprintln!("error: {e}");
        return Err(exit::IO);
    }
    let baked = baked.map_err(|e| {
        eprintln!("error: {e}");
        e.exit_code()
    })?;
    for image in &baked {
        tracing::info!(image = %image.file, bytes = image.receipt.bytes, sha256 = %image.receipt.sha256, "image ready");
    }
    let json = serde_json::to_string_pretty(&baked).expect("plain data serialises") + "\n";
    let files = baked
        .iter()
        .map(|image| (format!("{IMAGES_DIR}/{}", image.file), image.path.clone()))
        .collect();
    Ok((Artifact::file("images.json", "image-list", json), files))
}
