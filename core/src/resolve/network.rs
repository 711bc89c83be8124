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

pub(super) fn bridges(checker: &mut Checker, blueprint: &Blueprint) -> Vec<model::Bridge> {
    let mut seen: BTreeMap<&str, Span> = BTreeMap::new();
    let mut out = Vec::new();
    // The blueprint index of each bridge in `out`.
    let mut indices = Vec::new();
    for (i, bridge) in blueprint.bridges.iter().enumerate() {
        let path = format!("bridge[{i}]");
        if let Some(first) = seen.insert(&bridge.name, bridge.name.span()) {
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
        check_in_network(
            checker,
            *bridge.host_address,
            bridge.host_address.span(),
            &format!("{path}.host_address"),
            network,
            &bridge.name,
        );
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
                    .error(&rules::ROLE_MISMATCH, gateway.span(), format!("{path}.gateway"), format!("internal bridge `{}` cannot have an upstream gateway; the host ({}) is its router", *bridge.name, *bridge.host_address))
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
            host_address: *bridge.host_address,
            gateway: bridge.gateway.as_ref().map(|g| **g),
            v6,
            masquerade: bridge.masquerade,
            vlan_aware: vlan_aware.is_some_and(|flag| **flag),
        });
    }
    for (n, (bridge, &i)) in out.iter().zip(&indices).enumerate() {
        let overlapping = out[..n].iter().find(|o| {
            o.network.contains(&bridge.network.network())
                || bridge.network.contains(&o.network.network())
        });
        if let Some(other) = overlapping {
            checker.error(&rules::ADDRESS_OUTSIDE_NETWORK, blueprint.bridges[i].cidr.span(), format!("bridge[{i}].cidr"), format!("{} overlaps {} of bridge `{}`; an address could not tell which segment it is on", bridge.network, other.network, other.name));
        }
    }
    let public: Vec<_> = blueprint
        .bridges
        .iter()
        .filter(|b| *b.role == BridgeRole::Public)
        .collect();
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

pub(super) fn host(
    checker: &mut Checker,
    blueprint: &Blueprint,
    bridges: &[model::Bridge],
) -> model::Host {
    let host = &blueprint.host;
    checker.check_str(
        &host.node,
        "host.node",
        &rules::INVALID_DNS_NAME,
        names::check_label,
    );
    let disk_storage = checker.parse(
        &host.disk_storage,
        "host.disk_storage",
        &rules::INVALID_IDENTIFIER,
    );
    let file_storage = checker.parse(
        &host.file_storage,
        "host.file_storage",
        &rules::INVALID_IDENTIFIER,
    );
    if host.dns.is_empty() {
        checker
            .error(
                &rules::EMPTY_LIST,
                host.dns.span(),
                "host.dns",
                "`host.dns` is empty: VMs and nodes need at least one DNS server",
            )
            .help =
            Some("list resolvers the machines can reach, e.g. `dns = [\"1.1.1.1\"]`".into());
    }
    let public_address = bridges
        .iter()
        .find(|b| b.role == BridgeRole::Public)
        .map(|b| b.host_address)
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    let api_url = checker.parse_or(
        &host.api,
        &format!("https://{public_address}:8006"),
        "host.api",
        &rules::INVALID_LOCATION,
    );
    // `teleport:login@node`: the same destination grammar after the prefix.
    let (ssh, ssh_route) = match &host.ssh {
        Some(ssh) => match ssh.strip_prefix(model::TELEPORT_SSH_PREFIX) {
            Some(rest) => (
                Some(crate::blueprint::Located {
                    value: rest.to_string(),
                    span: ssh.span(),
                }),
                model::SshRoute::Teleport,
            ),
            None => (Some(ssh.clone()), model::SshRoute::Direct),
        },
        None => (None, model::SshRoute::Direct),
    };
    let ssh_target = checker.parse_or(
        &ssh,
        &format!("root@{public_address}"),
        "host.ssh",
        &rules::INVALID_LOCATION,
    );
    let api_fingerprint = host.api_fingerprint.as_ref().and_then(|fingerprint| {
        let normalized = normalize_fingerprint(fingerprint);
        if normalized.is_none() {
            checker
                .error(
                    &rules::INVALID_VALUE,
                    fingerprint.span(),
                    "host.api_fingerprint",
                    format!(
                        "`{}` is not a SHA-256 certificate fingerprint",
                        **fingerprint
                    ),
                )
                .help = Some(
                "write 32 hex byte pairs separated by `:`, as `pvenode cert info` prints them"
                    .into(),
            );
        }
        normalized
    });
    model::Host {
        node: host.node.to_string(),
        api_url,
        api_fingerprint,
        ssh_target,
        ssh_route,
        api_token: host.api_token.value.clone(),
        disk_storage,
        file_storage,
        dns: host.dns.iter().map(|d| **d).collect(),
    }
}

/// `ab:cd:…` (32 pairs, `:` separated) → `AB:CD:…`.
fn normalize_fingerprint(text: &str) -> Option<String> {
    let pairs: Vec<&str> = text.trim().split(':').collect();
    let valid = pairs.len() == 32
        && pairs
            .iter()
            .all(|pair| pair.len() == 2 && pair.chars().all(|c| c.is_ascii_hexdigit()));
    valid.then(|| text.trim().to_ascii_uppercase())
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
    for (i, bridge) in blueprint.bridges.iter().enumerate() {
        claims
            .entry(bridge.name.to_string())
            .or_default()
            .push(Claim {
                address: *bridge.host_address,
                what: format!("the host on `{}`", *bridge.name),
                span: bridge.host_address.span(),
                path: format!("bridge[{i}].host_address"),
                floating: false,
            });
        if let Some(gateway) = &bridge.gateway {
            claims
                .entry(bridge.name.to_string())
                .or_default()
                .push(Claim {
                    address: **gateway,
                    what: format!("the upstream gateway of `{}`", *bridge.name),
                    span: gateway.span(),
                    path: format!("bridge[{i}].gateway"),
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
