//! The Proxmox firewall files: `cluster.fw` (on, input policy) and the node's
//! `host.fw`: what each VM may reach on the host (`Model::host_access`, one
//! rule per service and source, then a DROP for everything else from each
//! internal bridge, whatever the policy), and the operator's temporary
//! rules with their end dates.

use serde::Serialize;

use super::{RenderError, Templates};
use crate::artifact::Artifact;
use crate::model::{Model, Policy, Protocol};

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
    public_address: String,
    vm_rules: Vec<VmRule>,
    internal_bridges: Vec<&'a str>,
    temporary: Vec<Temporary>,
}

pub fn render(templates: &Templates, model: &Model) -> Result<Vec<Artifact>, RenderError> {
    let firewall = &model.firewall;
    let data = Data {
        project: &model.project.name,
        node: &model.host.node,
        policy_in: match firewall.input_policy {
            Policy::Drop => "DROP",
            Policy::Reject => "REJECT",
            Policy::Accept => "ACCEPT",
        },
        public_address: model.public_bridge().host_address.to_string(),
        vm_rules: model
            .host_access()
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
        internal_bridges: model.internal_bridges().map(|b| b.name.as_str()).collect(),
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
    };
    Ok(vec![
        Artifact::file(
            "host/firewall/cluster.fw",
            "pve-firewall",
            templates.render("cluster.fw", &data)?,
        ),
        Artifact::file(
            "host/firewall/host.fw",
            "pve-firewall",
            templates.render("host.fw", &data)?,
        ),
    ])
}

fn protocol_name(protocol: Protocol) -> &'static str {
    match protocol {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}
