//! Secret values as the pure stages see them: the one type that holds a
//! value ([`Secret`], never printed: `Debug` shows `<secret>`), the
//! placeholders of the review tree, what renderers get ([`SecretValues`]),
//! and the Talos bundle's types (`talos`).
//!
//! Reading references (`file:`, `env:`, `op://`) and generating keys act on
//! the world and live in the `waddlec` crate's `secrets`; this module only
//! holds and shapes values, so renderers render placeholders and real
//! values the same way.

pub mod talos;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::Model;

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

/// A Debian VM's SSH host key (ed25519), made once by `secrets init` and
/// handed to the VM on its seed disk, so its key is known before anyone
/// connects to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshHostKey {
    /// OpenSSH's private key format.
    pub private: Secret,
    /// `ssh-ed25519 BASE64`, without a comment.
    pub public: String,
}

/// Every secret a render needs, real or placeholders.
#[derive(Clone, Debug)]
pub struct SecretValues {
    pub talos: Option<talos::TalosCredentials>,
    pub github_client_secret: Option<Secret>,
    /// By VM name: every Debian VM's host key.
    pub ssh_host_keys: BTreeMap<String, SshHostKey>,
}

impl SecretValues {
    /// Placeholders for every secret the model uses: the review tree.
    pub fn redacted(model: &Model) -> Self {
        SecretValues {
            talos: model
                .talos
                .as_ref()
                .map(|cluster| talos::TalosCredentials::redacted(&cluster.name)),
            github_client_secret: model
                .teleport
                .as_ref()
                .and_then(|t| t.github.as_ref())
                .map(|_| placeholder("teleport/github/client_secret")),
            ssh_host_keys: model
                .debian_vms()
                .map(|vm| {
                    let slot = format!("vms/{}/ssh_host_ed25519_key", vm.name);
                    let key = SshHostKey {
                        private: placeholder(&slot),
                        public: format!("ssh-ed25519 {}", placeholder(&format!("{slot}.pub")).0),
                    };
                    (vm.name.clone(), key)
                })
                .collect(),
        }
    }
}
