//! `waddlec secrets init`: creates the Talos secrets bundle once (or imports
//! a running cluster's), and the talosctl admin identity beside it. Never
//! overwrites either: a second run refuses.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use time::OffsetDateTime;

use super::{blueprint_dir, exit, read_source, today};
use crate::exit::Code as _;
use crate::secrets::{self, files, talos_admin, talos_bundle, SecretError};

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Create the Talos secrets bundle the blueprint's `[talos] secrets`
    /// names (talosctl's `secrets.yaml` format, mode 0600) and the talosctl
    /// admin identity beside it (`NAME.admin.yaml`).
    ///
    /// Run it once per cluster. For a cluster that already runs, import the
    /// bundle it was built with (`--import`): a new bundle would lock you out
    /// of it. Refuses to overwrite either file.
    Init(InitArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// The blueprint whose `[talos] secrets` says where the bundle goes.
    #[arg(default_value = "blueprints/waddle.toml")]
    blueprint: PathBuf,
    /// Import this existing bundle (`talosctl gen secrets` output, or the
    /// one a running cluster was built with) instead of generating one.
    #[arg(long, value_name = "SECRETS_YAML")]
    import: Option<PathBuf>,
}

pub fn run(command: SecretsCommand) -> u8 {
    match command {
        SecretsCommand::Init(args) => init(&args),
    }
}

fn init(args: &InitArgs) -> u8 {
    let source = match read_source(&args.blueprint) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let compiled = match crate::compile(&source, today::today()) {
        Ok(c) => c,
        Err(err) => {
            return super::compile_failed(&source, err, super::Format::Text, false);
        }
    };
    let Some(cluster) = &compiled.model.talos else {
        eprintln!(
            "error: {} has no [talos] table: there is no Talos secret to create",
            source.name
        );
        return exit::USAGE;
    };
    let result = secrets::file_path(&cluster.secrets, &blueprint_dir(&args.blueprint))
        .and_then(|path| create(&path, args.import.as_deref()).map(|admin| (path, admin)));
    match result {
        Ok((path, admin)) => {
            let verb = if args.import.is_some() {
                "imported"
            } else {
                "created"
            };
            eprintln!(
                "{verb} the Talos secrets bundle {} and the talosctl admin identity {} (both 0600).\n\
                 Back them up now (e.g. `op document create {}`): without the bundle nobody can\n\
                 build configs this cluster accepts. Never commit them.",
                path.display(),
                admin.display(),
                path.display()
            );
            exit::OK
        }
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}

/// Writes the bundle (new or imported) and the admin identity; returns the
/// identity's path. Checks both paths are free before writing either.
fn create(
    path: &std::path::Path,
    import: Option<&std::path::Path>,
) -> Result<PathBuf, SecretError> {
    let admin_path = secrets::talos::TalosAdmin::path_beside(path);
    for existing in [path, admin_path.as_path()] {
        if existing.exists() {
            return Err(SecretError::Exists(existing.display().to_string()));
        }
    }
    let now = OffsetDateTime::now_utc();
    let bundle = match import {
        Some(from) => talos_bundle::load(from)?,
        None => {
            eprintln!("generating the Talos secrets bundle (an RSA-4096 key takes a few seconds)…");
            talos_bundle::generate(now)?
        }
    };
    let admin = talos_admin::issue(&bundle, now)?;
    files::create_new(path, &talos_bundle::to_yaml(&bundle)?)?;
    files::create_new(&admin_path, &talos_admin::to_yaml(&admin)?)?;
    Ok(admin_path)
}
