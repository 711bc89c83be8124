//! Bridges, the host's own addresses, VIPs, and the address-claim checks:
//! every address inside its bridge's network, no address claimed twice on one
//! segment, no VIP on top of anything else, every VIP announced.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{names, Checker};
use crate::blueprint::{Blueprint, BridgeRole, Port, Span};
use crate::diagnostics::rules;
use crate::model::{self, CheckedString};

/// The bridges, each with its index in the blueprint. A cluster's
/// internal bridges carry no address yet: `hosts` gives each host its own.
pub(super) fn bridges(checker: &mut Checker, blueprint: &Blueprint) -> Vec<(usize, model::Bridge)> {
    let cluster = blueprint.cluster.is_some();
    // Each host of a cluster has its own uplink, usually of one name.
    let mut seen: BTreeMap<(Option<&str>, &str), Span> = BTreeMap::new();
    let mut out = Vec::new();
    // The blueprint index of each bridge in `out`.
    let mut indices = Vec::new();
    for (i, bridge) in blueprint.bridges.iter().enumerate() {
        let path = format!("bridge[{i}]");
        let owner = bridge.host.as_ref().map(|host| host.as_str());
        if let Some(first) = seen.insert((owner, &bridge.name), bridge.name.span()) {
            checker
                .error(
                    &rules::DUPLICATE_NAME,
                    bridge.name.span(),
                    format!("{path}.name"),
                    format!("bridge `{}` is defined twice", *bridge.name),
                )
                .related
                .push((first, "first defined here".into()));
        }
        // A refused name leaves the bridge out: what names it is then
        // reported as undefined, never matched to a stand-in.
        let name = model::BridgeName::parse(&bridge.name).map_err(|reason| {
            let path = format!("{path}.name");
            let diagnostic = checker.error(
                &rules::INVALID_IDENTIFIER,
                bridge.name.span(),
                &path,
                format!("`{path}` {reason}"),
            );
            diagnostic.label = "here".into();
            diagnostic.help = Some(model::BridgeName::HELP.into());
        });
        let network = bridge.cidr.trunc();
        if network != *bridge.cidr {
            checker
                .error(
                    &rules::ADDRESS_OUTSIDE_NETWORK,
                    bridge.cidr.span(),
                    format!("{path}.cidr"),
                    format!(
                        "`{}` has host bits set; the network is `{network}`",
                        *bridge.cidr
                    ),
                )
                .help = Some(format!(
                "write `cidr = \"{network}\"` and put the host's address in `host_address`"
            ));
        }
        let host_address = cluster_keys(checker, cluster, bridge, &path);
        if let Some(address) = &bridge.host_address {
            check_in_network(
                checker,
                **address,
                address.span(),
                &format!("{path}.host_address"),
                network,
                &bridge.name,
            );
        }
        match (*bridge.role, &bridge.gateway) {
            (BridgeRole::Public, Some(gateway)) => {
                check_in_network(
                    checker,
                    **gateway,
                    gateway.span(),
                    &format!("{path}.gateway"),
                    network,
                    &bridge.name,
                );
            }
            (BridgeRole::Public, None) => {
                checker
                    .error(
                        &rules::MISSING_KEY,
                        bridge.role.span(),
                        format!("{path}.gateway"),
                        format!("public bridge `{}` has no `gateway`", *bridge.name),
                    )
                    .help =
                    Some("set `gateway` to the upstream router of the public network".into());
            }
            (BridgeRole::Internal, Some(gateway)) => {
                checker
                    .error(&rules::ROLE_MISMATCH, gateway.span(), format!("{path}.gateway"), format!("internal bridge `{}` cannot have an upstream gateway; the host is its router", *bridge.name))
                    .help = Some("remove `gateway`".into());
            }
            (BridgeRole::Internal, None) => {}
        }
        if bridge.masquerade && *bridge.role == BridgeRole::Public {
            checker.error(&rules::ROLE_MISMATCH, bridge.role.span(), format!("{path}.masquerade"), format!("`masquerade` NATs an internal network out of the public bridge; `{}` is the public bridge", *bridge.name));
        }
        let vlan_aware = bridge.vlan_aware.as_ref();
        if let Some(flag) = vlan_aware.filter(|flag| ***flag && *bridge.role == BridgeRole::Public)
        {
            let diagnostic = checker.error(&rules::ROLE_MISMATCH, flag.span(), format!("{path}.vlan_aware"), format!("waddlec creates and changes internal bridges only; `{}` is the public bridge, which it only checks", *bridge.name));
            diagnostic.label = "on the public bridge".into();
            diagnostic.help = Some("make the uplink VLAN-aware on the host if it needs to be, and remove `vlan_aware` here; tagged NICs go on an internal bridge".into());
        }
        let v6 = super::network6::bridge_v6(checker, bridge, &path);
        let Ok(name) = name else { continue };
        indices.push(i);
        out.push(model::Bridge {
            name,
            role: *bridge.role,
            network,
            host_address,
            gateway: bridge.gateway.as_ref().map(|g| **g),
            v6,
            masquerade: bridge.masquerade,
            vlan_aware: vlan_aware.is_some_and(|flag| **flag),
        });
    }
    for (n, (bridge, &i)) in out.iter().zip(&indices).enumerate() {
        // Two hosts' uplinks are two segments, even in one provider network.
        let other_uplink = |j: usize| {
            let (a, b) = (&blueprint.bridges[i], &blueprint.bridges[indices[j]]);
            *a.role == BridgeRole::Public && *b.role == BridgeRole::Public && a.host != b.host
        };
        let overlapping = out[..n].iter().enumerate().find(|&(j, o)| {
            !other_uplink(j)
                && (o.network.contains(&bridge.network.network())
                    || bridge.network.contains(&o.network.network()))
        });
        let overlapping = overlapping.map(|(_, o)| o);
        if let Some(other) = overlapping {
            checker.error(&rules::ADDRESS_OUTSIDE_NETWORK, blueprint.bridges[i].cidr.span(), format!("bridge[{i}].cidr"), format!("{} overlaps {} of bridge `{}`; an address could not tell which segment it is on", bridge.network, other.network, other.name));
        }
    }
    let public: Vec<_> = blueprint
        .bridges
        .iter()
        .filter(|b| *b.role == BridgeRole::Public)
        .collect();
    let out = indices.into_iter().zip(out).collect();
    if cluster {
        // `hosts` counts each host's uplinks.
        return out;
    }
    match public.as_slice() {
        [_] => {}
        [] => {
            let span = blueprint
                .bridges
                .first()
                .map(|b| b.role.span())
                .unwrap_or(blueprint.version.span());
            checker
                .error(&rules::ROLE_MISMATCH, span, "bridge", "no bridge has `role = \"public\"`: the host needs one public bridge for its address, port forwards and NAT")
                .help = Some("mark the uplink bridge (usually `vmbr0`) with `role = \"public\"`".into());
        }
        [first, rest @ ..] => {
            for extra in rest {
                checker
                    .error(
                        &rules::ROLE_MISMATCH,
                        extra.role.span(),
                        "bridge",
                        format!(
                            "bridge `{}` is a second public bridge; waddlec supports one uplink",
                            *extra.name
                        ),
                    )
                    .related
                    .push((first.role.span(), "the public bridge".into()));
            }
        }
    }
    out
}

