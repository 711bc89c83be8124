//! Reading and creating secrets: the references a blueprint names
//! (`file:`, `env:`, `op://`) read into [`Secret`]s for the deployable
//! tree, and the secrets waddlec owns created and kept where `talos.secrets`
//! says (`store`: a file, an age-encrypted file, `age_store`, or a
//! 1Password document): the Talos bundle, `talos_bundle`; the talosctl
//! admin identity, `talos_admin`; the Debian VMs' SSH host keys,
//! `ssh_host_keys`; and short-lived Kubernetes admin certificates,
//! `kube_admin`; 0600 files, `files`.
//!
//! The value types ([`Secret`], [`SecretValues`], the bundle's types) are
//! `waddlec_core::secrets`: renderers see only those. A [`Secret`] never
//! prints its value: not in `Debug`, not in errors, not in logs.

pub mod age_store;
pub mod client_config;
pub mod confine;
pub mod files;
pub mod init;
pub mod kube_admin;
pub mod ssh_host_keys;
pub mod store;
pub mod talos_admin;
pub mod talos_bundle;

use std::path::{Path, PathBuf};

use waddlec_core::model::{Model, SecretRef, TalosCluster};
use waddlec_core::secrets::talos::{Bundle, TalosCredentials};
pub use waddlec_core::secrets::{placeholder, talos, Secret, SecretValues};

use store::Place;

/// Reads every secret the model uses. `base` is the blueprint's directory:
/// `file:` references are relative to it.
pub fn resolve(model: &Model, base: &Path) -> Result<SecretValues, SecretError> {
    let bundle = match &model.talos {
        Some(cluster) => Some(Place::bundle(cluster, base)?),
        None => None,
    };
    let talos = match &bundle {
        Some(place) => Some(talos_at(place)?),
        None => None,
    };
    let github_client_secret = match model.teleport.as_ref().and_then(|t| t.github.as_ref()) {
        Some(github) => Some(read(
            "teleport.github.client_secret",
            &github.client_secret,
            base,
        )?),
        None => None,
    };
    let ssh_host_keys = if model.debian_vms().next().is_some() {
        ssh_host_keys::load(model, &ssh_host_keys::place(model, bundle.as_ref(), base))?
    } else {
        Default::default()
    };
    Ok(SecretValues {
        talos,
        github_client_secret,
        ssh_host_keys,
    })
}

/// The bundle of `cluster` and the admin identity beside it, from where
/// `talos.secrets` keeps them.
pub fn load_talos(cluster: &TalosCluster, base: &Path) -> Result<TalosCredentials, SecretError> {
    talos_at(&Place::bundle(cluster, base)?)
}

/// The bundle of `cluster` alone.
pub fn load_bundle(cluster: &TalosCluster, base: &Path) -> Result<Bundle, SecretError> {
    bundle_at(&Place::bundle(cluster, base)?)
}

fn bundle_at(place: &Place) -> Result<Bundle, SecretError> {
    tracing::debug!(store = %place, "reading the Talos secrets bundle");
    let text = place
        .read()?
        .ok_or_else(|| SecretError::MissingBundle(place.to_string()))?;
    talos_bundle::parse(&text, &place.to_string())
}

fn talos_at(place: &Place) -> Result<TalosCredentials, SecretError> {
    let bundle = bundle_at(place)?;
    let admin = place.beside(talos_admin::BESIDE);
    let text = admin
        .read()?
        .ok_or_else(|| SecretError::MissingAdmin(admin.to_string()))?;
    let admin = talos_admin::parse(&text, &admin.to_string())?;
    Ok(TalosCredentials { bundle, admin })
}

