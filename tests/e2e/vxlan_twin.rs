//! The three-host example's VXLAN VNet proven by real traffic: the Talos
//! API VIP failing over, the Cilium L2-announced ingress address, and the
//! MTU waddlec renders, all across hosts.
//!
//! Everything the twin is made of is read from `waddlec build`'s output of
//! `blueprints/examples/three-hosts.toml`, never from the blueprint:
//! the zone (VNI, MTU, peers, nodes) from `hosts/sdn.json`; which VMs run
//! on which host from `hosts/placement.json`, cross-checked against each
//! host's `create-vms.sh` (each VM's `--net0`: bridge, MAC, the tap's MTU);
//! each VM's address, gateway and NIC MTU from its seed's
//! `network-config`; which Talos nodes are control planes, the API VIP, its
//! link and port from the machine configs (`machine.type`,
//! `Layer2VIPConfig`, `cluster.controlPlane.endpoint`); the ingress address
//! from `cluster/bootstrap/30-cilium-l2-announcements.yaml`'s pool and its
//! ports from the edge's `haproxy.cfg` (the VM carrying it is the edge).
//! `sdn.json` lists `nodes` and `peers` in the same order (the hosts'
//! order; `core::resolve::hosts` builds both from it), which is how each
//! host gets its underlay address.
//!
//! What stands in for what:
//!
//! - Hosts and VMs are network namespaces (`wdlc-vx*`); the provider's
//!   private network is a bridge in its own namespace at MTU 1500, each
//!   host joined to it by a veth carrying its underlay address (a /32 with
//!   routes to the peers: the underlay's prefix is the provider's, not
//!   rendered).
//! - The VNet is the kernel's own `vxlan` driver, which is what Proxmox
//!   uses: pve-network's `src/PVE/Network/SDN/Zones/VxlanPlugin.pm`
//!   (`generate_sdn_config`, github.com/proxmox/pve-network) writes for
//!   ifupdown2 a `vxlan_VNET` interface with `vxlan-id TAG`, one
//!   `vxlan_remoteip` per peer other than the host's own address (found
//!   with `find_local_ip_interface_peers`), `mtu` = the zone's `mtu`, and a
//!   bridge named as the VNet with `bridge_ports vxlan_VNET`, `bridge_stp
//!   off`, `bridge_fd 0` and the same `mtu`. ifupdown2 turns each
//!   `vxlan_remoteip` into head-end replication, `bridge fdb append
//!   00:00:00:00:00:00 dev vxlan_VNET dst PEER`, on a device with learning
//!   on and the IANA port 4789; the twin runs those commands.
//! - The host's own address on the VNet is put there by running the
//!   rendered per-host `network/waddlec-host-network` (with its
//!   `host-network.rules`) in the host's namespace once the VNet exists, as
//!   on a host after `pvesh set /cluster/sdn`: its `ip address replace`,
//!   its sysctls and its chains, not a copy of them.
//! - A VM is a namespace whose `eth0` has the rendered MAC, address, MTU
//!   and default route, its veth's other end (the tap) enslaved to its
//!   placed host's VNet bridge with the MTU of its `--net0`.
//! - Talos' VIP controller is emulated by what it does once elected
//!   (siderolabs/talos `internal/app/machined/pkg/controllers/network/
//!   operator/vip.go`: the VIP as a /32 on the `Layer2VIPConfig` link, with
//!   `AnnounceWithARP`; `controllers/network/address_spec.go`'s
//!   `gratuitousARP`: one ARP request, sender and target both the VIP and
//!   the link's MAC, to ff:ff:ff:ff:ff:ff). The same frame is sent here
//!   from Python over a packet socket; the election itself (etcd) is not
//!   emulated: the test decides who holds the VIP.
//! - Cilium's L2 announcer (docs.cilium.io/en/stable/network/
//!   l2-announcements/: the node holding a service's lease answers ARP
//!   requests for its LoadBalancer address on the policy's interfaces with
//!   that interface's MAC) is emulated by the address on the holder's `lo`:
//!   the kernel (`arp_ignore` 0) then answers ARP for it on `eth0` with
//!   `eth0`'s MAC, and accepts the connection Cilium's eBPF would hand to a
//!   backend. The lease election is not emulated.
//!
//! The assertions carry their own controls: the VIP's gratuitous ARP sent
//! while the new holder's host lacks its head-end replication entries must
//! not reach the client (and does once they are back); a 1450-byte DF
//! packet crosses from a NIC at 1500 where every 1451..1500-byte one is
//! silently lost (the VNet bridge drops a frame bigger than its VXLAN
//! port's MTU, the zone's, without an ICMP error); and with that port one
//! byte bigger the kernel's VXLAN itself reports the path MTU over the
//! 1500-byte underlay: 1450, the rendered one. Without the head-end
//! replication entries every test here fails (tried by hand).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::netns::{Netns, Reaped};
use crate::support::talos_lab::yaml_documents;
use crate::support::{build, cluster_blueprints, require, text};

