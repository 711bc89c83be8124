//! The overlay layer: the files one image adds to or replaces in its base
//! (rendered configs, the cloud-init seed, systemd units and drop-ins),
//! written as a tar.
//!
//! Owns the overlay's determinism: entries in path order, every entry owned by
//! 0:0 with the mode the caller gave (directories the caller did not name are
//! 0755) and one mtime, so the same files always give the same bytes. Paths
//! are checked when added, so a bad path fails where it was written rather
//! than deep inside mke2fs. Large files (release binaries) are added by their
//! path on the host and streamed into the tar, never held in memory.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::PathBuf;

use tar::{Builder, EntryType, Header};

/// What an overlay path holds.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    File {
        mode: u32,
        contents: Vec<u8>,
    },
    /// A regular file whose contents are read from the host when the tar is
    /// written.
    HostFile {
        mode: u32,
        source: PathBuf,
    },
    Symlink {
        target: String,
    },
    Directory,
}

/// Files and symlinks to lay over a base rootfs, keyed by absolute path.
#[derive(Clone, Debug, Default)]
pub struct Overlay {
    /// Paths without the leading `/`.
    entries: BTreeMap<String, Node>,
}

/// Why an overlay entry was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OverlayError {
    #[error("overlay path `{0}` must be absolute, without empty, `.` or `..` parts, and not `/`")]
    BadPath(String),
    #[error("overlay path `{0}` is given twice; give each path once")]
    Duplicate(String),
    #[error(
        "overlay path `{path}` lies under `{file}`, which the overlay makes a file or symlink"
    )]
    UnderFile { path: String, file: String },
    #[error("mode {mode:o} of overlay path `{path}` has bits outside 07777")]
    BadMode { path: String, mode: u32 },
    #[error("symlink `{0}` has an empty target")]
    EmptyTarget(String),
}

/// Permission bits only: type bits come from the entry.
fn check_mode(path: &str, mode: u32) -> Result<(), OverlayError> {
    if mode > 0o7777 {
        return Err(OverlayError::BadMode {
            path: path.to_string(),
            mode,
        });
    }
    Ok(())
}

impl Overlay {
    pub fn new() -> Self {
        Overlay::default()
    }

    /// Adds a regular file at the absolute `path` with permission bits `mode`
    /// (e.g. 0o644).
    pub fn add_file(
        &mut self,
        path: &str,
        mode: u32,
        contents: impl Into<Vec<u8>>,
    ) -> Result<&mut Self, OverlayError> {
        check_mode(path, mode)?;
        self.insert(
            path,
            Node::File {
                mode,
                contents: contents.into(),
            },
        )
    }

    /// Adds a regular file at the absolute `path` whose contents are the host
    /// file `source`, read only when the tar is written (release binaries of
    /// hundreds of MiB never sit in memory).
    pub fn add_host_file(
        &mut self,
        path: &str,
        mode: u32,
        source: impl Into<PathBuf>,
    ) -> Result<&mut Self, OverlayError> {
        check_mode(path, mode)?;
        self.insert(
            path,
            Node::HostFile {
                mode,
                source: source.into(),
            },
        )
    }

    /// Adds a symlink at the absolute `path` pointing at `target` (stored as
    /// given, relative or absolute).
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<&mut Self, OverlayError> {
        if target.is_empty() {
            return Err(OverlayError::EmptyTarget(path.to_string()));
        }
        self.insert(
            path,
            Node::Symlink {
                target: target.to_string(),
            },
        )
    }

    fn insert(&mut self, path: &str, node: Node) -> Result<&mut Self, OverlayError> {
        let relative = path
            .strip_prefix('/')
            .filter(|rest| {
                rest.split('/')
                    .all(|part| !matches!(part, "" | "." | "..") && !part.contains('\0'))
            })
            .ok_or_else(|| OverlayError::BadPath(path.to_string()))?;
        if self.entries.contains_key(relative) {
            return Err(OverlayError::Duplicate(path.to_string()));
        }
        for ancestor in ancestors(relative) {
            if self.entries.contains_key(ancestor) {
                return Err(OverlayError::UnderFile {
                    path: path.to_string(),
                    file: format!("/{ancestor}"),
                });
            }
        }
        let prefix = format!("{relative}/");
        if let Some(below) = self.entries.keys().find(|key| key.starts_with(&prefix)) {
            return Err(OverlayError::UnderFile {
                path: format!("/{below}"),
                file: path.to_string(),
            });
        }
        self.entries.insert(relative.to_string(), node);
        Ok(self)
    }

    /// The overlay as a tar in memory (see [`Overlay::write_tar`]).
    pub fn to_tar(&self, mtime: u64) -> io::Result<Vec<u8>> {
        self.write_tar(mtime, Vec::new())
    }

