//! The network proof: the waddle blueprint's platform rebuilt as network
//! namespaces, its rendered artifacts applied by their consumers, and real
//! connections from the internet deciding what reaches what.
//!
//! ```text
//!  internet ns              host ns (Proxmox)                  one ns per VM / VIP
//! ┌───────────────────┐    ┌────────────────────────────┐     ┌─────────────────────────┐
//! │ eth0 203.0.113.1  ├────┤ uplink ─ vmbr0 203.0.113.10│  ┌──┤ haproxy 10.10.0.3       │
//! │  (upstream gw)    │    │                            │  │  │  haproxy, rendered cfg  │
//! │ clients (/32):    │    │ vmbr1 10.10.0.1 ─ tap100i0 ├──┘  └─────────────────────────┘
//! │  198.51.100.23    │    │                 ─ tap101i0 ├──┐  ┌─────────────────────────┐
//! │  198.51.100.99    │    │                 ─ vip-...  ├─┐└──┤ teleport 10.10.0.2      │
//! │  203.0.113.254    │    │ sysctl + WDLC-* (rendered) │ │   │  TLS :3080, :3023 :3024 │
//! │ server 192.0.2.80 │    │ stand-in pve-firewall      │ │   └─────────────────────────┘
//! └───────────────────┘    │ listeners :22 :8006        │ │   ┌─────────────────────────┐
//!                          └────────────────────────────┘ └───┤ gateway 10.10.0.30      │
//!                                                             │  TLS :443, HTTP :80     │
//!                                                             └─────────────────────────┘
//! ```
//!
//! (Addresses as in `blueprints/waddle.toml`; every one of them, every bridge,
//! VM, port and route is read from the compiled `Model`. The internet side
//! uses documentation ranges only: the upstream gateway is the public
//! bridge's `gateway`, the clients are the operator's address, 198.51.100.99
//! (a stranger) and an address on the public segment (a neighbour at the
//! same provider), and 192.0.2.80 is a server on the internet.)
//!
//! What it proves, each assertion labelled with the blueprint entries that
//! decide it (so a routing change in the blueprint changes the expectations,
//! not this code):
//!
//! - TLS ClientHellos to the public address land where `[[forward]]` and
//!   `[[edge.route]]` say (the backend's TLS server sees the SNI, so haproxy
//!   passes TLS through), names no route claims and a ClientHello without
//!   SNI are closed by haproxy, plain HTTP on :80 reaches `[edge.http]`.
//! - The path is the one the blueprint describes, not the seed's: the
//!   public address lives only on the host's vmbr0 (the internet's ARP
//!   entry for it is vmbr0's MAC, no VM namespace holds a public address);
//!   every connection to :80/:443 bumps the packet counter of the rendered
//!   DNAT rule for that port by one; the HAProxy VM receives it from the
//!   client's own address (no SNAT on the way in); backends behind haproxy
//!   see the HAProxy VM, backends of a direct forward see the client.
//! - 3023/3024 reach Teleport; 22 and 8006 on the host are reachable from
//!   the operator's address only while `[[firewall.temporary]]` rules
//!   exist, never from a stranger or a neighbour on the public subnet (so
//!   `local_network` is pinned to the host); with the rules removed from
//!   the blueprint (a variant built by this test), from nobody on the
//!   internet, while the internal bridge still reaches the API that
//!   Teleport's `proxmox` app points at.
//! - From the internal bridge each VM reaches exactly the host services it
//!   uses (`Model::host_access`): the Talos nodes SSH (democratic-csi) and
//!   iSCSI, the Teleport VM SSH and the API, the internet-facing edge VM
//!   none of 22, 3260 or the API; everything else from the bridge is
//!   dropped by the rendered `IN DROP -i <bridge>`.
//! - Every internal machine reaches the internet as the host's public
//!   address (the rendered MASQUERADE rule; the internet has no route to
//!   the internal network).
//!
//! pve-firewall is not available here: `pve_firewall_ruleset` is a
//! test-only stand-in that translates exactly the subset of `cluster.fw` and
//! `host.fw` waddlec writes into iptables rules in the host namespace, in the
//! order pve-firewall's `PVEFW-HOST-IN` uses, and panics on anything else.
//!
//! Every listener is a process this test starts (`sni_lab.py serve`) in one
//! of its own namespaces; the root namespace's interfaces and iptables are
//! never touched, and everything goes away when the namespaces drop. Probes
//! of one batch run at once; a dropped one costs the client's 2 s connect
//! timeout, so the whole proof takes about 17 s.
//!
//! A neighbour on the public subnet that routes the internal networks via
//! the host's public address reaches no internal listener (the forwards'
//! targets, the edge's backends) directly: its connections time out, every
//! SYN it sends arrives on the public bridge and is taken by the rendered
//! `WDLC-FORWARD` DROP rule for that internal bridge (its packet counter
//! rises by exactly their number, and in no other batch), while its
//! connections through the forwards keep working.

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use waddlec::blueprint::{Date, SourceFile};
use waddlec::model::{Bridge, Edge, Model, Policy, Protocol, SniHost, SniRoute, TeleportApp};

use crate::support::netns::{Netns, Reaped};
use crate::support::pve_firewall;
use crate::support::{build, repo_root, require, sh};

/// A client on the internet that no rule names.
const STRANGER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 99);
/// A server on the internet, for the way out.
const INTERNET_SERVER: (Ipv4Addr, u16) = (Ipv4Addr::new(192, 0, 2, 80), 443);

#[test]
fn the_public_address_routes_and_filters_as_the_blueprint_says() {
    for tool in ["ip", "ss", "iptables", "iptables-restore", "iptables-save"] {
        require(tool);
    }
    require("haproxy");
    require("python3");
    require("openssl");
    let started = Instant::now();
    let blueprint = repo_root().join("blueprints/waddle.toml");
    let model = compile(&fs::read_to_string(&blueprint).unwrap());
    let (scratch, out) = build(&blueprint);

    // The same platform once the operator's temporary rules are gone.
    let variant = without_temporary_rules(&blueprint, scratch.path());
    let variant_model = compile(&fs::read_to_string(&variant).unwrap());
    assert!(
        variant_model.firewall.temporary.is_empty() && !model.firewall.temporary.is_empty(),
        "the variant drops exactly the temporary rules"
    );
    let (_variant_guard, variant_out) = build(&variant);
    only_the_firewall_differs(&out, &variant_out);

    let mut lab = Lab::new(&model, scratch.path());
    lab.path_facts();
    // In the order of the host's units: pve-firewall, then
    // waddlec-host-network (After=pve-firewall.service).
    lab.apply_pve_firewall(&out, "with the temporary operator rules");
    lab.apply_host_network(&out);
    lab.start(&out);

    lab.public_probes(&model, "temporary rules present");

    lab.apply_pve_firewall(&variant_out, "after the temporary rules are removed");
    lab.public_probes(&variant_model, "temporary rules removed");

    lab.vms_to_the_host(&model);
    lab.routed_neighbour(&model);
    lab.way_out();
    lab.neighbours_see_the_host();
    lab.nothing_else_heard();
    println!("network proof finished in {:.1?}", started.elapsed());
}

fn compile(text: &str) -> Model {
    let source = SourceFile {
        name: "blueprint".into(),
        text: text.into(),
    };
    // The clock only decides whether expired temporary rules are warned about.
    let today = Date {
        year: 2000,
        month: 1,
        day: 1,
    };
    waddlec::compile(&source, today)
        .map(|c| c.model)
        .unwrap_or_else(|_| panic!("the blueprint compiles"))
}

