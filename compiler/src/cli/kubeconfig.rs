//! `waddlec kubeconfig` and `waddlec talosconfig`: the operator's client
//! configs for the cluster, from the Talos bundle, with no call to the
//! cluster. The kubeconfig is a short-lived cluster-admin one signed locally
//! with the cluster's Kubernetes CA; the talosconfig carries the talosctl
//! admin identity, with a context through Teleport's `tsh proxy app` tunnel.
//! Either is written as a file of its own (0600), or with `--merge` merged
//! into the operator's standard file (`client_config`): the environment
//! decides which, and only the CLI reads it.

use std::path::{Path, PathBuf};

use clap::Args;
use time::OffsetDateTime;

use super::{blueprint_dir, exit};
use crate::exit::Code as _;
use crate::render::talos::talosconfig::{self, ClientContexts};
use crate::secrets;
use crate::secrets::client_config::{merge_into, Kind, Merged};
use crate::secrets::kube_admin::{kubeconfig, parse_ttl};
use crate::secrets::Secret;

#[derive(Args)]
pub struct KubeconfigArgs {
    /// The blueprint whose `[talos]` cluster to reach.
    #[arg(default_value = "blueprints/waddle.toml")]
    blueprint: PathBuf,
    /// How long the client certificate is valid (`30m`, `1h`, at most `7d`).
    #[arg(long, default_value = "1h", value_parser = parse_ttl)]
    ttl: time::Duration,
    /// The API server URL. Default: `https://<api_vip>:6443`; through a local
    /// tunnel, `https://127.0.0.1:6443` (in the API server's certSANs).
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// Where to write it (mode 0600, replacing an older one). The default
    /// sits with the other secrets, outside git.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "secrets/kubeconfig",
        conflicts_with = "merge"
    )]
    out: PathBuf,
    /// Merge it into your kubeconfig instead ($KUBECONFIG's first file, else
    /// ~/.kube/config): only waddlec's own cluster, user and context
    /// (`<cluster>-waddlec`, `<cluster>-waddlec-admin`) are replaced, and its
    /// context becomes the current one.
    #[arg(long)]
    merge: bool,
}

#[derive(Args)]
pub struct TalosconfigArgs {
    /// The blueprint whose `[talos]` cluster to reach.
    #[arg(default_value = "blueprints/waddle.toml")]
    blueprint: PathBuf,
    /// Where to write it (mode 0600, replacing an older one).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "secrets/talosconfig",
        conflicts_with = "merge"
    )]
    out: PathBuf,
    /// Merge it into your talosconfig instead ($TALOSCONFIG, else
    /// ~/.talos/config): only waddlec's own contexts (`<cluster>-waddlec`,
    /// `<cluster>-waddlec-teleport`) are replaced, and the current context
    /// becomes waddlec's.
    #[arg(long)]
    merge: bool,
}

pub fn run(args: &KubeconfigArgs) -> u8 {
    let (source, compiled) =
        match super::compile_blueprint(&args.blueprint, super::Format::Text, false) {
            Ok(compiled) => compiled,
            Err(code) => return code,
        };
    let Some(cluster) = &compiled.model.talos else {
        eprintln!("error: {} has no [talos] cluster", source.name);
        return exit::USAGE;
    };
    let server = args.server.clone().unwrap_or_else(|| cluster.api_url());
    let config =
        secrets::load_bundle(cluster, &blueprint_dir(&args.blueprint)).and_then(|bundle| {
            kubeconfig(
                &bundle,
                &cluster.name,
                &server,
                OffsetDateTime::now_utc(),
                args.ttl,
            )
        });
    let config = match config {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return err.exit_code();
        }
    };
    let what = format!("cluster-admin on {server} for {}", args.ttl);
    if args.merge {
        let Some(path) = standard_file("KUBECONFIG", ".kube/config") else {
            return no_home("KUBECONFIG");
        };
        return merged(merge_into(&path, Kind::Kubeconfig, &config), &what, None);
    }
    written(&args.out, &config, &what)
}

pub fn run_talosconfig(args: &TalosconfigArgs) -> u8 {
    let (source, compiled) =
        match super::compile_blueprint(&args.blueprint, super::Format::Text, false) {
            Ok(compiled) => compiled,
            Err(code) => return code,
        };
    let model = &compiled.model;
    let Some(cluster) = &model.talos else {
        eprintln!("error: {} has no [talos] cluster", source.name);
        return exit::USAGE;
    };
    let config = match secrets::load_talos(cluster, &blueprint_dir(&args.blueprint)) {
        Ok(credentials) => talosconfig::client(model, cluster, &credentials),
        Err(err) => {
            eprintln!("error: {err}");
            return err.exit_code();
        }
    };
    let config = match config {
        Ok(config) => Secret::new(config),
        Err(err) => {
            eprintln!("error: internal error: the talosconfig does not serialise: {err}");
            return exit::INTERNAL;
        }
    };
    let contexts = ClientContexts::of(model, cluster);
    let what = format!("talosctl admin of {}", cluster.name);
    let tunnel = contexts.teleport.as_ref().map(|teleport| {
        format!(
            "context {} reaches the cluster through `tsh proxy app {} --port {}` (run it first)",
            teleport.name,
            teleport.app,
            talosconfig::TUNNEL_PORT
        )
    });
    if args.merge {
        let Some(path) = standard_file("TALOSCONFIG", ".talos/config") else {
            return no_home("TALOSCONFIG");
        };
        return merged(
            merge_into(&path, Kind::Talosconfig, &config),
            &what,
            tunnel.as_deref(),
        );
    }
    let code = written(&args.out, &config, &what);
    if let (exit::OK, Some(tunnel)) = (code, tunnel) {
        eprintln!("{tunnel}");
    }
    code
}

/// `$VARIABLE`'s first file (kubectl reads a `:`-separated list and writes
/// new entries to its first file), else `~/<home_path>`.
fn standard_file(variable: &str, home_path: &str) -> Option<PathBuf> {
    let listed = std::env::var_os(variable)
        .and_then(|value| std::env::split_paths(&value).find(|path| !path.as_os_str().is_empty()));
    listed.or_else(|| {
        std::env::var_os("HOME")
            .filter(|home| !home.is_empty())
            .map(|home| Path::new(&home).join(home_path))
    })
}

fn no_home(variable: &str) -> u8 {
    eprintln!("error: --merge needs ${variable} or $HOME to find your file; set one, or write a file with --out");
    exit::USAGE
}

fn written(out: &Path, config: &Secret, what: &str) -> u8 {
    match secrets::files::replace(out, config.expose()) {
        Ok(()) => {
            eprintln!("wrote {} (0600): {what}", out.display());
            exit::OK
        }
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}

fn merged(
    result: Result<Merged, secrets::client_config::MergeError>,
    what: &str,
    tunnel: Option<&str>,
) -> u8 {
    match result {
        Ok(merged) => {
            for entry in &merged.entries {
                eprintln!("  set  {entry}");
            }
            let previous = match merged.previous.as_deref() {
                Some(previous) if !previous.is_empty() && previous != merged.current => {
                    format!(" (was {previous})")
                }
                _ => String::new(),
            };
            eprintln!(
                "merged into {} (0600): {what}; current context {}{previous}",
                merged.path.display(),
                merged.current
            );
            if let Some(tunnel) = tunnel {
                eprintln!("{tunnel}");
            }
            exit::OK
        }
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}
