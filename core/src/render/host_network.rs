//! The host's routing layer: port forwards (DNAT), NAT for internal networks
//! (MASQUERADE), the FORWARD accepts that go with them, the sysctl that turns
//! forwarding on, the script that applies it all (on a cluster's host, also
//! its own address on each VNet) and the unit that re-applies it at boot.
//! Each host gets its own: the NAT of the networks it routes and the
//! forwards to the VMs it runs (on a lone host, every one). When the public bridge has IPv6, the same chains again for
//! `ip6tables` in a second ruleset: each dual-stack forward from the public
//! IPv6 address to its target's unique local one (DNAT66, the client's
//! address kept), masquerading bridges' IPv6 NATed out, and the sysctls
//! for IPv6 forwarding with router advertisements still accepted on the
//! uplink (`accept_ra = 2`: forwarding alone would make the kernel ignore
//! them, and with them the IPv6 default route the provider announces).

use std::net::IpAddr;

use serde::Serialize;

use super::{RenderError, Templates};
use crate::artifact::Artifact;
use crate::model::{Bridge, Host, Model};

/// Where `waddlec deploy` installs these files on the host; the unit and the
/// script refer to each other through these paths.
pub const RULES_PATH: &str = "/etc/waddlec/host-network.rules";
pub const RULES6_PATH: &str = "/etc/waddlec/host-network6.rules";
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
    key: String,
    value: &'static str,
    why: &'static str,
}

#[derive(Serialize)]
struct Forward {
    protocol: &'static str,
    port: u16,
    public_bridge: String,
    /// `ADDRESS` as the comment shows it.
    public_address: String,
    /// The public address as a one-address match: `/32` or `/128`.
    public_match: String,
    target: String,
    /// `ADDRESS:PORT`, IPv6 in brackets: the comment and `--to-destination`.
    destination: String,
    /// The target's address as a one-address match.
    address_match: String,
    target_port: u16,
    /// The internal bridge the target lives on.
    bridge: String,
}

/// One family's ruleset: `iptables-restore` input for IPv4, or for IPv6
/// (`ip6tables-restore` takes the same syntax).
#[derive(Serialize)]
struct Ruleset {
    /// The tool that loads it, for its header.
    restore: &'static str,
    public_bridge: String,
    forwards: Vec<Forward>,
    masquerade: Vec<Masquerade>,
    /// Every internal bridge: the public side reaches them only through
    /// the forwards.
    internal_bridges: Vec<String>,
}

/// The IPv6 side of the apply script and unit.
#[derive(Serialize)]
struct Ipv6 {
    rules_path: &'static str,
    jumps: Vec<Jump>,
}

#[derive(Serialize)]
struct Masquerade {
    network: String,
    bridge: String,
}

#[derive(Serialize)]
struct Jump {
    table: &'static str,
    chain: &'static str,
    target: &'static str,
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
struct Data<'a> {
    project: &'a str,
    chains: Chains,
    #[serde(flatten)]
    ruleset: Ruleset,
    sysctl: Vec<Sysctl>,
    /// Empty on a lone host, whose internal bridges carry its address.
    vnet_addresses: Vec<VnetAddress>,
    jumps: Vec<Jump>,
    rules_path: &'static str,
    script_path: &'static str,
    /// Present when the public bridge has IPv6.
    ipv6: Option<Ipv6>,
}

fn address_match(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => format!("{v6}/128"),
    }
}

