//! `waddlec deploy`: checks the deployable tree against the blueprint,
//! reads the host, shows the plan, asks (or takes `--yes`), then applies it
//! under the host's deploy lock — after reading the host once more, so what
//! is applied is what was shown.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{
    blueprint_dir, compile_failed, exit, progress, read_source, today, BlueprintArgs, Format,
};
use crate::deploy::apply::{apply, Host, Timeouts};
use crate::deploy::desired::{desired, Desired, DesiredError};
use crate::deploy::guard;
use crate::deploy::host_setup::{self, Ssh};
use crate::deploy::lock::{HostLock, LockError};
use crate::deploy::observed::{observe, Observed};
use crate::deploy::plan::{plan, Plan};
use crate::net::pve::{Progress, Pve, PveError};
use crate::{compile_with, SecretSource, UpstreamSource};

#[derive(Args)]
pub struct DeployArgs {
    #[command(flatten)]
    common: BlueprintArgs,
    /// The deployable tree `build --with-secrets` wrote.
    #[arg(long, value_name = "DIR", default_value = "dist")]
    tree: PathBuf,
    /// Apply without asking (CI).
    #[arg(long)]
    yes: bool,
    /// Show the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replace this VM if its image or seed changed: stop, destroy (with
    /// its disks and the state on them) and create it again. Repeat for
    /// several; at most one Talos node per deploy. VMs not named are left
    /// alone and the plan says what it would replace.
    #[arg(long, value_name = "VM")]
    allow_replace: Vec<String>,
    /// Remove a deploy lock a killed deploy left on the host.
    #[arg(long)]
    break_lock: bool,
    /// Reach the API here instead of `host.api` (e.g. through an SSH tunnel,
    /// `https://127.0.0.1:8006`); the certificate pin still applies.
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// Seconds to wait for a started VM's guest agent.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    agent_timeout: u64,
    /// Leave the host's own setup (sysctl, forwards and NAT, firewall,
    /// storage content) alone: API steps only.
    #[arg(long)]
    skip_host: bool,
    /// The ssh config file for reaching `host.ssh` (`ssh -F`); default: yours.
    #[arg(long, value_name = "FILE")]
    ssh_config: Option<PathBuf>,
    /// Install the host's files under DIR instead of / (tests).
    #[arg(long, value_name = "DIR", hide = true)]
    host_root: Option<String>,
}

pub fn run(args: &DeployArgs, color: bool) -> u8 {
    let common = &args.common;
    let source = match read_source(&common.blueprint) {
        Ok(source) => source,
        Err(code) => return code,
    };
    let dir = blueprint_dir(&common.blueprint);
    // The tree was built with these manifests: they are cached and pinned.
    let mut upstream = match super::upstream::Upstream::open(&common.blueprint, true) {
        Ok(upstream) => upstream,
        Err(code) => return code,
    };
    let compiled = match compile_with(
        &source,
        today::today(),
        SecretSource::Resolve(&dir),
        UpstreamSource::Fetch(&mut |m| upstream.text(m)),
    ) {
        Ok(compiled) => compiled,
        Err(err) => return compile_failed(&source, err, common.format, color),
    };
    let desired = match desired(&compiled, &args.tree) {
        Ok(desired) => desired,
        Err(err) => {
            eprintln!("error: {err}");
            return match err {
                DesiredError::Read { .. } => exit::IO,
                DesiredError::NotDeployable { .. } | DesiredError::Stale { .. } => exit::STALE,
            };
        }
    };
    if let Some(unknown) = args
        .allow_replace
        .iter()
        .find(|name| compiled.model.vm(name).is_none())
    {
        eprintln!("error: --allow-replace {unknown}: the blueprint has no VM `{unknown}`");
        return exit::USAGE;
    }
    let host = &compiled.model.host;
    let Some(fingerprint) = &host.api_fingerprint else {
        eprintln!(
            "error: {} sets no host.api_fingerprint; deploy trusts exactly one certificate. On the host, `pvenode cert info` prints its SHA-256 fingerprint",
            source.name
        );
        return exit::INVALID;
    };
    let token = match crate::secrets::read(&host.api_token, &dir) {
        Ok(token) => token,
        Err(err) => {
            eprintln!("error: the Proxmox API token: {err}");
            return exit::SECRETS;
        }
    };
    let url = args.api.clone().unwrap_or_else(|| host.api_url.clone());
    let pve = match Pve::new(&url, fingerprint, &token) {
        Ok(pve) => pve,
        Err(err) => {
            eprintln!("error: {err}");
            return exit::INTERNAL;
        }
    };
    let read_plan = || -> Result<(Plan, Observed), PveError> {
        let observed = observe(&pve, &host.node, &host.file_storage)?;
        Ok((plan(&desired, &observed, &args.allow_replace), observed))
    };
    let (shown, observed) = match read_plan() {
        Ok(read) => read,
        Err(err) => return remote_failed(&err),
    };
    let ssh = Ssh {
        target: host.ssh_target.clone(),
        config: args.ssh_config.clone(),
        root: args.host_root.clone(),
    };
    let host_changes = if args.skip_host {
        Vec::new()
    } else {
        match host_setup::run(&ssh, &args.tree, true) {
            Ok(changes) => changes,
            Err(err) => {
                eprintln!("error: {err}");
                return exit::UNAVAILABLE;
            }
        }
    };
    show(&shown, &host_changes, common.format, args.dry_run);
    if !shown.conflicts().is_empty() {
        eprintln!("error: the host conflicts with the blueprint; nothing was changed");
        return exit::CONFLICT;
    }
    // Firewall changes must leave the operator a way back in.
    if host_changes
        .iter()
        .any(|change| change.contains("/etc/pve/"))
    {
        // Teleport counts as a way in once its VM runs on the host.
        let teleport_up = compiled.model.teleport.as_ref().is_some_and(|teleport| {
            compiled.model.vm(&teleport.vm).is_some_and(|vm| {
                observed
                    .vms
                    .get(&vm.id)
                    .is_some_and(|running| running.running)
            })
        });
        if let Err(lock_out) = guard::check(&compiled.model, teleport_up) {
            eprintln!("error: {lock_out}");
            return exit::CONFLICT;
        }
    }
    let changes = shown.changes_anything() || !host_changes.is_empty();
    if args.dry_run || !changes {
        if !changes && shown.held_back() == 0 && common.format == Format::Text {
            eprintln!("nothing to do: the host matches the blueprint");
        }
        return held_back(&shown);
    }
    if !args.yes && !confirmed() {
        return exit::USAGE;
    }

    let holder = holder();
    let lock = match HostLock::acquire(&pve, &holder, args.break_lock) {
        Ok(lock) => lock,
        Err(err) => {
            eprintln!("error: {err}");
            return match err {
                LockError::Held { .. } => exit::LOCKED,
                LockError::Api(err) => remote_failed(&err),
            };
        }
    };
    // Under the lock, the host may differ from what was shown: plan again.
    let current = match read_plan() {
        Ok((plan, _)) => plan,
        Err(err) => return remote_failed(&err),
    };
    if current != shown {
        eprintln!("error: the host changed since the plan was shown; run deploy again");
        return exit::CONFLICT;
    }
    if !host_changes.is_empty() {
        // As for the API steps: apply only what was shown.
        match host_setup::run(&ssh, &args.tree, true) {
            Ok(now) if now == host_changes => {}
            Ok(_) => {
                eprintln!("error: the host changed since the plan was shown; run deploy again");
                return exit::CONFLICT;
            }
            Err(err) => {
                eprintln!("error: {err}");
                return exit::UNAVAILABLE;
            }
        }
        match host_setup::run(&ssh, &args.tree, false) {
            Ok(changes) => {
                for change in changes {
                    if common.format == Format::Text {
                        eprintln!("→ host {change}");
                    }
                }
            }
            Err(err) => {
                eprintln!("error: {err}");
                return exit::UNAVAILABLE;
            }
        }
    }
    let code = apply_plan(&pve, host, &desired, &current, args, common.format);
    if let Err(err) = lock.release() {
        eprintln!("warning: could not release the host's deploy lock: {err}");
    }
    code
}

