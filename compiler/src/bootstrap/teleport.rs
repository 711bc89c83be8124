//! Installs Teleport's kubeconfig on the Teleport VM over the operator's
//! own `ssh` (through the Proxmox host by default: the VM has no public
//! SSH), 0600 by an atomic rename, then restarts Teleport if it runs, so
//! its `kubernetes_service` starts with the cluster's credentials.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::secrets::Secret;

/// How to reach the Teleport VM.
#[derive(Clone, Debug)]
pub struct TeleportSsh {
    /// `login@address`, or a `Host` of the ssh config.
    pub target: String,
    /// Jump through this host first (`ssh -J`), normally `host.ssh`.
    pub jump: Option<String>,
    /// Install under this directory instead of `/` (tests).
    pub root: Option<String>,
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
    let mut command = Command::new("ssh");
    if let Some(config) = config {
        command.arg("-F").arg(config);
    }
    if let Some(jump) = &ssh.jump {
        command.arg("-J").arg(jump);
    }
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let remote = format!(
        "sh -c {} sh {} {}",
        quote(SCRIPT),
        quote(path),
        quote(ssh.root.as_deref().unwrap_or(""))
    );
    command
        .args(["-o", "BatchMode=yes", "--"])
        .arg(&ssh.target)
        .arg(remote)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tracing::info!(target = %ssh.target, %path, "installing Teleport's kubeconfig");
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run ssh: {e}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let bytes = contents.expose().as_bytes().to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let output = child
        .wait_with_output()
        .map_err(|e| format!("cannot run ssh: {e}"))?;
    let _ = writer.join();
    if output.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        Err(format!(
            "installing {path} on {} failed ({}):\n{}",
            ssh.target,
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ))
    }
}
