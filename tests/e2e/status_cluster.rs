//! `waddlec status` of a `[cluster]` (`blueprints/examples/three-hosts.toml`)
//! deployed onto the Proxmox VE API simulator (`tests/pve-sim/`, the
//! stand-in for a three-node PVE 9 cluster behind one API: per-node VMs,
//! `/cluster/status` and `/cluster/resources`, SDN, migrations, offline
//! nodes through `faults.json`), by `support::cluster_lab`, each host set
//! up by the deploy over ssh on its own real sshd (`SshCluster`).
//!
//! The host and VMs layers: every VM check passes and names the VM's node
//! (text and JSON), the SDN as built and applied, and over each host's own
//! ssh (pinned to its own host record's key) its chains, its own `host.fw`
//! (`cluster.fw` on the one host that installs it) and its own VNet
//! address, each check naming its node: 0.
//! Then a drift on one host (its `host.fw` edited, a chain unhooked) fails
//! only that host's checks, naming it; a host whose record pins another's
//! key is unreachable alone, saying why; one host's sshd down makes that
//! host's ssh unreachable, naming it, the others still read; then a node
//! offline fails its own check naming it, its VMs unreachable behind it;
//! then a VM migrated behind the blueprint's back (the simulator's migrate
//! endpoint called directly) fails naming both nodes. Status sends
//! nothing but reads and agent pings, and nothing the API schema refuses.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::cluster_lab::{
    over_ssh, placement, vm, write_record, ClusterLab, SshCluster, NODES,
};
use crate::support::pve_sim::TOKEN;
use crate::support::{sh, text};

/// `waddlec status --layer host --layer vms` of the lab, its hosts reached
/// through `hosts`, with `extra`.
fn status(lab: &ClusterLab, hosts: &SshCluster, extra: &[&str]) -> Output {
    let reach = hosts.args();
    let mut args = vec![
        "status",
        "blueprint.toml",
        "--layer",
        "host",
        "--layer",
        "vms",
        "--api",
        &lab.sim.url,
        "--call-timeout",
        "5s",
    ];
    args.extend(reach.iter().map(String::as_str));
    args.extend_from_slice(extra);
    lab.waddlec(&args)
}

/// The checks of `status --format json`, and the exit code.
fn report(lab: &ClusterLab, hosts: &SshCluster) -> (Vec<Value>, i32) {
    let output = status(lab, hosts, &["--format", "json"]);
    let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "status --format json is JSON ({e}):\n{}\n{}",
            text(&output.stdout),
            text(&output.stderr)
        )
    });
    (
        report["checks"].as_array().unwrap().clone(),
        output.status.code().unwrap_or(-1),
    )
}

fn find<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {checks:#?}"))
}

/// The check `name` made on `node`.
fn find_on<'a>(checks: &'a [Value], name: &str, node: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["name"] == name && c["node"] == node)
        .unwrap_or_else(|| panic!("no check `{name}` on {node} in {checks:#?}"))
}

/// The checks that did not pass, as `(result, name, node)`.
fn not_passed(checks: &[Value]) -> Vec<(String, String, String)> {
    checks
        .iter()
        .filter(|c| c["result"] != "pass")
        .map(|c| {
            let field = |key: &str| c[key].as_str().unwrap_or_default().to_string();
            (field("result"), field("name"), field("node"))
        })
        .collect()
}

/// The VMID the simulator gave the blueprint's VM `name`.
fn vmid(lab: &ClusterLab, name: &str) -> String {
    vm(&lab.sim.state(), name).0.to_string()
}

