//! Asking a git server over SSH what a branch points at (`git ls-remote
//! URL refs/heads/BRANCH`), with one given key and one given set of host
//! keys: what Flux will do with the deploy key, done read-only from here.
//!
//! The key is written to a 0600 temp file (ssh reads keys only from files)
//! and removed when the call ends; ssh is told to use only it
//! (`IdentitiesOnly=yes`, `-F /dev/null`: not the operator's config, agent
//! or keys, which might succeed where Flux would not), to trust only the
//! given host keys (`UserKnownHostsFile`, `StrictHostKeyChecking=yes`) and
//! never to ask (`BatchMode=yes`). The git command runs with a deadline:
//! a server that never answers is killed at it.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use waddlec_core::secrets::Secret;

/// Why `git ls-remote` did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum GitRemoteError {
    /// The server could not be reached: refused, no route, no such host,
    /// or no answer before the deadline.
    #[error("{0}")]
    Unreachable(String),
    /// The server answered and refused: the key, the host key, the
    /// repository.
    #[error("{0}")]
    Refused(String),
    #[error("cannot run git: {0}")]
    NoGit(String),
}

/// The commit `branch` points at on `url` (`None`: no such branch).
pub fn ls_remote(
    url: &str,
    branch: &str,
    key: &Secret,
    known_hosts: &[&str],
    timeout: Duration,
) -> Result<Option<String>, GitRemoteError> {
    let no_git = |e: std::io::Error| GitRemoteError::NoGit(e.to_string());
    let dir = tempfile::tempdir().map_err(no_git)?;
    let key_file = dir.path().join("deploy_key");
    let mut key_text = key.expose().trim_end().to_string();
    key_text.push('\n');
    crate::secrets::files::create_new(&key_file, &key_text)
        .map_err(|e| GitRemoteError::NoGit(e.to_string()))?;
    let hosts_file = dir.path().join("known_hosts");
    std::fs::write(&hosts_file, known_hosts.join("\n") + "\n").map_err(no_git)?;
    let ssh = format!(
        "ssh -F /dev/null -i '{}' -o IdentitiesOnly=yes -o IdentityAgent=none \
         -o UserKnownHostsFile='{}' -o GlobalKnownHostsFile=/dev/null \
         -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout={}",
        key_file.display(),
        hosts_file.display(),
        timeout.as_secs().max(1)
    );
    tracing::debug!(%url, %branch, "git ls-remote");
    let mut child = Command::new("git")
        .args(["ls-remote", "--", url, &format!("refs/heads/{branch}")])
        .env("GIT_SSH_COMMAND", ssh)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(no_git)?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(no_git)? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(GitRemoteError::Unreachable(format!(
                "no answer within {}s",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut stderr);
    }
    if status.success() {
        return Ok(stdout.split_whitespace().next().map(str::to_string));
    }
    Err(classify(&stderr))
}

/// ssh's own words for a server it could not reach, against one that
/// answered and said no.
fn classify(stderr: &str) -> GitRemoteError {
    let said = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("fatal: Could not read from remote"))
        .collect::<Vec<_>>()
        .join("; ");
    const UNREACHABLE: &[&str] = &[
        "Connection refused",
        "Connection timed out",
        "No route to host",
        "Network is unreachable",
        "Could not resolve hostname",
        "Connection closed by remote host",
    ];
    if UNREACHABLE.iter().any(|words| stderr.contains(words)) {
        GitRemoteError::Unreachable(said)
    } else {
        GitRemoteError::Refused(said)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_key_is_refused_and_a_refused_connection_unreachable() {
        assert!(matches!(
            classify("git@host: Permission denied (publickey).\nfatal: Could not read from remote repository.\n"),
            GitRemoteError::Refused(said) if said == "git@host: Permission denied (publickey)."
        ));
        assert!(matches!(
            classify("ssh: connect to host 127.0.0.1 port 9: Connection refused\n"),
            GitRemoteError::Unreachable(_)
        ));
    }
}
