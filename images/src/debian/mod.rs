//! Baked Debian 12 VM images, ready at first boot with nothing to install.
//!
//! The pipeline, each step a plain file and none needing a mount or a loop
//! device:
//!
//! ```text
//! BaseSpec ──mmdebstrap──▶ base.tar (cached by its inputs)   ┐
//! Guest ──guest_overlay──▶ Overlay ──to_tar──▶ overlay.tar    ┴─merge─▶ rootfs.tar
//! rootfs.tar ──mke2fs -d──▶ root.ext4
//! rootfs.tar ──boot files──▶ esp.img (systemd-boot, kernel, initrd, entry)
//! esp.img + root.ext4 ──GPT──▶ disk.raw
//! ```
//!
//! `bake` owns the steps after the base: given the same base tar, overlay and
//! [`DiskSpec`], it writes the same raw disk byte for byte. Every identity
//! (GUIDs, filesystem UUID, hash seed, FAT serial) and the one timestamp come
//! from the caller.

pub mod base;
pub mod boot;
pub mod guest;

/// The code that decides a baked image's bytes. Callers hash it into image
/// names, so a change to how images are baked never reuses an image baked
/// the old way (a hand-bumped version string would be forgotten).
pub const RECIPE_SOURCES: &[&str] = &[
    include_str!("mod.rs"),
    include_str!("base.rs"),
    include_str!("boot.rs"),
    include_str!("guest.rs"),
    include_str!("customize.sh"),
    include_str!("../layer/merge.rs"),
    include_str!("../layer/overlay.rs"),
    include_str!("../layer/path.rs"),
    include_str!("../ext4.rs"),
    include_str!("../esp.rs"),
    include_str!("../fat.rs"),
    include_str!("../gpt.rs"),
    include_str!("../guid.rs"),
    include_str!("../qcow2/layout.rs"),
    include_str!("../qcow2/sparse.rs"),
    include_str!("../qcow2/tables.rs"),
    include_str!("../qcow2/writer.rs"),
    include_str!("../qcow2/zero.rs"),
];

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::esp::{build_esp, EspError, EspSpec};
use crate::ext4::{build_ext4, Ext4Error, Ext4Spec};
use crate::gpt::{write_disk, GptError, GptPartition, ESP_TYPE, ROOT_X86_64_TYPE};
use crate::guid::Guid;
use crate::layer::{merge, MergeError, Overlay};
use crate::size::ByteSize;

use self::base::BaseLayer;
use self::boot::{esp_files, kernel_command_line, read_boot_files, BootError};

/// The fixed identities of one disk. Reusing them across VMs is harmless for
/// separate disks but makes two disks in one VM indistinguishable, so derive
/// them per image.
#[derive(Clone, Copy, Debug)]
pub struct DiskIds {
    pub disk: Guid,
    pub esp_partition: Guid,
    /// The kernel finds its root by this (`root=PARTUUID=`).
    pub root_partition: Guid,
    /// /etc/fstab mounts the root by this (`UUID=`).
    pub root_filesystem: Guid,
    /// ext4's directory hash seed.
    pub root_hash_seed: Guid,
    pub esp_volume_id: u32,
}

/// The disk to bake.
#[derive(Clone, Debug)]
pub struct DiskSpec {
    pub ids: DiskIds,
    pub esp_size: ByteSize,
    /// cloud-init grows the root to the VM's disk at first boot, so this is
    /// only what the image itself needs.
    pub root_size: ByteSize,
    /// Seconds since the epoch: every time stored in the image.
    pub source_date_epoch: u64,
}

/// A baked raw disk and how long each step took.
#[derive(Clone, Debug)]
pub struct BakedDisk {
    pub raw: PathBuf,
    pub timings: BakeTimings,
}

/// Wall time of each step of [`bake`].
#[derive(Clone, Copy, Debug, Default)]
pub struct BakeTimings {
    /// Overlay tar and merge with the base.
    pub merge: Duration,
    pub ext4: Duration,
    /// Reading the boot files and making the FAT image.
    pub esp: Duration,
    pub gpt: Duration,
}

