//! What listens where: every VM's and VIP's listeners by protocol and port —
//! what waddlec runs there (SSH, HAProxy, Teleport, the Talos and Kubernetes
//! APIs, a VIP's `ports`, all TCP) and the services a `[[vm]]` declares —,
//! and the resolution of a route's or forward's `NAME:PORT` to an internal
//! endpoint that serves its protocol.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use super::{port_setting, Checker};
use crate::blueprint::{self, Blueprint, BridgeRole, Located, Port, Protocol, Span, TargetRef};
use crate::diagnostics::rules;
use crate::model::{self, Endpoint, GuestOs};

const SSH_PORT: u16 = 22;

/// A port something listens on, with its protocol: `tcp/25`, `udp/51820`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Listener {
    protocol: Protocol,
    port: Port,
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.protocol.as_str(), self.port)
    }
}

/// What sends traffic to a target: a forward of its protocol, or a route
/// of the edge, which is TCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sender {
    Forward(Protocol),
    SniRoute,
    HttpRoute,
}

impl Sender {
    fn protocol(self) -> Protocol {
        match self {
            Sender::Forward(protocol) => protocol,
            Sender::SniRoute | Sender::HttpRoute => Protocol::Tcp,
        }
    }
}

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sender::Forward(_) => "forward",
            Sender::SniRoute => "SNI route",
            Sender::HttpRoute => "HTTP route",
        })
    }
}

/// Something a route or forward can send traffic to.
struct Target {
    what: String,
    /// Its address on an internal bridge, if it has one.
    internal_address: Option<Ipv4Addr>,
    listeners: Vec<Listener>,
    /// A `[[vm]]`, which may declare more `services`.
    declares_services: bool,
}

/// Every VM and VIP by name, with what listens on it.
pub(super) struct Targets {
    by_name: BTreeMap<String, Target>,
}

impl Targets {
    /// The internal address of the VM or VIP `name`, if it has one.
    pub(super) fn internal_address(&self, name: &str) -> Option<Ipv4Addr> {
        self.by_name.get(name)?.internal_address
    }

