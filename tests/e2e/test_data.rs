//! The record of where the tests' data comes from: every file under
//! `tests/data/` (schemas, upstream stand-ins, key lists) is listed in
//! `tests/data/SOURCES.toml` with its upstream, version, changes and
//! sha256, and its bytes still have that sha256, so the record cannot rot.
//! `README.md` files are notes about their directory, not data.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::support::{repo_root, sha256_hex, tree};
use serde::Deserialize;

const RECORD: &str = "SOURCES.toml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sources {
    file: Vec<Source>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Source {
    path: String,
    upstream: String,
    version: String,
    changes: String,
    note: Option<String>,
    sha256: String,
}

/// What `dir/SOURCES.toml` gets wrong about the files under `dir`.
fn record_problems(dir: &Path) -> Vec<String> {
    let sources: Sources = toml::from_str(&fs::read_to_string(dir.join(RECORD)).unwrap())
        .unwrap_or_else(|e| panic!("{RECORD}: {e}"));
    let mut problems = Vec::new();
    let mut listed = BTreeMap::new();
    for source in &sources.file {
        let fields = [
            ("upstream", Some(&source.upstream)),
            ("version", Some(&source.version)),
            ("changes", Some(&source.changes)),
            ("note", source.note.as_ref()),
        ];
        for (field, value) in fields {
            if value.is_some_and(|v| v.trim().is_empty()) {
                problems.push(format!("{}: empty {field}", source.path));
            }
        }
        if listed
            .insert(source.path.as_str(), source.sha256.as_str())
            .is_some()
        {
            problems.push(format!("{}: listed twice", source.path));
        }
    }
    let files = tree(dir);
    for (path, (bytes, _)) in &files {
        let name = Path::new(path).file_name().unwrap();
        if path == RECORD || name == "README.md" {
            continue;
        }
        match listed.get(path.as_str()) {
            None => problems.push(format!("{path}: not listed")),
            Some(&expected) => {
                let actual = sha256_hex(bytes);
                if actual != expected {
                    problems.push(format!("{path}: sha256 {actual}, listed {expected}"));
                }
            }
        }
    }
    for path in listed.keys() {
        if !files.contains_key(*path) {
            problems.push(format!("{path}: listed but missing"));
        }
    }
    problems
}

#[test]
fn every_data_file_is_listed_with_its_source_and_sha256() {
    let problems = record_problems(&repo_root().join("tests/data"));
    assert!(
        problems.is_empty(),
        "tests/data/{RECORD} is out of date:\n{}",
        problems.join("\n")
    );
}

#[test]
fn a_changed_unlisted_or_missing_data_file_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let sha = |text: &str| sha256_hex(text.as_bytes());
    let entry = |path: &str, sha256: &str| {
        format!(
            "[[file]]\npath = \"{path}\"\nupstream = \"u\"\nversion = \"v\"\nchanges = \"none\"\nsha256 = \"{sha256}\"\n"
        )
    };
    fs::create_dir_all(dir.path().join("schemas")).unwrap();
    fs::write(dir.path().join("schemas/kept.json"), "{}").unwrap();
    fs::write(dir.path().join("schemas/changed.json"), "{\"a\": 2}").unwrap();
    fs::write(dir.path().join("schemas/unlisted.json"), "{}").unwrap();
    fs::write(dir.path().join("schemas/README.md"), "notes").unwrap();
    let record = [
        entry("schemas/kept.json", &sha("{}")),
        entry("schemas/changed.json", &sha("{\"a\": 1}")),
        entry("schemas/missing.json", &sha("{}")),
    ]
    .join("\n");
    fs::write(dir.path().join(RECORD), record).unwrap();
    let problems = record_problems(dir.path());
    assert_eq!(
        problems,
        [
            format!(
                "schemas/changed.json: sha256 {}, listed {}",
                sha("{\"a\": 2}"),
                sha("{\"a\": 1}")
            ),
            "schemas/unlisted.json: not listed".to_string(),
            "schemas/missing.json: listed but missing".to_string(),
        ]
    );
}