fn destination(address: IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// The internal bridge whose network holds the target `address`.
fn bridge_of(host: &Host, address: IpAddr) -> String {
    host.bridges
        .internal
        .iter()
        .find(|b| match address {
            IpAddr::V4(v4) => b.network.contains(&v4),
            IpAddr::V6(v6) => b.v6.is_some_and(|n| n.network.contains(&v6)),
        })
        .map(|b| b.name.to_string())
        .unwrap_or_default()
}

/// A sysctl key naming an interface: a dot in the name is written `/`
/// (sysctl(8)), since dots separate the key's parts.
fn interface_key(prefix: &str, bridge: &Bridge, setting: &str) -> String {
    format!("{prefix}.{}.{setting}", bridge.name.replace('.', "/"))
}

/// `host`'s IPv4 ruleset, and its IPv6 one when its uplink has IPv6.
fn rulesets(model: &Model, host: &Host) -> (Ruleset, Option<Ruleset>) {
    let public = &host.bridges.public;
    let internal_bridges: Vec<String> = host
        .bridges
        .internal
        .iter()
        .map(|b| b.name.to_string())
        .collect();
    // The forwards to what this host runs (a VIP only on a lone host).
    let forwards: Vec<_> = model
        .forwards
        .iter()
        .filter(|f| model.vm(&f.to.name).is_none_or(|vm| vm.host == host.node))
        .collect();
    let forward =
        |protocol: &'static str, port: u16, from: IpAddr, name: &str, to: IpAddr, to_port: u16| {
            Forward {
                protocol,
                port,
                public_bridge: public.name.to_string(),
                public_address: from.to_string(),
                public_match: address_match(from),
                target: name.to_string(),
                destination: destination(to, to_port),
                address_match: address_match(to),
                target_port: to_port,
                bridge: bridge_of(host, to),
            }
        };
    let v4 = Ruleset {
        restore: "iptables-restore",
        public_bridge: public.name.to_string(),
        forwards: forwards
            .iter()
            .map(|f| {
                forward(
                    f.protocol.as_str(),
                    f.port.0,
                    public.host_address.into(),
                    &f.to.name,
                    f.to.address.into(),
                    f.to.port.0,
                )
            })
            .collect(),
        masquerade: host
            .bridges
            .internal
            .iter()
            .filter(|b| b.masquerade)
            .map(|b| Masquerade {
                network: b.network.to_string(),
                bridge: b.name.to_string(),
            })
            .collect(),
        internal_bridges: internal_bridges.clone(),
    };
    let v6 = public.v6.map(|public6| Ruleset {
        restore: "ip6tables-restore",
        public_bridge: public.name.to_string(),
        forwards: forwards
            .iter()
            .filter_map(|f| {
                Some(forward(
                    f.protocol.as_str(),
                    f.port.0,
                    public6.host_address.into(),
                    &f.to.name,
                    f.to6?.into(),
                    f.to.port.0,
                ))
            })
            .collect(),
        masquerade: host
            .bridges
            .internal
            .iter()
            .filter(|b| b.masquerade)
            .filter_map(|b| {
                Some(Masquerade {
                    network: b.v6?.network.to_string(),
                    bridge: b.name.to_string(),
                })
            })
            .collect(),
        internal_bridges,
    });
    (v4, v6)
}

/// The jumps into our chains, for either family.
fn jumps() -> Vec<Jump> {
    vec![
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
    ]
}

fn sysctls(host: &Host) -> Vec<Sysctl> {
    let public = &host.bridges.public;
    let mut sysctl = vec![Sysctl {
        key: "net.ipv4.ip_forward".into(),
        value: "1",
        why: "route between the public and internal bridges (DNAT and MASQUERADE need it)",
    }];
    if public.v6.is_some() {
        sysctl.push(Sysctl {
            key: interface_key("net.ipv6.conf", public, "accept_ra"),
            value: "2",
            why: "keep taking the uplink's router advertisements (the IPv6 default route) once forwarding is on",
        });
        sysctl.push(Sysctl {
            key: "net.ipv6.conf.all.forwarding".into(),
            value: "1",
            why: "route IPv6 between the public and internal bridges (DNAT66 and MASQUERADE need it)",
        });
    }
    sysctl
}

/// `host`'s files (`host/network/…` until `render::per_host` places a
/// cluster's).
pub fn render(
    templates: &Templates,
    model: &Model,
    host: &Host,
) -> Result<Vec<Artifact>, RenderError> {
    let (v4, v6) = rulesets(model, host);
    let data = Data {
        project: &model.project.name,
        chains: CHAINS,
        ruleset: v4,
        sysctl: sysctls(host),
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
        jumps: jumps(),
        rules_path: RULES_PATH,
        script_path: SCRIPT_PATH,
        ipv6: v6.is_some().then(|| Ipv6 {
            rules_path: RULES6_PATH,
            jumps: jumps(),
        }),
    };
    let mut artifacts = vec![
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
    ];
    if let Some(v6) = v6 {
        let data6 = Data {
            ruleset: v6,
            ..data
        };
        artifacts.push(Artifact::file(
            "host/network/host-network6.rules",
            "ip6tables-rules",
            templates.render("host-network.rules", &data6)?,
        ));
    }
    Ok(artifacts)
}
