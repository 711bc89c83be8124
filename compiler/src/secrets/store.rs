//! Where the secrets waddlec owns are kept, as `talos.secrets` says: the
//! Talos bundle and, beside it in the same store, the talosctl admin
//! identity and the Debian VMs' SSH host keys. Each is one text document
//! in a [`Place`]:
//!
//! | store | bundle | admin identity | SSH host keys |
//! |---|---|---|---|
//! | `file:secrets/c.yaml` | that file (0600) | `secrets/c.admin.yaml` | `secrets/c.ssh-host-keys.yaml` |
//! | `age:c.yaml.age` | that file, encrypted | `c.admin.yaml.age` | `c.ssh-host-keys.yaml.age` |
//! | `op://V/talos/c.yaml` | Document item `talos` in vault `V`, file `c.yaml` | item `talos-admin`, file `c.admin.yaml` | item `talos-ssh-host-keys`, file `c.ssh-host-keys.yaml` |
//!
//! A place is read (absent is `None`), created only where nothing is
//! (never over an existing document, in any store), or replaced whole (the
//! host keys, when a new VM gets its key). `file:` and `age:` paths are
//! read and written only where [`confine`](super::confine) allows.

use std::cell::OnceCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use waddlec_core::model::{AgeRecipient, BundleStore, SecretRef, TalosCluster};

use super::{age_store, files, Secret, SecretError};
use crate::net::onepassword::{self, Document};

/// The blueprint key that says where the store is.
const KEY: &str = "talos.secrets";

/// One document of the store.
#[derive(Clone)]
pub enum Place {
    /// A plain 0600 file.
    File(PathBuf),
    /// A 1Password Document item.
    OnePassword(Document),
    /// A file encrypted with age.
    Age(PathBuf, Rc<AgeKeys>),
}

/// The recipients an age store is written for and the identity it is read
/// with, read once per command.
pub struct AgeKeys {
    recipients: Vec<AgeRecipient>,
    identity: SecretRef,
    base: PathBuf,
    read: OnceCell<Secret>,
}

impl AgeKeys {
    fn identity(&self) -> Result<&Secret, SecretError> {
        if let Some(identity) = self.read.get() {
            return Ok(identity);
        }
        let identity = super::read("talos.age.identity", &self.identity, &self.base)?;
        Ok(self.read.get_or_init(|| identity))
    }
}

impl Place {
    /// Where the bundle of `cluster` is kept; `base` is the blueprint's
    /// directory.
    pub fn bundle(cluster: &TalosCluster, base: &Path) -> Result<Place, SecretError> {
        Ok(match &cluster.secrets {
            BundleStore::File(path) => Place::File(confined(&cluster.secrets, path, base)?),
            BundleStore::OnePassword { vault, item, file } => Place::OnePassword(Document {
                vault: vault.clone(),
                item: item.clone(),
                file: file.clone(),
            }),
            BundleStore::Age {
                path,
                recipients,
                identity,
            } => Place::Age(
                confined(&cluster.secrets, path, base)?,
                Rc::new(AgeKeys {
                    recipients: recipients.clone(),
                    identity: identity.clone(),
                    base: base.to_path_buf(),
                    read: OnceCell::new(),
                }),
            ),
        })
    }

    /// The document `kind` (`admin`, `ssh-host-keys`) kept beside this one.
    pub fn beside(&self, kind: &str) -> Place {
        match self {
            Place::File(path) => Place::File(path.with_file_name(beside_name(path, kind))),
            Place::Age(path, keys) => Place::Age(
                path.with_file_name(format!("{}.age", beside_name(path, kind))),
                Rc::clone(keys),
            ),
            Place::OnePassword(document) => Place::OnePassword(Document {
                vault: document.vault.clone(),
                item: format!("{}-{kind}", document.item),
                file: beside_name(Path::new(&document.file), kind),
            }),
        }
    }

    /// The document, or `None` where there is none.
    pub fn read(&self) -> Result<Option<Secret>, SecretError> {
        match self {
            Place::File(path) => Ok(read_file(path)?
                .map(|bytes| Secret::new(String::from_utf8_lossy(&bytes).into_owned()))),
            Place::OnePassword(document) => Ok(onepassword::document_get(document)?),
            Place::Age(path, keys) => match read_file(path)? {
                None => Ok(None),
                Some(encrypted) => {
                    let identity = keys.identity()?;
                    let shown = path.display().to_string();
                    age_store::decrypt(&encrypted, identity, &keys.identity.to_string(), &shown)
                        .map(Some)
                }
            },
        }
    }

