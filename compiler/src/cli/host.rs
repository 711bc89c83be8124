//! `waddlec host init`: the arguments and the report around `host::init`,
//! the first touch of the Proxmox host.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{exit, Format};
use crate::deploy::host_setup::Ssh;
use crate::exit::Code as _;
use crate::host::init::{self, Outcome, Request};
use crate::host::record::HostRecord;

#[derive(Subcommand)]
pub enum HostCommand {
    /// Learn the Proxmox host over your own SSH and record it beside the
    /// blueprint (`NAME.host.toml`, commit it): its SSH host key, which
    /// every later SSH to the host pins, and the SHA-256 fingerprint of the
    /// certificate its API serves, which deploy trusts (no need to copy
    /// host.api_fingerprint by hand).
    ///
    /// Your ssh must already trust the host (its key in your known_hosts,
    /// checked on the console or the provider's panel): that is the root of
    /// trust. Idempotent; a key or certificate that changed since it was
    /// recorded is refused (exit 6) until you check it and pass --repin.
    Init(HostInitArgs),
}

#[derive(Args)]
pub struct HostInitArgs {
    /// The blueprint whose `[host]` names the host.
    #[arg(default_value = "blueprints/waddle.toml")]
    blueprint: PathBuf,
    /// Show what would be recorded; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Record a changed host key or certificate (after checking it).
    #[arg(long)]
    repin: bool,
    /// The ssh config file for reaching `host.ssh` (`ssh -F`); default: yours.
    #[arg(long, value_name = "FILE")]
    ssh_config: Option<PathBuf>,
    /// Read the host's files under DIR instead of / (tests).
    #[arg(long, value_name = "DIR", hide = true)]
    host_root: Option<String>,
    /// `json` prints the record on stdout.
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
    let host = &compiled.model.host;
    let ssh = Ssh {
        target: host.ssh_target.to_string(),
        config: args.ssh_config.clone(),
        root: args.host_root.clone(),
        host_key: None,
    };
    let record = HostRecord::path_for(&args.blueprint);
    let request = Request {
        node: &host.node,
        ssh: &ssh,
        record: &record,
        blueprint_fingerprint: host.api_fingerprint.as_deref(),
        repin: args.repin,
        dry_run: args.dry_run,
    };
    match init::run(&request) {
        Ok(outcome) => {
            let (verb, recorded) = match &outcome {
                Outcome::Unchanged(r) => ("already records", r),
                Outcome::WouldRecord(r) => ("would record", r),
                Outcome::Recorded(r) => ("recorded", r),
            };
            if args.format == Format::Json {
                super::print_out(&serde_json::to_string_pretty(recorded).unwrap_or_default());
            }
            eprintln!(
                "{} {verb} host {}:\n  ssh host key     {}\n  API certificate  {}",
                record.display(),
                recorded.node,
                recorded.ssh_host_key,
                recorded.api_fingerprint
            );
            if matches!(outcome, Outcome::Recorded(_)) {
                eprintln!("commit it: deploy and every SSH to the host pin these now");
            }
            exit::OK
        }
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}
