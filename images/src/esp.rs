//! EFI system partitions: a FAT32 image file written with the `fatfs` crate.
//!
//! Owns turning a list of files into the bytes of an ESP, without a mount, a
//! loop device or a host program, and what makes those bytes reproducible.
//! Which files an image boots with is `debian::boot`'s business, where the
//! image goes is `gpt`'s.
//!
//! **Why fatfs.** It is already in the tree for the seed disks, and it writes
//! the volume straight into the image file. mtools did this before
//! (`mformat`, `mmd`, one `mcopy` per file): three host programs for a bake
//! to check and install, a process and a staged copy of every file (to give
//! it the epoch as its mtime), and timestamps that depended on mtools
//! honouring `SOURCE_DATE_EPOCH` (4.0.32 and later). fatfs reads no clock
//! (it is built without `chrono`) and stamps every entry with the time we
//! hand it. OVMF boots the result with systemd-boot
//! (`images/tests/debian_boot.rs`) and `fsck.fat` finds nothing to fix.
//!
//! **One repair of fatfs 0.3.6**, the latest release: it writes a new
//! directory's `.` and `..` entries each behind a long-name entry of its own,
//! so they are not the directory's first two entries, and it points a
//! first-level directory's `..` at the root's cluster instead of 0. Both
//! break the FAT specification: `fsck.fat` "repairs" such a directory by
//! renaming the misplaced entries (as systemd's fsck would at boot, were the
//! ESP in /etc/fstab). fatfs' unreleased 0.4 fixes both
//! (rafalh/rust-fatfs#100); until it is released, `fat::repair_dot_entries`
//! rewrites the first entries of every directory once fatfs is done, and
//! refuses a directory that does not start the way 0.3.6 writes one, so a
//! changed fatfs fails the build instead of being patched blindly.
//!
//! **Layout.** FAT32, the file system UEFI specifies for a system partition
//! (FAT12 and FAT16 are for removable media), which takes at least 65 525
//! clusters: with fatfs' 512-byte clusters for volumes up to 260 MiB that is
//! [`MIN_ESP_SIZE`], 33 MiB. Sectors of 512 bytes and two FATs are set here;
//! the rest (8 reserved sectors, 512-byte clusters up to 260 MiB and 4 KiB
//! up to 8 GiB) is fatfs' layout, pinned by `Cargo.lock`. Names are stored
//! as long names (every entry has one) with fatfs' `~1` short aliases.
//!
//! **Determinism: same files ⇒ same bytes.** The image file starts as zeros
//! (sparse) at its full size; the directories are created parents first,
//! then the files, each in path order whatever order they came in; every
//! directory and file, `.` and `..` included, is created, modified and
//! accessed at the spec's `source_date_epoch` in UTC (FAT stores the time
//! without a zone, as mtools did under `TZ=UTC`, and modification times in
//! 2-second steps); the volume id and label are the caller's. The volume
//! label's entry in the root directory, written while formatting, has no
//! time at all (zero fields).
//!
//! **Memory.** Contents go from the caller's buffers through fatfs into the
//! image file. Only the boot sectors and the two FATs are held in memory
//! while fatfs works (1/64 of a volume up to 260 MiB, at most 1/512 above), because
//! fatfs reads and writes the FAT one 4-byte entry at a time.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use fatfs::{FatType, FileSystem, FormatVolumeOptions, FsOptions};

use crate::fat;
use crate::size::ByteSize;

/// The smallest ESP [`build_esp`] makes: the first whole MiB with enough
/// 512-byte clusters for FAT32.
pub const MIN_ESP_SIZE: ByteSize = ByteSize::from_mib(33);

const SECTOR_BYTES: u16 = 512;
/// The bytes FAT keeps for a volume label.
const LABEL_BYTES: usize = 11;

/// One file on the ESP; `path` is relative to its root, `/`-separated
/// (`EFI/BOOT/BOOTX64.EFI`).
#[derive(Clone, Debug)]
pub struct EspFile {
    pub path: String,
    pub contents: Vec<u8>,
}

/// The filesystem to make.
#[derive(Clone, Debug)]
pub struct EspSpec {
    /// FAT32 needs at least 33 MiB ([`MIN_ESP_SIZE`]).
    pub size: ByteSize,
    pub volume_id: u32,
    /// 1 to 11 of `A`–`Z`, `0`–`9`, `-`, `_` and space.
    pub label: String,
    /// Seconds since the epoch: every directory and file time. FAT holds
    /// 1980 to 2107.
    pub source_date_epoch: u64,
}

