//! Traffic: the edge's SNI routes, the host's port forwards (each to a
//! target that serves its protocol, `Targets`), and that every public name
//! Teleport serves is routed to it.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use super::targets::{edge_ports, Sender, Targets};
use super::{check_dns_name, names, Checker};
use crate::blueprint::{Blueprint, BridgeRole, Forward, Located, Port, Protocol};
use crate::diagnostics::rules;
use crate::model::{self, SniHost};

/// Ports of the host itself that a forward on its public address would shadow.
const HOST_PORTS: &[(u16, &str)] = &[(22, "SSH"), (8006, "the Proxmox API and UI")];

pub(super) fn edge(
    checker: &mut Checker,
    blueprint: &Blueprint,
    project: &model::Project,
    targets: &Targets,
    vms: &[model::Vm],
) -> Option<model::Edge> {
    let edge = blueprint.edge.as_ref()?;
    let address6 = targets.internal_address(&edge.vm).and_then(|address| {
        vms.iter()
            .find(|vm| vm.name == *edge.vm)?
            .address6_beside(address)
    });
    if !blueprint.vms.iter().any(|vm| *vm.name == *edge.vm) {
        checker.error(
            &rules::UNDEFINED_TARGET,
            edge.vm.span(),
            "edge.vm",
            format!(
                "`{}` is not a `[[vm]]`; the edge needs a Debian VM to run HAProxy",
                *edge.vm
            ),
        );
    }
    if edge.routes.is_empty() {
        let diagnostic = checker.error(
            &rules::EDGE_WITHOUT_ROUTES,
            edge.vm.span(),
            "edge.route",
            format!(
                "the edge on `{}` has no `[[edge.route]]`: HAProxy would drop every TLS \
                 connection, since only an SNI route forwards one",
                *edge.vm
            ),
        );
        diagnostic.label = "routes nothing".into();
        diagnostic.help = Some(
            "add `[[edge.route]]` with `sni = \"HOST\"` and `to = \"NAME:PORT\"`, or remove \
             `[edge]` and the forwards to its VM"
                .into(),
        );
    }
    let (https_port, http_port) = edge_ports(edge);
    if *https_port == *http_port {
        checker.error(
            &rules::ROLE_MISMATCH,
            http_port.span(),
            "edge.http_port",
            "`http_port` and `https_port` are the same port",
        );
    }
    let mut exact = Vec::new();
    let mut wildcards = Vec::new();
    let mut seen: BTreeMap<String, &Located<String>> = BTreeMap::new();
    for (i, route) in edge.routes.iter().enumerate() {
        let path = format!("edge.route[{i}].sni");
        let host = route.sni.to_ascii_lowercase();
        if let Some(first) = seen.insert(host.clone(), &route.sni) {
            checker
                .error(
                    &rules::DUPLICATE_ROUTE,
                    route.sni.span(),
                    path.clone(),
                    format!("SNI host `{host}` is routed twice; only the first route could match"),
                )
                .related
                .push((first.span(), "first route".into()));
        }
        let Some(pattern) = sni_pattern(checker, &route.sni, &path, &project.domain) else {
            continue;
        };
        let Some(backend) = targets.endpoint(
            checker,
            &route.to,
            &format!("edge.route[{i}].to"),
            Sender::SniRoute,
        ) else {
            continue;
        };
        let allow = match &route.allow {
            Some(allow) if allow.is_empty() => {
                checker
                    .error(
                        &rules::EMPTY_LIST,
                        allow.span(),
                        format!("edge.route[{i}].allow"),
                        "`allow = []` admits no source: the route could never be used",
                    )
                    .help = Some(
                    "list the networks that may connect, or remove `allow` to admit everyone"
                        .into(),
                );
                continue;
            }
            Some(allow) => {
                for (n, net) in allow.iter().enumerate() {
                    if net.value.addr().is_ipv6() && address6.is_none() {
                        checker
                            .error(
                                &rules::IPV6_SOURCE_WITHOUT_IPV6,
                                net.span(),
                                format!("edge.route[{i}].allow[{n}]"),
                                format!(
                                    "{} is an IPv6 network, but the edge `{}` has no IPv6 address",
                                    net.value, *edge.vm
                                ),
                            )
                            .help = Some(format!(
                            "give `{}`'s NIC an `address6`, or remove the entry",
                            *edge.vm
                        ));
                    }
                }
                allow.iter().map(|net| net.value.trunc()).collect()
            }
            None => Vec::new(),
        };
        let route = model::SniRoute {
            host: pattern,
            backend,
            allow,
        };
        match route.host {
            SniHost::Exact(_) => exact.push(route),
            SniHost::Wildcard { .. } => wildcards.push(route),
        }
    }
    // The most specific wildcard must be tried first: `*.a.example.org` before `*.example.org`.
    wildcards.sort_by_key(|r| match &r.host {
        SniHost::Wildcard { suffix } => std::cmp::Reverse(suffix.len()),
        SniHost::Exact(_) => std::cmp::Reverse(0),
    });
    exact.extend(wildcards);
    let http = edge
        .http
        .as_ref()
        .and_then(|http| targets.endpoint(checker, &http.to, "edge.http.to", Sender::HttpRoute));
    Some(model::Edge {
        vm: edge.vm.to_string(),
        address6,
        https_port: *https_port,
        http_port: *http_port,
        routes: exact,
        http,
    })
}

