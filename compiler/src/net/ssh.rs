//! One command on a remote host over the operator's own `ssh` (their
//! config, keys and agent), its stdin fed from memory: the host setup's
//! archive, Teleport's kubeconfig. Never interactive (`BatchMode`: a
//! missing key or unknown host key fails instead of prompting), with an
//! optional config file (`-F`) and jump host (`-J`), and, for a machine
//! whose host key waddlec made, that key pinned: only it is accepted
//! (`StrictHostKeyChecking yes` against a known_hosts of that one entry,
//! looked up by its alias whatever address or jump reaches it).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Where to run.
pub struct Remote<'a> {
    /// `user@host`, or a `Host` of the ssh config.
    pub target: &'a str,
    pub config: Option<&'a Path>,
    pub jump: Option<&'a str>,
    /// The only host key to accept from the target (not the jump host).
    pub known_host: Option<KnownHost<'a>>,
}

/// A pinned host key: a known_hosts file and the name its entry has.
pub struct KnownHost<'a> {
    pub file: &'a Path,
    pub alias: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum SshError {
    #[error("cannot run ssh: {0}")]
    Spawn(std::io::Error),
    /// The command (or ssh itself) failed; the end of its stderr.
    #[error("{target}: {status}:\n{stderr}")]
    Failed {
        target: String,
        status: String,
        stderr: String,
    },
}

/// Runs `command` (a remote shell line) on `remote` with `stdin` as its
/// input; returns its stdout.
pub fn run(remote: &Remote<'_>, command: &str, stdin: Vec<u8>) -> Result<String, SshError> {
    let mut ssh = Command::new("ssh");
    if let Some(config) = remote.config {
        ssh.arg("-F").arg(config);
    }
    if let Some(jump) = remote.jump {
        ssh.arg("-J").arg(jump);
    }
    if let Some(known) = &remote.known_host {
        ssh.arg("-o")
            .arg(format!("UserKnownHostsFile={}", known.file.display()))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"])
            .args(["-o", "StrictHostKeyChecking=yes"])
            .arg("-o")
            .arg(format!("HostKeyAlias={}", known.alias));
    }
    ssh.args(["-o", "BatchMode=yes", "--"])
        .arg(remote.target)
        .arg(command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ssh.spawn().map_err(SshError::Spawn)?;
    let mut input = child.stdin.take().expect("stdin is piped");
    // Written from a thread while wait_with_output drains stdout and stderr
    // together, so a chatty remote cannot deadlock the pipes.
    let writer = std::thread::spawn(move || input.write_all(&stdin));
    let output = child.wait_with_output().map_err(SshError::Spawn)?;
    let _ = writer.join();
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
        return Err(SshError::Failed {
            target: remote.target.to_string(),
            status: output.status.to_string(),
            stderr: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `text` as one word for the remote shell.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_single_quotes() {
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
