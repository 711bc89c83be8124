//! NoCloud seed disks: a FAT filesystem labelled `CIDATA` that holds the
//! given files (`user-data`, `meta-data`, `network-config`) at its root.
//!
//! Owns the bytes of the seed disk and nothing else: what goes into the files
//! is the renderers' business, how the disk reaches a VM is the deployer's.
//! Both consumers look for exactly this: cloud-init's NoCloud datasource
//! takes a `vfat` or `iso9660` filesystem labelled `cidata`/`CIDATA`, and
//! Talos' nocloud platform reads the same label and file names.
//!
//! **Why FAT and not ISO9660.** The seed is attached as a small disk,
//! imported like the system disk (`import-from`, a `.raw` image), not as a
//! CD-ROM. FAT keeps the names as written through VFAT long-name entries;
//! plain ISO9660 cannot spell `-` and needs Joliet or Rock Ridge for that.
//! And `fatfs` writes a FAT volume without reading a clock, whereas the
//! maintained Rust ISO9660 writer (`hadris-iso`) stamps the current time in
//! its stable release (2.5), so its images differ from one build to the next.
//!
//! **Size.** The image is the smallest whole number of MiB, at least 1 MiB,
//! whose volume holds the files; whole MiB because Proxmox creates the
//! imported disk at the image's size, and a whole MiB suits every storage
//! (a zvol's size must be a multiple of its block size). A seed carries configuration, not payload (Proxmox itself caps a
//! `cicustom` snippet at 1 MiB), so more than [`MAX_SEED_DISK_SIZE`] is
//! refused. The volume is always FAT12 with 512-byte sectors, two FATs and a
//! fixed root directory of [`ROOT_DIR_ENTRIES`] entries, which is where the
//! files live: no directory ever takes a data cluster, so whether the files
//! fit is the sum of their clusters against the free clusters.
//!
//! **Determinism: same files ⇒ same bytes.** The image starts as zeros in
//! memory; the files are written sorted by name, whatever order they were
//! given in (so the `~1` short aliases are handed out in a fixed order too);
//! every timestamp is 1980-01-01 00:00:00, the earliest a FAT entry can hold
//! (fatfs is built without its clock); the volume serial number is taken
//! from a SHA-256 of the names and contents, so equal seeds share it and
//! different seeds, e.g. two VMs' disks on one host, do not; the geometry
//! is set explicitly above, and the rest of the boot sector is fatfs'
//! constants, pinned by `Cargo.lock`.

use std::collections::BTreeSet;
use std::io::{self, Cursor};

use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions};
use sha2::{Digest, Sha256};

use crate::fat::{self, DOS_EPOCH};
use crate::ByteSize;

/// The largest seed disk this module builds.
pub const MAX_SEED_DISK_SIZE: ByteSize = ByteSize::from_mib(MAX_MIB);

/// Entries in the root directory: one for the volume label, then per file
/// one short entry and one long-name entry per 13 characters of its name.
pub const ROOT_DIR_ENTRIES: u16 = 512;

const MAX_MIB: u64 = 16;
const MIB: u64 = 1024 * 1024;
const SECTOR_BYTES: u16 = 512;
/// The label both consumers look for, space-padded to the 11 bytes FAT stores.
const LABEL: [u8; 11] = *b"CIDATA     ";
/// Characters of a long name held by one long-name directory entry.
const LFN_CHARS_PER_ENTRY: usize = 13;
/// Longest long file name FAT allows.
const MAX_NAME_CHARS: usize = 255;

/// Why no seed disk was built. Names are quoted; contents never appear.
#[derive(Debug, thiserror::Error)]
pub enum SeedDiskError {
    #[error(
        "{0:?} cannot be a seed file name: use 1 to {MAX_NAME_CHARS} letters, digits, `-`, `_` \
         and `.` (a dot neither first nor last); seed files sit at the root, without directories"
    )]
    BadName(String),
    #[error("seed file {0:?} is given twice (FAT compares names without regard to case)")]
    DuplicateName(String),
    #[error(
        "{files} seed files need {needed} root directory entries (one each, one per \
         {LFN_CHARS_PER_ENTRY} characters of a name, one for the label); there are {ROOT_DIR_ENTRIES}"
    )]
    RootDirectoryFull { files: usize, needed: usize },
    #[error(
        "the seed files hold {content} bytes, more than a seed disk of at most {limit} can take"
    )]
    TooBig { content: u64, limit: ByteSize },
    #[error("writing the seed disk's FAT filesystem failed: {0}")]
    Fat(#[from] io::Error),
}

