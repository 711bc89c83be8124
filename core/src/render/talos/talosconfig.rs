//! The `talosconfig` client file: one context named after the cluster, the
//! OS CA, and the admin identity issued with the bundle. Endpoints are the
//! control planes' addresses, not the VIP: the VIP exists only once etcd
//! runs, and talosctl is needed before that (bootstrap) and when it breaks.
//! Workers are no endpoints (a control plane's apid proxies to them with
//! `--nodes`); the default node is the bootstrap node.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Model, TalosCluster};
use crate::secrets::talos::TalosCredentials;
use crate::secrets::Secret;
use crate::yaml::{self, YamlError};

#[derive(Serialize)]
struct TalosConfig<'a> {
    context: &'a str,
    contexts: BTreeMap<&'a str, Context<'a>>,
}

#[derive(Serialize)]
struct Context<'a> {
    endpoints: Vec<String>,
    nodes: Vec<String>,
    ca: &'a Secret,
    crt: &'a Secret,
    key: &'a Secret,
}

pub fn render(
    model: &Model,
    cluster: &TalosCluster,
    credentials: &TalosCredentials,
) -> Result<String, YamlError> {
    let endpoints: Vec<String> = model
        .control_planes()
        .map(|node| node.ip().to_string())
        .collect();
    let context = Context {
        endpoints,
        nodes: model
            .bootstrap_node()
            .map(|node| node.ip().to_string())
            .into_iter()
            .collect(),
        ca: &credentials.bundle.certs.os.crt,
        crt: &credentials.admin.crt,
        key: &credentials.admin.key,
    };
    yaml::document(&TalosConfig {
        context: &cluster.name,
        contexts: BTreeMap::from([(cluster.name.as_str(), context)]),
    })
}
