//! Exit codes, one meaning each (also listed in `waddlec --help` and the
//! README), and the one table that maps every error type of the library
//! onto them ([`Code`]), so the CLI never decides a code itself.

/// Success.
pub const OK: u8 = 0;
/// The blueprint is invalid (or has warnings under `--strict`).
pub const INVALID: u8 = 1;
/// The command line is wrong (clap's own code).
pub const USAGE: u8 = 2;
/// `--check` found the output tree out of date.
pub const STALE: u8 = 3;
/// A secret the command needs is missing or unreadable (e.g. no Talos
/// secrets bundle yet, or an age-encrypted one the identity cannot
/// decrypt), `secrets init` would overwrite one, or a `file:` secret is
/// really outside the directories secrets are read from.
pub const SECRETS: u8 = 4;
/// An upstream input is not pinned in the lock file (under `--locked`) or
/// does not match its pin.
pub const LOCK: u8 = 5;
/// `deploy`: the host conflicts with the blueprint (a VMID held by another
/// VM, a VM locked by a running task, a bridge it did not make or missing
/// under `--skip-host`, someone else's pending network changes, the host
/// changed under the plan), or the plan held a step back on purpose (a
/// replace without `--allow-replace`, a restart without `--allow-restart`,
/// an image the tree lacks). `platform publish`: the
/// platform repository has local changes, or ignores a file to publish.
pub const CONFLICT: u8 = 6;
/// `deploy`: another deploy holds the host's lock.
pub const LOCKED: u8 = 7;
/// `status`, `preflight`: a check found something not as the blueprint
/// says (each failed check is printed with what to do).
pub const CHECK_FAILED: u8 = 8;
/// A remote service (Image Factory, 1Password) failed or disagreed, or a
/// host program a command needs (mmdebstrap, mke2fs, git) is
/// missing or failed.
pub const UNAVAILABLE: u8 = 69;
/// Reading or writing files failed.
pub const IO: u8 = 74;
/// `host init`: the host did not answer over SSH (refused, timed out, no
/// route, unknown name). `status`, `preflight`: something a check needs
/// could not be reached, and no check failed.
pub const UNREACHABLE: u8 = 75;
/// `host init`: the host refused the operator's SSH key, or the operator's
/// ssh does not trust the host's key.
pub const NOPERM: u8 = 77;
/// A bug in waddlec.
pub const INTERNAL: u8 = 70;

/// The exit code an error stands for. Implemented here, for every error
/// type a command can end with, so the whole mapping is one table.
pub trait Code {
    fn exit_code(&self) -> u8;
}

use crate::bake::BakeError;
use crate::bootstrap::BootstrapError;
use crate::build::workflow::{BuildError, Outcome as BuildOutcome};
use crate::build::CompileError;
use crate::deploy::apply::ApplyError;
use crate::deploy::desired::DesiredError;
use crate::deploy::lock::LockError;
use crate::deploy::workflow::{DeployError, Outcome};
use crate::host::harden::HardenError;
use crate::host::init::HostInitError;
use crate::host::token::TokenError;
use crate::net::fetch::FetchError;
use crate::net::ssh::{Failure, SshError};
use crate::publish::PublishError;
use crate::secrets::client_config::MergeError;
use crate::secrets::SecretError;
use crate::status::StatusError;
use crate::store::StoreError;

impl Code for CompileError {
    fn exit_code(&self) -> u8 {
        match self {
            CompileError::Core(waddlec_core::CompileError::Invalid(_)) => INVALID,
            CompileError::Core(_) => INTERNAL,
            CompileError::Secret(err) => err.exit_code(),
            CompileError::Upstream(err) => err.exit_code(),
        }
    }
}

/// A build that did not fail: 0, or STALE when `--check` found the tree out
/// of date.
impl Code for BuildOutcome {
    fn exit_code(&self) -> u8 {
        match self {
            BuildOutcome::Written { .. } | BuildOutcome::Fresh => OK,
            BuildOutcome::Stale(_) => STALE,
        }
    }
}