/// Why an image could not be baked.
#[derive(Debug, thiserror::Error)]
pub enum BakeError {
    #[error("cannot open the base layer {path} (build it with `base_layer`): {source}")]
    Base {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the overlay as a tar: {0}")]
    Overlay(std::io::Error),
    #[error("cannot merge the overlay into the base {base}: {source}")]
    Merge { base: PathBuf, source: MergeError },
    #[error("cannot make the root filesystem: {0}")]
    Ext4(#[from] Ext4Error),
    #[error("cannot find what the ESP needs in the rootfs: {0}")]
    Boot(#[from] BootError),
    #[error("cannot make the EFI system partition: {0}")]
    Esp(#[from] EspError),
    #[error("cannot write the disk: {0}")]
    Gpt(#[from] GptError),
    #[error("cannot use {path} for the image's intermediate files: {source}")]
    Scratch {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What this machine lacks to bake a Debian image, one line per missing or
/// too old program, each naming the command that installs it; empty when
/// everything is there. Cheap (`--version` runs), so a build can say all of
/// it up front instead of failing one program at a time minutes in.
pub fn missing_host_tools() -> Vec<String> {
    let mut missing = Vec::new();
    let tool = base::MMDEBSTRAP;
    if let Err(error) = tool.run(tool.command().arg("--version")) {
        missing.push(error.to_string());
    }
    if let Err(error) = crate::ext4::check_version() {
        missing.push(error.to_string());
    }
    missing
}

/// Writes the raw disk `out` (replacing it): `overlay` on `base`, as an ext4
/// root partition beside an ESP that boots it with systemd-boot. Intermediate
/// files live in a temporary directory beside `out` and are removed.
pub fn bake(
    base: &BaseLayer,
    overlay: &Overlay,
    spec: &DiskSpec,
    out: &Path,
) -> Result<BakedDisk, BakeError> {
    let mut timings = BakeTimings::default();
    let parent = out
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let scratch_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BakeError::Scratch { path, source }
    };
    let scratch = tempfile::Builder::new()
        .prefix(".bake-")
        .tempdir_in(parent)
        .map_err(scratch_error(parent))?;
    let epoch = spec.source_date_epoch;

    let started = Instant::now();
    let rootfs = scratch.path().join("rootfs.tar");
    let overlay_path = scratch.path().join("overlay.tar");
    let overlay_file = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&overlay_path)
        .map_err(scratch_error(&overlay_path))?;
    let overlay_file = overlay
        .write_tar(epoch, BufWriter::with_capacity(1 << 20, overlay_file))
        .and_then(|writer| writer.into_inner().map_err(|e| e.into_error()))
        .map_err(BakeError::Overlay)?;
    let base_file = File::open(&base.tar).map_err(|source| BakeError::Base {
        path: base.tar.clone(),
        source,
    })?;
    let merged = File::create(&rootfs).map_err(scratch_error(&rootfs))?;
    let mut merged = merge(
        BufReader::with_capacity(1 << 20, base_file),
        BufReader::with_capacity(1 << 20, overlay_file),
        BufWriter::with_capacity(1 << 20, merged),
    )
    .map_err(|source| BakeError::Merge {
        base: base.tar.clone(),
        source,
    })?;
    merged.flush().map_err(scratch_error(&rootfs))?;
    drop(merged);
    timings.merge = started.elapsed();

    let started = Instant::now();
    let root = scratch.path().join("root.ext4");
    build_ext4(
        &rootfs,
        &root,
        &Ext4Spec {
            size: spec.root_size,
            uuid: spec.ids.root_filesystem,
            hash_seed: spec.ids.root_hash_seed,
            label: "root".into(),
            source_date_epoch: epoch,
        },
    )?;
    timings.ext4 = started.elapsed();

    let started = Instant::now();
    let rootfs_file = File::open(&rootfs).map_err(scratch_error(&rootfs))?;
    let boot = read_boot_files(BufReader::with_capacity(1 << 20, rootfs_file))?;
    let esp = scratch.path().join("esp.img");
    build_esp(
        &esp,
        &EspSpec {
            size: spec.esp_size,
            volume_id: spec.ids.esp_volume_id,
            label: "ESP".into(),
            source_date_epoch: epoch,
        },
        &esp_files(boot, &kernel_command_line(spec.ids.root_partition)),
    )?;
    timings.esp = started.elapsed();

    let started = Instant::now();
    write_disk(
        out,
        spec.ids.disk,
        &[
            GptPartition {
                type_guid: ESP_TYPE,
                guid: spec.ids.esp_partition,
                name: "esp",
                image: &esp,
            },
            GptPartition {
                type_guid: ROOT_X86_64_TYPE,
                guid: spec.ids.root_partition,
                name: "root",
                image: &root,
            },
        ],
    )?;
    timings.gpt = started.elapsed();

    Ok(BakedDisk {
        raw: out.to_path_buf(),
        timings,
    })
}
