//! 1Password references (`op://VAULT/ITEM/FIELD`), read with the `op` CLI
//! (`op read`), which holds the operator's session. The value comes back on
//! stdout and goes straight into a [`Secret`]; `op`'s own error text names
//! the reference, never a value.

use std::process::Command;

use crate::model::SecretRef;
use waddlec_core::secrets::Secret;

#[derive(Debug, thiserror::Error)]
pub enum OnePasswordError {
    #[error("cannot run the 1Password CLI `op` to read {reference}: {problem} (install it and sign in: `op signin`)")]
    NoCli { reference: String, problem: String },
    #[error("`op read {reference}` failed: {message}")]
    Failed { reference: String, message: String },
}

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
