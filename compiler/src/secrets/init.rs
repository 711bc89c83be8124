//! `waddlec secrets init` as a library function: every secret waddlec owns
//! that is missing is made (the Talos bundle, or an imported one, with the
//! talosctl admin identity beside it; an SSH host key for every Debian VM
//! that has none), in the store `talos.secrets` names (a file, an
//! age-encrypted file or a 1Password document, `store`), and nothing that
//! exists is replaced, in any store. A run that finds everything in place
//! refuses, as a second `init` always has.

use std::path::Path;

use time::OffsetDateTime;
use waddlec_core::model::Model;

use super::store::Place;
use super::{ssh_host_keys, talos_admin, talos_bundle, Secret, SecretError};

/// What a run made, each named as the store shows it (a path or an
/// `op://` reference).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Created {
    /// The bundle and the admin identity, with whether it was imported.
    pub talos: Option<(String, String, bool)>,
    /// Where the host keys are, and the VMs whose keys were added there.
    pub host_keys: Option<(String, Vec<String>)>,
}

/// Makes what is missing. `base` is the blueprint's directory; `import` a
/// Talos bundle to take instead of generating one.
pub fn run(model: &Model, base: &Path, import: Option<&Path>) -> Result<Created, SecretError> {
    let mut created = Created::default();
    let mut existing = None;
    let bundle = match &model.talos {
        Some(cluster) => Some(Place::bundle(cluster, base)?),
        None if import.is_some() => return Err(SecretError::NoTalos),
        None => None,
    };
    if let Some(bundle) = &bundle {
        let admin = bundle.beside(talos_admin::BESIDE);
        let mut present = None;
        for place in [bundle, &admin] {
            if present.is_none() && place.exists()? {
                present = Some(place.to_string());
            }
        }
        match (present, import) {
            (Some(present), Some(_)) => return Err(SecretError::Exists(present)),
            (Some(present), None) => existing = Some(present),
            (None, _) => {
                create_talos(bundle, &admin, import)?;
                created.talos = Some((bundle.to_string(), admin.to_string(), import.is_some()));
            }
        }
    }
    if model.debian_vms().next().is_some() {
        let place = ssh_host_keys::place(model, bundle.as_ref(), base);
        let vms = ssh_host_keys::create_missing(model, &place)?;
        if !vms.is_empty() {
            created.host_keys = Some((place.to_string(), vms));
        }
    }
    if created == Created::default() {
        return Err(match existing {
            Some(shown) => SecretError::Exists(shown),
            None => SecretError::NothingToCreate,
        });
    }
    Ok(created)
}

/// Writes the bundle (new or imported) and the admin identity, both places
/// known to be free.
fn create_talos(bundle: &Place, admin: &Place, import: Option<&Path>) -> Result<(), SecretError> {
    let now = OffsetDateTime::now_utc();
    let new = match import {
        Some(from) => talos_bundle::load(from)?,
        None => {
            tracing::info!(
                "generating the Talos secrets bundle (an RSA-4096 key takes a few seconds)"
            );
            talos_bundle::generate(now)?
        }
    };
    let identity = talos_admin::issue(&new, now)?;
    bundle.create(&Secret::new(talos_bundle::to_yaml(&new)?))?;
    admin.create(&Secret::new(talos_admin::to_yaml(&identity)?))?;
    Ok(())
}
