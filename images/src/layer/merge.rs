//! Stacking an overlay tar on a base tar: one tar stream holding the base's
//! entries, minus those the overlay replaces, followed by the overlay's.
//!
//! Base entries are copied byte for byte, with the PAX records and GNU
//! long-name members in front of them, so xattrs (the ACLs on
//! `/var/log/journal`), long names and hard links reach mke2fs exactly as
//! mmdebstrap wrote them. An overlay file or symlink replaces the base entry at
//! its path; an overlay directory that the base already has is dropped, so the
//! base keeps its owner and mode. Merges that would leave the result
//! inconsistent are refused: a file replacing a directory, a directory where
//! the base has a file or symlink (`/lib` is a symlink in Debian 12), and a
//! replaced file that a later hard link still points at.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Seek, SeekFrom, Write};

use tar::{Archive, Builder, EntryType, Header};

use super::path::normalize;

/// Which input a problem was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layer {
    Base,
    Overlay,
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layer::Base => "base",
            Layer::Overlay => "overlay",
        })
    }
}

/// Why two layers could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("cannot read the {layer} layer: {source}")]
    Read { layer: Layer, source: io::Error },
    #[error("cannot write the merged layer: {0}")]
    Write(io::Error),
    #[error("the {layer} layer has {what} at `/{path}`, which merging does not support")]
    Unsupported {
        layer: Layer,
        path: String,
        what: &'static str,
    },
    #[error("the overlay makes `/{0}` a file or symlink, but the base has a directory there; put files inside it instead")]
    ReplacesDirectory(String),
    #[error("the overlay needs `/{0}` to be a directory, but in the base it is a file or symlink (Debian 12's /lib, /bin and /sbin are symlinks into /usr); use the path under /usr")]
    DirectoryOverFile(String),
    #[error("base entry `/{link}` is a hard link to `/{target}`, which the overlay replaces; replace `/{link}` as well")]
    DanglingHardLink { link: String, target: String },
}

/// Writes `base` with `overlay` on top to `out` as one tar, and returns `out`.
/// The overlay is read twice (its paths first, then its contents), so it is
/// rewound in between rather than held in memory.
pub fn merge<R: Read, O: Read + Seek, W: Write>(
    base: R,
    mut overlay: O,
    out: W,
) -> Result<W, MergeError> {
    let rewind = |overlay: &mut O| {
        overlay
            .seek(SeekFrom::Start(0))
            .map(drop)
            .map_err(|source| MergeError::Read {
                layer: Layer::Overlay,
                source,
            })
    };
    // Overlay paths and whether each is a directory.
    let mut overlay_paths: HashMap<Vec<u8>, bool> = HashMap::new();
    rewind(&mut overlay)?;
    walk(&mut overlay, Layer::Overlay, |member, _| {
        overlay_paths.insert(member.path.clone(), member.is_directory());
        Ok(())
    })?;

    let mut builder = Builder::new(out);
    let mut base_paths: HashMap<Vec<u8>, bool> = HashMap::new();
    let mut replaced: HashSet<Vec<u8>> = HashSet::new();
    walk(base, Layer::Base, |member, data| {
        if overlay_paths.get(&member.path) == Some(&false) {
            if member.is_directory() {
                return Err(MergeError::ReplacesDirectory(display(&member.path)));
            }
            replaced.insert(member.path.clone());
            return Ok(());
        }
        if member.header.entry_type() == EntryType::Link {
            if let Some(target) = member.link.as_deref().map(normalize) {
                if replaced.contains(target) {
                    return Err(MergeError::DanglingHardLink {
                        link: display(&member.path),
                        target: display(target),
                    });
                }
            }
        }
        base_paths.insert(member.path.clone(), member.is_directory());
        member.copy(&mut builder, data)
    })?;

    rewind(&mut overlay)?;
    walk(&mut overlay, Layer::Overlay, |member, data| {
        if member.is_directory() {
            match base_paths.get(&member.path) {
                Some(true) => return Ok(()),
                Some(false) => return Err(MergeError::DirectoryOverFile(display(&member.path))),
                None => {}
            }
        }
        member.copy(&mut builder, data)
    })?;

    builder.into_inner().map_err(MergeError::Write)
}

