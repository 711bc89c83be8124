//! Host setup over SSH, with the operator's own `ssh` (so `~/.ssh/config`,
//! agents, jump hosts and Teleport's generated ssh config all work): the
//! tree's `host/` files go over as one tar on stdin, and `host/setup.sh`
//! runs on the host as root. Nothing is left behind but what the script
//! installs; the script is idempotent and has a `--check` mode, which is
//! how the plan shows what would change.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The files of the tree's `host/` directory the script needs.
const HOST_FILES: &[&str] = &[
    "setup.sh",
    "network/90-waddlec.conf",
    "network/host-network.rules",
    "network/waddlec-host-network",
    "network/waddlec-host-network.service",
    "firewall/cluster.fw",
    "firewall/host.fw",
];

/// How to reach the host.
#[derive(Clone, Debug)]
pub struct Ssh {
    /// `user@host` (or a `Host` of the ssh config).
    pub target: String,
    /// An ssh config file to use instead of the user's (`ssh -F`).
    pub config: Option<PathBuf>,
    /// Install under this directory instead of `/` (tests).
    pub root: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HostSetupError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run ssh: {0}")]
    Spawn(std::io::Error),
    #[error("host setup on {target} failed ({status}):\n{stderr}")]
    Failed {
        target: String,
        status: String,
        stderr: String,
    },
}

/// Runs the setup (or, with `check`, only asks what it would change) and
/// returns the changes it reports, one per line.
pub fn run(ssh: &Ssh, tree: &Path, check: bool) -> Result<Vec<String>, HostSetupError> {
    let archive = archive(&tree.join("host"))?;
    let mut script = String::from(
        "set -eu; stage=$(mktemp -d); trap 'rm -rf \"$stage\"' EXIT; \
         tar -x -C \"$stage\" -f -; bash \"$stage/setup.sh\" \"$stage\"",
    );
    if check {
        script.push_str(" --check");
    }
    if let Some(root) = &ssh.root {
        script.push_str(&format!(" --root '{}'", root.replace('\'', r"'\''")));
    }
    let mut command = Command::new("ssh");
    if let Some(config) = &ssh.config {
        command.arg("-F").arg(config);
    }
    // Never stop to ask for a password or a host key: fail instead.
    command
        .args(["-o", "BatchMode=yes", "--"])
        .arg(&ssh.target)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tracing::info!(target = %ssh.target, check, "host setup over ssh");
    let mut child = command.spawn().map_err(HostSetupError::Spawn)?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    // Written from a thread while wait_with_output drains stdout and stderr
    // together, so a chatty remote cannot deadlock the pipes.
    let writer = std::thread::spawn(move || stdin.write_all(&archive));
    let output = child.wait_with_output().map_err(HostSetupError::Spawn)?;
    let _ = writer.join();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        return Err(HostSetupError::Failed {
            target: ssh.target.clone(),
            status: output.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    // Only the script's report lines: a login banner or a shell rc file
    // that prints must not count as a change.
    Ok(stdout
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("changed: ") || line.starts_with("would change: "))
        .map(str::to_string)
        .collect())
}

/// The host files as a tar with fixed owners and times.
fn archive(host: &Path) -> Result<Vec<u8>, HostSetupError> {
    let mut builder = tar::Builder::new(Vec::new());
    for name in HOST_FILES {
        let path = host.join(name);
        let read_error = |source| HostSetupError::Read {
            path: path.display().to_string(),
            source,
        };
        let contents = std::fs::read(&path).map_err(read_error)?;
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(if name.ends_with(".sh") || name.ends_with("host-network") {
            0o755
        } else {
            0o644
        });
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        builder
            .append_data(&mut header, name, contents.as_slice())
            .map_err(read_error)?;
    }
    builder.into_inner().map_err(|source| HostSetupError::Read {
        path: host.display().to_string(),
        source,
    })
}
