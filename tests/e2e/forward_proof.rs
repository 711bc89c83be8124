//! The port forwards of the host-only example blueprints, proven by traffic
//! of their own protocol, TCP and UDP: each blueprint's host rebuilt as
//! network namespaces — the internet, the host with its bridges, one
//! namespace per VM a `[[forward]]` targets —, the rendered sysctl drop-in
//! and `waddlec-host-network` applied in the host's, and real connections
//! and datagrams from a client on the internet.
//!
//! ```text
//!  internet ns                host ns                        a ns per target VM
//! ┌──────────────────────┐   ┌───────────────────────────┐   ┌──────────────────────┐
//! │ eth0: the gateway of ├───┤ uplink ─ vmbr0 (public)   │ ┌─┤ eth0: the VM's NIC   │
//! │  the public bridge,  │   │ vmbr1 (internal) ─ tapNi0 ├─┘ │ tcp and udp echoes   │
//! │  client 198.51.100.99│   │ WDLC-* rules (rendered)   │   └──────────────────────┘
//! └──────────────────────┘   └───────────────────────────┘
//! ```
//!
//! For every forward: a TCP connection or a UDP datagram to the public
//! address and port reaches the listener of that protocol on the target
//! VM, which sees the client's own address (no SNAT on the way in), and its
//! answer comes back to the client from the public address and port (for
//! UDP through conntrack's reverse NAT: the client's connected socket
//! accepts nothing else); the rendered DNAT rule counts exactly that one
//! packet. What no forward names gets nothing: every target VM also
//! listens on each forwarded port with the other protocol (udp/25 beside a
//! tcp/25 forward, tcp/51820 beside a udp/51820 one) and on a UDP port no
//! forward names, and those answer the host (so they work) but never the
//! internet, through the public address or straight to the VM's internal
//! address (which the internet routes via the host: the rendered DROP for
//! the internal bridge takes it, no answer at all). No listener hears
//! anything else. About 3 s a blueprint.
//!
//! Where the public bridge has IPv6 (`services.toml`), the same again over
//! IPv6 with the rendered `host-network6.rules` (applied by the same
//! script): the bridges get their `host_address6`, the internet namespace
//! answers as the link-local `gateway6` and holds a client in another
//! documentation prefix, each target VM with an `address6` listens on it
//! too, and every dual-stack forward carries its own protocol from the
//! public IPv6 address to the VM's unique local one, the client's address
//! kept; a forward with `ipv6 = false`, the other protocol, an unforwarded
//! port and the ULA addresses straight from the internet get nothing.
//! Addresses go up with `nodad`, so duplicate address detection does not
//! hold them tentative. Stand-ins: the internet namespace plays the
//! provider's router and a remote client of either family.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::{Command, Stdio};

use waddlec::model::{Model, Protocol};

use crate::support::netns::{Netns, Reaped};
use crate::support::{build, host_only_blueprints, model, repo_root, require};

/// A client on the internet that no rule names.
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 99);
/// Its IPv6 address, outside every prefix the blueprints use.
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 0x99);
/// A UDP port every target VM listens on and no forward names.
const UNFORWARDED_UDP: u16 = 40_000;

/// Run in each namespace before its links exist: no duplicate address
/// detection, so link-local addresses (the routers' next hops) are usable
/// at once rather than tentative for the first seconds of the probes.
const NO_DAD: &str =
    "sysctl -q -w net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.accept_dad=0";

/// What a target VM listens on.
type Ports = BTreeSet<(Protocol, u16)>;

#[test]
fn every_forward_carries_its_own_protocol_and_nothing_else_gets_through() {
    for tool in ["ip", "iptables-restore", "iptables-save", "python3"] {
        require(tool);
    }
    for tool in ["ip6tables-restore", "ip6tables-save"] {
        require(tool);
    }
    let mut udp_forwards = 0;
    let mut dual_udp_forwards = 0;
    for blueprint in host_only_blueprints() {
        let model = model(&blueprint);
        let (scratch, out) = build(&blueprint);
        udp_forwards += model
            .forwards
            .iter()
            .filter(|f| f.protocol == Protocol::Udp)
            .count();
        dual_udp_forwards += model
            .forwards
            .iter()
            .filter(|f| f.protocol == Protocol::Udp && f.to6.is_some())
            .count();
        prove(&model, &out, scratch.path());
    }
    assert!(udp_forwards > 0, "the examples forward UDP somewhere");
    assert!(
        dual_udp_forwards > 0,
        "the examples forward UDP over IPv6 somewhere"
    );
}

