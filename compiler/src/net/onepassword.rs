//! 1Password references (`op://VAULT/ITEM/FIELD`), read with the `op` CLI
//! (`op read`), which holds the operator's session, and written (`op item
//! create` / `op item edit`, for the API token `host init` makes). A value
//! read comes back on stdout and goes straight into a [`Secret`]; a value
//! written goes in an item JSON template in a 0600 file (never on `op`'s
//! command line, where `ps` would show it). `op`'s own error text names
//! the reference, never a value. Item templates and flags:
//! developer.1password.com/docs/cli/item-template-json and
//! developer.1password.com/docs/cli/reference/management-commands/item.

use std::process::Command;

use crate::model::SecretRef;
use waddlec_core::secrets::Secret;

#[derive(Debug, thiserror::Error)]
pub enum OnePasswordError {
    #[error("cannot run the 1Password CLI `op` to read {reference}: {problem} (install it and sign in: `op signin`)")]
    NoCli { reference: String, problem: String },
    #[error("1Password `op` failed for {reference}: {message}")]
    Failed { reference: String, message: String },
}

/// Reads the value `reference` names.
pub fn read(reference: &SecretRef) -> Result<Secret, OnePasswordError> {
    let reference = reference.to_string();
    let output = Command::new("op")
        .args(["read", "--no-newline", &reference])
        .output()
        .map_err(|e| OnePasswordError::NoCli {
            reference: reference.clone(),
            problem: e.to_string(),
        })?;
    if !output.status.success() {
        return Err(OnePasswordError::Failed {
            reference,
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(Secret::new(
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

/// Writes `value` into the field `reference` names: edits the item if
/// `exists`, else creates it (category API Credential, whose built-in
/// `credential` field a `…/credential` reference names).
pub fn write(reference: &SecretRef, value: &Secret, exists: bool) -> Result<(), OnePasswordError> {
    let shown = reference.to_string();
    let SecretRef::OnePassword { vault, item, field } = reference else {
        return Err(OnePasswordError::Failed {
            reference: shown,
            message: "not a 1Password reference".into(),
        });
    };
    let no_cli = |e: std::io::Error| OnePasswordError::NoCli {
        reference: shown.clone(),
        problem: e.to_string(),
    };
    let template = serde_json::json!({
        "title": item,
        "category": "API_CREDENTIAL",
        "fields": [{
            "id": field,
            "label": field,
            "type": "CONCEALED",
            "value": value.expose(),
        }],
    });
    // tempfile creates it 0600; removed when dropped.
    let mut file = tempfile::NamedTempFile::new().map_err(no_cli)?;
    std::io::Write::write_all(&mut file, template.to_string().as_bytes()).map_err(no_cli)?;
    let mut op = Command::new("op");
    if exists {
        op.args(["item", "edit", item, "--vault", vault]);
    } else {
        op.args([
            "item",
            "create",
            "--vault",
            vault,
            "--category",
            "API Credential",
            "--title",
            item,
        ]);
    }
    let output = op
        .arg("--template")
        .arg(file.path())
        .args(["--format", "json"])
        .output()
        .map_err(no_cli)?;
    if !output.status.success() {
        return Err(OnePasswordError::Failed {
            reference: shown,
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}
