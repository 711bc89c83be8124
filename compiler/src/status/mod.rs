//! `waddlec status`: the platform's health, layer by layer, as the
//! blueprint (built with its secrets, as `deploy` builds it) expects it.
//! Every check is a [`Check`]; nothing here changes anything.
//!
//! The layers, in order, each in its own module:
//!
//! 1. `host` — the Proxmox API with the pinned certificate, the bridges,
//!    and over ssh the forwards' `WDLC-*` chains (loaded as built, hooked)
//!    and the Proxmox firewall's files as built; for a `[cluster]`
//!    (`cluster`) each node online, its uplink, and the SDN as built and
//!    applied, and the ssh part on every host over its own ssh, each check
//!    naming its node;
//! 2. `vms` — each VM on its blueprint node, running, its guest agent
//!    answering, booted from the image and seed of the current build (its
//!    description's record);
//! 3. `edge` — from this machine, through the public address of the host
//!    that runs the edge VM: each SNI
//!    route answered with a certificate for its name, an unknown name
//!    refused, each TCP forward accepting;
//! 4. `teleport` — `/webapi/ping` through the edge, the version as pinned;
//! 5. `talos` — through a tunnel via the host, as `cluster bootstrap`
//!    reaches the nodes: each node's version, etcd healthy with exactly the
//!    control planes as members;
//! 6. `kubernetes` — through the same tunnel to the API VIP, as a
//!    short-lived admin ([`kube_api`]): the API ready, the blueprint's
//!    nodes Ready, and every Flux Kustomization and HelmRelease,
//!    Certificate, ExternalSecret, the CNPG cluster and SpiceDB the
//!    platform tree has Flux apply, healthy (`kubernetes`).
//!
//! A layer reached through another that is down is reported unreachable,
//! naming the one it is behind (the VMs behind the API, Teleport behind the
//! edge, the cluster behind the tunnel). Every network call is bounded by
//! `Request::call_timeout`, so a run never hangs.

mod cluster;
mod edge;
mod host;
pub mod kubernetes;
mod talos;
mod teleport;
mod vms;

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::checks::{Check, Report};
use crate::deploy::host_setup::{HostFiles, Ssh};
use crate::model::{Model, KUBE_API_PORT, TALOS_API_PORT};
use crate::net::kube_api::KubeApi;
use crate::net::ssh::PinnedHost;
use crate::net::ssh_tunnel::SshTunnel;
use crate::secrets::kube_admin::AdminIdentity;
use crate::secrets::talos::{decode_pem, TalosCredentials};
use crate::secrets::{self, SecretError};
use crate::Compiled;

/// The layers, in the order they are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    Host,
    Vms,
    Edge,
    Teleport,
    Talos,
    Kubernetes,
}

impl Layer {
    pub const ALL: [Layer; 6] = [
        Layer::Host,
        Layer::Vms,
        Layer::Edge,
        Layer::Teleport,
        Layer::Talos,
        Layer::Kubernetes,
    ];

    /// The layer's name in every check it makes.
    pub fn name(self) -> &'static str {
        match self {
            Layer::Host => "host",
            Layer::Vms => "vms",
            Layer::Edge => "edge",
            Layer::Teleport => "teleport",
            Layer::Talos => "talos",
            Layer::Kubernetes => "kubernetes",
        }
    }
}