impl Code for BuildError {
    fn exit_code(&self) -> u8 {
        match self {
            BuildError::Compile(err) => err.exit_code(),
            // A wrong `--out`: refused before any work.
            BuildError::ReviewTree(_) | BuildError::Destination(_) => USAGE,
            BuildError::Pins(_) | BuildError::ReadTree { .. } | BuildError::Write(_) => IO,
            BuildError::Bake(err) => err.exit_code(),
            BuildError::Store(err) => err.exit_code(),
            BuildError::NoStore | BuildError::PushWithoutImages => USAGE,
            BuildError::Strict(_) => INVALID,
            BuildError::Seeds(_) | BuildError::Internal(_) => INTERNAL,
        }
    }
}

impl Code for SecretError {
    fn exit_code(&self) -> u8 {
        match self {
            SecretError::Write { .. } => IO,
            // The blueprint has nothing `secrets init` could make.
            SecretError::NoTalos | SecretError::NothingToCreate => USAGE,
            // A `[talos.age]` recipient whose checksum is wrong: the
            // blueprint's mistake, found when the age store is written.
            SecretError::AgeRecipient { .. } => INVALID,
            // Read, unset, empty, missing, invalid, exists, unconfined,
            // 1Password, an age identity that is not one or does not
            // decrypt: a secret the command needs is not to be had (or
            // would be overwritten, or may not be read).
            _ => SECRETS,
        }
    }
}

impl Code for FetchError {
    fn exit_code(&self) -> u8 {
        match self {
            FetchError::Net(_) => UNAVAILABLE,
            FetchError::Cache { .. } => IO,
            FetchError::NotLocked { .. }
            | FetchError::Mismatch { .. }
            | FetchError::Unusable { .. } => LOCK,
        }
    }
}

impl Code for BakeError {
    fn exit_code(&self) -> u8 {
        match self {
            BakeError::Fetch(err) => err.exit_code(),
            BakeError::Factory(_) => UNAVAILABLE,
            BakeError::Io { .. } => IO,
            // A host program missing or failing (mmdebstrap, mke2fs).
            BakeError::MissingTools(_) | BakeError::Image { .. } => UNAVAILABLE,
            BakeError::Store(err) => err.exit_code(),
        }
    }
}

impl Code for StoreError {
    fn exit_code(&self) -> u8 {
        match self {
            StoreError::Secret(err) => err.exit_code(),
            StoreError::S3(_) | StoreError::Receipt { .. } => UNAVAILABLE,
            // An object that is not what its receipt or the lock says.
            StoreError::Mismatch { .. } | StoreError::Pin { .. } | StoreError::NotLocked { .. } => {
                LOCK
            }
            StoreError::Io { .. } => IO,
        }
    }
}

impl Code for DesiredError {
    fn exit_code(&self) -> u8 {
        match self {
            DesiredError::Read { .. } => IO,
            DesiredError::NotDeployable { .. } | DesiredError::Stale { .. } => STALE,
        }
    }
}

impl Code for LockError {
    fn exit_code(&self) -> u8 {
        match self {
            LockError::Held { .. } => LOCKED,
            LockError::Api(_) => UNAVAILABLE,
        }
    }
}

/// A deploy that did not fail: 0, or CONFLICT when the plan held a step
/// back on purpose (a replace without `--allow-replace`), or USAGE when the
/// operator declined.
impl Code for Outcome {
    fn exit_code(&self) -> u8 {
        match self {
            Outcome::NothingToDo { held_back }
            | Outcome::DryRun { held_back }
            | Outcome::Applied { held_back } => {
                if *held_back == 0 {
                    OK
                } else {
                    CONFLICT
                }
            }
            Outcome::Declined => USAGE,
        }
    }
}

impl Code for DeployError {
    fn exit_code(&self) -> u8 {
        match self {
            DeployError::Desired(err) => err.exit_code(),
            DeployError::UnknownVm { .. } => USAGE,
            DeployError::NoFingerprint => INVALID,
            DeployError::FingerprintDisagrees { .. } => CONFLICT,
            DeployError::Token(_) | DeployError::TalosSecrets(_) => SECRETS,
            DeployError::TalosReach(_) => UNAVAILABLE,
            DeployError::Store(err) => err.exit_code(),
            DeployError::Client(_) => INTERNAL,
            DeployError::Apply(
                ApplyError::NotDesired { .. }
                | ApplyError::NotDesiredBridge { .. }
                | ApplyError::NoEtcdStep { .. },
            ) => INTERNAL,
            DeployError::Remote(_) | DeployError::HostSetup(_) | DeployError::Apply(_) => {
                UNAVAILABLE
            }
            DeployError::Conflicts
            | DeployError::LockOut(_)
            | DeployError::HostLockOut { .. }
            | DeployError::Changed => CONFLICT,
            DeployError::Lock(err) => err.exit_code(),
        }
    }
}