/// `teleport.example.org` or `*.apps.example.org`, under the project domain.
fn sni_pattern(
    checker: &mut Checker,
    sni: &Located<String>,
    path: &str,
    domain: &str,
) -> Option<SniHost> {
    let host = sni.to_ascii_lowercase();
    let (pattern, name) = match host.strip_prefix("*.") {
        Some(rest) => (
            SniHost::Wildcard {
                suffix: format!(".{rest}"),
            },
            rest.to_string(),
        ),
        None => (SniHost::Exact(host.clone()), host.clone()),
    };
    if name.contains('*') || (host.contains('*') && !host.starts_with("*.")) {
        checker
            .error(
                &rules::MALFORMED_WILDCARD,
                sni.span(),
                path,
                format!("`{}` is not a valid wildcard", **sni),
            )
            .help = Some(format!(
            "a wildcard is `*.` followed by a name, e.g. `*.apps.{domain}`"
        ));
        return None;
    }
    if let Err(reason) = check_dns_name(&name) {
        checker.error(
            &rules::INVALID_DNS_NAME,
            sni.span(),
            path,
            format!("`{}` is not a valid DNS name: {reason}", **sni),
        );
        return None;
    }
    if !names::is_under_domain(&name, domain) {
        checker
            .error(
                &rules::HOST_OUTSIDE_DOMAIN,
                sni.span(),
                path,
                format!("`{}` is not under the project domain `{domain}`", **sni),
            )
            .help = Some(format!(
            "public names must end in `.{domain}`; fix the name or `project.domain`"
        ));
        return None;
    }
    Some(pattern)
}

pub(super) fn forwards(
    checker: &mut Checker,
    blueprint: &Blueprint,
    targets: &Targets,
    vms: &[model::Vm],
    bridges: &[model::Bridge],
) -> Vec<model::PortForward> {
    let public_v6 = bridges
        .iter()
        .any(|b| b.role == BridgeRole::Public && b.v6.is_some());
    // A forward is on the public address of the host its target runs on:
    // in a cluster one port may be forwarded once per host.
    let mut seen: BTreeMap<(&str, Protocol, u16), &Located<Port>> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, forward) in blueprint.forwards.iter().enumerate() {
        let path = format!("forward[{i}]");
        // A lone host forwards everything on its one address (a VIP too);
        // in a cluster a forward's target is a VM (E0167).
        let host = match blueprint.cluster {
            Some(_) => vms
                .iter()
                .find(|vm| vm.name == *forward.to.name)
                .map_or("", |vm| vm.host.as_str()),
            None => "",
        };
        let key = (host, forward.protocol, forward.port.0);
        if let Some(first) = seen.insert(key, &forward.port) {
            let (on, help) = match blueprint.cluster {
                Some(_) => (
                    format!(" on host `{host}`"),
                    "remove one of the two, or forward the port to a VM on another host (each host forwards its own public address)",
                ),
                None => (String::new(), "remove one of the two forwards"),
            };
            let diagnostic = checker.error(
                &rules::DUPLICATE_ROUTE,
                forward.port.span(),
                format!("{path}.port"),
                format!("port {} is forwarded twice{on}", *forward.port),
            );
            diagnostic
                .related
                .push((first.span(), "first forward".into()));
            diagnostic.help = Some(help.into());
        }
        if let Some((_, what)) = HOST_PORTS
            .iter()
            .find(|(p, _)| *p == forward.port.0 && forward.protocol == Protocol::Tcp)
        {
            checker
                .error(
                    &rules::ROLE_MISMATCH,
                    forward.port.span(),
                    format!("{path}.port"),
                    format!(
                        "forwarding port {} would hide the host's own {what} on its public address",
                        *forward.port
                    ),
                )
                .help =
                Some("forward another public port, or reach the service through Teleport".into());
        }
        let Some(to) = targets.endpoint(
            checker,
            &forward.to,
            &format!("{path}.to"),
            Sender::Forward(forward.protocol),
        ) else {
            continue;
        };
        let to6 = forward6(checker, forward, &path, &to, vms, public_v6);
        out.push(model::PortForward {
            protocol: forward.protocol,
            port: *forward.port,
            to,
            to6,
        });
    }
    out
}

