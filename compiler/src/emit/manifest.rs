//! `manifest.json`: every artifact with its path, kind, sha256 and size, plus
//! the hash of the blueprint it came from. Sorted by path; no timestamps.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::artifact::Artifact;

pub const MANIFEST_PATH: &str = "manifest.json";

#[derive(Serialize)]
pub struct Manifest {
    pub project: String,
    /// sha256 of the blueprint source the tree was built from.
    pub blueprint_sha256: String,
    /// `redacted` (the review tree: placeholders, safe to commit) or
    /// `included` (real secret values: never commit or share).
    pub secrets: &'static str,
    pub artifacts: Vec<ManifestEntry>,
}

#[derive(Serialize)]
pub struct ManifestEntry {
    pub path: String,
    pub kind: &'static str,
    pub sha256: String,
    pub bytes: u64,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub const REDACTED: &str = "redacted";
pub const INCLUDED: &str = "included";

pub fn manifest(
    project: &str,
    blueprint_source: &str,
    artifacts: &[Artifact],
    secrets: &'static str,
) -> Manifest {
    let mut entries: Vec<ManifestEntry> = artifacts
        .iter()
        .map(|a| ManifestEntry {
            path: a.path.clone(),
            kind: a.kind,
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
