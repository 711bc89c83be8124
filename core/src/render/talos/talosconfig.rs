//! The `talosconfig` client file: one context named after the cluster, the
//! OS CA, and the admin identity issued with the bundle. Endpoints are the
//! node addresses, not the VIP: the VIP exists only once etcd runs, and
//! talosctl is needed before that (bootstrap) and when it breaks.

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
    let addresses: Vec<String> = model
        .talos_nodes()
        .map(|node| node.ip().to_string())
        .collect();
    let context = Context {
        endpoints: addresses.clone(),
        nodes: addresses.into_iter().take(1).collect(),
        ca: &credentials.bundle.certs.os.crt,
        crt: &credentials.admin.crt,
        key: &credentials.admin.key,
    };
    yaml::document(&TalosConfig {
        context: &cluster.name,
        contexts: BTreeMap::from([(cluster.name.as_str(), context)]),
    })
}