/// A forward's IPv6 target, when it is dual stack: by default whenever
/// the public bridge has IPv6, unless it says `ipv6 = false` (E0142).
fn forward6(
    checker: &mut Checker,
    forward: &Forward,
    path: &str,
    to: &model::Endpoint,
    vms: &[model::Vm],
    public_v6: bool,
) -> Option<Ipv6Addr> {
    let asked = forward.ipv6.as_ref();
    if !asked.map_or(public_v6, |flag| **flag) {
        return None;
    }
    if !public_v6 {
        let flag = asked?;
        checker
            .error(
                &rules::FORWARD_WITHOUT_IPV6,
                flag.span(),
                format!("{path}.ipv6"),
                "`ipv6 = true`, but the public bridge has no `cidr6`",
            )
            .help = Some(
            "give the public bridge `cidr6`, `host_address6` and `gateway6`, or remove `ipv6`"
                .into(),
        );
        return None;
    }
    let address6 = vms
        .iter()
        .find(|vm| vm.name == to.name)
        .and_then(|vm| vm.address6_beside(to.address));
    if address6.is_none() {
        let diagnostic = checker.error(
            &rules::FORWARD_WITHOUT_IPV6,
            forward.to.span(),
            format!("{path}.to"),
            format!(
                "the public bridge has IPv6, but `{}` ({}) has no IPv6 address to forward port {} to",
                to.name, to.address, *forward.port
            ),
        );
        diagnostic.label = "IPv4 only".into();
        diagnostic.help = Some(format!(
            "give `{}`'s NIC an `address6` in its bridge's `cidr6`, or set `ipv6 = false` on the forward",
            to.name
        ));
    }
    address6
}

/// Teleport's own name and its app names only work if the edge sends them to
/// Teleport's web port.
pub(super) fn check_public_hosts(
    checker: &mut Checker,
    blueprint: &Blueprint,
    edge: Option<&model::Edge>,
    teleport: Option<&model::Teleport>,
) {
    let (Some(teleport), Some(settings)) = (teleport, blueprint.teleport.as_ref()) else {
        return;
    };
    let Some(edge) = edge else {
        checker
            .error(
                &rules::UNROUTED_PUBLIC_HOST,
                settings.public_host.span(),
                "teleport.public_host",
                format!(
                    "`{}` is served by Teleport, but there is no `[edge]` to route it from the internet",
                    teleport.public_host
                ),
            )
            .help = Some("add an `[edge]` whose routes send Teleport's names to its web port".into());
        return;
    };
    // App subdomains are checked with a sample name under the proxy's host.
    let sample = format!("app.{}", teleport.public_host);
    let subdomains = teleport.app_subdomains.then(|| {
        (
            &settings.public_host,
            "teleport.app_subdomains".to_string(),
            sample,
        )
    });
    let hosts = std::iter::once((
        &settings.public_host,
        "teleport.public_host".to_string(),
        teleport.public_host.clone(),
    ))
    .chain(settings.apps.iter().enumerate().map(|(i, app)| {
        (
            &app.public_host,
            format!("teleport.app[{i}].public_host"),
            app.public_host.to_ascii_lowercase(),
        )
    }))
    .chain(subdomains);
    for (host, path, name) in hosts {
        let route = edge.routes.iter().find(|r| match &r.host {
            SniHost::Exact(exact) => *exact == name,
            SniHost::Wildcard { suffix } => name.ends_with(suffix.as_str()),
        });
        let reaches_teleport = route
            .is_some_and(|r| r.backend.name == teleport.vm && r.backend.port == teleport.web_port);
        if !reaches_teleport {
            checker
                .error(
                    &rules::UNROUTED_PUBLIC_HOST,
                    host.span(),
                    path,
                    format!(
                        "`{name}` is served by Teleport, but the edge does not route it to `{}:{}`",
                        teleport.vm, teleport.web_port
                    ),
                )
                .help = Some(format!(
                "add `[[edge.route]] sni = \"{}\"` with `to = \"{}:{}\"`",
                if path == "teleport.app_subdomains" {
                    format!("*.{}", teleport.public_host)
                } else {
                    name.clone()
                },
                teleport.vm,
                teleport.web_port
            ));
        }
    }
}

/// With Kubernetes access, `tsh kube` reaches the proxy's Kubernetes
/// listener on the public host: it must be forwarded there.
pub(super) fn check_kube_forward(
    checker: &mut Checker,
    blueprint: &Blueprint,
    forwards: &[model::PortForward],
    teleport: Option<&model::Teleport>,
) {
    let Some((teleport, kube)) = teleport.and_then(|t| t.kubernetes.as_ref().map(|k| (t, k)))
    else {
        return;
    };
    let forwarded = forwards
        .iter()
        .any(|f| f.to.name == teleport.vm && f.to.port == kube.port);
    if forwarded {
        return;
    }
    let Some(settings) = blueprint
        .teleport
        .as_ref()
        .and_then(|t| t.kubernetes.as_ref())
    else {
        return;
    };
    checker
        .error(
            &rules::UNROUTED_PUBLIC_HOST,
            settings.kubeconfig.span(),
            "teleport.kubernetes",
            format!(
                "Teleport's Kubernetes proxy (`{}:{}`) is not forwarded from the host's public address: `tsh kube` could not reach it",
                teleport.vm, kube.port
            ),
        )
        .help = Some(format!(
        "add `[[forward]] port = {port}` with `to = \"{}:{port}\"`",
        teleport.vm,
        port = kube.port
    ));
}
