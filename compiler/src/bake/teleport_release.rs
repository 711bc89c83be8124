//! Teleport from its official release tarball
//! (`teleport-v<version>-linux-amd64-bin.tar.gz`, Community Edition),
//! fetched through the one network module, pinned in the lock file, and
//! unpacked (tar + flate2) into the cache: the binaries the Teleport image
//! bakes into `/usr/local/bin`. Nothing is installed at first boot.

use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use super::BakeError;
use crate::lock::Lock;
use crate::net::fetch::Cache;

/// Where Teleport publishes release tarballs.
pub const CDN: &str = "https://cdn.teleport.dev";

/// The binaries the image needs, as they are named in the tarball
/// (`teleport/<name>`).
pub const BINARIES: &[&str] = &["teleport", "tctl", "tsh"];

pub fn tarball_url(cdn: &str, version: &str) -> String {
    format!(
        "{}/teleport-v{}-linux-amd64-bin.tar.gz",
        cdn.trim_end_matches('/'),
        version.trim_start_matches('v')
    )
}

/// The unpacked binaries of `version`: `(name, path in the cache)`.
pub struct TeleportRelease {
    pub url: String,
    pub sha256: String,
    pub binaries: Vec<(String, PathBuf)>,
}

pub fn fetch(
    cache: &Cache,
    lock: &mut Lock,
    locked: bool,
    cdn: &str,
    version: &str,
    progress: &dyn Fn(u64, Option<u64>),
) -> Result<TeleportRelease, BakeError> {
    let url = tarball_url(cdn, version);
    let tarball = cache.fetch(lock, locked, &format!("teleport {version}"), &url, progress)?;
    let sha256 = lock.pinned(&url).unwrap_or_default().to_string();
    let dir = cache.dir().join("teleport").join(&sha256);
    let binaries: Vec<(String, PathBuf)> = BINARIES
        .iter()
        .map(|name| (name.to_string(), dir.join(name)))
        .collect();
    if !binaries.iter().all(|(_, path)| path.is_file()) {
        unpack(&tarball, &dir)?;
    }
    Ok(TeleportRelease {
        url,
        sha256,
        binaries,
    })
}

/// Extracts `teleport/{teleport,tctl,tsh}` into `dir` (a temp dir renamed
/// in when complete). A tarball without one of them is an error: the image
/// would not run Teleport.
fn unpack(tarball: &Path, dir: &Path) -> Result<(), BakeError> {
    let io = |what: String| move |source| BakeError::Io { what, source };
    let parent = dir.parent().expect("cache paths have a parent");
    fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    let staging = tempfile::tempdir_in(parent)
        .map_err(io(format!("creating a temp dir in {}", parent.display())))?;
    let file = File::open(tarball).map_err(io(format!("reading {}", tarball.display())))?;
    let mut archive = tar::Archive::new(GzDecoder::new(BufReader::new(file)));
    let mut found = Vec::new();
    let entries = archive
        .entries()
        .map_err(io(format!("reading {}", tarball.display())))?;
    for entry in entries {
        let mut entry = entry.map_err(io(format!("reading {}", tarball.display())))?;
        let path = entry
            .path()
            .map_err(io(format!("reading {}", tarball.display())))?
            .into_owned();
        let name = path
            .strip_prefix("teleport")
            .ok()
            .and_then(|p| p.to_str())
            .map(str::to_string);
        if let Some(name) = name.filter(|n| BINARIES.contains(&n.as_str())) {
            let target = staging.path().join(&name);
            let mut out =
                File::create(&target).map_err(io(format!("writing {}", target.display())))?;
            std::io::copy(&mut entry, &mut out).map_err(io(format!("unpacking {name}")))?;
            found.push(name);
        }
    }
    if let Some(missing) = BINARIES.iter().find(|b| !found.iter().any(|f| f == *b)) {
        return Err(BakeError::Io {
            what: format!("{} has no teleport/{missing}", tarball.display()),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let _ = fs::remove_dir_all(dir);
    let staged = staging.keep();
    fs::rename(&staged, dir).map_err(io(format!("renaming into {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A release tarball laid out like Teleport's, gzip'd.
    fn tarball(names: &[&str]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for name in names {
            let body = format!("#!/bin/sh\necho {name}\n");
            let mut header = tar::Header::new_gnu();
            header.set_size(body.len() as u64);
            header.set_mode(0o755);
            header.set_cksum();
            builder
                .append_data(&mut header, format!("teleport/{name}"), body.as_bytes())
                .unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    /// A cache that already holds `bytes` for the pinned tarball URL.
    fn primed(dir: &Path, bytes: &[u8]) -> (Cache, Lock) {
        use sha2::{Digest, Sha256};
        let sha = hex::encode(Sha256::digest(bytes));
        fs::create_dir_all(dir.join("cache/sha256")).unwrap();
        fs::write(dir.join("cache/sha256").join(&sha), bytes).unwrap();
        let mut lock = Lock::load(&dir.join("b.lock")).unwrap();
        lock.record("teleport", &tarball_url(CDN, "18.2.1"), &sha);
        (Cache::new(dir.join("cache")), lock)
    }

    #[test]
    fn unpacks_the_binaries_from_a_pinned_cached_tarball() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, mut lock) = primed(
            dir.path(),
            &tarball(&["teleport", "tctl", "tsh", "fdpass-teleport"]),
        );
        let release = fetch(&cache, &mut lock, true, CDN, "v18.2.1", &|_, _| {}).unwrap();
        let names: Vec<&str> = release.binaries.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, BINARIES);
        for (name, path) in &release.binaries {
            assert_eq!(
                fs::read_to_string(path).unwrap(),
                format!("#!/bin/sh\necho {name}\n")
            );
        }
    }

    #[test]
    fn a_tarball_without_tctl_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, mut lock) = primed(dir.path(), &tarball(&["teleport", "tsh"]));
        let err = fetch(&cache, &mut lock, true, CDN, "18.2.1", &|_, _| {})
            .err()
            .unwrap();
        assert!(err.to_string().contains("teleport/tctl"), "{err}");
    }

    #[test]
    fn url_is_the_community_tarball() {
        assert_eq!(
            tarball_url(CDN, "18.2.1"),
            "https://cdn.teleport.dev/teleport-v18.2.1-linux-amd64-bin.tar.gz"
        );
    }
}