fn prove(model: &Model, out: &Path, dir: &Path) {
    let name = &model.project.name;
    assert!(
        model.forwards.iter().all(|f| f.port.0 != UNFORWARDED_UDP),
        "{name}: port {UNFORWARDED_UDP} is not forwarded"
    );
    let public = &model.host().bridges.public;
    let gateway = public.gateway.expect("the public bridge has a gateway");
    let internet = Netns::new("fwd-inet");
    let host = Netns::new("fwd-host");
    for ns in [&internet, &host] {
        ns.sh(NO_DAD);
    }
    for bridge in &model.host().bridges {
        host.sh(&format!(
            "ip link add {name} type bridge && ip addr add {address}/{prefix} dev {name} \
             && ip link set {name} up",
            name = bridge.name,
            address = bridge.host_address,
            prefix = bridge.network.prefix_len()
        ));
    }
    internet.sh(&format!(
        "ip link add eth0 type veth peer name uplink netns {host} \
         && ip addr add {gateway}/{prefix} dev eth0 && ip addr add {CLIENT}/32 dev eth0 \
         && ip link set eth0 up",
        host = host.name,
        prefix = public.network.prefix_len()
    ));
    host.sh(&format!(
        "ip link set uplink master {} up && ip route add default via {gateway}",
        public.name
    ));
    if let Some(public6) = public.v6 {
        for bridge in &model.host().bridges {
            if let Some(v6) = bridge.v6 {
                host.sh(&format!(
                    "ip -6 addr add {}/{} dev {} nodad",
                    v6.host_address,
                    v6.network.prefix_len(),
                    bridge.name
                ));
            }
        }
        let gateway6 = public6.gateway.expect("the public bridge has gateway6");
        internet.sh(&format!(
            "ip -6 addr add {gateway6}/64 dev eth0 nodad && ip -6 addr add {CLIENT6}/128 dev eth0 nodad \
             && ip -6 route add {} dev eth0",
            public6.network
        ));
        host.sh(&format!(
            "ip -6 route add default via {gateway6} dev {}",
            public.name
        ));
        for bridge in model.internal_bridges() {
            if let Some(v6) = bridge.v6 {
                internet.sh(&format!(
                    "ip -6 route add {} via {}",
                    v6.network, public6.host_address
                ));
            }
        }
    }
    // The internet routes the internal networks via the host, as a
    // neighbour at the provider could.
    for bridge in model.internal_bridges() {
        internet.sh(&format!(
            "ip route add {} via {}",
            bridge.network, public.host_address
        ));
    }

    // Each target VM, with a listener of each protocol on every forwarded port.
    let log = dir.join("heard.log");
    fs::write(&log, "").unwrap();
    let mut listeners: BTreeMap<&str, (Ipv4Addr, Ports)> = BTreeMap::new();
    for forward in &model.forwards {
        let entry = listeners
            .entry(&forward.to.name)
            .or_insert_with(|| (forward.to.address, BTreeSet::new()));
        for protocol in [Protocol::Tcp, Protocol::Udp] {
            entry.1.insert((protocol, forward.to.port.0));
        }
        entry.1.insert((Protocol::Udp, UNFORWARDED_UDP));
    }
    // Every address a VM listens on: its IPv4 one, and its IPv6 one where
    // its NIC has it, with the same ports.
    let addresses = |name: &str, address: Ipv4Addr| -> Vec<IpAddr> {
        let vm = model.vm(name).expect("a forward targets a VM");
        std::iter::once(IpAddr::V4(address))
            .chain(vm.address6_beside(address).map(IpAddr::V6))
            .collect()
    };
    // Dropped before the namespaces they run in: killed, then deleted.
    let mut machines = Vec::new();
    let mut _processes = Vec::new();
    for (vm_name, (address, ports)) in &listeners {
        let vm = model.vm(vm_name).expect("a forward targets a VM");
        let nic = vm
            .nics
            .iter()
            .find(|n| n.address.addr() == *address)
            .expect("the target's NIC");
        let via = nic
            .gateway
            .expect("the target VM routes via the host's internal address");
        let ns = Netns::new(&format!("fwd-{vm_name}"));
        ns.sh(NO_DAD);
        ns.sh(&format!(
            "ip link add eth0 type veth peer name tap{id}i0 netns {host} \
             && ip addr add {cidr} dev eth0 && ip link set eth0 up \
             && ip route add default via {via}",
            id = vm.id,
            host = host.name,
            cidr = nic.address
        ));
        if let Some(address6) = nic.address6 {
            let via6 = nic
                .gateway6
                .expect("a dual-stack target routes IPv6 via the host");
            ns.sh(&format!(
                "ip -6 addr add {address6} dev eth0 nodad && ip -6 route add default via {via6}"
            ));
        }
        host.sh(&format!(
            "ip link set tap{}i0 master {} up",
            vm.id, nic.bridge
        ));
        let specs: Vec<String> = addresses(vm_name, *address)
            .into_iter()
            .flat_map(|ip| {
                ports.iter().map(move |(protocol, port)| {
                    format!("{}:{}:{port}", protocol.as_str(), shown(ip))
                })
            })
            .collect();
        _processes.push(serve(&ns, &log, &specs));
        machines.push(ns);
    }

    let network = out.join("host/network");
    let rules6 = network.join("host-network6.rules");
    assert_eq!(
        rules6.exists(),
        public.v6.is_some(),
        "{name}: an IPv6 ruleset exactly when the public bridge has IPv6"
    );
    host.sh(&format!(
        "sysctl -q -p {} && {} {} {}",
        network.join("90-waddlec.conf").display(),
        network.join("waddlec-host-network").display(),
        network.join("host-network.rules").display(),
        if rules6.exists() {
            rules6.display().to_string()
        } else {
            String::new()
        }
    ));

    // Through the public address: each forward's own protocol is answered
    // by its target, the other protocol and an unforwarded port by nobody.
    let mut specs = Vec::new();
    let mut expected = Vec::new();
    for forward in &model.forwards {
        let (address, port) = (forward.to.address, forward.to.port.0);
        let label = match forward.protocol {
            Protocol::Tcp => format!("{address}:{port}"),
            Protocol::Udp => format!("{address}:{port}/udp"),
        };
        let other = match forward.protocol {
            Protocol::Tcp => Protocol::Udp,
            Protocol::Udp => Protocol::Tcp,
        };
        specs.push(probe(forward.protocol, public.host_address, forward.port.0));
        expected.push(Some(label));
        specs.push(probe(other, public.host_address, forward.port.0));
        expected.push(None);
    }
    specs.push(probe(Protocol::Udp, public.host_address, UNFORWARDED_UDP));
    expected.push(None);
    // The same through the public IPv6 address: a dual-stack forward's own
    // protocol reaches the target's IPv6 listener, nothing else anything.
    if let Some(public6) = public.v6 {
        let public6 = IpAddr::V6(public6.host_address);
        for forward in &model.forwards {
            let port = forward.to.port.0;
            let other = match forward.protocol {
                Protocol::Tcp => Protocol::Udp,
                Protocol::Udp => Protocol::Tcp,
            };
            specs.push(probe(forward.protocol, public6, forward.port.0));
            expected.push(forward.to6.map(|address6| {
                let label = format!("[{address6}]:{port}");
                match forward.protocol {
                    Protocol::Tcp => label,
                    Protocol::Udp => format!("{label}/udp"),
                }
            }));
            specs.push(probe(other, public6, forward.port.0));
            expected.push(None);
        }
        specs.push(probe(Protocol::Udp, public6, UNFORWARDED_UDP));
        expected.push(None);
    }
    let results = run_probes(&internet, &specs);
    for ((spec, result), expected) in specs.iter().zip(&results).zip(&expected) {
        match expected {
            Some(label) => assert_eq!(
                *result,
                format!("reached {label}"),
                "{name}: `{spec}` from the internet reaches its forward's target"
            ),
            None => assert!(
                !result.starts_with("reached"),
                "{name}: `{spec}` is forwarded by no rule, yet: {result}"
            ),
        }
    }

    // Straight to the internal addresses: dropped, not even refused.
    let direct: Vec<String> = listeners
        .iter()
        .flat_map(|(name, (address, ports))| {
            addresses(name, *address).into_iter().flat_map(move |ip| {
                ports
                    .iter()
                    .map(move |(protocol, port)| probe(*protocol, ip, *port))
            })
        })
        .collect();
    for (spec, result) in direct.iter().zip(run_probes(&internet, &direct)) {
        assert_eq!(
            result, "timeout",
            "{name}: `{spec}` from the internet, routed via the host, is dropped"
        );
    }

    // The target saw the client's own address, once per forward, and
    // heard nothing else.
    let mut heard: Vec<String> = fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    heard.sort();
    let mut wanted: Vec<String> = expected
        .iter()
        .flatten()
        .map(|label| {
            let client = if label.starts_with('[') {
                IpAddr::V6(CLIENT6)
            } else {
                IpAddr::V4(CLIENT)
            };
            format!("{label} peer={client}")
        })
        .collect();
    wanted.sort();
    assert_eq!(
        heard, wanted,
        "{name}: what the VMs heard from the internet"
    );

    // The listeners the internet never reached do answer the host.
    let local: Vec<String> = listeners
        .iter()
        .flat_map(|(name, (address, ports))| {
            addresses(name, *address).into_iter().flat_map(move |ip| {
                ports.iter().map(move |(protocol, port)| {
                    format!("{},{},{ip},{port}", protocol.as_str(), via_host(model, ip))
                })
            })
        })
        .collect();
    for (spec, result) in local.iter().zip(run_probes(&host, &local)) {
        assert!(
            result.starts_with("reached "),
            "{name}: `{spec}` from the host reaches the VM's listener: {result}"
        );
    }

    // The rendered DNAT rule of each forward counted its one packet.
    let nat = host.sh("iptables-save -c -t nat");
    for forward in &model.forwards {
        let protocol = forward.protocol.as_str();
        let rule = format!(
            "-p {protocol} -m {protocol} --dport {} -j DNAT --to-destination {}:{}",
            forward.port, forward.to.address, forward.to.port
        );
        let packets: Vec<&str> = nat
            .lines()
            .filter(|l| l.contains("-A WDLC-PREROUTING") && l.ends_with(&rule))
            .filter_map(|l| l.strip_prefix('[')?.split(':').next())
            .collect();
        assert_eq!(
            packets,
            ["1"],
            "{name}: the DNAT rule `{rule}` counted the one probe:\n{nat}"
        );
    }
    if public.v6.is_none() {
        return;
    }
    let nat6 = host.sh("ip6tables-save -c -t nat");
    for forward in &model.forwards {
        let protocol = forward.protocol.as_str();
        let Some(address6) = forward.to6 else {
            continue;
        };
        let rule = format!(
            "-p {protocol} -m {protocol} --dport {} -j DNAT --to-destination [{address6}]:{}",
            forward.port, forward.to.port
        );
        let packets: Vec<&str> = nat6
            .lines()
            .filter(|l| l.contains("-A WDLC-PREROUTING") && l.ends_with(&rule))
            .filter_map(|l| l.strip_prefix('[')?.split(':').next())
            .collect();
        assert_eq!(
            packets,
            ["1"],
            "{name}: the IPv6 DNAT rule `{rule}` counted the one probe:\n{nat6}"
        );
    }
}

