//! `waddlec cluster bootstrap`: from booted Talos nodes to a working
//! cluster, in the order the cluster needs it, each step bounded in time
//! and stopped with a message naming what it waited for:
//!
//! 1. a tunnel through the Proxmox host (the nodes have no public address)
//!    to the first control plane's Talos API and the API VIP; in a
//!    `[cluster]` through the host that runs that control plane
//!    ([`tunnel_host`]);
//! 2. etcd bootstrapped on the first control plane (`Model::bootstrap_node`,
//!    `net::talos_api`; a node bootstrapped before is success);
//! 3. the API server ready on the VIP (`/readyz`), as a short-lived admin;
//! 4. the bootstrap Secrets applied (Flux deploy key, 1Password Connect),
//!    replaced in place on a re-run;
//! 5. Teleport's kubeconfig (its ServiceAccount token) installed on the
//!    Teleport VM, which is restarted to pick it up;
//! 6. every node, workers too, Ready (which needs Cilium, installed by the inline
//!    manifests' Job).
//!
//! Every step is idempotent, so a re-run after a failure continues.

mod teleport;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::model::{Host, Model, KUBE_API_PORT, TALOS_API_PORT};
use crate::net::kube_api::{KubeApi, KubeError};
use crate::net::ssh::PinnedHost;
use crate::net::ssh_tunnel::{SshTunnel, TunnelError};
use crate::net::talos_api::{self, BootstrapOutcome, TalosApiError, TalosEndpoint, TalosIdentity};
use crate::render::cluster::{bootstrap_secrets, teleport_access};
use crate::secrets::kube_admin::AdminIdentity;
use crate::secrets::talos::{decode_pem, TalosCredentials};
use crate::secrets::SecretError;

pub use teleport::TeleportSsh;

const POLL: Duration = Duration::from_secs(2);

/// The steps, in order, for progress and errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Tunnel,
    Etcd,
    ApiServer,
    Secrets,
    TeleportAccess,
    Nodes,
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Step::Tunnel => "tunnel through the Proxmox host",
            Step::Etcd => "etcd bootstrap",
            Step::ApiServer => "Kubernetes API server",
            Step::Secrets => "bootstrap secrets",
            Step::TeleportAccess => "Teleport's cluster access",
            Step::Nodes => "nodes Ready",
        })
    }
}

/// The Proxmox host the bootstrap reaches the cluster through (its tunnel,
/// and the jump to the Teleport VM): the host that runs the bootstrap node,
/// the first control plane. A lone `[host]` runs it. In a `[cluster]` each
/// host has its own address on every VNet, one L2 segment across the hosts,
/// so any host reaches every node, the API VIP and the Teleport VM; the
/// bootstrap node's host is the one the bootstrap needs up anyway (etcd
/// starts on that node), so choosing it adds no other host the bootstrap
/// depends on, and the Talos API's traffic stays on that host. `None`
/// only without a Talos cluster.
pub fn tunnel_host(model: &Model) -> Option<&Host> {
    model.bootstrap_node().map(|node| model.host_of(node.vm))
}

/// How to reach things and how long to wait.
pub struct Settings {
    /// The node of the host the tunnel goes through ([`tunnel_host`]), for
    /// progress.
    pub host_node: String,
    /// That host's `ssh`, or an override (through Teleport:
    /// `login@node.CLUSTER`).
    pub host_ssh: String,
    /// `host.ssh = "teleport:…"` without an override: the tunnel goes
    /// through Teleport's proxy.
    pub host_teleport: Option<crate::net::ssh::TeleportProxy>,
    pub ssh_config: Option<PathBuf>,
    /// That host's pinned key `(node, key)`, from its own host record;
    /// without one, the operator's own known_hosts must know the host.
    pub host_key: Option<(String, String)>,
    /// Where Teleport's kubeconfig goes, if the blueprint gives Teleport
    /// cluster access.
    pub teleport: Option<TeleportSsh>,
    /// The longest any one step may take.
    pub wait: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("{step}: {source}")]
    Tunnel {
        step: Step,
        #[source]
        source: TunnelError,
    },
    #[error("{step}: {source}")]
    Talos {
        step: Step,
        #[source]
        source: TalosApiError,
    },
    #[error("{step}: {source}")]
    Kube {
        step: Step,
        #[source]
        source: KubeError,
    },
    #[error("{step}: not done after {waited:?}; last: {last}. {hint}")]
    Timeout {
        step: Step,
        waited: Duration,
        last: String,
        hint: &'static str,
    },
    #[error("{step}: {source}")]
    Secret {
        step: Step,
        #[source]
        source: SecretError,
    },
    #[error("{step}: {problem}")]
    Teleport { step: Step, problem: String },
    #[error("the blueprint has no [talos] cluster to bootstrap")]
    NoCluster,
}

