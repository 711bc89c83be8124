//! Cilium at bootstrap, without a workstation Helm: a Job in `kube-system`
//! on the host network runs the pinned Cilium CLI, which installs the chart
//! with the blueprint's values (a ConfigMap). The Job reaches the API
//! through KubePrism, so it runs before any CNI or Service exists, and
//! tolerates every taint (nodes are `not-ready` until Cilium runs).
//!
//! Talos creates inline manifests once and never updates them, so the Job
//! is a day-0 installer: a values change after bootstrap reaches the
//! cluster through `cilium upgrade` (or Flux), not through this Job.
//!
//! Then the L2 side of every VIP on the cluster's bridge: a
//! `CiliumLoadBalancerIPPool` holding just that address and a
//! `CiliumL2AnnouncementPolicy` answering ARP for it on `eth0`, both
//! selecting the Service of the Gateway named like the VIP. Their CRDs are
//! registered by the Cilium operator once it runs; Talos retries the
//! manifests until then.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::Model;
use crate::model::{KUBEPRISM_PORT, TALOS_LINK};
use crate::render::k8s::*;
use crate::yaml::{self, YamlError};

const NAMESPACE: &str = "kube-system";
const NAME: &str = "cilium-install";
const VALUES_DIR: &str = "/etc/cilium-install";
/// The label Cilium puts on a Gateway's Service.
const GATEWAY_LABEL: &str = "io.cilium.gateway/owning-gateway";

/// The installer: ServiceAccount, its cluster-admin binding, the values and
/// the Job.
pub fn installer(model: &Model) -> Result<Vec<String>, YamlError> {
    let Some(cilium) = &model.cilium else {
        return Ok(Vec::new());
    };
    let values = yaml::document(&cilium.values)?;
    let labels = BTreeMap::from([("app.kubernetes.io/name".to_string(), NAME.to_string())]);
    Ok(vec![
        yaml::document(&Object {
            api_version: "v1",
            kind: "ServiceAccount",
            metadata: Metadata::namespaced(NAMESPACE, NAME),
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
                    namespace: NAMESPACE.into(),
                }],
            },
        })?,
        yaml::document(&Object {
            api_version: "v1",
            kind: "ConfigMap",
            metadata: Metadata::namespaced(NAMESPACE, &format!("{NAME}-values")),
            body: ConfigMap {
                data: BTreeMap::from([("values.yaml".to_string(), values)]),
            },
        })?,
        yaml::document(&Object {
            api_version: "batch/v1",
            kind: "Job",
            metadata: Metadata::namespaced(NAMESPACE, NAME),
            body: Job {
                spec: JobSpec {
                    backoff_limit: 10,
                    template: PodTemplate {
                        metadata: TemplateMetadata { labels },
                        spec: PodSpec {
                            service_account_name: NAME.into(),
                            host_network: true,
                            restart_policy: "OnFailure",
                            tolerations: vec![Toleration { operator: "Exists" }],
                            containers: vec![Container {
                                name: NAME.into(),
                                image: cilium.cli_image.clone(),
                                command: vec![
                                    "cilium".into(),
                                    "install".into(),
                                    format!("--version={}", cilium.version),
                                    format!("--values={VALUES_DIR}/values.yaml"),
                                    "--wait".into(),
                                    "--wait-duration=10m".into(),
                                ],
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
                                volume_mounts: vec![VolumeMount {
                                    name: "values",
                                    mount_path: VALUES_DIR,
                                    read_only: true,
                                }],
                            }],
                            volumes: vec![Volume {
                                name: "values",
                                config_map: ConfigMapVolume {
                                    name: format!("{NAME}-values"),
                                },
                            }],
                        },
                    },
                },
            },
        })?,
    ])
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
    let Some(bridge) = model.bridges.iter().find(|b| b.name == talos.bridge) else {
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
