//! The host record (`<blueprint>.host.toml`, e.g. `blueprints/waddle.host.toml`):
//! what `waddlec host init` learned of the Proxmox host over the operator's
//! own, verified SSH, committed beside the blueprint like the lock file: the
//! host's SSH host key (every later SSH to the host pins it) and the SHA-256
//! fingerprint of the certificate its API serves (`deploy` trusts exactly
//! that one). Nothing in it is secret.
//!
//! A `[cluster]` has one record per node (`<blueprint>.NODE.host.toml`,
//! e.g. `three-hosts.pve2.host.toml`), each learned from that node:
//! [`HostRecords`] reads them all.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const HEADER: &str = "\
# waddlec host record, written by `waddlec host init` from the host itself
# (over your own SSH). Commit it: every SSH to the host pins `ssh_host_key`,
# and deploy trusts exactly the API certificate `api_fingerprint` names.
# A changed value is refused until `waddlec host init --repin`.
";

/// What was learned of the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRecord {
    pub version: u32,
    /// The Proxmox node name: the alias the host key is known by.
    pub node: String,
    /// `ssh-ed25519 BASE64`, without a comment.
    pub ssh_host_key: String,
    /// `AB:CD:…`, the SHA-256 of the API's certificate.
    pub api_fingerprint: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read the host record {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the host record {path} is invalid: {problem}; `waddlec host init --repin` writes it again from the host")]
    Invalid { path: String, problem: String },
    #[error("host records exist for {recorded} but not for {missing}: `waddlec host init` stopped before them, and an SSH to them would pin nothing; run it again (it goes on from {first_missing})", first_missing = .missing.split(", ").next().unwrap_or_default())]
    Incomplete { recorded: String, missing: String },
    #[error("cannot write the host record {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl HostRecord {
    /// The record beside `blueprint`: `waddle.toml` → `waddle.host.toml`.
    pub fn path_for(blueprint: &Path) -> PathBuf {
        blueprint.with_extension("host.toml")
    }

    /// The record at `path`, if there is one.
    pub fn load(path: &Path) -> Result<Option<HostRecord>, RecordError> {
        let shown = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(RecordError::Read {
                    path: shown,
                    source,
                })
            }
        };
        let record: HostRecord = toml::from_str(&text).map_err(|e| RecordError::Invalid {
            path: shown.clone(),
            problem: e.message().to_string(),
        })?;
        let problem = if record.version != 1 {
            Some(format!("version {} is not 1", record.version))
        } else if ssh_key::PublicKey::from_openssh(&record.ssh_host_key).is_err()
            || record.ssh_host_key.split_whitespace().count() != 2
        {
            Some("`ssh_host_key` is not one `TYPE BASE64` SSH public key".to_string())
        } else if record.node.is_empty()
            || !record
                .node
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        {
            Some("`node` is not a host name".to_string())
        } else {
            None
        };
        match problem {
            Some(problem) => Err(RecordError::Invalid {
                path: shown,
                problem,
            }),
            None => Ok(Some(record)),
        }
    }

    /// Writes the record (a new file renamed over the old one).
    pub fn save(&self, path: &Path) -> Result<(), RecordError> {
        let write = |source| RecordError::Write {
            path: path.display().to_string(),
            source,
        };
        let text = toml::to_string(self).map_err(|e| write(std::io::Error::other(e)))?;
        let mut temp = path.as_os_str().to_owned();
        temp.push(".new");
        let temp = PathBuf::from(temp);
        std::fs::write(&temp, format!("{HEADER}{text}")).map_err(write)?;
        std::fs::rename(&temp, path).map_err(write)
    }

    /// The host key to pin, as `(alias, key)`.
    pub fn host_key(&self) -> (String, String) {
        (self.node.clone(), self.ssh_host_key.clone())
    }
}

/// The records of every host of a blueprint: one for a `[host]`, one per
/// node for a `[cluster]`. A host not initialised yet has none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostRecords {
    records: Vec<HostRecord>,
}

impl HostRecords {
    /// Where `node`'s record lives: beside the blueprint, `waddle.host.toml`
    /// for a lone host, `three-hosts.pve2.host.toml` for a cluster's node.
    pub fn path_for(blueprint: &Path, model: &crate::model::Model, node: &str) -> PathBuf {
        match model.proxmox.single_host() {
            Some(_) => HostRecord::path_for(blueprint),
            None => blueprint.with_extension(format!("{node}.host.toml")),
        }
    }