    /// Also checks each `[[vm]]`'s `services` (E0127, E0150).
    pub(super) fn new(
        checker: &mut Checker,
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
            let owned = waddlecs_ports(blueprint, vm, teleport);
            let mut listeners: Vec<Listener> = owned
                .iter()
                .map(|(port, _)| Listener {
                    protocol: Protocol::Tcp,
                    port: *port,
                })
                .collect();
            let declared = match vm.os {
                GuestOs::Debian { .. } => blueprint
                    .vms
                    .iter()
                    .enumerate()
                    .find(|(_, v)| *v.name == vm.name),
                GuestOs::Talos(_) => None,
            };
            if let Some((index, declared)) = declared {
                listeners.extend(services(checker, index, declared, &owned));
            }
            listeners.sort();
            listeners.dedup();
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
                    listeners,
                    declares_services: declared.is_some(),
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
                    listeners: vip
                        .ports
                        .iter()
                        .map(|port| Listener {
                            protocol: Protocol::Tcp,
                            port: *port,
                        })
                        .collect(),
                    declares_services: false,
                },
            );
        }
        Targets { by_name }
    }

    /// Resolves `NAME:PORT` to an internal endpoint serving the sender's
    /// protocol, or reports why it cannot be.
    pub(super) fn endpoint(
        &self,
        checker: &mut Checker,
        to: &Located<TargetRef>,
        path: &str,
        sender: Sender,
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
        let wanted = Listener {
            protocol: sender.protocol(),
            port: to.port,
        };
        if !target.listeners.contains(&wanted) {
            not_listening(checker, target, to, path, wanted, sender);
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

/// E0111, with the fix that fits: the other protocol, or a `services` entry.
fn not_listening(
    checker: &mut Checker,
    target: &Target,
    to: &Located<TargetRef>,
    path: &str,
    wanted: Listener,
    sender: Sender,
) {
    let protocol = wanted.protocol.as_str();
    let declare = format!(
        "{{ port = {}{} }}",
        wanted.port,
        match wanted.protocol {
            Protocol::Tcp => "",
            Protocol::Udp => ", protocol = \"udp\"",
        }
    );
    let other = target.listeners.iter().find(|l| l.port == wanted.port);
    let diagnostic = match other {
        Some(other) => {
            let diagnostic = checker.error(
                &rules::PORT_NOT_LISTENING,
                to.span(),
                path,
                format!(
                    "this {sender} is {}, but port {} of {} serves {} only",
                    protocol.to_uppercase(),
                    wanted.port,
                    target.what,
                    other.protocol.as_str().to_uppercase()
                ),
            );
            diagnostic.label = format!("{} only", other.protocol.as_str().to_uppercase());
            diagnostic
        }
        None => {
            let diagnostic = checker.error(
                &rules::PORT_NOT_LISTENING,
                to.span(),
                path,
                format!(
                    "nothing listens on {wanted} of {}, as this {sender} needs",
                    target.what
                ),
            );
            diagnostic.label = "not served".into();
            diagnostic
        }
    };
    let listening: Vec<_> = target.listeners.iter().map(|l| l.to_string()).collect();
    let mut help = format!("{} listens on {}", target.what, listening.join(", "));
    if target.declares_services {
        help.push_str(&format!(
            "; if it serves {wanted} too, add `{declare}` to the `services` of `[[vm]]` `{}`",
            to.name
        ));
    }
    match (other, wanted.protocol) {
        (Some(_), Protocol::Udp) => {
            help.push_str("; or remove `protocol = \"udp\"` (forwards are TCP by default)")
        }
        (Some(_), Protocol::Tcp) if sender == Sender::Forward(Protocol::Tcp) => {
            help.push_str("; or add `protocol = \"udp\"` to the forward")
        }
        _ => {}
    }
    diagnostic.help = Some(help);
}

/// The TCP ports waddlec's own software holds on a VM, each with its owner.
fn waddlecs_ports(
    blueprint: &Blueprint,
    vm: &model::Vm,
    teleport: Option<&model::Teleport>,
) -> Vec<(Port, &'static str)> {
    let mut owned: Vec<(Port, &'static str)> = match vm.os {
        GuestOs::Debian { .. } => vec![(Port(SSH_PORT), "SSH")],
        GuestOs::Talos(talos) => talos
            .role
            .ports()
            .iter()
            .map(|p| (Port(*p), "Talos"))
            .collect(),
    };
    if let Some(edge) = blueprint.edge.as_ref().filter(|e| *e.vm == vm.name) {
        let (https, http) = edge_ports(edge);
        owned.push((https.value, "HAProxy's HTTPS port"));
        if edge.http.is_some() {
            owned.push((http.value, "HAProxy's HTTP port"));
        }
    }
    if let Some(teleport) = teleport.filter(|t| t.vm == vm.name) {
        owned.extend([
            (teleport.web_port, "Teleport's web port"),
            (teleport.ssh_port, "Teleport's SSH proxy"),
            (teleport.tunnel_port, "Teleport's reverse tunnel"),
        ]);
        owned.extend(
            teleport
                .kubernetes
                .as_ref()
                .map(|k| (k.port, "Teleport's Kubernetes proxy")),
        );
    }
    owned
}

/// A `[[vm]]`'s declared services, each listed once and on no port
/// waddlec's own software holds there.
fn services(
    checker: &mut Checker,
    index: usize,
    vm: &blueprint::Vm,
    owned: &[(Port, &'static str)],
) -> Vec<Listener> {
    let mut seen: BTreeMap<Listener, Span> = BTreeMap::new();
    for (s, service) in vm.services.iter().enumerate() {
        let path = format!("vm[{index}].services[{s}]");
        let listener = Listener {
            protocol: service.protocol,
            port: *service.port,
        };
        if let Some(first) = seen.get(&listener) {
            let diagnostic = checker.error(
                &rules::DUPLICATE_PORT,
                service.span(),
                path,
                format!("VM `{}` declares {listener} twice", *vm.name),
            );
            diagnostic.label = "again".into();
            diagnostic
                .related
                .push((first.clone(), "first declared here".into()));
            diagnostic.help =
                Some("declare each service once; was another port or protocol meant?".into());
            continue;
        }
        let taken = owned
            .iter()
            .find(|(port, _)| listener.protocol == Protocol::Tcp && *port == listener.port);
        if let Some((_, owner)) = taken {
            let diagnostic = checker.error(
                &rules::SERVICE_PORT_TAKEN,
                service.port.span(),
                format!("{path}.port"),
                format!(
                    "{listener} of VM `{}` is {owner}, which waddlec runs there",
                    *vm.name
                ),
            );
            diagnostic.label = "already in use".into();
            diagnostic.help = Some(format!(
                "remove this entry (routes and forwards may already target {owner}), or move \
                 the service to a free port"
            ));
            continue;
        }
        seen.insert(listener, service.span());
    }
    seen.into_keys().collect()
}

/// The edge's HTTPS and HTTP ports, defaults applied.
pub(super) fn edge_ports(edge: &blueprint::Edge) -> (Located<Port>, Located<Port>) {
    (
        port_setting(&edge.https_port, 443, edge.vm.span()),
        port_setting(&edge.http_port, 80, edge.vm.span()),
    )
}
