//! `waddlec cluster bootstrap`: reads the Talos credentials and the
//! bootstrap secrets, chooses the Proxmox host to tunnel through
//! (`bootstrap::tunnel_host`: a `[cluster]`'s host that runs the first
//! control plane, reached by its own `ssh` and pinned to its own record),
//! then runs `bootstrap` with progress on stderr and the report (text, or
//! `--format json` on stdout).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{blueprint_dir, exit, print_out, Format};
use crate::bootstrap::{self, Settings, TeleportSsh};
use crate::deploy::host_setup::Ssh;
use crate::exit::Code as _;
use crate::host::record::HostRecords;
use crate::model::SshRoute;
use crate::render::cluster::bootstrap_secrets::Values;
use crate::secrets::{self, SecretError};

#[derive(Subcommand)]
pub enum ClusterCommand {
    /// Bring the booted Talos nodes up as a cluster: bootstrap etcd on the
    /// first node through the Talos API (reached through an SSH tunnel via
    /// the Proxmox host; in a [cluster], the host that runs the first
    /// control plane, which reaches every node over the VNets), wait for the API server on the VIP, apply the
    /// bootstrap secrets (Flux deploy key, 1Password Connect), install
    /// Teleport's kubeconfig on the Teleport VM, and wait for every node to
    /// be Ready. Each step waits at most --wait and stops with what it
    /// waited for. Safe to re-run: done steps are found done.
    Bootstrap(BootstrapArgs),
}

#[derive(Args)]
pub struct BootstrapArgs {
    /// The blueprint whose `[talos]` cluster to bootstrap.
    #[arg(default_value = "blueprints/waddle.toml")]
    blueprint: PathBuf,
    /// How long any one step may take (`90s`, `10m`, `1h`).
    #[arg(long, default_value = "15m", value_parser = parse_wait)]
    wait: Duration,
    /// An ssh config file to use instead of the user's (`ssh -F`).
    #[arg(long, value_name = "FILE")]
    ssh_config: Option<PathBuf>,
    /// Reach the Proxmox host as TARGET instead of the blueprint's
    /// `host.ssh` (in a [cluster]: the `ssh` of the host that runs the
    /// first control plane; its host record's key is still pinned).
    #[arg(long, value_name = "TARGET")]
    host_ssh: Option<String>,
    /// Reach the Teleport VM as TARGET directly, instead of
    /// `<operator.login>@<its address>` through the Proxmox host (the one
    /// the tunnel goes through).
    #[arg(long, value_name = "TARGET")]
    teleport_ssh: Option<String>,
    /// Install Teleport's kubeconfig under DIR instead of / (tests).
    #[arg(long, value_name = "DIR", hide = true)]
    teleport_root: Option<String>,
    /// `json` prints the report on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Do not run `waddlec preflight`'s checks first.
    #[arg(long)]
    skip_preflight: bool,
    #[command(flatten)]
    preflight: super::preflight::ReachArgs,
}

fn parse_wait(text: &str) -> Result<Duration, String> {
    secrets::kube_admin::parse_ttl(text)
        .ok()
        .and_then(|d| d.try_into().ok())
        .ok_or_else(|| format!("`{text}` is not a duration such as `90s`, `10m` or `1h`"))
}

pub fn run(command: ClusterCommand) -> u8 {
    match command {
        ClusterCommand::Bootstrap(args) => bootstrap(&args),
    }
}

