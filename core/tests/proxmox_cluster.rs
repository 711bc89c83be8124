//! A Proxmox cluster through the core's public pipeline
//! (`blueprints/examples/three-hosts.toml`): `placement = "spread"` puts
//! one control plane on each host; each machine's default route is its own
//! host's address on the VNet; VNet NICs get the zone's MTU (on `netN`
//! and in the guest's network-config). Then each bad input the
//! cluster language can carry is refused (or warned about) at its place in
//! the blueprint with its rule: two hosts on one public address (E0166),
//! an unknown host (E0161), a host without its VNet address (E0163), a
//! VNet without a VNI (E0164), an unplaced machine (E0165), `[host]` beside
//! `[cluster]` (E0160), a forward to a VIP (E0167), two of three control
//! planes on one host (W0204, which `--strict` makes fatal), an API URL
//! naming no host (E0168), and a port forwarded twice on one host (E0114;
//! once on each of two hosts is fine). The same refusals, rendered, are
//! the corpus's 160–170. With
//! `[teleport]`, every host is Teleport's OpenSSH node.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test here

mod common;

use std::net::Ipv4Addr;

use common::{checked, findings};
use waddlec_core::blueprint::SourceFile;
use waddlec_core::diagnostics::{report, Diagnostic};

fn example() -> SourceFile {
    common::example("three-hosts.toml")
}

/// The example with `from` replaced by `to` (exactly once).
fn edited(from: &str, to: &str) -> SourceFile {
    common::edited(example(), from, to)
}

/// The one finding of `source`, which must be under `code` and point at
/// the line holding `at`.
fn refused(source: &SourceFile, code: &str, at: &str) -> Diagnostic {
    let found = findings(source);
    let mine: Vec<&Diagnostic> = found.iter().filter(|d| d.rule.code == code).collect();
    assert_eq!(
        mine.len(),
        1,
        "{}",
        report::render_text(source, &found, false)
    );
    let line = source.text[..mine[0].span.start].lines().count();
    let expected = source
        .text
        .lines()
        .collect::<Vec<_>>()
        .iter()
        .rposition(|l| l.contains(at))
        .unwrap()
        + 1;
    assert!(
        line == expected || line + 1 == expected,
        "{code} at line {line}, expected {expected} (`{at}`)"
    );
    assert!(mine[0].help.is_some(), "{code} says how to fix it");
    mine[0].clone()
}

#[test]
fn spread_places_one_control_plane_per_host_and_each_host_routes_its_own() {
    let (model, warnings) = checked(&example());
    assert!(warnings.is_empty(), "{warnings:?}");
    let hosts: Vec<&str> = model.control_planes().map(|n| n.vm.host.as_str()).collect();
    assert_eq!(hosts, ["pve1", "pve2", "pve3"]);
    let workers: Vec<&str> = model.talos_workers().map(|n| n.vm.host.as_str()).collect();
    assert_eq!(workers, ["pve1", "pve2"], "workers carry on the round");
    for vm in &model.vms {
        let host = model.host_of(vm);
        let own = host.bridges.internal[0].host_address;
        assert_eq!(
            vm.nics[0].gateway,
            Some(own),
            "{} routes through {}",
            vm.name,
            host.node
        );
        assert_eq!(model.vnet_mtu(&vm.nics[0].bridge), Some(1450));
    }
    let sdn = model.proxmox.sdn.as_ref().unwrap();
    assert_eq!(sdn.zone, "trio");
    assert_eq!(
        sdn.peers,
        ["172.16.0.11", "172.16.0.12", "172.16.0.13"].map(|a| a.parse::<Ipv4Addr>().unwrap())
    );
    assert!(model.proxmox.single_host().is_none());
    let edge = model.vm("edge").unwrap();
    let network = waddlec_core::render::seed::network_config(&model, edge).unwrap();
    assert!(network.contains("mtu: 1450"), "{network}");
    assert_eq!(model.host_of(model.vm("edge").unwrap()).node, "pve1");
}

#[test]
fn two_control_planes_on_one_of_three_hosts_is_warned_about() {
    let source = edited(
        "name = \"cp-2\"\naddress = \"10.30.1.11\"",
        "name = \"cp-2\"\naddress = \"10.30.1.11\"\nhost = \"pve1\"",
    );
    let source = SourceFile {
        text: source.text.replacen(
            "name = \"cp-1\"\naddress = \"10.30.1.10\"",
            "name = \"cp-1\"\naddress = \"10.30.1.10\"\nhost = \"pve1\"",
            1,
        ),
        ..source
    };
    let (_, warnings) = checked(&source);
    let codes: Vec<&str> = warnings.iter().map(|w| w.rule.code).collect();
    assert_eq!(codes, ["W0204"]);
    assert!(warnings[0]
        .message
        .contains("losing host `pve1` loses 2 of 3"));
    assert!(warnings[0]
        .help
        .as_deref()
        .unwrap()
        .contains("different host"));
}