/// The blueprint with every `[[firewall.temporary]]` table removed.
fn without_temporary_rules(blueprint: &Path, dir: &Path) -> PathBuf {
    let mut document: toml::Table =
        toml::from_str(&fs::read_to_string(blueprint).unwrap()).expect("the blueprint is TOML");
    let firewall = document
        .get_mut("firewall")
        .and_then(toml::Value::as_table_mut)
        .expect("the blueprint has [firewall]");
    assert!(
        firewall.remove("temporary").is_some(),
        "the blueprint has [[firewall.temporary]] rules to remove"
    );
    let path = dir.join("without-temporary-rules.toml");
    fs::write(&path, toml::to_string(&document).unwrap()).unwrap();
    path
}

/// Removing the temporary rules changes what pve-firewall reads and nothing
/// else, so the running network and haproxy stay and only the firewall is
/// reloaded, as pve-firewall does when host.fw changes.
fn only_the_firewall_differs(out: &Path, variant_out: &Path) {
    let (a, b) = (files(out), files(variant_out));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same artifact paths"
    );
    let changed: Vec<&String> = a.keys().filter(|path| a[*path] != b[*path]).collect();
    assert!(
        changed
            .iter()
            .all(|p| p.starts_with("host/firewall/") || *p == "manifest.json"),
        "removing [[firewall.temporary]] changed more than the firewall: {changed:?}"
    );
    assert!(
        changed.iter().any(|p| p.starts_with("host/firewall/")),
        "removing [[firewall.temporary]] changed no firewall file"
    );
}

fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                let relative = path.strip_prefix(root).unwrap().display().to_string();
                found.insert(relative, fs::read(&path).unwrap());
            }
        }
    }
    found
}

/// One connection attempt and everything the blueprint predicts about it.
#[derive(Default)]
struct Probe {
    /// What is sent, from where, to where.
    what: String,
    /// `sni_lab.py probe` argument.
    spec: String,
    /// The blueprint entries that decide the outcome.
    because: Vec<String>,
    /// The way the connection takes (or where it stops).
    path: String,
    /// The client's view: `reached LISTENER`, `closed`, `timeout`, `refused`.
    outcome: String,
    /// The line the listener logs; `None`: no listener may hear of it.
    heard: Option<String>,
    /// The public port whose rendered DNAT rule it passes.
    dnat: Option<u16>,
    /// The source address the edge VM receives it from.
    edge_sees: Option<Ipv4Addr>,
    /// Whether it leaves through the rendered MASQUERADE rule.
    masquerade: bool,
    /// The internal listener it is sent to directly from the public side:
    /// its SYNs reach the host there and the rendered DROP rule takes them.
    inside: Option<(Ipv4Addr, u16)>,
}

#[derive(Clone, Copy)]
enum Hello<'a> {
    Tls(Option<&'a str>),
    Http,
    Tcp,
}

impl Hello<'_> {
    fn spec(self, source: Ipv4Addr, host: Ipv4Addr, port: u16) -> String {
        match self {
            Hello::Tls(Some(sni)) => format!("tls,{source},{host},{port},{sni}"),
            Hello::Tls(None) => format!("tls,{source},{host},{port}"),
            Hello::Http => format!("http,{source},{host},{port}"),
            Hello::Tcp => format!("tcp,{source},{host},{port}"),
        }
    }

    fn describe(self) -> String {
        match self {
            Hello::Tls(Some(sni)) => format!("TLS ClientHello SNI={sni}"),
            Hello::Tls(None) => "TLS ClientHello without SNI".into(),
            Hello::Http => "HTTP GET".into(),
            Hello::Tcp => "TCP connect".into(),
        }
    }
}

fn edge_address(model: &Model, edge: &Edge) -> Ipv4Addr {
    model
        .vm(&edge.vm)
        .and_then(|vm| vm.nics.first())
        .expect("the edge VM has a NIC")
        .address
        .addr()
}

/// The route that claims `sni`, as haproxy matches it (case-insensitively).
fn route_for<'e>(edge: &'e Edge, sni: &str) -> Option<&'e SniRoute> {
    let sni = sni.to_ascii_lowercase();
    edge.routes.iter().find(|r| match &r.host {
        SniHost::Exact(host) => *host == sni,
        SniHost::Wildcard { suffix } => sni.ends_with(suffix.as_str()),
    })
}

fn route_label(route: &SniRoute) -> String {
    let sni = match &route.host {
        SniHost::Exact(host) => host.clone(),
        SniHost::Wildcard { suffix } => format!("*{suffix}"),
    };
    format!(
        "[[edge.route]] sni = \"{sni}\" -> {}:{}",
        route.backend.name, route.backend.port
    )
}

/// Whether the host's INPUT admits `source` arriving on `bridge` to `port`,
/// and the blueprint entry that decides it. From an internal bridge only the
/// host services a VM uses are open (`Model::host_access`, rendered before a
/// DROP for the rest); from outside, the operator's temporary rules.
fn host_admits(
    model: &Model,
    source: Ipv4Addr,
    bridge: &str,
    dest: Ipv4Addr,
    port: u16,
) -> Result<String, String> {
    if model.internal_bridges().any(|b| b.name == bridge) {
        let access = model.host_access(model.host());
        let admitted = access.iter().find_map(|access| {
            let found = access
                .sources
                .iter()
                .find(|s| s.address == source && s.bridge == bridge && s.host_address == dest);
            found.filter(|_| access.port == port).map(|s| (access, s))
        });
        return match admitted {
            Some((access, s)) => Ok(format!(
                "host access: {} (:{}) from {} {source} at {dest}: {}",
                access.service, access.port, s.vm, s.purpose
            )),
            None => Err(format!(
                "no host service at {dest}:{port} is for {source}; `IN DROP -i {bridge}` takes the rest"
            )),
        };
    }
    let firewall = &model.firewall;
    if let Some(rule) = firewall.temporary.iter().find(|t| {
        t.protocol == Protocol::Tcp
            && t.port.0 == port
            && t.source.contains(&std::net::IpAddr::V4(source))
    }) {
        return Ok(format!(
            "[[firewall.temporary]] {} port = {} from {} (expires {})",
            rule.name, rule.port, rule.source, rule.expires
        ));
    }
    let nothing = format!("no [[firewall.temporary]] admits {source} to :{port}");
    match firewall.input_policy {
        Policy::Accept => Ok("[firewall] input_policy = ACCEPT".into()),
        Policy::Drop => Err(format!("[firewall] input_policy = DROP; {nothing}")),
        Policy::Reject => Err(format!("[firewall] input_policy = REJECT; {nothing}")),
    }
}

/// A connection to one of the host's own services at `address:port`.
fn to_the_host(
    model: &Model,
    mut probe: Probe,
    source: Ipv4Addr,
    bridge: &str,
    address: Ipv4Addr,
    port: u16,
) -> Probe {
    let hop = format!("{source} -> host {address}:{port} (INPUT, in on {bridge})");
    match host_admits(model, source, bridge, address, port) {
        Ok(why) => {
            probe.because.push(why);
            probe.path = format!("{hop} -> host listener :{port} (sees {source})");
            probe.outcome = format!("reached 0.0.0.0:{port}");
            probe.heard = Some(format!("0.0.0.0:{port} peer={source}"));
        }
        Err(why) => {
            probe.because.push(why);
            probe.path = format!("{hop}, dropped by the host firewall");
            let internal = model.internal_bridges().any(|b| b.name == bridge);
            probe.outcome = match model.firewall.input_policy {
                Policy::Reject if !internal => "refused".into(),
                _ => "timeout".into(),
            };
        }
    }
    probe
}

