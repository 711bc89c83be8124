//! `waddlec host init`, the first touch of a Proxmox host, as a library
//! function. Over the operator's own SSH (whose known_hosts vouches for the
//! host: the root of trust), read the host's SSH host key and the
//! certificate its API serves, and record both in the host record, so
//! every later SSH pins that key and `deploy` trusts exactly that
//! certificate; then, over SSH pinned to that key, make deploy's API
//! identity (`identity`, `token`: with `pvesh`) and harden the host
//! (`harden`: sshd keys only, its name in /etc/hosts). Idempotent; a value
//! that changed is refused until the operator has checked it and asks for
//! `repin`; `dry_run` reads everything and changes nothing.
//!
//! A `[cluster]` is its hosts, visited the host `cluster.api` names first
//! (the CLI orders them), each over its own SSH and into its own record:
//! its key, the certificate its own API serves (`/etc/pve/local` is that
//! node's directory), its hardening. The API identity is the cluster's,
//! kept in the `/etc/pve` every node shares (`identity`'s module doc): it
//! is made once, over the first visited host's pinned SSH, and its token
//! checked against the cluster's one API, whose certificate deploy pins by
//! that host's record. A run stopped by one
//! host ([`Stopped`]) leaves the hosts before it done; the next run finds
//! them unchanged and goes on.

use std::path::PathBuf;

use ssh_key::PublicKey;

use super::harden::{Harden, HardenError};
use super::identity::{self, Identity};
use super::pvesh::{Pvesh, PveshError};
use super::record::{HostRecord, RecordError};
use super::token::{self, TokenError, TokenOutcome, TokenRequest};
use super::token_store::TokenStore;
use crate::deploy::host_setup::Ssh;
use crate::net::pve::{fingerprint, Pve, PveError};
use crate::net::ssh::{self, Failure, SshError};
use crate::secrets::Secret;

/// One host to visit.
pub struct Target<'a> {
    /// The Proxmox node name (`host.node`).
    pub node: &'a str,
    /// Its own SSH (a cluster host's from `Ssh::to_cluster_host`).
    pub ssh: Ssh,
    /// Where its record lives.
    pub record: PathBuf,
    /// Its `api_fingerprint`, if the blueprint sets one: it must agree.
    pub blueprint_fingerprint: Option<&'a str>,
    /// Its name's address in /etc/hosts: public for a lone host, on the
    /// hosts' network for a cluster node.
    pub address: String,
}

/// What to do.
pub struct Request<'a> {
    /// The lone host, or a cluster's hosts (the `cluster.api` host first);
    /// the first is where the API identity is made.
    pub hosts: &'a [Target<'a>],
    /// Which hosts' changed values may replace their records (after the
    /// operator checked them).
    pub repin: Repin<'a>,
    /// Show what would be recorded and done; change nothing.
    pub dry_run: bool,
    /// The API identity deploy should have.
    pub identity: &'a Identity,
    /// Where the token is kept.
    pub store: &'a TokenStore<'a>,
    /// Replace a token that no longer works (or a stored value).
    pub rotate: bool,
    /// The API's URL, to check a kept token with.
    pub api_url: &'a str,
    /// Hears each change as it is made.
    pub report: &'a dyn Fn(&str),
}

/// What a host record pins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pinned {
    SshHostKey,
    ApiCertificate,
}

impl Pinned {
    fn what(self) -> &'static str {
        match self {
            Pinned::SshHostKey => "SSH host key",
            Pinned::ApiCertificate => "API certificate",
        }
    }

    /// How to check it on the host's console.
    fn check(self) -> &'static str {
        match self {
            Pinned::SshHostKey => "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub",
            Pinned::ApiCertificate => "pvenode cert info",
        }
    }
}

/// Which hosts `--repin` names.
#[derive(Clone, Copy, Debug)]
pub enum Repin<'a> {
    /// None: a changed value is refused.
    No,
    /// A lone host's bare `--repin`.
    Any,
    /// A cluster's `--repin=NODE,…`: each node checked on its own.
    Nodes(&'a [String]),
}

impl Repin<'_> {
    fn allows(&self, node: &str) -> bool {
        match self {
            Repin::No => false,
            Repin::Any => true,
            Repin::Nodes(nodes) => nodes.iter().any(|n| n == node),
        }
    }
}

