//! The Proxmox firewall files: `cluster.fw` (on, input policy) and the node's
//! `host.fw`: what each VM may reach on the host (`Model::host_access`, one
//! rule per service and source, then a DROP for everything else from each
//! internal bridge, whatever the policy), and the operator's temporary
//! rules with their end dates.

use serde::Serialize;

use super::{RenderError, Templates};
use crate::artifact::Artifact;
use crate::model::{Host, Model, Policy, Protocol};

#[derive(Serialize)]
struct Temporary {
    name: String,
    source: String,
    protocol: &'static str,
    port: u16,
    expires: String,
}

/// One VM admitted to one host service.
#[derive(Serialize)]
struct VmRule {
    bridge: String,
    source: String,
    dest: String,
    protocol: &'static str,
    port: u16,
    comment: String,
}

#[derive(Serialize)]
struct Data<'a> {
    project: &'a str,
    node: &'a str,
    policy_in: &'static str,
    /// pve-firewall's `local_network`: the one host's own public address,
    /// or a cluster's network between its hosts.
    local_network: String,
    /// A cluster's network between its hosts, which carries the VXLAN
    /// tunnels (pve-firewall admits corosync, SSH and the API from
    /// `local_network` itself, but not VXLAN).
    vxlan_from: Option<String>,
    vm_rules: Vec<VmRule>,
    internal_bridges: Vec<&'a str>,
    temporary: Vec<Temporary>,
}

/// `cluster.fw`: one file in `/etc/pve`, for every host of a cluster.
pub fn render_cluster(templates: &Templates, model: &Model) -> Result<Artifact, RenderError> {
    let path = match model.proxmox.single_host() {
        Some(_) => "host/firewall/cluster.fw",
        None => "hosts/cluster.fw",
    };
    let data = data(model, &model.proxmox.hosts[0]);
    Ok(Artifact::file(
        path,
        "pve-firewall",
        templates.render("cluster.fw", &data)?,
    ))
}

/// `host.fw` of `host` (`host/firewall/host.fw` until `render::per_host`
/// places a cluster's).
pub fn render(
    templates: &Templates,
    model: &Model,
    host: &Host,
) -> Result<Vec<Artifact>, RenderError> {
    Ok(vec![Artifact::file(
        "host/firewall/host.fw",
        "pve-firewall",
        templates.render("host.fw", &data(model, host))?,
    )])
}

fn data<'a>(model: &'a Model, host: &'a Host) -> Data<'a> {
    let firewall = &model.firewall;
    let sdn = model.proxmox.sdn.as_ref();
    Data {
        project: &model.project.name,
        node: &host.node,
        policy_in: match firewall.input_policy {
            Policy::Drop => "DROP",
            Policy::Reject => "REJECT",
            Policy::Accept => "ACCEPT",
        },
        local_network: sdn.map_or_else(
            || format!("{}/32", host.public_address()),
            |sdn| sdn.network.to_string(),
        ),
        vxlan_from: sdn.map(|sdn| sdn.network.to_string()),
        vm_rules: model
            .host_access(host)
            .iter()
            .flat_map(|access| {
                access.sources.iter().map(move |source| VmRule {
                    bridge: source.bridge.clone(),
                    source: source.address.to_string(),
                    dest: source.host_address.to_string(),
                    protocol: protocol_name(access.protocol),
                    port: access.port,
                    comment: format!("{} from {}: {}", access.service, source.vm, source.purpose),
                })
            })
            .collect(),
        internal_bridges: host
            .bridges
            .internal
            .iter()
            .map(|b| b.name.as_str())
            .collect(),
        temporary: firewall
            .temporary
            .iter()
            .map(|rule| Temporary {
                name: rule.name.clone(),
                source: rule.source.to_string(),
                protocol: protocol_name(rule.protocol),
                port: rule.port.0,
                expires: rule.expires.to_string(),
            })
            .collect(),
    }
}

fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}
