//! The Talos disk image of the cluster's schematic and version: the
//! schematic registered with the Image Factory first (it serves an ID's
//! images only once it has seen the schematic; a different ID stops the
//! build), then fetched (`…/image/<id>/<version>/nocloud-amd64.raw.xz`),
//! verified against the lock file, decompressed (Proxmox cannot import xz)
//! and converted to qcow2 (zero clusters unallocated: a fraction of the raw
//! size to upload). The download is cached by its sha256, the qcow2 by the
//! plan's name and the download's pin.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use super::{cached, finish, scratch, to_qcow2, BakeError, Baker, Pinned, Receipt};
use crate::net::factory;
use crate::plan::images::TalosImage;
use crate::plan::schematic::Schematic;

/// The factory URL of the nocloud disk image.
pub fn image_url(factory: &str, schematic_id: &str, version: &str) -> String {
    format!(
        "{}/image/{schematic_id}/{version}/nocloud-amd64.raw.xz",
        factory.trim_end_matches('/')
    )
}

/// The qcow2 of `image` in the cache, fetched and converted if needed.
pub fn bake(image: &TalosImage, baker: &mut Baker<'_>) -> Result<(PathBuf, Receipt), BakeError> {
    let url = image_url(&baker.upstreams.factory, &image.schematic, &image.version);
    let name = format!("talos image {} {}", image.version, &image.schematic[..12]);
    let progress = baker.progress;
    // Only when the download is about to happen: a cached image needs no
    // network, and --locked refuses an unpinned URL before anything is sent.
    let downloaded = baker.cache.has(baker.lock, &url);
    let refused = baker.locked && baker.lock.pinned(&url).is_none();
    if !downloaded && !refused {
        let schematic = Schematic::new(&image.extensions, &image.kernel_args);
        factory::register(&baker.upstreams.factory, &schematic)?;
    }
    let what = format!("fetching {name}");
    let compressed = baker
        .cache
        .fetch(baker.lock, baker.locked, &name, &url, &|done, total| {
            progress(&what, done, total)
        })?;
    let sha256 = baker.lock.pinned(&url).unwrap_or_default().to_string();
    let inputs = vec![Pinned { url, sha256 }];
    if let Some(hit) = cached(baker.cache, &image.file, &inputs) {
        tracing::debug!(image = %image.file, "cached");
        return Ok(hit);
    }
    let scratch = scratch(baker.cache)?;
    let raw = scratch.path().join("disk.raw");
    decompress(&compressed, &raw)?;
    let path = to_qcow2(&raw, baker.cache, &image.file, progress)?;
    let receipt = finish(&path, inputs)?;
    Ok((path, receipt))
}

/// xz → raw.
fn decompress(from: &Path, to: &Path) -> Result<(), BakeError> {
    let io = |what: &str| {
        let what = format!("{what} {}", to.display());
        move |source| BakeError::Io { what, source }
    };
    tracing::info!(image = %from.display(), "decompressing");
    let input = BufReader::with_capacity(1 << 20, File::open(from).map_err(io("reading"))?);
    let mut reader = lzma_rust2::XzReader::new(input, true);
    let mut writer = BufWriter::with_capacity(1 << 20, File::create(to).map_err(io("creating"))?);
    std::io::copy(&mut reader, &mut writer).map_err(io("decompressing into"))?;
    writer
        .into_inner()
        .map_err(|e| e.into_error())
        .map_err(io("writing"))?;
    Ok(())
}