/// One logical entry: the PAX and GNU long-name members that describe it, its
/// own header, and the path and link target they add up to.
struct Member {
    extensions: Vec<(Header, Vec<u8>)>,
    header: Header,
    /// Normalised (see `path::normalize`).
    path: Vec<u8>,
    /// As stored: a hard link's target path or a symlink's target.
    link: Option<Vec<u8>>,
}

impl Member {
    fn is_directory(&self) -> bool {
        self.header.entry_type() == EntryType::Directory
    }

    fn copy<W: Write>(
        &self,
        builder: &mut Builder<W>,
        data: &mut dyn Read,
    ) -> Result<(), MergeError> {
        for (header, contents) in &self.extensions {
            builder
                .append(header, contents.as_slice())
                .map_err(MergeError::Write)?;
        }
        builder
            .append(&self.header, data)
            .map_err(MergeError::Write)
    }
}

/// Calls `visit` with every logical entry of `input`, in order, and a reader
/// of its contents.
fn walk<R: Read>(
    input: R,
    layer: Layer,
    mut visit: impl FnMut(&Member, &mut dyn Read) -> Result<(), MergeError>,
) -> Result<(), MergeError> {
    let read_error = |source| MergeError::Read { layer, source };
    let mut archive = Archive::new(input);
    let mut extensions: Vec<(Header, Vec<u8>)> = Vec::new();
    for entry in archive.entries().map_err(read_error)?.raw(true) {
        let mut entry = entry.map_err(read_error)?;
        let header = entry.header().clone();
        let kind = header.entry_type();
        if kind.is_pax_local_extensions() || kind.is_gnu_longname() || kind.is_gnu_longlink() {
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents).map_err(read_error)?;
            extensions.push((header, contents));
            continue;
        }
        let (path, link) = names(&extensions, &header, layer)?;
        let unsupported = |what| MergeError::Unsupported {
            layer,
            path: display(&path),
            what,
        };
        if kind.is_pax_global_extensions() {
            return Err(unsupported("a PAX global header"));
        }
        if kind.is_gnu_sparse() {
            return Err(unsupported("a GNU sparse file"));
        }
        let member = Member {
            extensions: std::mem::take(&mut extensions),
            header,
            path: normalize(&path).to_vec(),
            link,
        };
        visit(&member, &mut entry)?;
    }
    Ok(())
}

/// The path and link target of an entry: from its PAX records or GNU
/// long-name members if it has them, else from its header.
fn names(
    extensions: &[(Header, Vec<u8>)],
    header: &Header,
    layer: Layer,
) -> Result<(Vec<u8>, Option<Vec<u8>>), MergeError> {
    let mut path = None;
    let mut link = None;
    for (extension, contents) in extensions {
        let kind = extension.entry_type();
        if kind.is_gnu_longname() {
            path = Some(until_nul(contents).to_vec());
        } else if kind.is_gnu_longlink() {
            link = Some(until_nul(contents).to_vec());
        } else {
            for (key, value) in pax_records(contents) {
                match key {
                    b"path" => path = Some(value.to_vec()),
                    b"linkpath" => link = Some(value.to_vec()),
                    // Our copy writes the header's size; a PAX size (files
                    // over 8 GiB) would disagree with it.
                    b"size" => {
                        let path = path.clone().unwrap_or_else(|| header.path_bytes().to_vec());
                        return Err(MergeError::Unsupported {
                            layer,
                            path: display(&path),
                            what: "a PAX size record",
                        });
                    }
                    _ => {}
                }
            }
        }
    }
    let path = path.unwrap_or_else(|| header.path_bytes().into_owned());
    let link = link.or_else(|| header.link_name_bytes().map(|name| name.into_owned()));
    Ok((path, link))
}

/// The `key=value` pairs of a PAX extended header: records of the form
/// `<length> <key>=<value>\n`, where length counts the whole record. Stops at
/// the first malformed record.
fn pax_records(mut data: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut records = Vec::new();
    while let Some(space) = data.iter().position(|&byte| byte == b' ') {
        let Some(length) = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|digits| digits.parse::<usize>().ok())
            .filter(|&length| length > space + 1 && length <= data.len())
        else {
            break;
        };
        let record = &data[space + 1..length];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(equals) = record.iter().position(|&byte| byte == b'=') {
            records.push((&record[..equals], &record[equals + 1..]));
        }
        data = &data[length..];
    }
    records
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    bytes.split(|&byte| byte == 0).next().unwrap_or(bytes)
}

