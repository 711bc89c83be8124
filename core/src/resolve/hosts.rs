//! Where the VMs run: `[host]` (one Proxmox host) or `[cluster]` (the nodes
//! of one Proxmox cluster behind one API), resolved to
//! [`model::Proxmox`]. Owns each host's view of the bridges (its uplink,
//! and its own address on every internal network), the cluster's SDN
//! zone, and the checks that only make sense with several hosts: one
//! uplink each (E0162), no public address twice (E0166), every internal
//! bridge's address per host (E0163), a VNet name Proxmox takes (E0164).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::{names, network, Checker};
use crate::blueprint::{Blueprint, BridgeRole, Cluster, ClusterHost, Located, Span};
use crate::diagnostics::rules;
use crate::model;

/// The zone ID when `cluster.sdn.zone` is absent.
const DEFAULT_ZONE: &str = "wdlc";
/// VXLAN over IPv4 adds 50 bytes to each frame: a 1500-byte uplink
/// carries 1450-byte VNet frames.
const DEFAULT_VXLAN_MTU: u16 = 1450;
/// IPv6's minimum link MTU and the usual jumbo frame.
const MTU_RANGE: std::ops::RangeInclusive<u16> = 1280..=9000;

/// `None` when the blueprint has neither or both forms, or a cluster
/// without hosts to build; every other problem is reported and the hosts
/// still built, so that resolution goes on.
pub(super) fn proxmox(
    checker: &mut Checker,
    blueprint: &Blueprint,
    bridges: &[(usize, model::Bridge)],
) -> Option<model::Proxmox> {
    match (&blueprint.host, &blueprint.cluster) {
        (Some(host), None) => single(checker, host, bridges),
        (None, Some(cluster)) => cluster_hosts(checker, blueprint, cluster, bridges),
        (Some(host), Some(cluster)) => {
            let diagnostic = checker.error(
                &rules::HOST_OR_CLUSTER,
                cluster.hosts.span(),
                "cluster",
                "the blueprint has both `[host]` and `[cluster]`",
            );
            diagnostic
                .related
                .push((host.node.span(), "`[host]` is here".into()));
            diagnostic.help = Some(
                "keep `[host]` for one host, or move it into `[[cluster.host]]` for several".into(),
            );
            None
        }
        (None, None) => {
            checker
                .error(
                    &rules::HOST_OR_CLUSTER,
                    blueprint.version.span(),
                    "host",
                    "the blueprint has no `[host]` and no `[cluster]`: nowhere to run its VMs",
                )
                .help = Some(
                "add `[host]` with the Proxmox host's `node`, `api_token`, storages and `dns`"
                    .into(),
            );
            None
        }
    }
}

/// The settings every host has, read from `[host]` or a `[[cluster.host]]`.
struct HostKeys<'a> {
    path: String,
    node: &'a Located<String>,
    ssh: &'a Option<Located<String>>,
    api_fingerprint: &'a Option<Located<String>>,
    disk_storage: &'a Located<String>,
    file_storage: &'a Located<String>,
}

/// `None` without exactly one public bridge (`network::bridges` says
/// why).
fn single(
    checker: &mut Checker,
    host: &crate::blueprint::Host,
    bridges: &[(usize, model::Bridge)],
) -> Option<model::Proxmox> {
    let all: Vec<model::Bridge> = bridges.iter().map(|(_, b)| b.clone()).collect();
    let public_address = all
        .iter()
        .find(|b| b.role == BridgeRole::Public)
        .map_or(Ipv4Addr::UNSPECIFIED, |b| b.host_address);
    let keys = HostKeys {
        path: "host".into(),
        node: &host.node,
        ssh: &host.ssh,
        api_fingerprint: &host.api_fingerprint,
        disk_storage: &host.disk_storage,
        file_storage: &host.file_storage,
    };
    let bridges = model::Bridges::new(all);
    let resolved = host_of(checker, &keys, public_address, bridges);
    check_dns(checker, &host.dns, "host.dns");
    let api_url = checker.parse_or(
        &host.api,
        &format!("https://{public_address}:8006"),
        "host.api",
        &rules::INVALID_LOCATION,
    );
    let resolved = resolved?;
    Some(model::Proxmox {
        api_url,
        api_node: resolved.node.clone(),
        api_token: host.api_token.value.clone(),
        dns: host.dns.iter().map(|d| **d).collect(),
        hosts: vec![resolved],
        shared_storages: Vec::new(),
        sdn: None,
    })
}

