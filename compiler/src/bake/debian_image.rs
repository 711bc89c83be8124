//! A Debian VM image as the plan describes it: the base from mmdebstrap
//! (Debian's packages at the blueprint's snapshot, cached by its inputs),
//! the overlay of rendered files, units, the baked seed and Teleport's
//! binaries, baked by `waddle_images::debian` into a raw GPT disk and
//! converted to qcow2. The disk's identities (GUIDs, filesystem UUID, hash
//! seed, FAT serial) are derived from the image's name, itself a hash of its
//! inputs, so the same plan gives the same bytes.

use std::path::PathBuf;

use sha2::{Digest, Sha256};
use waddle_images::debian::base::{base_layer, BaseSpec};
use waddle_images::debian::guest::{guest_overlay, Guest, GuestFile, NoCloudSeed};
use waddle_images::debian::{bake as bake_disk, DiskIds, DiskSpec};
use waddle_images::{ByteSize, Guid};

use super::teleport_release;
use super::{cached, finish, scratch, to_qcow2, BakeError, Baker, Pinned, Receipt};
use crate::artifact::Artifact;
use crate::plan::images::{DebianImage, DebianInputs};

/// snapshot.debian.org, whose `archive/debian/<timestamp>/` is the Debian
/// archive as it was at that moment.
pub const SNAPSHOTS: &str = "http://snapshot.debian.org";

/// Where the Teleport binaries go in the image.
const TELEPORT_BIN: &str = "/usr/local/bin";

/// The qcow2 of `image` in the cache, baked if needed.
pub fn bake(
    image: &DebianImage,
    artifacts: &[Artifact],
    baker: &mut Baker<'_>,
) -> Result<(PathBuf, Receipt), BakeError> {
    let inputs = &image.inputs;
    let file = image.file.as_str();
    let mut pins = Vec::new();
    if inputs.mirror.is_none() {
        pins.push(pin_snapshot(inputs, baker)?);
    }
    let teleport = match &inputs.teleport {
        Some(version) => {
            let progress = baker.progress;
            let what = format!("fetching Teleport {version}");
            let release = teleport_release::fetch(
                baker.cache,
                baker.lock,
                baker.locked,
                &baker.upstreams.teleport_cdn,
                version,
                &|done, total| progress(&what, done, total),
            )?;
            pins.push(Pinned {
                url: release.url.clone(),
                sha256: release.sha256.clone(),
            });
            Some(release)
        }
        None => None,
    };
    if let Some(hit) = cached(baker.cache, file, &pins) {
        tracing::debug!(image = %file, "cached");
        return Ok(hit);
    }

    tracing::info!(image = %file, "building the Debian base (mmdebstrap)");
    let base = base_layer(
        &BaseSpec {
            suite: inputs.suite.clone(),
            mirrors: mirrors(inputs, &baker.upstreams.debian_snapshots),
            packages: inputs.packages.clone(),
            source_date_epoch: inputs.source_date_epoch,
        },
        &baker.cache.dir().join("debian"),
    )
    .map_err(|error| BakeError::image(file, error))?;
    tracing::info!(image = %file, base = %base.key, reused = base.reused, "base ready");

    let ids = disk_ids(file);
    let mut overlay = guest_overlay(&Guest {
        seed: baked_seed(image, artifacts),
        root_filesystem: ids.root_filesystem,
        files: files(file, inputs, artifacts)?,
        after_cloud_init: inputs.after_cloud_init.clone(),
    })
    .map_err(|error| BakeError::image(file, error))?;
    if let Some(release) = &teleport {
        for (name, path) in &release.binaries {
            overlay
                .add_host_file(&format!("{TELEPORT_BIN}/{name}"), 0o755, path)
                .map_err(|error| BakeError::image(file, error))?;
        }
    }
    for unit in &inputs.enable {
        overlay
            .add_symlink(
                &format!("/etc/systemd/system/multi-user.target.wants/{unit}"),
                &format!("/etc/systemd/system/{unit}"),
            )
            .map_err(|error| BakeError::image(file, error))?;
    }

    let scratch = scratch(baker.cache)?;
    let raw = scratch.path().join("disk.raw");
    tracing::info!(image = %file, "baking");
    let baked = bake_disk(
        &base,
        &overlay,
        &DiskSpec {
            ids,
            esp_size: ByteSize::from_bytes(inputs.esp_bytes),
            root_size: ByteSize::from_bytes(inputs.root_bytes),
            source_date_epoch: inputs.source_date_epoch,
        },
        &raw,
    )
    .map_err(|error| BakeError::image(file, error))?;
    tracing::debug!(image = %file, timings = ?baked.timings, "baked");
    let path = to_qcow2(&raw, baker.cache, file, baker.progress)?;
    let receipt = finish(&path, pins)?;
    Ok((path, receipt))
}