    /// Creates the document where there is none; refuses (`Exists`) where
    /// there is one.
    pub fn create(&self, contents: &Secret) -> Result<(), SecretError> {
        match self {
            Place::File(path) => files::create_new(path, contents.expose()),
            Place::OnePassword(document) => {
                if onepassword::document_get(document)?.is_some() {
                    return Err(SecretError::Exists(document.to_string()));
                }
                Ok(onepassword::document_create(document, contents)?)
            }
            Place::Age(path, keys) => {
                if path.exists() {
                    return Err(SecretError::Exists(path.display().to_string()));
                }
                let shown = path.display().to_string();
                files::create_new(
                    path,
                    &age_store::encrypt(&keys.recipients, contents, &shown)?,
                )
            }
        }
    }

    /// Replaces the document, which exists, whole.
    pub fn replace(&self, contents: &Secret) -> Result<(), SecretError> {
        match self {
            Place::File(path) => files::replace(path, contents.expose()),
            Place::OnePassword(document) => Ok(onepassword::document_edit(document, contents)?),
            Place::Age(path, keys) => {
                let shown = path.display().to_string();
                files::replace(
                    path,
                    &age_store::encrypt(&keys.recipients, contents, &shown)?,
                )
            }
        }
    }

    /// Whether a document is there.
    pub fn exists(&self) -> Result<bool, SecretError> {
        match self {
            Place::File(path) | Place::Age(path, _) => Ok(path.exists()),
            Place::OnePassword(document) => Ok(onepassword::document_get(document)?.is_some()),
        }
    }
}

impl std::fmt::Display for Place {
    /// A file's path, or the 1Password reference of the document.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::File(path) | Place::Age(path, _) => path.display().fmt(f),
            Place::OnePassword(document) => document.fmt(f),
        }
    }
}

/// `NAME.yaml` (or `NAME.yml`, `NAME.yaml.age`, `NAME`) → `NAME.KIND.yaml`.
fn beside_name(path: &Path, kind: &str) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = name.strip_suffix(".age").unwrap_or(&name);
    let stem = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".yml"))
        .unwrap_or(name);
    format!("{stem}.{kind}.yaml")
}

/// The path of the store, relative to `base`, once it is known to stay
/// where secrets may be read from: the blueprint's own part of the rule
/// (E0130, which resolve already checked, again for any model), then where
/// the file really is ([`super::file_path`]'s rule).
fn confined(store: &BundleStore, path: &str, base: &Path) -> Result<PathBuf, SecretError> {
    let reference = store.to_string();
    waddlec_core::resolve::check_secret_reference(&SecretRef::File(path.to_string())).map_err(
        |reason| SecretError::Unconfined {
            key: KEY.to_string(),
            reference: reference.clone(),
            reason: format!("it {reason}"),
        },
    )?;
    super::confined_path(KEY, &reference, path, base)
}

fn read_file(path: &Path) -> Result<Option<Vec<u8>>, SecretError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SecretError::Read {
            reference: path.display().to_string(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_sit_beside_the_bundle_in_every_store() {
        let file = Place::File(PathBuf::from("secrets/waddle.yaml"));
        assert_eq!(
            file.beside("admin").to_string(),
            "secrets/waddle.admin.yaml"
        );
        assert_eq!(
            Place::File(PathBuf::from("bundle"))
                .beside("admin")
                .to_string(),
            "bundle.admin.yaml"
        );
        let keys = Rc::new(AgeKeys {
            recipients: Vec::new(),
            identity: SecretRef::Env("WADDLE_AGE".into()),
            base: PathBuf::new(),
            read: OnceCell::new(),
        });
        let age = Place::Age(PathBuf::from("c.yaml.age"), keys);
        assert_eq!(
            age.beside("ssh-host-keys").to_string(),
            "c.ssh-host-keys.yaml.age"
        );
        let op = Place::OnePassword(Document {
            vault: "infra".into(),
            item: "talos".into(),
            file: "c.yaml".into(),
        });
        assert_eq!(
            op.beside("admin").to_string(),
            "op://infra/talos-admin/c.admin.yaml"
        );
    }
}
