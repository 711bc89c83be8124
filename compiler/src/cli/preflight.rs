//! `waddlec preflight`, and the same checks as the first step of `deploy`
//! and `cluster bootstrap` (`--skip-preflight` to leave them out): the
//! arguments, the report (text on stdout, or `--format json`), the exit
//! code `checks::Report` decides. The checks are `crate::preflight`; they
//! take a `[cluster]` as a lone `[host]` (the edge's names are checked
//! against the public address of the host that runs the edge VM).

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{blueprint_dir, compile_blueprint, print_out, BlueprintArgs, Format};
use crate::blueprint::SourceFile;
use crate::checks::Report;
use crate::exit;
use crate::model::Model;
use crate::net::cloudflare;
use crate::preflight::{self, Kind, Options, Subject};

const AFTER_HELP: &str = "\
Checks, in this order (each only if the blueprint names what it checks):
  secrets      every secret reference (file:, env:, op://) resolves, and
               the Talos bundle is where talos.secrets says
  onepassword  each 1Password item field the platform's ExternalSecrets
               read exists in platform.vault (`op read`)
  backups      the backup bucket answers a HeadBucket signed with the
               backup credentials
  git          `git ls-remote` of flux.url's branch with only the deploy key
               and only flux.known_hosts
  cloudflare   the DNS token is active (token verify), lists the zone
               (Zone:Read) and reads its DNS records (DNS:Read); DNS:Edit
               cannot be checked without changing a record, so it is not
  dns          each [[edge.route]] name resolves to the public address of
               the host that runs the edge VM (in a [cluster], that host's)

Nothing is changed anywhere, and no secret value is printed or logged.
A check that could not reach its service (timeout, refused connection)
is UNREACHABLE, not FAILED. Each problem names the blueprint line it
comes from.

Exit codes: 0 every check passed; 8 a check failed; 75 no check failed
but something could not be reached; 1 the blueprint is invalid.

Examples:
  waddlec preflight                          every check the blueprint implies
  waddlec preflight --only git --only dns    just these two kinds
  waddlec preflight --format json | jq '.checks[] | select(.result != \"pass\")'
  waddlec preflight --resolver 1.1.1.1       ask this resolver, not the system's
  waddlec deploy --skip-preflight            deploy without the checks";

#[derive(Args)]
#[command(after_help = AFTER_HELP)]
pub struct PreflightArgs {
    #[command(flatten)]
    common: BlueprintArgs,
    /// Only this kind of check (repeat for several); default: all.
    #[arg(long, value_enum, value_name = "KIND")]
    only: Vec<KindArg>,
    #[command(flatten)]
    reach: ReachArgs,
}

/// How the checks reach their services: shared by `preflight`, `deploy`
/// and `cluster bootstrap`.
#[derive(Args, Clone)]
pub struct ReachArgs {
    /// Seconds any one service may take to answer before its check is
    /// UNREACHABLE.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    check_timeout: u64,
    /// The DNS resolver the dns checks ask (`IP` or `IP:PORT`); default:
    /// the first nameserver of /etc/resolv.conf.
    #[arg(long, value_name = "ADDR", value_parser = parse_resolver)]
    resolver: Option<SocketAddr>,
    /// Cloudflare's API base URL.
    #[arg(long, value_name = "URL", default_value = cloudflare::DEFAULT_URL)]
    cloudflare_url: String,
    /// Ask the backup bucket at this S3 endpoint instead of
    /// platform.backups.endpoint (a local copy of the store, tests).
    #[arg(long, value_name = "URL")]
    backups_endpoint: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KindArg {
    Secrets,
    Onepassword,
    Backups,
    Git,
    Cloudflare,
    Dns,
}

impl From<KindArg> for Kind {
    fn from(kind: KindArg) -> Kind {
        match kind {
            KindArg::Secrets => Kind::Secrets,
            KindArg::Onepassword => Kind::Onepassword,
            KindArg::Backups => Kind::Backups,
            KindArg::Git => Kind::Git,
            KindArg::Cloudflare => Kind::Cloudflare,
            KindArg::Dns => Kind::Dns,
        }
    }
}

fn parse_resolver(text: &str) -> Result<SocketAddr, String> {
    text.parse::<SocketAddr>()
        .or_else(|_| {
            text.parse::<std::net::IpAddr>()
                .map(|ip| SocketAddr::new(ip, 53))
        })
        .map_err(|_| format!("`{text}` is not an address: write `IP` or `IP:PORT`"))
}

impl ReachArgs {
    fn options(&self, only: Vec<Kind>) -> Options {
        Options {
            only,
            timeout: Duration::from_secs(self.check_timeout.max(1)),
            cloudflare_url: self.cloudflare_url.clone(),
            resolver: self.resolver,
            backups_endpoint: self.backups_endpoint.clone(),
        }
    }
}

pub fn run(args: &PreflightArgs, color: bool) -> u8 {
    let common = &args.common;
    let (source, compiled) = match compile_blueprint(&common.blueprint, common.format, color) {
        Ok(compiled) => compiled,
        Err(code) => return code,
    };
    let only = args.only.iter().map(|&k| k.into()).collect();
    let report = match check(
        &source,
        &compiled.model,
        &common.blueprint,
        &args.reach,
        only,
    ) {
        Ok(report) => report,
        Err(code) => return code,
    };
    match common.format {
        // The report goes to stdout: coloured only when that is a terminal.
        Format::Text => print!(
            "{}",
            report.render_text(color && std::io::stdout().is_terminal())
        ),
        Format::Json => match serde_json::to_string_pretty(&report) {
            Ok(json) => print_out(&json),
            Err(err) => {
                eprintln!("internal error: {err}");
                return exit::INTERNAL;
            }
        },
    }
    report.exit_code()
}

/// The first step of `deploy` and `cluster bootstrap`: every check; the
/// report on stderr when one did not pass, and the exit code that stops
/// the command before it changes anything.
pub fn gate(source: &SourceFile, model: &Model, path: &Path, reach: &ReachArgs) -> Result<(), u8> {
    let report = check(source, model, path, reach, Vec::new())?;
    if report.all_passed() {
        eprintln!(
            "preflight: {} checks passed (skip them with --skip-preflight)",
            report.checks.len()
        );
        return Ok(());
    }
    eprint!("{}", report.render_text(false));
    eprintln!(
        "error: preflight found problems; nothing was changed (fix them, or pass --skip-preflight)"
    );
    Err(report.exit_code())
}

fn check(
    source: &SourceFile,
    model: &Model,
    path: &Path,
    reach: &ReachArgs,
    only: Vec<Kind>,
) -> Result<Report, u8> {
    // The model has no spans: the document, parsed again, has them.
    let document = crate::blueprint::parse(source).map_err(|_| exit::INVALID)?;
    let base = blueprint_dir(path);
    let subject = Subject {
        source,
        document: &document,
        model,
        base: &base,
    };
    tracing::info!("preflight checks");
    Ok(preflight::run(&subject, &reach.options(only)))
}
