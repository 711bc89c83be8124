//! YAML out of Rust types, one way for every artifact: Talos machine
//! configs, schematics, cloud-init and NoCloud seeds.
//!
//! The crate is `serde-saphyr` (pure Rust, maintained, panic-free), chosen
//! over `serde_yaml` (unmaintained) and its forks (`yaml_serde`,
//! `serde_yaml_ng`) because those emit `off`, `yes`, `on`, `y`, `NO` as
//! plain scalars: YAML 1.1 readers — cloud-init's PyYAML among them — read
//! those as booleans. serde-saphyr quotes them. Its style options also give
//! exactly Go's `yaml.Marshal` layout (4-space indent, list items indented
//! under their key), which the Image Factory hashes for schematic IDs.

use serde::Serialize;

/// Serialises one document in Go-yaml layout. Long single-line strings stay on
/// one line (no folding), multi-line strings become literal blocks.
pub fn document(value: &impl Serialize) -> Result<String, YamlError> {
    let options = serde_saphyr::ser_options! {
        indent_step: 4,
        compact_list_indent: false,
        folded_wrap_chars: usize::MAX,
    };
    serde_saphyr::to_string_with_options(value, options).map_err(|e| YamlError(e.to_string()))
}

/// Joins documents into one multi-document stream.
pub fn stream(documents: &[String]) -> String {
    documents.join("---\n")
}

/// A value could not be serialised: a bug in a renderer's types.
#[derive(Debug, thiserror::Error)]
#[error("internal error: cannot serialise YAML: {0}")]
pub struct YamlError(String);
