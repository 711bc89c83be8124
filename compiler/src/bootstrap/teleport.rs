//! Installs Teleport's kubeconfig on the Teleport VM over the operator's
//! own `ssh` (through the Proxmox host by default: the VM has no public
//! SSH), 0600 by an atomic rename, then restarts Teleport if it runs, so
//! its `kubernetes_service` starts with the cluster's credentials. The VM
//! must present the host key its seed gave it (`secrets::ssh_host_keys`):
//! the kubeconfig is a cluster credential, never handed to whatever
//! answers at the VM's address.

use std::path::Path;

use crate::net::ssh::{quote, run, PinnedKeys, Remote};

use crate::secrets::Secret;

/// How to reach the Teleport VM.
#[derive(Clone, Debug)]
pub struct TeleportSsh {
    /// `login@address`, or a `Host` of the ssh config.
    pub target: String,
    /// Jump through this host first, normally `host.ssh`.
    pub jump: Option<String>,
    /// The jump host's pinned key `(node, key)`, from the host record.
    pub jump_key: Option<(String, String)>,
    /// Reach `target` through Teleport's proxy instead (no jump, nothing
    /// pinned: the proxy speaks for the VM with Teleport's host CA).
    pub through: Option<crate::net::ssh::TeleportProxy>,
    /// Install under this directory instead of `/` (tests).
    pub root: Option<String>,
    /// The VM's name: its host key's alias.
    pub vm: String,
    /// Its host key, `ssh-ed25519 BASE64`: the only one accepted.
    pub host_key: String,
}

/// The remote script: stdin becomes `$1` (under `$2`), 0600, atomically.
const SCRIPT: &str = r#"set -eu
sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo -n"
dest="$2$1"
$sudo install -d -m 0700 "$(dirname "$dest")"
tmp=$($sudo mktemp "$dest.XXXXXX")
$sudo tee "$tmp" >/dev/null
$sudo chmod 0600 "$tmp"
$sudo mv -f "$tmp" "$dest"
$sudo systemctl try-restart teleport.service"#;

pub fn install(
    ssh: &TeleportSsh,
    config: Option<&Path>,
    path: &str,
    contents: &Secret,
) -> Result<(), String> {
    let remote = format!(
        "sh -c {} sh {} {}",
        quote(SCRIPT),
        quote(path),
        quote(ssh.root.as_deref().unwrap_or(""))
    );
    tracing::info!(target = %ssh.target, %path, "installing Teleport's kubeconfig");
    let mut keys = vec![(ssh.vm.as_str(), ssh.host_key.as_str())];
    if let Some((node, key)) = &ssh.jump_key {
        keys.push((node, key));
    }
    let known_hosts =
        PinnedKeys::new(keys).map_err(|e| format!("cannot write a known_hosts: {e}"))?;
    let target = Remote {
        target: &ssh.target,
        config,
        jump: ssh.jump.as_deref(),
        jump_known_host: ssh
            .jump_key
            .as_ref()
            .map(|(node, _)| known_hosts.known(node)),
        known_host: Some(known_hosts.known(&ssh.vm)).filter(|_| ssh.through.is_none()),
        teleport: ssh.through.as_ref(),
    };
    run(&target, &remote, contents.expose().as_bytes().to_vec())
        .map(|_| ())
        .map_err(|e| format!("installing {path} failed: {e}"))
}