fn cluster_hosts(
    checker: &mut Checker,
    blueprint: &Blueprint,
    cluster: &Cluster,
    bridges: &[(usize, model::Bridge)],
) -> Option<model::Proxmox> {
    if cluster.hosts.len() < 2 {
        checker
            .error(
                &rules::HOST_OR_CLUSTER,
                cluster.hosts.span(),
                "cluster.host",
                format!(
                    "`[cluster]` has {} host(s); a cluster has two or more",
                    cluster.hosts.len()
                ),
            )
            .help = Some("for one host, write `[host]` instead of `[cluster]`".into());
    }
    check_dns(checker, &cluster.dns, "cluster.dns");
    let mut nodes: BTreeMap<&str, Span> = BTreeMap::new();
    for (h, host) in cluster.hosts.iter().enumerate() {
        if let Some(first) = nodes.insert(&host.node, host.node.span()) {
            checker
                .error(
                    &rules::DUPLICATE_NAME,
                    host.node.span(),
                    format!("cluster.host[{h}].node"),
                    format!("host `{}` is listed twice", *host.node),
                )
                .related
                .push((first, "first listed here".into()));
        }
    }
    check_bridge_hosts(checker, blueprint, &nodes);
    let internal: Vec<&model::Bridge> = bridges
        .iter()
        .filter(|(_, b)| b.role == BridgeRole::Internal)
        .map(|(_, b)| b)
        .collect();
    for (i, _) in bridges
        .iter()
        .filter(|(_, b)| b.role == BridgeRole::Internal)
    {
        let bridge = &blueprint.bridges[*i];
        check_vnet_name(checker, &bridge.name, &format!("bridge[{i}].name"));
        // One `host_address6` cannot be every host's, and the SDN subnets
        // are IPv4: a cluster's VNets stay IPv4 for now.
        if let Some(cidr6) = &bridge.cidr6 {
            checker
                .error(
                    &rules::HOST_ADDRESSES,
                    cidr6.span(),
                    format!("bridge[{i}].cidr6"),
                    format!(
                        "VNet `{}` of a cluster is IPv4 only: each host would need its own IPv6 address on it",
                        *bridge.name
                    ),
                )
                .help = Some("remove `cidr6` and `host_address6`; a cluster's uplinks may still be dual stack".into());
        }
    }
    let mut hosts = Vec::new();
    let mut public_addresses: BTreeMap<Ipv4Addr, (Span, &str)> = BTreeMap::new();
    for (h, host) in cluster.hosts.iter().enumerate() {
        let path = format!("cluster.host[{h}]");
        let Some(public) = uplink(checker, blueprint, bridges, host, &path) else {
            continue;
        };
        let (index, public) = public;
        let span = blueprint.bridges[index]
            .host_address
            .as_ref()
            .map_or(blueprint.bridges[index].name.span(), |a| a.span());
        if let Some((first, other)) =
            public_addresses.insert(public.host_address, (span.clone(), &host.node))
        {
            let diagnostic = checker.error(
                &rules::SHARED_PUBLIC_ADDRESS,
                span,
                format!("bridge[{index}].host_address"),
                format!(
                    "hosts `{other}` and `{}` both claim the public address {}",
                    *host.node, public.host_address
                ),
            );
            diagnostic
                .related
                .push((first, format!("`{other}`'s uplink")));
            diagnostic.help =
                Some("give each host's public bridge its own server's address".into());
        }
        let internal = own_addresses(checker, host, &internal, &path);
        let keys = HostKeys {
            path,
            node: &host.node,
            ssh: &host.ssh,
            api_fingerprint: &host.api_fingerprint,
            disk_storage: &host.disk_storage,
            file_storage: &host.file_storage,
        };
        let public_address = public.host_address;
        let bridges = Some(model::Bridges {
            public: public.clone(),
            internal,
        });
        network::check_in_network(
            checker,
            *host.underlay,
            host.underlay.span(),
            &format!("{}.underlay", keys.path),
            cluster.network.trunc(),
            "cluster.network",
        );
        if let Some(resolved) = host_of(checker, &keys, public_address, bridges) {
            hosts.push((resolved, *host.underlay));
        }
    }
    let first_public = hosts
        .first()
        .map_or(Ipv4Addr::UNSPECIFIED, |(h, _)| h.public_address());
    let api_url: model::HttpsUrl = checker.parse_or(
        &cluster.api,
        &format!("https://{first_public}:8006"),
        "cluster.api",
        &rules::INVALID_LOCATION,
    );
    let shared_storages = cluster
        .shared_storages
        .iter()
        .enumerate()
        .map(|(i, id)| {
            checker.parse(
                id,
                &format!("cluster.shared_storages[{i}]"),
                &rules::INVALID_IDENTIFIER,
            )
        })
        .collect();
    let sdn = sdn(checker, blueprint, cluster, &internal, &hosts);
    if hosts.len() != cluster.hosts.len() || hosts.is_empty() {
        return None;
    }
    let api_node = api_node(checker, cluster, api_url.as_str(), &hosts)?;
    Some(model::Proxmox {
        api_url,
        api_node,
        api_token: cluster.api_token.value.clone(),
        dns: cluster.dns.iter().map(|d| **d).collect(),
        hosts: hosts.into_iter().map(|(h, _)| h).collect(),
        shared_storages,
        sdn: Some(sdn),
    })
}