fn apply_plan(
    pve: &Pve,
    host: &crate::model::Host,
    desired: &Desired,
    plan: &Plan,
    args: &DeployArgs,
    format: Format,
) -> u8 {
    let target = Host {
        pve,
        node: &host.node,
        file_storage: &host.file_storage,
    };
    let timeouts = Timeouts {
        agent: Duration::from_secs(args.agent_timeout),
        ..Timeouts::default()
    };
    let bar = Arc::new(progress::bytes("uploading"));
    let report = |line: &str| {
        if format == Format::Text {
            eprintln!("→ {line}");
        }
    };
    let progress = |file: &str| -> Progress {
        let bar = bar.clone();
        let what = format!("uploading {file}");
        Arc::new(move |done, total| bar.step(&what, done, Some(total)))
    };
    let result = apply(&target, desired, plan, timeouts, &report, &progress);
    bar.finish();
    match result {
        Ok(()) => {
            if format == Format::Text {
                eprintln!("deployed");
            }
            held_back(plan)
        }
        Err(err) => {
            eprintln!(
                "error: {err}\nthe host is as far as the steps above; run deploy again to converge"
            );
            exit::UNAVAILABLE
        }
    }
}

fn show(plan: &Plan, host: &[String], format: Format, dry_run: bool) {
    match format {
        Format::Json => {
            let json = serde_json::json!({
                "dry_run": dry_run,
                "changes": plan.changes_anything() || !host.is_empty(),
                "host": host,
                "steps": plan.steps,
            });
            super::print_out(&serde_json::to_string_pretty(&json).expect("plain data serialises"));
        }
        Format::Text => {
            for change in host {
                super::print_out(&format!("host     {change}"));
            }
            for line in plan.lines() {
                super::print_out(&line);
            }
        }
    }
}

/// Exit code of a plan that did all it could: 0, or CONFLICT if it held a
/// step back on purpose.
fn held_back(plan: &Plan) -> u8 {
    match plan.held_back() {
        0 => exit::OK,
        count => {
            eprintln!("{count} step(s) held back (see the plan); the rest of the host matches");
            exit::CONFLICT
        }
    }
}

fn remote_failed(err: &PveError) -> u8 {
    eprintln!("error: {err}");
    exit::UNAVAILABLE
}

/// Asks on the terminal; refuses to guess when there is none.
fn confirmed() -> bool {
    if !std::io::stdin().is_terminal() {
        eprintln!(
            "error: not asking without a terminal; apply with --yes, or look first with --dry-run"
        );
        return false;
    }
    eprint!("apply this plan? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    let yes = matches!(answer.trim(), "y" | "Y" | "yes");
    if !yes {
        eprintln!("nothing changed");
    }
    yes
}

/// Who holds the lock: `user@machine pid N`.
fn holder() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "someone".into());
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    format!("{user}@{machine} pid {}", std::process::id())
}