#[test]
fn with_two_hosts_no_placement_survives_and_the_warning_says_so() {
    let source = edited(
        "[[cluster.host]]\nnode = \"pve3\"\ndisk_storage = \"local-zfs\"\nfile_storage = \"local\"\nunderlay = \"172.16.0.13\"\naddresses = { vnet1 = \"10.30.0.3\" }\n",
        "",
    );
    let source = SourceFile {
        text: source.text.replacen(
            "[[bridge]]\nname = \"vmbr0\"\nrole = \"public\"\nhost = \"pve3\"\ncidr = \"203.0.113.0/24\"\nhost_address = \"203.0.113.13\"\ngateway = \"203.0.113.1\"\n",
            "",
            1,
        ),
        ..source
    };
    let (_, warnings) = checked(&source);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].rule.code, "W0204");
    assert!(warnings[0]
        .help
        .as_deref()
        .unwrap()
        .contains("it takes three of each"));
}

#[test]
fn two_hosts_on_one_public_address_are_refused() {
    let source = edited(
        "host_address = \"203.0.113.12\"",
        "host_address = \"203.0.113.11\"",
    );
    let found = refused(&source, "E0166", "host_address = \"203.0.113.11\"");
    assert!(
        found.message.contains("`pve1` and `pve2`"),
        "{}",
        found.message
    );
}

#[test]
fn a_machine_on_a_host_the_cluster_lacks_is_refused() {
    let source = edited("host = \"pve1\"\nimage", "host = \"pve4\"\nimage");
    let found = refused(&source, "E0161", "host = \"pve4\"");
    assert!(found.help.unwrap().contains("pve1, pve2, pve3"));
}

#[test]
fn a_host_without_its_address_on_the_vnet_is_refused() {
    let source = edited("addresses = { vnet1 = \"10.30.0.2\" }\n", "");
    refused(&source, "E0163", "node = \"pve2\"");
}

#[test]
fn a_vnet_without_a_vni_is_refused() {
    let source = edited("vni = 30001\n", "");
    refused(&source, "E0164", "name = \"vnet1\"");
}

#[test]
fn a_vm_without_a_host_is_refused() {
    let source = edited("host = \"pve1\"\nimage", "image");
    refused(&source, "E0165", "name = \"edge\"");
}

#[test]
fn talos_nodes_without_host_or_rule_are_refused() {
    let source = edited("placement = \"spread\"\n", "");
    let found = findings(&source);
    assert_eq!(found.len(), 5, "one per Talos node: {found:?}");
    assert!(found.iter().all(|d| d.rule.code == "E0165"));
}

#[test]
fn host_beside_cluster_is_refused() {
    let source = edited(
        "[cluster]\n",
        "[host]\nnode = \"pve9\"\napi_token = \"env:WADDLE_X\"\ndisk_storage = \"a\"\nfile_storage = \"b\"\ndns = [\"9.9.9.9\"]\n\n[cluster]\n",
    );
    let found = findings(&source);
    assert!(found.iter().any(|d| d.rule.code == "E0160"), "{found:?}");
}

#[test]
fn a_forward_to_a_vip_is_refused_in_a_cluster() {
    let source = edited(
        "[[forward]]\nport = 80\nto = \"edge:80\"",
        "[[forward]]\nport = 80\nto = \"ingress:8080\"",
    );
    let found = refused(&source, "E0167", "to = \"ingress:8080\"");
    assert!(found.message.contains("`ingress`"), "{}", found.message);
}

