//! The Talos disk image of the cluster's schematic and version: fetched from
//! the Image Factory (`…/image/<id>/<version>/nocloud-amd64.raw.xz`),
//! verified against the lock file, decompressed (Proxmox cannot import xz),
//! cached by the sha256 of the download.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::Path;

use super::{BakeError, BakedImage};
use crate::lock::Lock;
use crate::model::Model;
use crate::net::fetch::Cache;
use crate::render::talos::schematic::Schematic;

/// The factory URL of the nocloud disk image.
pub fn image_url(factory: &str, schematic_id: &str, version: &str) -> String {
    format!(
        "{}/image/{schematic_id}/{version}/nocloud-amd64.raw.xz",
        factory.trim_end_matches('/')
    )
}

/// Fetches and decompresses the cluster's image into `cache`; returns it,
/// named `talos-<version>-<schematic>-<download>.raw`.
pub fn bake(
    model: &Model,
    cache: &Cache,
    lock: &mut Lock,
    locked: bool,
    factory: &str,
    progress: &dyn Fn(u64, Option<u64>),
) -> Result<Option<BakedImage>, BakeError> {
    let Some(cluster) = &model.talos else {
        return Ok(None);
    };
    let version = &model.versions.talos;
    let id = Schematic::new(&cluster.extensions, &cluster.kernel_args)
        .id()
        .map_err(|e| BakeError::Io {
            what: "schematic".into(),
            source: std::io::Error::other(e),
        })?;
    let url = image_url(factory, &id, version);
    let name = format!("talos-image {}", cluster.name);
    let compressed = cache.fetch(lock, locked, &name, &url, progress)?;
    let sha = lock.pinned(&url).unwrap_or_default().to_string();
    let file_name = format!("talos-{version}-{}-{}.raw", &id[..12], &sha[..12]);
    let raw = cache.dir().join("talos").join(&file_name);
    if !raw.is_file() {
        decompress(&compressed, &raw)?;
    }
    Ok(Some(BakedImage {
        name: file_name,
        path: raw,
        inputs: vec![(url, sha)],
    }))
}

/// xz → raw, through a temp file renamed in when complete.
fn decompress(from: &Path, to: &Path) -> Result<(), BakeError> {
    let io = |what: &str| {
        let what = format!("{what} {}", to.display());
        move |source| BakeError::Io { what, source }
    };
    let dir = to.parent().expect("cache paths have a parent");
    fs::create_dir_all(dir).map_err(io("creating the directory of"))?;
    tracing::info!(image = %to.display(), "decompressing");
    let input = BufReader::with_capacity(1 << 20, File::open(from).map_err(io("reading"))?);
    let mut reader = lzma_rust2::XzReader::new(input, true);
    let temp = tempfile::NamedTempFile::new_in(dir).map_err(io("creating"))?;
    let mut writer = BufWriter::with_capacity(1 << 20, temp.as_file());
    std::io::copy(&mut reader, &mut writer).map_err(io("decompressing into"))?;
    drop(writer);
    temp.as_file().sync_all().map_err(io("syncing"))?;
    temp.persist(to).map_err(|e| BakeError::Io {
        what: format!("renaming into {}", to.display()),
        source: e.error,
    })?;
    Ok(())
}
