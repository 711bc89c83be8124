//! Talos machine configs, one per control-plane node, in the multi-document
//! form of Talos 1.12: the `v1alpha1` document (machine and cluster), then
//! `HostnameConfig`, `LinkConfig`, `ResolverConfig` and `Layer2VIPConfig`.
//! Only keys the Talos 1.12 JSON schema knows are emitted (the deprecated
//! `machine.network.*`, `persist`, `features.rbac`… are not), so every
//! document validates against it.
//!
//! The v1alpha1 document follows what `talosctl gen config` v1.12.4
//! produces, with the versions passed explicitly (1.12.4 defaults to
//! Kubernetes 1.35.0) and these differences for this platform:
//! - `cluster.network.cni.name: none` and `cluster.proxy.disabled: true`:
//!   Cilium replaces both (installed by the cluster bootstrap).
//! - `allowSchedulingOnControlPlanes: true`, and no
//!   `node.kubernetes.io/exclude-from-external-load-balancers` label: every
//!   node is a control-plane node and must run workloads and be a load
//!   balancer backend.
//! - `machine.install.image` is the factory's nocloud installer of our
//!   schematic, so `talosctl upgrade` keeps the extensions.
//! - Certificate SANs name the API VIP and the node's address.
//! - The hostname is set (`HostnameConfig.hostname`), never `auto`: the two
//!   cannot be combined, and Proxmox's NoCloud meta-data carries no hostname.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use crate::model::{Model, TalosCluster, KUBEPRISM_PORT, TALOS_LINK as LINK};
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
    pub hostname: &'a str,
    pub address: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub installer_image: &'a str,
    /// The cluster's bootstrap manifests (identical on every node, as
    /// Talos requires).
    pub inline_manifests: &'a [InlineManifest],
}

/// The node's machine config as a multi-document YAML stream.
pub fn render(input: &NodeInput<'_>) -> Result<String, YamlError> {
    let talos = input.cluster;
    let documents = [
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
                .host
                .dns
                .iter()
                .map(|address| NameserverConfig {
                    address: address.to_string(),
                })
                .collect(),
        })?,
        yaml::document(&Layer2VipConfig {
            api_version: "v1alpha1",
            kind: "Layer2VIPConfig",
            name: talos.api_vip.to_string(),
            link: LINK,
        })?,
    ];
    Ok(yaml::stream(&documents))
}

fn v1alpha1<'a>(input: &'a NodeInput<'a>) -> Config<'a> {
    let model = input.model;
    let talos = input.cluster;
    let bundle = input.bundle;
    let kubernetes = model.versions.kubernetes.trim_start_matches('v');
    // 127.0.0.1: talosctl and kubectl through a local SSH tunnel (the nodes
    // have no public address).
    let sans = vec![
        talos.api_vip.to_string(),
        input.address.addr().to_string(),
        "127.0.0.1".to_string(),
    ];
    let (secretbox, aescbc) = (
        bundle.secrets.secretboxencryptionsecret.as_ref(),
        bundle.secrets.aescbcencryptionsecret.as_ref(),
    );
    Config {
        version: "v1alpha1",
        debug: false,
        machine: Machine {
            kind: "controlplane",
            token: &bundle.trustdinfo.token,
            ca: (&bundle.certs.os).into(),
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
            secretbox_encryption_secret: secretbox,
            aescbc_encryption_secret: if secretbox.is_none() { aescbc } else { None },
            ca: (&bundle.certs.k8s).into(),
            aggregator_ca: (&bundle.certs.k8saggregator).into(),
            service_account: (&bundle.certs.k8sserviceaccount).into(),
            api_server: ApiServer {
                image: format!("registry.k8s.io/kube-apiserver:v{kubernetes}"),
                cert_sans: sans,
                admission_control: vec![pod_security()],
                audit_policy: AuditPolicy {
                    api_version: "audit.k8s.io/v1",
                    kind: "Policy",
                    rules: vec![BTreeMap::from([("level", "Metadata")])],
                },
            },
            controller_manager: Image {
                image: format!("registry.k8s.io/kube-controller-manager:v{kubernetes}"),
            },
            proxy: Proxy { disabled: true },
            scheduler: Image {
                image: format!("registry.k8s.io/kube-scheduler:v{kubernetes}"),
            },
            discovery: Discovery {
                enabled: true,
                registries: Registries {
                    kubernetes: Disabled { disabled: true },
                    service: BTreeMap::new(),
                },
            },
            etcd: Etcd {
                ca: (&bundle.certs.etcd).into(),
            },
            allow_scheduling_on_control_planes: true,
            inline_manifests: input.inline_manifests,
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

#[derive(Serialize)]
struct Pem<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    crt: Option<&'a Secret>,
    key: &'a Secret,
}

impl<'a> From<&'a CertAndKey> for Pem<'a> {
    fn from(pair: &'a CertAndKey) -> Self {
        Pem {
            crt: Some(&pair.crt),
            key: &pair.key,
        }
    }
}

impl<'a> From<&'a KeyOnly> for Pem<'a> {
    fn from(key: &'a KeyOnly) -> Self {
        Pem {
            crt: None,
            key: &key.key,
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
    #[serde(rename = "aggregatorCA")]
    aggregator_ca: Pem<'a>,
    service_account: Pem<'a>,
    api_server: ApiServer,
    controller_manager: Image,
    proxy: Proxy,
    scheduler: Image,
    discovery: Discovery,
    etcd: Etcd<'a>,
    allow_scheduling_on_control_planes: bool,
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
