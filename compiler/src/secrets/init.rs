//! `waddlec secrets init` as a library function: every secret waddlec owns
//! that is missing is made (the Talos bundle, or an imported one, with the
//! talosctl admin identity beside it; an SSH host key for every Debian VM
//! that has none), and nothing that exists is replaced. A run that finds
//! everything in place refuses, as a second `init` always has.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use waddlec_core::model::Model;

use super::{file_path, files, ssh_host_keys, talos_admin, talos_bundle, SecretError};

/// What a run made.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Created {
    /// The bundle and the admin identity, with whether it was imported.
    pub talos: Option<(PathBuf, PathBuf, bool)>,
    /// The host key file, and the VMs whose keys were added to it.
    pub host_keys: Option<(PathBuf, Vec<String>)>,
}

/// Makes what is missing. `base` is the blueprint's directory; `import` a
/// Talos bundle to take instead of generating one.
pub fn run(model: &Model, base: &Path, import: Option<&Path>) -> Result<Created, SecretError> {
    let mut created = Created::default();
    let mut existing = None;
    if let Some(cluster) = &model.talos {
        let path = file_path("talos.secrets", &cluster.secrets, base)?;
        let admin = waddlec_core::secrets::talos::TalosAdmin::path_beside(&path);
        let present = [&path, &admin].into_iter().find(|p| p.exists()).cloned();
        match (present, import) {
            (Some(present), Some(_)) => {
                return Err(SecretError::Exists(present.display().to_string()))
            }
            (Some(present), None) => existing = Some(present),
            (None, _) => {
                create_talos(&path, &admin, import)?;
                created.talos = Some((path, admin, import.is_some()));
            }
        }
    } else if import.is_some() {
        return Err(SecretError::NoTalos);
    }
    if model.debian_vms().next().is_some() {
        let path = ssh_host_keys::path(model, base)?;
        let vms = ssh_host_keys::create_missing(model, &path)?;
        if !vms.is_empty() {
            created.host_keys = Some((path, vms));
        }
    }
    if created == Created::default() {
        return Err(match existing {
            Some(path) => SecretError::Exists(path.display().to_string()),
            None => SecretError::NothingToCreate,
        });
    }
    Ok(created)
}

/// Writes the bundle (new or imported) and the admin identity, both paths
/// known to be free.
fn create_talos(path: &Path, admin_path: &Path, import: Option<&Path>) -> Result<(), SecretError> {
    let now = OffsetDateTime::now_utc();
    let bundle = match import {
        Some(from) => talos_bundle::load(from)?,
        None => {
            tracing::info!(
                "generating the Talos secrets bundle (an RSA-4096 key takes a few seconds)"
            );
            talos_bundle::generate(now)?
        }
    };
    let admin = talos_admin::issue(&bundle, now)?;
    files::create_new(path, &talos_bundle::to_yaml(&bundle)?)?;
    files::create_new(admin_path, &talos_admin::to_yaml(&admin)?)?;
    Ok(())
}
