//! `waddlec status`: the arguments, the blueprint built with its secrets
//! (as `deploy` builds it), `status::run` once or, with `--wait`, until
//! every check passes or the time is up; progress on stderr, the report on
//! stdout (text or `--format json`), the exit code from the last report.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};

use super::{blueprint_dir, compile_deployable, print_out, Format};
use crate::checks::Report;
use crate::deploy::host_setup::Ssh;
use crate::exit::{self, Code as _};
use crate::host::record::HostRecords;
use crate::status::{self, Layer, Request};

/// Between two looks under `--wait`.
const POLL: Duration = Duration::from_secs(5);

pub const AFTER_HELP: &str = "\
Each line is one check: `ok`, `FAILED` (reached, and not as the blueprint
says: why, and what to do) or `UNREACHABLE` (could not be asked: a
timeout, a refused connection, or a layer behind one that is down).
Nothing is changed by any check.

Exit codes: 0 every check passed; 8 a check failed; 75 something could not
be reached and nothing failed; 4 a secret status needs is missing.

Examples:
  waddlec status                          every layer, once
  waddlec status --layer host --layer vms the Proxmox host and its VMs only
  waddlec status --format json | jq '.checks[] | select(.result != \"pass\")'
  waddlec status --wait --timeout 10m     after a deploy: until healthy, at most 10 minutes
  waddlec status --public-address 198.51.100.7
                                          the edge through a NAT in front of the host";

#[derive(Args)]
pub struct StatusArgs {
    /// The blueprint to check the platform against.
    #[arg(default_value = "blueprints/waddle.toml")]
    blueprint: PathBuf,
    /// `json` prints `{"checks": [...]}` on stdout, one object per check
    /// (`layer`, `name`, `result`: pass|failed|unreachable, `detail` or
    /// `why` and `fix`, and the `node` of a VM's check or a cluster host's).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Check only this layer (repeat for several); default: all of them.
    #[arg(long, value_enum, value_name = "LAYER")]
    layer: Vec<LayerArg>,
    /// Look again every few seconds until every check passes, for at most
    /// --timeout; the exit code is the last look's.
    #[arg(long)]
    wait: bool,
    /// How long --wait looks for (`90s`, `10m`, `1h`).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    timeout: Duration,
    /// The longest one network call may take before its check is reported
    /// unreachable.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    call_timeout: Duration,
    /// Reach the API here instead of `host.api` (e.g. through an SSH tunnel);
    /// the certificate pin still applies.
    #[arg(long, value_name = "URL")]
    api: Option<String>,
    /// The ssh config file for reaching `host.ssh` (`ssh -F`), or each
    /// cluster host's `ssh`; default: yours.
    #[arg(long, value_name = "FILE")]
    ssh_config: Option<PathBuf>,
    /// Where the internet reaches the platform, if not at the public
    /// bridge's address (a NAT in front of the host).
    #[arg(long, value_name = "IP")]
    public_address: Option<IpAddr>,
    /// A CA certificate (PEM) the edge's certificates may be issued by,
    /// besides the system's roots (a staging ACME issuer).
    #[arg(long, value_name = "FILE")]
    edge_ca: Option<PathBuf>,
    /// Read the host's files under DIR instead of / (a cluster host's under
    /// DIR/NODE) (tests).
    #[arg(long, value_name = "DIR", hide = true)]
    host_root: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LayerArg {
    Host,
    Vms,
    Edge,
    Teleport,
    Talos,
    Kubernetes,
}

impl From<LayerArg> for Layer {
    fn from(arg: LayerArg) -> Layer {
        match arg {
            LayerArg::Host => Layer::Host,
            LayerArg::Vms => Layer::Vms,
            LayerArg::Edge => Layer::Edge,
            LayerArg::Teleport => Layer::Teleport,
            LayerArg::Talos => Layer::Talos,
            LayerArg::Kubernetes => Layer::Kubernetes,
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::secrets::kube_admin::parse_ttl(text)
        .ok()
        .and_then(|d| d.try_into().ok())
        .filter(|d: &Duration| !d.is_zero())
        .ok_or_else(|| format!("`{text}` is not a duration such as `90s`, `10m` or `1h`"))
}

pub fn run(args: &StatusArgs, color: bool) -> u8 {
    let dir = blueprint_dir(&args.blueprint);
    let compiled = match compile_deployable(&args.blueprint, args.format, color) {
        Ok(compiled) => compiled,
        Err(code) => return code,
    };
    let model = &compiled.model;
    let records = match HostRecords::for_blueprint(&args.blueprint, model) {
        Ok(records) => records,
        Err(err) => {
            eprintln!("error: {err}");
            return exit::IO;
        }
    };
    let edge_ca = match &args.edge_ca {
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(err) => {
                eprintln!("error: cannot read --edge-ca {}: {err}", path.display());
                return exit::IO;
            }
        },
        None => None,
    };
    let mut layers: Vec<Layer> = args.layer.iter().copied().map(Layer::from).collect();
    if layers.is_empty() {
        layers = Layer::ALL.to_vec();
    }
    let request = Request {
        compiled: &compiled,
        blueprint_dir: &dir,
        api: args.api.as_deref(),
        recorded_fingerprint: records
            .of(&model.proxmox.api_host().node)
            .map(|r| r.api_fingerprint.as_str()),
        ssh: Ssh::to_host(
            model,
            args.ssh_config.clone(),
            args.host_root.clone(),
            records.host_keys(),
            super::tsh_known_hosts(),
        ),
        layers: &layers,
        public_address: args.public_address,
        edge_ca: edge_ca.as_deref(),
        call_timeout: args.call_timeout,
    };
    // The report goes to stdout: coloured only when that is a terminal.
    let color = color && std::io::stdout().is_terminal();
    let progress = |layer: Layer| eprintln!("==> {}", layer.name());
    let start = Instant::now();
    let report = loop {
        let report = match status::run(&request, &progress) {
            Ok(report) => report,
            Err(err) => {
                eprintln!("error: {err}");
                return err.exit_code();
            }
        };
        if !args.wait || report.all_passed() || start.elapsed() + POLL > args.timeout {
            break report;
        }
        eprintln!(
            "{}; looking again in {} s",
            summary(&report),
            POLL.as_secs()
        );
        std::thread::sleep(POLL);
    };
    match args.format {
        Format::Json => print_out(&serde_json::to_string_pretty(&report).unwrap_or_default()),
        Format::Text => print!("{}", report.render_text(color)),
    }
    if args.wait && !report.all_passed() {
        eprintln!(
            "not healthy after {} s (--timeout): the report above is the last look",
            start.elapsed().as_secs()
        );
    }
    report.exit_code()
}

/// `2 failed, 1 unreachable` for the progress line under --wait.
fn summary(report: &Report) -> String {
    use crate::checks::Outcome;
    let count = |f: fn(&Outcome) -> bool| report.checks.iter().filter(|c| f(&c.outcome)).count();
    format!(
        "{} failed, {} unreachable",
        count(|o| matches!(o, Outcome::Failed { .. })),
        count(|o| matches!(o, Outcome::Unreachable { .. }))
    )
}