/// The provider's private network between the hosts: plain Ethernet.
const UNDERLAY_MTU: u32 = 1500;
/// VXLAN's IANA port, ifupdown2's default (the zone sets no `vxlan-port`).
const VXLAN_PORT: u16 = 4789;
/// A port of the test's own transfer listener.
const TRANSFER_PORT: u16 = 5001;

/// The Talos VIP and L2-announcement stand-ins and the test's traffic:
/// `serve PORT NAME` answers each connection with NAME; `ask HOST PORT
/// TIMEOUT` prints that answer; `sink PORT` reads one connection to its end
/// and answers with the byte count and sha256; `send HOST PORT BYTES` sends
/// that much and prints what it sent and the answer; `garp IFACE IP` sends
/// Talos' gratuitous ARP.
const PROGRAM: &str = r#"
import hashlib, socket, struct, sys

def listener(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(16)
    return s

def payload(size):
    return bytes(i * 7 % 251 for i in range(size))

mode = sys.argv[1]
if mode == "serve":
    s = listener(int(sys.argv[2]))
    while True:
        c, _ = s.accept()
        with c:
            c.sendall((sys.argv[3] + "\n").encode())
elif mode == "ask":
    with socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=float(sys.argv[4])) as c:
        print(c.makefile().readline().strip())
elif mode == "sink":
    s = listener(int(sys.argv[2]))
    c, _ = s.accept()
    digest, count = hashlib.sha256(), 0
    while True:
        chunk = c.recv(65536)
        if not chunk:
            break
        digest.update(chunk)
        count += len(chunk)
    c.sendall(f"{count} {digest.hexdigest()}\n".encode())
    c.close()
elif mode == "send":
    data = payload(int(sys.argv[4]))
    with socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=10) as c:
        c.sendall(data)
        c.shutdown(socket.SHUT_WR)
        answer = c.makefile().readline().strip()
    print(f"{len(data)} {hashlib.sha256(data).hexdigest()}")
    print(answer)
elif mode == "garp":
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    s.bind((sys.argv[2], 0))
    mac = s.getsockname()[4]
    ip = socket.inet_aton(sys.argv[3])
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + ip + mac + ip
    s.send(b"\xff" * 6 + mac + struct.pack("!H", 0x0806) + arp)
"#;

struct Host {
    node: String,
    underlay: String,
    dir: PathBuf,
}

struct Vm {
    name: String,
    node: String,
    mac: String,
    /// The tap's MTU, from the host's `--net0 ...,mtu=`.
    tap_mtu: u32,
    /// `10.30.1.10/22`
    cidr: String,
    /// The guest NIC's MTU, from its `network-config`.
    mtu: u32,
    gateway: String,
    talos: bool,
    control_plane: bool,
    edge: bool,
}

impl Vm {
    fn ip(&self) -> &str {
        self.cidr.split('/').next().unwrap()
    }
}