/// The keys a bridge has only in one of the two forms, checked: `host`
/// (a cluster's uplinks), `vni` (a cluster's internal bridges) and
/// `host_address` (everywhere but a cluster's internal bridges, whose
/// hosts each give theirs). Returns the address the bridge's list entry
/// carries: a cluster's internal bridge gets each host's in `hosts`.
fn cluster_keys(
    checker: &mut Checker,
    cluster: bool,
    bridge: &crate::blueprint::Bridge,
    path: &str,
) -> Ipv4Addr {
    let public = *bridge.role == BridgeRole::Public;
    match (&bridge.host, cluster, public) {
        (Some(host), false, _) => {
            checker
                .error(&rules::UNKNOWN_HOST, host.span(), format!("{path}.host"), format!("bridge `{}` names host `{}`, but the blueprint has one `[host]`, whose bridges every one is", *bridge.name, **host))
                .help = Some("remove `host`, or describe the hosts in `[cluster]`".into());
        }
        (Some(host), true, false) => {
            checker
                .error(&rules::UNKNOWN_HOST, host.span(), format!("{path}.host"), format!("internal bridge `{}` is an SDN VNet on every host of the cluster, not on `{}` alone", *bridge.name, **host))
                .help = Some("remove `host`; each host gives its address on it in its `addresses`".into());
        }
        (None, true, true) => {
            checker
                .error(&rules::UNKNOWN_HOST, bridge.role.span(), format!("{path}.host"), format!("public bridge `{}` names no host: in a cluster each host has its own uplink", *bridge.name))
                .help = Some("add `host = \"NODE\"`, the `[[cluster.host]]` whose uplink it is".into());
        }
        _ => {}
    }
    match (&bridge.vni, cluster && !public) {
        (Some(vni), false) => {
            checker
                .error(
                    &rules::VNET_IDENTIFIER,
                    vni.span(),
                    format!("{path}.vni"),
                    format!(
                        "only an internal bridge of a `[cluster]` is a VXLAN VNet; `{}` is not",
                        *bridge.name
                    ),
                )
                .help = Some("remove `vni`".into());
        }
        (None, true) => {
            checker
                .error(&rules::VNET_IDENTIFIER, bridge.name.span(), format!("{path}.vni"), format!("internal bridge `{}` has no `vni`: in a cluster it is a VXLAN VNet spanning the hosts", *bridge.name))
                .help = Some("add `vni = N` (1 to 16777215), one per internal bridge".into());
        }
        (Some(vni), true) if !(1..=16_777_215).contains(&**vni) => {
            checker
                .error(
                    &rules::VNET_IDENTIFIER,
                    vni.span(),
                    format!("{path}.vni"),
                    format!(
                        "VXLAN network identifier {} is outside 1 to 16777215",
                        **vni
                    ),
                )
                .help = Some("pick a VNI from 1 to 16777215".into());
        }
        _ => {}
    }
    match (&bridge.host_address, cluster && !public) {
        (Some(address), true) => {
            let diagnostic = checker.error(&rules::HOST_ADDRESSES, address.span(), format!("{path}.host_address"), format!("internal bridge `{}` spans every host of the cluster; one `host_address` cannot say whose it is", *bridge.name));
            diagnostic.help = Some(format!("remove it, and give each `[[cluster.host]]` its own in `addresses = {{ {} = \"…\" }}`", *bridge.name));
            **address
        }
        (Some(address), false) => **address,
        (None, true) => Ipv4Addr::UNSPECIFIED,
        (None, false) => {
            checker
                .error(
                    &rules::MISSING_KEY,
                    bridge.name.span(),
                    format!("{path}.host_address"),
                    format!(
                        "bridge `{}` has no `host_address`: the host's own address on it",
                        *bridge.name
                    ),
                )
                .help = Some("add `host_address`, an address inside `cidr`".into());
            Ipv4Addr::UNSPECIFIED
        }
    }
}