/// What a bootstrap did, for the report.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    /// False if etcd had been bootstrapped before.
    pub etcd_bootstrapped: bool,
    pub secrets_applied: Vec<String>,
    pub teleport_kubeconfig: Option<String>,
    pub nodes_ready: Vec<String>,
}

pub fn run(
    model: &Model,
    credentials: &TalosCredentials,
    values: &bootstrap_secrets::Values,
    settings: &Settings,
    progress: &dyn Fn(Step, &str),
) -> Result<Report, BootstrapError> {
    let talos = model.talos.as_ref().ok_or(BootstrapError::NoCluster)?;
    // etcd starts on the first control plane; workers never run it.
    let first = model.bootstrap_node().ok_or(BootstrapError::NoCluster)?;
    let first_address = first.ip();
    let mut report = Report::default();

    progress(
        Step::Tunnel,
        &format!("via {} ({})", settings.host_ssh, settings.host_node),
    );
    let tunnel_error = |source| BootstrapError::Tunnel {
        step: Step::Tunnel,
        source,
    };
    let pinned = PinnedHost::new(settings.host_key.as_ref())
        .map_err(|e| tunnel_error(TunnelError::Spawn(e)))?;
    let known_host = pinned
        .as_ref()
        .filter(|_| settings.host_teleport.is_none())
        .map(PinnedHost::known);
    let tunnel = SshTunnel::open(
        &settings.host_ssh,
        settings.ssh_config.as_deref(),
        known_host.as_ref(),
        settings.host_teleport.as_ref(),
        &[
            (first_address.to_string(), TALOS_API_PORT),
            (talos.api_vip.to_string(), KUBE_API_PORT),
        ],
    )
    .map_err(tunnel_error)?;

    progress(Step::Etcd, first.name());
    let identity =
        TalosIdentity::from_credentials(credentials).map_err(|source| BootstrapError::Talos {
            step: Step::Etcd,
            source,
        })?;
    let outcome = talos_api::bootstrap(
        &TalosEndpoint {
            connect: tunnel.local_addr(0),
            server_name: first_address.to_string(),
        },
        &identity,
        settings.wait,
    )
    .map_err(|source| BootstrapError::Talos {
        step: Step::Etcd,
        source,
    })?;
    report.etcd_bootstrapped = outcome == BootstrapOutcome::Bootstrapped;

    // Through the tunnel the API is 127.0.0.1, which the API server's
    // certificate names (certSANs).
    let kube = kube_client(
        credentials,
        &format!("https://{}", tunnel.local_addr(1)),
        settings.wait,
    )?;
    progress(
        Step::ApiServer,
        &format!("{}:{KUBE_API_PORT}", talos.api_vip),
    );
    wait_for(
        Step::ApiServer,
        settings.wait,
        "The control plane starts once etcd runs; `talosctl logs kube-apiserver` on a node (through Teleport's talos apps) shows why it does not.",
        || match kube.ready() {
            Ok(true) => Ok(()),
            Ok(false) => Err("/readyz is not ok yet".into()),
            Err(e) => Err(e.to_string()),
        },
    )?;

    progress(Step::Secrets, "");
    for apply in bootstrap_secrets::objects(model, values) {
        kube.apply(&apply.path, &apply.what, &apply.body)
            .map_err(|source| BootstrapError::Kube {
                step: Step::Secrets,
                source,
            })?;
        progress(Step::Secrets, &apply.what);
        report.secrets_applied.push(apply.what);
    }

    if let (Some(target), Some(kubernetes)) = (
        &settings.teleport,
        model.teleport.as_ref().and_then(|t| t.kubernetes.as_ref()),
    ) {
        progress(Step::TeleportAccess, &kubernetes.kubeconfig);
        let token = wait_for(
            Step::TeleportAccess,
            settings.wait,
            "Kubernetes fills a ServiceAccount token Secret from kube-controller-manager; check that it runs.",
            || match kube.secret_key(
                teleport_access::NAMESPACE,
                teleport_access::TOKEN_SECRET,
                "token",
            ) {
                Ok(Some(token)) => Ok(token),
                Ok(None) => Err(format!(
                    "secret {}/{} has no token yet",
                    teleport_access::NAMESPACE,
                    teleport_access::TOKEN_SECRET
                )),
                Err(e) => Err(e.to_string()),
            },
        )?;
        let config =
            teleport_access::kubeconfig(model, credentials.bundle.certs.k8s.crt.expose(), &token)
                .expect("a Talos cluster")
                .map_err(|e| BootstrapError::Teleport {
                    step: Step::TeleportAccess,
                    problem: e.to_string(),
                })?;
        teleport::install(
            target,
            settings.ssh_config.as_deref(),
            &kubernetes.kubeconfig,
            &config,
        )
        .map_err(|problem| BootstrapError::Teleport {
            step: Step::TeleportAccess,
            problem,
        })?;
        report.teleport_kubeconfig = Some(kubernetes.kubeconfig.to_string());
    }

    let expected: Vec<String> = model.talos_nodes().map(|n| n.name().to_string()).collect();
    progress(Step::Nodes, &expected.join(", "));
    report.nodes_ready = wait_for(
        Step::Nodes,
        settings.wait,
        "Nodes turn Ready once Cilium runs: see the `cilium-install` Job in kube-system (`kubectl -n kube-system logs job/cilium-install`).",
        || {
            let nodes = kube.nodes().map_err(|e| e.to_string())?;
            let waiting: Vec<String> = expected
                .iter()
                .filter_map(|name| match nodes.iter().find(|n| &n.name == name) {
                    Some(node) if node.ready => None,
                    Some(_) => Some(format!("{name} NotReady")),
                    None => Some(format!("{name} not registered")),
                })
                .collect();
            if waiting.is_empty() {
                Ok(expected.clone())
            } else {
                Err(waiting.join(", "))
            }
        },
    )?;
    Ok(report)
}