    /// Writes the overlay as a tar to `out`: every entry and every directory
    /// above one, in path order (a parent sorts before its children), owned
    /// by 0:0, with `mtime` as every time. Host files are streamed.
    pub fn write_tar<W: Write>(&self, mtime: u64, out: W) -> io::Result<W> {
        let mut all: BTreeMap<&str, &Node> = BTreeMap::new();
        for (path, node) in &self.entries {
            for ancestor in ancestors(path) {
                all.insert(ancestor, &Node::Directory);
            }
            all.insert(path, node);
        }
        let mut builder = Builder::new(out);
        for (path, node) in all {
            let mut header = Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(mtime);
            match node {
                Node::Directory => {
                    header.set_entry_type(EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    builder.append_data(&mut header, path, io::empty())?;
                }
                Node::File { mode, contents } => {
                    header.set_entry_type(EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(contents.len() as u64);
                    builder.append_data(&mut header, path, contents.as_slice())?;
                }
                Node::HostFile { mode, source } => {
                    let file = File::open(source).map_err(|error| {
                        io::Error::new(
                            error.kind(),
                            format!("cannot read {}: {error}", source.display()),
                        )
                    })?;
                    header.set_entry_type(EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(file.metadata()?.len());
                    builder.append_data(&mut header, path, io::BufReader::new(file))?;
                }
                Node::Symlink { target } => {
                    header.set_entry_type(EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target)?;
                }
            }
        }
        builder.into_inner()
    }
}

/// `a/b/c` → `a`, `a/b`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/')
        .map(move |(index, _)| &path[..index])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn listing(tar: &[u8]) -> Vec<String> {
        let mut archive = tar::Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let header = entry.header().clone();
                let mut contents = String::new();
                entry.read_to_string(&mut contents).unwrap();
                let link = entry
                    .link_name()
                    .unwrap()
                    .map(|link| format!(" -> {}", link.display()))
                    .unwrap_or_default();
                format!(
                    "{:?} {} {:o} {}:{} {} {contents}{link}",
                    header.entry_type(),
                    entry.path().unwrap().display(),
                    header.mode().unwrap(),
                    header.uid().unwrap(),
                    header.gid().unwrap(),
                    header.mtime().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn writes_parents_first_with_fixed_owner_and_time() {
        let mut overlay = Overlay::new();
        overlay
            .add_file("/var/lib/cloud/seed/nocloud/meta-data", 0o600, "id: x\n")
            .unwrap()
            .add_symlink(
                "/etc/resolv.conf",
                "../run/systemd/resolve/stub-resolv.conf",
            )
            .unwrap()
            .add_file("/etc/haproxy/haproxy.cfg", 0o644, "global\n")
            .unwrap();
        assert_eq!(
            listing(&overlay.to_tar(1_700_000_000).unwrap()),
            [
                "Directory etc 755 0:0 1700000000 ",
                "Directory etc/haproxy 755 0:0 1700000000 ",
                "Regular etc/haproxy/haproxy.cfg 644 0:0 1700000000 global\n",
                "Symlink etc/resolv.conf 777 0:0 1700000000  -> ../run/systemd/resolve/stub-resolv.conf",
                "Directory var 755 0:0 1700000000 ",
                "Directory var/lib 755 0:0 1700000000 ",
                "Directory var/lib/cloud 755 0:0 1700000000 ",
                "Directory var/lib/cloud/seed 755 0:0 1700000000 ",
                "Directory var/lib/cloud/seed/nocloud 755 0:0 1700000000 ",
                "Regular var/lib/cloud/seed/nocloud/meta-data 600 0:0 1700000000 id: x\n",
            ]
        );
    }

    #[test]
    fn the_same_files_in_any_order_give_the_same_bytes() {
        let mut one = Overlay::new();
        one.add_file("/b", 0o644, "b").unwrap();
        one.add_file("/a/x", 0o644, "x").unwrap();
        let mut two = Overlay::new();
        two.add_file("/a/x", 0o644, "x").unwrap();
        two.add_file("/b", 0o644, "b").unwrap();
        assert_eq!(one.to_tar(7).unwrap(), two.to_tar(7).unwrap());
    }

    #[test]
    fn host_files_are_read_when_written_with_the_overlay_mode_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("teleport");
        std::fs::write(&source, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&source, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let mut overlay = Overlay::new();
        overlay
            .add_host_file("/usr/local/bin/teleport", 0o755, &source)
            .unwrap();
        let listed = listing(&overlay.to_tar(5).unwrap());
        assert_eq!(
            listed.last().unwrap(),
            "Regular usr/local/bin/teleport 755 0:0 5 #!/bin/sh\n"
        );
        std::fs::remove_file(&source).unwrap();
        let error = overlay.to_tar(5).unwrap_err();
        assert!(error.to_string().contains("teleport"), "{error}");
    }

    #[test]
    fn long_paths_survive() {
        let long = format!("/{}/file", "d".repeat(150));
        let mut overlay = Overlay::new();
        overlay.add_file(&long, 0o644, "x").unwrap();
        let listed = listing(&overlay.to_tar(0).unwrap());
        assert!(listed[1].contains(&long[1..]), "{listed:?}");
    }

    #[test]
    fn refuses_bad_paths_duplicates_and_files_as_directories() {
        let mut overlay = Overlay::new();
        for bad in ["etc/x", "/", "/etc//x", "/etc/../x", "/etc/./x", "/etc/x/"] {
            assert_eq!(
                overlay.add_file(bad, 0o644, "").unwrap_err(),
                OverlayError::BadPath(bad.into())
            );
        }
        overlay.add_file("/etc/x", 0o644, "").unwrap();
        assert_eq!(
            overlay.add_symlink("/etc/x", "y").unwrap_err(),
            OverlayError::Duplicate("/etc/x".into())
        );
        assert!(matches!(
            overlay.add_file("/etc/x/y", 0o644, ""),
            Err(OverlayError::UnderFile { .. })
        ));
        assert!(matches!(
            overlay.add_file("/etc", 0o644, ""),
            Err(OverlayError::UnderFile { .. })
        ));
        assert!(matches!(
            overlay.add_file("/etc/y", 0o10644, ""),
            Err(OverlayError::BadMode { .. })
        ));
        assert!(matches!(
            overlay.add_symlink("/etc/z", ""),
            Err(OverlayError::EmptyTarget(_))
        ));
    }
}
