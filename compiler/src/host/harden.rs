//! `host init`'s changes to the host's own files, by `harden.sh` over SSH:
//! sshd keys-only as a drop-in, and the host's name in `/etc/hosts`. The
//! sshd change is proven by a second, fresh login (no connection sharing,
//! so it really authenticates, and by key: passwords are off by then);
//! without that proof the host restores the previous configuration by
//! itself, so a change that would lock the operator out undoes itself.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::net::ssh::{self, Failure, Remote, SshError};

const SCRIPT: &str = include_str!("harden.sh");

/// How long the host waits for the proving login before it restores.
const PROOF_SECONDS: u32 = 60;

/// Where and how.
pub struct Harden<'a> {
    pub remote: &'a Remote<'a>,
    /// The host's files are under this directory (tests), else `/`.
    pub root: &'a str,
    pub node: &'a str,
    /// The address its name gets in `/etc/hosts` when missing: a lone
    /// host's public address, a cluster node's on the hosts' network.
    pub address: &'a str,
}

#[derive(Debug, thiserror::Error)]
pub enum HardenError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error(
        "a new SSH login to {target} failed after sshd was set to keys only ({problem}); the host restores its previous sshd configuration within {PROOF_SECONDS} s by itself. Check that your key is in root's authorized_keys, then run host init again"
    )]
    NotProven { target: String, problem: String },
}

impl Harden<'_> {
    /// What would change (`would change: …` lines), changing nothing.
    pub fn check(&self) -> Result<Vec<String>, HardenError> {
        Ok(lines(&self.script("check", "-")?))
    }

    /// Makes the changes; the sshd one only stays once a fresh login proves
    /// keys still work.
    pub fn apply(&self) -> Result<Vec<String>, HardenError> {
        let nonce = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            .to_string();
        let output = self.script("apply", &nonce)?;
        let changes = lines(&output);
        if let Some(proof) = output
            .lines()
            .find_map(|line| line.strip_prefix("awaiting proof: "))
        {
            // Create the proof, then wait until the watchdog took it.
            let command = format!(
                "touch {p} && for _ in $(seq 15); do [ -e {p} ] || exit 0; sleep 1; done; exit 1",
                p = ssh::quote(proof)
            );
            // sshd re-executes itself on reload: for a moment nothing
            // listens, so a refused connection is tried again.
            let mut attempt = 0;
            loop {
                match ssh::run_fresh(self.remote, &command) {
                    Ok(_) => break,
                    Err(e) if e.failure() == Failure::Unreachable && attempt < 10 => {
                        attempt += 1;
                        std::thread::sleep(std::time::Duration::from_millis(500));
                    }
                    Err(e) => {
                        return Err(HardenError::NotProven {
                            target: self.remote.target.to_string(),
                            problem: e.to_string(),
                        })
                    }
                }
            }
        }
        Ok(changes)
    }

    fn script(&self, mode: &str, nonce: &str) -> Result<String, SshError> {
        let command = format!(
            "bash -s -- {} {} {} {mode} {nonce} {PROOF_SECONDS}",
            ssh::quote(self.root),
            ssh::quote(self.node),
            ssh::quote(self.address),
        );
        ssh::run(self.remote, &command, SCRIPT.as_bytes().to_vec())
    }
}

fn lines(output: &str) -> Vec<String> {
    output
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("changed: ") || line.starts_with("would change: "))
        .map(str::to_string)
        .collect()
}