/// What to check, and how to reach it.
pub struct Request<'a> {
    /// The blueprint built with its secrets (so seed names are the
    /// deployable tree's).
    pub compiled: &'a Compiled,
    /// The blueprint's directory: `file:` references are relative to it.
    pub blueprint_dir: &'a Path,
    /// The API's URL instead of `host.api` (the certificate pin applies).
    pub api: Option<&'a str>,
    /// The API certificate's fingerprint `host init` recorded, if any.
    pub recorded_fingerprint: Option<&'a str>,
    /// How to reach the host over ssh (`root`: its files under a directory,
    /// for tests).
    pub ssh: Ssh,
    /// The layers to check; the rest are left out of the report.
    pub layers: &'a [Layer],
    /// Where the internet reaches the platform, instead of the public
    /// bridge's address (a NAT in front of the host).
    pub public_address: Option<IpAddr>,
    /// A CA (PEM) the edge's certificates may be issued by, besides the
    /// system's roots.
    pub edge_ca: Option<&'a [u8]>,
    /// The longest any one network call may take.
    pub call_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("the Proxmox API token: {0}")]
    Token(SecretError),
    #[error("the Talos secrets, to reach the cluster: {0}")]
    TalosSecrets(SecretError),
    #[error("the cluster's SDN objects of the build: {0}")]
    SdnObjects(String),
}

/// Checks `request.layers` in order; `progress` hears each layer begin.
pub fn run(request: &Request<'_>, progress: &dyn Fn(Layer)) -> Result<Report, StatusError> {
    let model = &request.compiled.model;
    let wants = |layer| request.layers.contains(&layer);
    let mut report = Report::default();

    // The API serves both the host and the VMs layer; a cluster is read
    // with its SDN objects.
    let sdn = match &model.proxmox.sdn {
        Some(_) => Some(cluster::sdn_objects(request.compiled).map_err(StatusError::SdnObjects)?),
        None => None,
    };
    let api = if wants(Layer::Host) || wants(Layer::Vms) {
        let token = secrets::read(
            "host.api_token",
            &model.proxmox.api_token,
            request.blueprint_dir,
        )
        .map_err(StatusError::Token)?;
        let url = request.api.unwrap_or(&model.proxmox.api_url);
        Some(host::reach_api(
            model,
            sdn.as_ref(),
            url,
            request.recorded_fingerprint,
            &token,
            request.call_timeout,
        ))
    } else {
        None
    };
    if let Some((check, reached)) = api.as_ref().filter(|_| wants(Layer::Host)) {
        progress(Layer::Host);
        report.push(check.clone());
        match (&sdn, reached) {
            (Some(objects), Some(reached)) => {
                report.extend(cluster::nodes(model, reached));
                report.extend(cluster::uplinks(model, reached));
                report.extend(cluster::sdn(objects, reached));
            }
            (None, Some(reached)) => {
                if let Some(observed) = reached.nodes.get(&model.host().node) {
                    report.extend(host::bridges(model, observed));
                }
            }
            (_, None) => {}
        }
        if sdn.is_some() {
            report.extend(cluster::over_ssh(
                request.compiled,
                &request.ssh,
                request.call_timeout,
            ));
        } else {
            report.extend(host::over_ssh(
                request.compiled,
                &request.ssh,
                model.host(),
                &HostFiles::of_host(Path::new("")),
                request.call_timeout,
            ));
        }
    }
    if let Some((check, reached)) = api.as_ref().filter(|_| wants(Layer::Vms)) {
        progress(Layer::Vms);
        report.extend(vms::check(request.compiled, reached.as_ref(), check));
    }

    // The edge VM's host holds the public address the internet reaches.
    let edge_host = model
        .edge
        .as_ref()
        .and_then(|edge| model.vm(&edge.vm))
        .map_or(model.host(), |vm| model.host_of(vm));
    let public = request
        .public_address
        .unwrap_or(IpAddr::V4(edge_host.bridges.public.host_address));
    let mut edge_down = None;
    if wants(Layer::Edge) && model.edge.is_some() {
        progress(Layer::Edge);
        let (checks, down) = edge::check(model, public, request.call_timeout);
        report.extend(checks);
        edge_down = down;
    }
    if wants(Layer::Teleport) && model.teleport.is_some() {
        progress(Layer::Teleport);
        report.extend(teleport::check(
            model,
            public,
            request.edge_ca,
            request.call_timeout,
            edge_down.as_deref(),
        ));
    }

    let cluster_layers = wants(Layer::Talos) || wants(Layer::Kubernetes);
    if let (true, Some(cluster)) = (cluster_layers, &model.talos) {
        let credentials = secrets::load_talos(cluster, request.blueprint_dir)
            .map_err(StatusError::TalosSecrets)?;
        let nodes: Vec<(String, std::net::Ipv4Addr)> = model
            .talos_nodes()
            .map(|node| (node.name().to_string(), node.ip()))
            .collect();
        let mut forwards: Vec<(String, u16)> = nodes
            .iter()
            .map(|(_, ip)| (ip.to_string(), TALOS_API_PORT))
            .collect();
        forwards.push((cluster.api_vip.to_string(), KUBE_API_PORT));
        let tunnel = open_tunnel(&request.ssh, &forwards);
        if wants(Layer::Talos) {
            progress(Layer::Talos);
            report.extend(talos::check(
                model,
                &credentials,
                tunnel.as_ref().map(|t| (t, 0)),
                request.call_timeout,
            ));
        }
        if wants(Layer::Kubernetes) {
            progress(Layer::Kubernetes);
            report.extend(kubernetes(
                model,
                &credentials,
                tunnel.as_ref().map(|t| t.local_addr(nodes.len())),
                request.call_timeout,
            ));
        }
    }
    Ok(report)
}

