//! A `[cluster]`'s own files, for review and for `deploy`: `hosts/sdn.json`,
//! the SDN objects as the `/cluster/sdn` API takes them (the VXLAN zone,
//! one VNet per internal bridge, its subnet), and `hosts/placement.json`,
//! which host runs what and what losing each host does to etcd. A lone
//! host has neither.
//!
//! The subnets carry no `gateway`: in a VXLAN zone every host is the
//! router of its own VMs (its address comes from its `addresses`, set by
//! its network script), and SDN would put one gateway on every host.

use serde::Serialize;

use super::RenderError;
use crate::artifact::Artifact;
use crate::model::{quorum_survives, Model};

/// `POST /cluster/sdn/zones`.
#[derive(Serialize)]
struct Zone {
    zone: String,
    #[serde(rename = "type")]
    kind: &'static str,
    /// `ip-list`: the hosts' addresses, comma separated.
    peers: String,
    mtu: u16,
    /// Every node of the cluster.
    nodes: String,
}

/// `POST /cluster/sdn/vnets`.
#[derive(Serialize)]
struct Vnet {
    vnet: String,
    zone: String,
    /// The VXLAN network identifier.
    tag: u32,
}

/// `POST /cluster/sdn/vnets/{vnet}/subnets`.
#[derive(Serialize)]
struct Subnet {
    vnet: String,
    subnet: String,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct Sdn {
    zone: Zone,
    vnets: Vec<Vnet>,
    subnets: Vec<Subnet>,
}

#[derive(Serialize)]
struct HostPlacement {
    node: String,
    /// VM names, by VMID.
    vms: Vec<String>,
    /// How many etcd members go down with this host.
    etcd_members: usize,
    /// Whether etcd keeps its quorum without this host.
    quorum_without_it: bool,
}

#[derive(Serialize)]
struct Placement {
    etcd_members: usize,
    hosts: Vec<HostPlacement>,
}

pub fn render(model: &Model) -> Result<Vec<Artifact>, RenderError> {
    let Some(sdn) = &model.proxmox.sdn else {
        return Ok(Vec::new());
    };
    let nodes: Vec<&str> = model
        .proxmox
        .hosts
        .iter()
        .map(|h| h.node.as_str())
        .collect();
    let objects = Sdn {
        zone: Zone {
            zone: sdn.zone.clone(),
            kind: "vxlan",
            peers: sdn
                .peers
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(","),
            mtu: sdn.mtu,
            nodes: nodes.join(","),
        },
        vnets: sdn
            .vnets
            .iter()
            .map(|(name, vni)| Vnet {
                vnet: name.to_string(),
                zone: sdn.zone.clone(),
                tag: *vni,
            })
            .collect(),
        subnets: model
            .internal_bridges()
            .map(|bridge| Subnet {
                vnet: bridge.name.to_string(),
                subnet: bridge.network.to_string(),
                kind: "subnet",
            })
            .collect(),
    };
    let members: Vec<&str> = model
        .control_planes()
        .map(|node| node.vm.host.as_str())
        .collect();
    let placement = Placement {
        etcd_members: members.len(),
        hosts: model
            .proxmox
            .hosts
            .iter()
            .map(|host| {
                let lost = members.iter().filter(|m| **m == host.node).count();
                HostPlacement {
                    node: host.node.clone(),
                    vms: model.vms_on(host).map(|vm| vm.name.clone()).collect(),
                    etcd_members: lost,
                    quorum_without_it: members.is_empty() || quorum_survives(members.len(), lost),
                }
            })
            .collect(),
    };
    Ok(vec![
        Artifact::file("hosts/sdn.json", "pve-sdn", json(&objects)),
        Artifact::file("hosts/placement.json", "placement", json(&placement)),
    ])
}

fn json(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).expect("plain data serialises") + "\n"
}
