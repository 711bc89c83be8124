//! `waddlec kubeconfig`: a short-lived cluster-admin kubeconfig signed
//! locally with the cluster's Kubernetes CA (from the Talos bundle), written
//! 0600. No call to the cluster.

use std::path::PathBuf;

use clap::Args;
use time::OffsetDateTime;

use super::{blueprint_dir, exit};
use crate::exit::Code as _;
use crate::secrets;
use crate::secrets::kube_admin::{kubeconfig, parse_ttl};

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
    #[arg(long, value_name = "FILE", default_value = "secrets/kubeconfig")]
    out: PathBuf,
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
    let result = secrets::load_bundle(cluster, &blueprint_dir(&args.blueprint))
        .and_then(|bundle| {
            kubeconfig(
                &bundle,
                &cluster.name,
                &server,
                OffsetDateTime::now_utc(),
                args.ttl,
            )
        })
        .and_then(|config| secrets::files::replace(&args.out, config.expose()));
    match result {
        Ok(()) => {
            eprintln!(
                "wrote {} (0600): cluster-admin on {server} for {}",
                args.out.display(),
                args.ttl
            );
            exit::OK
        }
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    }
}