impl Code for SshError {
    fn exit_code(&self) -> u8 {
        match self.failure() {
            Failure::Unreachable => UNREACHABLE,
            Failure::KeyRefused | Failure::HostKey => NOPERM,
            Failure::Command => UNAVAILABLE,
        }
    }
}

impl Code for TokenError {
    fn exit_code(&self) -> u8 {
        match self {
            TokenError::Pvesh(_) | TokenError::NoValue | TokenError::Api(_) => UNAVAILABLE,
            // Where host.api_token points cannot take the token.
            TokenError::Store(_) | TokenError::NotKept { .. } | TokenError::Stranded { .. } => {
                SECRETS
            }
            // A token or stored value exists: replaced only with --rotate.
            TokenError::NotWorking { .. } | TokenError::WouldOverwrite { .. } => CONFLICT,
        }
    }
}

impl Code for HostInitError {
    fn exit_code(&self) -> u8 {
        match self {
            HostInitError::Ssh(err) => err.exit_code(),
            HostInitError::Harden(HardenError::Ssh(err)) => err.exit_code(),
            HostInitError::Harden(HardenError::NotProven { .. }) => NOPERM,
            HostInitError::Token(err) => err.exit_code(),
            HostInitError::NotProxmox { .. } | HostInitError::Pvesh(_) => UNAVAILABLE,
            HostInitError::Record(_) => IO,
            // The host is not what was recorded (or what the blueprint pins).
            HostInitError::Changed { .. } | HostInitError::BlueprintDisagrees { .. } => CONFLICT,
        }
    }
}

impl Code for BootstrapError {
    fn exit_code(&self) -> u8 {
        match self {
            BootstrapError::NoCluster => USAGE,
            BootstrapError::Secret { .. } => SECRETS,
            _ => UNAVAILABLE,
        }
    }
}

impl Code for StatusError {
    fn exit_code(&self) -> u8 {
        match self {
            StatusError::Token(err) | StatusError::TalosSecrets(err) => err.exit_code(),
            // The build made it: a bug, not the operator's doing.
            StatusError::SdnObjects(_) => INTERNAL,
        }
    }
}

impl Code for PublishError {
    fn exit_code(&self) -> u8 {
        match self {
            PublishError::NotARepository { .. }
            | PublishError::NotTopLevel { .. }
            | PublishError::Detached { .. }
            | PublishError::NoUpstream { .. } => USAGE,
            PublishError::LocalChanges { .. }
            | PublishError::Ignored { .. }
            | PublishError::RemoteMoved { .. }
            | PublishError::Diverged { .. }
            | PublishError::PushRejected { .. } => CONFLICT,
            PublishError::Spawn(_) | PublishError::Git { .. } | PublishError::Commit { .. } => {
                UNAVAILABLE
            }
            PublishError::Io { .. } => IO,
            PublishError::Empty | PublishError::BadPath { .. } => INTERNAL,
        }
    }
}

