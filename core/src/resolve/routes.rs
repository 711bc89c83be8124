//! Traffic: what listens where (`Targets`), the edge's SNI routes, the host's
//! port forwards, and that every public name Teleport serves is routed to it.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::{check_dns_name, names, port_setting, Checker};
use crate::blueprint::{Blueprint, BridgeRole, Located, Port, Protocol, TargetRef};
use crate::diagnostics::rules;
use crate::model::{self, Endpoint, GuestOs, SniHost};

/// Ports of the host itself that a forward on its public address would shadow.
const HOST_PORTS: &[(u16, &str)] = &[(22, "SSH"), (8006, "the Proxmox API and UI")];
const SSH_PORT: u16 = 22;

/// Something a route or forward can send traffic to. Everything a target
/// serves is TCP: SSH, HAProxy, Teleport, the Talos and Kubernetes APIs, and
/// a VIP's `ports` (the Cilium gateway, the API VIP).
struct Target {
    what: String,
    /// Its address on an internal bridge, if it has one.
    internal_address: Option<Ipv4Addr>,
    ports: Vec<Port>,
}

/// Every VM and VIP by name, with what listens on it.
pub(super) struct Targets {
    by_name: BTreeMap<String, Target>,
}

impl Targets {
    pub(super) fn new(
        blueprint: &Blueprint,
        vms: &[model::Vm],
        vips: &[model::Vip],
        bridges: &[model::Bridge],
        teleport: Option<&model::Teleport>,
    ) -> Self {
        let internal = |address: Ipv4Addr| {
            bridges
                .iter()
                .any(|b| b.role == BridgeRole::Internal && b.network.contains(&address))
        };
        let internal_bridge = |name: &str| {
            bridges
                .iter()
                .any(|b| b.role == BridgeRole::Internal && b.name == name)
        };
        let mut by_name = BTreeMap::new();
        for vm in vms {
            let mut ports: Vec<Port> = match vm.os {
                GuestOs::Debian { .. } => vec![Port(SSH_PORT)],
                GuestOs::Talos(talos) => talos.role.ports().iter().map(|p| Port(*p)).collect(),
            };
            if let Some(edge) = blueprint.edge.as_ref().filter(|e| *e.vm == vm.name) {
                ports.push(edge_ports(edge).0.value);
                if edge.http.is_some() {
                    ports.push(edge_ports(edge).1.value);
                }
            }
            if let Some(teleport) = teleport.filter(|t| t.vm == vm.name) {
                ports.extend([teleport.web_port, teleport.ssh_port, teleport.tunnel_port]);
                ports.extend(teleport.kubernetes.as_ref().map(|k| k.port));
            }
            ports.sort();
            ports.dedup();
            // By the NIC's bridge, so a mistyped address is reported once, as itself.
            let internal_address = vm
                .nics
                .iter()
                .find(|n| internal_bridge(&n.bridge))
                .map(|n| n.address.addr());
            by_name.insert(
                vm.name.clone(),
                Target {
                    what: format!("VM `{}`", vm.name),
                    internal_address,
                    ports,
                },
            );
        }
        for vip in vips {
            let internal_address = Some(vip.address).filter(|a| internal(*a));
            by_name.insert(
                vip.name.clone(),
                Target {
                    what: format!("VIP `{}`", vip.name),
                    internal_address,
                    ports: vip.ports.clone(),
                },
            );
        }
        Targets { by_name }
    }

    /// Resolves `NAME:PORT` to an internal endpoint, or reports why it cannot be.
    fn endpoint(
        &self,
        checker: &mut Checker,
        to: &Located<TargetRef>,
        path: &str,
    ) -> Option<Endpoint> {
        let Some(target) = self.by_name.get(&to.name) else {
            let known: Vec<_> = self.by_name.keys().map(|k| format!("`{k}`")).collect();
            checker
                .error(
                    &rules::UNDEFINED_TARGET,
                    to.span(),
                    path,
                    format!("`{}` names no VM or VIP", to.name),
                )
                .help = Some(format!("targets are {}", known.join(", ")));
            return None;
        };
        if !target.ports.contains(&to.port) {
            let listening: Vec<_> = target.ports.iter().map(|p| p.to_string()).collect();
            checker
                .error(
                    &rules::PORT_NOT_LISTENING,
                    to.span(),
                    path,
                    format!("nothing listens on port {} of {}", to.port, target.what),
                )
                .help = Some(format!(
                "{} listens on {}",
                target.what,
                listening.join(", ")
            ));
            return None;
        }
        let Some(address) = target.internal_address else {
            checker.error(
                &rules::ROLE_MISMATCH,
                to.span(),
                path,
                format!(
                    "{} has no address on an internal bridge, so the host cannot route to it",
                    target.what
                ),
            );
            return None;
        };
        Some(Endpoint {
            name: to.name.clone(),
            address,
            port: to.port,
        })
    }
}

/// The edge's HTTPS and HTTP ports, defaults applied.
fn edge_ports(edge: &crate::blueprint::Edge) -> (Located<Port>, Located<Port>) {
    (
        port_setting(&edge.https_port, 443, edge.vm.span()),
        port_setting(&edge.http_port, 80, edge.vm.span()),
    )
}

pub(super) fn edge(
    checker: &mut Checker,
    blueprint: &Blueprint,
    project: &model::Project,
    targets: &Targets,
) -> Option<model::Edge> {
    let edge = blueprint.edge.as_ref()?;
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
        let Some(backend) = targets.endpoint(checker, &route.to, &format!("edge.route[{i}].to"))
        else {
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
            Some(allow) => allow.iter().map(|net| net.value.trunc()).collect(),
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
        .and_then(|http| targets.endpoint(checker, &http.to, "edge.http.to"));
    Some(model::Edge {
        vm: edge.vm.to_string(),
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
) -> Vec<model::PortForward> {
    let mut seen: BTreeMap<(Protocol, u16), &Located<Port>> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, forward) in blueprint.forwards.iter().enumerate() {
        let path = format!("forward[{i}]");
        let key = (forward.protocol, forward.port.0);
        if let Some(first) = seen.insert(key, &forward.port) {
            checker
                .error(
                    &rules::DUPLICATE_ROUTE,
                    forward.port.span(),
                    format!("{path}.port"),
                    format!("port {} is forwarded twice", *forward.port),
                )
                .related
                .push((first.span(), "first forward".into()));
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
        let Some(to) = targets.endpoint(checker, &forward.to, &format!("{path}.to")) else {
            continue;
        };
        if forward.protocol == Protocol::Udp {
            let diagnostic = checker.error(
                &rules::PORT_NOT_LISTENING,
                forward.to.span(),
                format!("{path}.to"),
                format!(
                    "this forward is UDP, but port {} of `{}` serves TCP only",
                    forward.to.port, forward.to.name
                ),
            );
            diagnostic.label = "TCP only".into();
            diagnostic.help = Some(
                "remove `protocol = \"udp\"` (forwards are TCP by default), or forward to a \
                 service that speaks UDP"
                    .into(),
            );
            continue;
        }
        out.push(model::PortForward {
            protocol: forward.protocol,
            port: *forward.port,
            to,
        });
    }
    out
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
