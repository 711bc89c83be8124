//! The host's own API command line, `pvesh`, over SSH: it runs on the host
//! as root@pam without a token (so it can create the token deploy then
//! uses) and takes the API's paths and parameters, so every host-side
//! change is held to the same schema as the API calls. One SSH call per
//! API call; answers in JSON (`--output-format json`).

use serde_json::Value;

use crate::net::ssh::{self, Remote, SshError};

/// `pvesh`'s verbs (pve-manager `PVE::CLI::pvesh`): one per HTTP method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    Create,
    Set,
    Delete,
}

impl Verb {
    fn word(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::Create => "create",
            Verb::Set => "set",
            Verb::Delete => "delete",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PveshError {
    #[error(transparent)]
    Ssh(#[from] SshError),
    #[error("`pvesh {verb} {path}` answered something that is not JSON")]
    NotJson { verb: &'static str, path: String },
}

/// `pvesh` on one host.
pub struct Pvesh<'a> {
    pub remote: Remote<'a>,
}

impl Pvesh<'_> {
    /// Runs `pvesh VERB PATH --key value…`; its JSON answer (`Null` for
    /// none). A failure carries pvesh's own message (PVE's error text,
    /// which never holds a secret the call returned).
    pub fn call(
        &self,
        verb: Verb,
        path: &str,
        params: &[(&str, &str)],
    ) -> Result<Value, PveshError> {
        let mut command = format!("pvesh {} {}", verb.word(), ssh::quote(path));
        for (key, value) in params {
            command.push_str(&format!(" --{key} {}", ssh::quote(value)));
        }
        command.push_str(" --output-format json");
        tracing::debug!(verb = verb.word(), path, "pvesh");
        let stdout = ssh::run(&self.remote, &command, Vec::new())?;
        let stdout = stdout.trim();
        if stdout.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(stdout).map_err(|_| PveshError::NotJson {
            verb: verb.word(),
            path: path.to_string(),
        })
    }

    pub fn get(&self, path: &str) -> Result<Value, PveshError> {
        self.call(Verb::Get, path, &[])
    }
}