/// A connection from `source` on the internet to the host's public address.
fn from_internet(model: &Model, source: Ipv4Addr, port: u16, hello: Hello, entry: &str) -> Probe {
    let public = &model.host().bridges.public;
    let address = public.host_address;
    let mut probe = Probe {
        what: format!("{} from {source} to {address}:{port}", hello.describe()),
        spec: hello.spec(source, address, port),
        ..Probe::default()
    };
    if !entry.is_empty() {
        probe.because.push(entry.into());
    }
    let Some(forward) = model.forwards.iter().find(|f| f.port.0 == port) else {
        return to_the_host(model, probe, source, &public.name, address, port);
    };
    assert_eq!(
        forward.protocol,
        Protocol::Tcp,
        "only TCP forwards are probed"
    );
    let to = &forward.to;
    probe.because.push(format!(
        "[[forward]] port = {port} -> {}:{}",
        to.name, to.port
    ));
    probe.dnat = Some(port);
    let hop = format!(
        "internet {source} -> host {address}:{port} -DNAT-> {} {}:{} (sees {source})",
        to.name, to.address, to.port
    );
    let Some(edge) = model.edge.as_ref().filter(|e| e.vm == to.name) else {
        probe.path = hop;
        probe.outcome = format!("reached {}:{}", to.address, to.port);
        probe.heard = Some(format!("{}:{} peer={source}", to.address, to.port));
        return probe;
    };
    probe.edge_sees = Some(source);
    let edge_ip = edge_address(model, edge);
    let (backend, sni) = if to.port == edge.https_port {
        match hello {
            Hello::Tls(Some(sni)) => match route_for(edge, sni) {
                Some(route)
                    if !route.allow.is_empty()
                        && !route
                            .allow
                            .iter()
                            .any(|n| n.contains(&std::net::IpAddr::from(source))) =>
                {
                    probe.because.push(route_label(route));
                    probe
                        .because
                        .push(format!("{source} is not in its allow-list"));
                    (None, sni)
                }
                Some(route) => {
                    probe.because.push(route_label(route));
                    (Some(&route.backend), sni)
                }
                None => {
                    probe
                        .because
                        .push(format!("no [[edge.route]] claims \"{sni}\""));
                    (None, sni)
                }
            },
            Hello::Tls(None) => {
                probe
                    .because
                    .push("a ClientHello without SNI matches no [[edge.route]]".into());
                (None, "-")
            }
            Hello::Http | Hello::Tcp => {
                probe
                    .because
                    .push("not a TLS ClientHello: the SNI router rejects it".into());
                (None, "-")
            }
        }
    } else if to.port == edge.http_port {
        assert!(
            matches!(hello, Hello::Http),
            "only HTTP is probed on :{port}"
        );
        match &edge.http {
            Some(http) => {
                probe
                    .because
                    .push(format!("[edge.http] -> {}:{}", http.name, http.port));
                (Some(http), "")
            }
            None => panic!("no [edge.http]: what haproxy does with :{port} is not modelled"),
        }
    } else {
        panic!(
            "forward to {}:{} is neither of the edge's ports",
            to.name, to.port
        )
    };
    match backend {
        Some(b) => {
            let listener = format!("{}:{}", b.address, b.port);
            probe.path = format!("{hop} -> {} {listener} (sees {edge_ip})", b.name);
            probe.outcome = format!("reached {listener}");
            probe.heard = Some(if sni.is_empty() {
                format!("{listener} peer={edge_ip}")
            } else {
                format!("{listener} peer={edge_ip} sni={sni}")
            });
        }
        None => {
            probe.path = format!("{hop}, which closes it");
            probe.outcome = "closed".into();
        }
    }
    probe
}

/// Every listener on an internal machine that the public address leads to
/// (the forwards' targets and the edge's backends): its machine and the
/// blueprint entries that name it.
fn internal_listeners(model: &Model) -> BTreeMap<(Ipv4Addr, u16), (String, Vec<String>)> {
    let mut found: BTreeMap<(Ipv4Addr, u16), (String, Vec<String>)> = BTreeMap::new();
    let mut add = |name: &str, address: Ipv4Addr, port: u16, entry: String| {
        let listener = found.entry((address, port));
        listener
            .or_insert_with(|| (name.into(), Vec::new()))
            .1
            .push(entry);
    };
    for f in &model.forwards {
        let entry = format!(
            "[[forward]] port = {} -> {}:{}",
            f.port, f.to.name, f.to.port
        );
        add(&f.to.name, f.to.address, f.to.port.0, entry);
    }
    if let Some(edge) = &model.edge {
        for route in &edge.routes {
            let b = &route.backend;
            add(&b.name, b.address, b.port.0, route_label(route));
        }
        if let Some(b) = &edge.http {
            let entry = format!("[edge.http] -> {}:{}", b.name, b.port);
            add(&b.name, b.address, b.port.0, entry);
        }
    }
    found
}

