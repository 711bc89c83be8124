//! `waddlec build`: the arguments, the terminal (diagnostics, the diff of a
//! stale tree, a progress bar while baking) and the exit code around
//! `build::workflow`, which does the work.

use std::path::PathBuf;

use clap::Args;

use super::progress::{self, Bytes};
use super::{compile_failed, discover, read_source, show, today, BlueprintArgs, Format};
use crate::bake::Upstreams;
use crate::build::workflow::{self, BuildError, Built, Outcome, Request, Ui};
use crate::emit::Staleness;
use crate::exit::{self, Code as _};
use crate::net::fetch::Cache;
use crate::source::SourceFile;

#[derive(Args)]
pub struct BuildArgs {
    #[command(flatten)]
    common: BlueprintArgs,
    /// Output directory. Default: `out` (the review tree), or `dist` with
    /// --with-secrets.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Read every secret the blueprint references (Talos bundle, `op://`,
    /// `env:`, `file:`) and write the deployable tree with real values.
    /// Without it, secrets are placeholders and no secret is read.
    #[arg(long)]
    with_secrets: bool,
    /// With --with-secrets: skip the disk images (fetching, baking) and
    /// build everything else.
    #[arg(long)]
    no_images: bool,
    /// With --with-secrets: upload every image the artifact store
    /// (`[artifacts]`) lacks, after baking it. CI runs this; other
    /// builds only pull from the store.
    #[arg(long)]
    push: bool,
    /// Fetch only what the lock file (`<blueprint>.lock`) pins; fail on
    /// anything new. CI runs this.
    #[arg(long)]
    locked: bool,
    /// The Talos Image Factory images are fetched from.
    #[arg(long, value_name = "URL", default_value_t = crate::net::factory::default_url())]
    factory: String,
    /// Where Teleport release tarballs are fetched from.
    #[arg(long, value_name = "URL", default_value = crate::bake::teleport_release::CDN)]
    teleport_cdn: String,
    /// The Debian snapshot archive (serving `archive/debian/<timestamp>/`).
    #[arg(long, value_name = "URL", default_value = crate::bake::debian_image::SNAPSHOTS)]
    debian_snapshots: String,
    /// Write nothing; exit 3 with a diff if the output directory is not exactly
    /// what this build would write.
    #[arg(long)]
    check: bool,
}

/// The progress bar of the long steps (fetching, baking); hidden when
/// stderr is not a terminal.
struct Terminal {
    bar: Bytes,
}

impl Ui for Terminal {
    fn progress(&self, what: &str, done: u64, total: Option<u64>) {
        self.bar.step(what, done, total);
    }

    fn progress_done(&self) {
        self.bar.finish();
    }
}

pub fn run(args: &BuildArgs, color: bool) -> u8 {
    let common = &args.common;
    let source = match read_source(&common.blueprint) {
        Ok(source) => source,
        Err(code) => return code,
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| discover::rooted(if args.with_secrets { "dist" } else { "out" }));
    let upstreams = Upstreams {
        factory: args.factory.clone(),
        teleport_cdn: args.teleport_cdn.clone(),
        debian_snapshots: args.debian_snapshots.clone(),
    };
    let cache_dir = Cache::default_dir();
    let request = Request {
        source: &source,
        blueprint: &common.blueprint,
        out: &out,
        with_secrets: args.with_secrets,
        images: !args.no_images,
        push: args.push,
        locked: args.locked,
        upstreams: &upstreams,
        cache_dir: &cache_dir,
        check: args.check,
        strict: common.strict,
        today: today::today(),
    };
    let terminal = Terminal {
        bar: progress::bytes("baking images"),
    };
    match workflow::run(&request, &terminal) {
        Ok(built) => report(&source, &out, built, common.format, color),
        Err(BuildError::Compile(err)) => compile_failed(&source, err, common.format, color),
        Err(BuildError::Strict(warnings)) => {
            show(&source, warnings, common.format, color, false, None);
            eprintln!("error: warnings are fatal under --strict");
            exit::INVALID
        }
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}

/// Prints how the build ended and returns its exit code.
fn report(
    source: &SourceFile,
    out: &std::path::Path,
    built: Built,
    format: Format,
    color: bool,
) -> u8 {
    let ok = !matches!(built.outcome, Outcome::Stale(_));
    show(source, built.warnings, format, color, ok, built.manifest);
    match &built.outcome {
        Outcome::Written { files } => {
            if format == Format::Text {
                eprintln!("wrote {files} files to {}", out.display());
            }
        }
        Outcome::Fresh => eprintln!("{} is up to date with {}", out.display(), source.name),
        Outcome::Stale(staleness) => print_staleness(source, out, staleness),
    }
    built.outcome.exit_code()
}

fn print_staleness(source: &SourceFile, out: &std::path::Path, staleness: &Staleness) {
    for (_, diff) in &staleness.changed {
        eprint!("{diff}");
    }
    for path in &staleness.missing {
        eprintln!("missing: {path}");
    }
    for path in &staleness.extra {
        eprintln!("not produced by this blueprint: {path}");
    }
    eprintln!(
        "error: {} is out of date ({} changed, {} missing, {} extra); run `waddlec build {}` and commit the result",
        out.display(),
        staleness.changed.len(),
        staleness.missing.len(),
        staleness.extra.len(),
        source.name
    );
}