/// What the twin is built from, all read from a build's output.
struct Rendered {
    vnet: String,
    vni: u64,
    zone_mtu: u32,
    hosts: Vec<Host>,
    vms: Vec<Vm>,
    api_vip: String,
    api_link: String,
    api_port: u16,
    ingress: String,
    ingress_ports: Vec<u16>,
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// Each VM's `--net0` in a host's `create-vms.sh`: name → (bridge, MAC, MTU).
fn net0s(script: &str) -> BTreeMap<String, (String, String, u32)> {
    let mut name = None;
    let mut nics = BTreeMap::new();
    for line in script.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("--name '") {
            name = Some(rest.split('\'').next().unwrap().to_string());
        }
        if let Some(rest) = line.strip_prefix("--net0 '") {
            let spec = rest.split('\'').next().unwrap();
            let fields: BTreeMap<&str, &str> =
                spec.split(',').filter_map(|f| f.split_once('=')).collect();
            nics.insert(
                name.clone().expect("--name before --net0"),
                (
                    fields["bridge"].to_string(),
                    fields["macaddr"].to_string(),
                    fields["mtu"].parse().unwrap(),
                ),
            );
        }
    }
    nics
}

fn rendered(out: &Path) -> Rendered {
    let sdn = json(&out.join("hosts/sdn.json"));
    let zone = &sdn["zone"];
    assert_eq!(zone["type"], "vxlan", "{sdn:#}");
    let nodes: Vec<&str> = zone["nodes"].as_str().unwrap().split(',').collect();
    let peers: Vec<&str> = zone["peers"].as_str().unwrap().split(',').collect();
    assert_eq!(nodes.len(), peers.len(), "{sdn:#}");
    assert_eq!(nodes.len(), 3, "three hosts: {sdn:#}");
    let vnets = sdn["vnets"].as_array().unwrap();
    assert_eq!(vnets.len(), 1, "{sdn:#}");
    let vnet = vnets[0]["vnet"].as_str().unwrap().to_string();
    assert_eq!(vnets[0]["zone"], zone["zone"], "{sdn:#}");
    let hosts: Vec<Host> = nodes
        .iter()
        .zip(&peers)
        .map(|(node, underlay)| Host {
            node: node.to_string(),
            underlay: underlay.to_string(),
            dir: out.join("hosts").join(node),
        })
        .collect();

    let placement = json(&out.join("hosts/placement.json"));
    let mut vms = Vec::new();
    for entry in placement["hosts"].as_array().unwrap() {
        let node = entry["node"].as_str().unwrap();
        let host = hosts.iter().find(|h| h.node == node).unwrap();
        let nics = net0s(&fs::read_to_string(host.dir.join("create-vms.sh")).unwrap());
        let placed: Vec<&str> = entry["vms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            nics.keys().map(String::as_str).collect::<Vec<_>>(),
            {
                let mut sorted = placed.clone();
                sorted.sort_unstable();
                sorted
            },
            "{node}: create-vms.sh creates the VMs placement.json puts there"
        );
        for name in placed {
            let (bridge, mac, tap_mtu) = nics[name].clone();
            assert_eq!(bridge, vnet, "{name}: on the VNet");
            let seed = out.join("vms").join(name).join("seed");
            let config =
                yaml_documents(&fs::read_to_string(seed.join("network-config")).unwrap()).remove(0);
            let eth0 = &config["ethernets"]["eth0"];
            assert_eq!(eth0["match"]["macaddress"], mac.as_str(), "{name}");
            let addresses = eth0["addresses"].as_array().unwrap();
            assert_eq!(addresses.len(), 1, "{name}: {eth0}");
            let user_data = fs::read_to_string(seed.join("user-data")).unwrap();
            let talos = user_data.starts_with("version: v1alpha1");
            let control_plane =
                talos && yaml_documents(&user_data)[0]["machine"]["type"] == "controlplane";
            vms.push(Vm {
                name: name.to_string(),
                node: node.to_string(),
                mac,
                tap_mtu,
                cidr: addresses[0].as_str().unwrap().to_string(),
                mtu: u32::try_from(eth0["mtu"].as_u64().unwrap()).unwrap(),
                gateway: eth0["gateway4"].as_str().unwrap().to_string(),
                talos,
                control_plane,
                edge: out.join("vms").join(name).join("haproxy.cfg").exists(),
            });
        }
    }

    // The API VIP, as every control plane's machine config has it.
    let mut vips = Vec::new();
    for vm in vms.iter().filter(|vm| vm.control_plane) {
        let docs = yaml_documents(
            &fs::read_to_string(out.join("vms").join(&vm.name).join("seed/user-data")).unwrap(),
        );
        let vip = docs
            .iter()
            .find(|d| d["kind"] == "Layer2VIPConfig")
            .unwrap_or_else(|| panic!("{}: a Layer2VIPConfig", vm.name));
        let endpoint = docs[0]["cluster"]["controlPlane"]["endpoint"]
            .as_str()
            .unwrap();
        let (ip, port) = endpoint
            .strip_prefix("https://")
            .unwrap()
            .rsplit_once(':')
            .unwrap();
        assert_eq!(ip, vip["name"], "{}: the endpoint is the VIP", vm.name);
        vips.push((
            ip.to_string(),
            vip["link"].as_str().unwrap().to_string(),
            port.parse::<u16>().unwrap(),
        ));
    }
    vips.dedup();
    assert_eq!(vips.len(), 1, "one VIP on every control plane: {vips:?}");
    let (api_vip, api_link, api_port) = vips.remove(0);

    // The ingress address Cilium announces, and the ports the edge uses.
    let l2 = yaml_documents(
        &fs::read_to_string(out.join("cluster/bootstrap/30-cilium-l2-announcements.yaml")).unwrap(),
    );
    let pool = l2
        .iter()
        .find(|d| d["kind"] == "CiliumLoadBalancerIPPool")
        .unwrap();
    let block = &pool["spec"]["blocks"][0];
    assert_eq!(block["start"], block["stop"], "one address: {pool}");
    let ingress = block["start"].as_str().unwrap().to_string();
    let edge = vms.iter().find(|vm| vm.edge).expect("an edge VM");
    let haproxy = fs::read_to_string(out.join("vms").join(&edge.name).join("haproxy.cfg")).unwrap();
    let ingress_ports: Vec<u16> = haproxy
        .lines()
        .filter_map(|l| l.trim().strip_prefix("server "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter_map(|target| target.rsplit_once(':'))
        .filter(|(ip, _)| *ip == ingress)
        .map(|(_, port)| port.parse().unwrap())
        .collect();
    assert!(
        !ingress_ports.is_empty(),
        "the edge reaches the ingress:\n{haproxy}"
    );

    Rendered {
        vni: vnets[0]["tag"].as_u64().unwrap(),
        zone_mtu: u32::try_from(zone["mtu"].as_u64().unwrap()).unwrap(),
        vnet,
        hosts,
        vms,
        api_vip,
        api_link,
        api_port,
        ingress,
        ingress_ports,
    }
}

/// The hosts, their VNet and their VMs as namespaces. Fields drop in
/// order: the listeners, then the namespaces (and every veth with them).
struct Twin {
    servers: Vec<Reaped>,
    vms: BTreeMap<String, Netns>,
    hosts: BTreeMap<String, Netns>,
    _underlay: Netns,
    program: PathBuf,
    vxlan: String,
}

impl Twin {
    fn up(r: &Rendered, dir: &Path) -> Twin {
        for tool in ["ip", "bridge", "ping", "python3", "iptables-restore"] {
            require(tool);
        }
        let program = dir.join("vxlan_twin.py");
        fs::write(&program, PROGRAM).unwrap();
        let vxlan = format!("vxlan_{}", r.vnet);
        let underlay = Netns::new("vxul");
        underlay.sh(&format!(
            "ip link add ul type bridge && ip link set ul mtu {UNDERLAY_MTU} up"
        ));
        let mut hosts = BTreeMap::new();
        for (i, host) in r.hosts.iter().enumerate() {
            let ns = Netns::new(&format!("vx{}", host.node));
            underlay.sh(&format!(
                "ip link add ul{i} mtu {UNDERLAY_MTU} type veth peer name eno1 mtu {UNDERLAY_MTU} netns {} \
                 && ip link set ul{i} master ul up",
                ns.name
            ));
            ns.sh(&format!(
                "ip link set eno1 up && ip address add {}/32 dev eno1",
                host.underlay
            ));
            let peers: Vec<&Host> = r.hosts.iter().filter(|h| h.node != host.node).collect();
            // The zone's VXLAN interface and VNet bridge, as ifupdown2
            // makes them from VxlanPlugin.pm's stanza.
            ns.sh(&format!(
                "ip link add {vxlan} type vxlan id {vni} dstport {VXLAN_PORT} learning \
                 && ip link set {vxlan} mtu {mtu} \
                 && ip link add {vnet} type bridge stp_state 0 forward_delay 0 \
                 && ip link set {vnet} mtu {mtu} \
                 && ip link set {vxlan} master {vnet} up && ip link set {vnet} up",
                vni = r.vni,
                mtu = r.zone_mtu,
                vnet = r.vnet,
            ));
            for peer in &peers {
                ns.sh(&format!(
                    "ip route add {ip}/32 dev eno1 \
                     && bridge fdb append 00:00:00:00:00:00 dev {vxlan} dst {ip}",
                    ip = peer.underlay
                ));
            }
            // The rendered per-host network script: the host's address on
            // the VNet (and its forwarding and chains).
            let network = host.dir.join("network");
            ns.sh(&format!(
                "{} {}",
                network.join("waddlec-host-network").display(),
                network.join("host-network.rules").display()
            ));
            hosts.insert(host.node.clone(), ns);
        }
        let mut vms = BTreeMap::new();
        for vm in &r.vms {
            let ns = Netns::new(&format!("vx{}", vm.name));
            let tap = tap(vm);
            hosts[&vm.node].sh(&format!(
                "ip link add {tap} mtu {tap_mtu} type veth peer name eth0 netns {ns} \
                 && ip link set {tap} master {vnet} up",
                tap_mtu = vm.tap_mtu,
                ns = ns.name,
                vnet = r.vnet
            ));
            ns.sh(&format!(
                "ip link set eth0 address {} mtu {} up && ip address add {} dev eth0 \
                 && ip route add default via {}",
                vm.mac, vm.mtu, vm.cidr, vm.gateway
            ));
            vms.insert(vm.name.clone(), ns);
        }
        let twin = Twin {
            servers: Vec::new(),
            vms,
            hosts,
            _underlay: underlay,
            program,
            vxlan,
        };
        // Wired as rendered: each VM's gateway is the address the rendered
        // script gave its own host's VNet bridge.
        for vm in &r.vms {
            let ping = twin
                .vm(vm)
                .try_sh(&format!("ping -n -c 1 -W 2 {}", vm.gateway));
            assert!(
                ping.status.success(),
                "{} reaches its gateway {}: {}",
                vm.name,
                vm.gateway,
                text(&ping.stdout)
            );
            let bridge = twin.hosts[&vm.node].sh(&format!("cat /sys/class/net/{}/address", r.vnet));
            assert_eq!(
                twin.neighbour(vm, &vm.gateway).as_deref(),
                Some(bridge.trim()),
                "{}'s gateway {} is {}'s {}",
                vm.name,
                vm.gateway,
                vm.node,
                r.vnet
            );
        }
        twin
    }

    fn vm(&self, vm: &Vm) -> &Netns {
        &self.vms[&vm.name]
    }

    /// Runs the Python program in `vm`'s namespace.
    fn py(&self, vm: &Vm, args: &str) -> Output {
        self.vm(vm)
            .try_sh(&format!("python3 {} {args}", self.program.display()))
    }

    /// Starts the Python program's `serve PORT NAME` in `vm`'s namespace.
    fn serve(&mut self, vm: &Vm, port: u16) {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.vm(vm).name, "python3"])
            .arg(&self.program)
            .args(["serve", &port.to_string(), &vm.name])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.servers.push(Reaped(child));
        wait_listening(self.vm(vm), port);
    }

    /// Which VM answers `ip:port` from `client`, or why none did.
    fn ask(&self, client: &Vm, ip: &str, port: u16, timeout: f32) -> Result<String, String> {
        let output = self.py(client, &format!("ask {ip} {port} {timeout}"));
        if output.status.success() {
            Ok(text(&output.stdout).trim().to_string())
        } else {
            Err(text(&output.stderr))
        }
    }

    /// The MAC `client`'s neighbour table has for `ip`, if any.
    fn neighbour(&self, client: &Vm, ip: &str) -> Option<String> {
        let line = self
            .vm(client)
            .sh(&format!("ip -4 neigh show {ip} dev eth0"));
        let mut words = line.split_whitespace();
        words.find(|w| *w == "lladdr")?;
        words.next().map(str::to_string)
    }

    fn garp(&self, vm: &Vm, link: &str, ip: &str) {
        let output = self.py(vm, &format!("garp {link} {ip}"));
        assert!(output.status.success(), "{}", text(&output.stderr));
    }

    /// Puts back (`on`) or takes away the head-end replication entries of
    /// `node`'s VXLAN device: without them it floods to nobody.
    fn replicate(&self, r: &Rendered, node: &str, on: bool) {
        for peer in r.hosts.iter().filter(|h| h.node != node) {
            self.hosts[node].sh(&format!(
                "bridge fdb {} 00:00:00:00:00:00 dev {} dst {}",
                if on { "append" } else { "del" },
                self.vxlan,
                peer.underlay
            ));
        }
    }
}

