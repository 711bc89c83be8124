//! `manifest.json`: every artifact with its path, kind, sha256 and size, plus
//! the hash of the blueprint it came from. Sorted by path; no timestamps.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::artifact::Artifact;

pub const MANIFEST_PATH: &str = "manifest.json";

/// `manifest.json`, as written and as read back (`deploy` checks a tree is
/// deployable, `build` that it does not overwrite the review tree).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Manifest {
    pub project: String,
    /// sha256 of the blueprint source the tree was built from.
    pub blueprint_sha256: String,
    /// `redacted` (the review tree: placeholders, safe to commit) or
    /// `included` (real secret values: never commit or share).
    pub secrets: Secrets,
    pub artifacts: Vec<ManifestEntry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub path: String,
    pub kind: String,
    pub sha256: String,
    pub bytes: u64,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Which secret values a tree holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Secrets {
    /// Placeholders: the review tree, safe to commit.
    Redacted,
    /// Real values: never commit or share.
    Included,
}

impl Manifest {
    /// Reads the `manifest.json` of the tree at `dir`; `None` when there is
    /// none or it is not one of ours.
    pub fn read(dir: &std::path::Path) -> Option<Manifest> {
        let text = std::fs::read_to_string(dir.join(MANIFEST_PATH)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

pub fn manifest(
    project: &str,
    blueprint_source: &str,
    artifacts: &[Artifact],
    secrets: Secrets,
) -> Manifest {
    let mut entries: Vec<ManifestEntry> = artifacts
        .iter()
        .map(|a| ManifestEntry {
            path: a.path.clone(),
            kind: a.kind.to_string(),
            sha256: sha256_hex(&a.contents),
            bytes: a.contents.len() as u64,
        })
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Manifest {
        project: project.to_string(),
        blueprint_sha256: sha256_hex(blueprint_source.as_bytes()),
        secrets,
        artifacts: entries,
    }
}

impl Manifest {
    /// The manifest as an artifact of its own (pretty JSON, trailing newline).
    pub fn to_artifact(&self) -> Artifact {
        let mut json = serde_json::to_string_pretty(self).expect("manifest serialises");
        json.push('\n');
        Artifact::file(MANIFEST_PATH, "manifest", json)
    }
}
