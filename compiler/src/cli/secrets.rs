//! `waddlec secrets init`: the arguments and the report around
//! `secrets::init`, which makes every secret waddlec owns that is missing.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{blueprint_dir, exit};
use crate::exit::Code as _;
use crate::secrets::init::{self, Created};

#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Create the secrets waddlec owns that are missing: the Talos secrets
    /// bundle the blueprint's `[talos] secrets` names (talosctl's
    /// `secrets.yaml` format) with the talosctl admin identity beside it
    /// (`NAME.admin.yaml`), and an SSH host key for every Debian VM that has
    /// none (`NAME.ssh-host-keys.yaml` beside the bundle). They go where
    /// `secrets` says: 0600 files (`file:`), files encrypted to the
    /// `[talos.age]` recipients (`age:`), or 1Password Document items
    /// (`op://VAULT/ITEM/FILE`; the others are `ITEM-admin` and
    /// `ITEM-ssh-host-keys`), written through `op` from its stdin.
    ///
    /// Run it once per cluster, and again after adding a VM. For a cluster
    /// that already runs, import the bundle it was built with (`--import`):
    /// a new bundle would lock you out of it. Never replaces a secret; a run
    /// with nothing to create refuses (exit 4).
    Init(InitArgs),
}

#[derive(Args)]
pub struct InitArgs {
    /// The blueprint whose `[talos] secrets` says where the secrets go.
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
    let (_, compiled) = match super::compile_blueprint(&args.blueprint, super::Format::Text, false)
    {
        Ok(compiled) => compiled,
        Err(code) => return code,
    };
    let base = blueprint_dir(&args.blueprint);
    eprintln!(
        "creating the missing secrets (a new Talos bundle's RSA-4096 key takes a few seconds)…"
    );
    match init::run(&compiled.model, &base, args.import.as_deref()) {
        Ok(created) => {
            report(&created);
            exit::OK
        }
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}

fn report(created: &Created) {
    if let Some((bundle, admin, imported)) = &created.talos {
        eprintln!(
            "{} the Talos secrets bundle {bundle} and the talosctl admin identity {admin}.\n\
             Without the bundle nobody can build configs this cluster accepts: keep a backup\n\
             of it. A `file:` store is never committed; an `age:` one may be (it is encrypted).",
            if *imported { "imported" } else { "created" },
        );
    }
    if let Some((place, vms)) = &created.host_keys {
        eprintln!(
            "created SSH host keys for {} in {place}. Keep them with the bundle; never commit them unencrypted.",
            vms.join(", "),
        );
    }
}
