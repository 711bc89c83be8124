//! Emit: artifacts → a directory tree with `manifest.json`, written all at
//! once or not at all, and the `--check` comparison against an existing tree.

mod check;
mod manifest;
mod writer;

pub use check::{compare, Staleness};
pub use manifest::{manifest, sha256_hex, Manifest, Secrets, MANIFEST_PATH};
pub use writer::{check_destination, write_tree, write_tree_with, WriteError};