/// Each host forwards its own public address: the same port may be
/// forwarded on two hosts, but not twice on one (E0114 names the host).
#[test]
fn one_port_is_forwarded_once_per_host() {
    let second_edge =
        "[[vm]]\nid = 3001\nname = \"mail\"\nhost = \"pve2\"\nimage = \"debian-edge\"\n\
                       cores = 1\nmemory = \"1G\"\ndisk = \"4G\"\n\
                       nics = [{ bridge = \"vnet1\", address = \"10.30.0.6\" }]\n\
                       services = [{ port = 443 }]\n\n[talos]";
    let on_two_hosts = common::edited(
        edited("[talos]", second_edge),
        "[firewall]",
        "[[forward]]\nport = 443\nto = \"mail:443\"\n\n[firewall]",
    );
    let (model, warnings) = checked(&on_two_hosts);
    assert!(warnings.is_empty(), "{warnings:?}");
    let on = |port: u16| {
        let mut hosts: Vec<&str> = model
            .forwards
            .iter()
            .filter(|f| f.port.0 == port)
            .map(|f| model.host_of(model.vm(&f.to.name).unwrap()).node.as_str())
            .collect();
        hosts.sort();
        hosts
    };
    assert_eq!(on(443), ["pve1", "pve2"]);

    let twice_on_pve1 = edited(
        "[firewall]",
        "[[forward]]\nport = 443\nto = \"edge:443\"\n\n[firewall]",
    );
    let found = refused(&twice_on_pve1, "E0114", "port = 443");
    assert!(
        found.message.contains("on host `pve1`"),
        "{}",
        found.message
    );
}

#[test]
fn ipv6_on_a_vnet_is_refused() {
    let source = edited(
        "vni = 30001\n",
        "vni = 30001\ncidr6 = \"fd30::/64\"\nhost_address6 = \"fd30::1\"\n",
    );
    let found = findings(&source);
    assert!(
        found
            .iter()
            .any(|d| d.rule.code == "E0163" && d.message.contains("IPv4 only")),
        "{found:?}"
    );
}

/// `source` with a platform (Flux, 1Password Connect, democratic-csi,
/// backups) and the versions it pins.
fn with_platform(source: SourceFile) -> SourceFile {
    let platform = r#"
[flux]
url = "ssh://git@git.trio.example.net/infra/platform.git"
deploy_key = "env:WADDLE_TRIO_FLUX_DEPLOY_KEY"
known_hosts = ["git.trio.example.net ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIxk0n0wnh0sth5l4b0gusl4bk3yF0rT3sts00000000"]

[onepassword_connect]
credentials = "env:WADDLE_TRIO_OP_CREDENTIALS"
token = "env:WADDLE_TRIO_OP_TOKEN"

[platform]
vault = "Trio"

[platform.storage]
dataset = "tank/kube"
ssh_public_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHNvbWUtbGFiLWtleS1mb3ItZGVtb2NyYXRpYy1jc2kwMDA trio-csi"

[platform.backups]
bucket = "trio-pg"
endpoint = "https://objects.trio.example.net"
region = "trio-1"
"#;
    let versions = "cilium = \"1.19.0\"\n";
    let pins = concat!(
        "cilium = \"1.19.0\"\n",
        "cilium_cli = \"v0.19.0\"\n",
        "democratic_csi = \"0.15.1\"\n",
        "flux_operator = \"0.40.0\"\n",
        "cert_manager = \"1.19.3\"\n",
        "external_dns = \"1.20.0\"\n",
        "external_secrets = \"2.0.0\"\n",
        "onepassword_connect = \"2.3.0\"\n",
        "cloudnative_pg = \"1.28.1\"\n",
        "spicedb_operator = \"1.22.0\"\n",
        "spicedb = \"v1.47.1\"\n",
        "cloudnative_pg_chart = \"0.27.1\"\n",
        "barman_cloud_plugin_chart = \"0.5.0\"\n",
        "democratic_csi_image = \"v1.9.4\"\n",
    );
    let text = source.text.replacen(versions, pins, 1) + platform;
    SourceFile { text, ..source }
}

/// The platform's DNS records point at the edge: with the edge on pve2,
/// at pve2's public address, not the first host's.
#[test]
fn the_platform_publishes_the_edge_hosts_address() {
    let source = with_platform(edited("host = \"pve1\"\nimage", "host = \"pve2\"\nimage"));
    let (model, _) = checked(&source);
    let pve2 = model.proxmox.host("pve2").unwrap().public_address();
    assert_eq!(model.host_of(model.vm("edge").unwrap()).node, "pve2");
    assert_eq!(model.platform.as_ref().unwrap().public_address, pve2);
}

/// The text of the artifact at `path`, if the build has one.
fn artifact(compiled: &waddlec_core::Compiled, path: &str) -> Option<String> {
    compiled
        .artifacts
        .iter()
        .find(|a| a.path == path)
        .map(|a| String::from_utf8_lossy(&a.contents).into_owned())
}