impl Code for MergeError {
    fn exit_code(&self) -> u8 {
        match self {
            // The operator's file cannot be read, or is not a config to
            // merge into: nothing is written.
            MergeError::Read { .. } | MergeError::NotAConfig { .. } => IO,
            MergeError::Internal(..) => INTERNAL,
            MergeError::Write(err) => err.exit_code(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::PathBuf;

    use super::*;
    use crate::diagnostics::Diagnostics;

    fn io_error() -> io::Error {
        io::Error::new(io::ErrorKind::NotFound, "gone")
    }

    /// The table, one row per kind of ending a user can meet.
    #[test]
    fn every_error_has_its_documented_code() {
        let rows: Vec<(Box<dyn Code>, u8)> = vec![
            (
                Box::new(CompileError::Core(waddlec_core::CompileError::Invalid(
                    Diagnostics::default(),
                ))),
                INVALID,
            ),
            (
                Box::new(CompileError::Secret(SecretError::Unset("env:X".into()))),
                SECRETS,
            ),
            (
                Box::new(CompileError::Upstream(FetchError::NotLocked {
                    name: "flux".into(),
                    url: "https://example.invalid/".into(),
                })),
                LOCK,
            ),
            (
                Box::new(FetchError::Unusable {
                    name: "cilium chart".into(),
                    url: "https://example.invalid/".into(),
                    problem: "too large".into(),
                }),
                LOCK,
            ),
            (
                Box::new(FetchError::Cache {
                    path: "cache".into(),
                    source: io_error(),
                }),
                IO,
            ),
            (
                Box::new(SecretError::MissingBundle("secrets/c.yaml".into())),
                SECRETS,
            ),
            (
                Box::new(SecretError::Read {
                    reference: "file:x".into(),
                    source: io_error(),
                }),
                SECRETS,
            ),
            (
                Box::new(SecretError::Write {
                    path: "x".into(),
                    source: io_error(),
                }),
                IO,
            ),
            (Box::new(SecretError::Exists("x".into())), SECRETS),
            (Box::new(SecretError::NothingToCreate), USAGE),
            (
                Box::new(SecretError::AgeRecipient {
                    recipient: "age1x".into(),
                    problem: "checksum".into(),
                }),
                INVALID,
            ),
            (
                Box::new(SecretError::AgeDecrypt {
                    path: "c.yaml.age".into(),
                    identity: "env:WADDLE_AGE".into(),
                    problem: "not encrypted to that identity".into(),
                }),
                SECRETS,
            ),
            (
                Box::new(SecretError::AgeIdentity {
                    reference: "env:WADDLE_AGE".into(),
                    problem: "line 1".into(),
                }),
                SECRETS,
            ),
            (
                Box::new(SecretError::MissingHostKey {
                    path: "k.yaml".into(),
                    vm: "teleport".into(),
                }),
                SECRETS,
            ),
            (
                Box::new(SecretError::Unconfined {
                    key: "talos.secrets".into(),
                    reference: "file:../../etc/passwd".into(),
                    reason: "it is /etc/passwd".into(),
                }),
                SECRETS,
            ),
            (
                Box::new(BakeError::MissingTools(vec!["mke2fs".into()])),
                UNAVAILABLE,
            ),
            (
                Box::new(DesiredError::Stale {
                    tree: "dist".into(),
                    path: "a".into(),
                }),
                STALE,
            ),
            (Box::new(LockError::Held { holder: "h".into() }), LOCKED),
            (
                Box::new(DeployError::Lock(LockError::Held { holder: "h".into() })),
                LOCKED,
            ),
            (
                Box::new(DeployError::UnknownVm {
                    flag: "--allow-restart",
                    name: "x".into(),
                }),
                USAGE,
            ),
            (Box::new(Outcome::Applied { held_back: 0 }), OK),
            (Box::new(Outcome::DryRun { held_back: 1 }), CONFLICT),
            (Box::new(Outcome::Declined), USAGE),
            (Box::new(DeployError::NoFingerprint), INVALID),
            (
                Box::new(DeployError::Apply(ApplyError::NotDesired { vmid: 9 })),
                INTERNAL,
            ),
            (Box::new(DeployError::Conflicts), CONFLICT),
            (
                Box::new(DeployError::Apply(ApplyError::Shutdown {
                    step: "restart VM 110".into(),
                    vmid: 110,
                    seconds: 180,
                    source: crate::net::pve::PveError::TaskTimeout {
                        upid: "UPID:x".into(),
                        seconds: 210,
                    },
                })),
                UNAVAILABLE,
            ),
            (Box::new(DeployError::Changed), CONFLICT),
            (
                Box::new(DeployError::Token(SecretError::Unset("env:T".into()))),
                SECRETS,
            ),
            // A replaced Talos node that did not come back: the rollout
            // stops, the operator looks, a re-run converges.
            (
                Box::new(DeployError::Apply(ApplyError::Etcd {
                    step: "etcd     wait until talos-cp2".into(),
                    problem: "talos-cp2 did not come back".into(),
                })),
                UNAVAILABLE,
            ),
            (
                Box::new(DeployError::Apply(ApplyError::NoEtcdStep { vmid: 111 })),
                INTERNAL,
            ),
            (
                Box::new(DeployError::TalosSecrets(SecretError::NoTalos)),
                SECRETS,
            ),
            (Box::new(BootstrapError::NoCluster), USAGE),
            // status cannot read what it needs to ask: not a check's result.
            (
                Box::new(StatusError::Token(SecretError::Unset("env:T".into()))),
                SECRETS,
            ),
            (
                Box::new(StatusError::TalosSecrets(SecretError::MissingBundle(
                    "secrets/c.yaml".into(),
                ))),
                SECRETS,
            ),
            (
                Box::new(HostInitError::Changed {
                    pinned: crate::host::init::Pinned::SshHostKey,
                    path: "b.host.toml".into(),
                    repin: "--repin".into(),
                    recorded: "a".into(),
                    seen: "b".into(),
                }),
                CONFLICT,
            ),
            (
                Box::new(PublishError::LocalChanges {
                    repo: PathBuf::from("r"),
                    status: String::new(),
                }),
                CONFLICT,
            ),
            (
                Box::new(PublishError::NoUpstream {
                    repo: PathBuf::from("r"),
                    branch: "main".into(),
                }),
                USAGE,
            ),
            (
                Box::new(PublishError::RemoteMoved {
                    repo: PathBuf::from("r"),
                    moved: Box::new(crate::publish::RemoteMove {
                        remote: "origin".into(),
                        remote_ref: "refs/heads/main".into(),
                        tracking_ref: "refs/remotes/origin/main".into(),
                        fetched: None,
                        now: None,
                    }),
                }),
                CONFLICT,
            ),
            (Box::new(PublishError::Spawn(io_error())), UNAVAILABLE),
            (
                Box::new(MergeError::NotAConfig {
                    path: PathBuf::from("config"),
                    kind: crate::secrets::client_config::Kind::Kubeconfig,
                    location: ":1:1".into(),
                }),
                IO,
            ),
            (
                Box::new(MergeError::Read {
                    path: PathBuf::from("config"),
                    source: io_error(),
                }),
                IO,
            ),
            (Box::new(PublishError::Empty), INTERNAL),
            (Box::new(BuildOutcome::Written { files: 3 }), OK),
            (Box::new(BuildOutcome::Fresh), OK),
            (
                Box::new(BuildOutcome::Stale(crate::emit::Staleness {
                    missing: vec!["a".into()],
                    ..Default::default()
                })),
                STALE,
            ),
            (Box::new(BuildError::ReviewTree("out".into())), USAGE),
            (Box::new(BuildError::NoStore), USAGE),
            (
                Box::new(BuildError::Store(StoreError::Mismatch {
                    key: "images/a.qcow2".into(),
                    expected: "aa".into(),
                    bytes: 1,
                    actual: "bb".into(),
                })),
                LOCK,
            ),
            (
                Box::new(DeployError::Store(StoreError::S3(
                    crate::net::s3::S3Error::Status {
                        method: "HEAD",
                        key: "images/a.qcow2.json".into(),
                        status: 403,
                        code: Some("AccessDenied".into()),
                    },
                ))),
                UNAVAILABLE,
            ),
            (
                Box::new(BuildError::Compile(CompileError::Secret(
                    SecretError::Unset("env:X".into()),
                ))),
                SECRETS,
            ),
            (
                Box::new(BuildError::Bake(BakeError::Fetch(FetchError::NotLocked {
                    name: "talos".into(),
                    url: "https://example.invalid/".into(),
                }))),
                LOCK,
            ),
            (
                Box::new(BuildError::ReadTree {
                    path: "out".into(),
                    source: io_error(),
                }),
                IO,
            ),
            (
                Box::new(BuildError::Strict(Diagnostics::default())),
                INVALID,
            ),
        ];
        for (i, (error, code)) in rows.iter().enumerate() {
            assert_eq!(error.exit_code(), *code, "row {i}");
        }
    }

    /// Every code has one meaning, and the README lists each.
    #[test]
    fn codes_are_distinct_and_documented() {
        let codes = [
            OK,
            INVALID,
            USAGE,
            STALE,
            SECRETS,
            LOCK,
            CONFLICT,
            LOCKED,
            CHECK_FAILED,
            UNAVAILABLE,
            IO,
            UNREACHABLE,
            INTERNAL,
        ];
        let mut sorted = codes.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), codes.len());
        let readme = include_str!("../../README.md");
        let section = &readme[readme.find("Exit codes:").expect("README lists exit codes")..];
        let section = &section[..section.find("\n\n").unwrap_or(section.len())];
        let words: Vec<&str> = section.split_whitespace().collect();
        for code in codes {
            assert!(
                words.contains(&code.to_string().as_str()),
                "README's exit codes lack {code}"
            );
        }
    }
}
