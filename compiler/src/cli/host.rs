//! `waddlec host init`: the arguments and the report around `host::init`,
//! the first touch of the Proxmox host, or of each host of a `[cluster]`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{exit, Format};
use crate::deploy::host_setup::Ssh;
use crate::exit::Code as _;
use crate::host::identity::{self, Identity};
use crate::host::init::{self, HostReport, Outcome, Repin, Report, Request, Target};
use crate::host::record::HostRecords;
use crate::host::token::TokenOutcome;
use crate::host::token_store::{Kept, TokenStore};
use crate::model::SshRoute;

#[derive(Subcommand)]
pub enum HostCommand {
    /// Make a freshly installed Proxmox host ready for deploy, over your
    /// own SSH (the only precondition: your key in root's authorized_keys).
    ///
    /// 1. Records the host beside the blueprint (`NAME.host.toml`, commit
    ///    it): its SSH host key, which every later SSH to the host pins,
    ///    and the SHA-256 fingerprint of the certificate its API serves,
    ///    which deploy trusts (no host.api_fingerprint to copy by hand).
    /// 2. Makes deploy's API identity with `pvesh`: user waddlec@pve, one
    ///    role per ACL path with exactly the privileges deploy uses
    ///    (docs/host-identity.md), and a privilege-separated token kept
    ///    where host.api_token points (`file:` 0600, `op://` through the
    ///    1Password CLI, `env:` printed once with --print-token).
    /// 3. Sets sshd to keys only (a drop-in, proven by a fresh login before
    ///    it stays; without that proof the host undoes it by itself) and
    ///    adds the host's name to /etc/hosts if it is missing (a cluster
    ///    node's at its `underlay` address).
    ///
    /// Your ssh must already trust the host (its key in your known_hosts,
    /// checked on the console or the provider's panel): that is the root of
    /// trust. Idempotent: a second run changes nothing. A key or
    /// certificate that changed is refused (exit 6) until you check it and
    /// pass --repin; a token that no longer works is replaced only with
    /// --rotate.
    ///
    /// A `[cluster]`: each `[[cluster.host]]`, over its own `ssh`, gets
    /// steps 1 and 3 (its record is `NAME.NODE.host.toml`, with the
    /// certificate its own API serves); step 2 is done once, over the host
    /// `cluster.api` names (visited first, the others then in order), since
    /// users, roles and tokens are the cluster's (`/etc/pve`),
    /// with the grants a cluster deploy needs too (SDN, migration, the
    /// cluster's status). If a host fails, the hosts before it stay done and
    /// the error names the host: fix it and run again, it goes on from there.
    /// A changed key or certificate is re-pinned with --repin=NODE only. A
    /// host whose `ssh` goes through Teleport is refused (exit 2): host init
    /// needs your direct SSH. With --format json a cluster's report lists
    /// each node under `hosts`.
    Init(HostInitArgs),
}

#[derive(Args)]
pub struct HostInitArgs {
    /// The blueprint whose `[host]` (or `[cluster]`) names the host(s).
    #[arg(default_value = "blueprints/waddle.toml")]
    blueprint: PathBuf,
    /// Show what would be recorded and changed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Record a changed host key or certificate (after checking it on the
    /// host's console). A `[cluster]` names the node(s) checked:
    /// `--repin=pve3` (repeat it, or `--repin=pve2,pve3`); any other
    /// node's change is still refused.
    #[arg(
        long,
        value_name = "NODE",
        num_args = 0..=1,
        require_equals = true,
        value_delimiter = ',',
        action = clap::ArgAction::Append
    )]
    repin: Option<Vec<String>>,
    /// Make a new token when the kept one no longer works, or replace the
    /// value host.api_token points to (the old token stops working).
    #[arg(long)]
    rotate: bool,
    /// host.api_token is `env:`: print a new token once on the terminal
    /// (keep it in your secret store: it is not shown again).
    #[arg(long)]
    print_token: bool,
    /// The API's URL instead of the blueprint's (`host.api`, `cluster.api`),
    /// to check the kept token with (e.g. through an SSH tunnel).
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// The ssh config file for reaching each host's `ssh` (`ssh -F`);
    /// default: yours.
    #[arg(long, value_name = "FILE")]
    ssh_config: Option<PathBuf>,
    /// Read and change the host's files under DIR instead of / (tests).
    #[arg(long, value_name = "DIR", hide = true)]
    host_root: Option<String>,
    /// `json` prints the record and the changes on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub fn run(command: HostCommand) -> u8 {
    match command {
        HostCommand::Init(args) => host_init(&args),
    }
}