/// democratic-csi's volumes are the first host's: only its tree has the
/// driver's user and forced command, and only its `host.fw` admits the
/// Talos nodes' SSH and iSCSI; the iSCSI portal is its VNet address.
#[test]
fn only_the_storage_host_serves_democratic_csi() {
    let compiled = waddlec_core::compile(&with_platform(example()), common::TODAY)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let file = |path: &str| artifact(&compiled, path);
    let csi = |node: &str| file(&format!("hosts/{node}/democratic-csi/sudoers")).is_some();
    assert_eq!(
        [csi("pve1"), csi("pve2"), csi("pve3")],
        [true, false, false]
    );
    let admits_iscsi = |node: &str| {
        file(&format!("hosts/{node}/firewall/host.fw"))
            .unwrap()
            .lines()
            .any(|line| line.contains("-dport 3260"))
    };
    assert_eq!(
        [
            admits_iscsi("pve1"),
            admits_iscsi("pve2"),
            admits_iscsi("pve3")
        ],
        [true, false, false]
    );
    let setup = |node: &str| file(&format!("hosts/{node}/setup.sh")).unwrap();
    assert!(setup("pve1").contains("10.30.0.1:3260"));
    assert!(!setup("pve2").contains("3260"));
}

/// `source` with Teleport (a minimal `[teleport]` as
/// `blueprints/examples/services.toml` has it) on a VM of pve2's.
fn with_teleport(source: SourceFile) -> SourceFile {
    let source = common::edited(
        source,
        "[[image]]\nname = \"debian-edge\"\nos = \"debian\"\n",
        "[[image]]\nname = \"debian-edge\"\nos = \"debian\"\n\n\
         [[image]]\nname = \"debian-teleport\"\nos = \"debian\"\n",
    );
    let source = common::edited(
        source,
        "[talos]\n",
        r#"[[vm]]
id = 3001
name = "teleport"
host = "pve2"
image = "debian-teleport"
cores = 2
memory = "2G"
disk = "8G"
nics = [{ bridge = "vnet1", address = "10.30.0.20" }]

[talos]
"#,
    );
    let source = common::edited(
        source,
        "[[edge.route]]\nsni = \"*.trio.example.net\"",
        "[[edge.route]]\nsni = \"teleport.trio.example.net\"\nto = \"teleport:3080\"\n\n\
         [[edge.route]]\nsni = \"*.trio.example.net\"",
    );
    let source = common::edited(
        source,
        "[firewall]\n",
        r#"[teleport]
vm = "teleport"
public_host = "teleport.trio.example.net"

[[teleport.role]]
name = "ops-admin"
logins = ["deploy"]

[firewall]
"#,
    );
    common::edited(
        source,
        "cilium = \"1.19.0\"\n",
        "cilium = \"1.19.0\"\nteleport = \"18.2.1\"\n",
    )
}