#[test]
fn status_of_a_cluster_reads_each_host_over_its_own_ssh_and_each_vm_on_its_node() {
    let lab = ClusterLab::new(&[], over_ssh);
    let hosts = SshCluster::start(&lab);
    let deployed = hosts.deploy(&lab, &[]);
    assert!(deployed.status.success(), "{}", text(&deployed.stderr));
    let placed = placement(&lab);
    let before = lab.sim.requests().len();
    // Each host's record pins its own sshd's key.
    for (node, host) in NODES.iter().zip(&hosts.hosts) {
        write_record(
            &lab.lab.path("blueprint.toml"),
            node,
            &host.host_public_key(),
            &lab.sim.fingerprint,
        );
    }

    // Healthy: every VM check passes on the blueprint's node; the host
    // layer's API, nodes and SDN pass, and so does every host's ssh part,
    // each over its own pinned ssh, each check naming its node: 0.
    let (checks, code) = report(&lab, &hosts);
    for (name, node) in &placed {
        let id = vmid(&lab, name);
        for what in ["node", "image and seed", "running"] {
            let check = find(&checks, &format!("VM {id} {name} {what}"));
            assert_eq!(check["result"], "pass", "{check:#}");
            assert_eq!(check["node"], node.as_str(), "{check:#}");
        }
    }
    let vms: Vec<&Value> = checks.iter().filter(|c| c["layer"] == "vms").collect();
    assert!(vms.iter().all(|c| c["result"] == "pass"), "{vms:#?}");
    for node in NODES {
        assert_eq!(find(&checks, &format!("node {node}"))["result"], "pass");
        assert_eq!(
            find(&checks, &format!("node {node} bridge vmbr0"))["detail"],
            format!(
                "active, 203.0.113.{}/24",
                11 + NODES.iter().position(|n| *n == node).unwrap()
            )
        );
    }
    for name in ["sdn zone trio", "sdn vnet vnet1", "sdn applied"] {
        assert_eq!(find(&checks, name)["result"], "pass", "{name}");
    }
    for (i, node) in NODES.iter().enumerate() {
        let host_fw = format!("Proxmox firewall /etc/pve/nodes/{node}/host.fw");
        for name in [
            "chain nat WDLC-PREROUTING",
            "chain nat WDLC-POSTROUTING",
            "chain filter WDLC-FORWARD",
            &host_fw,
        ] {
            let check = find_on(&checks, name, node);
            assert_eq!(check["result"], "pass", "{check:#}");
        }
        assert_eq!(
            find_on(&checks, "vnet vnet1 address", node)["detail"],
            format!("10.30.0.{}/22", i + 1)
        );
    }
    // cluster.fw: read once, where the deploy installs it.
    let cluster_fw: Vec<&Value> = checks
        .iter()
        .filter(|c| c["name"] == "Proxmox firewall /etc/pve/firewall/cluster.fw")
        .collect();
    assert_eq!(cluster_fw.len(), 1, "{cluster_fw:#?}");
    assert_eq!(cluster_fw[0]["node"], "pve3", "{cluster_fw:#?}");
    assert_eq!(cluster_fw[0]["result"], "pass", "{cluster_fw:#?}");
    assert_eq!(not_passed(&checks), []);
    assert_eq!(code, 0);
    // The text form names the node of each VM check, and of each host's.
    let output = status(&lab, &hosts, &[]);
    assert!(output.status.success(), "{}", text(&output.stdout));
    let shown = text(&output.stdout);
    let edge_node = &placed.iter().find(|(name, _)| name == "edge").unwrap().1;
    let edge = vmid(&lab, "edge");
    assert!(
        shown.contains(&format!(
            "ok          vms   VM {edge} edge running [{edge_node}]"
        )),
        "{shown}"
    );
    assert!(
        shown.contains("ok          host  vnet vnet1 address [pve2]: 10.30.0.2/22\n"),
        "{shown}"
    );
    assert_eq!(
        lab.sim
            .changes_since(before)
            .iter()
            .filter(|c| !c.ends_with("/agent/ping"))
            .count(),
        0
    );
    lab.assert_no_violations();

    // A drift on pve2 alone, its host.fw edited under its own root and its
    // forward chain unhooked in its own namespace: those two checks fail,
    // naming pve2; the same files and chains of the others pass.
    let drifted = hosts.file("pve2", "etc/pve/nodes/pve2/host.fw");
    let built = std::fs::read_to_string(&drifted).unwrap();
    std::fs::write(&drifted, format!("{built}# edited on the host\n")).unwrap();
    let pve2 = &hosts.hosts[1].netns;
    pve2.sh("iptables -w -D FORWARD -j WDLC-FORWARD");
    let (checks, code) = report(&lab, &hosts);
    assert_eq!(code, 8, "{checks:#?}");
    let failed = |name: &str| ("failed".to_string(), name.to_string(), "pve2".to_string());
    assert_eq!(
        not_passed(&checks),
        [
            failed("chain filter WDLC-FORWARD"),
            failed("Proxmox firewall /etc/pve/nodes/pve2/host.fw"),
        ]
    );
    assert_eq!(
        find_on(
            &checks,
            "Proxmox firewall /etc/pve/nodes/pve2/host.fw",
            "pve2"
        )["why"],
        "differs from the build"
    );
    assert!(find_on(&checks, "chain filter WDLC-FORWARD", "pve2")["why"]
        .as_str()
        .unwrap()
        .starts_with("loaded, but FORWARD does not jump to it"));
    let shown = text(&status(&lab, &hosts, &[]).stdout);
    assert!(
        shown.contains("FAILED      host  Proxmox firewall /etc/pve/nodes/pve2/host.fw [pve2]\n"),
        "{shown}"
    );
    std::fs::write(&drifted, built).unwrap();
    pve2.sh("iptables -w -I FORWARD 1 -j WDLC-FORWARD");

    // pve2's record pins pve1's key: pve2 alone is unreachable, saying
    // why; each host's ssh pins its own record's key.
    write_record(
        &lab.lab.path("blueprint.toml"),
        "pve2",
        &hosts.hosts[0].host_public_key(),
        &lab.sim.fingerprint,
    );
    let (checks, code) = report(&lab, &hosts);
    assert_eq!(
        not_passed(&checks),
        [(
            "unreachable".to_string(),
            "ssh pve2".to_string(),
            "pve2".to_string()
        )]
    );
    assert_eq!(code, 75);
    let pinned = find_on(&checks, "ssh pve2", "pve2");
    assert!(
        pinned["why"]
            .as_str()
            .unwrap()
            .starts_with("its host key is not the one recorded"),
        "{pinned:#}"
    );
    write_record(
        &lab.lab.path("blueprint.toml"),
        "pve2",
        &hosts.hosts[1].host_public_key(),
        &lab.sim.fingerprint,
    );

    // pve3's sshd down: its ssh part is one unreachable check naming it;
    // the other hosts are still read, and pass (75: nothing failed).
    let pve3 = &hosts.hosts[2].netns;
    sh(&format!("kill $(ip netns pids {})", pve3.name));
    let (checks, code) = report(&lab, &hosts);
    assert_eq!(
        not_passed(&checks),
        [(
            "unreachable".to_string(),
            "ssh pve3".to_string(),
            "pve3".to_string()
        )]
    );
    assert_eq!(code, 75);
    let down = find_on(&checks, "ssh pve3", "pve3");
    assert!(
        down["why"].as_str().unwrap().starts_with("no answer"),
        "{down:#}"
    );
    assert!(down["fix"].as_str().unwrap().contains("pve3"), "{down:#}");
    for node in ["pve1", "pve2"] {
        let host_fw = format!("Proxmox firewall /etc/pve/nodes/{node}/host.fw");
        assert_eq!(find_on(&checks, &host_fw, node)["result"], "pass");
    }
    lab.assert_no_violations();

    // A node offline (never the first: it answers for the cluster): its
    // check fails naming it and the blueprint's VMs on it; those VMs are
    // unreachable behind it; no request goes to it.
    let offline = "pve3";
    assert!(placed.iter().any(|(_, node)| node == offline), "{placed:?}");
    lab.sim.faults(json!({"offline_nodes": [offline]}));
    let (checks, code) = report(&lab, &hosts);
    assert_eq!(code, 8, "{checks:#?}");
    let node = find(&checks, &format!("node {offline}"));
    assert_eq!(node["result"], "failed", "{node:#}");
    let why = node["why"].as_str().unwrap();
    assert!(why.starts_with("offline"), "{why}");
    assert!(node["fix"]
        .as_str()
        .unwrap()
        .contains(&format!("bring {offline} back")));
    for (name, _) in placed.iter().filter(|(_, node)| node == offline) {
        assert!(why.contains(name.as_str()), "{why}");
        let check = find(&checks, &format!("VM {} {name}", vmid(&lab, name)));
        assert_eq!(check["result"], "unreachable", "{check:#}");
        assert_eq!(check["node"], offline);
    }
    lab.assert_no_violations();
    lab.sim.faults(json!({"offline_nodes": []}));

    // A VM migrated behind the blueprint's back: its node check fails
    // naming both nodes; its other checks are made where it runs.
    let (name, from) = placed
        .iter()
        .find(|(_, node)| node == "pve2")
        .expect("the example places a VM on pve2");
    let id = vmid(&lab, name);
    let (code, body) = lab.sim.post_form_with_token(
        TOKEN,
        &format!("/nodes/{from}/qemu/{id}/migrate"),
        &[
            ("target", "pve3"),
            ("online", "1"),
            ("with-local-disks", "1"),
            ("targetstorage", "local-zfs"),
        ],
    );
    assert_eq!(code, 200, "{body}");
    let start = Instant::now();
    while vm(&lab.sim.state(), name).1["node"] != "pve3" {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the migration ends"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (checks, code) = report(&lab, &hosts);
    assert_eq!(code, 8, "{checks:#?}");
    let moved = find(&checks, &format!("VM {id} {name} node"));
    assert_eq!(moved["result"], "failed", "{moved:#}");
    assert_eq!(
        moved["why"],
        format!("runs on pve3, the blueprint places it on {from}")
    );
    assert!(
        moved["fix"].as_str().unwrap().contains("migrates"),
        "{moved:#}"
    );
    assert_eq!(moved["node"], "pve3");
    let running = find(&checks, &format!("VM {id} {name} running"));
    assert_eq!(running["result"], "pass", "{running:#}");
    assert_eq!(running["node"], "pve3");
    lab.assert_no_violations();
}
