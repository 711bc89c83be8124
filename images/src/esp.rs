//! EFI system partitions: a FAT32 image file made with mtools.
//!
//! Owns turning a list of files into an ESP without a mount or loop device
//! (`mformat`, `mmd`, `mcopy` work on the image file), and what makes it
//! reproducible: a fixed volume serial, `SOURCE_DATE_EPOCH` for the
//! directories mtools creates (honoured by mtools 4.0.32), and every file's
//! mtime set to the same epoch before `mcopy -m` copies it.

use std::collections::BTreeSet;
use std::fs::{File, FileTimes, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use crate::size::ByteSize;
use crate::tool::{Tool, ToolError};

pub(crate) const MFORMAT: Tool = Tool::new("mformat", "apt-get install mtools");
pub(crate) const MMD: Tool = Tool::new("mmd", "apt-get install mtools");
pub(crate) const MCOPY: Tool = Tool::new("mcopy", "apt-get install mtools");

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
    /// FAT32 needs at least 33 MiB.
    pub size: ByteSize,
    pub volume_id: u32,
    /// At most 11 characters.
    pub label: String,
    /// Seconds since the epoch: every directory and file time.
    pub source_date_epoch: u64,
}

/// Why the ESP could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EspError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("ESP path `{0}` must be relative, `/`-separated, without empty, `.` or `..` parts")]
    BadPath(String),
    #[error("ESP label `{0}` is longer than FAT's 11 characters")]
    LabelTooLong(String),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
}

/// Makes the FAT32 image `out` (replacing it) holding `files`.
pub fn build_esp(out: &Path, spec: &EspSpec, files: &[EspFile]) -> Result<(), EspError> {
    if spec.label.len() > 11 {
        return Err(EspError::LabelTooLong(spec.label.clone()));
    }
    let mut directories = BTreeSet::new();
    for file in files {
        let parts: Vec<&str> = file.path.split('/').collect();
        if parts.iter().any(|part| matches!(*part, "" | "." | "..")) {
            return Err(EspError::BadPath(file.path.clone()));
        }
        for depth in 1..parts.len() {
            directories.insert(parts[..depth].join("/"));
        }
    }

    let write_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EspError::Write { path, source }
    };
    let image = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .map_err(write_error(out))?;
    image.set_len(spec.size.bytes()).map_err(write_error(out))?;
    drop(image);

    let epoch = spec.source_date_epoch.to_string();
    let image_arg = out.as_os_str();
    let mtools = |tool: &Tool| {
        let mut command = tool.command();
        command
            .env("SOURCE_DATE_EPOCH", &epoch)
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(image_arg);
        command
    };

    let mut format = mtools(&MFORMAT);
    format
        .args(["-F", "-N"])
        .arg(format!("{:08x}", spec.volume_id))
        .arg("-v")
        .arg(&spec.label)
        .arg("::");
    MFORMAT.run(&mut format)?;

    // BTreeSet order puts every directory after its parent.
    if !directories.is_empty() {
        let mut make_directories = mtools(&MMD);
        make_directories.args(
            directories
                .iter()
                .map(|directory| format!("::/{directory}")),
        );
        MMD.run(&mut make_directories)?;
    }

    let staging = tempfile::tempdir().map_err(write_error(&std::env::temp_dir()))?;
    let mtime = UNIX_EPOCH + Duration::from_secs(spec.source_date_epoch);
    for (index, file) in files.iter().enumerate() {
        let staged = staging.path().join(index.to_string());
        write_with_mtime(&staged, &file.contents, mtime).map_err(write_error(&staged))?;
        let mut copy = mtools(&MCOPY);
        copy.arg("-m").arg(&staged).arg(format!("::/{}", file.path));
        MCOPY.run(&mut copy)?;
    }
    Ok(())
}

fn write_with_mtime(path: &Path, contents: &[u8], mtime: std::time::SystemTime) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(contents)?;
    file.set_times(FileTimes::new().set_modified(mtime).set_accessed(mtime))
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

    fn files() -> Vec<EspFile> {
        vec![
            EspFile {
                path: "EFI/BOOT/BOOTX64.EFI".into(),
                contents: b"not really a bootloader".to_vec(),
            },
            EspFile {
                path: "loader/entries/debian.conf".into(),
                contents: b"title Debian\n".to_vec(),
            },
        ]
    }

    #[test]
    fn files_read_back_with_mtools_and_the_image_is_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one.img");
        let two = dir.path().join("two.img");
        build_esp(&one, &spec(), &files()).unwrap();
        build_esp(&two, &spec(), &files()).unwrap();
        assert!(std::fs::read(&one).unwrap() == std::fs::read(&two).unwrap());

        let output = Command::new("mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&one)
            .arg("::/loader/entries/debian.conf")
            .output()
            .expect("mtype is missing: apt-get install mtools");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "title Debian\n");

        let listing = Command::new("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&one)
            .arg("::/EFI/BOOT")
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(
            listing.contains("Volume Serial Number is 5EED-E5B0"),
            "{listing}"
        );
        // 1 700 000 000 is 2023-11-14 22:13:20 UTC.
        assert!(listing.contains("2023-11-14  22:13"), "{listing}");
    }

    #[test]
    fn refuses_paths_that_escape_or_are_empty() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["/EFI/x", "EFI//x", "EFI/../x", ""] {
            let file = EspFile {
                path: bad.into(),
                contents: vec![],
            };
            assert!(
                matches!(
                    build_esp(&dir.path().join("x.img"), &spec(), &[file]),
                    Err(EspError::BadPath(_))
                ),
                "{bad}"
            );
        }
    }
}