/// The snapshot's archive root on snapshot.debian.org (or a stand-in).
fn snapshot_root(inputs: &DebianInputs, snapshots: &str, archive: &str) -> String {
    format!(
        "{}/archive/{archive}/{}",
        snapshots.trim_end_matches('/'),
        inputs.snapshot
    )
}

/// Pins the snapshot by its `InRelease` (signed, and listing the hash of
/// every package index, so it names every package apt can install from it).
fn pin_snapshot(inputs: &DebianInputs, baker: &mut Baker<'_>) -> Result<Pinned, BakeError> {
    let url = format!(
        "{}/dists/{}/InRelease",
        snapshot_root(inputs, &baker.upstreams.debian_snapshots, "debian"),
        inputs.suite
    );
    let name = format!("debian snapshot {}", inputs.snapshot);
    baker
        .cache
        .fetch(baker.lock, baker.locked, &name, &url, &|_, _| {})?;
    let sha256 = baker.lock.pinned(&url).unwrap_or_default().to_string();
    Ok(Pinned { url, sha256 })
}

/// mmdebstrap's mirror arguments: the release with its updates and security
/// suites, from the snapshot or the live mirror.
fn mirrors(inputs: &DebianInputs, snapshots: &str) -> Vec<String> {
    let suite = &inputs.suite;
    match &inputs.mirror {
        Some(mirror) => vec![
            format!("deb {mirror} {suite} main"),
            format!("deb {mirror} {suite}-updates main"),
            format!("deb {mirror}-security {suite}-security main"),
        ],
        None => {
            // Snapshot Release files are past their Valid-Until by design.
            let debian = snapshot_root(inputs, snapshots, "debian");
            let security = snapshot_root(inputs, snapshots, "debian-security");
            vec![
                format!("deb [check-valid-until=no] {debian} {suite} main"),
                format!("deb [check-valid-until=no] {debian} {suite}-updates main"),
                format!("deb [check-valid-until=no] {security} {suite}-security main"),
            ]
        }
    }
}

/// The plan's files with their rendered contents, each checked against the
/// hash the plan (and the image's name) was made from.
fn files(
    file: &str,
    inputs: &DebianInputs,
    artifacts: &[Artifact],
) -> Result<Vec<GuestFile>, BakeError> {
    inputs
        .files
        .iter()
        .map(|planned| {
            let artifact = artifacts
                .iter()
                .find(|a| a.path == planned.artifact)
                .filter(|a| hex::encode(Sha256::digest(&a.contents)) == planned.sha256)
                .ok_or_else(|| {
                    BakeError::image(
                        file,
                        format!(
                            "internal error: {} is not the artifact the plan hashed",
                            planned.artifact
                        ),
                    )
                })?;
            Ok(GuestFile {
                path: planned.path.clone(),
                mode: planned.mode,
                contents: artifact.contents.clone(),
            })
        })
        .collect()
}

/// The VM's seed, if the plan bakes it.
fn baked_seed(image: &DebianImage, artifacts: &[Artifact]) -> Option<NoCloudSeed> {
    if !image.inputs.seed_baked {
        return None;
    }
    let vm = &image.vm;
    let read = |name: &str| {
        let path = format!("vms/{vm}/seed/{name}");
        artifacts
            .iter()
            .find(|a| a.path == path)
            .map(|a| a.contents.clone())
    };
    Some(NoCloudSeed {
        user_data: read("user-data")?,
        meta_data: read("meta-data")?,
        network_config: read("network-config")?,
    })
}

/// Fixed identities from the image's name: one hash per identity, shaped as
/// random (version 4) GUIDs.
fn disk_ids(file: &str) -> DiskIds {
    let hash = |what: &str| -> [u8; 16] {
        let digest = Sha256::digest(format!("waddle disk id {what} {file}"));
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes
    };
    let guid = |what: &str| {
        let mut bytes = hash(what);
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Guid::from_u128(u128::from_be_bytes(bytes))
    };
    let serial = hash("esp volume id");
    DiskIds {
        disk: guid("disk"),
        esp_partition: guid("esp partition"),
        root_partition: guid("root partition"),
        root_filesystem: guid("root filesystem"),
        root_hash_seed: guid("root hash seed"),
        esp_volume_id: u32::from_be_bytes([serial[0], serial[1], serial[2], serial[3]]),
    }
}
