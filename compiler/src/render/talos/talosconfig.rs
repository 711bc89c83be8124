//! The `talosconfig` client file: one context named after the cluster, the
//! OS CA, and the admin identity issued with the bundle. Endpoints are the
//! node addresses, not the VIP: the VIP exists only once etcd runs, and
//! talosctl is needed before that (bootstrap) and when it breaks.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::Model;
use crate::render::yaml::{self, YamlError};
use crate::secrets::talos_bundle::TalosCredentials;
use crate::secrets::Secret;

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

pub fn render(model: &Model, credentials: &TalosCredentials) -> Result<String, YamlError> {
    let cluster = model
        .talos
        .as_ref()
        .expect("talosconfig is rendered for a Talos cluster");
    let addresses: Vec<String> = model
        .talos_nodes()
        .filter_map(|node| node.nics.first())
        .map(|nic| nic.address.addr().to_string())
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