/// An address as the listeners and the log write it: IPv6 in brackets.
fn shown(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// The host's own address, of the same family, on the bridge that holds
/// `address`.
fn via_host(model: &Model, address: IpAddr) -> IpAddr {
    model
        .internal_bridges()
        .find_map(|b| match address {
            IpAddr::V4(v4) => b
                .network
                .contains(&v4)
                .then_some(IpAddr::V4(b.host_address)),
            IpAddr::V6(v6) => {
                b.v6.filter(|n| n.network.contains(&v6))
                    .map(|n| IpAddr::V6(n.host_address))
            }
        })
        .expect("the VM is on an internal bridge")
}

/// A `sni_lab.py probe` spec from the internet's client of `host`'s family.
fn probe(protocol: Protocol, host: impl Into<IpAddr>, port: u16) -> String {
    let host = host.into();
    let client = match host {
        IpAddr::V4(_) => IpAddr::V4(CLIENT),
        IpAddr::V6(_) => IpAddr::V6(CLIENT6),
    };
    format!("{},{client},{host},{port}", protocol.as_str())
}

fn run_probes(ns: &Netns, specs: &[String]) -> Vec<String> {
    let output = ns.sh(&format!(
        "python3 {} probe {}",
        repo_root().join("tests/support/sni_lab.py").display(),
        specs.join(" ")
    ));
    let results: Vec<String> = output.lines().map(String::from).collect();
    assert_eq!(results.len(), specs.len(), "one result a probe: {output}");
    results
}

/// `sni_lab.py serve` in `ns`, once it has bound every socket.
fn serve(ns: &Netns, log: &Path, specs: &[String]) -> Reaped {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, "python3"])
        .arg(repo_root().join("tests/support/sni_lab.py"))
        .args(["serve"])
        .arg(log)
        .args(["-", "-"])
        .args(specs)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready", "{}: listeners {specs:?}", ns.name);
    Reaped(child)
}
