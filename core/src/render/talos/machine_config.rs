//! Talos machine configs, one per node, in the multi-document form of Talos
//! 1.12: the `v1alpha1` document (machine and cluster), then
//! `HostnameConfig`, `LinkConfig`, `ResolverConfig` and, on control planes
//! only, `Layer2VIPConfig`. Only keys the Talos 1.12 JSON schema knows are
//! emitted (the deprecated `machine.network.*`, `persist`,
//! `features.rbac`… are not), so every document validates against it.
//!
//! The v1alpha1 document follows what `talosctl gen config` v1.12.4
//! produces for the node's `machine.type` (`generate/init.go` for a
//! control plane, `generate/worker.go` for a worker), with the versions
//! passed explicitly (1.12.4 defaults to Kubernetes 1.35.0) and these
//! differences for this platform:
//! - `cluster.network.cni.name: none` and `cluster.proxy.disabled: true`
//!   on every node, as the Cilium guide's patch gives them: Cilium
//!   replaces both (installed by the cluster bootstrap).
//! - `allowSchedulingOnControlPlanes: true`, and no
//!   `node.kubernetes.io/exclude-from-external-load-balancers` label: the
//!   control planes run workloads and are load balancer backends, with or
//!   without workers beside them.
//! - `machine.install.image` is the factory's nocloud installer of our
//!   schematic, so `talosctl upgrade` keeps the extensions.
//! - Certificate SANs name the node's address and 127.0.0.1 (talosctl and
//!   kubectl through a tunnel), and on a control plane the API VIP.
//! - The hostname is set (`HostnameConfig.hostname`), never `auto`: the two
//!   cannot be combined, and Proxmox's NoCloud meta-data carries no hostname.
//!
//! A worker's config, as Talos validates it (`v1alpha1_validation.go`),
//! carries the OS and Kubernetes CA certificates without their keys, no
//! `cluster.etcd` (never an etcd member), no API server, controller
//! manager, scheduler, aggregator CA, service account key, encryption
//! secret or inline manifests, and no `Layer2VIPConfig` ("virtual (shared)
//! IP is not allowed on non-controlplane nodes"); it keeps the cluster's
//! identity, the bootstrap token, the trustd token and
//! `cluster.controlPlane.endpoint` (the API VIP), which is how it joins.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::model::{Model, TalosCluster, TalosRole, KUBEPRISM_PORT, TALOS_LINK as LINK};
use crate::render::cluster::InlineManifest;
use crate::secrets::talos::{Bundle, CertAndKey, KeyOnly};
use crate::secrets::Secret;
use crate::yaml::{self, YamlError};

/// The first VirtIO SCSI disk.
pub const INSTALL_DISK: &str = "/dev/sda";
pub const POD_SUBNET: &str = "10.244.0.0/16";
pub const SERVICE_SUBNET: &str = "10.96.0.0/12";

/// What one node's config is made of.
pub struct NodeInput<'a> {
    pub model: &'a Model,
    pub cluster: &'a TalosCluster,
    pub bundle: &'a Bundle,
    pub role: TalosRole,
    pub hostname: &'a str,
    pub address: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub installer_image: &'a str,
    /// The cluster's bootstrap manifests (identical on every control
    /// plane, as Talos requires; workers get none).
    pub inline_manifests: &'a [InlineManifest],
}

/// The node's machine config as a multi-document YAML stream.
pub fn render(input: &NodeInput<'_>) -> Result<String, YamlError> {
    let talos = input.cluster;
    let mut documents = vec![
        yaml::document(&v1alpha1(input))?,
        yaml::document(&HostnameConfig {
            api_version: "v1alpha1",
            kind: "HostnameConfig",
            hostname: input.hostname,
        })?,
        yaml::document(&LinkConfig {
            api_version: "v1alpha1",
            kind: "LinkConfig",
            name: LINK,
            up: true,
            // Talos sets 1500 unless told: a cluster's VNet carries less.
            mtu: input.model.vnet_mtu(&talos.bridge),
            addresses: vec![AddressConfig {
                address: input.address.to_string(),
            }],
            routes: vec![RouteConfig {
                gateway: input.gateway.to_string(),
            }],
        })?,
        yaml::document(&ResolverConfig {
            api_version: "v1alpha1",
            kind: "ResolverConfig",
            nameservers: input
                .model
                .proxmox
                .dns
                .iter()
                .map(|address| NameserverConfig {
                    address: address.to_string(),
                })
                .collect(),
        })?,
    ];
    // The VIP moves between control planes only; Talos refuses it on a
    // worker.
    if input.role.is_control_plane() {
        documents.push(yaml::document(&Layer2VipConfig {
            api_version: "v1alpha1",
            kind: "Layer2VIPConfig",
            name: talos.api_vip.to_string(),
            link: LINK,
        })?);
    }
    Ok(yaml::stream(&documents))
}

