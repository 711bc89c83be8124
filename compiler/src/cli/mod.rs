//! The command line: argument parsing, terminal output, exit codes. The only
//! module that prints, reads the environment or decides how to show things.

// A closed stdout or stderr (`waddlec build -v 2>&1 | head -1`) must not end
// waddlec with a panic (exit 101). The usual Rust fix, resetting SIGPIPE to
// its default at the start of `main`, needs `unsafe` (forbidden in this
// workspace) and would kill a build or deploy in the middle of a step because
// its reader went away. Instead output is best-effort: these macros shadow
// std's printing macros in this module and all below it, and drop what a
// closed stream cannot take; the command finishes and exits with its own
// code. (tracing's own writer is told the same in `logging::init`.)
macro_rules! print {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}
macro_rules! eprint {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod build;
mod cluster;
mod completions;
mod deploy;
mod discover;
mod host;
mod image;
mod kubeconfig;
mod logging;
mod platform;
mod preflight;
mod progress;
mod schematic;
mod secrets;
mod status;
mod today;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::blueprint::SourceFile;
use crate::build::read::{read_blueprint, ReadError};
pub(crate) use crate::build::workflow::blueprint_dir;
use crate::diagnostics::{report, rules, Diagnostic, Diagnostics};
use crate::exit;
use crate::exit::Code as _;
use crate::{compile, CompileError};

const AFTER_HELP: &str = "\
Exit codes:
  0   success
  1   the blueprint is invalid (also: not UTF-8, or a [talos.age]
      recipient's checksum is wrong), or has warnings under --strict
  2   usage error (also: build --out names a file, or a directory that is
      not an output tree)
  3   --check: the output tree is out of date
  4   a secret is missing or unreadable (e.g. no Talos secrets bundle yet,
      an `op://` reference 1Password's `op` does not give,
      or an age-encrypted one the [talos.age] identity cannot decrypt),
      or `secrets init` refused to overwrite one, or host init cannot keep
      the API token where host.api_token points
  5   an upstream input is not pinned in the lock file (--locked) or does
      not match its pin
  6   deploy: the host conflicts with the blueprint, or a step was held back
      (a replace without --allow-replace, an image the tree lacks);
      platform publish: the repository has local changes (commit or stash
      them) or ignores a file to publish, or with --push the remote moved
      since your last fetch or refused the push; host init: the host's SSH key or
      API certificate is not the one recorded (check it, then --repin), or
      a token (or a value where host.api_token points) exists and would be
      replaced (--rotate)
  7   deploy: another deploy holds the host's lock
  8   status, preflight (and deploy, cluster bootstrap, which run
      preflight first): a check found something not as the blueprint
      says (each failed check is printed with what to do)
  69  a remote service (Image Factory, the cluster) failed,
      disagreed or did not answer in time, or a host program an image needs
      (mmdebstrap, mke2fs) is missing, or git failed (platform
      publish: e.g. no user.name/user.email, the remote unreachable)
  70  internal error (a bug: please report it)
  74  reading or writing files failed, or no blueprint was given and none
      was found (see Blueprint below), or kubeconfig/talosconfig --merge
      found a file that is not one (nothing written)
  75  host init: the host did not answer over SSH; status, preflight
      (also first in deploy, cluster bootstrap): something a check needs
      could not be reached, and no check failed
  77  host init: the host refused your SSH key, your ssh does not trust
      the host's key, or a fresh login failed after sshd was hardened (the
      host undoes that change by itself)

Blueprint:
  A command given no blueprint reads $WADDLEC_BLUEPRINT, else the nearest
  blueprints/waddle.toml found going up from the current directory (or the
  -C directory); the directory holding blueprints/ is the project root, and
  the default out/, dist/ and secrets/ are there too.

Environment:
  WADDLEC_BLUEPRINT  the blueprint to use when none is given
  NO_COLOR        disables colour (as does --color never)
  RUST_LOG        log filter replacing -v (`target=level,...`, e.g. waddlec=debug)
  WADDLEC_TODAY   YYYY-MM-DD to use instead of today's date for expiry warnings
  WADDLEC_CACHE_DIR  downloads, Debian bases and baked images
                  (default: $XDG_CACHE_HOME/waddlec or ~/.cache/waddlec)
  WADDLEC_SECRET_DIRS  `:`-separated directories `file:` secrets may also be
                  read from, links followed (default: only the blueprint's
                  directory and the project's secrets/)
  WADDLE_*        the only variables `env:` secret references may name

Examples:
  waddlec build                          build the review tree (no secrets) into out/
  waddlec build --check                  fail (exit 3) with a diff if out/ is stale
  waddlec secrets init                   create the Talos secrets bundle, once
  waddlec host init                      record the host's SSH key and API certificate
  waddlec preflight                      check secrets, 1Password, bucket, git, Cloudflare, DNS
  waddlec build --with-secrets           the deployable tree, secrets included, into dist/
  waddlec deploy --tree dist             put it on the Proxmox host (plan first)
  waddlec cluster bootstrap              etcd, API, secrets, Teleport access, nodes Ready
  waddlec status                         every layer's health (exit 8 failed, 75 unreachable)
  waddlec platform publish --repo ../platform --push
                                         commit the GitOps tree into the Flux repository, push it
  waddlec schematic id --extension siderolabs/qemu-guest-agent
  waddlec validate my.toml --format json diagnostics as JSON
  waddlec explain E0102                  why duplicate addresses are refused";

/// Compile a waddle blueprint into every artifact of the platform.
///
/// One TOML blueprint describes the Proxmox host, its bridges and firewall,
/// every VM, the Talos cluster and the public edge. `waddlec build` checks
/// it (every finding points at file:line:col with a fix) and writes the
/// artifacts: iptables ruleset, Proxmox firewall files, haproxy.cfg, the qm
/// script, Talos schematics, machine configs and NoCloud seeds, talosconfig,
/// and manifest.json. The same blueprint (and secrets) always give
/// byte-identical output.
///
/// Two trees come out of one blueprint: the review tree (`out/`, secrets
/// replaced by placeholders, committed so changes are reviewed as diffs) and,
/// with `--with-secrets`, the deployable tree (`dist/`, never committed).
#[derive(Parser)]
#[command(name = "waddlec", version = env!("WADDLEC_LONG_VERSION"), after_help = AFTER_HELP, max_term_width = 100)]
struct Cli {
    /// When to colour diagnostics.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    color: ColorChoice,
    /// Log what waddlec does on stderr: -v steps, -vv details, -vvv
    /// everything; libraries only warn (-vvvv: their info too; RUST_LOG
    /// replaces the filter). Secret values are never logged, at any level.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Run as if waddlec were started in DIR.
    #[arg(short = 'C', value_name = "DIR", global = true)]
    directory: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Check a blueprint and write its artifacts (or compare them, with --check).
    ///
    /// The tree is written next to DIR and renamed into place, so a failed build
    /// leaves the previous output untouched.
    Build(build::BuildArgs),
    /// Check a blueprint without writing anything.
    Validate(ValidateArgs),
    /// Print the JSON Schema of the blueprint language (for editor completion:
    /// put `#:schema ./blueprint.schema.json` on a blueprint's first line).
    Schema,
    /// Create or import secrets waddlec owns (the Talos bundle).
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Talos Image Factory schematics: IDs offline, registration online.
    #[command(subcommand)]
    Schematic(schematic::SchematicCommand),
    /// The Proxmox host itself: `host init` learns it over your own SSH and
    /// records its host key and API certificate beside the blueprint.
    #[command(subcommand)]
    Host(host::HostCommand),
    /// Put the deployable tree on the Proxmox host through its API: upload
    /// the images and seed disks, create, update or (with --allow-replace)
    /// replace the VMs, start them. Shows the plan first; --dry-run stops
    /// there. A second deploy with nothing changed does nothing. With
    /// `host.ssh = "teleport:LOGIN@NODE"` it logs in through Teleport
    /// (`tsh login` first) before anything else, and only then may the
    /// firewall drop your direct SSH rule (in a `[cluster]`, on each host
    /// whose `ssh` goes through Teleport and whose firewall changes: one
    /// login per host, proving that host only).
    Deploy(deploy::DeployArgs),
    /// Check, read-only, that every external thing the blueprint names
    /// exists and works: secret references, the 1Password items the
    /// platform reads, the backup bucket, the Flux repository with its
    /// deploy key, the Cloudflare token, DNS of the edge's names. Also the
    /// first step of `deploy` and `cluster bootstrap`.
    Preflight(preflight::PreflightArgs),
    /// The Talos cluster once its VMs run: `cluster bootstrap`.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// The platform's health, layer by layer, as the blueprint expects it:
    /// the host (API, bridges, forwards' chains, firewall), the VMs
    /// (running, guest agent, current image and seed), the edge from here
    /// through the public address, Teleport, Talos (versions, etcd) and
    /// Kubernetes (nodes, every Flux Kustomization and HelmRelease,
    /// certificates, external secrets, the database, SpiceDB). Changes
    /// nothing; --wait looks until healthy.
    #[command(after_help = status::AFTER_HELP)]
    Status(status::StatusArgs),
    /// The GitOps tree Flux syncs: `platform publish` commits the build's
    /// `platform/` files into a checkout of the platform repository.
    #[command(subcommand)]
    Platform(platform::PlatformCommand),
    /// Write a short-lived cluster-admin kubeconfig, signed locally with the
    /// cluster's Kubernetes CA (from the Talos bundle): no call to the
    /// cluster, nothing to revoke.
    Kubeconfig(kubeconfig::KubeconfigArgs),
    /// Write the talosctl admin's talosconfig (from the Talos bundle), or
    /// merge it into yours with --merge: a context straight to the control
    /// planes and, with Teleport, one through `tsh proxy app`, current.
    Talosconfig(kubeconfig::TalosconfigArgs),
    /// Disk images: convert a raw disk into the qcow2 Proxmox imports.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Explain a diagnostic code (`E0102`) or name (`duplicate-address`); with
    /// no argument, list every rule.
    Explain {
        /// Rule code or name.
        rule: Option<String>,
    },
    /// Print the shell completion script for SHELL, e.g.
    /// `waddlec completions bash > ~/.local/share/bash-completion/completions/waddlec`.
    Completions(completions::CompletionsArgs),
    /// Print the manual page (roff), e.g. `waddlec man | man -l -`; with
    /// --out-dir, write one page per subcommand.
    Man(completions::ManArgs),
}

#[derive(Args)]
struct BlueprintArgs {
    /// The blueprint to compile.
    #[arg(default_value = "blueprints/waddle.toml")]
    blueprint: PathBuf,
    /// Treat warnings as errors.
    #[arg(long)]
    strict: bool,
    /// Output format: `json` prints machine-readable diagnostics (and, for
    /// build, the manifest) on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Args)]
struct ValidateArgs {
    #[command(flatten)]
    common: BlueprintArgs,
}

/// Runs the CLI; returns the process exit code.
pub fn run() -> ExitCode {
    let cli = match discover::parse() {
        Ok(cli) => cli,
        Err(code) => return ExitCode::from(code),
    };
    let color = match cli.color {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::io::stderr().is_terminal()
        }
    };
    logging::init(cli.verbose, color);
    let code = match cli.command {
        Command::Build(args) => build::run(&args, color),
        Command::Validate(args) => validate(&args.common, color),
        Command::Schema => schema(),
        Command::Secrets(command) => secrets::run(command),
        Command::Schematic(command) => schematic::run(command),
        Command::Image(command) => image::run(command),
        Command::Host(command) => host::run(command),
        Command::Deploy(args) => deploy::run(&args, color),
        Command::Preflight(args) => preflight::run(&args, color),
        Command::Kubeconfig(args) => kubeconfig::run(&args),
        Command::Talosconfig(args) => kubeconfig::run_talosconfig(&args),
        Command::Cluster(command) => cluster::run(command),
        Command::Status(args) => status::run(&args, color),
        Command::Platform(command) => platform::run(command, color),
        Command::Explain { rule } => explain(rule.as_deref()),
        Command::Completions(args) => completions::completions(&args),
        Command::Man(args) => completions::man(&args),
    };
    ExitCode::from(code)
}

/// tsh's known_hosts, where `tsh login` writes Teleport's host CA:
/// `$TELEPORT_HOME/known_hosts`, else `~/.tsh/known_hosts` (tsh's own
/// `TELEPORT_HOME` and default profile directory).
fn tsh_known_hosts() -> std::path::PathBuf {
    crate::net::ssh::TeleportProxy::tsh_known_hosts()
}

/// Reads a blueprint; prints why not (a non-UTF-8 file as a finding) and
/// returns the exit code.
fn read_source(path: &Path) -> Result<SourceFile, u8> {
    match read_blueprint(path) {
        Ok(source) => Ok(source),
        Err(ReadError::NotUtf8 { file, diagnostic }) => {
            eprint!("{}", report::render_text(&file, &[*diagnostic], false));
            eprintln!("error: {} is invalid (1 finding)", file.name);
            Err(exit::INVALID)
        }
        Err(err @ ReadError::Io { .. }) => {
            eprintln!("error: {err}");
            Err(exit::IO)
        }
    }
}

/// Reads the blueprint at `path` and compiles it (the review build, no
/// secret read): what most commands start with. Prints why not and returns
/// the exit code.
fn compile_blueprint(
    path: &Path,
    format: Format,
    color: bool,
) -> Result<(SourceFile, crate::Compiled), u8> {
    let source = read_source(path)?;
    match compile(&source, today::today()) {
        Ok(compiled) => Ok((source, compiled)),
        Err(err) => Err(compile_failed(&source, err, format, color)),
    }
}

/// Reads the blueprint at `path` and compiles it as `build --with-secrets`
/// made the deployable tree (secrets read, upstream inputs from the pinned
/// cache): what `deploy` and `status` compare the host with. Prints why not
/// and returns the exit code.
fn compile_deployable(path: &Path, format: Format, color: bool) -> Result<crate::Compiled, u8> {
    let source = read_source(path)?;
    let dir = blueprint_dir(path);
    let cache = crate::net::fetch::Cache::new(crate::net::fetch::Cache::default_dir());
    let mut upstream =
        crate::build::upstream::Upstream::open(path, cache, true).map_err(|err| {
            eprintln!("error: {err}");
            exit::IO
        })?;
    crate::compile_with(
        &source,
        today::today(),
        crate::SecretSource::Resolve(&dir),
        crate::UpstreamSource::Fetch(&mut upstream),
    )
    .map_err(|err| compile_failed(&source, err, format, color))
}

/// Prints diagnostics in the chosen format (text on stderr, JSON on stdout).
fn show(
    source: &SourceFile,
    diagnostics: Diagnostics,
    format: Format,
    color: bool,
    ok: bool,
    extra: Option<serde_json::Value>,
) {
    let diagnostics: Vec<Diagnostic> = diagnostics.sorted();
    match format {
        Format::Text => {
            if !diagnostics.is_empty() {
                eprint!("{}", report::render_text(source, &diagnostics, color));
            }
        }
        Format::Json => {
            let mut value = serde_json::json!({
                "ok": ok,
                "diagnostics": report::to_json(source, &diagnostics),
            });
            if let (Some(extra), Some(object)) = (extra, value.as_object_mut()) {
                object.insert("manifest".into(), extra);
            }
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(
                stdout,
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
        }
    }
}

fn validate(args: &BlueprintArgs, color: bool) -> u8 {
    let source = match read_source(&args.blueprint) {
        Ok(s) => s,
        Err(code) => return code,
    };
    match compile(&source, today::today()) {
        Ok(compiled) => {
            let failed = args.strict && compiled.warnings.has_warnings();
            show(
                &source,
                compiled.warnings,
                args.format,
                color,
                !failed,
                None,
            );
            if failed {
                exit::INVALID
            } else {
                exit::OK
            }
        }
        Err(err) => compile_failed(&source, err, args.format, color),
    }
}

fn compile_failed(source: &SourceFile, err: CompileError, format: Format, color: bool) -> u8 {
    match err {
        CompileError::Core(waddlec_core::CompileError::Invalid(diagnostics)) => {
            let count = diagnostics.count();
            show(source, diagnostics, format, color, false, None);
            if format == Format::Text {
                eprintln!(
                    "error: {} is invalid ({count} finding{})",
                    source.name,
                    if count == 1 { "" } else { "s" }
                );
            }
            exit::INVALID
        }
        CompileError::Core(core) => {
            eprintln!("{core}");
            exit::INTERNAL
        }
        other => {
            eprintln!("error: {other}");
            other.exit_code()
        }
    }
}

/// Writes a line to stdout; a closed pipe (`waddlec explain | head`) is not
/// an error worth a panic.
fn print_out(text: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

fn schema() -> u8 {
    let schema = schemars::schema_for!(crate::blueprint::Blueprint);
    match serde_json::to_string_pretty(&schema) {
        Ok(json) => {
            print_out(&json);
            exit::OK
        }
        Err(err) => {
            eprintln!("internal error: {err}");
            exit::INTERNAL
        }
    }
}

fn explain(rule: Option<&str>) -> u8 {
    match rule {
        None => {
            for rule in rules::ALL {
                print_out(&format!(
                    "{}  {:<34} {:?}",
                    rule.code, rule.name, rule.severity
                ));
            }
            exit::OK
        }
        Some(query) => match rules::find(query) {
            Some(rule) => {
                print_out(&format!(
                    "{} {} ({:?})\n\n{}",
                    rule.code, rule.name, rule.severity, rule.explanation
                ));
                exit::OK
            }
            None => {
                eprintln!("error: no rule `{query}`; `waddlec explain` lists them");
                exit::USAGE
            }
        },
    }
}