/// The VM's tap on its host (Proxmox names it `tapVMIDi0`; the twin has
/// only the name, short enough for an interface name).
fn tap(vm: &Vm) -> String {
    let mut name = format!("tap-{}", vm.name);
    name.truncate(15);
    name
}

fn wait_listening(ns: &Netns, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ns.listens(port) {
        assert!(
            Instant::now() < deadline,
            "nothing listens on {port} in {}",
            ns.name
        );
        sleep(Duration::from_millis(50));
    }
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(50));
    }
}

fn three_hosts() -> (tempfile::TempDir, PathBuf, Rendered) {
    let blueprint = cluster_blueprints()
        .into_iter()
        .find(|b| b.ends_with("three-hosts.toml"))
        .unwrap();
    let (guard, out) = build(&blueprint);
    let rendered = rendered(&out);
    (guard, out, rendered)
}

/// The API VIP held on one host, reached from a second, failing over to a
/// control plane on the third whose gratuitous ARP, flooded by head-end
/// replication, moves the client to it with no flush of its neighbours.
#[test]
fn the_talos_vip_fails_over_across_hosts_by_gratuitous_arp() {
    let (dir, _out, r) = three_hosts();
    let mut twin = Twin::up(&r, dir.path());
    let (client, first, second) = r
        .vms
        .iter()
        .filter(|vm| vm.talos && !vm.control_plane)
        .find_map(|client| {
            let mut cps = r
                .vms
                .iter()
                .filter(|vm| vm.control_plane && vm.node != client.node);
            let first = cps.next()?;
            let second = cps.find(|vm| vm.node != first.node)?;
            Some((client, first, second))
        })
        .expect("a worker and two control planes on three hosts");
    for cp in r.vms.iter().filter(|vm| vm.control_plane) {
        twin.serve(cp, r.api_port);
    }
    let vip = r.api_vip.as_str();
    let link = r.api_link.as_str();

    // The first control plane is elected: the VIP on its link, announced.
    twin.vm(first)
        .sh(&format!("ip address add {vip}/32 dev {link}"));
    twin.garp(first, link, vip);
    assert_eq!(
        twin.ask(client, vip, r.api_port, 3.0).as_deref(),
        Ok(first.name.as_str()),
        "{} on {} reaches the VIP on {} ({})",
        client.name,
        client.node,
        first.name,
        first.node
    );
    assert_eq!(twin.neighbour(client, vip), Some(first.mac.clone()));

    // It fails: the VIP gone, its NIC down. The client, still holding its
    // MAC, reaches nobody.
    twin.vm(first).sh(&format!(
        "ip address del {vip}/32 dev {link} && ip link set {link} down"
    ));
    assert!(
        twin.ask(client, vip, r.api_port, 1.0).is_err(),
        "nobody answers for the failed holder"
    );

    // The second is elected on the third host. Control: while its host
    // has no head-end replication entries its gratuitous ARP (a broadcast)
    // goes nowhere, and the client keeps the dead MAC.
    twin.vm(second)
        .sh(&format!("ip address add {vip}/32 dev {link}"));
    twin.replicate(&r, &second.node, false);
    twin.garp(second, link, vip);
    sleep(Duration::from_millis(500));
    assert_eq!(
        twin.neighbour(client, vip),
        Some(first.mac.clone()),
        "without head-end replication no broadcast leaves {}",
        second.node
    );
    // With them (as Proxmox writes them), the same announcement moves the
    // client over: no neighbour flush, no ARP request of its own.
    twin.replicate(&r, &second.node, true);
    twin.garp(second, link, vip);
    wait_for("the gratuitous ARP to reach the client", || {
        twin.neighbour(client, vip).as_deref() == Some(second.mac.as_str())
    });
    assert_eq!(
        twin.ask(client, vip, r.api_port, 3.0).as_deref(),
        Ok(second.name.as_str()),
        "{} reaches the new holder {} on {}",
        client.name,
        second.name,
        second.node
    );
}

