//! Cilium at bootstrap, without a workstation Helm: a Job in `kube-system`
//! on the host network runs the pinned Cilium CLI, which installs the
//! chart with the blueprint's values (a ConfigMap) as Helm release
//! `cilium` in `kube-system`. The Job reaches the API through KubePrism,
//! so it runs before any CNI or Service exists, and tolerates every taint
//! (nodes are `not-ready` until Cilium runs).
//!
//! Nothing is downloaded unpinned: the chart archive the build fetched
//! and pinned in the lock is a ConfigMap of the inline manifests
//! (`binaryData`), an init container unpacks it into a scratch volume and
//! cilium-cli installs it with `--chart-directory` (which loads an
//! unpacked directory only: `loader.LoadDir` in cilium-cli's
//! `internal/helm/helm.go`), so it never asks its Helm repository
//! (cilium/cilium#35629). Every image runs by digest: the CLI's and, for
//! the unpacking, the agent image the nodes pull anyway (the CLI's image
//! is `FROM scratch`, without `tar`); the chart's own images keep
//! `useDigest`. Why a ConfigMap of the archive: the API server refuses a
//! ConfigMap over 1 MiB (`data` and decoded `binaryData` together), which
//! the 1.19 chart's compressed archive fits and its unpacked files would
//! not without splitting it over several ConfigMaps and a projected
//! volume listing every file; Talos takes inline manifests of any size
//! its config carries (its API's messages go to 32 MiB, and the configs
//! reach the nodes on seed disks of up to 16 MiB), and the build refuses
//! an archive over `CHART_ARCHIVE_LIMIT`.
//!
//! Talos creates inline manifests once and never updates them, so the Job
//! is a day-0 installer; afterwards Flux's helm-controller owns the same
//! release (`platform`'s `cilium` component: same chart version, same
//! values, same release name and namespace).
//!
//! Then the L2 side of every VIP on the cluster's bridge: a
//! `CiliumLoadBalancerIPPool` holding just that address and a
//! `CiliumL2AnnouncementPolicy` answering ARP for it on `eth0`, both
//! selecting the Service of the Gateway named like the VIP. Their CRDs are
//! registered by the Cilium operator once it runs; Talos retries the
//! manifests until then.

use std::collections::BTreeMap;

use base64::Engine;
use serde::Serialize;

use super::upstream::{self, UpstreamInputs};
use crate::model::{CiliumInstall, Model};
use crate::model::{KUBEPRISM_PORT, TALOS_LINK};
use crate::render::k8s::*;
use crate::yaml::{self, YamlError};

/// The namespace and name of the Helm release the Job installs and Flux
/// takes over.
pub const RELEASE_NAMESPACE: &str = "kube-system";
pub const RELEASE_NAME: &str = "cilium";
const NAME: &str = "cilium-install";
const VALUES_DIR: &str = "/etc/cilium-install";
const ARCHIVE_DIR: &str = "/etc/cilium-chart";
const CHART_DIR: &str = "/chart";
/// The largest chart archive the build embeds: a ConfigMap holds at most
/// 1 MiB (the API server's limit for `data` and decoded `binaryData`).
pub const CHART_ARCHIVE_LIMIT: usize = 1024 * 1024;
/// The label Cilium puts on a Gateway's Service.
const GATEWAY_LABEL: &str = "io.cilium.gateway/owning-gateway";

fn chart_config_map_name() -> String {
    format!("{NAME}-chart")
}

/// The chart archive as a ConfigMap, or `None` when the build has not
/// handed it in (the review tree, which shows a placeholder instead).
pub fn chart(model: &Model, inputs: &UpstreamInputs) -> Result<Option<String>, YamlError> {
    let (Some(cilium), Some(chart)) = (&model.cilium, upstream::cilium_chart(model)) else {
        return Ok(None);
    };
    let Some(archive) = inputs.archives.get(&chart.url) else {
        return Ok(None);
    };
    Ok(Some(yaml::document(&Object {
        api_version: "v1",
        kind: "ConfigMap",
        metadata: Metadata::namespaced(RELEASE_NAMESPACE, &chart_config_map_name()),
        body: ConfigMap {
            binary_data: BTreeMap::from([(
                upstream::chart_file(&cilium.version),
                base64::engine::general_purpose::STANDARD.encode(archive),
            )]),
            ..ConfigMap::default()
        },
    })?))
}

/// The installer's command line: the chart from the unpacked archive,
/// never a version to download.
pub fn install_command() -> Vec<String> {
    vec![
        "cilium".into(),
        "install".into(),
        format!("--namespace={RELEASE_NAMESPACE}"),
        format!("--chart-directory={CHART_DIR}/cilium"),
        format!("--values={VALUES_DIR}/values.yaml"),
        "--wait".into(),
        "--wait-duration=10m".into(),
    ]
}

