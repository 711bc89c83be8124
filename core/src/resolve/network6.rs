//! The bridges' optional IPv6 side: the public bridge's global prefix with
//! the host's address and its router, internal bridges' unique local
//! prefixes, the NICs' `address6` inside them, and no IPv6 address claimed
//! twice on a bridge (E0143–E0146).

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use ipnet::Ipv6Net;

use super::Checker;
use crate::blueprint::{Blueprint, Bridge, BridgeRole, Located, Span};
use crate::diagnostics::rules;
use crate::model;

/// Global unicast: what a provider routes to the host.
const GLOBAL_UNICAST: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);
/// Unique local addresses (RFC 4193), the locally assigned half.
const UNIQUE_LOCAL: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0), 8);
/// Link-local: where providers' routers often answer (`fe80::1`).
const LINK_LOCAL: Ipv6Net = Ipv6Net::new_assert(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10);

/// The IPv6 side of `bridge`, if it has `cidr6` and `host_address6`;
/// every problem reported. A refused prefix or address is still returned
/// (no model is built with an error), so the NICs on the bridge are
/// checked against what the blueprint says rather than reported again.
pub(super) fn bridge_v6(
    checker: &mut Checker,
    bridge: &Bridge,
    path: &str,
) -> Option<model::BridgeV6> {
    let public = *bridge.role == BridgeRole::Public;
    if let (false, Some(gateway)) = (public, &bridge.gateway6) {
        checker
            .error(
                &rules::IPV6_BRIDGE_INCOMPLETE,
                gateway.span(),
                format!("{path}.gateway6"),
                format!(
                    "internal bridge `{}` cannot have an upstream IPv6 router; the host is its router",
                    *bridge.name
                ),
            )
            .help = Some("remove `gateway6`".into());
    }
    let Some(cidr6) = &bridge.cidr6 else {
        for (key, span) in [
            (
                "host_address6",
                bridge.host_address6.as_ref().map(|a| a.span()),
            ),
            (
                "gateway6",
                bridge
                    .gateway6
                    .as_ref()
                    .filter(|_| public)
                    .map(|g| g.span()),
            ),
        ] {
            if let Some(span) = span {
                checker
                    .error(
                        &rules::IPV6_BRIDGE_INCOMPLETE,
                        span,
                        format!("{path}.{key}"),
                        format!("bridge `{}` has `{key}` but no `cidr6`", *bridge.name),
                    )
                    .help =
                    Some("add the bridge's IPv6 prefix as `cidr6`, or remove the key".into());
            }
        }
        return None;
    };
    let network = cidr6.trunc();
    if network != **cidr6 {
        checker
            .error(
                &rules::IPV6_ADDRESS_OUTSIDE_PREFIX,
                cidr6.span(),
                format!("{path}.cidr6"),
                format!("`{}` has host bits set; the prefix is `{network}`", **cidr6),
            )
            .help = Some(format!(
            "write `cidr6 = \"{network}\"` and put the host's address in `host_address6`"
        ));
    }
    let (scope, wanted, fix) = if public {
        (
            GLOBAL_UNICAST,
            "a global unicast prefix (in 2000::/3)",
            "use the prefix your provider routes to the host",
        )
    } else {
        (
            UNIQUE_LOCAL,
            "a unique local prefix (in fd00::/8)",
            "pick a random `fdXX:XXXX:XXXX::/48` (RFC 4193) and give the bridge a /64 of it",
        )
    };
    if !scope.contains(&network) {
        let diagnostic = checker.error(
            &rules::IPV6_PREFIX_SCOPE,
            cidr6.span(),
            format!("{path}.cidr6"),
            format!(
                "{} bridge `{}` needs {wanted}, not {network}",
                if public { "public" } else { "internal" },
                *bridge.name
            ),
        );
        diagnostic.label = format!("not in {scope}");
        diagnostic.help = Some(fix.into());
    }
    let Some(host_address) = &bridge.host_address6 else {
        checker
            .error(
                &rules::IPV6_BRIDGE_INCOMPLETE,
                cidr6.span(),
                format!("{path}.host_address6"),
                format!(
                    "bridge `{}` has a `cidr6` but no `host_address6`",
                    *bridge.name
                ),
            )
            .help = Some("set `host_address6` to the host's own address in the prefix".into());
        return None;
    };
    check_in_prefix(
        checker,
        host_address,
        &format!("{path}.host_address6"),
        network,
        &bridge.name,
    );
    let gateway = match (&bridge.gateway6, public) {
        (Some(gateway), true) => {
            if !LINK_LOCAL.contains(&**gateway) {
                check_in_prefix(
                    checker,
                    gateway,
                    &format!("{path}.gateway6"),
                    network,
                    &bridge.name,
                );
            }
            Some(**gateway)
        }
        (None, true) => {
            checker
                .error(
                    &rules::IPV6_BRIDGE_INCOMPLETE,
                    cidr6.span(),
                    format!("{path}.gateway6"),
                    format!(
                        "public bridge `{}` has a `cidr6` but no `gateway6`",
                        *bridge.name
                    ),
                )
                .help = Some(
                "set `gateway6` to the upstream IPv6 router (often link-local, `fe80::1`)".into(),
            );
            None
        }
        (_, false) => None,
    };
    Some(model::BridgeV6 {
        network,
        host_address: **host_address,
        gateway,
    })
}