fn host_init(args: &HostInitArgs) -> u8 {
    let (_, compiled) = match super::compile_blueprint(&args.blueprint, args.format, false) {
        Ok(compiled) => compiled,
        Err(code) => return code,
    };
    let model = &compiled.model;
    let ssh = Ssh::to_host(
        model,
        args.ssh_config.clone(),
        args.host_root.clone(),
        Vec::new(),
        super::tsh_known_hosts(),
    );
    let hosts: Vec<Target> = match model.proxmox.single_host() {
        Some(host) => vec![target(args, model, host, ssh)],
        None => {
            if let Some(host) = model
                .proxmox
                .hosts
                .iter()
                .find(|host| host.ssh_route == SshRoute::Teleport)
            {
                eprintln!(
                    "error: cluster host {}: its `ssh` goes through Teleport, which `host init` uses for a lone [host] only; write its `ssh` as a direct `user@host` (your known_hosts vouching for it); nothing was changed",
                    host.node
                );
                return exit::USAGE;
            }
            // The host the API URL names first: the identity is made over
            // it, and the token checked against the certificate it serves.
            let api = model.proxmox.api_host();
            std::iter::once(api)
                .chain(
                    model
                        .proxmox
                        .hosts
                        .iter()
                        .filter(|host| host.node != api.node),
                )
                .map(|host| target(args, model, host, ssh.to_cluster_host(host)))
                .collect()
        }
    };
    let base = args
        .blueprint
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let store = TokenStore {
        reference: &model.proxmox.api_token,
        base,
        print: args.print_token,
    };
    let repin = match (&args.repin, model.proxmox.single_host()) {
        (None, _) => Repin::No,
        (Some(_), Some(_)) => Repin::Any,
        (Some(nodes), None) => {
            let unknown: Vec<&String> = nodes
                .iter()
                .filter(|node| model.proxmox.host(node).is_none())
                .collect();
            if nodes.is_empty() || !unknown.is_empty() {
                let hosts: Vec<&str> = hosts.iter().map(|t| t.node).collect();
                eprintln!(
                    "error: in a cluster, --repin names the node(s) whose new key or certificate you checked on their console: `--repin=NODE` with NODE one of {}{}; nothing was changed",
                    hosts.join(", "),
                    match unknown.as_slice() {
                        [] => String::new(),
                        unknown => format!(
                            " (not {})",
                            unknown.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                    }
                );
                return exit::USAGE;
            }
            Repin::Nodes(nodes)
        }
    };
    let identity = Identity::of(model);
    let api_url = args
        .api
        .clone()
        .unwrap_or_else(|| model.proxmox.api_url.to_string());
    let request = Request {
        hosts: &hosts,
        repin,
        dry_run: args.dry_run,
        identity: &identity,
        store: &store,
        rotate: args.rotate,
        api_url: &api_url,
        report: &|line: &str| eprintln!("{line}"),
    };
    match init::run(&request) {
        Ok(report) => {
            print_report(args, &hosts, &report);
            exit::OK
        }
        // A lone host's error says it all; a cluster's names the host.
        Err(stopped) if hosts.len() == 1 => {
            eprintln!("error: {}", stopped.error);
            stopped.error.exit_code()
        }
        Err(stopped) => {
            eprintln!("error: {stopped}");
            stopped.error.exit_code()
        }
    }
}

/// `host`, reached by `ssh`, as `host init` visits it.
fn target<'a>(
    args: &HostInitArgs,
    model: &crate::model::Model,
    host: &'a crate::model::Host,
    ssh: Ssh,
) -> Target<'a> {
    Target {
        node: &host.node,
        ssh,
        record: HostRecords::path_for(&args.blueprint, model, &host.node),
        blueprint_fingerprint: host.api_fingerprint.as_deref(),
        address: hosts_file_address(model, host).to_string(),
    }
}

/// The address `host`'s name gets in its /etc/hosts when missing: a lone
/// host's public address; a cluster node's address on the hosts' network,
/// which Proxmox takes a node's cluster address from (`pvecm`, and
/// migrations by default), never its public one.
fn hosts_file_address(
    model: &crate::model::Model,
    host: &crate::model::Host,
) -> std::net::Ipv4Addr {
    let underlay = model.proxmox.sdn.as_ref().and_then(|sdn| {
        let index = model
            .proxmox
            .hosts
            .iter()
            .position(|h| h.node == host.node)?;
        sdn.peers.get(index).copied()
    });
    underlay.unwrap_or_else(|| host.public_address())
}

