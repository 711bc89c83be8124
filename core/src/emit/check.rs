//! `--check`: is an existing tree exactly what this build would write?
//! Reports added, removed and changed files with a unified diff of each
//! changed text file.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use similar::TextDiff;

use crate::artifact::Artifact;

/// How an existing tree differs from the build; empty when up to date.
#[derive(Debug, Default)]
pub struct Staleness {
    pub missing: Vec<String>,
    pub extra: Vec<String>,
    /// Path and unified diff (existing → built).
    pub changed: Vec<(String, String)>,
}

impl Staleness {
    pub fn is_fresh(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.changed.is_empty()
    }
}

/// Compares `artifacts` with the tree at `root`.
pub fn compare(root: &Path, artifacts: &[Artifact]) -> std::io::Result<Staleness> {
    let mut existing = BTreeMap::new();
    if root.exists() {
        collect(root, root, &mut existing)?;
    }
    let mut staleness = Staleness::default();
    for artifact in artifacts {
        match existing.remove(&artifact.path) {
            None => staleness.missing.push(artifact.path.clone()),
            Some(old) if old != artifact.contents => {
                let old_text = String::from_utf8_lossy(&old);
                let new_text = String::from_utf8_lossy(&artifact.contents);
                let diff = TextDiff::from_lines(old_text.as_ref(), new_text.as_ref())
                    .unified_diff()
                    .context_radius(3)
                    .header(
                        &format!("a/{}", artifact.path),
                        &format!("b/{}", artifact.path),
                    )
                    .to_string();
                staleness.changed.push((artifact.path.clone(), diff));
            }
            Some(_) => {}
        }
    }
    staleness.extra = existing.into_keys().collect();
    Ok(staleness)
}

fn collect(root: &Path, dir: &Path, into: &mut BTreeMap<String, Vec<u8>>) -> std::io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect(root, &path, into)?;
        } else {
            let relative = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .replace('\\', "/");
            into.insert(relative, fs::read(&path)?);
        }
    }
    Ok(())
}
