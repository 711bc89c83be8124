//! The host's routing layer: port forwards (DNAT), NAT for internal networks
//! (MASQUERADE), the FORWARD accepts that go with them, the sysctl that turns
//! forwarding on, the script that applies it all (on a cluster's host, also
//! its own address on each VNet) and the unit that re-applies it at boot.

use serde::Serialize;

use super::{RenderError, Templates};
use crate::artifact::Artifact;
use crate::model::{Host, Model};

/// Where `waddlec deploy` installs these files on the host; the unit and the
/// script refer to each other through these paths.
pub const RULES_PATH: &str = "/etc/waddlec/host-network.rules";
pub const SCRIPT_PATH: &str = "/usr/local/sbin/waddlec-host-network";

/// Our chains: a prefix pve-firewall never uses (it owns `PVEFW-*`).
#[derive(Serialize)]
struct Chains {
    prerouting: &'static str,
    postrouting: &'static str,
    forward: &'static str,
}

const CHAINS: Chains = Chains {
    prerouting: "WDLC-PREROUTING",
    postrouting: "WDLC-POSTROUTING",
    forward: "WDLC-FORWARD",
};

#[derive(Serialize)]
struct Sysctl {
    key: &'static str,
    value: &'static str,
    why: &'static str,
}

const SYSCTL: &[Sysctl] = &[Sysctl {
    key: "net.ipv4.ip_forward",
    value: "1",
    why: "route between the public and internal bridges (DNAT and MASQUERADE need it)",
}];

#[derive(Serialize)]
struct Forward {
    protocol: &'static str,
    port: u16,
    public_bridge: String,
    public_address: String,
    target: String,
    address: String,
    target_port: u16,
    /// The internal bridge the target lives on.
    bridge: String,
}

#[derive(Serialize)]
struct Masquerade {
    network: String,
    bridge: String,
}

/// A cluster host's own address on a VNet: SDN puts none on a VXLAN
/// VNet, and the host is the router of the VMs it runs there.
#[derive(Serialize)]
struct VnetAddress {
    vnet: String,
    /// `10.30.0.2/22`.
    address: String,
}

#[derive(Serialize)]
struct Jump {
    table: &'static str,
    chain: &'static str,
    target: &'static str,
}

#[derive(Serialize)]
struct Data<'a> {
    project: &'a str,
    chains: Chains,
    public_bridge: &'a str,
    forwards: Vec<Forward>,
    masquerade: Vec<Masquerade>,
    /// Every internal bridge: the public side reaches them only through
    /// the forwards.
    internal_bridges: Vec<String>,
    sysctl: &'static [Sysctl],
    /// Empty on a lone host, whose internal bridges carry its address.
    vnet_addresses: Vec<VnetAddress>,
    jumps: Vec<Jump>,
    rules_path: &'static str,
    script_path: &'static str,
}

/// `host`'s rules: NAT for the internal networks it routes, and the
/// forwards on its public address, those whose target it runs (on a lone
/// host, every one).
pub fn render(
    templates: &Templates,
    model: &Model,
    host: &Host,
) -> Result<Vec<Artifact>, RenderError> {
    let public = &host.bridges.public;
    let forwards = model
        .forwards
        .iter()
        .filter(|forward| {
            model
                .vm(&forward.to.name)
                .is_none_or(|vm| vm.host == host.node)
        })
        .map(|forward| Forward {
            protocol: forward.protocol.as_str(),
            port: forward.port.0,
            public_bridge: public.name.to_string(),
            public_address: public.host_address.to_string(),
            target: forward.to.name.clone(),
            address: forward.to.address.to_string(),
            target_port: forward.to.port.0,
            bridge: host
                .bridges
                .internal
                .iter()
                .find(|b| b.network.contains(&forward.to.address))
                .map(|b| b.name.to_string())
                .unwrap_or_default(),
        })
        .collect();
    let masquerade = host
        .bridges
        .internal
        .iter()
        .filter(|b| b.masquerade)
        .map(|b| Masquerade {
            network: b.network.to_string(),
            bridge: b.name.to_string(),
        })
        .collect();
    let data = Data {
        project: &model.project.name,
        chains: CHAINS,
        public_bridge: &public.name,
        forwards,
        masquerade,
        internal_bridges: host
            .bridges
            .internal
            .iter()
            .map(|b| b.name.to_string())
            .collect(),
        sysctl: SYSCTL,
        vnet_addresses: host
            .bridges
            .internal
            .iter()
            .filter(|bridge| model.vnet_mtu(&bridge.name).is_some())
            .map(|bridge| VnetAddress {
                vnet: bridge.name.to_string(),
                address: format!("{}/{}", bridge.host_address, bridge.network.prefix_len()),
            })
            .collect(),
        jumps: vec![
            Jump {
                table: "nat",
                chain: "PREROUTING",
                target: CHAINS.prerouting,
            },
            Jump {
                table: "nat",
                chain: "POSTROUTING",
                target: CHAINS.postrouting,
            },
            Jump {
                table: "filter",
                chain: "FORWARD",
                target: CHAINS.forward,
            },
        ],
        rules_path: RULES_PATH,
        script_path: SCRIPT_PATH,
    };
    Ok(vec![
        Artifact::file(
            "host/network/host-network.rules",
            "iptables-rules",
            templates.render("host-network.rules", &data)?,
        ),
        Artifact::file(
            "host/network/waddlec-host-network",
            "shell-script",
            templates.render("waddlec-host-network", &data)?,
        )
        .executable(),
        Artifact::file(
            "host/network/waddlec-host-network.service",
            "systemd-unit",
            templates.render("waddlec-host-network.service", &data)?,
        ),
        Artifact::file(
            "host/network/90-waddlec.conf",
            "sysctl",
            templates.render("sysctl.conf", &data)?,
        ),
    ])
}