/// The host `cluster.api` reaches: named by its node name (or
/// `NODE.domain`), its public address or its address on the hosts'
/// network. Each node serves its own certificate, so the API client pins
/// that host's; a URL naming none of them is E0168.
fn api_node(
    checker: &mut Checker,
    cluster: &Cluster,
    api_url: &str,
    hosts: &[(model::Host, Ipv4Addr)],
) -> Option<String> {
    let named = url::Url::parse(api_url)
        .ok()
        .and_then(|url| url.host_str().map(str::to_string))
        .unwrap_or_default();
    let found = hosts.iter().find(|(host, underlay)| {
        host.node == named
            || named.split('.').next() == Some(host.node.as_str()) && named.contains('.')
            || host.public_address().to_string() == named
            || underlay.to_string() == named
    });
    if let Some((host, _)) = found {
        return Some(host.node.clone());
    }
    let nodes: Vec<&str> = hosts.iter().map(|(h, _)| h.node.as_str()).collect();
    let span = cluster
        .api
        .as_ref()
        .map_or(cluster.api_token.span(), Located::span);
    let diagnostic = checker.error(
        &rules::API_NOT_A_HOST,
        span,
        "cluster.api",
        format!(
            "`{api_url}` names none of the cluster's hosts ({})",
            nodes.join(", ")
        ),
    );
    diagnostic.help = Some(
        "name one host: its node name (or NODE.domain), its public address or its `underlay` address; deploy pins the certificate that node's API serves".into(),
    );
    None
}

/// A cluster host's one uplink (E0162), with its blueprint index.
fn uplink<'a>(
    checker: &mut Checker,
    blueprint: &Blueprint,
    bridges: &'a [(usize, model::Bridge)],
    host: &ClusterHost,
    path: &str,
) -> Option<(usize, &'a model::Bridge)> {
    let own: Vec<&(usize, model::Bridge)> = bridges
        .iter()
        .filter(|(i, b)| {
            b.role == BridgeRole::Public
                && blueprint.bridges[*i]
                    .host
                    .as_ref()
                    .is_some_and(|h| **h == *host.node)
        })
        .collect();
    match own.as_slice() {
        [(i, bridge)] => Some((*i, bridge)),
        [] => {
            checker
                .error(
                    &rules::ONE_UPLINK_PER_HOST,
                    host.node.span(),
                    format!("{path}.node"),
                    format!("host `{}` has no public bridge", *host.node),
                )
                .help = Some(format!(
                "add a `[[bridge]]` with `role = \"public\"` and `host = \"{}\"`: its uplink, address and gateway",
                *host.node
            ));
            None
        }
        [(first, _), rest @ ..] => {
            for (i, bridge) in rest {
                let claimed = blueprint.bridges[*i].host.as_ref();
                let diagnostic = checker.error(
                    &rules::ONE_UPLINK_PER_HOST,
                    claimed.map_or(blueprint.bridges[*i].role.span(), Located::span),
                    format!("bridge[{i}].host"),
                    format!(
                        "bridge `{}` is a second public bridge of host `{}`",
                        bridge.name, *host.node
                    ),
                );
                diagnostic.label = "second uplink".into();
                diagnostic.related.push((
                    blueprint.bridges[*first]
                        .host
                        .as_ref()
                        .map_or(blueprint.bridges[*first].role.span(), Located::span),
                    "its first".into(),
                ));
                diagnostic.help = Some(format!(
                    "a host has one uplink (its public address, gateway and forwards): name another host in `host`, or make `{}` internal",
                    bridge.name
                ));
            }
            None
        }
    }
}

