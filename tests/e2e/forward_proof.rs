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

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

use waddlec::model::{Model, Protocol};

use crate::support::netns::{Netns, Reaped};
use crate::support::{build, host_only_blueprints, model, repo_root, require};

/// A client on the internet that no rule names.
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 99);
/// A UDP port every target VM listens on and no forward names.
const UNFORWARDED_UDP: u16 = 40_000;

/// What a target VM listens on.
type Ports = BTreeSet<(Protocol, u16)>;

#[test]
fn every_forward_carries_its_own_protocol_and_nothing_else_gets_through() {
    for tool in ["ip", "iptables-restore", "iptables-save", "python3"] {
        require(tool);
    }
    let mut udp_forwards = 0;
    for blueprint in host_only_blueprints() {
        let model = model(&blueprint);
        let (scratch, out) = build(&blueprint);
        udp_forwards += model
            .forwards
            .iter()
            .filter(|f| f.protocol == Protocol::Udp)
            .count();
        prove(&model, &out, scratch.path());
    }
    assert!(udp_forwards > 0, "the examples forward UDP somewhere");
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
        ns.sh(&format!(
            "ip link add eth0 type veth peer name tap{id}i0 netns {host} \
             && ip addr add {cidr} dev eth0 && ip link set eth0 up \
             && ip route add default via {via}",
            id = vm.id,
            host = host.name,
            cidr = nic.address
        ));
        host.sh(&format!(
            "ip link set tap{}i0 master {} up",
            vm.id, nic.bridge
        ));
        let specs: Vec<String> = ports
            .iter()
            .map(|(protocol, port)| format!("{}:{address}:{port}", protocol.as_str()))
            .collect();
        _processes.push(serve(&ns, &log, &specs));
        machines.push(ns);
    }

    let network = out.join("host/network");
    host.sh(&format!(
        "sysctl -q -p {} && {} {}",
        network.join("90-waddlec.conf").display(),
        network.join("waddlec-host-network").display(),
        network.join("host-network.rules").display()
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
        .values()
        .flat_map(|(address, ports)| {
            ports
                .iter()
                .map(move |(protocol, port)| probe(*protocol, *address, *port))
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
        .map(|label| format!("{label} peer={CLIENT}"))
        .collect();
    wanted.sort();
    assert_eq!(
        heard, wanted,
        "{name}: what the VMs heard from the internet"
    );

    // The listeners the internet never reached do answer the host.
    let local: Vec<String> = listeners
        .values()
        .flat_map(|(address, ports)| {
            ports.iter().map(move |(protocol, port)| {
                format!(
                    "{},{},{address},{port}",
                    protocol.as_str(),
                    via_host(model, *address)
                )
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
}

/// The host's own address on the bridge that holds `address`.
fn via_host(model: &Model, address: Ipv4Addr) -> Ipv4Addr {
    model
        .internal_bridges()
        .find(|b| b.network.contains(&address))
        .map(|b| b.host_address)
        .expect("the VM is on an internal bridge")
}

/// A `sni_lab.py probe` spec from the internet's client.
fn probe(protocol: Protocol, host: Ipv4Addr, port: u16) -> String {
    format!("{},{CLIENT},{host},{port}", protocol.as_str())
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
