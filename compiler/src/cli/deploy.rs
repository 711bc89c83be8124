//! `waddlec deploy`: the arguments, the terminal (the plan printed, the
//! question asked, progress shown) and the exit code around
//! `deploy::workflow`, which does the work.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::progress::Bytes;

use clap::Args;

use super::{
    blueprint_dir, compile_deployable, compile_failed, progress, read_source, today, BlueprintArgs,
    Format,
};
use crate::deploy::cluster_plan::ClusterPlan;
use crate::deploy::host_setup::{self, Ssh};
use crate::deploy::plan::Plan;
use crate::deploy::workflow::{self, Outcome, Request, Ui};
use crate::exit::{self, Code as _};
use crate::host::record::HostRecords;
use crate::net::pve::Progress;

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
    /// several; at most one Talos node per deploy, and it goes alone (other
    /// Talos nodes' upgrades wait for the next deploy). A Talos node not
    /// named is upgraded and configured in place instead; other VMs not
    /// named are left alone and the plan says what it would replace.
    #[arg(long, value_name = "VM")]
    allow_replace: Vec<String>,
    /// Shut this VM down cleanly and start it again when Proxmox holds
    /// settings for its next start (memory, cores, CPU type: the plan
    /// shows them as pending). Repeat for several; at most one Talos node
    /// per deploy. A VM that does not shut down in time is not forced off:
    /// the deploy stops.
    #[arg(long, value_name = "VM")]
    allow_restart: Vec<String>,
    /// Remove a deploy lock a killed deploy left on the host.
    #[arg(long)]
    break_lock: bool,
    /// Reach the API here instead of `host.api` (`cluster.api`), e.g.
    /// through an SSH tunnel, `https://127.0.0.1:8006`; the certificate pin
    /// still applies.
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// Seconds to wait for a started VM's guest agent.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    agent_timeout: u64,
    /// Seconds a Talos node that was replaced, upgraded, rebooted or
    /// restarted may take to come back (a control plane: to answer and be
    /// back in etcd with every member healthy; a changed kubelet: to be
    /// healthy) before the deploy stops naming it. A re-run continues
    /// where the cluster is.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    talos_wait: u64,
    /// The Talos Image Factory, asked which Talos versions it has an
    /// installer for before any upgrade.
    #[arg(long, value_name = "URL", default_value_t = crate::net::factory::default_url())]
    factory_url: String,
    /// Leave the host's own setup (sysctl, forwards and NAT, firewall,
    /// storage content) alone, every host's for a cluster: API steps only.
    #[arg(long)]
    skip_host: bool,
    /// Remove the EMERGENCY lines `waddlec-emergency` added from the host's
    /// console (rules admitting one address, the firewall switched off).
    /// Without it a deploy keeps them and shows them above the plan.
    #[arg(long, conflicts_with = "skip_host")]
    close_emergency: bool,
    /// The ssh config file for reaching `host.ssh`, or each cluster host's
    /// `ssh` (`ssh -F`); default: yours.
    #[arg(long, value_name = "FILE")]
    ssh_config: Option<PathBuf>,
    /// Install the host's files under DIR instead of / (tests); a
    /// cluster's hosts under DIR/NODE.
    #[arg(long, value_name = "DIR", hide = true)]
    host_root: Option<String>,
    /// Do not run `waddlec preflight`'s checks first.
    #[arg(long)]
    skip_preflight: bool,
    #[command(flatten)]
    preflight: super::preflight::ReachArgs,
}

