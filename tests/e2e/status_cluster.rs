//! `waddlec status` of a `[cluster]` (`blueprints/examples/three-hosts.toml`)
//! deployed onto the Proxmox VE API simulator (`tests/pve-sim/`, the
//! stand-in for a three-node PVE 9 cluster behind one API: per-node VMs,
//! `/cluster/status` and `/cluster/resources`, SDN, migrations, offline
//! nodes through `faults.json`), by `support::cluster_lab`.
//!
//! The host and VMs layers, which go through the API: every VM check
//! passes and names the VM's node (text and JSON), the SDN as built and
//! applied, each host's ssh part reported unreachable (not checked for a
//! cluster yet), never passed; then a node offline fails its own check
//! naming it, its VMs unreachable behind it; then a VM migrated behind the
//! blueprint's back (the simulator's migrate endpoint called directly)
//! fails naming both nodes. Status sends nothing but reads and agent
//! pings, and nothing the API schema refuses.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::cluster_lab::{placement, vm, ClusterLab, NODES};
use crate::support::pve_sim::TOKEN;
use crate::support::text;

/// `waddlec status --layer host --layer vms` of the lab, with `extra`.
fn status(lab: &ClusterLab, extra: &[&str]) -> Output {
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
    args.extend_from_slice(extra);
    lab.waddlec(&args)
}

/// The checks of `status --format json`, and the exit code.
fn report(lab: &ClusterLab) -> (Vec<Value>, i32) {
    let output = status(lab, &["--format", "json"]);
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

/// The VMID the simulator gave the blueprint's VM `name`.
fn vmid(lab: &ClusterLab, name: &str) -> String {
    vm(&lab.sim.state(), name).0.to_string()
}

#[test]
fn status_of_a_cluster_names_each_vms_node_and_fails_an_offline_node_and_a_moved_vm() {
    let lab = ClusterLab::new(&[], |_| {});
    let deployed = lab.deploy(&[]);
    assert!(deployed.status.success(), "{}", text(&deployed.stderr));
    let placed = placement(&lab);
    let before = lab.sim.requests().len();

    // Healthy: every VM check passes on the blueprint's node; the host
    // layer's API, nodes and SDN pass; only the ssh part is unreachable,
    // saying it was not checked (75, not 0).
    let (checks, code) = report(&lab);
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
    let not_passed: Vec<&Value> = checks.iter().filter(|c| c["result"] != "pass").collect();
    assert_eq!(not_passed.len(), NODES.len(), "{not_passed:#?}");
    for check in &not_passed {
        assert_eq!(check["result"], "unreachable", "{check:#}");
        assert!(
            check["name"].as_str().unwrap().starts_with("ssh ")
                && check["why"].as_str().unwrap().starts_with("not checked"),
            "{check:#}"
        );
    }
    assert_eq!(code, 75);
    // The text form names the node of each VM check.
    let output = status(&lab, &[]);
    let shown = text(&output.stdout);
    let edge_node = &placed.iter().find(|(name, _)| name == "edge").unwrap().1;
    let edge = vmid(&lab, "edge");
    assert!(
        shown.contains(&format!(
            "ok          vms   VM {edge} edge running [{edge_node}]"
        )),
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

    // A node offline (never the first: it answers for the cluster): its
    // check fails naming it and the blueprint's VMs on it; those VMs are
    // unreachable behind it; no request goes to it.
    let offline = "pve3";
    assert!(placed.iter().any(|(_, node)| node == offline), "{placed:?}");
    lab.sim.faults(json!({"offline_nodes": [offline]}));
    let (checks, code) = report(&lab);
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
    let (checks, code) = report(&lab);
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
