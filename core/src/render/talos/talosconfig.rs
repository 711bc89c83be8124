//! The `talosconfig` client file: one context named after the cluster, the
//! OS CA, and the admin identity issued with the bundle. Endpoints are the
//! control planes' addresses, not the VIP: the VIP exists only once etcd
//! runs, and talosctl is needed before that (bootstrap) and when it breaks.
//! Workers are no endpoints (a control plane's apid proxies to them with
//! `--nodes`); the default node is the bootstrap node.
//!
//! [`client`] is what `waddlec talosconfig` writes or merges into the
//! operator's own talosconfig: the same identity under names marked as
//! waddlec's (`<cluster>-waddlec`), and with Teleport a second context,
//! current, aimed at the tunnel `tsh proxy app <bootstrap node> --port
//! 50000` opens (the node's Talos API as a Teleport TCP app; `127.0.0.1` is
//! in every node's certificate SANs), so talosctl needs no flag.

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

/// The local port `tsh proxy app` listens on for the Talos API.
pub const TUNNEL_PORT: u16 = crate::model::TALOS_API_PORT;

/// The tree's talosconfig: one context named like the cluster, straight to
/// the control planes.
pub fn render(
    model: &Model,
    cluster: &TalosCluster,
    credentials: &TalosCredentials,
) -> Result<String, YamlError> {
    yaml::document(&TalosConfig {
        context: &cluster.name,
        contexts: BTreeMap::from([(cluster.name.as_str(), direct(model, credentials))]),
    })
}

/// The contexts waddlec owns in an operator's talosconfig, and which of
/// them is current.
pub struct ClientContexts {
    /// `<cluster>-waddlec`: straight to the control planes.
    pub direct: String,
    /// `<cluster>-waddlec-teleport`, with Teleport: through `tsh proxy app`.
    pub teleport: Option<TeleportContext>,
}

pub struct TeleportContext {
    pub name: String,
    /// The Teleport TCP app to open the tunnel to (`tsh proxy app APP
    /// --port 50000`): the bootstrap node's.
    pub app: String,
}

impl ClientContexts {
    pub fn of(model: &Model, cluster: &TalosCluster) -> Self {
        let direct = format!("{}-waddlec", cluster.name);
        let teleport = model
            .teleport
            .as_ref()
            .and(model.bootstrap_node())
            .map(|node| TeleportContext {
                name: format!("{direct}-teleport"),
                app: node.name().to_string(),
            });
        ClientContexts { direct, teleport }
    }

    /// The context talosctl uses without `--context`: Teleport's when there
    /// is one (the way in from outside), else the direct one.
    pub fn current(&self) -> &str {
        self.teleport
            .as_ref()
            .map_or(self.direct.as_str(), |t| t.name.as_str())
    }
}

/// The operator's talosconfig entries ([`ClientContexts`]), as a
/// talosconfig of their own.
pub fn client(
    model: &Model,
    cluster: &TalosCluster,
    credentials: &TalosCredentials,
) -> Result<String, YamlError> {
    let names = ClientContexts::of(model, cluster);
    let mut contexts = BTreeMap::from([(names.direct.as_str(), direct(model, credentials))]);
    if let Some(teleport) = &names.teleport {
        let tunnel = Context {
            endpoints: vec![format!("127.0.0.1:{TUNNEL_PORT}")],
            ..direct(model, credentials)
        };
        contexts.insert(teleport.name.as_str(), tunnel);
    }
    yaml::document(&TalosConfig {
        context: names.current(),
        contexts,
    })
}

/// Straight to the control planes, the bootstrap node the default node.
fn direct<'a>(model: &Model, credentials: &'a TalosCredentials) -> Context<'a> {
    Context {
        endpoints: model
            .control_planes()
            .map(|node| node.ip().to_string())
            .collect(),
        nodes: model
            .bootstrap_node()
            .map(|node| node.ip().to_string())
            .into_iter()
            .collect(),
        ca: &credentials.bundle.certs.os.crt,
        crt: &credentials.admin.crt,
        key: &credentials.admin.key,
    }
}