/// The installer: ServiceAccount, its cluster-admin binding, the values and
/// the Job.
pub fn installer(model: &Model, inputs: &UpstreamInputs) -> Result<Vec<String>, YamlError> {
    let Some(cilium) = &model.cilium else {
        return Ok(Vec::new());
    };
    let values = yaml::document(&cilium.values)?;
    let labels = BTreeMap::from([("app.kubernetes.io/name".to_string(), NAME.to_string())]);
    Ok(vec![
        yaml::document(&Object {
            api_version: "v1",
            kind: "ServiceAccount",
            metadata: Metadata::namespaced(RELEASE_NAMESPACE, NAME),
            body: Empty {},
        })?,
        yaml::document(&Object {
            api_version: "rbac.authorization.k8s.io/v1",
            kind: "ClusterRoleBinding",
            metadata: Metadata::cluster(NAME),
            body: ClusterRoleBinding {
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io",
                    kind: "ClusterRole",
                    name: "cluster-admin".into(),
                },
                subjects: vec![Subject {
                    kind: "ServiceAccount",
                    name: NAME.into(),
                    namespace: RELEASE_NAMESPACE.into(),
                }],
            },
        })?,
        yaml::document(&Object {
            api_version: "v1",
            kind: "ConfigMap",
            metadata: Metadata::namespaced(RELEASE_NAMESPACE, &format!("{NAME}-values")),
            body: ConfigMap {
                data: BTreeMap::from([("values.yaml".to_string(), values)]),
                ..ConfigMap::default()
            },
        })?,
        yaml::document(&Object {
            api_version: "batch/v1",
            kind: "Job",
            metadata: Metadata::namespaced(RELEASE_NAMESPACE, NAME),
            body: Job {
                spec: JobSpec {
                    backoff_limit: 10,
                    template: PodTemplate {
                        metadata: TemplateMetadata { labels },
                        spec: pod(cilium, inputs),
                    },
                },
            },
        })?,
    ])
}

fn pod(cilium: &CiliumInstall, inputs: &UpstreamInputs) -> PodSpec {
    let agent = inputs.image(
        &upstream::chart_image_key("image"),
        &format!("quay.io/cilium/cilium:v{}", cilium.version),
    );
    PodSpec {
        service_account_name: NAME.into(),
        host_network: true,
        restart_policy: "OnFailure",
        tolerations: vec![Toleration { operator: "Exists" }],
        init_containers: vec![Container {
            name: "unpack-chart".into(),
            image: agent,
            command: vec![
                "tar".into(),
                "-xzf".into(),
                format!("{ARCHIVE_DIR}/{}", upstream::chart_file(&cilium.version)),
                "-C".into(),
                CHART_DIR.into(),
            ],
            env: Vec::new(),
            volume_mounts: vec![
                VolumeMount {
                    name: "chart-archive",
                    mount_path: ARCHIVE_DIR,
                    read_only: true,
                },
                VolumeMount {
                    name: "chart",
                    mount_path: CHART_DIR,
                    read_only: false,
                },
            ],
        }],
        containers: vec![Container {
            name: NAME.into(),
            image: inputs.image(&cilium.cli_image, &cilium.cli_image),
            command: install_command(),
            env: vec![
                EnvVar {
                    name: "KUBERNETES_SERVICE_HOST",
                    value: "localhost".into(),
                },
                EnvVar {
                    name: "KUBERNETES_SERVICE_PORT",
                    value: KUBEPRISM_PORT.to_string(),
                },
            ],
            volume_mounts: vec![
                VolumeMount {
                    name: "values",
                    mount_path: VALUES_DIR,
                    read_only: true,
                },
                VolumeMount {
                    name: "chart",
                    mount_path: CHART_DIR,
                    read_only: true,
                },
            ],
        }],
        volumes: vec![
            Volume {
                name: "values",
                source: VolumeSource::ConfigMap(ConfigMapVolume {
                    name: format!("{NAME}-values"),
                }),
            },
            Volume {
                name: "chart-archive",
                source: VolumeSource::ConfigMap(ConfigMapVolume {
                    name: chart_config_map_name(),
                }),
            },
            Volume {
                name: "chart",
                source: VolumeSource::EmptyDir(Empty {}),
            },
        ],
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PoolSpec {
    blocks: Vec<Block>,
    service_selector: Selector,
}

#[derive(Serialize)]
struct Block {
    start: String,
    stop: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Selector {
    match_labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct L2PolicySpec {
    service_selector: Selector,
    interfaces: Vec<String>,
    #[serde(rename = "loadBalancerIPs")]
    load_balancer_ips: bool,
    #[serde(rename = "externalIPs")]
    external_ips: bool,
}

/// The pool and L2 policy of every VIP on the cluster's bridge.
/// Also synced by Flux (`platform`'s `cilium-config`), so a changed VIP
/// reaches a running cluster: Talos only ever creates these once.
pub fn l2_announcements(model: &Model) -> Vec<serde_json::Value> {
    let Some(talos) = &model.talos else {
        return Vec::new();
    };
    let Some(bridge) = model.internal_bridges().find(|b| b.name == talos.bridge) else {
        return Vec::new();
    };
    let mut documents = Vec::new();
    for vip in model
        .vips
        .iter()
        .filter(|v| bridge.network.contains(&v.address))
    {
        let selector = || Selector {
            match_labels: BTreeMap::from([(GATEWAY_LABEL.to_string(), vip.name.clone())]),
        };
        documents.push(to_value(Object {
            api_version: "cilium.io/v2",
            kind: "CiliumLoadBalancerIPPool",
            metadata: Metadata::cluster(&vip.name),
            body: Spec {
                spec: PoolSpec {
                    blocks: vec![Block {
                        start: vip.address.to_string(),
                        stop: vip.address.to_string(),
                    }],
                    service_selector: selector(),
                },
            },
        }));
        documents.push(to_value(Object {
            api_version: "cilium.io/v2alpha1",
            kind: "CiliumL2AnnouncementPolicy",
            metadata: Metadata::cluster(&vip.name),
            body: Spec {
                spec: L2PolicySpec {
                    service_selector: selector(),
                    interfaces: vec![format!("^{TALOS_LINK}$")],
                    load_balancer_ips: true,
                    external_ips: false,
                },
            },
        }));
    }
    documents
}

fn to_value(object: impl Serialize) -> serde_json::Value {
    serde_json::to_value(object).expect("plain data serialises")
}
