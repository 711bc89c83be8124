//! What the core's integration tests share: a shipped example blueprint
//! read from the repository, edited in place, and checked into a model or
//! its findings.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test here

use std::path::PathBuf;

use waddlec_core::blueprint::{Date, SourceFile};
use waddlec_core::diagnostics::{report, Diagnostic};
use waddlec_core::model::Model;
use waddlec_core::{check, CompileError};

pub const TODAY: Date = Date {
    year: 2026,
    month: 12,
    day: 6,
};

/// `blueprints/examples/NAME`.
pub fn example(name: &str) -> SourceFile {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let path = format!("blueprints/examples/{name}");
    SourceFile {
        text: std::fs::read_to_string(root.join(&path)).unwrap(),
        name: path,
    }
}

/// `source` with `from` replaced by `to`, which must occur exactly once.
pub fn edited(mut source: SourceFile, from: &str, to: &str) -> SourceFile {
    assert_eq!(source.text.matches(from).count(), 1, "`{from}` is unique");
    source.text = source.text.replacen(from, to, 1);
    source
}

/// The model and the warnings of a blueprint that must compile.
pub fn checked(source: &SourceFile) -> (Model, Vec<Diagnostic>) {
    match check(source, TODAY) {
        Ok(checked) => (checked.model, checked.warnings.sorted()),
        Err(CompileError::Invalid(diagnostics)) => {
            panic!(
                "{}",
                report::render_text(source, &diagnostics.sorted(), false)
            )
        }
        Err(other) => panic!("{other}"),
    }
}

/// Every finding of a blueprint that must be refused.
pub fn findings(source: &SourceFile) -> Vec<Diagnostic> {
    match check(source, TODAY) {
        Err(CompileError::Invalid(diagnostics)) => diagnostics.sorted(),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("{} compiled", source.name),
    }
}
