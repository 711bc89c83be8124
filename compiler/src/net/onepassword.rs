//! 1Password references (`op://VAULT/ITEM/FIELD`), read with the `op` CLI
//! (`op read`), which holds the operator's session, and written (`op item
//! create` / `op item edit`, for the API token `host init` makes); and
//! Document items (`op document get` / `create` / `edit`), where a Talos
//! bundle kept in 1Password lives. A value read comes back on stdout and
//! goes straight into a [`Secret`]; a value written goes in an item JSON
//! template in a 0600 file, or a document's contents on `op`'s stdin —
//! never on its command line, where `ps` would show it. `op`'s own error
//! text names the reference, never a value. Item templates and flags:
//! developer.1password.com/docs/cli/item-template-json,
//! developer.1password.com/docs/cli/reference/management-commands/item and
//! developer.1password.com/docs/cli/reference/management-commands/document
//! (`-` for the file reads it from stdin).

use std::io::Write as _;
use std::process::{Command, Stdio};

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

/// A 1Password Document item: its vault, its title and the name of its
/// file (what `op://VAULT/ITEM/FILE` names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    pub vault: String,
    pub item: String,
    pub file: String,
}

impl std::fmt::Display for Document {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "op://{}/{}/{}", self.vault, self.item, self.file)
    }
}

/// What `op` says of an item the vault does not hold
/// (`"ITEM" isn't an item in the "VAULT" vault`).
const NOT_AN_ITEM: &str = "isn't an item";

/// The document's contents, or `None` when the vault has no item of that
/// title (`op document get ITEM --vault VAULT`). Any other failure (no
/// vault, no session) is an error.
pub fn document_get(document: &Document) -> Result<Option<Secret>, OnePasswordError> {
    let output = op(document, None, |op| {
        op.args([
            "document",
            "get",
            &document.item,
            "--vault",
            &document.vault,
        ]);
    })?;
    if output.status.success() {
        return Ok(Some(Secret::new(
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )));
    }
    let message = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if message.contains(NOT_AN_ITEM) {
        return Ok(None);
    }
    Err(OnePasswordError::Failed {
        reference: document.to_string(),
        message,
    })
}

/// Creates the Document item with `contents` as its file
/// (`op document create - --vault VAULT --title ITEM --file-name FILE`).
/// 1Password allows two items of one title, so the caller checks first
/// that there is none ([`document_get`]).
pub fn document_create(document: &Document, contents: &Secret) -> Result<(), OnePasswordError> {
    let output = op(document, Some(contents), |op| {
        op.args(["document", "create", "-", "--vault", &document.vault])
            .args(["--title", &document.item, "--file-name", &document.file]);
    })?;
    succeeded(document, &output)
}

/// Replaces the file of the Document item with `contents`
/// (`op document edit ITEM - --vault VAULT --file-name FILE`).
pub fn document_edit(document: &Document, contents: &Secret) -> Result<(), OnePasswordError> {
    let output = op(document, Some(contents), |op| {
        op.args([
            "document",
            "edit",
            &document.item,
            "-",
            "--vault",
            &document.vault,
        ])
        .args(["--file-name", &document.file]);
    })?;
    succeeded(document, &output)
}

/// Runs `op` with the arguments `args` gives it, `stdin` written to its
/// standard input (else none).
fn op(
    document: &Document,
    stdin: Option<&Secret>,
    args: impl FnOnce(&mut Command),
) -> Result<std::process::Output, OnePasswordError> {
    let no_cli = |e: std::io::Error| OnePasswordError::NoCli {
        reference: document.to_string(),
        problem: e.to_string(),
    };
    let mut command = Command::new("op");
    args(&mut command);
    let mut child = command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(no_cli)?;
    if let (Some(contents), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Dropping the pipe closes it: op reads to its end.
        pipe.write_all(contents.expose().as_bytes())
            .map_err(no_cli)?;
    }
    child.wait_with_output().map_err(no_cli)
}

fn succeeded(document: &Document, output: &std::process::Output) -> Result<(), OnePasswordError> {
    if output.status.success() {
        return Ok(());
    }
    Err(OnePasswordError::Failed {
        reference: document.to_string(),
        message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
    })
}
