//! The Debian VMs' SSH host keys: one ed25519 key per VM, made once by
//! `waddlec secrets init` and kept in a YAML document beside the Talos
//! bundle, in its store, so every build with secrets hands each VM the same key on its
//! seed disk and `ssh/known_hosts` knows it before the VM first boots.
//!
//! A VM added to the blueprint later gets its key from the next `secrets
//! init`; a key once made is never replaced (delete its entry on purpose to
//! rotate it). Keys are checked on load: the public half must be the
//! private half's.

use std::collections::BTreeMap;
use std::path::Path;

use rand::rngs::OsRng;
use serde::{Deserialize, Serialize};
use ssh_key::{Algorithm, LineEnding, PrivateKey};
use waddlec_core::model::Model;
use waddlec_core::secrets::SshHostKey;

use super::store::Place;
use super::{Secret, SecretError};

const HEADER: &str = "\
# waddlec: the SSH host keys of the Debian VMs (`waddlec secrets init`).
# Secret: never commit this file; back it up with the Talos bundle.
";

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    hosts: BTreeMap<String, KeyEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    /// OpenSSH's private key format.
    private: Secret,
    public: String,
}

/// What the keys are kept beside the bundle as (`NAME.ssh-host-keys.yaml`).
pub const BESIDE: &str = "ssh-host-keys";

/// Where the keys live: beside the Talos bundle, in its store (`bundle`,
/// [`Place::beside`]: `NAME.ssh-host-keys.yaml` next to `NAME.yaml`, the
/// same encrypted for an `age:` store, a document of its own in 1Password),
/// so one store holds every secret waddlec made; without a Talos cluster,
/// the file `secrets/PROJECT.ssh-host-keys.yaml` under the project root
/// (the directory holding `blueprints/`, else the blueprint's own
/// directory). `base` is the blueprint's directory.
pub fn place(model: &Model, bundle: Option<&Place>, base: &Path) -> Place {
    if let Some(bundle) = bundle {
        return bundle.beside(BESIDE);
    }
    let root = base
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|name| name == "blueprints"))
        .and_then(Path::parent)
        .unwrap_or(base);
    Place::File(
        root.join("secrets")
            .join(format!("{}.ssh-host-keys.yaml", model.project.name)),
    )
}

/// Every Debian VM's key, from the file at `place`.
pub fn load(model: &Model, place: &Place) -> Result<BTreeMap<String, SshHostKey>, SecretError> {
    let path = &place.to_string();
    let file = read(place)?.ok_or_else(|| SecretError::MissingHostKeys(path.clone()))?;
    let mut keys = BTreeMap::new();
    for vm in model.debian_vms() {
        let entry = file
            .hosts
            .get(&vm.name)
            .ok_or_else(|| SecretError::MissingHostKey {
                path: path.clone(),
                vm: vm.name.clone(),
            })?;
        keys.insert(vm.name.clone(), check(path, &vm.name, entry)?);
    }
    Ok(keys)
}

/// Makes a key for every Debian VM that has none (keeping every key the
/// file has) and writes the file; returns the VMs that got one.
pub fn create_missing(model: &Model, place: &Place) -> Result<Vec<String>, SecretError> {
    let existing = read(place)?;
    let had_file = existing.is_some();
    let mut file = existing.unwrap_or(KeyFile {
        version: 1,
        hosts: BTreeMap::new(),
    });
    let mut created = Vec::new();
    for vm in model.debian_vms() {
        if !file.hosts.contains_key(&vm.name) {
            file.hosts.insert(vm.name.clone(), generate()?);
            created.push(vm.name.clone());
        }
    }
    if created.is_empty() {
        return Ok(created);
    }
    let yaml = serde_saphyr::to_string(&file).map_err(|e| SecretError::Generate {
        what: "the SSH host key file",
        problem: e.to_string(),
    })?;
    let contents = Secret::new(format!("{HEADER}{yaml}"));
    if had_file {
        place.replace(&contents)?;
    } else {
        place.create(&contents)?;
    }
    Ok(created)
}

fn generate() -> Result<KeyEntry, SecretError> {
    let problem = |e: ssh_key::Error| SecretError::Generate {
        what: "an SSH host key",
        problem: e.to_string(),
    };
    let key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519).map_err(problem)?;
    let private = key.to_openssh(LineEnding::LF).map_err(problem)?;
    let public = key.public_key().to_openssh().map_err(problem)?;
    Ok(KeyEntry {
        private: Secret::new(private.as_str()),
        public,
    })
}

fn read(place: &Place) -> Result<Option<KeyFile>, SecretError> {
    let Some(text) = place.read()? else {
        return Ok(None);
    };
    let path = &place.to_string();
    // serde's messages can quote the value they choke on: a private key.
    let file: KeyFile = serde_saphyr::from_str(text.expose()).map_err(|_| {
        invalid(
            path,
            "it is not the YAML `secrets init` writes (version, hosts: VM: private, public)"
                .to_string(),
        )
    })?;
    if file.version != 1 {
        return Err(invalid(path, format!("version {} is not 1", file.version)));
    }
    Ok(Some(file))
}

/// The entry's key, if its private half parses and its public half is the
/// private half's.
fn check(path: &str, vm: &str, entry: &KeyEntry) -> Result<SshHostKey, SecretError> {
    let key = PrivateKey::from_openssh(entry.private.expose())
        .map_err(|_| invalid(path, format!("{vm}: the private key is not an OpenSSH key")))?;
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(invalid(path, format!("{vm}: the key is not ed25519")));
    }
    let public = key
        .public_key()
        .to_openssh()
        .map_err(|e| invalid(path, e.to_string()))?;
    if public != entry.public.trim() {
        return Err(invalid(
            path,
            format!("{vm}: `public` is not the private key's public half"),
        ));
    }
    Ok(SshHostKey {
        private: entry.private.clone(),
        public,
    })
}

fn invalid(path: &str, problem: String) -> SecretError {
    SecretError::InvalidHostKeys {
        path: path.to_string(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_checks_and_hides_its_private_half() {
        let entry = generate().unwrap();
        assert!(entry.public.starts_with("ssh-ed25519 "), "{}", entry.public);
        assert!(entry
            .private
            .expose()
            .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        let key = check("k.yaml", "vm", &entry).unwrap();
        assert_eq!(key.public, entry.public);
        assert!(!format!("{key:?}").contains("PRIVATE"), "{key:?}");
    }

    #[test]
    fn a_public_half_of_another_key_is_refused() {
        let mut entry = generate().unwrap();
        entry.public = generate().unwrap().public;
        let err = check("k.yaml", "teleport", &entry).unwrap_err();
        assert!(err.to_string().contains("teleport"), "{err}");
    }
}
