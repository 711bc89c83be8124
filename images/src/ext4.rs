//! Root filesystems: an ext4 image file made by `mke2fs -d rootfs.tar`.
//!
//! Owns the mke2fs invocation and what makes its output reproducible: the
//! filesystem UUID and directory hash seed come from the caller, times come
//! from `SOURCE_DATE_EPOCH` (which e2fsprogs honours since 1.47.1, clamping
//! inode times and the superblock's), and the feature set comes from our own
//! `mke2fs.conf` rather than the build host's `/etc/mke2fs.conf`. Reading the
//! tar directly (1.47.1+, through libarchive) needs no unpacked tree, no
//! root-owned extraction and no mount.

use std::path::{Path, PathBuf};

use crate::guid::Guid;
use crate::size::ByteSize;
use crate::tool::{Tool, ToolError};

const MKE2FS: Tool = Tool::new(
    "mke2fs",
    "apt-get install -t bookworm-backports e2fsprogs libarchive13",
);

/// The first release that reads a tar with `-d` and honours
/// `SOURCE_DATE_EPOCH`.
const MINIMUM_VERSION: (u32, u32, u32) = (1, 47, 1);

/// The features of every root filesystem, pinned so the host's mke2fs.conf
/// cannot change them: those of Debian 12's own ext4 default, which its 6.1
/// kernel mounts.
const MKE2FS_CONF: &str = "\
[defaults]
\tbase_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
\tdefault_mntopts = acl,user_xattr
\tenable_periodic_fsck = 0
\tblocksize = 4096
\tinode_size = 256
\tinode_ratio = 16384

[fs_types]
\text4 = {
\t\tfeatures = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
\t}
";

/// What to make.
#[derive(Clone, Debug)]
pub struct Ext4Spec {
    pub size: ByteSize,
    pub uuid: Guid,
    pub hash_seed: Guid,
    /// At most 16 bytes.
    pub label: String,
    /// Seconds since the epoch: every time stored in the filesystem.
    pub source_date_epoch: u64,
}

/// Why the filesystem could not be made.
#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("mke2fs {found} is too old: making ext4 from a tar reproducibly needs 1.47.1 or later; install it with `{}`", MKE2FS.install)]
    TooOld { found: String },
    #[error("cannot tell the mke2fs version from `mke2fs -V` output `{0}`")]
    UnknownVersion(String),
    #[error("ext4 label `{0}` is longer than 16 bytes")]
    LabelTooLong(String),
    #[error("ext4 size {0} is not a whole number of 4 KiB blocks")]
    UnalignedSize(ByteSize),
    #[error("mke2fs could not fill the filesystem from {tar}: {stderr}\n(`Operation not permitted` here means libarchive13 is missing: `apt-get install libarchive13`; `No space left` means the root size is too small)")]
    Populate { tar: PathBuf, stderr: String },
    #[error("cannot prepare mke2fs in {path}: {source}")]
    Scratch {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Makes the ext4 image `out` (replacing it) holding the files of `tar`, owned
/// by root at the top.
pub fn build_ext4(tar: &Path, out: &Path, spec: &Ext4Spec) -> Result<(), Ext4Error> {
    if spec.label.len() > 16 {
        return Err(Ext4Error::LabelTooLong(spec.label.clone()));
    }
    if !spec.size.bytes().is_multiple_of(4096) {
        return Err(Ext4Error::UnalignedSize(spec.size));
    }
    check_version()?;
    let scratch = tempfile::tempdir().map_err(|source| Ext4Error::Scratch {
        path: std::env::temp_dir(),
        source,
    })?;
    let config = scratch.path().join("mke2fs.conf");
    std::fs::write(&config, MKE2FS_CONF).map_err(|source| Ext4Error::Scratch {
        path: config.clone(),
        source,
    })?;
    if out.exists() {
        std::fs::remove_file(out).map_err(|source| Ext4Error::Scratch {
            path: out.to_path_buf(),
            source,
        })?;
    }
    let epoch = spec.source_date_epoch.to_string();
    let mut command = MKE2FS.command();
    command
        .env("MKE2FS_CONFIG", &config)
        .env("SOURCE_DATE_EPOCH", &epoch)
        .env("E2FSPROGS_FAKE_TIME", &epoch)
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(tar)
        .arg("-U")
        .arg(spec.uuid.to_string())
        .arg("-E")
        .arg(format!(
            "hash_seed={},root_owner=0:0,nodiscard",
            spec.hash_seed
        ))
        .arg("-L")
        .arg(&spec.label)
        .arg(out)
        .arg(format!("{}k", spec.size.bytes() / 1024));
    match MKE2FS.run(&mut command) {
        Ok(_) => Ok(()),
        Err(ToolError::Failed { stderr, .. }) if stderr.contains("populating file system") => {
            Err(Ext4Error::Populate {
                tar: tar.to_path_buf(),
                stderr,
            })
        }
        Err(error) => Err(error.into()),
    }
}

/// Refuses an mke2fs older than 1.47.1 (Debian 12's own 1.47.0 cannot read a
/// tar and stamps inode times from the build).
pub(crate) fn check_version() -> Result<(), Ext4Error> {
    let output = MKE2FS.run(MKE2FS.command().arg("-V"))?;
    // `mke2fs 1.47.2 (1-Jan-2025)` on stderr.
    let text = String::from_utf8_lossy(&output.stderr).into_owned();
    let found = text
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| Ext4Error::UnknownVersion(text.clone()))?;
    let version = parse_version(found).ok_or_else(|| Ext4Error::UnknownVersion(text.clone()))?;
    if version < MINIMUM_VERSION {
        return Err(Ext4Error::TooOld {
            found: found.to_string(),
        });
    }
    Ok(())
}