/// Builds a seed disk image holding exactly `files` (name, contents) at the
/// root of a FAT volume labelled `CIDATA`. Identical input, in any order,
/// gives identical bytes.
pub fn cidata_fat(files: &[(&str, &[u8])]) -> Result<Vec<u8>, SeedDiskError> {
    let files = sorted_checked(files)?;
    let content: u64 = files.iter().map(|(_, data)| data.len() as u64).sum();
    let options = format_options(volume_id(&files));
    // A volume of n MiB holds less than n MiB of files (boot sector, FATs and
    // root directory come first), so the search starts above the content.
    for mib in content / MIB + 1..=MAX_MIB {
        let mut disk = Cursor::new(vec![0u8; (mib * MIB) as usize]);
        fatfs::format_volume(&mut disk, options.clone())?;
        let fs = FileSystem::new(&mut disk, FsOptions::new().time_provider(&DOS_EPOCH))?;
        if holds(&fs, &files)? {
            write_root(&fs, &files)?;
            fs.unmount()?;
            return Ok(disk.into_inner());
        }
    }
    Err(SeedDiskError::TooBig {
        content,
        limit: MAX_SEED_DISK_SIZE,
    })
}

/// The files sorted by name, once every name is a plain FAT long name, no
/// two names are equal without regard to case, and the root directory has
/// room for them all.
fn sorted_checked<'a>(
    files: &[(&'a str, &'a [u8])],
) -> Result<Vec<(&'a str, &'a [u8])>, SeedDiskError> {
    let mut seen = BTreeSet::new();
    for (name, _) in files {
        if !is_plain_name(name) {
            return Err(SeedDiskError::BadName(name.to_string()));
        }
        if !seen.insert(name.to_ascii_lowercase()) {
            return Err(SeedDiskError::DuplicateName(name.to_string()));
        }
    }
    let needed = 1 + files
        .iter()
        .map(|(name, _)| 1 + name.len().div_ceil(LFN_CHARS_PER_ENTRY))
        .sum::<usize>();
    if needed > usize::from(ROOT_DIR_ENTRIES) {
        return Err(SeedDiskError::RootDirectoryFull {
            files: files.len(),
            needed,
        });
    }
    let mut sorted = files.to_vec();
    sorted.sort_unstable_by_key(|(name, _)| *name);
    Ok(sorted)
}

/// Letters, digits, `-`, `_` and `.`: POSIX's portable file name characters,
/// which FAT long names store as they are. A leading dot would leave the
/// short alias without a base name, and Linux drops a trailing one.
fn is_plain_name(name: &str) -> bool {
    (1..=MAX_NAME_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
}

/// The volume serial number: the first four bytes of a SHA-256 over the
/// sorted names and contents, each preceded by its length.
fn volume_id(files: &[(&str, &[u8])]) -> u32 {
    let mut hash = Sha256::new();
    for (name, data) in files {
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        hash.update((data.len() as u64).to_le_bytes());
        hash.update(data);
    }
    let digest = hash.finalize();
    u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]])
}

fn format_options(volume_id: u32) -> FormatVolumeOptions {
    FormatVolumeOptions::new()
        .bytes_per_sector(SECTOR_BYTES)
        .fat_type(FatType::Fat12)
        .fats(2)
        .max_root_dir_entries(ROOT_DIR_ENTRIES)
        .volume_id(volume_id)
        .volume_label(LABEL)
}

/// Whether the freshly formatted `fs` has a cluster for every cluster's
/// worth of every file (an empty file takes none).
fn holds<T: fatfs::ReadWriteSeek>(fs: &FileSystem<T>, files: &[(&str, &[u8])]) -> io::Result<bool> {
    let stats = fs.stats()?;
    let cluster = u64::from(stats.cluster_size());
    let needed: u64 = files
        .iter()
        .map(|(_, data)| (data.len() as u64).div_ceil(cluster))
        .sum();
    Ok(needed <= u64::from(stats.free_clusters()))
}

/// Writes each file, in the given order, into the root directory.
fn write_root<T: fatfs::ReadWriteSeek>(
    fs: &FileSystem<T>,
    files: &[(&str, &[u8])],
) -> io::Result<()> {
    let root = fs.root_dir();
    for (name, data) in files {
        fat::write_file(&root, name, data)?;
    }
    Ok(())
}