/// What a run that did not fail did (or would do).
#[derive(Debug)]
pub struct Report {
    /// Each host, in the request's order.
    pub hosts: Vec<HostReport>,
    /// Access-control changes, one line each.
    pub changes: Vec<String>,
    pub token: TokenOutcome,
}

/// What was done (or would be) on one host.
#[derive(Debug)]
pub struct HostReport {
    pub node: String,
    pub record: Outcome,
    /// Its own files' changes, one line each.
    pub changes: Vec<String>,
}

/// A run that one host stopped.
#[derive(Debug, thiserror::Error)]
#[error("on {node}: {error}\n  = help: {}", retry(.node, .done, *.dry_run))]
pub struct Stopped {
    pub node: String,
    /// The hosts before it, done (recorded and hardened), or read.
    pub done: Vec<String>,
    pub dry_run: bool,
    #[source]
    pub error: Box<HostInitError>,
}

/// What the API identity step did: its changes, and the token's outcome.
type Api = (Vec<String>, TokenOutcome);

fn retry(node: &str, done: &[String], dry_run: bool) -> String {
    let kept = match done {
        [] => "no host comes before it".to_string(),
        done if dry_run => format!("{} were read", done.join(", ")),
        done => format!("{} stay recorded and done", done.join(", ")),
    };
    format!("{kept}; once {node} is fixed, run `waddlec host init` again: it goes on from {node}")
}

/// How the record ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The record already says what the host says.
    Unchanged(HostRecord),
    /// `dry_run`: this would be recorded.
    WouldRecord(HostRecord),
    /// Written (first time, or re-pinned).
    Recorded(HostRecord),
}

#[derive(Debug, thiserror::Error)]
pub enum HostInitError {
    #[error("{}", ssh_message(.0))]
    Ssh(#[from] SshError),
    #[error("pvesh on the host: {0}")]
    Pvesh(PveshError),
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Harden(#[from] HardenError),
    #[error("{target} does not look like a Proxmox VE host: {problem}")]
    NotProxmox { target: String, problem: String },
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(
        "the host's {what} changed: {path} records {recorded}, the host now has {seen}. If you changed it on purpose (reinstall, new certificate), check the new value on the host's console (`{check}`) and run `waddlec host init {repin}`",
        what = .pinned.what(),
        check = .pinned.check(),
    )]
    Changed {
        pinned: Pinned,
        path: String,
        /// `--repin`, or a cluster's `--repin=NODE`.
        repin: String,
        recorded: String,
        seen: String,
    },
    #[error(
        "the host's `api_fingerprint` in the blueprint is {blueprint}, but its API serves {seen}; remove that `api_fingerprint` (the host record pins it now) or correct it"
    )]
    BlueprintDisagrees { blueprint: String, seen: String },
}

fn ssh_message(error: &SshError) -> String {
    let fix = match error.failure() {
        Failure::Unreachable => "the host did not answer: check its `ssh` in the blueprint, the address and that sshd runs",
        Failure::KeyRefused => "the host refused your key: put your public key in root's authorized_keys (the installer's console or the provider's rescue system), or name the key in your ssh config",
        Failure::HostKey => "your ssh does not trust the host's key: check its fingerprint on the console (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`) and add it to your known_hosts",
        Failure::Command => "a command on the host failed",
    };
    format!("{fix}:\n{error}")
}

impl From<PveshError> for HostInitError {
    fn from(error: PveshError) -> Self {
        match error {
            PveshError::Ssh(e) if e.failure() != Failure::Command => HostInitError::Ssh(e),
            other => HostInitError::Pvesh(other),
        }
    }
}

/// Does everything: see the module doc.
pub fn run(request: &Request<'_>) -> Result<Report, Stopped> {
    let mut hosts: Vec<HostReport> = Vec::new();
    let mut api = None;
    for (i, target) in request.hosts.iter().enumerate() {
        let visited = visit(request, target, i == 0).map_err(|error| Stopped {
            node: target.node.to_string(),
            done: hosts.iter().map(|h| h.node.clone()).collect(),
            dry_run: request.dry_run,
            error: Box::new(error),
        })?;
        hosts.push(visited.0);
        api = api.or(visited.1);
    }
    let (changes, token) = api.expect("a blueprint has a host, and the first makes the identity");
    Ok(Report {
        hosts,
        changes,
        token,
    })
}