fn v1alpha1<'a>(input: &'a NodeInput<'a>) -> Config<'a> {
    let talos = input.cluster;
    let bundle = input.bundle;
    let kubernetes = talos.kubernetes.trim_start_matches('v');
    let control_plane = input.role.is_control_plane();
    // 127.0.0.1: talosctl and kubectl through a local SSH tunnel (the nodes
    // have no public address). The VIP only where it can land.
    let sans: Vec<String> = control_plane
        .then(|| talos.api_vip.to_string())
        .into_iter()
        .chain([input.address.addr().to_string(), "127.0.0.1".to_string()])
        .collect();
    let (secretbox, aescbc) = (
        bundle.secrets.secretboxencryptionsecret.as_ref(),
        bundle.secrets.aescbcencryptionsecret.as_ref(),
    );
    // A CA with its key on a control plane, which signs with it; its
    // certificate alone on a worker, which only trusts it.
    let ca_for_role = |pair: &'a CertAndKey| -> Pem<'a> {
        if control_plane {
            pair.into()
        } else {
            Pem::certificate(pair)
        }
    };
    Config {
        version: "v1alpha1",
        debug: false,
        machine: Machine {
            kind: input.role.machine_type(),
            token: &bundle.trustdinfo.token,
            ca: ca_for_role(&bundle.certs.os),
            cert_sans: sans.clone(),
            kubelet: Kubelet {
                image: format!("ghcr.io/siderolabs/kubelet:v{kubernetes}"),
                default_runtime_seccomp_profile_enabled: true,
                disable_manifests_directory: true,
            },
            install: Install {
                disk: INSTALL_DISK,
                image: input.installer_image,
                wipe: false,
                grub_use_uki_cmdline: true,
            },
            features: Features {
                disk_quota_support: true,
                kube_prism: KubePrism {
                    enabled: true,
                    port: KUBEPRISM_PORT,
                },
                host_dns: HostDns {
                    enabled: true,
                    forward_kube_dns_to_host: true,
                },
            },
        },
        cluster: Cluster {
            id: &bundle.cluster.id,
            secret: &bundle.cluster.secret,
            control_plane: ControlPlane {
                endpoint: talos.api_url(),
            },
            cluster_name: &talos.name,
            network: ClusterNetwork {
                dns_domain: "cluster.local",
                pod_subnets: vec![POD_SUBNET],
                service_subnets: vec![SERVICE_SUBNET],
                cni: Cni { name: "none" },
            },
            token: &bundle.secrets.bootstraptoken,
            secretbox_encryption_secret: secretbox.filter(|_| control_plane),
            aescbc_encryption_secret: aescbc.filter(|_| control_plane && secretbox.is_none()),
            ca: ca_for_role(&bundle.certs.k8s),
            aggregator_ca: control_plane.then(|| (&bundle.certs.k8saggregator).into()),
            service_account: control_plane.then(|| (&bundle.certs.k8sserviceaccount).into()),
            api_server: control_plane.then(|| ApiServer {
                image: format!("registry.k8s.io/kube-apiserver:v{kubernetes}"),
                cert_sans: sans.clone(),
                admission_control: vec![pod_security()],
                audit_policy: AuditPolicy {
                    api_version: "audit.k8s.io/v1",
                    kind: "Policy",
                    rules: vec![BTreeMap::from([("level", "Metadata")])],
                },
            }),
            controller_manager: control_plane.then(|| Image {
                image: format!("registry.k8s.io/kube-controller-manager:v{kubernetes}"),
            }),
            proxy: Proxy { disabled: true },
            scheduler: control_plane.then(|| Image {
                image: format!("registry.k8s.io/kube-scheduler:v{kubernetes}"),
            }),
            discovery: Discovery {
                enabled: true,
                registries: Registries {
                    kubernetes: Disabled { disabled: true },
                    service: BTreeMap::new(),
                },
            },
            etcd: control_plane.then(|| Etcd {
                ca: (&bundle.certs.etcd).into(),
            }),
            allow_scheduling_on_control_planes: control_plane.then_some(true),
            inline_manifests: if control_plane {
                input.inline_manifests
            } else {
                &[]
            },
        },
    }
}

/// The PodSecurity admission defaults `talosctl gen config` writes.
fn pod_security() -> AdmissionPlugin {
    AdmissionPlugin {
        name: "PodSecurity",
        configuration: PodSecurityConfiguration {
            api_version: "pod-security.admission.config.k8s.io/v1alpha1",
            kind: "PodSecurityConfiguration",
            defaults: BTreeMap::from([
                ("audit", "restricted"),
                ("audit-version", "latest"),
                ("enforce", "baseline"),
                ("enforce-version", "latest"),
                ("warn", "restricted"),
                ("warn-version", "latest"),
            ]),
            exemptions: Exemptions {
                namespaces: vec!["kube-system"],
                runtime_classes: vec![],
                usernames: vec![],
            },
        },
    }
}

// The types below mirror Talos's `v1alpha1_types.go` field order; only the
// fields this platform sets exist.

#[derive(Serialize)]
struct Config<'a> {
    version: &'static str,
    debug: bool,
    machine: Machine<'a>,
    cluster: Cluster<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Machine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    token: &'a Secret,
    ca: Pem<'a>,
    #[serde(rename = "certSANs")]
    cert_sans: Vec<String>,
    kubelet: Kubelet,
    install: Install<'a>,
    features: Features,
}