/// One tunnel through the host to every Talos node's API and the API VIP,
/// or why there is none (the talos and kubernetes layers are behind it).
fn open_tunnel(ssh: &Ssh, forwards: &[(String, u16)]) -> Result<SshTunnel, String> {
    let pinned = PinnedHost::new(ssh.host_key.as_ref()).map_err(|e| e.to_string())?;
    // Through Teleport the proxy speaks for the host: nothing pinned.
    let known = pinned
        .as_ref()
        .filter(|_| ssh.teleport.is_none())
        .map(PinnedHost::known);
    SshTunnel::open(
        &ssh.target,
        ssh.config.as_deref(),
        known.as_ref(),
        ssh.teleport.as_ref(),
        forwards,
    )
    .map_err(|e| e.to_string())
}

/// The kubernetes layer: the API reached as `cluster bootstrap` reaches it,
/// then `kubernetes::check` (the API, the blueprint's nodes, and what the
/// platform tree has Flux apply).
fn kubernetes(
    model: &Model,
    credentials: &TalosCredentials,
    through: Result<SocketAddr, &String>,
    timeout: Duration,
) -> Vec<Check> {
    const LAYER: &str = "kubernetes";
    let name = "api";
    let through = match through {
        Ok(addr) => addr,
        Err(why) => {
            return vec![Check::unreachable(
                LAYER,
                name,
                format!("behind the tunnel through the Proxmox host, which did not open: {why}"),
                "make sure `ssh` to host.ssh logs in without a prompt (see the host layer)",
            )]
        }
    };
    match kube_api(credentials, &format!("https://{through}"), timeout) {
        Ok(api) => kubernetes::check(&api, model),
        Err(why) => vec![Check::failed(
            LAYER,
            name,
            why,
            "check the Talos bundle with `waddlec secrets init` (it says what is missing)",
        )],
    }
}

/// A client of the Kubernetes API at `base` as a cluster admin whose
/// certificate, signed locally by the bundle's Kubernetes CA, lasts ten
/// minutes: what `cluster bootstrap` uses, for no longer than a status run.
/// Each call is bounded by `timeout`.
pub fn kube_api(
    credentials: &TalosCredentials,
    base: &str,
    timeout: Duration,
) -> Result<KubeApi, String> {
    let identity = AdminIdentity::issue(
        &credentials.bundle,
        time::OffsetDateTime::now_utc(),
        time::Duration::minutes(10),
    )
    .map_err(|e| e.to_string())?;
    let ca = decode_pem(&credentials.bundle.certs.k8s.crt)
        .ok_or("the Talos bundle's certs.k8s.crt is not base64 of a PEM certificate")?;
    KubeApi::with_timeout(
        base,
        &pem::encode(&ca),
        &identity.certificate,
        &identity.key,
        timeout,
    )
    .map_err(|e| e.to_string())
}