    /// The records of `model`'s hosts beside `blueprint`, each checked to be
    /// of its node: none (never initialised: the operator's known_hosts
    /// vouch), or one for every host. A cluster that `host init` left half
    /// done is refused rather than reached half pinned.
    pub fn for_blueprint(
        blueprint: &Path,
        model: &crate::model::Model,
    ) -> Result<HostRecords, RecordError> {
        let mut records = Vec::new();
        for host in &model.proxmox.hosts {
            let path = Self::path_for(blueprint, model, &host.node);
            let Some(record) = HostRecord::load(&path)? else {
                continue;
            };
            if record.node != host.node {
                return Err(RecordError::Invalid {
                    path: path.display().to_string(),
                    problem: format!(
                        "it records node `{}`, but the blueprint's host is `{}`",
                        record.node, host.node
                    ),
                });
            }
            records.push(record);
        }
        let missing: Vec<&str> = model
            .proxmox
            .hosts
            .iter()
            .map(|host| host.node.as_str())
            .filter(|node| !records.iter().any(|r| r.node == *node))
            .collect();
        if !records.is_empty() && !missing.is_empty() {
            let recorded: Vec<&str> = records.iter().map(|r| r.node.as_str()).collect();
            return Err(RecordError::Incomplete {
                recorded: recorded.join(", "),
                missing: missing.join(", "),
            });
        }
        Ok(HostRecords { records })
    }

    /// `node`'s record, if it has one.
    pub fn of(&self, node: &str) -> Option<&HostRecord> {
        self.records.iter().find(|r| r.node == node)
    }

    /// Every recorded host key, as `(node, key)`.
    pub fn host_keys(&self) -> Vec<(String, String)> {
        self.records.iter().map(HostRecord::host_key).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = HostRecord::path_for(&dir.path().join("waddle.toml"));
        assert!(path.ends_with("waddle.host.toml"));
        assert_eq!(HostRecord::load(&path).unwrap(), None);
        let record = HostRecord {
            version: 1,
            node: "pve1".into(),
            ssh_host_key: KEY.into(),
            api_fingerprint: "AB:CD".into(),
        };
        record.save(&path).unwrap();
        assert_eq!(HostRecord::load(&path).unwrap(), Some(record));
    }

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRlbW9jcmF0aWMtY3NpLXdhZGRsZS1wbGFjZWhvbGRy";

    /// A key line smuggling a second known_hosts entry is refused.
    #[test]
    fn a_record_with_more_than_one_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.host.toml");
        std::fs::write(
            &path,
            format!(
                "version = 1\nnode = \"pve1\"\nssh_host_key = \"{KEY}\\n* {KEY}\"\napi_fingerprint = \"AB\"\n"
            ),
        )
        .unwrap();
        let err = HostRecord::load(&path).unwrap_err();
        assert!(err.to_string().contains("ssh_host_key"), "{err}");
    }

    /// A cluster's nodes each have their own record, read by node; one of
    /// another node's name in a node's file is refused.
    #[test]
    fn a_cluster_has_a_record_per_node() {
        let model = crate::test_support::cluster(str::to_string);
        let dir = tempfile::tempdir().unwrap();
        let blueprint = dir.path().join("three-hosts.toml");
        let path = HostRecords::path_for(&blueprint, &model, "pve2");
        assert!(path.ends_with("three-hosts.pve2.host.toml"), "{path:?}");
        let record = |node: &str| HostRecord {
            version: 1,
            node: node.into(),
            ssh_host_key: KEY.into(),
            api_fingerprint: "AB:CD".into(),
        };
        assert_eq!(
            HostRecords::for_blueprint(&blueprint, &model).unwrap(),
            HostRecords::default()
        );
        record("pve2").save(&path).unwrap();
        // Half done: pve2 recorded, pve1 and pve3 not.
        let err = HostRecords::for_blueprint(&blueprint, &model).unwrap_err();
        assert!(
            err.to_string()
                .contains("exist for pve2 but not for pve1, pve3")
                && err.to_string().contains("goes on from pve1"),
            "{err}"
        );
        for node in ["pve1", "pve3"] {
            record(node)
                .save(&HostRecords::path_for(&blueprint, &model, node))
                .unwrap();
        }
        let records = HostRecords::for_blueprint(&blueprint, &model).unwrap();
        assert_eq!(records.of("pve2"), Some(&record("pve2")));
        assert_eq!(records.host_keys().len(), 3);
        record("pve3").save(&path).unwrap();
        let err = HostRecords::for_blueprint(&blueprint, &model).unwrap_err();
        assert!(err.to_string().contains("pve2.host.toml"), "{err}");
    }
}