/// A client of the API through `base`, as a cluster admin for as long as
/// the bootstrap may take.
fn kube_client(
    credentials: &TalosCredentials,
    base: &str,
    wait: Duration,
) -> Result<KubeApi, BootstrapError> {
    let secret_error = |source| BootstrapError::Secret {
        step: Step::ApiServer,
        source,
    };
    // Every step may take `wait`; the certificate outlives them all.
    let ttl = time::Duration::try_from(wait * 8).unwrap_or(time::Duration::hours(2));
    let identity = AdminIdentity::issue(&credentials.bundle, time::OffsetDateTime::now_utc(), ttl)
        .map_err(secret_error)?;
    let ca = decode_pem(&credentials.bundle.certs.k8s.crt).ok_or_else(|| {
        secret_error(SecretError::InvalidBundle {
            path: "the Talos bundle".into(),
            problem: "certs.k8s.crt is not base64 of a PEM certificate".into(),
        })
    })?;
    KubeApi::new(
        base,
        &pem::encode(&ca),
        &identity.certificate,
        &identity.key,
    )
    .map_err(|source| BootstrapError::Kube {
        step: Step::ApiServer,
        source,
    })
}

/// Polls `check` every few seconds until it succeeds, for at most `wait`.
/// `check` returns the result, or what it is still waiting for.
fn wait_for<T>(
    step: Step,
    wait: Duration,
    hint: &'static str,
    mut check: impl FnMut() -> Result<T, String>,
) -> Result<T, BootstrapError> {
    let start = Instant::now();
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(last) if start.elapsed() + POLL > wait => {
                return Err(BootstrapError::Timeout {
                    step,
                    waited: start.elapsed(),
                    last,
                    hint,
                })
            }
            Err(last) => tracing::debug!(%step, %last, "waiting"),
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_support::{cluster, model};

    #[test]
    fn the_tunnel_goes_through_the_host_of_the_first_control_plane() {
        // Spread: cp-1 on pve1, the first host.
        let spread = cluster(|text| text.to_string());
        assert_eq!(spread.bootstrap_node().unwrap().name(), "cp-1");
        assert_eq!(tunnel_host(&spread).unwrap().node, "pve1");
        // cp-1 placed on pve2: the tunnel follows it, not the first host.
        let moved = cluster(|text| {
            text.replace(
                "name = \"cp-1\"\naddress = \"10.30.1.10\"",
                "name = \"cp-1\"\naddress = \"10.30.1.10\"\nhost = \"pve2\"",
            )
        });
        assert_eq!(moved.bootstrap_node().unwrap().name(), "cp-1");
        assert_eq!(tunnel_host(&moved).unwrap().node, "pve2");
        assert_eq!(moved.host().node, "pve1");
    }

    #[test]
    fn a_lone_host_is_its_own_tunnel() {
        let lone = model(
            "waddle.toml",
            include_str!("../../../blueprints/waddle.toml").to_string(),
        );
        assert!(lone.proxmox.single_host().is_some());
        assert_eq!(tunnel_host(&lone).unwrap().node, lone.host().node);
    }
}