fn bootstrap(args: &BootstrapArgs) -> u8 {
    let (source, compiled) = match super::compile_blueprint(&args.blueprint, args.format, false) {
        Ok(compiled) => compiled,
        Err(code) => return code,
    };
    let model = &compiled.model;
    let (Some(cluster), Some(through)) = (&model.talos, bootstrap::tunnel_host(model)) else {
        eprintln!("error: {} has no [talos] cluster to bootstrap", source.name);
        return exit::USAGE;
    };
    // The bootstrap's tunnel through a cluster host goes straight to it:
    // a host reached through Teleport is refused, unless --host-ssh says
    // how to reach it.
    if model.proxmox.single_host().is_none()
        && through.ssh_route == SshRoute::Teleport
        && args.host_ssh.is_none()
    {
        eprintln!(
            "error: the bootstrap tunnels through {node}, the host that runs the first control plane, and {node}'s `ssh` goes through Teleport, which `cluster bootstrap` uses for a lone [host] only so far\n  \
             = help: give `[[cluster.host]]` {node} a direct `ssh` (`user@address`), or pass --host-ssh TARGET",
            node = through.node
        );
        return exit::USAGE;
    }
    if !args.skip_preflight {
        if let Err(code) = super::preflight::gate(&source, model, &args.blueprint, &args.preflight)
        {
            return code;
        }
    }
    let base = blueprint_dir(&args.blueprint);
    let read = || -> Result<(secrets::talos::TalosCredentials, Values), SecretError> {
        let credentials = secrets::load_talos(cluster, &base)?;
        let read = |key: &str, r: &crate::blueprint::SecretRef| secrets::read(key, r, &base);
        let values = Values {
            flux_deploy_key: model
                .flux
                .as_ref()
                .map(|f| read("flux.deploy_key", &f.deploy_key))
                .transpose()?,
            connect_credentials: model
                .onepassword_connect
                .as_ref()
                .map(|c| read("onepassword_connect.credentials", &c.credentials))
                .transpose()?,
            connect_token: model
                .onepassword_connect
                .as_ref()
                .map(|c| read("onepassword_connect.token", &c.token))
                .transpose()?,
        };
        Ok((credentials, values))
    };
    let host_keys = || -> Result<_, SecretError> {
        match &model.teleport {
            Some(_) => {
                let bundle = secrets::store::Place::bundle(cluster, &base)?;
                let place = secrets::ssh_host_keys::place(model, Some(&bundle), &base);
                secrets::ssh_host_keys::load(model, &place)
            }
            None => Ok(Default::default()),
        }
    };
    let ((credentials, values), host_keys) = match read().and_then(|r| Ok((r, host_keys()?))) {
        Ok(read) => read,
        Err(err) => {
            eprintln!("error: {err}");
            return err.exit_code();
        }
    };
    let records = match HostRecords::for_blueprint(&args.blueprint, model) {
        Ok(records) => records,
        Err(err) => {
            eprintln!("error: {err}");
            return exit::IO;
        }
    };
    // The tunnel's host as deploy reaches it (a lone host through
    // Teleport: `login@node.CLUSTER` by its proxy; a cluster's host by its
    // own `ssh`), pinned to its own record's key, unless --host-ssh names
    // a direct destination.
    let first = Ssh::to_host(
        model,
        args.ssh_config.clone(),
        None,
        records.host_keys(),
        super::tsh_known_hosts(),
    );
    let host = match model.proxmox.single_host() {
        Some(_) => first,
        None => first.to_cluster_host(through),
    };
    let host_teleport = host.teleport.clone().filter(|_| args.host_ssh.is_none());
    let host_ssh = args.host_ssh.clone().unwrap_or(host.target);
    let teleport = model.teleport.as_ref().and_then(|teleport| {
        let address = model.vm(&teleport.vm)?.nics.first()?.address.addr();
        let host_key = host_keys.get(&teleport.vm)?.public.clone();
        // Through Teleport, its own VM is one of its nodes (`nodename`).
        let (target, jump) = match (&args.teleport_ssh, &host_teleport) {
            (Some(target), _) => (target.clone(), None),
            (None, Some(proxy)) => (
                proxy.destination(&format!("{}@{}", model.operator.login, teleport.vm)),
                None,
            ),
            (None, None) => (
                format!("{}@{}", model.operator.login, address),
                Some(host_ssh.clone()),
            ),
        };
        Some(TeleportSsh {
            target,
            jump_key: jump.as_ref().and(host.host_key.clone()),
            jump,
            through: host_teleport
                .clone()
                .filter(|_| args.teleport_ssh.is_none()),
            root: args.teleport_root.clone(),
            vm: teleport.vm.clone(),
            host_key,
        })
    });
    let settings = Settings {
        host_node: through.node.clone(),
        host_ssh,
        host_teleport,
        ssh_config: args.ssh_config.clone(),
        host_key: host.host_key.clone(),
        teleport,
        wait: args.wait,
    };
    let progress = |step: bootstrap::Step, detail: &str| {
        if detail.is_empty() {
            eprintln!("==> {step}");
        } else {
            eprintln!("==> {step}: {detail}");
        }
    };
    match bootstrap::run(model, &credentials, &values, &settings, &progress) {
        Ok(report) => {
            if args.format == Format::Json {
                print_out(&serde_json::to_string_pretty(&report).expect("plain data serialises"));
            } else {
                eprintln!(
                    "cluster {} is up: etcd {}, {} secret object(s) applied, nodes Ready: {}",
                    cluster.name,
                    if report.etcd_bootstrapped {
                        "bootstrapped"
                    } else {
                        "was already bootstrapped"
                    },
                    report.secrets_applied.len(),
                    report.nodes_ready.join(", ")
                );
            }
            exit::OK
        }
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}