/// Why the ESP could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EspError {
    #[error("ESP path `{0}` must be relative, `/`-separated, without empty, `.` or `..` parts")]
    BadPath(String),
    #[error(
        "ESP path `{0}` is given twice, or as a file and a directory (FAT compares names \
         without regard to case)"
    )]
    DuplicatePath(String),
    #[error("ESP label `{0}` must be 1 to 11 of `A`-`Z`, `0`-`9`, `-`, `_` and space")]
    BadLabel(String),
    #[error("an ESP of {0} is too small: FAT32 needs at least {MIN_ESP_SIZE}")]
    TooSmall(ByteSize),
    #[error("SOURCE_DATE_EPOCH {0} is outside what FAT can store (1980-01-01 to 2107-12-31 UTC)")]
    DateOutOfRange(u64),
    #[error("cannot write `{path}` onto the ESP: {source}")]
    File { path: String, source: io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Makes the FAT32 image `out` (replacing it) holding `files`. Identical
/// input, in any order, gives identical bytes.
pub fn build_esp(out: &Path, spec: &EspSpec, files: &[EspFile]) -> Result<(), EspError> {
    let label = label_bytes(&spec.label)?;
    if spec.size < MIN_ESP_SIZE {
        return Err(EspError::TooSmall(spec.size));
    }
    let clock = fat::clock_at(spec.source_date_epoch)
        .ok_or(EspError::DateOutOfRange(spec.source_date_epoch))?;
    let (directories, files) = layout(files)?;

    let write_error = |source| EspError::Write {
        path: out.to_path_buf(),
        source,
    };
    let mut image = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .map_err(write_error)?;
    image.set_len(spec.size.bytes()).map_err(write_error)?;
    fatfs::format_volume(
        &mut image,
        FormatVolumeOptions::new()
            .fat_type(FatType::Fat32)
            .bytes_per_sector(SECTOR_BYTES)
            .fats(2)
            .volume_id(spec.volume_id)
            .volume_label(label),
    )
    .map_err(write_error)?;
    let head = fat::Fat32::read(&mut image)
        .map_err(write_error)?
        .data_offset;
    let mut volume = HeadInMemory::new(&mut image, head).map_err(write_error)?;
    write_tree(&mut volume, clock, &directories, &files, out)?;
    volume.finish().map_err(write_error)?;
    fat::repair_dot_entries(&mut image).map_err(write_error)
}

/// The directories to create, parents first, and the files in path order,
/// once every path is plain and no name is taken twice.
fn layout(files: &[EspFile]) -> Result<(Vec<&str>, Vec<&EspFile>), EspError> {
    // FAT matches names without regard to case, so the keys are upper case.
    let mut directories = BTreeMap::new();
    for file in files {
        if file
            .path
            .split('/')
            .any(|part| matches!(part, "" | "." | ".."))
        {
            return Err(EspError::BadPath(file.path.clone()));
        }
        // A directory spelt in several cases gets the first spelling in
        // byte order, whatever order the files came in.
        for (end, _) in file.path.match_indices('/') {
            let directory = &file.path[..end];
            directories
                .entry(directory.to_uppercase())
                .and_modify(|kept: &mut &str| *kept = (*kept).min(directory))
                .or_insert(directory);
        }
    }
    let mut by_key = BTreeMap::new();
    for file in files {
        let key = file.path.to_uppercase();
        if directories.contains_key(&key) || by_key.insert(key, file).is_some() {
            return Err(EspError::DuplicatePath(file.path.clone()));
        }
    }
    // Sorted by path, a directory comes after its parent: the parent's
    // spelling is at most the child's start, which is one of its spellings.
    let mut directories: Vec<&str> = directories.into_values().collect();
    directories.sort_unstable();
    let mut files: Vec<&EspFile> = by_key.into_values().collect();
    files.sort_unstable_by(|one, two| one.path.cmp(&two.path));
    Ok((directories, files))
}

/// `label` space-padded to FAT's 11 bytes, if it is 1 to 11 characters FAT
/// stores as they are.
fn label_bytes(label: &str) -> Result<[u8; LABEL_BYTES], EspError> {
    let plain = |b: &u8| b.is_ascii_uppercase() || b.is_ascii_digit() || b" -_".contains(b);
    if label.is_empty() || label.len() > LABEL_BYTES || !label.bytes().all(|b| plain(&b)) {
        return Err(EspError::BadLabel(label.to_string()));
    }
    let mut bytes = [b' '; LABEL_BYTES];
    bytes[..label.len()].copy_from_slice(label.as_bytes());
    Ok(bytes)
}

/// Mounts the freshly formatted `image` with fatfs and writes the
/// directories, then the files, in the order given.
fn write_tree(
    image: &mut HeadInMemory<'_>,
    clock: &'static fat::FixedClock,
    directories: &[&str],
    files: &[&EspFile],
    out: &Path,
) -> Result<(), EspError> {
    let write_error = |source| EspError::Write {
        path: out.to_path_buf(),
        source,
    };
    let fs = FileSystem::new(image, FsOptions::new().time_provider(clock)).map_err(write_error)?;
    if fs.fat_type() != FatType::Fat32 {
        // MIN_ESP_SIZE is checked first; this is fatfs disagreeing.
        return Err(write_error(io::Error::other(format!(
            "fatfs made a {:?} volume, not FAT32",
            fs.fat_type()
        ))));
    }
    // fatfs formats FAT32 with the free cluster count "unknown" and keeps
    // it up to date once it has counted; counted now, it is right at the end.
    fs.stats().map_err(write_error)?;
    let file_error = |path: &str| {
        let path = path.to_string();
        move |source| EspError::File { path, source }
    };
    {
        let root = fs.root_dir();
        for directory in directories {
            root.create_dir(directory).map_err(file_error(directory))?;
        }
        for file in files {
            fat::write_file(&root, &file.path, &file.contents).map_err(file_error(&file.path))?;
        }
    }
    fs.unmount().map_err(write_error)
}

/// The image file, with its first bytes (boot sectors and FATs) held in
/// memory while fatfs works on it: fatfs reads and writes the FAT one 4-byte
/// entry at a time, which on the file is a system call or two each, and
/// reads all of it once to count the free clusters. The clusters, where the
/// contents go, are read and written in the file directly, without a seek.
struct HeadInMemory<'a> {
    file: &'a mut File,
    head: Vec<u8>,
    position: u64,
}

