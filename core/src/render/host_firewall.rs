//! The Proxmox firewall files: `cluster.fw` (on, input policy) and the node's
//! `host.fw` (trusted bridges, temporary operator rules with their end dates).

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

#[derive(Serialize)]
struct Data<'a> {
    project: &'a str,
    node: &'a str,
    policy_in: &'static str,
    public_address: String,
    allow_bridges: &'a [String],
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
        allow_bridges: &firewall.allow_bridges,
        temporary: firewall
            .temporary
            .iter()
            .map(|rule| Temporary {
                name: rule.name.clone(),
                source: rule.source.to_string(),
                protocol: match rule.protocol {
                    Protocol::Tcp => "tcp",
                    Protocol::Udp => "udp",
                },
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