fn display(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Overlay;

    /// A base in the shape mmdebstrap writes: `./`-prefixed PAX entries, an
    /// xattr record, a long name, a symlinked /lib and a hard link.
    fn base() -> Vec<u8> {
        let mut builder = Builder::new(Vec::new());
        let mut add = |path: &str,
                       kind: EntryType,
                       contents: &[u8],
                       link: Option<&str>,
                       pax: &[(&str, &[u8])]| {
            let mut header = Header::new_ustar();
            header.set_entry_type(kind);
            header.set_mode(if kind == EntryType::Directory {
                0o755
            } else {
                0o644
            });
            header.set_uid(0);
            header.set_gid(if path.contains("journal") { 999 } else { 0 });
            header.set_mtime(1);
            header.set_size(contents.len() as u64);
            if !pax.is_empty() {
                append_pax(&mut builder, pax);
            }
            match link {
                Some(target) => builder.append_link(&mut header, path, target).unwrap(),
                None => builder.append_data(&mut header, path, contents).unwrap(),
            }
        };
        add("./", EntryType::Directory, b"", None, &[]);
        add("./etc/", EntryType::Directory, b"", None, &[]);
        add(
            "./etc/hostname",
            EntryType::Regular,
            b"buildhost\n",
            None,
            &[],
        );
        add(
            "./etc/resolv.conf",
            EntryType::Regular,
            b"nameserver 10.0.0.1\n",
            None,
            &[],
        );
        add("./lib", EntryType::Symlink, b"", Some("usr/lib"), &[]);
        add("./usr/", EntryType::Directory, b"", None, &[]);
        add("./usr/bin/", EntryType::Directory, b"", None, &[]);
        add("./usr/bin/perl", EntryType::Regular, b"#!perl", None, &[]);
        add(
            "./usr/bin/perl5.36.0",
            EntryType::Link,
            b"",
            Some("./usr/bin/perl"),
            &[],
        );
        let long = format!("./usr/{}", "l".repeat(120));
        add(
            &long,
            EntryType::Regular,
            b"long",
            None,
            &[("path", long.as_bytes())],
        );
        add(
            "./var/log/journal/",
            EntryType::Directory,
            b"",
            None,
            &[("SCHILY.xattr.system.posix_acl_access", b"\x02\x00acl")],
        );
        builder.into_inner().unwrap()
    }

    /// A PAX extended header member (`x`) carrying `records`.
    fn append_pax(builder: &mut Builder<Vec<u8>>, records: &[(&str, &[u8])]) {
        let mut data = Vec::new();
        for (key, value) in records {
            let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
            let mut length = rest + 1;
            while length.to_string().len() + rest != length {
                length = length.to_string().len() + rest;
            }
            data.extend_from_slice(format!("{length} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        let mut header = Header::new_ustar();
        header.set_entry_type(EntryType::XHeader);
        header.set_mode(0o644);
        header.set_size(data.len() as u64);
        builder
            .append_data(&mut header, "PaxHeaders/entry", data.as_slice())
            .unwrap();
    }

    fn listing(tar: &[u8]) -> Vec<String> {
        let mut archive = Archive::new(tar);
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let mut contents = String::new();
                entry.read_to_string(&mut contents).unwrap();
                let xattrs = entry
                    .pax_extensions()
                    .unwrap()
                    .map(|records| {
                        records
                            .filter_map(|record| {
                                let record = record.unwrap();
                                record
                                    .key()
                                    .unwrap()
                                    .starts_with("SCHILY.xattr")
                                    .then(|| format!(" xattr:{}", record.key().unwrap()))
                            })
                            .collect::<String>()
                    })
                    .unwrap_or_default();
                let link = entry
                    .link_name()
                    .unwrap()
                    .map(|link| format!(" -> {}", link.display()))
                    .unwrap_or_default();
                format!(
                    "{} {:?} gid={} {contents:?}{link}{xattrs}",
                    normalize(&entry.path_bytes()).escape_ascii(),
                    entry.header().entry_type(),
                    entry.header().gid().unwrap(),
                )
            })
            .collect()
    }

    fn merged(overlay: &Overlay) -> Result<Vec<u8>, MergeError> {
        merge(
            base().as_slice(),
            io::Cursor::new(overlay.to_tar(9).unwrap()),
            Vec::new(),
        )
    }

    #[test]
    fn overlay_entries_replace_and_extend_the_base_which_is_kept_as_is() {
        let mut overlay = Overlay::new();
        overlay
            .add_file("/etc/hostname", 0o644, "edge\n")
            .unwrap()
            .add_symlink(
                "/etc/resolv.conf",
                "../run/systemd/resolve/stub-resolv.conf",
            )
            .unwrap()
            .add_file("/etc/haproxy/haproxy.cfg", 0o644, "global\n")
            .unwrap()
            .add_file("/var/log/journal/keep", 0o644, "k")
            .unwrap();
        let out = merged(&overlay).unwrap();
        let long = format!("usr/{}", "l".repeat(120));
        assert_eq!(
            listing(&out),
            [
                " Directory gid=0 \"\"".to_string(),
                "etc Directory gid=0 \"\"".into(),
                "lib Symlink gid=0 \"\" -> usr/lib".into(),
                "usr Directory gid=0 \"\"".into(),
                "usr/bin Directory gid=0 \"\"".into(),
                "usr/bin/perl Regular gid=0 \"#!perl\"".into(),
                "usr/bin/perl5.36.0 Link gid=0 \"\" -> ./usr/bin/perl".into(),
                format!("{long} Regular gid=0 \"long\""),
                "var/log/journal Directory gid=999 \"\" xattr:SCHILY.xattr.system.posix_acl_access"
                    .into(),
                // The overlay: directories the base has are dropped.
                "etc/haproxy Directory gid=0 \"\"".into(),
                "etc/haproxy/haproxy.cfg Regular gid=0 \"global\\n\"".into(),
                "etc/hostname Regular gid=0 \"edge\\n\"".into(),
                "etc/resolv.conf Symlink gid=0 \"\" -> ../run/systemd/resolve/stub-resolv.conf"
                    .into(),
                "var Directory gid=0 \"\"".into(),
                "var/log Directory gid=0 \"\"".into(),
                "var/log/journal/keep Regular gid=0 \"k\"".into(),
            ]
        );
    }

    #[test]
    fn base_entries_are_copied_byte_for_byte() {
        let base = base();
        let out = merge(
            base.as_slice(),
            io::Cursor::new(Overlay::new().to_tar(0).unwrap()),
            Vec::new(),
        )
        .unwrap();
        // Everything before the base's end-of-archive blocks is unchanged.
        let end = base.len() - 1024;
        assert!(out[..end] == base[..end]);
    }

    #[test]
    fn refuses_inconsistent_merges() {
        let mut overlay = Overlay::new();
        overlay.add_file("/usr/bin", 0o644, "").unwrap();
        assert!(
            matches!(merged(&overlay), Err(MergeError::ReplacesDirectory(path)) if path == "usr/bin")
        );

        let mut overlay = Overlay::new();
        overlay
            .add_file("/lib/systemd/system/x.service", 0o644, "")
            .unwrap();
        assert!(
            matches!(merged(&overlay), Err(MergeError::DirectoryOverFile(path)) if path == "lib")
        );

        let mut overlay = Overlay::new();
        overlay.add_file("/usr/bin/perl", 0o755, "").unwrap();
        let error = merged(&overlay).unwrap_err();
        assert!(
            matches!(&error, MergeError::DanglingHardLink { link, target } if link == "usr/bin/perl5.36.0" && target == "usr/bin/perl"),
            "{error}"
        );

        overlay.add_file("/usr/bin/perl5.36.0", 0o755, "").unwrap();
        merged(&overlay).unwrap();
    }

    #[test]
    fn pax_records_parse_and_stop_at_garbage() {
        let data = b"12 path=a/b\n20 linkpath=c/d/e/f\nxx junk";
        assert_eq!(
            pax_records(data),
            [
                (&b"path"[..], &b"a/b"[..]),
                (&b"linkpath"[..], &b"c/d/e/f"[..])
            ]
        );
    }
}