impl<'a> HeadInMemory<'a> {
    fn new(file: &'a mut File, head_bytes: u64) -> io::Result<Self> {
        let mut head = vec![0; usize::try_from(head_bytes).map_err(io::Error::other)?];
        file.read_exact_at(&mut head, 0)?;
        Ok(HeadInMemory {
            file,
            head,
            position: 0,
        })
    }

    /// Writes the head back into the file.
    fn finish(self) -> io::Result<()> {
        self.file.write_all_at(&self.head, 0)
    }

    /// The head's bytes from the position on, if it is inside the head.
    fn in_head(&mut self) -> Option<&mut [u8]> {
        let start = usize::try_from(self.position).ok()?;
        self.head.get_mut(start..).filter(|rest| !rest.is_empty())
    }
}

impl Read for HeadInMemory<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = match self.in_head() {
            Some(head) => head.as_ref().read(buf)?,
            None => self.file.read_at(buf, self.position)?,
        };
        self.position += read as u64;
        Ok(read)
    }
}

impl Write for HeadInMemory<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = match self.in_head() {
            Some(mut head) => head.write(buf)?,
            None => self.file.write_at(buf, self.position)?,
        };
        self.position += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for HeadInMemory<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let position = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
            SeekFrom::End(delta) => self.file.metadata()?.len().checked_add_signed(delta),
        };
        self.position = position.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before the image's start")
        })?;
        Ok(self.position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn spec() -> EspSpec {
        EspSpec {
            size: ByteSize::from_mib(64),
            volume_id: 0x5eed_e5b0,
            label: "ESP".into(),
            source_date_epoch: 1_700_000_000,
        }
    }

    fn file(path: &str, contents: &[u8]) -> EspFile {
        EspFile {
            path: path.into(),
            contents: contents.to_vec(),
        }
    }

    /// The boot files' shapes: nested directories, names that need long
    /// entries, and a file of many clusters.
    fn files() -> Vec<EspFile> {
        let kernel: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        vec![
            file("EFI/BOOT/BOOTX64.EFI", b"not really a bootloader"),
            file("loader/loader.conf", b"default debian.conf\n"),
            file("loader/entries/debian.conf", b"title Debian\n"),
            file("vmlinuz", &kernel),
            file("initrd.img", b""),
        ]
    }

    fn build(dir: &Path, name: &str, spec: &EspSpec, files: &[EspFile]) -> PathBuf {
        let path = dir.join(name);
        build_esp(&path, spec, files).unwrap();
        path
    }

    #[test]
    fn the_image_is_reproducible_whatever_the_order_of_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let one = build(dir.path(), "one.img", &spec(), &files());
        let mut reversed = files();
        reversed.reverse();
        let two = build(dir.path(), "two.img", &spec(), &reversed);
        assert!(std::fs::read(&one).unwrap() == std::fs::read(&two).unwrap());
        assert_eq!(std::fs::metadata(&one).unwrap().len(), 64 << 20);

        let mut later = spec();
        later.source_date_epoch += 2;
        let three = build(dir.path(), "three.img", &later, &files());
        assert!(std::fs::read(&one).unwrap() != std::fs::read(three).unwrap());
    }

    #[test]
    fn files_read_back_with_fatfs_stamped_with_the_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let path = build(dir.path(), "esp.img", &spec(), &files());
        let fs = FileSystem::new(
            File::options().read(true).write(true).open(&path).unwrap(),
            FsOptions::new().update_accessed_date(false),
        )
        .unwrap();
        assert_eq!(fs.fat_type(), FatType::Fat32);
        assert_eq!(fs.volume_id(), 0x5eed_e5b0);
        assert_eq!(fs.volume_label(), "ESP");
        assert_eq!(
            fs.read_volume_label_from_root_dir().unwrap().unwrap(),
            "ESP"
        );
        let root = fs.root_dir();
        for expected in files() {
            let mut contents = Vec::new();
            root.open_file(&expected.path)
                .unwrap()
                .read_to_end(&mut contents)
                .unwrap();
            assert!(contents == expected.contents, "{}", expected.path);
        }

        // 1 700 000 000 is 2023-11-14 22:13:20 UTC, for every entry.
        let mut stack = vec![(String::new(), root)];
        let mut seen = Vec::new();
        while let Some((path, directory)) = stack.pop() {
            for entry in directory.iter() {
                let entry = entry.unwrap();
                let name = entry.file_name();
                let modified = entry.modified();
                let created = entry.created();
                let stamp = |date: fatfs::Date, time: fatfs::Time| {
                    (
                        date.year, date.month, date.day, time.hour, time.min, time.sec,
                    )
                };
                assert_eq!(
                    stamp(modified.date, modified.time),
                    (2023, 11, 14, 22, 13, 20),
                    "{path}/{name}"
                );
                assert_eq!(
                    stamp(created.date, created.time),
                    (2023, 11, 14, 22, 13, 20),
                    "{path}/{name}"
                );
                assert_eq!(entry.accessed(), created.date, "{path}/{name}");
                let child = format!("{path}/{name}");
                if entry.is_dir() && name != "." && name != ".." {
                    stack.push((child.clone(), entry.to_dir()));
                }
                seen.push(child);
            }
        }
        seen.sort();
        assert_eq!(
            seen,
            [
                "/EFI",
                "/EFI/.",
                "/EFI/..",
                "/EFI/BOOT",
                "/EFI/BOOT/.",
                "/EFI/BOOT/..",
                "/EFI/BOOT/BOOTX64.EFI",
                "/initrd.img",
                "/loader",
                "/loader/.",
                "/loader/..",
                "/loader/entries",
                "/loader/entries/.",
                "/loader/entries/..",
                "/loader/entries/debian.conf",
                "/loader/loader.conf",
                "/vmlinuz",
            ]
        );
    }

    #[test]
    fn fsck_finds_nothing_to_repair() {
        let dir = tempfile::tempdir().unwrap();
        let path = build(dir.path(), "esp.img", &spec(), &files());
        let output = Command::new("fsck.fat")
            .arg("-n")
            .arg(&path)
            .output()
            .expect("fsck.fat is missing: apt-get install dosfstools");
        let report = String::from_utf8_lossy(&output.stdout);
        // 0: no errors; 1: errors it would repair.
        assert!(output.status.success(), "{report}");
    }

    #[test]
    fn refuses_paths_that_escape_are_empty_or_collide() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("x.img");
        for bad in ["/EFI/x", "EFI//x", "EFI/../x", "EFI/./x", "EFI/", ""] {
            assert!(
                matches!(
                    build_esp(&image, &spec(), &[file(bad, b"")]),
                    Err(EspError::BadPath(_))
                ),
                "{bad}"
            );
        }
        for pair in [
            ["vmlinuz", "VMLINUZ"],
            ["EFI", "EFI/BOOT/x"],
            ["efi", "EFI/x"],
        ] {
            let files = pair.map(|path| file(path, b""));
            assert!(
                matches!(
                    build_esp(&image, &spec(), &files),
                    Err(EspError::DuplicatePath(_))
                ),
                "{pair:?}"
            );
        }
    }

    #[test]
    fn refuses_labels_sizes_and_times_fat32_cannot_hold() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("x.img");
        for label in ["", "TWELVE CHARS", "esp", "ÉSP", "ESP.1"] {
            let mut spec = spec();
            spec.label = label.into();
            assert!(
                matches!(build_esp(&image, &spec, &[]), Err(EspError::BadLabel(_))),
                "{label}"
            );
        }
        let mut small = spec();
        small.size = ByteSize::from_bytes(MIN_ESP_SIZE.bytes() - 512);
        assert!(matches!(
            build_esp(&image, &small, &[]),
            Err(EspError::TooSmall(_))
        ));
        small.size = MIN_ESP_SIZE;
        build_esp(&image, &small, &files()).unwrap();

        let mut old = spec();
        old.source_date_epoch = 0;
        assert!(matches!(
            build_esp(&image, &old, &[]),
            Err(EspError::DateOutOfRange(0))
        ));
    }
}
