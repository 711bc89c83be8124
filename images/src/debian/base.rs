//! The base layer: a Debian rootfs tar made by mmdebstrap, kept in a cache.
//!
//! Owns the mmdebstrap invocation (variant `apt`: Essential packages, apt and
//! exactly the packages the caller lists, without Recommends), the customize
//! hook that strips per-build and build-host state (`customize.sh`), and the
//! cache: a base is stored under the sha256 of everything that decides its
//! contents (suite, mirrors, packages, SOURCE_DATE_EPOCH, hook, mmdebstrap
//! version), so an unchanged base is reused rather than rebuilt.
//!
//! The same inputs give the same tar only for the same mirror state: a
//! moving mirror such as deb.debian.org changes under a cached key, so
//! production names a snapshot.debian.org timestamp as its mirror, which makes
//! the key name the mirror state too.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::tool::{Tool, ToolError};

pub(crate) const MMDEBSTRAP: Tool = Tool::new("mmdebstrap", "apt-get install mmdebstrap");
const CUSTOMIZE_HOOK: &str = include_str!("customize.sh");
/// Changes whenever the way a base is made changes in a way the other inputs
/// do not show.
const RECIPE: &str = "waddle debian base v1: mmdebstrap --variant=apt";

/// What decides a base's contents.
#[derive(Clone, Debug)]
pub struct BaseSpec {
    /// `bookworm`.
    pub suite: String,
    /// mmdebstrap mirror arguments, in order: a URL
    /// (`http://snapshot.debian.org/archive/debian/20250520T000000Z`) or a
    /// whole sources line (`deb http://deb.debian.org/debian-security
    /// bookworm-security main`).
    pub mirrors: Vec<String>,
    /// Installed on top of the Essential set, without their Recommends.
    pub packages: Vec<String>,
    /// Seconds since the epoch: clamps every mtime and makes the initramfs
    /// reproducible.
    pub source_date_epoch: u64,
}

/// A built or reused base layer.
#[derive(Clone, Debug)]
pub struct BaseLayer {
    /// The rootfs tar, inside the cache directory.
    pub tar: PathBuf,
    /// The sha256 of the inputs, which names the cache entry.
    pub key: String,
    /// True if the tar came from the cache rather than from mmdebstrap.
    pub reused: bool,
}

