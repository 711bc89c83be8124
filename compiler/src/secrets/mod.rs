//! Secret values: the one type that holds them, where they come from, and
//! what renderers see instead of them in the review tree.
//!
//! Blueprints name secrets (`file:`, `env:`, `op://`); this module reads them
//! (the CLI calls it, renderers never do) and creates the ones waddlec owns
//! (the Talos bundle, `talos_bundle`; the talosctl admin identity,
//! `talos_admin`). A [`Secret`] never prints its value: not in `Debug`, not
//! in errors, not in logs. Renderers get [`SecretValues`], either the real
//! values or [`SecretValues::redacted`] placeholders, and render the same
//! way for both.

pub mod files;
pub mod kube_admin;
pub mod talos_admin;
pub mod talos_bundle;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{Model, SecretRef};

/// A secret value. `Debug` and `Display` print only `<secret>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that writes it where it belongs.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// The stand-in for a secret in the review tree: a stable fingerprint of
/// *which* secret goes here (its slot), not of its value, so the review tree
/// builds without any secret and CI can check it; a reviewer sees where
/// secrets land and every structural change around them.
pub fn placeholder(slot: &str) -> Secret {
    let digest = Sha256::digest(format!("waddlec secret slot {slot}"));
    Secret(format!("<redacted sha256:{}>", &hex::encode(digest)[..16]))
}

/// Every secret a render needs, real or placeholders.
#[derive(Clone, Debug)]
pub struct SecretValues {
    pub talos: Option<talos_bundle::TalosCredentials>,
    pub github_client_secret: Option<Secret>,
}

impl SecretValues {
    /// Placeholders for every secret the model uses: the review tree.
    pub fn redacted(model: &Model) -> Self {
        SecretValues {
            talos: model
                .talos
                .as_ref()
                .map(|cluster| talos_bundle::TalosCredentials::redacted(&cluster.name)),
            github_client_secret: model
                .teleport
                .as_ref()
                .map(|_| placeholder("teleport/github/client_secret")),
        }
    }

    /// Reads every secret the model uses. `base` is the blueprint's directory:
    /// `file:` references are relative to it.
    pub fn resolve(model: &Model, base: &Path) -> Result<Self, SecretError> {
        let talos = match &model.talos {
            Some(cluster) => Some({
                tracing::debug!(reference = %cluster.secrets, "reading the Talos secrets bundle");
                talos_bundle::TalosCredentials::load(&file_path(&cluster.secrets, base)?)?
            }),
            None => None,
        };
        let github_client_secret = match &model.teleport {
            Some(teleport) => Some(read(&teleport.github.client_secret, base)?),
            None => None,
        };
        Ok(SecretValues {
            talos,
            github_client_secret,
        })
    }
}

/// The path of a `file:` reference, relative to `base`.
pub fn file_path(reference: &SecretRef, base: &Path) -> Result<PathBuf, SecretError> {
    match reference {
        SecretRef::File(path) => Ok(base.join(path)),
        other => Err(SecretError::NotAFile(other.to_string())),
    }
}

/// Reads one secret value.
pub fn read(reference: &SecretRef, base: &Path) -> Result<Secret, SecretError> {
    tracing::debug!(%reference, "reading secret");
    let value = match reference {
        SecretRef::File(_) => {
            let path = file_path(reference, base)?;
            std::fs::read_to_string(&path).map_err(|source| SecretError::Read {
                reference: reference.to_string(),
                source,
            })?
        }
        SecretRef::Env(name) => {
            std::env::var(name).map_err(|_| SecretError::Unset(reference.to_string()))?
        }
        SecretRef::OnePassword { .. } => crate::net::onepassword::read(reference)?.expose().into(),
    };
    let value = value.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        return Err(SecretError::Empty(reference.to_string()));
    }
    Ok(Secret(value))
}

/// Why a secret could not be had. Messages name the reference, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read secret {reference}: {source}")]
    Read {
        reference: String,
        #[source]
        source: std::io::Error,
    },
    #[error("secret {0} is not set in the environment")]
    Unset(String),
    #[error("secret {0} is empty")]
    Empty(String),
    #[error("secret {0} must be a `file:` reference here (waddlec creates and reads that file)")]
    NotAFile(String),
    #[error(
        "the Talos secrets bundle {0} does not exist.\n\
         - New cluster: create it once with `waddlec secrets init` (then back it up, e.g. in 1Password).\n\
         - Running cluster: import the bundle it was built with: `waddlec secrets init --import secrets.yaml`\n\
         \x20 (the file from `talosctl gen secrets`, or talhelper's talsecret).\n\
         waddlec never generates a new bundle during a build: nodes of a running cluster\n\
         would reject every config signed with new keys, locking you out."
    )]
    MissingBundle(String),
    #[error(
        "the talosctl admin identity {0} does not exist; `waddlec secrets init` issues it from the bundle's OS CA"
    )]
    MissingAdmin(String),
    #[error("the Talos secrets bundle {path} is invalid: {problem}")]
    InvalidBundle { path: String, problem: String },
    #[error("{0} already exists; waddlec never overwrites secrets (move it away first if you really mean to replace it)")]
    Exists(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate {what}: {problem}")]
    Generate { what: &'static str, problem: String },
    #[error(transparent)]
    OnePassword(#[from] crate::net::onepassword::OnePasswordError),
}
