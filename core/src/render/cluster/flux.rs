//! Flux at bootstrap: the `FluxInstance` the Flux Operator (installed from
//! its pinned `install.yaml`) turns into Flux's controllers and a sync of
//! the platform repository. The operator's CRD arrives in the same Talos
//! pass; Talos retries the instance until the CRD is served.
//!
//! The sync reads the repository with the deploy key in Secret
//! `flux-system`, which `waddlec cluster bootstrap` applies: it never
//! appears in a machine config.

use serde::Serialize;

use crate::model::Model;
use crate::render::k8s::{Metadata, Object, Spec};

pub const NAMESPACE: &str = "flux-system";
/// The Secret holding the deploy key (`identity`) and `known_hosts`.
pub const PULL_SECRET: &str = "flux-system";

#[derive(Serialize)]
struct InstanceSpec {
    distribution: Distribution,
    components: Vec<&'static str>,
    cluster: Cluster,
    sync: Sync,
}

#[derive(Serialize)]
struct Distribution {
    version: String,
    registry: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Cluster {
    #[serde(rename = "type")]
    kind: &'static str,
    size: &'static str,
    network_policy: bool,
    domain: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Sync {
    kind: &'static str,
    url: String,
    #[serde(rename = "ref")]
    reference: String,
    path: String,
    pull_secret: &'static str,
}

/// The `FluxInstance`, if the blueprint has `[flux]`. The platform tree
/// carries it too, so Flux keeps its own settings current after bootstrap.
pub fn instance(model: &Model) -> Option<serde_json::Value> {
    let flux = model.flux.as_ref()?;
    let instance = Object {
        api_version: "fluxcd.controlplane.io/v1",
        kind: "FluxInstance",
        // The operator accepts exactly this name (a CEL rule of the CRD).
        metadata: Metadata::namespaced(NAMESPACE, "flux"),
        body: Spec {
            spec: InstanceSpec {
                distribution: Distribution {
                    version: flux.distribution.clone(),
                    registry: "ghcr.io/fluxcd",
                },
                components: vec![
                    "source-controller",
                    "kustomize-controller",
                    "helm-controller",
                    "notification-controller",
                ],
                cluster: Cluster {
                    kind: "kubernetes",
                    size: "small",
                    network_policy: true,
                    domain: "cluster.local",
                },
                sync: Sync {
                    kind: "GitRepository",
                    url: flux.url.to_string(),
                    reference: format!("refs/heads/{}", flux.branch),
                    path: flux.path.to_string(),
                    pull_secret: PULL_SECRET,
                },
            },
        },
    };
    Some(serde_json::to_value(instance).expect("plain data serialises"))
}