/// Reports an address outside `network`, or equal to its subnet-router
/// anycast address (the prefix itself, which routers answer).
fn check_in_prefix(
    checker: &mut Checker,
    address: &Located<Ipv6Addr>,
    path: &str,
    network: Ipv6Net,
    bridge: &str,
) {
    let problem = if !network.contains(&**address) {
        format!(
            "{} is outside bridge `{bridge}`'s `cidr6` ({network})",
            **address
        )
    } else if **address == network.network() && network.prefix_len() < 127 {
        format!(
            "{} is the subnet-router anycast address of bridge `{bridge}` ({network})",
            **address
        )
    } else {
        return;
    };
    checker
        .error(
            &rules::IPV6_ADDRESS_OUTSIDE_PREFIX,
            address.span(),
            path,
            problem,
        )
        .label = format!("not a host address in {network}");
}

/// A NIC's IPv6 address with its bridge's prefix length; `None` when it
/// has none, or its bridge has no `cidr6` (reported).
pub(super) fn nic_address6(
    checker: &mut Checker,
    address6: Option<&Located<Ipv6Addr>>,
    path: &str,
    bridge: &model::Bridge,
) -> Option<Ipv6Net> {
    let address6 = address6?;
    let Some(v6) = bridge.v6 else {
        checker
            .error(
                &rules::IPV6_ADDRESS_OUTSIDE_PREFIX,
                address6.span(),
                path,
                format!(
                    "bridge `{}` has no `cidr6`, so no IPv6 address on it",
                    bridge.name
                ),
            )
            .help = Some(format!(
            "give bridge `{}` a unique local `cidr6` and `host_address6`, or remove `address6`",
            bridge.name
        ));
        return None;
    };
    check_in_prefix(checker, address6, path, v6.network, &bridge.name);
    Ipv6Net::new(**address6, v6.network.prefix_len()).ok()
}

/// No IPv6 address claimed twice on one bridge: the host's, the NICs'.
pub(super) fn check_addresses6(checker: &mut Checker, blueprint: &Blueprint) {
    let mut claims: BTreeMap<(&str, Ipv6Addr), (Span, String)> = BTreeMap::new();
    let bridges = blueprint.bridges.iter().enumerate().filter_map(|(i, b)| {
        let address = b.host_address6.as_ref()?;
        Some((
            b.name.as_str(),
            address,
            format!("bridge[{i}].host_address6"),
            "the host".to_string(),
        ))
    });
    let nics = blueprint.vms.iter().enumerate().flat_map(|(i, vm)| {
        vm.nics.iter().enumerate().filter_map(move |(n, nic)| {
            let address = nic.address6.as_ref()?;
            Some((
                nic.bridge.as_str(),
                address,
                format!("vm[{i}].nics[{n}].address6"),
                format!("VM `{}`", *vm.name),
            ))
        })
    });
    for (bridge, address, path, what) in bridges.chain(nics) {
        match claims.get(&(bridge, **address)) {
            Some((first, other)) => {
                let diagnostic = checker.error(
                    &rules::DUPLICATE_IPV6_ADDRESS,
                    address.span(),
                    path,
                    format!(
                        "{} is claimed by {other} and by {what} on bridge `{bridge}`",
                        **address
                    ),
                );
                diagnostic.label = format!("{what} claims it again");
                diagnostic
                    .related
                    .push((first.clone(), format!("{other} claims it")));
            }
            None => {
                claims.insert((bridge, **address), (address.span(), what));
            }
        }
    }
}