/// One host: its record, then (the first only) the API identity, then its
/// own files.
fn visit(
    request: &Request<'_>,
    target: &Target<'_>,
    first: bool,
) -> Result<(HostReport, Option<Api>), HostInitError> {
    let record = pin(request, target)?;
    let seen = match &record {
        Outcome::Unchanged(r) | Outcome::WouldRecord(r) | Outcome::Recorded(r) => r.clone(),
    };
    // From here on, only the key just read is accepted.
    let pinned = ssh::PinnedHost::new(Some(&seen.host_key())).map_err(SshError::Spawn)?;
    let remote = target.ssh.remote(pinned.as_ref());
    let pvesh = Pvesh { remote };
    let api = if first {
        Some(make_identity(request, &pvesh, &seen)?)
    } else {
        None
    };
    let root = target.ssh.root.as_deref().unwrap_or("");
    let harden = Harden {
        remote: &pvesh.remote,
        root,
        node: target.node,
        address: &target.address,
    };
    let host_files = if request.dry_run {
        harden.check()?
    } else {
        harden.apply()?
    };
    if !request.dry_run {
        for line in &host_files {
            if request.hosts.len() > 1 {
                (request.report)(&format!("{}: {line}", target.node));
            } else {
                (request.report)(line);
            }
        }
    }
    let report = HostReport {
        node: target.node.to_string(),
        record,
        changes: host_files,
    };
    Ok((report, api))
}

/// Deploy's API user, roles, ACLs and token, with `pvesh` on one host;
/// the token checked against the API that serves the certificate of
/// `seen`.
fn make_identity(
    request: &Request<'_>,
    pvesh: &Pvesh<'_>,
    seen: &HostRecord,
) -> Result<Api, HostInitError> {
    let observed = identity::observe(pvesh)?;
    let access = identity::changes(request.identity, &observed);
    let user_existed = !access.contains(&identity::Change::CreateUser);
    let mut changes: Vec<String> = Vec::new();
    let apply = |batch: &[identity::Change], changes: &mut Vec<String>| {
        identity::apply(pvesh, batch, &|line| {
            (request.report)(&format!("changed: {line}"));
        })?;
        changes.extend(batch.iter().map(|c| format!("changed: {}", c.line())));
        Ok::<(), PveshError>(())
    };
    if request.dry_run {
        changes.extend(access.iter().map(|c| format!("would change: {}", c.line())));
    } else {
        let first: Vec<identity::Change> =
            access.into_iter().filter(|c| !c.is_for_token()).collect();
        apply(&first, &mut changes)?;
    }
    let works = |secret: &Secret| -> Result<bool, PveError> {
        let pve = Pve::new(request.api_url, &seen.api_fingerprint, secret)?;
        match pve.get("/version", &[]) {
            Ok(_) => Ok(true),
            Err(e) if e.status() == Some(401) => Ok(false),
            Err(e) => Err(e),
        }
    };
    let token = token::converge(
        &TokenRequest {
            pvesh,
            store: request.store,
            rotate: request.rotate,
            dry_run: request.dry_run,
            works: &works,
        },
        user_existed || !request.dry_run,
    )?;
    if !request.dry_run {
        // The token exists now (a new one has no grants yet).
        let observed = identity::observe(pvesh)?;
        let second: Vec<identity::Change> = identity::changes(request.identity, &observed)
            .into_iter()
            .filter(identity::Change::is_for_token)
            .collect();
        apply(&second, &mut changes)?;
    }
    Ok((changes, token))
}