/// A certificate and its key, a key alone (the service account's), or a
/// certificate alone (a CA a worker trusts but may not sign with).
#[derive(Serialize)]
struct Pem<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    crt: Option<&'a Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a Secret>,
}

impl<'a> Pem<'a> {
    fn certificate(pair: &'a CertAndKey) -> Self {
        Pem {
            crt: Some(&pair.crt),
            key: None,
        }
    }
}

impl<'a> From<&'a CertAndKey> for Pem<'a> {
    fn from(pair: &'a CertAndKey) -> Self {
        Pem {
            crt: Some(&pair.crt),
            key: Some(&pair.key),
        }
    }
}

impl<'a> From<&'a KeyOnly> for Pem<'a> {
    fn from(key: &'a KeyOnly) -> Self {
        Pem {
            crt: None,
            key: Some(&key.key),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Kubelet {
    image: String,
    default_runtime_seccomp_profile_enabled: bool,
    disable_manifests_directory: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Install<'a> {
    disk: &'static str,
    image: &'a str,
    wipe: bool,
    #[serde(rename = "grubUseUKICmdline")]
    grub_use_uki_cmdline: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Features {
    disk_quota_support: bool,
    kube_prism: KubePrism,
    #[serde(rename = "hostDNS")]
    host_dns: HostDns,
}

#[derive(Serialize)]
struct KubePrism {
    enabled: bool,
    port: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HostDns {
    enabled: bool,
    #[serde(rename = "forwardKubeDNSToHost")]
    forward_kube_dns_to_host: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Cluster<'a> {
    id: &'a Secret,
    secret: &'a Secret,
    control_plane: ControlPlane,
    cluster_name: &'a str,
    network: ClusterNetwork,
    token: &'a Secret,
    #[serde(skip_serializing_if = "Option::is_none")]
    aescbc_encryption_secret: Option<&'a Secret>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secretbox_encryption_secret: Option<&'a Secret>,
    ca: Pem<'a>,
    #[serde(rename = "aggregatorCA", skip_serializing_if = "Option::is_none")]
    aggregator_ca: Option<Pem<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_account: Option<Pem<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_server: Option<ApiServer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    controller_manager: Option<Image>,
    proxy: Proxy,
    #[serde(skip_serializing_if = "Option::is_none")]
    scheduler: Option<Image>,
    discovery: Discovery,
    /// Control planes only: Talos refuses etcd settings on a worker.
    #[serde(skip_serializing_if = "Option::is_none")]
    etcd: Option<Etcd<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_scheduling_on_control_planes: Option<bool>,
    #[serde(skip_serializing_if = "<[InlineManifest]>::is_empty")]
    inline_manifests: &'a [InlineManifest],
}

#[derive(Serialize)]
struct ControlPlane {
    endpoint: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterNetwork {
    dns_domain: &'static str,
    pod_subnets: Vec<&'static str>,
    service_subnets: Vec<&'static str>,
    cni: Cni,
}

#[derive(Serialize)]
struct Cni {
    name: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ApiServer {
    image: String,
    #[serde(rename = "certSANs")]
    cert_sans: Vec<String>,
    admission_control: Vec<AdmissionPlugin>,
    audit_policy: AuditPolicy,
}

#[derive(Serialize)]
struct AdmissionPlugin {
    name: &'static str,
    configuration: PodSecurityConfiguration,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodSecurityConfiguration {
    api_version: &'static str,
    kind: &'static str,
    defaults: BTreeMap<&'static str, &'static str>,
    exemptions: Exemptions,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Exemptions {
    namespaces: Vec<&'static str>,
    runtime_classes: Vec<&'static str>,
    usernames: Vec<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditPolicy {
    api_version: &'static str,
    kind: &'static str,
    rules: Vec<BTreeMap<&'static str, &'static str>>,
}

#[derive(Serialize)]
struct Image {
    image: String,
}

#[derive(Serialize)]
struct Proxy {
    disabled: bool,
}

#[derive(Serialize)]
struct Discovery {
    enabled: bool,
    registries: Registries,
}

#[derive(Serialize)]
struct Registries {
    kubernetes: Disabled,
    service: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct Disabled {
    disabled: bool,
}

#[derive(Serialize)]
struct Etcd<'a> {
    ca: Pem<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HostnameConfig<'a> {
    api_version: &'static str,
    kind: &'static str,
    hostname: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LinkConfig {
    api_version: &'static str,
    kind: &'static str,
    name: &'static str,
    up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u16>,
    addresses: Vec<AddressConfig>,
    routes: Vec<RouteConfig>,
}

#[derive(Serialize)]
struct AddressConfig {
    address: String,
}

/// A route without a destination is the default route.
#[derive(Serialize)]
struct RouteConfig {
    gateway: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResolverConfig {
    api_version: &'static str,
    kind: &'static str,
    nameservers: Vec<NameserverConfig>,
}

#[derive(Serialize)]
struct NameserverConfig {
    address: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Layer2VipConfig {
    api_version: &'static str,
    kind: &'static str,
    name: String,
    link: &'static str,
}