/// The names to send, from the domain (as haproxy.rs) and from every route.
fn probe_names(model: &Model, edge: &Edge) -> Vec<String> {
    let domain = &model.project.domain;
    let mut names = vec![
        format!("teleport.{domain}"),
        format!("proxmox.{domain}"),
        format!("x.apps.{domain}"),
        format!("a.b.apps.{domain}"),
        format!("apps.{domain}"),
        format!("evilapps.{domain}"),
        format!("apps.{domain}.evil.org"),
        format!("x.apps.{domain}.evil.org"),
        format!("unknown.{domain}"),
        "example.net".to_string(),
    ];
    for route in &edge.routes {
        match &route.host {
            SniHost::Exact(host) => names.push(host.clone()),
            SniHost::Wildcard { suffix } => {
                let bare = suffix.trim_start_matches('.');
                names.extend([
                    format!("x{suffix}"),
                    bare.to_string(),
                    format!("evil{bare}"),
                    format!("x{suffix}.evil.org"),
                ]);
            }
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// The host's own services the operator uses, from `[host]`: SSH and the API.
/// Teleport's apps whose uri is one of the host's own addresses: (app,
/// bridge of that address, address, port).
fn apps_on_the_host(model: &Model) -> Vec<(&TeleportApp, String, Ipv4Addr, u16)> {
    let Some(teleport) = &model.teleport else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for app in &teleport.apps {
        let (scheme, rest) = app.uri.split_once("://").expect("an app's uri is a URL");
        let authority = rest.split('/').next().unwrap();
        let (address, port) = match authority.rsplit_once(':') {
            Some((address, port)) => (address, port.parse().unwrap()),
            None => (authority, if scheme == "http" { 80 } else { 443 }),
        };
        let Ok(address) = address.parse::<Ipv4Addr>() else {
            continue;
        };
        if let Some(bridge) = model
            .host()
            .bridges
            .iter()
            .find(|b| b.host_address == address)
        {
            found.push((app, bridge.name.to_string(), address, port));
        }
    }
    found
}

fn host_services(model: &Model) -> Vec<(Ipv4Addr, u16, String)> {
    let ssh_host = model
        .host()
        .ssh_target
        .rsplit('@')
        .next()
        .unwrap()
        .parse()
        .expect("[host] ssh names an address");
    let api = model
        .proxmox
        .api_url
        .split_once("://")
        .map(|(_, rest)| rest.split('/').next().unwrap())
        .expect("[host] api is a URL");
    let (api_host, api_port) = api.rsplit_once(':').expect("[host] api has a port");
    let mut services = vec![
        (
            ssh_host,
            22,
            format!("[host] ssh = {}", model.host().ssh_target),
        ),
        (
            api_host.parse().expect("[host] api names an address"),
            api_port.parse().unwrap(),
            format!("[host] api = {}", model.proxmox.api_url),
        ),
    ];
    for rule in &model.firewall.temporary {
        if !services.iter().any(|s| s.1 == rule.port.0) {
            services.push((
                model.host().bridges.public.host_address,
                rule.port.0,
                format!("[[firewall.temporary]] {}", rule.name),
            ));
        }
    }
    services
}

/// The host ports every VM tries: SSH, iSCSI, the API, and any other port
/// a host service is given.
fn vm_probe_ports(model: &Model) -> Vec<u16> {
    let mut ports = vec![22, 3260, model.proxmox.api_port()];
    for access in model.host_access(model.host()) {
        if !ports.contains(&access.port) {
            ports.push(access.port);
        }
    }
    ports
}

// ---------------------------------------------------------------------------
// The lab
// ---------------------------------------------------------------------------

/// A VM (or the machine holding a VIP) on an internal bridge.
struct Machine {
    name: String,
    ns: Netns,
    address: Ipv4Net,
    bridge: String,
}

/// Packet counters that show which way connections went.
#[derive(Debug, Default, PartialEq)]
struct Counters {
    /// New connections through the rendered DNAT rule, by public port.
    dnat: BTreeMap<u16, u64>,
    /// New connections the edge VM received, by source (`None`: any source).
    edge_syn: BTreeMap<Option<Ipv4Addr>, u64>,
    /// New connections through the rendered MASQUERADE rule(s).
    masquerade: u64,
    /// SYNs arriving on the public bridge for an internal listener, by
    /// listener (test-only counting rules in the host).
    inside_syn: BTreeMap<(Ipv4Addr, u16), u64>,
    /// Packets taken by the rendered DROP rules (public to internal bridge).
    inside_drop: u64,
}

struct Lab {
    // Fields drop in order: processes first, then namespaces.
    _processes: Vec<Reaped>,
    machines: Vec<Machine>,
    host: Netns,
    internet: Netns,
    model: Model,
    dir: PathBuf,
    log: PathBuf,
    heard: usize,
    clients: Vec<(Ipv4Addr, &'static str)>,
    /// Rendered nat rules (as option groups) by the forward port they DNAT.
    dnat_rules: BTreeMap<u16, Vec<String>>,
    masquerade_rules: Vec<Vec<String>>,
    /// Rendered `WDLC-FORWARD` DROP rules, one per internal bridge.
    drop_rules: Vec<Vec<String>>,
}

fn lab_script() -> PathBuf {
    repo_root().join("tests/support/sni_lab.py")
}

impl Lab {
    /// The namespaces, bridges and links; nothing applied, nothing running.
    fn new(model: &Model, dir: &Path) -> Lab {
        let public = &model.host().bridges.public;
        let upstream = public
            .gateway
            .expect("the public bridge has an upstream gateway");
        let edge = model.edge.as_ref().expect("the blueprint has an edge");

        // Clients on the internet side, all from documentation ranges.
        let neighbour = neighbour_on(public);
        let mut clients = vec![
            (model.operator.ip, "operator"),
            (STRANGER, "stranger"),
            (neighbour, "neighbour on the public subnet"),
        ];
        // The lab's clients are IPv4 (the waddle blueprint is); an IPv6
        // source would have none to stand for it.
        for rule in &model.firewall.temporary {
            let ipnet::IpNet::V4(source) = rule.source else {
                continue;
            };
            if !clients.iter().any(|(c, _)| source.contains(c)) {
                let inside = source.hosts().next().unwrap();
                clients.push((inside, "temporary rule source"));
            }
        }
        assert!(
            !clients[1..].iter().any(|(c, _)| *c == model.operator.ip),
            "the stranger and the neighbour are not the operator"
        );

        let internet = Netns::new("proof-inet");
        let host = Netns::new("proof-host");
        for bridge in &model.host().bridges {
            host.sh(&format!(
                "ip link add {name} type bridge && ip addr add {address}/{prefix} dev {name} && ip link set {name} up",
                name = bridge.name,
                address = bridge.host_address,
                prefix = bridge.network.prefix_len()
            ));
        }
        // The uplink: the internet's end holds the upstream gateway, the
        // clients and a server, as /32s beside the public subnet.
        internet.sh(&format!(
            "ip link add eth0 type veth peer name uplink netns {host} \
             && ip addr add {upstream}/{prefix} dev eth0 && ip link set eth0 up",
            host = host.name,
            prefix = public.network.prefix_len()
        ));
        for address in clients.iter().map(|(c, _)| *c).chain([INTERNET_SERVER.0]) {
            internet.sh(&format!("ip addr add {address}/32 dev eth0"));
        }
        host.sh(&format!(
            "ip link set uplink master {} up && ip route add default via {upstream}",
            public.name
        ));

        // One namespace per machine that the edge is or that a listener lives on.
        let mut owners: Vec<String> = vec![edge.vm.clone()];
        owners.extend(edge.routes.iter().map(|r| r.backend.name.clone()));
        owners.extend(edge.http.iter().map(|h| h.name.clone()));
        owners.extend(model.forwards.iter().map(|f| f.to.name.clone()));
        // The Talos nodes: the host's storage services are theirs.
        owners.extend(model.talos_nodes().map(|node| node.name().to_string()));
        let mut seen = std::collections::BTreeSet::new();
        owners.retain(|o| seen.insert(o.clone()));
        let mut machines = Vec::new();
        for name in &owners {
            let (address, gateway, bridge, port) = machine_nic(model, name);
            let ns = Netns::new(&format!("proof-{name}"));
            ns.sh(&format!(
                "ip link add eth0 type veth peer name {port} netns {host} \
                 && ip addr add {address} dev eth0 && ip link set eth0 up \
                 && ip route add default via {gateway}",
                host = host.name
            ));
            host.sh(&format!("ip link set {port} master {bridge} up"));
            machines.push(Machine {
                name: name.clone(),
                ns,
                address,
                bridge,
            });
        }

        let log = dir.join("heard.log");
        fs::write(&log, "").unwrap();
        let lab = Lab {
            _processes: Vec::new(),
            machines,
            host,
            internet,
            model: model.clone(),
            dir: dir.to_path_buf(),
            log,
            heard: 0,
            clients,
            dnat_rules: BTreeMap::new(),
            masquerade_rules: Vec::new(),
            drop_rules: Vec::new(),
        };
        lab.instrument_edge();
        lab.instrument_host();
        lab
    }

    /// The rendered sysctl drop-in and apply script, as on the host (the
    /// systemd unit runs the script with the rules path as argument).
    fn apply_host_network(&mut self, out: &Path) {
        let network = out.join("host/network");
        let rules = fs::read_to_string(network.join("host-network.rules")).unwrap();
        let mut dnat_rules = BTreeMap::new();
        for forward in &self.model.forwards {
            let matching: Vec<Vec<String>> = rules
                .lines()
                .filter(|l| l.starts_with("-A WDLC-PREROUTING "))
                .map(option_groups)
                .filter(|g| {
                    g.contains(&format!("--dport {}", forward.port))
                        && g.contains(&format!(
                            "--to-destination {}:{}",
                            forward.to.address, forward.to.port
                        ))
                })
                .collect();
            assert_eq!(
                matching.len(),
                1,
                "one rendered DNAT rule for [[forward]] port = {}",
                forward.port
            );
            dnat_rules.insert(forward.port.0, matching.into_iter().next().unwrap());
        }
        let masquerade_rules: Vec<Vec<String>> = rules
            .lines()
            .filter(|l| l.starts_with("-A WDLC-POSTROUTING ") && l.contains("-j MASQUERADE"))
            .map(option_groups)
            .collect();

        let public = &self.model.host().bridges.public.name;
        let drops: Vec<Vec<String>> = rules
            .lines()
            .filter(|l| l.starts_with("-A WDLC-FORWARD ") && l.ends_with(" -j DROP"))
            .map(option_groups)
            .collect();
        self.drop_rules = self
            .model
            .internal_bridges()
            .map(|bridge| {
                let wanted = option_groups(&format!(
                    "-A WDLC-FORWARD -i {public} -o {} -j DROP",
                    bridge.name
                ));
                let rendered = drops.iter().filter(|d| **d == wanted).count();
                assert_eq!(rendered, 1, "one rendered DROP rule {wanted:?}: {drops:?}");
                wanted
            })
            .collect();
        self.dnat_rules = dnat_rules;
        self.masquerade_rules = masquerade_rules;
        assert_eq!(
            self.host.sh("sysctl -n net.ipv4.ip_forward").trim(),
            "0",
            "a fresh namespace does not forward"
        );
        self.host.sh(&format!(
            "sysctl -q -p {}",
            network.join("90-waddlec.conf").display()
        ));
        assert_eq!(
            self.host.sh("sysctl -n net.ipv4.ip_forward").trim(),
            "1",
            "90-waddlec.conf turns forwarding on"
        );
        self.host.sh(&format!(
            "{} {}",
            network.join("waddlec-host-network").display(),
            network.join("host-network.rules").display()
        ));
        println!(
            "host: applied 90-waddlec.conf and waddlec-host-network:\n{}",
            indent(&self.host.sh("iptables-save -t nat | grep -- '-A WDLC'"))
        );
    }

    /// pve-firewall (the stand-in) compiling the rendered firewall files; run
    /// again, it replaces its chains as pve-firewall does on a change.
    fn apply_pve_firewall(&self, out: &Path, when: &str) {
        let firewall = out.join("host/firewall");
        let ruleset = pve_firewall::ruleset(
            &fs::read_to_string(firewall.join("cluster.fw")).unwrap(),
            &fs::read_to_string(firewall.join("host.fw")).unwrap(),
        );
        let file = self.dir.join("pve-firewall.rules");
        fs::write(&file, &ruleset).unwrap();
        self.host.sh(&format!(
            "iptables-restore -w --noflush {} \
             && {{ iptables -w -C INPUT -j PVEFW-INPUT 2>/dev/null || iptables -w -A INPUT -j PVEFW-INPUT; }}",
            file.display()
        ));
        println!(
            "\nhost: stand-in pve-firewall, {when}, from {}:\n{}",
            firewall.display(),
            indent(&ruleset)
        );
    }

    fn edge(&self) -> &Machine {
        let edge = self.model.edge.as_ref().unwrap();
        self.machine(&edge.vm)
    }

    fn machine(&self, name: &str) -> &Machine {
        self.machines.iter().find(|m| m.name == name).unwrap()
    }

    /// Counting rules in the edge VM (only there): new connections by source.
    fn instrument_edge(&self) {
        let mut script = String::from(
            "iptables -w -N PROOF-SEEN && iptables -w -A INPUT -p tcp --syn -j PROOF-SEEN",
        );
        for (client, _) in &self.clients {
            script.push_str(&format!(" && iptables -w -A PROOF-SEEN -s {client}/32"));
        }
        script.push_str(" && iptables -w -A PROOF-SEEN");
        self.edge().ns.sh(&script);
    }

    /// Counting rules in the host, ahead of routing and NAT (mangle
    /// PREROUTING): SYNs arriving on the public bridge for an internal
    /// listener, by listener. Traffic through the forwards is addressed to
    /// the public address there, so only a routed neighbour's matches.
    fn instrument_host(&self) {
        let public = &self.model.host().bridges.public.name;
        let mut script = format!(
            "iptables -w -t mangle -N PROOF-INSIDE \
             && iptables -w -t mangle -A PREROUTING -i {public} -p tcp --syn -j PROOF-INSIDE"
        );
        for (address, port) in internal_listeners(&self.model).keys() {
            script.push_str(&format!(
                " && iptables -w -t mangle -A PROOF-INSIDE -d {address}/32 -p tcp -m tcp --dport {port}"
            ));
        }
        self.host.sh(&script);
    }

    /// Every listener the blueprint implies, then haproxy with its config.
    fn start(&mut self, out: &Path) {
        self.start_listeners();
        self.start_haproxy(out);
    }

    fn start_listeners(&mut self) {
        let cert = self.dir.join("cert.pem");
        let key = self.dir.join("key.pem");
        sh(&format!(
            "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
             -keyout {} -out {} -days 2 -subj /CN=waddle-network-proof 2>/dev/null",
            key.display(),
            cert.display()
        ));
        let model = &self.model;
        let edge = model.edge.as_ref().unwrap();
        // Which machine listens where, and how: TLS behind SNI routes, HTTP
        // behind [edge.http], plain TCP behind direct forwards.
        let mut wanted: BTreeMap<String, BTreeMap<(Ipv4Addr, u16), &str>> = BTreeMap::new();
        let mut want = |owner: &str, address: Ipv4Addr, port: u16, kind: &'static str| {
            let previous = wanted
                .entry(owner.to_string())
                .or_default()
                .insert((address, port), kind);
            assert!(
                previous.is_none_or(|p| p == kind),
                "{address}:{port} is wanted as {kind} and as {previous:?}"
            );
        };
        for route in &edge.routes {
            let b = &route.backend;
            want(&b.name, b.address, b.port.0, "tls");
        }
        if let Some(b) = &edge.http {
            want(&b.name, b.address, b.port.0, "http");
        }
        for forward in model.forwards.iter().filter(|f| f.to.name != edge.vm) {
            want(
                &forward.to.name,
                forward.to.address,
                forward.to.port.0,
                "tcp",
            );
        }
        for (_, port, _) in host_services(model) {
            want("host", Ipv4Addr::UNSPECIFIED, port, "tcp");
        }
        for (_, _, _, port) in apps_on_the_host(model) {
            want("host", Ipv4Addr::UNSPECIFIED, port, "tcp");
        }
        for port in vm_probe_ports(model) {
            want("host", Ipv4Addr::UNSPECIFIED, port, "tcp");
        }
        want("internet", INTERNET_SERVER.0, INTERNET_SERVER.1, "tcp");

        let mut started = Vec::new();
        for (owner, listeners) in &wanted {
            let ns = match owner.as_str() {
                "host" => &self.host,
                "internet" => &self.internet,
                name => &self.machine(name).ns,
            };
            let specs: Vec<String> = listeners
                .iter()
                .map(|((address, port), kind)| format!("{kind}:{address}:{port}"))
                .collect();
            let stderr = fs::File::create(self.dir.join(format!("serve-{owner}.err"))).unwrap();
            let child = Command::new("ip")
                .args(["netns", "exec", &ns.name, "python3"])
                .arg(lab_script())
                .arg("serve")
                .arg(&self.log)
                .arg(&cert)
                .arg(&key)
                .args(&specs)
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .unwrap();
            started.push(Reaped(child));
            for (_, port) in listeners.keys() {
                wait_until_listening(ns, *port, &self.dir.join(format!("serve-{owner}.err")));
            }
            println!("{owner}: listening on {}", specs.join(" "));
        }
        self._processes.extend(started);
    }

    fn start_haproxy(&mut self, out: &Path) {
        let edge = self.model.edge.as_ref().unwrap();
        let config = out.join(format!("vms/{}/haproxy.cfg", edge.vm));
        let ns = &self.edge().ns;
        ns.sh("mkdir -p /run/haproxy");
        let stderr_path = self.dir.join("haproxy.err");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "haproxy", "-db", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        self._processes.push(Reaped(child));
        let ns = &self.edge().ns;
        wait_until_listening(ns, edge.https_port.0, &stderr_path);
        wait_until_listening(ns, edge.http_port.0, &stderr_path);
        println!("{}: haproxy running with {}", edge.vm, config.display());
    }

    fn counters(&self) -> Counters {
        let nat = iptables_counters(&self.host, "nat");
        let count = |rules: &[(u64, Vec<String>)], rule: &[String]| -> u64 {
            let found: Vec<u64> = rules
                .iter()
                .filter(|(_, r)| r == rule)
                .map(|(c, _)| *c)
                .collect();
            assert_eq!(found.len(), 1, "rule {rule:?} loaded once: {rules:?}");
            found[0]
        };
        let mut counters = Counters::default();
        for (port, rule) in &self.dnat_rules {
            counters.dnat.insert(*port, count(&nat, rule));
        }
        counters.masquerade = self.masquerade_rules.iter().map(|r| count(&nat, r)).sum();
        let seen = iptables_counters(&self.edge().ns, "filter");
        for (client, _) in &self.clients {
            let rule = option_groups(&format!("-A PROOF-SEEN -s {client}/32"));
            counters.edge_syn.insert(Some(*client), count(&seen, &rule));
        }
        let any = option_groups("-A PROOF-SEEN");
        counters.edge_syn.insert(None, count(&seen, &any));
        let mangle = iptables_counters(&self.host, "mangle");
        for (address, port) in internal_listeners(&self.model).keys() {
            let rule = format!("-A PROOF-INSIDE -d {address}/32 -p tcp -m tcp --dport {port}");
            let packets = count(&mangle, &option_groups(&rule));
            counters.inside_syn.insert((*address, *port), packets);
        }
        let filter = iptables_counters(&self.host, "filter");
        counters.inside_drop = self.drop_rules.iter().map(|r| count(&filter, r)).sum();
        counters
    }

    fn new_lines_heard(&mut self) -> Vec<String> {
        let lines: Vec<String> = fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        let new = lines[self.heard..].to_vec();
        self.heard = lines.len();
        new
    }

    /// Runs `probes` at once from `from`; checks each client's outcome, the
    /// listeners' logs and the counters against what the probes predict.
    fn check(&mut self, title: &str, from: &str, probes: &[Probe]) {
        let started = Instant::now();
        let before = self.counters();
        let specs: Vec<&str> = probes.iter().map(|p| p.spec.as_str()).collect();
        let output = sh(&format!(
            "ip netns exec {from} python3 {} probe {}",
            lab_script().display(),
            specs.join(" ")
        ));
        // Listeners log before they answer; the pause lets a connection that
        // should not have happened show up here rather than in the next batch.
        std::thread::sleep(Duration::from_millis(200));
        let after = self.counters();
        let mut heard = self.new_lines_heard();
        let outcomes: Vec<&str> = output.lines().collect();
        assert_eq!(
            outcomes.len(),
            probes.len(),
            "one outcome per probe:\n{output}"
        );

        println!("\n== {title}");
        let mut failures = Vec::new();
        for (probe, outcome) in probes.iter().zip(&outcomes) {
            let ok = *outcome == probe.outcome;
            println!(
                "{} {}: {outcome}\n       because {}\n       path {}",
                if ok { "  ok  " } else { "  FAIL" },
                probe.what,
                probe.because.join("; "),
                probe.path
            );
            if !ok {
                failures.push(format!(
                    "{}: expected `{}`, got `{outcome}` (because {})",
                    probe.what,
                    probe.outcome,
                    probe.because.join("; ")
                ));
            }
        }
        let mut expected_heard: Vec<String> =
            probes.iter().filter_map(|p| p.heard.clone()).collect();
        expected_heard.sort();
        heard.sort();
        if heard != expected_heard {
            failures.push(format!(
                "listeners heard\n  {}\nbut the blueprint predicts\n  {}",
                heard.join("\n  "),
                expected_heard.join("\n  ")
            ));
        }
        let syn_before = before.inside_syn.clone();
        let mut expected = before;
        for probe in probes {
            if let Some(port) = probe.dnat {
                *expected.dnat.get_mut(&port).unwrap() += 1;
            }
            if let Some(source) = probe.edge_sees {
                *expected.edge_syn.get_mut(&Some(source)).unwrap() += 1;
                *expected.edge_syn.get_mut(&None).unwrap() += 1;
            }
            expected.masquerade += u64::from(probe.masquerade);
            // Retransmits make SYNs inexact: at least one per listener
            // probed from the public side arrives, and the rendered DROP
            // rules take every one that does, nothing else.
            if let Some(listener) = probe.inside {
                let least = syn_before[&listener] + 1;
                expected
                    .inside_syn
                    .insert(listener, after.inside_syn[&listener].max(least));
            }
        }
        expected.inside_drop +=
            expected.inside_syn.values().sum::<u64>() - syn_before.values().sum::<u64>();
        if after != expected {
            failures.push(format!(
                "packet counters (rendered DNAT rules, SYNs at the edge VM by source, MASQUERADE, \
                 SYNs for internal listeners on the public bridge, rendered DROP rules) are\n  \
                 {after:?}\nbut the paths predict\n  {expected:?}"
            ));
        }
        println!("       counters {after:?}, {:.1?}", started.elapsed());

        assert!(
            failures.is_empty(),
            "{title}:\n{}\n(stand-in logs in {})",
            failures.join("\n"),
            self.dir.display()
        );
    }

    /// Everything the internet can try against the public address.
    fn public_probes(&mut self, model: &Model, phase: &str) {
        let edge = model.edge.as_ref().expect("the blueprint has an edge");
        let https = edge.https_port.0;
        let http = edge.http_port.0;
        let forwarded_to_edge = |port: u16| {
            model
                .forwards
                .iter()
                .any(|f| f.port.0 == port && f.to.name == edge.vm)
        };
        assert!(
            forwarded_to_edge(https) && forwarded_to_edge(http),
            "the public :{https} and :{http} are forwarded to the edge VM {}",
            edge.vm
        );

        let mut probes: Vec<Probe> = probe_names(model, edge)
            .iter()
            .map(|name| from_internet(model, STRANGER, https, Hello::Tls(Some(name)), ""))
            .collect();
        probes.push(from_internet(model, STRANGER, https, Hello::Tls(None), ""));
        probes.push(from_internet(model, STRANGER, https, Hello::Http, ""));
        probes.push(from_internet(model, STRANGER, http, Hello::Http, ""));
        for route in &edge.routes {
            assert!(
                probes
                    .iter()
                    .any(|p| p.because.contains(&route_label(route)) && p.heard.is_some()),
                "some probe reaches {}",
                route_label(route)
            );
        }
        assert!(
            probes.iter().filter(|p| p.outcome == "closed").count() >= 5,
            "the probes include names no route claims"
        );
        let internet = self.internet.name.clone();
        let check = |lab: &mut Lab, from: &str, title: &str, probes: &[Probe]| {
            lab.check(&format!("{title} [{phase}]"), from, probes);
        };
        check(
            self,
            &internet,
            "SNI routing and plain HTTP on the public address",
            &probes,
        );

        let direct: Vec<Probe> = model
            .forwards
            .iter()
            .filter(|f| f.to.name != edge.vm)
            .map(|f| from_internet(model, STRANGER, f.port.0, Hello::Tcp, ""))
            .collect();
        check(self, &internet, "direct port forwards", &direct);

        let mut host = Vec::new();
        for (address, port, entry) in host_services(model) {
            assert_eq!(
                address,
                model.host().bridges.public.host_address,
                "{entry}: the operator reaches the host on its public address"
            );
            for (client, role) in self.clients.clone() {
                let mut probe = from_internet(model, client, port, Hello::Tcp, &entry);
                probe.what = format!("{} ({role})", probe.what);
                host.push(probe);
            }
        }
        check(
            self,
            &internet,
            "the host's own services from the internet",
            &host,
        );

        // Teleport's apps that point at the host go over the internal bridge.
        let teleport = model.teleport.as_ref().expect("the blueprint has Teleport");
        let vm = self.machine(&teleport.vm);
        let source = vm.address.addr();
        let mut inside = Vec::new();
        for (app, bridge, address, port) in apps_on_the_host(model) {
            assert_eq!(bridge, vm.bridge, "{} is on Teleport's bridge", app.uri);
            let probe = Probe {
                what: format!("TCP connect from {} {source} to {address}:{port}", vm.name),
                spec: Hello::Tcp.spec(source, address, port),
                because: vec![format!("[[teleport.app]] {} uri = {}", app.name, app.uri)],
                ..Probe::default()
            };
            inside.push(to_the_host(model, probe, source, &bridge, address, port));
        }
        assert!(!inside.is_empty(), "Teleport has an app on the host");
        let from = vm.ns.name.clone();
        check(
            self,
            &from,
            "Teleport's apps on the host, from the internal bridge",
            &inside,
        );
    }

    /// Every VM tries the host's services on its bridge's host address:
    /// each reaches exactly what `Model::host_access` gives it (the nodes
    /// SSH and iSCSI, Teleport SSH and the API) and the edge VM nothing.
    fn vms_to_the_host(&mut self, model: &Model) {
        let edge = model.edge.as_ref().unwrap();
        let node = model
            .talos_nodes()
            .next()
            .expect("the blueprint has Talos nodes");
        let api = model.proxmox.api_port();
        let internal = |name: &str| {
            let vm = model.vm(name).unwrap();
            let nic = &vm.nics[0];
            (nic.address.addr(), nic.bridge.clone())
        };
        // The issue's promises, independent of how the probes are predicted.
        let (edge_ip, edge_bridge) = internal(&edge.vm);
        let public = model.host().bridges.public.host_address;
        let on_bridge = |bridge: &str| {
            model
                .internal_bridges()
                .find(|b| b.name == bridge)
                .unwrap()
                .host_address
        };
        for dest in [on_bridge(&edge_bridge), public] {
            for port in [22, 3260, api] {
                assert!(
                    host_admits(model, edge_ip, &edge_bridge, dest, port).is_err(),
                    "the edge VM must not reach {dest}:{port} on the host"
                );
            }
        }
        let (node_ip, node_bridge) = internal(node.name());
        assert!(
            host_admits(model, node_ip, &node_bridge, on_bridge(&node_bridge), 3260).is_ok(),
            "a node reaches the iSCSI target"
        );
        assert!(
            host_admits(model, node_ip, &node_bridge, public, 22).is_err(),
            "a node (or a pod masqueraded as it) does not reach the host's public sshd"
        );
        let ports = vm_probe_ports(model);
        for index in 0..self.machines.len() {
            let machine = &self.machines[index];
            if model.vm(&machine.name).is_none() {
                continue; // a VIP: not a VM of its own
            }
            let source = machine.address.addr();
            let bridge = machine.bridge.clone();
            // The host's address on the VM's bridge, and its public one
            // (pods leave a node masqueraded as the node: it must not open
            // the public address to them).
            let probes: Vec<Probe> = [on_bridge(&bridge), public]
                .into_iter()
                .flat_map(|host| ports.iter().map(move |&port| (host, port)))
                .map(|(host, port)| {
                    let probe = Probe {
                        what: format!(
                            "TCP connect from {} {source} to the host {host}:{port}",
                            machine.name
                        ),
                        spec: Hello::Tcp.spec(source, host, port),
                        ..Probe::default()
                    };
                    to_the_host(model, probe, source, &bridge, host, port)
                })
                .collect();
            let from = machine.ns.name.clone();
            let title = format!("the host's services from {}", machine.name);
            self.check(&title, &from, &probes);
        }
    }

    /// A neighbour on the public subnet routes the internal networks via the
    /// host's public address: no internal listener answers it directly, its
    /// connections through the forwards still work.
    fn routed_neighbour(&mut self, model: &Model) {
        let public = &model.host().bridges.public;
        let edge = model.edge.as_ref().expect("the blueprint has an edge");
        let (neighbour, via) = (neighbour_on(public), public.host_address);
        let routes: Vec<String> = model
            .internal_bridges()
            .map(|b| format!("{} via {via} dev eth0", b.network))
            .collect();
        for route in &routes {
            self.internet.sh(&format!("ip route add {route}"));
        }

        let mut probes = Vec::new();
        for ((address, port), (name, mut because)) in internal_listeners(model) {
            let bridge = model
                .internal_bridges()
                .find(|b| b.network.contains(&address))
                .expect("the listener is on an internal bridge");
            because.push(format!(
                "[[bridge]] {} role = internal: from {} only the forwards reach it",
                bridge.name, public.name
            ));
            probes.push(Probe {
                what: format!(
                    "TCP connect from {neighbour} (routes {} via {via}) to {name} {address}:{port}",
                    bridge.network
                ),
                spec: Hello::Tcp.spec(neighbour, address, port),
                because,
                path: format!(
                    "neighbour {neighbour} -> host {public} -> {bridge} {address}:{port}, dropped by \
                     the rendered `-i {public} -o {bridge} -j DROP`",
                    public = public.name,
                    bridge = bridge.name
                ),
                outcome: "timeout".into(),
                inside: Some((address, port)),
                ..Probe::default()
            });
        }
        // The same neighbour through the public address: every route, the
        // plain HTTP and the direct forwards.
        let names: Vec<String> = edge
            .routes
            .iter()
            .map(|r| match &r.host {
                SniHost::Exact(host) => host.clone(),
                SniHost::Wildcard { suffix } => format!("x{suffix}"),
            })
            .collect();
        let mut hellos: Vec<(u16, Hello)> = names
            .iter()
            .map(|name| (edge.https_port.0, Hello::Tls(Some(name))))
            .collect();
        hellos.push((edge.http_port.0, Hello::Http));
        let direct = model.forwards.iter().filter(|f| f.to.name != edge.vm);
        hellos.extend(direct.map(|f| (f.port.0, Hello::Tcp)));
        probes.extend(
            hellos
                .into_iter()
                .map(|(port, hello)| from_internet(model, neighbour, port, hello, "")),
        );
        let internet = self.internet.name.clone();
        self.check(
            "a neighbour routing the internal networks via the host",
            &internet,
            &probes,
        );
        for route in &routes {
            self.internet.sh(&format!("ip route del {route}"));
        }
    }

    /// Every internal machine reaches the internet as the host's public address.
    fn way_out(&mut self) {
        let public = self.model.host().bridges.public.clone();
        let (server, port) = INTERNET_SERVER;
        let listener = format!("{server}:{port}");
        for index in 0..self.machines.len() {
            let machine = &self.machines[index];
            let bridge = self
                .model
                .host()
                .bridges
                .iter()
                .find(|b| b.name == machine.bridge)
                .unwrap();
            let source = machine.address.addr();
            let mut probe = Probe {
                what: format!("TCP connect from {} {source} to {listener}", machine.name),
                spec: Hello::Tcp.spec(source, server, port),
                masquerade: bridge.masquerade,
                ..Probe::default()
            };
            let hop = format!("{} {source} -> host {}", machine.name, bridge.host_address);
            if bridge.masquerade {
                let as_host = public.host_address;
                probe.because.push(format!(
                    "[[bridge]] {} masquerade = true (out through {} as {as_host})",
                    bridge.name, public.name
                ));
                probe.path = format!("{hop} -MASQUERADE-> {listener} (sees {as_host})");
                probe.outcome = format!("reached {listener}");
                probe.heard = Some(format!("{listener} peer={as_host}"));
            } else {
                probe.because.push(format!(
                    "[[bridge]] {} masquerade = false: the internet cannot answer {source}",
                    bridge.name
                ));
                probe.path = format!("{hop} -> {listener}, unanswerable");
                probe.outcome = "timeout".into();
            }
            let (from, title) = (
                machine.ns.name.clone(),
                format!("the way out from {}", machine.name),
            );
            self.check(&title, &from, &[probe]);
        }
    }

    /// Facts about where addresses live, before any traffic.
    fn path_facts(&self) {
        let public = &self.model.host().bridges.public;
        let holders = |ns: &Netns| -> Vec<Ipv4Net> {
            ns.sh("ip -o -4 addr show")
                .lines()
                .filter_map(|l| l.split_whitespace().nth(3)?.parse().ok())
                .collect()
        };
        assert!(
            holders(&self.host)
                .contains(&Ipv4Net::new(public.host_address, public.network.prefix_len()).unwrap()),
            "the host holds the public address"
        );
        let host_vmbr0 = self
            .host
            .sh(&format!("ip -o -4 addr show dev {}", public.name));
        assert!(
            host_vmbr0.contains(&public.host_address.to_string()),
            "on {}",
            public.name
        );
        for machine in &self.machines {
            let addresses = holders(&machine.ns);
            assert!(
                addresses.iter().all(|a| !public.network.contains(&a.addr())),
                "{} holds no public address (the seed gave the HAProxy VM the host's): {addresses:?}",
                machine.name
            );
            println!(
                "{}: addresses {addresses:?}, default route {}",
                machine.name,
                machine.ns.sh("ip route show default").trim()
            );
        }
        for bridge in self.model.internal_bridges() {
            let probe = bridge.network.hosts().next().unwrap();
            let route = self.internet.try_sh(&format!("ip route get {probe}"));
            assert!(
                !route.status.success(),
                "the internet has no route to {} (replies can only come back through NAT)",
                bridge.network
            );
        }
    }

    /// The public address answers ARP with the host's vmbr0, nothing else.
    fn neighbours_see_the_host(&self) {
        let public = &self.model.host().bridges.public;
        let mac = self
            .host
            .sh(&format!("cat /sys/class/net/{}/address", public.name))
            .trim()
            .to_string();
        let neighbour = self
            .internet
            .sh(&format!("ip neigh show {} dev eth0", public.host_address));
        println!(
            "\n== who answers for {}: {} (host {} is {mac})",
            public.host_address,
            neighbour.trim(),
            public.name
        );
        assert!(
            neighbour.contains(&format!("lladdr {mac}")),
            "the internet reaches {} at the host's {} ({mac}), not at a VM: {neighbour}",
            public.host_address,
            public.name
        );
    }

    fn nothing_else_heard(&mut self) {
        std::thread::sleep(Duration::from_millis(300));
        let late = self.new_lines_heard();
        assert!(late.is_empty(), "connections after the probes: {late:?}");
    }
}

/// The address of a VM (its one NIC) or a VIP (on the internal bridge whose
/// network holds it; the namespace stands in for the node announcing it),
/// its default gateway, bridge and the host-side port name.
fn machine_nic(model: &Model, name: &str) -> (Ipv4Net, Ipv4Addr, String, String) {
    if let Some(vm) = model.vm(name) {
        let [nic] = &vm.nics[..] else {
            panic!("VM {name} has one NIC in this proof")
        };
        let gateway = nic.gateway.expect("the NIC has the VM's default gateway");
        return (
            nic.address,
            gateway,
            nic.bridge.to_string(),
            format!("tap{}i0", vm.id),
        );
    }
    let vip = model
        .vips
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("{name} is a VM or a VIP"));
    let bridge = model
        .internal_bridges()
        .find(|b| b.network.contains(&vip.address))
        .expect("the VIP is on an internal bridge");
    (
        Ipv4Net::new(vip.address, bridge.network.prefix_len()).unwrap(),
        bridge.host_address,
        bridge.name.to_string(),
        format!("vip-{name}").chars().take(15).collect(),
    )
}

/// An address on the public subnet that is neither the host nor the gateway.
fn neighbour_on(public: &Bridge) -> Ipv4Addr {
    let mut candidate = u32::from(public.network.broadcast()) - 1;
    loop {
        let address = Ipv4Addr::from(candidate);
        if address != public.host_address && Some(address) != public.gateway {
            return address;
        }
        candidate -= 1;
    }
}

/// A rule's option groups (`-d 1.2.3.4/32`, `-j DNAT` …), sorted, so the
/// rendered text and iptables-save's reordering compare equal.
fn option_groups(rule: &str) -> Vec<String> {
    let mut groups: Vec<String> = Vec::new();
    for word in rule.split_whitespace() {
        match groups.last_mut() {
            Some(group) if !word.starts_with('-') => {
                group.push(' ');
                group.push_str(word);
            }
            _ => groups.push(word.to_string()),
        }
    }
    groups.sort();
    groups
}

/// (packets, rule) for every rule of `table` in `ns`.
fn iptables_counters(ns: &Netns, table: &str) -> Vec<(u64, Vec<String>)> {
    ns.sh(&format!("iptables-save -c -t {table}"))
        .lines()
        .filter_map(|line| {
            let (counts, rule) = line.strip_prefix('[')?.split_once("] ")?;
            let packets = counts.split(':').next()?.parse().ok()?;
            Some((packets, option_groups(rule)))
        })
        .collect()
}

fn wait_until_listening(ns: &Netns, port: u16, log: &Path) {
    let start = Instant::now();
    loop {
        if ns.listens(port) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "nothing listens on :{port} in {}; its log says:\n{}",
            ns.name,
            fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