/// Reads the host's key and certificate and records them.
fn pin(request: &Request<'_>, target: &Target<'_>) -> Result<Outcome, HostInitError> {
    let seen = read_host(target)?;
    if let Some(blueprint) = target.blueprint_fingerprint {
        if !blueprint.eq_ignore_ascii_case(&seen.api_fingerprint) {
            return Err(HostInitError::BlueprintDisagrees {
                blueprint: blueprint.to_string(),
                seen: seen.api_fingerprint,
            });
        }
    }
    let recorded = HostRecord::load(&target.record)?;
    if let Some(recorded) = &recorded {
        if *recorded == seen {
            return Ok(Outcome::Unchanged(seen));
        }
        if !request.repin.allows(target.node) {
            let path = target.record.display().to_string();
            let repin = match request.hosts.len() {
                1 => "--repin".to_string(),
                _ => format!("--repin={}", target.node),
            };
            let changed = |pinned, recorded: &str, seen: &str| HostInitError::Changed {
                pinned,
                path: path.clone(),
                repin: repin.clone(),
                recorded: recorded.to_string(),
                seen: seen.to_string(),
            };
            if recorded.ssh_host_key != seen.ssh_host_key {
                return Err(changed(
                    Pinned::SshHostKey,
                    &recorded.ssh_host_key,
                    &seen.ssh_host_key,
                ));
            }
            if recorded.api_fingerprint != seen.api_fingerprint {
                return Err(changed(
                    Pinned::ApiCertificate,
                    &recorded.api_fingerprint,
                    &seen.api_fingerprint,
                ));
            }
        }
    }
    if let Some(recorded) = &recorded {
        let verb = if request.dry_run {
            "would re-pin"
        } else {
            "re-pinned"
        };
        for (what, old, new) in [
            ("ssh host key", &recorded.ssh_host_key, &seen.ssh_host_key),
            (
                "API certificate",
                &recorded.api_fingerprint,
                &seen.api_fingerprint,
            ),
        ] {
            if old != new {
                (request.report)(&format!("{verb} {}: {what} {old} → {new}", target.node));
            }
        }
    }
    if request.dry_run {
        return Ok(Outcome::WouldRecord(seen));
    }
    seen.save(&target.record)?;
    Ok(Outcome::Recorded(seen))
}

/// The host's ed25519 host key and its API certificate, in one SSH call.
/// The API serves `pveproxy-ssl.pem` when an operator installed one, else
/// the cluster-signed `pve-ssl.pem` (pve-manager, `PVE::API2::Certificates`).
const SCRIPT: &str = r#"set -eu
root=$1
cat "$root/etc/ssh/ssh_host_ed25519_key.pub"
echo "--- certificate"
cert=$root/etc/pve/local/pveproxy-ssl.pem
[ -f "$cert" ] || cert=$root/etc/pve/local/pve-ssl.pem
cat "$cert""#;

fn read_host(target: &Target<'_>) -> Result<HostRecord, HostInitError> {
    let ssh = &target.ssh;
    // First touch: the operator's own known_hosts (or, through Teleport,
    // tsh's) vouches for the host.
    let remote = ssh.remote(None);
    let command = format!(
        "sh -c {} sh {}",
        ssh::quote(SCRIPT),
        ssh::quote(ssh.root.as_deref().unwrap_or(""))
    );
    let output = ssh::run(&remote, &command, Vec::new())?;
    let not_proxmox = |problem: &str| HostInitError::NotProxmox {
        target: ssh.target.clone(),
        problem: problem.to_string(),
    };
    let (key, certificate) = output
        .split_once("--- certificate\n")
        .ok_or_else(|| not_proxmox("its answer has no certificate part"))?;
    let key = PublicKey::from_openssh(key.trim())
        .map_err(|_| not_proxmox("/etc/ssh/ssh_host_ed25519_key.pub is not an SSH public key"))?;
    let ssh_host_key = key
        .to_openssh()
        .map_err(|_| not_proxmox("its SSH host key cannot be written back"))?;
    let certificate = pem::parse_many(certificate)
        .ok()
        .and_then(|blocks| blocks.into_iter().find(|b| b.tag() == "CERTIFICATE"))
        .ok_or_else(|| {
            not_proxmox("/etc/pve/local/pve-ssl.pem holds no certificate (is pve-cluster running?)")
        })?;
    Ok(HostRecord {
        version: 1,
        node: target.node.to_string(),
        ssh_host_key: ssh_host_key
            .split(' ')
            .take(2)
            .collect::<Vec<_>>()
            .join(" "),
        api_fingerprint: fingerprint(certificate.contents()),
    })
}