/// The ingress address, announced by the Talos node holding its lease,
/// reached from the edge on another host by ARP across the VNet.
#[test]
fn the_cilium_announced_ingress_answers_arp_across_hosts() {
    let (dir, _out, r) = three_hosts();
    let mut twin = Twin::up(&r, dir.path());
    let edge = r.vms.iter().find(|vm| vm.edge).unwrap();
    let holder = r
        .vms
        .iter()
        .filter(|vm| vm.talos && vm.node != edge.node)
        .min_by_key(|vm| vm.control_plane)
        .expect("a Talos node on another host than the edge");
    // Only the lease holder serves (and answers ARP for) the address; the
    // other Talos nodes listen too, so a wrong answer would name them.
    for vm in r.vms.iter().filter(|vm| vm.talos) {
        for port in &r.ingress_ports {
            twin.serve(vm, *port);
        }
    }
    let ingress = r.ingress.as_str();
    assert_eq!(
        twin.neighbour(edge, ingress),
        None,
        "the edge knows no MAC for {ingress} yet"
    );
    twin.vm(holder)
        .sh(&format!("ip address add {ingress}/32 dev lo"));
    for port in &r.ingress_ports {
        assert_eq!(
            twin.ask(edge, ingress, *port, 3.0).as_deref(),
            Ok(holder.name.as_str()),
            "{} on {} reaches {ingress}:{port} on {} ({})",
            edge.name,
            edge.node,
            holder.name,
            holder.node
        );
    }
    assert_eq!(
        twin.neighbour(edge, ingress),
        Some(holder.mac.clone()),
        "the holder answered the edge's ARP request"
    );
}