/// `1.47.2` → (1, 47, 2); a missing patch level counts as 0.
fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split('.').map(str::parse::<u32>);
    let major = parts.next()?.ok()?;
    let minor = parts.next()?.ok()?;
    let patch = match parts.next() {
        Some(part) => part.ok()?,
        None => 0,
    };
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(parse_version("1.47.2"), Some((1, 47, 2)));
        assert_eq!(parse_version("1.47"), Some((1, 47, 0)));
        assert!(parse_version("1.47.0").unwrap() < MINIMUM_VERSION);
        assert!(parse_version("1.100.0").unwrap() > MINIMUM_VERSION);
        assert_eq!(parse_version("x.y"), None);
    }

    fn spec() -> Ext4Spec {
        Ext4Spec {
            size: ByteSize::from_mib(16),
            uuid: Guid::from_u128(0x2d3f6b1a_9c1e_4b8a_8f3e_0a1b2c3d4e5f),
            hash_seed: Guid::from_u128(0x7e4b1c2d_3a5f_4e6d_9b8c_1f2e3d4c5b6a),
            label: "root".into(),
            source_date_epoch: 1_700_000_000,
        }
    }

    /// A tar with a directory, a file owned by 0:999 with mode 0640, and a
    /// symlink, as mmdebstrap would write them.
    fn sample_tar(dir: &Path) -> PathBuf {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: &str, kind: tar::EntryType, mode: u32, gid: u64, contents: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(kind);
            header.set_mode(mode);
            header.set_gid(gid);
            header.set_mtime(1_600_000_000);
            header.set_size(contents.len() as u64);
            if kind == tar::EntryType::Symlink {
                builder.append_link(&mut header, path, "hosts").unwrap();
            } else {
                builder.append_data(&mut header, path, contents).unwrap();
            }
        };
        add("./etc/", tar::EntryType::Directory, 0o755, 0, b"");
        add(
            "./etc/hosts",
            tar::EntryType::Regular,
            0o640,
            999,
            b"127.0.0.1 localhost\n",
        );
        add("./etc/hosts.link", tar::EntryType::Symlink, 0o777, 0, b"");
        let tar = dir.join("rootfs.tar");
        std::fs::write(&tar, builder.into_inner().unwrap()).unwrap();
        tar
    }

    fn debugfs(image: &Path, request: &str) -> String {
        let output = std::process::Command::new("debugfs")
            .args(["-R", request])
            .arg(image)
            .output()
            .expect("debugfs is missing: apt-get install e2fsprogs");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    #[test]
    fn makes_a_clean_reproducible_filesystem_from_a_tar() {
        let dir = tempfile::tempdir().unwrap();
        let tar = sample_tar(dir.path());
        let one = dir.path().join("one.ext4");
        let two = dir.path().join("two.ext4");
        build_ext4(&tar, &one, &spec()).unwrap();
        build_ext4(&tar, &two, &spec()).unwrap();
        assert!(std::fs::read(&one).unwrap() == std::fs::read(&two).unwrap());

        let fsck = std::process::Command::new("e2fsck")
            .arg("-fn")
            .arg(&one)
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "{}",
            String::from_utf8_lossy(&fsck.stdout)
        );

        assert_eq!(debugfs(&one, "cat /etc/hosts"), "127.0.0.1 localhost\n");
        let stat = debugfs(&one, "stat /etc/hosts");
        assert!(stat.contains("Mode:  0640"), "{stat}");
        assert!(stat.contains("User:     0   Group:   999"), "{stat}");
        assert!(stat.contains("mtime: 0x5f5e1000"), "{stat}");
        assert!(debugfs(&one, "stat /etc/hosts.link").contains("Fast link dest: \"hosts\""));

        let superblock = std::process::Command::new("dumpe2fs")
            .arg("-h")
            .arg(&one)
            .output()
            .unwrap();
        let superblock = String::from_utf8_lossy(&superblock.stdout);
        for expected in [
            "Filesystem UUID:          2d3f6b1a-9c1e-4b8a-8f3e-0a1b2c3d4e5f",
            "Directory Hash Seed:      7e4b1c2d-3a5f-4e6d-9b8c-1f2e3d4c5b6a",
            "Filesystem volume name:   root",
            "Filesystem created:       Tue Nov 14 22:13:20 2023",
            "metadata_csum",
        ] {
            assert!(
                superblock.contains(expected),
                "{expected} not in\n{superblock}"
            );
        }
    }

    #[test]
    fn refuses_what_mke2fs_would_get_wrong() {
        let spec = Ext4Spec {
            size: ByteSize::from_bytes(4096 * 10 + 1),
            ..spec()
        };
        let out = Path::new("/nonexistent/out.ext4");
        assert!(matches!(
            build_ext4(Path::new("/nonexistent.tar"), out, &spec),
            Err(Ext4Error::UnalignedSize(_))
        ));
        let spec = Ext4Spec {
            label: "a-label-of-17-chr".into(),
            ..spec
        };
        assert!(matches!(
            build_ext4(Path::new("/nonexistent.tar"), out, &spec),
            Err(Ext4Error::LabelTooLong(_))
        ));
    }
}