/// Reports an address outside `network`, or equal to its network/broadcast address.
pub(super) fn check_in_network(
    checker: &mut Checker,
    address: Ipv4Addr,
    span: Span,
    path: &str,
    network: Ipv4Net,
    bridge: &str,
) -> bool {
    if !network.contains(&address) {
        checker
            .error(
                &rules::ADDRESS_OUTSIDE_NETWORK,
                span,
                path,
                format!("{address} is outside bridge `{bridge}` ({network})"),
            )
            .label = format!("not in {network}");
        return false;
    }
    if network.prefix_len() < 31 && (address == network.network() || address == network.broadcast())
    {
        checker
            .error(
                &rules::ADDRESS_OUTSIDE_NETWORK,
                span,
                path,
                format!(
                    "{address} is the {} address of bridge `{bridge}` ({network})",
                    if address == network.network() {
                        "network"
                    } else {
                        "broadcast"
                    }
                ),
            )
            .label = "not a host address".into();
        return false;
    }
    true
}

pub(super) fn vips(checker: &mut Checker, blueprint: &Blueprint) -> Vec<model::Vip> {
    blueprint
        .vips
        .iter()
        .enumerate()
        .map(|(i, vip)| {
            checker.check_str_with_help(
                &vip.name,
                &format!("vip[{i}].name"),
                &rules::INVALID_DNS_NAME,
                names::check_lowercase_label,
                names::LOWERCASE_LABEL_HELP,
            );
            let mut seen: BTreeMap<Port, Span> = BTreeMap::new();
            for (p, port) in vip.ports.iter().enumerate() {
                if let Some(first) = seen.insert(**port, port.span()) {
                    let diagnostic = checker.error(
                        &rules::DUPLICATE_PORT,
                        port.span(),
                        format!("vip[{i}].ports[{p}]"),
                        format!("VIP `{}` lists port {} twice", *vip.name, **port),
                    );
                    diagnostic.label = "again".into();
                    diagnostic.related.push((first, "first listed here".into()));
                    diagnostic.help = Some("list each port once; was another port meant?".into());
                }
            }
            let ports: Vec<Port> = seen.into_keys().collect();
            model::Vip {
                name: vip.name.to_string(),
                address: *vip.address,
                ports,
            }
        })
        .collect()
}