/// The path of the `file:` reference at blueprint key `key`, relative to
/// `base`, once it is known to stay where secrets may be read from
/// ([`confine`]: the blueprint's directory, the project's `secrets/`,
/// `$WADDLEC_SECRET_DIRS`).
pub fn file_path(key: &str, reference: &SecretRef, base: &Path) -> Result<PathBuf, SecretError> {
    confined(key, reference)?;
    match reference {
        SecretRef::File(path) => confined_path(key, &reference.to_string(), path, base),
        other => Err(SecretError::NotAFile(other.to_string())),
    }
}

/// `path`, relative to `base`, once the file it names (links followed) is
/// known to be under a directory secrets are read from; `key` and
/// `reference` name it in the refusal.
fn confined_path(
    key: &str,
    reference: &str,
    path: &str,
    base: &Path,
) -> Result<PathBuf, SecretError> {
    let path = base.join(path);
    let allowed = confine::AllowedDirs::for_blueprint(base);
    allowed
        .check(&path)
        .map_err(|real| SecretError::Unconfined {
            key: key.to_string(),
            reference: reference.to_string(),
            reason: format!(
                "it is {}, outside the directories secrets are read from ({})",
                real.display(),
                allowed.describe()
            ),
        })?;
    Ok(path)
}

/// The blueprint's own part of the rule (E0130), again where references
/// are read: resolve refuses these, so this holds for any model.
fn confined(key: &str, reference: &SecretRef) -> Result<(), SecretError> {
    waddlec_core::resolve::check_secret_reference(reference).map_err(|reason| {
        SecretError::Unconfined {
            key: key.to_string(),
            reference: reference.to_string(),
            reason: format!("it {reason}"),
        }
    })
}

/// Reads one secret value, the reference at blueprint key `key`.
pub fn read(key: &str, reference: &SecretRef, base: &Path) -> Result<Secret, SecretError> {
    tracing::debug!(%reference, "reading secret");
    confined(key, reference)?;
    let value = match reference {
        SecretRef::File(_) => {
            let path = file_path(key, reference, base)?;
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
    Ok(Secret::new(value))
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
        "`{key}` = `{reference}` is not read: {reason}. Keep secret files beside the blueprint \
         or in the project's `secrets/`; to use one kept elsewhere, link it there and list its \
         directory in {dirs_env} (`:`-separated). Environment secrets are named `WADDLE_…` \
         [E0130 unconfined-secret]",
        dirs_env = confine::DIRS_ENV
    )]
    Unconfined {
        key: String,
        reference: String,
        reason: String,
    },
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
    #[error(
        "the SSH host key file {0} does not exist: VMs get their host keys from it, so they are known before anyone connects; make it with `waddlec secrets init`"
    )]
    MissingHostKeys(String),
    #[error(
        "{path} has no SSH host key for VM {vm}; `waddlec secrets init` makes the missing ones (and keeps the others)"
    )]
    MissingHostKey { path: String, vm: String },
    #[error("the SSH host key file {path} is invalid: {problem}")]
    InvalidHostKeys { path: String, problem: String },
    #[error("{0} already exists; waddlec never overwrites secrets (move it away first if you really mean to replace it)")]
    Exists(String),
    #[error("`--import` takes a Talos secrets bundle, and this blueprint has no [talos] table")]
    NoTalos,
    #[error(
        "this blueprint has neither a [talos] table nor a Debian VM: waddlec owns no secret of it"
    )]
    NothingToCreate,
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot generate {what}: {problem}")]
    Generate { what: &'static str, problem: String },
    #[error(
        "`talos.age.recipients`: `{recipient}` is not an age recipient ({problem}); paste what \
         `age-keygen -y IDENTITY_FILE` prints"
    )]
    AgeRecipient { recipient: String, problem: String },
    #[error("the age identity {reference} (`talos.age.identity`) is not usable: {problem}")]
    AgeIdentity { reference: String, problem: String },
    #[error("cannot decrypt {path} with the age identity {identity}: {problem}")]
    AgeDecrypt {
        path: String,
        identity: String,
        problem: String,
    },
    #[error(transparent)]
    OnePassword(#[from] crate::net::onepassword::OnePasswordError),
}
