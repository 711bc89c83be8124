//! `waddlec deploy` of a `[cluster]` (`blueprints/examples/three-hosts.toml`)
//! against the Proxmox VE API simulator (`tests/pve-sim/`, the stand-in for
//! a three-node PVE 9 cluster: nodes pve1..pve3 behind one API, per-node
//! VMs, storages and SDN apply state, migrations, offline nodes), which
//! refuses every request PVE's API schema refuses: each test also asserts
//! the deploy sent nothing the schema forbids.
//!
//! The trees are real `build --with-secrets --no-images` output with small
//! stand-in images (`qemu-img create`), as in `deploy.rs`. Host setup over
//! SSH is not built for a cluster: these deploys are `--skip-host`.

use serde_json::{json, Value};

use crate::support::cluster_lab::{placement, vm, ClusterLab, NODES};
use crate::support::text;

#[test]
fn a_cluster_deploy_places_each_vm_on_its_node_over_the_sdn_and_migrates_a_moved_one() {
    let lab = ClusterLab::new(&[], |_| {});
    let output = lab.deploy(&[]);
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let plan = text(&output.stdout);
    assert!(plan.contains("sdn      create zone trio"), "{plan}");
    assert!(plan.contains("node     pve2"), "{plan}");
    lab.assert_no_violations();

    let state = lab.sim.state();
    let placed = placement(&lab);
    assert_eq!(placed.len(), 6, "{placed:?}");
    for (name, node) in &placed {
        let (_, found) = vm(&state, name);
        assert_eq!(found["node"], node.as_str(), "{name}");
        assert_eq!(found["status"], "running", "{name}");
        let net0 = found["config"]["net0"].as_str().unwrap();
        assert!(
            net0.contains("bridge=vnet1") && net0.contains("mtu=1450"),
            "{name}: {net0}"
        );
        // Its boot image is on its own node's storage.
        let scsi0 = found["config"]["scsi0"].as_str().unwrap();
        assert!(scsi0.starts_with("local-zfs:"), "{name}: {scsi0}");
    }
    // Every node got the images of its own VMs, each once, and only those.
    let uploads = lab.uploads();
    let images: Vec<&String> = uploads.iter().filter(|u| !u.contains("seed")).collect();
    for node in NODES {
        let local = &state["nodes"][node]["storages"]["local"]["volumes"];
        let on_node: Vec<&&String> = images
            .iter()
            .filter(|u| u.starts_with(&format!("{node} ")))
            .collect();
        assert!(!on_node.is_empty(), "{node}: {uploads:?}");
        for upload in &on_node {
            let file = upload.split_once(' ').unwrap().1;
            assert!(
                local.get(format!("local:import/{file}")).is_some(),
                "{node} lacks {file}: {local:#}"
            );
            assert_eq!(
                images.iter().filter(|u| **u == **upload).count(),
                1,
                "{upload} twice"
            );
        }
    }
    // The SDN: the zone, the VNet and its subnet, applied on every node.
    let running = &state["sdn"]["running"];
    assert_eq!(running["zones"]["trio"]["type"], "vxlan", "{running:#}");
    assert_eq!(running["vnets"]["vnet1"]["zone"], "trio", "{running:#}");
    assert!(
        running["subnets"]
            .as_object()
            .unwrap()
            .contains_key("trio-10.30.0.0-22"),
        "{running:#}"
    );
    for node in NODES {
        assert_eq!(
            state["nodes"][node]["sdn"]["vnets"]["vnet1"]["mtu"], 1450,
            "{node}"
        );
        // No Linux bridge was made for the VNet.
        let interfaces = state["nodes"][node]["network"]["interfaces"]
            .as_str()
            .unwrap_or_default();
        assert!(!interfaces.contains("vnet1"), "{node}: {interfaces}");
    }

    // Deployed again: nothing to do, nothing sent but reads.
    let count = lab.sim.requests().len();
    let again = lab.deploy(&[]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stderr).contains("nothing to do"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(lab.sim.changes_since(count), Vec::<String>::new());

    // The edge moves to pve2 in the blueprint: it is migrated, not
    // destroyed. Its seed changes too (its gateway is its host's address
    // on the VNet), which stays held without --allow-replace.
    lab.edit(|document| {
        let vms = document["vm"].as_array_mut().unwrap();
        vms[0]
            .as_table_mut()
            .unwrap()
            .insert("host".into(), "pve2".into());
    });
    lab.build();
    let count = lab.sim.requests().len();
    let moved = lab.deploy(&[]);
    let (stdout, stderr) = (text(&moved.stdout), text(&moved.stderr));
    // Held back: exit 6, the rest done.
    assert_eq!(moved.status.code(), Some(6), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("replace  VM 3000 edge (seed (configuration)")
            && stdout.contains("needs --allow-replace edge, not done"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "migrate  VM 3000 edge pve1 → pve2 (live, its local disks copied to pve2's local-zfs)"
        ),
        "{stdout}\n{stderr}"
    );
    let changes = lab.sim.changes_since(count);
    assert!(
        changes.contains(&"POST /api2/json/nodes/pve1/qemu/3000/migrate".to_string()),
        "{changes:?}"
    );
    assert!(
        !changes
            .iter()
            .any(|c| c.starts_with("DELETE") && c.contains("/qemu/3000")),
        "{changes:?}"
    );
    let state = lab.sim.state();
    let (_, edge) = vm(&state, "edge");
    assert_eq!(edge["node"], "pve2");
    assert_eq!(edge["status"], "running");
    lab.assert_no_violations();
}

#[test]
fn a_node_that_runs_vms_of_the_blueprint_and_is_offline_stops_the_deploy_before_any_change() {
    let lab = ClusterLab::new(&[], |_| {});
    lab.sim.faults(json!({"offline_nodes": ["pve3"]}));
    let output = lab.deploy(&[]);
    assert_eq!(output.status.code(), Some(6), "{}", text(&output.stderr));
    let plan = text(&output.stdout);
    assert!(
        plan.contains("CONFLICT node pve3: is offline, and the blueprint places VM"),
        "{plan}"
    );
    // The same plan as JSON: the conflict under `placement`, by node.
    let json = lab.deploy(&["--format", "json"]);
    assert_eq!(json.status.code(), Some(6), "{}", text(&json.stderr));
    let plan: Value = serde_json::from_str(&text(&json.stdout)).unwrap();
    assert_eq!(plan["placement"][0]["action"], "conflict", "{plan:#}");
    assert_eq!(plan["placement"][0]["node"], "pve3", "{plan:#}");
    assert_eq!(plan["sdn"][0]["action"], "create", "{plan:#}");
    assert_eq!(lab.sim.changes_since(0), Vec::<String>::new());
    lab.assert_no_violations();
}

#[test]
fn on_a_shared_file_storage_each_image_is_uploaded_once_for_every_node() {
    let lab = ClusterLab::new(&["nas=nfs:iso,import,images,shared=1"], |document| {
        let cluster = document["cluster"].as_table_mut().unwrap();
        cluster.insert("shared_storages".into(), vec!["nas".to_string()].into());
        for host in cluster["host"].as_array_mut().unwrap() {
            host.as_table_mut()
                .unwrap()
                .insert("file_storage".into(), "nas".into());
        }
    });
    let output = lab.deploy(&[]);
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let uploads = lab.uploads();
    let images: Vec<String> = uploads
        .iter()
        .filter(|u| !u.contains("seed"))
        .map(|u| u.split_once(' ').unwrap().1.to_string())
        .collect();
    let mut distinct = images.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(images.len(), distinct.len(), "{uploads:?}");
    // The Debian edge's image and the Talos image.
    assert_eq!(distinct.len(), 2, "{uploads:?}");
    let state = lab.sim.state();
    for (name, node) in placement(&lab) {
        assert_eq!(vm(&state, &name).1["node"], node.as_str(), "{name}");
    }
    lab.assert_no_violations();
}