/// `recorded` (or would record, …) and the record's values, as lines.
fn record_lines(path: &Path, record: &Outcome) -> String {
    let (verb, recorded) = verb(record);
    format!(
        "{} {verb} host {}:\n  ssh host key     {}\n  API certificate  {}",
        path.display(),
        recorded.node,
        recorded.ssh_host_key,
        recorded.api_fingerprint,
    )
}

fn verb(record: &Outcome) -> (&'static str, &crate::host::record::HostRecord) {
    match record {
        Outcome::Unchanged(r) => ("already records", r),
        Outcome::WouldRecord(r) => ("would record", r),
        Outcome::Recorded(r) => ("recorded", r),
    }
}

fn print_report(args: &HostInitArgs, targets: &[Target], report: &Report) {
    let token = match &report.token {
        TokenOutcome::Unchanged => "kept (it works)".to_string(),
        TokenOutcome::WouldCreate => "would be made".to_string(),
        TokenOutcome::WouldRotate => "would be replaced (--rotate)".to_string(),
        TokenOutcome::Created(kept) => format!("made, {}", kept_line(kept)),
        TokenOutcome::Rotated(kept) => format!("replaced, {}", kept_line(kept)),
    };
    if let [HostReport {
        record, changes, ..
    }] = report.hosts.as_slice()
    {
        // A lone host: its files' changes after the API's.
        let changes: Vec<&String> = report.changes.iter().chain(changes).collect();
        if args.format == Format::Json {
            let json = serde_json::json!({
                "record": verb(record).1,
                "changes": changes,
                "token": token,
            });
            super::print_out(&serde_json::to_string_pretty(&json).unwrap_or_default());
        }
        if args.dry_run {
            for change in &changes {
                eprintln!("{change}");
            }
        }
        eprintln!(
            "{}\n  API token        {} {token}",
            record_lines(&targets[0].record, record),
            identity::token_id(),
        );
    } else {
        print_cluster(args, targets, report, &token);
    }
    if let TokenOutcome::Created(Kept::ToPrint { name, value })
    | TokenOutcome::Rotated(Kept::ToPrint { name, value }) = &report.token
    {
        eprintln!(
            "warning: the token is shown once, here; keep it in your secret store and set {name} from it:"
        );
        eprintln!("{name}={}", value.expose());
    }
    let recorded = report
        .hosts
        .iter()
        .filter(|host| matches!(host.record, Outcome::Recorded(_)))
        .count();
    match recorded {
        0 => {}
        1 if report.hosts.len() == 1 => {
            eprintln!("commit it: deploy and every SSH to the host pin these now");
        }
        _ => eprintln!("commit them: deploy and every SSH to the hosts pin these now"),
    }
}

/// A cluster's report: each node's record and its files' changes, then the
/// cluster's API identity, made over the first host.
fn print_cluster(args: &HostInitArgs, targets: &[Target], report: &Report, token: &str) {
    let first = report.hosts.first().map(|h| h.node.as_str()).unwrap_or("");
    if args.format == Format::Json {
        let hosts: Vec<serde_json::Value> = report
            .hosts
            .iter()
            .zip(targets)
            .map(|(host, target)| {
                serde_json::json!({
                    "node": host.node,
                    "path": target.record.display().to_string(),
                    "outcome": verb(&host.record).0,
                    "record": verb(&host.record).1,
                    "changes": host.changes,
                })
            })
            .collect();
        let json = serde_json::json!({
            "hosts": hosts,
            "changes": report.changes,
            "token": token,
            "identity_made_on": first,
        });
        super::print_out(&serde_json::to_string_pretty(&json).unwrap_or_default());
    }
    if args.dry_run {
        for change in &report.changes {
            eprintln!("{change}");
        }
    }
    for (host, target) in report.hosts.iter().zip(targets) {
        if args.dry_run {
            for change in &host.changes {
                eprintln!("{}: {change}", host.node);
            }
        }
        eprintln!("{}", record_lines(&target.record, &host.record));
    }
    eprintln!(
        "the cluster's API identity (over {first}):\n  API token        {} {token}",
        identity::token_id(),
    );
}

fn kept_line(kept: &Kept) -> String {
    match kept {
        Kept::File(path) => format!("kept in {} (0600)", path.display()),
        Kept::OnePassword(reference) => format!("kept in {reference}"),
        Kept::ToPrint { name, .. } => format!("for {name}, printed below"),
    }
}
