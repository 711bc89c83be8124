//! `waddlec host init`: the arguments and the report around `host::init`,
//! the first touch of the Proxmox host.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{exit, Format};
use crate::deploy::host_setup::Ssh;
use crate::exit::Code as _;
use crate::host::identity::{self, Identity};
use crate::host::init::{self, Outcome, Report, Request};
use crate::host::record::HostRecords;
use crate::host::token::TokenOutcome;
use crate::host::token_store::{Kept, TokenStore};

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
    ///    adds the host's name to /etc/hosts if it is missing.
    ///
    /// Your ssh must already trust the host (its key in your known_hosts,
    /// checked on the console or the provider's panel): that is the root of
    /// trust. Idempotent: a second run changes nothing. A key or
    /// certificate that changed is refused (exit 6) until you check it and
    /// pass --repin; a token that no longer works is replaced only with
    /// --rotate.
    Init(HostInitArgs),
}

#[derive(Args)]
pub struct HostInitArgs {
    /// The blueprint whose `[host]` names the host.
    #[arg(default_value = "blueprints/waddle.toml")]
    blueprint: PathBuf,
    /// Show what would be recorded and changed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Record a changed host key or certificate (after checking it).
    #[arg(long)]
    repin: bool,
    /// Make a new token when the kept one no longer works, or replace the
    /// value host.api_token points to (the old token stops working).
    #[arg(long)]
    rotate: bool,
    /// host.api_token is `env:`: print a new token once on the terminal
    /// (keep it in your secret store: it is not shown again).
    #[arg(long)]
    print_token: bool,
    /// The API's URL instead of host.api, to check the kept token with
    /// (e.g. through an SSH tunnel).
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// The ssh config file for reaching `host.ssh` (`ssh -F`); default: yours.
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
    if let Err(code) = super::one_host("host init", model) {
        return code;
    }
    let host = model.host();
    let ssh = Ssh::to_host(
        model,
        args.ssh_config.clone(),
        args.host_root.clone(),
        Vec::new(),
        super::tsh_known_hosts(),
    );
    let record = HostRecords::path_for(&args.blueprint, model, &host.node);
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
    let identity = Identity::of(model);
    let address = model.host().bridges.public.host_address.to_string();
    let api_url = args
        .api
        .clone()
        .unwrap_or_else(|| model.proxmox.api_url.to_string());
    let request = Request {
        node: &host.node,
        ssh: &ssh,
        record: &record,
        blueprint_fingerprint: host.api_fingerprint.as_deref(),
        repin: args.repin,
        dry_run: args.dry_run,
        address: &address,
        identity: &identity,
        store: &store,
        rotate: args.rotate,
        api_url: &api_url,
        report: &|line: &str| eprintln!("{line}"),
    };
    match init::run(&request) {
        Ok(report) => {
            print_report(args, &record, &report);
            exit::OK
        }
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}

fn print_report(args: &HostInitArgs, path: &Path, report: &Report) {
    let (verb, recorded) = match &report.record {
        Outcome::Unchanged(r) => ("already records", r),
        Outcome::WouldRecord(r) => ("would record", r),
        Outcome::Recorded(r) => ("recorded", r),
    };
    let token = match &report.token {
        TokenOutcome::Unchanged => "kept (it works)".to_string(),
        TokenOutcome::WouldCreate => "would be made".to_string(),
        TokenOutcome::WouldRotate => "would be replaced (--rotate)".to_string(),
        TokenOutcome::Created(kept) => format!("made, {}", kept_line(kept)),
        TokenOutcome::Rotated(kept) => format!("replaced, {}", kept_line(kept)),
    };
    if args.format == Format::Json {
        let json = serde_json::json!({
            "record": recorded,
            "changes": report.changes,
            "token": token,
        });
        super::print_out(&serde_json::to_string_pretty(&json).unwrap_or_default());
    }
    if args.dry_run {
        for change in &report.changes {
            eprintln!("{change}");
        }
    }
    eprintln!(
        "{} {verb} host {}:\n  ssh host key     {}\n  API certificate  {}\n  API token        {} {token}",
        path.display(),
        recorded.node,
        recorded.ssh_host_key,
        recorded.api_fingerprint,
        identity::token_id(),
    );
    if let TokenOutcome::Created(Kept::ToPrint { name, value })
    | TokenOutcome::Rotated(Kept::ToPrint { name, value }) = &report.token
    {
        eprintln!(
            "warning: the token is shown once, here; keep it in your secret store and set {name} from it:"
        );
        eprintln!("{name}={}", value.expose());
    }
    if matches!(report.record, Outcome::Recorded(_)) {
        eprintln!("commit it: deploy and every SSH to the host pin these now");
    }
}

fn kept_line(kept: &Kept) -> String {
    match kept {
        Kept::File(path) => format!("kept in {} (0600)", path.display()),
        Kept::OnePassword(reference) => format!("kept in {reference}"),
        Kept::ToPrint { name, .. } => format!("for {name}, printed below"),
    }
}