/// A host's internal bridges with its own address on each (E0163).
fn own_addresses(
    checker: &mut Checker,
    host: &ClusterHost,
    internal: &[&model::Bridge],
    path: &str,
) -> Vec<model::Bridge> {
    let given = host.addresses.as_ref();
    let span = given.map_or(host.node.span(), |a| a.span());
    for (name, address) in given.iter().flat_map(|a| a.iter()) {
        match internal.iter().find(|b| b.name.as_str() == name) {
            Some(bridge) => {
                network::check_in_network(
                    checker,
                    **address,
                    address.span(),
                    &format!("{path}.addresses.{name}"),
                    bridge.network,
                    &bridge.name,
                );
            }
            None => {
                checker
                    .error(
                        &rules::HOST_ADDRESSES,
                        address.span(),
                        format!("{path}.addresses.{name}"),
                        format!("`{name}` is not an internal bridge of the blueprint"),
                    )
                    .help = Some(
                    "list only internal bridges: the uplink's address is its `host_address`".into(),
                );
            }
        }
    }
    internal
        .iter()
        .map(|bridge| {
            let address = given.and_then(|a| a.get(bridge.name.as_str()));
            if address.is_none() {
                checker
                    .error(
                        &rules::HOST_ADDRESSES,
                        span.clone(),
                        format!("{path}.addresses"),
                        format!(
                            "host `{}` has no address on internal bridge `{}`",
                            *host.node, bridge.name
                        ),
                    )
                    .help = Some(format!(
                    "add `{} = \"…\"` to its `addresses`: the router of the VMs it runs there",
                    bridge.name
                ));
            }
            model::Bridge {
                host_address: address.map_or(Ipv4Addr::UNSPECIFIED, |a| **a),
                ..(*bridge).clone()
            }
        })
        .collect()
}

/// A bridge's `host` must be one of the cluster's (E0161).
fn check_bridge_hosts(checker: &mut Checker, blueprint: &Blueprint, nodes: &BTreeMap<&str, Span>) {
    for (i, bridge) in blueprint.bridges.iter().enumerate() {
        if let Some(host) = &bridge.host {
            if !nodes.contains_key(host.as_str()) {
                unknown_host(checker, host, &format!("bridge[{i}].host"), nodes);
            }
        }
    }
}

/// Reports a `host` naming no host of the cluster (E0161).
pub(super) fn unknown_host(
    checker: &mut Checker,
    host: &Located<String>,
    path: &str,
    nodes: &BTreeMap<&str, Span>,
) {
    let known: Vec<&str> = nodes.keys().copied().collect();
    let diagnostic = checker.error(
        &rules::UNKNOWN_HOST,
        host.span(),
        path,
        format!("`{}` is not a host of the cluster", **host),
    );
    diagnostic.label = "no `[[cluster.host]]` has this node".into();
    diagnostic.help = Some(format!("name one of: {}", known.join(", ")));
}

/// Proxmox's `pve-sdn-vnet-id` (pve-network, `PVE/Network/SDN/VnetPlugin.pm`
/// `parse_sdn_vnet_id`): a letter, then letters or digits, 2 to 8 in all.
fn check_vnet_name(checker: &mut Checker, name: &Located<String>, path: &str) {
    if !is_sdn_id(name) {
        checker
            .error(
                &rules::VNET_IDENTIFIER,
                name.span(),
                path,
                format!("`{}` cannot name an SDN VNet", **name),
            )
            .help = Some("name a cluster's internal bridge with 2 to 8 lowercase letters and digits, a letter first (e.g. `vnet1`)".into());
    }
}