/// The rendered MTU between VMs on different hosts: a full 1450-byte
/// packet with DF crosses, a larger one is refused by the VM's own stack,
/// a 1 MiB TCP transfer completes; a NIC at the underlay's 1500 would have
/// its 1451..1500-byte DF packets lost without a word; and a zone one byte
/// bigger does not fit the underlay, whose path MTU the kernel's VXLAN
/// computes as the rendered one.
#[test]
fn the_rendered_mtu_is_the_largest_that_crosses_the_vxlan_underlay() {
    let started = Instant::now();
    let (dir, _out, r) = three_hosts();
    let mut twin = Twin::up(&r, dir.path());
    let a = r.vms.iter().find(|vm| vm.talos).unwrap();
    let b = r
        .vms
        .iter()
        .find(|vm| vm.talos && vm.node != a.node)
        .unwrap();
    assert_eq!(a.mtu, r.zone_mtu, "{}'s NIC at the zone's MTU", a.name);
    assert_eq!(a.tap_mtu, r.zone_mtu, "{}'s tap at the zone's MTU", a.name);
    let header = 28; // IPv4 and ICMP
    let ping = |twin: &Twin, size: u32| {
        twin.vm(a).try_sh(&format!(
            "ping -n -M do -c 1 -W 1 -s {} {}",
            size - header,
            b.ip()
        ))
    };

    let full = ping(&twin, r.zone_mtu);
    assert!(
        full.status.success(),
        "a {}-byte DF packet crosses from {} to {}: {}",
        r.zone_mtu,
        a.node,
        b.node,
        text(&full.stdout)
    );
    let over = ping(&twin, r.zone_mtu + 1);
    let said = format!("{}{}", text(&over.stdout), text(&over.stderr));
    assert!(
        !over.status.success() && said.contains("message too long"),
        "one byte more is refused by the VM itself: {said}"
    );

    // 1 MiB over TCP, whole.
    let sink = Command::new("ip")
        .args(["netns", "exec", &twin.vm(b).name, "python3"])
        .arg(&twin.program)
        .args(["sink", &TRANSFER_PORT.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    twin.servers.push(Reaped(sink));
    wait_listening(twin.vm(b), TRANSFER_PORT);
    let sent = twin.py(a, &format!("send {} {TRANSFER_PORT} {}", b.ip(), 1 << 20));
    let said = text(&sent.stdout);
    let lines: Vec<&str> = said.lines().collect();
    assert!(
        sent.status.success() && lines.len() == 2 && lines[0] == lines[1],
        "1 MiB arrives whole: {said}{}",
        text(&sent.stderr)
    );
    assert!(lines[0].starts_with(&format!("{} ", 1 << 20)), "{said}");

    // Were the NIC at 1500 (tap and guest), what fits the underlay bare
    // would not fit it encapsulated: lost at the VXLAN port, no ICMP back.
    twin.hosts[&a.node].sh(&format!("ip link set {} mtu {UNDERLAY_MTU}", tap(a)));
    twin.vm(a)
        .sh(&format!("ip link set eth0 mtu {UNDERLAY_MTU}"));
    let sizes: Vec<String> = (r.zone_mtu + 1..=UNDERLAY_MTU)
        .map(|size| (size - header).to_string())
        .collect();
    let crossed = twin.vm(a).sh(&format!(
        "for s in {}; do (ping -n -M do -c 1 -W 1 -s $s {} >/dev/null 2>&1 && echo $((s + {header}))) & done; wait",
        sizes.join(" "),
        b.ip()
    ));
    assert_eq!(
        crossed.trim(),
        "",
        "no DF packet of {}..{UNDERLAY_MTU} bytes crosses",
        r.zone_mtu + 1
    );
    let largest = ping(&twin, UNDERLAY_MTU);
    let said = format!("{}{}", text(&largest.stdout), text(&largest.stderr));
    assert!(
        !largest.status.success()
            && said.contains("1 packets transmitted, 0 received")
            && !said.contains("too long")
            && !said.contains("Frag"),
        "a {UNDERLAY_MTU}-byte packet is sent and lost without an error: {said}"
    );
    let still = ping(&twin, r.zone_mtu);
    assert!(
        still.status.success(),
        "the path is up: {} bytes still cross",
        r.zone_mtu
    );

    // And 1450 is not merely safe but the most: were the zone's MTU one
    // byte more (the VXLAN device and VNet on the sender's host), the
    // kernel's VXLAN finds the encapsulated packet too big for the 1500
    // underlay and answers with the path MTU it computes: the rendered one.
    let more = r.zone_mtu + 1;
    twin.hosts[&a.node].sh(&format!(
        "ip link set {} mtu {more} && ip link set {} mtu {more}",
        twin.vxlan, r.vnet
    ));
    let over = ping(&twin, more);
    let said = format!("{}{}", text(&over.stdout), text(&over.stderr));
    assert!(
        !over.status.success() && said.contains(&format!("(mtu = {})", r.zone_mtu)),
        "a {more}-byte packet does not fit the {UNDERLAY_MTU}-byte underlay encapsulated: {said}"
    );
    eprintln!("vxlan twin MTU test: {:?}", started.elapsed());
}