/// Every VIP needs an announcer: the Talos cluster's Cilium answers ARP for
/// it from the nodes, which are all on `talos.bridge` (E0133). A VIP on no
/// bridge's network is reported by [`check_addresses`].
pub(super) fn check_vip_announcers(
    checker: &mut Checker,
    blueprint: &Blueprint,
    bridges: &[model::Bridge],
) {
    for (i, vip) in blueprint.vips.iter().enumerate() {
        let path = format!("vip[{i}].address");
        let Some(talos) = &blueprint.talos else {
            let diagnostic = checker.error(
                &rules::UNANNOUNCED_VIP,
                vip.address.span(),
                path,
                format!(
                    "nothing announces VIP `{}` ({}): only a `[talos]` cluster's Cilium answers \
                     ARP for a VIP, and the blueprint has none, while routes and forwards to it \
                     would still send traffic there",
                    *vip.name, *vip.address
                ),
            );
            diagnostic.label = "announced by nobody".into();
            diagnostic.help = Some(
                "add a `[talos]` cluster on this VIP's bridge, or remove the VIP and route to a \
                 VM's address instead"
                    .into(),
            );
            continue;
        };
        let Some(bridge) = bridges.iter().find(|b| b.network.contains(&*vip.address)) else {
            continue;
        };
        if bridge.name == *talos.bridge {
            continue;
        }
        // An undefined `talos.bridge` is reported where the cluster is resolved.
        let Some(nodes) = bridges.iter().find(|b| b.name == *talos.bridge) else {
            continue;
        };
        let diagnostic = checker.error(
            &rules::UNANNOUNCED_VIP,
            vip.address.span(),
            path,
            format!(
                "VIP `{}` ({}) is on bridge `{}`, but the Talos nodes that announce it are on \
                 `{}`: ARP does not cross bridges, so nobody would answer for it",
                *vip.name, *vip.address, bridge.name, nodes.name
            ),
        );
        diagnostic.label = format!("on `{}`", bridge.name);
        diagnostic
            .related
            .push((talos.bridge.span(), "the Talos nodes' bridge".into()));
        diagnostic.help = Some(format!(
            "give the VIP a free address in `{}`'s network {}",
            nodes.name, nodes.network
        ));
    }
}

/// One address claimed by something, for the duplicate and collision checks.
struct Claim {
    address: Ipv4Addr,
    what: String,
    span: Span,
    path: String,
    floating: bool,
}