/// Why a base could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BaseError {
    #[error(transparent)]
    Tool(#[from] ToolError),
    #[error("a base needs a suite, at least one mirror and at least one package")]
    Incomplete,
    #[error("package name `{0}` is not a Debian package name")]
    BadPackage(String),
    #[error("cannot use the base cache at {path}: {source}")]
    Cache {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Returns the base for `spec` from `cache_dir`, building it with mmdebstrap
/// first if the cache does not have it. Needs root (mmdebstrap's root mode).
pub fn base_layer(spec: &BaseSpec, cache_dir: &Path) -> Result<BaseLayer, BaseError> {
    let inputs = describe(spec, &mmdebstrap_version()?)?;
    let key = hex::encode(Sha256::digest(inputs.as_bytes()));
    let tar = cache_dir.join(format!("debian-base-{key}.tar"));
    if tar.is_file() {
        return Ok(BaseLayer {
            tar,
            key,
            reused: true,
        });
    }
    let cache_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BaseError::Cache { path, source }
    };
    fs::create_dir_all(cache_dir).map_err(cache_error(cache_dir))?;
    // Built beside its final name and renamed in, so an interrupted build
    // never leaves a cache entry.
    let scratch = tempfile::Builder::new()
        .prefix(".debian-base-")
        .tempdir_in(cache_dir)
        .map_err(cache_error(cache_dir))?;
    let hook = scratch.path().join("customize.sh");
    fs::write(&hook, CUSTOMIZE_HOOK).map_err(cache_error(&hook))?;
    let built = scratch.path().join("rootfs.tar");

    let mut command = MMDEBSTRAP.command();
    command
        .env("SOURCE_DATE_EPOCH", spec.source_date_epoch.to_string())
        .arg("--quiet")
        .arg("--variant=apt")
        .arg(format!("--include={}", sorted_packages(spec).join(",")))
        .arg(format!("--customize-hook=sh {} \"$1\"", hook.display()))
        .arg(&spec.suite)
        .arg(&built)
        .args(&spec.mirrors);
    MMDEBSTRAP.run(&mut command)?;

    let description = cache_dir.join(format!("debian-base-{key}.inputs"));
    fs::write(&description, &inputs).map_err(cache_error(&description))?;
    fs::rename(&built, &tar).map_err(cache_error(&tar))?;
    Ok(BaseLayer {
        tar,
        key,
        reused: false,
    })
}

fn mmdebstrap_version() -> Result<String, BaseError> {
    let output = MMDEBSTRAP.run(MMDEBSTRAP.command().arg("--version"))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// The text whose sha256 is the cache key: every input on its own line,
/// packages sorted and without duplicates (their order changes nothing).
fn describe(spec: &BaseSpec, mmdebstrap: &str) -> Result<String, BaseError> {
    if spec.suite.is_empty() || spec.mirrors.is_empty() || spec.packages.is_empty() {
        return Err(BaseError::Incomplete);
    }
    let packages = sorted_packages(spec);
    if let Some(bad) = packages.iter().find(|name| !is_package_name(name)) {
        return Err(BaseError::BadPackage(bad.to_string()));
    }
    let mut text = format!("{RECIPE}\n{mmdebstrap}\nsuite {}\n", spec.suite);
    for mirror in &spec.mirrors {
        let _ = writeln!(text, "mirror {mirror}");
    }
    for package in packages {
        let _ = writeln!(text, "package {package}");
    }
    let _ = writeln!(text, "source-date-epoch {}", spec.source_date_epoch);
    let _ = writeln!(
        text,
        "customize-hook sha256:{}",
        hex::encode(Sha256::digest(CUSTOMIZE_HOOK.as_bytes()))
    );
    Ok(text)
}

fn sorted_packages(spec: &BaseSpec) -> Vec<&str> {
    let mut packages: Vec<&str> = spec.packages.iter().map(String::as_str).collect();
    packages.sort_unstable();
    packages.dedup();
    packages
}

/// Debian policy §5.6.1: lowercase letters, digits, `+ - .`, at least two
/// characters, starting with a letter or digit. (So nothing can smuggle an
/// option or a comma into `--include`.)
fn is_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(packages: &[&str]) -> BaseSpec {
        BaseSpec {
            suite: "bookworm".into(),
            mirrors: vec!["http://deb.debian.org/debian".into()],
            packages: packages.iter().map(|name| name.to_string()).collect(),
            source_date_epoch: 1_700_000_000,
        }
    }

    fn key(spec: &BaseSpec, mmdebstrap: &str) -> String {
        hex::encode(Sha256::digest(describe(spec, mmdebstrap).unwrap()))
    }

    #[test]
    fn the_key_ignores_package_order_and_repeats() {
        assert_eq!(
            key(&spec(&["systemd", "haproxy"]), "mmdebstrap 1.3.5"),
            key(
                &spec(&["haproxy", "systemd", "haproxy"]),
                "mmdebstrap 1.3.5"
            ),
        );
    }

    #[test]
    fn the_key_changes_with_every_input() {
        let base = spec(&["systemd"]);
        let reference = key(&base, "mmdebstrap 1.3.5");
        let mut changed = vec![
            key(&spec(&["systemd", "haproxy"]), "mmdebstrap 1.3.5"),
            key(&base, "mmdebstrap 1.5.6"),
        ];
        let mut other = base.clone();
        other.suite = "trixie".into();
        changed.push(key(&other, "mmdebstrap 1.3.5"));
        let mut other = base.clone();
        other.mirrors = vec!["http://snapshot.debian.org/archive/debian/20250520T000000Z".into()];
        changed.push(key(&other, "mmdebstrap 1.3.5"));
        let mut other = base.clone();
        other.source_date_epoch += 1;
        changed.push(key(&other, "mmdebstrap 1.3.5"));
        for key in changed {
            assert_ne!(key, reference);
        }
        assert!(describe(&base, "mmdebstrap 1.3.5")
            .unwrap()
            .contains("customize-hook sha256:"));
    }

    #[test]
    fn refuses_incomplete_specs_and_odd_package_names() {
        assert!(matches!(
            describe(&spec(&[]), "m"),
            Err(BaseError::Incomplete)
        ));
        for bad in ["--foo", "a,b", "Haproxy", "x", "a b"] {
            assert!(
                matches!(describe(&spec(&[bad]), "m"), Err(BaseError::BadPackage(_))),
                "{bad}"
            );
        }
        assert!(describe(&spec(&["linux-image-cloud-amd64", "g++", "libc6.1"]), "m").is_ok());
    }

    #[test]
    fn a_cached_base_is_reused_without_running_mmdebstrap_again() {
        // Needs mmdebstrap only for its version, which is part of the key.
        let cache = tempfile::tempdir().unwrap();
        let spec = spec(&["systemd"]);
        let version = mmdebstrap_version().expect("apt-get install mmdebstrap");
        let key = key(&spec, &version);
        let cached = cache.path().join(format!("debian-base-{key}.tar"));
        fs::write(&cached, b"stand-in").unwrap();
        let layer = base_layer(&spec, cache.path()).unwrap();
        assert!(layer.reused);
        assert_eq!(layer.tar, cached);
        assert_eq!(layer.key, key);
    }
}