pub fn run(args: &DeployArgs, color: bool) -> u8 {
    let common = &args.common;
    // Before any secret is read or the host reached: the checks name the
    // blueprint line of whatever is missing.
    if !args.skip_preflight {
        let source = match read_source(&common.blueprint) {
            Ok(source) => source,
            Err(code) => return code,
        };
        let checked = match waddlec_core::check(&source, today::today()) {
            Ok(checked) => checked,
            Err(err) => return compile_failed(&source, err.into(), common.format, color),
        };
        if let Err(code) =
            super::preflight::gate(&source, &checked.model, &common.blueprint, &args.preflight)
        {
            return code;
        }
    }
    let dir = blueprint_dir(&common.blueprint);
    let compiled = match compile_deployable(&common.blueprint, common.format, color) {
        Ok(compiled) => compiled,
        Err(code) => return code,
    };
    let records = match HostRecords::for_blueprint(&common.blueprint, &compiled.model) {
        Ok(records) => records,
        Err(err) => {
            eprintln!("error: {err}");
            return exit::IO;
        }
    };
    let holder = holder();
    let request = Request {
        compiled: &compiled,
        blueprint_dir: &dir,
        tree: &args.tree,
        allow_replace: &args.allow_replace,
        allow_restart: &args.allow_restart,
        break_lock: args.break_lock,
        api: args.api.as_deref(),
        agent_timeout: Duration::from_secs(args.agent_timeout),
        talos_wait: Duration::from_secs(args.talos_wait),
        skip_host: args.skip_host,
        close_emergency: args.close_emergency,
        ssh: Ssh::to_host(
            &compiled.model,
            args.ssh_config.clone(),
            args.host_root.clone(),
            records.host_keys(),
            super::tsh_known_hosts(),
        ),
        recorded_fingerprint: records
            .of(&compiled.model.proxmox.api_host().node)
            .map(|r| r.api_fingerprint.as_str()),
        dry_run: args.dry_run,
        holder: &holder,
        factory: &args.factory_url,
    };
    let terminal = Terminal {
        format: common.format,
        dry_run: args.dry_run,
        yes: args.yes,
        bar: Arc::new(progress::bytes("uploading")),
    };
    match workflow::run(&request, &terminal) {
        Ok(outcome) => {
            if common.format == Format::Text {
                match outcome {
                    Outcome::NothingToDo { held_back: 0 } => {
                        eprintln!("nothing to do: the host matches the blueprint");
                    }
                    Outcome::Applied { .. } => eprintln!("deployed"),
                    _ => {}
                }
            }
            if let Outcome::NothingToDo { held_back }
            | Outcome::DryRun { held_back }
            | Outcome::Applied { held_back } = outcome
            {
                if held_back > 0 {
                    eprintln!(
                        "{held_back} step(s) held back (see the plan); the rest of the host matches"
                    );
                }
            }
            outcome.exit_code()
        }
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}

/// The deploy's terminal: the plan on stdout (text or JSON), steps and
/// progress on stderr, the question on the terminal.
struct Terminal {
    format: Format,
    dry_run: bool,
    /// `--yes`: apply without asking.
    yes: bool,
    bar: Arc<Bytes>,
}

impl Ui for Terminal {
    fn show(&self, plan: &Plan, host: &host_setup::Report) {
        match self.format {
            Format::Json => {
                let json = serde_json::json!({
                    "dry_run": self.dry_run,
                    "changes": plan.changes_anything() || !host.changes.is_empty(),
                    "host": host.changes,
                    "emergency": host.emergency,
                    "steps": plan.steps,
                });
                super::print_out(&format!("{json:#}"));
            }
            Format::Text => {
                show_emergency("the host's", &host.emergency);
                for change in &host.changes {
                    super::print_out(&format!("host     {change}"));
                }
                for line in plan.lines() {
                    super::print_out(&line);
                }
            }
        }
    }

    fn show_cluster(&self, plan: &ClusterPlan) {
        match self.format {
            Format::Json => {
                let json = serde_json::json!({
                    "dry_run": self.dry_run,
                    "changes": plan.changes_anything(),
                    "sdn": plan.sdn,
                    "placement": plan.placement,
                    "nodes": plan.nodes,
                });
                super::print_out(&format!("{json:#}"));
            }
            Format::Text => {
                for node in &plan.nodes {
                    show_emergency(&format!("{}'s", node.node), &node.emergency);
                }
                for line in plan.lines() {
                    super::print_out(&line);
                }
            }
        }
    }

    fn confirm(&self) -> bool {
        self.yes || confirmed()
    }

    fn step(&self, line: &str) {
        if self.format == Format::Text {
            eprintln!("→ {line}");
        }
    }

    fn upload(&self, file: &str) -> Progress {
        let bar = self.bar.clone();
        let what = format!("uploading {file}");
        Arc::new(move |done, total| bar.step(&what, done, Some(total)))
    }

    fn uploads_done(&self) {
        self.bar.finish();
    }

    fn warn(&self, message: &str) {
        eprintln!("warning: {message}");
    }
}

/// The EMERGENCY lines of `whose` firewall, above everything: access
/// opened from the console.
fn show_emergency(whose: &str, emergency: &[String]) {
    if emergency.is_empty() {
        return;
    }
    eprintln!(
        "EMERGENCY access on {whose} firewall (opened from the console with waddlec-emergency):"
    );
    for line in emergency {
        eprintln!("  {line}");
    }
    if emergency.iter().any(|l| l.starts_with("kept ")) {
        eprintln!("  kept by this deploy; close with: waddlec deploy --close-emergency");
    }
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