/// Every address in the blueprint must be unique on its segment, and VIPs must
/// not sit on anything else.
pub(super) fn check_addresses(
    checker: &mut Checker,
    blueprint: &Blueprint,
    bridges: &[model::Bridge],
) {
    let mut claims: BTreeMap<String, Vec<Claim>> = BTreeMap::new();
    // A cluster host's uplink is its own segment.
    let segment = |bridge: &crate::blueprint::Bridge| match &bridge.host {
        Some(host) => format!("{}/{}", **host, *bridge.name),
        None => bridge.name.to_string(),
    };
    for (i, bridge) in blueprint.bridges.iter().enumerate() {
        if let Some(address) = &bridge.host_address {
            claims.entry(segment(bridge)).or_default().push(Claim {
                address: **address,
                what: format!("the host on `{}`", *bridge.name),
                span: address.span(),
                path: format!("bridge[{i}].host_address"),
                floating: false,
            });
        }
        if let Some(gateway) = &bridge.gateway {
            claims.entry(segment(bridge)).or_default().push(Claim {
                address: **gateway,
                what: format!("the upstream gateway of `{}`", *bridge.name),
                span: gateway.span(),
                path: format!("bridge[{i}].gateway"),
                floating: false,
            });
        }
    }
    for (h, host) in blueprint
        .cluster
        .iter()
        .flat_map(|c| c.hosts.iter())
        .enumerate()
    {
        for (bridge, address) in host.addresses.iter().flat_map(|a| a.iter()) {
            claims.entry(bridge.clone()).or_default().push(Claim {
                address: **address,
                what: format!("host `{}` on `{bridge}`", *host.node),
                span: address.span(),
                path: format!("cluster.host[{h}].addresses.{bridge}"),
                floating: false,
            });
        }
    }
    for (v, vm) in blueprint.vms.iter().enumerate() {
        for (n, nic) in vm.nics.iter().enumerate() {
            claims
                .entry(nic.bridge.to_string())
                .or_default()
                .push(Claim {
                    address: *nic.address,
                    what: format!("VM `{}`", *vm.name),
                    span: nic.address.span(),
                    path: format!("vm[{v}].nics[{n}].address"),
                    floating: false,
                });
        }
    }
    if let Some(talos) = &blueprint.talos {
        for (n, node) in talos.nodes.iter().enumerate() {
            claims
                .entry(talos.bridge.to_string())
                .or_default()
                .push(Claim {
                    address: *node.address,
                    what: format!("Talos node `{}`", *node.name),
                    span: node.address.span(),
                    path: format!("talos.node[{n}].address"),
                    floating: false,
                });
        }
        // An undefined `talos.bridge` is reported where the cluster is resolved.
        if let Some(bridge) = bridges.iter().find(|b| b.name == *talos.bridge) {
            if check_in_network(
                checker,
                *talos.api_vip,
                talos.api_vip.span(),
                "talos.api_vip",
                bridge.network,
                &bridge.name,
            ) {
                claims
                    .entry(bridge.name.to_string())
                    .or_default()
                    .push(Claim {
                        address: *talos.api_vip,
                        what: "the Kubernetes API VIP".into(),
                        span: talos.api_vip.span(),
                        path: "talos.api_vip".into(),
                        floating: true,
                    });
            }
        }
    }
    for (i, vip) in blueprint.vips.iter().enumerate() {
        let path = format!("vip[{i}].address");
        match bridges.iter().find(|b| b.network.contains(&*vip.address)) {
            Some(bridge) => {
                if check_in_network(
                    checker,
                    *vip.address,
                    vip.address.span(),
                    &path,
                    bridge.network,
                    &bridge.name,
                ) {
                    claims
                        .entry(bridge.name.to_string())
                        .or_default()
                        .push(Claim {
                            address: *vip.address,
                            what: format!("VIP `{}`", *vip.name),
                            span: vip.address.span(),
                            path,
                            floating: true,
                        });
                }
            }
            None => {
                checker.error(
                    &rules::ADDRESS_OUTSIDE_NETWORK,
                    vip.address.span(),
                    format!("vip[{i}].address"),
                    format!("{} is on no bridge's network", *vip.address),
                );
            }
        }
    }
    for segment in claims.values() {
        let mut first: BTreeMap<Ipv4Addr, &Claim> = BTreeMap::new();
        for claim in segment {
            let Some(previous) = first.get(&claim.address) else {
                first.insert(claim.address, claim);
                continue;
            };
            let rule = if claim.floating || previous.floating {
                &rules::VIP_COLLISION
            } else {
                &rules::DUPLICATE_ADDRESS
            };
            let diagnostic = checker.error(
                rule,
                claim.span.clone(),
                claim.path.clone(),
                format!(
                    "{} is claimed by both {} and {} on one L2 segment",
                    claim.address, previous.what, claim.what
                ),
            );
            diagnostic.label = format!("{} claims it again", claim.what);
            diagnostic.related.push((
                previous.span.clone(),
                format!("{} ({})", previous.what, previous.path),
            ));
            diagnostic.help = Some("give each machine and VIP its own address; a VM behind the host's DNAT needs no copy of the host's public address".into());
        }
    }
}