/// With `[teleport]`, every host of the cluster is its OpenSSH node: one
/// node resource per host (its own UUID, at its own VNet address), each
/// host's sshd drop-in, one host certificate per host signed on the
/// Teleport VM into that host's directory, and each host's firewall
/// admitting the Teleport VM's SSH at that host's VNet address. pve2 runs
/// the VM and copies its keys with `qm guest exec`; pve1 and pve3 through
/// the cluster's API, on pve2.
#[test]
fn every_host_of_the_cluster_is_teleports_openssh_node() {
    let compiled = waddlec_core::compile(&with_teleport(example()), common::TODAY)
        .unwrap_or_else(|e| panic!("{e:?}"));
    let file = |path: &str| artifact(&compiled, path).unwrap_or_else(|| panic!("no {path}"));
    let hosts = [
        ("pve1", "10.30.0.1"),
        ("pve2", "10.30.0.2"),
        ("pve3", "10.30.0.3"),
    ];

    let resources = file("vms/teleport/teleport-resources.yaml");
    let nodes: Vec<&str> = resources
        .split("\n---\n")
        .filter(|doc| doc.contains("kind: node\n"))
        .collect();
    assert_eq!(nodes.len(), 3, "{resources}");
    let name = |node: &str| {
        node.lines()
            .find_map(|line| line.trim().strip_prefix("name: "))
            .unwrap()
            .to_string()
    };
    let mut uuids: Vec<String> = nodes.iter().map(|node| name(node)).collect();
    for ((node, address), resource) in hosts.iter().zip(&nodes) {
        assert!(resource.contains("sub_kind: openssh"), "{resource}");
        assert!(
            resource.contains(&format!("addr: {address}:22")),
            "{resource}"
        );
        assert!(
            resource.contains(&format!("hostname: {node}")),
            "{resource}"
        );
        assert!(
            resource.contains(&format!("waddlec-host: {node}")),
            "{resource}"
        );
    }
    uuids.sort();
    uuids.dedup();
    assert_eq!(uuids.len(), 3, "each host its own UUID");

    let keys = file("vms/teleport/waddlec-teleport-node-keys");
    let signed: Vec<&str> = keys
        .lines()
        .filter(|line| line.starts_with("node_keys "))
        .collect();
    assert_eq!(signed.len(), 3, "{keys}");
    for (((node, address), line), resource) in hosts.iter().zip(&signed).zip(&nodes) {
        let expected = format!(
            "node_keys '/var/lib/teleport/waddlec-node/{node}' '{address},{node},{}'",
            name(resource)
        );
        assert_eq!(*line, expected);
        let drop_in = file(&format!("hosts/{node}/ssh/teleport-node.conf"));
        assert!(
            drop_in.contains(&format!("#   {address},{node},{}", name(resource))),
            "{drop_in}"
        );
        let host_fw = file(&format!("hosts/{node}/firewall/host.fw"));
        assert!(
            host_fw.lines().any(|line| line.starts_with(&format!(
                "IN ACCEPT -i vnet1 -source 10.30.0.20 -dest {address} -p tcp -dport 22 "
            ))),
            "{host_fw}"
        );
    }

    let setup = |node: &str| file(&format!("hosts/{node}/setup.sh"));
    assert!(setup("pve2").contains(
        "qm guest exec 3001 --timeout 10 -- cat \"/var/lib/teleport/waddlec-node/pve2/$name\""
    ));
    assert!(!setup("pve2").contains("pvesh create"));
    for node in ["pve1", "pve3"] {
        let setup = setup(node);
        assert!(!setup.contains("qm guest exec 3001"), "{setup}");
        assert!(
            setup.contains("pvesh create '/nodes/pve2/qemu/3001/agent/exec'"),
            "{setup}"
        );
        assert!(
            setup.contains("pvesh get '/nodes/pve2/qemu/3001/agent/exec-status'"),
            "{setup}"
        );
        assert!(
            setup.contains(&format!(
                "guest_cat \"/var/lib/teleport/waddlec-node/{node}/$name\""
            )),
            "{setup}"
        );
    }
}

/// `cluster.api` names the node whose certificate is pinned: by node name
/// (or `NODE.domain`), public or underlay address; by default the first
/// host's public address. A URL naming no host is E0168.
#[test]
fn the_api_url_names_the_host_whose_certificate_is_pinned() {
    let (model, _) = checked(&example());
    assert_eq!(model.proxmox.api_host().node, "pve1");
    for (api, node) in [
        ("https://pve2:8006", "pve2"),
        ("https://pve2.trio.example.net:8006", "pve2"),
        ("https://203.0.113.13:8006", "pve3"),
        ("https://172.16.0.12:8006", "pve2"),
    ] {
        let source = edited("[cluster]\n", &format!("[cluster]\napi = \"{api}\"\n"));
        let (model, _) = checked(&source);
        assert_eq!(model.proxmox.api_host().node, node, "{api}");
    }
    let source = edited(
        "[cluster]\n",
        "[cluster]\napi = \"https://pve.trio.example.net:8006\"\n",
    );
    let found = refused(&source, "E0168", "api = ");
    assert!(
        found.message.contains("pve1, pve2, pve3"),
        "{}",
        found.message
    );
}

/// Spread is stable for control planes: naming a worker's host moves no
/// control plane (they are spread by control planes alone).
#[test]
fn placing_a_worker_moves_no_control_plane() {
    let hosts_of = |source: &SourceFile| {
        let (model, _) = checked(source);
        ["cp-1", "cp-2", "cp-3"].map(|name| model.host_of(model.vm(name).unwrap()).node.clone())
    };
    let spread = hosts_of(&example());
    assert_eq!(spread, ["pve1", "pve2", "pve3"]);
    for host in ["pve1", "pve2", "pve3"] {
        let pinned = edited(
            "name = \"worker-1\"\naddress = \"10.30.1.20\"",
            &format!("name = \"worker-1\"\naddress = \"10.30.1.20\"\nhost = \"{host}\""),
        );
        assert_eq!(hosts_of(&pinned), spread, "worker-1 on {host}");
    }
}
