//! The lock file (`<blueprint>.lock`, e.g. `blueprints/waddle.lock`): the
//! sha256 of every upstream input — Talos images, the Teleport tarball, the
//! Debian snapshot, upstream manifests, the Cilium chart — recorded on first
//! fetch and verified on every later one, as Cargo.lock does for crates.
//! Inputs are named by version in the blueprint; the lock pins their bytes.
//! An image the bootstrap starts is an entry too: its registry manifest URL
//! and, as its sha256, the digest it runs by.
//!
//! The file is TOML, sorted by URL, rewritten only when an entry is added,
//! so it diffs cleanly in review.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const HEADER: &str = "\
# waddlec lock file: the sha256 of every upstream input, recorded on first
# fetch and verified on every later one. Commit it; `waddlec build --locked`
# refuses to fetch anything not pinned here.
";

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockDocument {
    version: u32,
    #[serde(default, rename = "input")]
    inputs: Vec<LockedInput>,
}

/// One pinned upstream input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedInput {
    /// What it is, for people (`talos-image waddle-cluster`).
    pub name: String,
    pub url: String,
    pub sha256: String,
}

#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    inputs: BTreeMap<String, LockedInput>,
    changed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot read the lock file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the lock file {path} is invalid: {problem}")]
    Invalid { path: String, problem: String },
    #[error("cannot write the lock file {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Lock {
    /// The lock file beside `blueprint`: `waddle.toml` → `waddle.lock`.
    pub fn path_for(blueprint: &Path) -> PathBuf {
        blueprint.with_extension("lock")
    }

    /// Reads the lock at `path`; a missing file is an empty lock.
    pub fn load(path: &Path) -> Result<Self, LockError> {
        let shown = path.display().to_string();
        let document = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str::<LockDocument>(&text).map_err(|e| LockError::Invalid {
                path: shown.clone(),
                problem: e.message().to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => LockDocument {
                version: 1,
                inputs: Vec::new(),
            },
            Err(source) => {
                return Err(LockError::Read {
                    path: shown,
                    source,
                })
            }
        };
        if document.version != 1 {
            return Err(LockError::Invalid {
                path: shown,
                problem: format!("version {} is not 1", document.version),
            });
        }
        let mut inputs = BTreeMap::new();
        for input in document.inputs {
            let valid = input.sha256.len() == 64
                && input
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
            if !valid {
                return Err(LockError::Invalid {
                    path: shown,
                    problem: format!("`{}` has no lowercase hex sha256", input.url),
                });
            }
            inputs.insert(input.url.clone(), input);
        }
        Ok(Lock {
            path: path.to_path_buf(),
            inputs,
            changed: false,
        })
    }

    /// The pinned sha256 of `url`, if any.
    pub fn pinned(&self, url: &str) -> Option<&str> {
        self.inputs.get(url).map(|i| i.sha256.as_str())
    }

    /// Pins `url` (first fetch).
    pub fn record(&mut self, name: &str, url: &str, sha256: &str) {
        self.inputs.insert(
            url.to_string(),
            LockedInput {
                name: name.to_string(),
                url: url.to_string(),
                sha256: sha256.to_string(),
            },
        );
        self.changed = true;
    }

    /// Writes the lock if an entry was added (temp file, then rename).
    pub fn save(&self) -> Result<(), LockError> {
        if !self.changed {
            return Ok(());
        }
        let document = LockDocument {
            version: 1,
            inputs: self.inputs.values().cloned().collect(),
        };
        let write_error = |source| LockError::Write {
            path: self.path.display().to_string(),
            source,
        };
        let text = format!(
            "{HEADER}{}",
            toml::to_string(&document).map_err(|e| write_error(std::io::Error::other(e)))?
        );
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut temp = tempfile::NamedTempFile::new_in(&dir).map_err(write_error)?;
        std::io::Write::write_all(&mut temp, text.as_bytes()).map_err(write_error)?;
        temp.persist(&self.path).map_err(|e| write_error(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_sorted_and_only_writes_when_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.lock");
        let mut lock = Lock::load(&path).unwrap();
        lock.save().unwrap();
        assert!(!path.exists(), "nothing recorded, nothing written");
        lock.record("b", "https://z.example/b", &"b".repeat(64));
        lock.record("a", "https://a.example/a", &"a".repeat(64));
        lock.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.find("a.example").unwrap() < text.find("z.example").unwrap());
        let again = Lock::load(&path).unwrap();
        assert_eq!(
            again.pinned("https://a.example/a"),
            Some("a".repeat(64).as_str())
        );
        assert_eq!(again.pinned("https://nowhere"), None);
    }

    #[test]
    fn a_malformed_hash_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.lock");
        std::fs::write(
            &path,
            "version = 1\n[[input]]\nname = \"x\"\nurl = \"u\"\nsha256 = \"ABC\"\n",
        )
        .unwrap();
        assert!(Lock::load(&path).is_err());
    }
}