/// An SDN zone or VNet ID as pve-network parses one
/// (`m/^[a-z][a-z0-9]*[a-z0-9]$/i`, at most 8 characters), kept lowercase.
fn is_sdn_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    (2..=8).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn sdn(
    checker: &mut Checker,
    blueprint: &Blueprint,
    cluster: &Cluster,
    internal: &[&model::Bridge],
    hosts: &[(model::Host, Ipv4Addr)],
) -> model::Sdn {
    let zone = cluster.sdn.zone.as_ref();
    if let Some(zone) = zone.filter(|zone| !is_sdn_id(zone)) {
        checker
            .error(
                &rules::INVALID_IDENTIFIER,
                zone.span(),
                "cluster.sdn.zone",
                format!("`{}` cannot name an SDN zone", **zone),
            )
            .help = Some(
            "2 to 8 lowercase letters and digits, a letter first (Proxmox's `pve-sdn-zone-id`)"
                .into(),
        );
    }
    let mtu = cluster.sdn.mtu.as_ref();
    if let Some(mtu) = mtu.filter(|mtu| !MTU_RANGE.contains(mtu)) {
        checker
            .error(
                &rules::OUT_OF_RANGE,
                mtu.span(),
                "cluster.sdn.mtu",
                format!("MTU {} is outside 1280 to 9000", **mtu),
            )
            .help = Some("leave it out for 1450 (a 1500-byte uplink less VXLAN's 50 bytes)".into());
    }
    let underlay = cluster.network.trunc();
    for bridge in internal {
        if bridge.network.contains(&underlay.network())
            || underlay.contains(&bridge.network.network())
        {
            checker
                .error(&rules::ADDRESS_OUTSIDE_NETWORK, cluster.network.span(), "cluster.network", format!("the hosts' network {underlay} overlaps VNet `{}` ({}): an address could not tell which segment it is on", bridge.name, bridge.network))
                .help = Some("give the VNet a subnet of its own, apart from the network between the hosts".into());
        }
    }
    let mut vnis: BTreeMap<u32, Span> = BTreeMap::new();
    let mut vnets = Vec::new();
    for bridge in internal {
        let Some((i, source)) = blueprint
            .bridges
            .iter()
            .enumerate()
            .find(|(_, b)| *b.name == bridge.name.as_str())
        else {
            continue;
        };
        let Some(vni) = &source.vni else { continue };
        if let Some(first) = vnis.insert(**vni, vni.span()) {
            checker
                .error(
                    &rules::VNET_IDENTIFIER,
                    vni.span(),
                    format!("bridge[{i}].vni"),
                    format!("VNI {} is given to two bridges", **vni),
                )
                .related
                .push((first, "first given here".into()));
        }
        vnets.push((bridge.name.clone(), **vni));
    }
    model::Sdn {
        zone: zone.map_or(DEFAULT_ZONE.to_string(), |z| z.to_string()),
        mtu: mtu.map_or(DEFAULT_VXLAN_MTU, |m| **m),
        vnets,
        peers: hosts.iter().map(|(_, underlay)| *underlay).collect(),
        network: cluster.network.trunc(),
    }
}

fn check_dns(checker: &mut Checker, dns: &Located<Vec<Located<Ipv4Addr>>>, path: &str) {
    if dns.is_empty() {
        checker
            .error(
                &rules::EMPTY_LIST,
                dns.span(),
                path,
                format!("`{path}` is empty: VMs and nodes need at least one DNS server"),
            )
            .help =
            Some("list resolvers the machines can reach, e.g. `dns = [\"1.1.1.1\"]`".into());
    }
}

/// One host's own settings; `None` without its bridges (reported where
/// they are resolved).
fn host_of(
    checker: &mut Checker,
    keys: &HostKeys<'_>,
    public_address: Ipv4Addr,
    bridges: Option<model::Bridges>,
) -> Option<model::Host> {
    let path = &keys.path;
    checker.check_str(
        keys.node,
        &format!("{path}.node"),
        &rules::INVALID_DNS_NAME,
        names::check_label,
    );
    let disk_storage = checker.parse(
        keys.disk_storage,
        &format!("{path}.disk_storage"),
        &rules::INVALID_IDENTIFIER,
    );
    let file_storage = checker.parse(
        keys.file_storage,
        &format!("{path}.file_storage"),
        &rules::INVALID_IDENTIFIER,
    );
    // `teleport:login@node`: the same destination grammar after the prefix.
    let (ssh, ssh_route) = match keys.ssh {
        Some(ssh) => match ssh.strip_prefix(model::TELEPORT_SSH_PREFIX) {
            Some(rest) => (
                Some(Located {
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
        &format!("{path}.ssh"),
        &rules::INVALID_LOCATION,
    );
    let api_fingerprint = keys.api_fingerprint.as_ref().and_then(|fingerprint| {
        let normalized = normalize_fingerprint(fingerprint);
        if normalized.is_none() {
            checker
                .error(
                    &rules::INVALID_VALUE,
                    fingerprint.span(),
                    format!("{path}.api_fingerprint"),
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
    Some(model::Host {
        node: keys.node.to_string(),
        api_fingerprint,
        ssh_target,
        ssh_route,
        disk_storage,
        file_storage,
        bridges: bridges?,
    })
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

#[cfg(test)]
mod tests {
    use super::is_sdn_id;

    #[test]
    fn sdn_ids_are_what_pve_network_parses() {
        for good in ["vmbr1", "wdlc", "ab", "vnet1234"] {
            assert!(is_sdn_id(good), "{good}");
        }
        for bad in ["v", "1vnet", "vnet-1", "vnet12345", "Vnet", "vnet_1"] {
            assert!(!is_sdn_id(bad), "{bad}");
        }
    }
}
