//! `waddlec deploy` of a `[cluster]` (`blueprints/examples/three-hosts.toml`)
//! against the Proxmox VE API simulator (`tests/pve-sim/`, the stand-in for
//! a three-node PVE 9 cluster: nodes pve1..pve3 behind one API, per-node
//! VMs, storages and SDN apply state, migrations, offline nodes), which
//! refuses every request PVE's API schema refuses: each test also asserts
//! the deploy sent nothing the schema forbids.
//!
//! The trees are real `build --with-secrets --no-images` output with small
//! stand-in images (`qemu-img create`), as in `deploy.rs`. Most deploys
//! here are `--skip-host`; the one that sets the hosts up reaches three
//! real sshds (`support::ssh_host`, see its test).

use std::process::Output;

use serde_json::{json, Value};

use crate::support::cluster_lab::{placement, vm, ClusterLab, NODES};
use crate::support::ssh_host::SshHost;
use crate::support::text;

#[test]
fn a_cluster_deploy_places_each_vm_on_its_node_over_the_sdn_and_recreates_a_moved_debian_vm() {
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

    // The edge moves to pve2 in the blueprint. Its seed changes with it
    // (its gateway is its host's address on the VNet), which cloud-init
    // applies only to a new VM: migrated, it would route through pve1.
    // So it is not migrated but held, untouched, until --allow-replace
    // recreates it on pve2.
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
    // Held back: exit 6, no VM touched (pve2 may get the image it will
    // be created from).
    assert_eq!(moved.status.code(), Some(6), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("replace  VM 3000 edge pve1 → pve2: its seed changes with the move")
            && stdout.contains("needs --allow-replace edge, not done"),
        "{stdout}"
    );
    assert!(!stdout.contains("migrate  VM 3000"), "{stdout}");
    let changes = lab.sim.changes_since(count);
    assert!(!changes.iter().any(|c| c.contains("/qemu")), "{changes:?}");
    let state = lab.sim.state();
    assert_eq!(vm(&state, "edge").1["node"], "pve1");

    let count = lab.sim.requests().len();
    let replaced = lab.deploy(&["--allow-replace", "edge"]);
    assert!(replaced.status.success(), "{}", text(&replaced.stderr));
    let changes = lab.sim.changes_since(count);
    assert!(
        changes.contains(&"DELETE /api2/json/nodes/pve1/qemu/3000".to_string()),
        "{changes:?}"
    );
    assert!(
        !changes.iter().any(|c| c.ends_with("/migrate")),
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

/// The three hosts as real sshds (`SshHost`: each in its own network
/// namespace, with the stand-ins `systemctl`, `zfs`, `targetcli`,
/// `useradd`, `getent` and `qm` of `tests/support/host_tools_stand_in.py`
/// and the simulator's own `pvesh`; real `iptables`, `sysctl` and `ip`),
/// each host `ssh = "NODE"` through one ssh config naming all three, each
/// installing under its own root `ROOT/NODE` (`--host-root ROOT`). Their
/// VNet `vnet1` is a Linux bridge made in each namespace, as applying the
/// SDN zone makes it on a node.
struct SshCluster {
    hosts: Vec<SshHost>,
    config: std::path::PathBuf,
    roots: tempfile::TempDir,
}

impl SshCluster {
    fn start(lab: &ClusterLab) -> Self {
        let mut config = String::new();
        let hosts: Vec<SshHost> = NODES
            .iter()
            .map(|node| {
                let host = SshHost::start_with_pve(&lab.sim.pvesh_socket());
                host.netns
                    .sh("ip link add vnet1 type bridge && ip link set vnet1 up");
                config.push_str(
                    &std::fs::read_to_string(&host.config)
                        .unwrap()
                        .replace("Host waddle-host", &format!("Host {node}")),
                );
                host
            })
            .collect();
        let path = lab.lab.path("ssh_config");
        std::fs::write(&path, config).unwrap();
        SshCluster {
            hosts,
            config: path,
            roots: tempfile::tempdir().unwrap(),
        }
    }

    /// `path` under `node`'s root.
    fn file(&self, node: &str, path: &str) -> std::path::PathBuf {
        self.roots.path().join(node).join(path)
    }

    fn deploy(&self, lab: &ClusterLab, extra: &[&str]) -> Output {
        let config = self.config.display().to_string();
        let root = self.roots.path().display().to_string();
        let mut args = vec!["--ssh-config", &config, "--host-root", &root];
        args.extend_from_slice(extra);
        lab.deploy_setting_up(&args)
    }
}

/// Each host reached as the node it is.
fn over_ssh(document: &mut toml::Table) {
    for host in document["cluster"]["host"].as_array_mut().unwrap() {
        let host = host.as_table_mut().unwrap();
        let node = host["node"].as_str().unwrap().to_string();
        host.insert("ssh".into(), node.into());
    }
}

#[test]
fn a_cluster_deploy_sets_each_host_up_with_its_own_files_and_cluster_fw_once() {
    let lab = ClusterLab::new(&[], over_ssh);
    let cluster = SshCluster::start(&lab);
    let tree = |path: &str| std::fs::read_to_string(lab.lab.path("dist").join(path)).unwrap();

    // The plan as JSON: each host's changes under its node.
    let output = cluster.deploy(&lab, &["--dry-run", "--format", "json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    for node in NODES {
        let planned = plan["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == node)
            .unwrap_or_else(|| panic!("{node}: {plan:#}"));
        let host_fw = format!("would change: /etc/pve/nodes/{node}/host.fw");
        assert!(
            planned["host"]
                .as_array()
                .unwrap()
                .contains(&json!(host_fw)),
            "{node}: {plan:#}"
        );
    }
    assert_eq!(lab.sim.changes_since(0), Vec::<String>::new());

    let output = cluster.deploy(&lab, &[]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // Each host's changes under its node; cluster.fw once, by the last.
    for node in NODES {
        let under = stdout
            .split(&format!("node     {node}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("{node}: {stdout}"));
        let under = under.split("node     ").next().unwrap();
        assert!(
            under.contains(&format!(
                "  host     would change: /etc/pve/nodes/{node}/host.fw"
            )),
            "{node}: {stdout}"
        );
        assert_eq!(
            under.contains("cluster.fw"),
            node == "pve3",
            "{node}: {stdout}"
        );
    }
    assert_eq!(stdout.matches("/etc/pve/firewall/cluster.fw").count(), 1);

    let edge_node = placement(&lab)
        .into_iter()
        .find(|(vm, _)| vm == "edge")
        .unwrap()
        .1;
    for (i, (node, host)) in NODES.iter().zip(&cluster.hosts).enumerate() {
        let own = |from: &str, to: &str| {
            let installed = std::fs::read_to_string(cluster.file(node, to))
                .unwrap_or_else(|e| panic!("{node} {to}: {e}"));
            assert_eq!(
                installed,
                tree(&format!("hosts/{node}/{from}")),
                "{node} {to}"
            );
            installed
        };
        let rules = own(
            "network/host-network.rules",
            "etc/waddlec/host-network.rules",
        );
        // Its own DNAT rules, only where the edge runs, and loaded.
        let loaded = host.netns.sh("iptables -w -t nat -S WDLC-PREROUTING");
        let edge_here = *node == edge_node;
        assert_eq!(rules.contains("DNAT"), edge_here, "{node}: {rules}");
        assert_eq!(loaded.contains("DNAT"), edge_here, "{node}: {loaded}");
        // Its own VNet address, in its script and on its VNet.
        let address = format!("10.30.0.{}/22", i + 1);
        let script = own(
            "network/waddlec-host-network",
            "usr/local/sbin/waddlec-host-network",
        );
        assert!(script.contains(&address), "{node}: {script}");
        let vnet = host.netns.sh("ip -4 address show dev vnet1");
        assert!(vnet.contains(&address), "{node}: {vnet}");
        own("firewall/host.fw", &format!("etc/pve/nodes/{node}/host.fw"));
        own("network/90-waddlec.conf", "etc/sysctl.d/90-waddlec.conf");
        // cluster.fw: on one host's root, the last's, as the tree has it.
        let cluster_fw = cluster.file(node, "etc/pve/firewall/cluster.fw");
        assert_eq!(cluster_fw.is_file(), *node == "pve3", "{node}");
    }
    assert_eq!(
        std::fs::read_to_string(cluster.file("pve3", "etc/pve/firewall/cluster.fw")).unwrap(),
        tree("hosts/cluster.fw")
    );
    lab.assert_no_violations();

    // Again: nothing to do on any host, nothing sent to the API but reads.
    let count = lab.sim.requests().len();
    let again = cluster.deploy(&lab, &[]);
    let (stdout, stderr) = (text(&again.stdout), text(&again.stderr));
    assert!(again.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("nothing to do"), "{stderr}");
    assert!(!stdout.contains("host     "), "{stdout}");
    assert_eq!(lab.sim.changes_since(count), Vec::<String>::new());

    // A firewall that admits the operator to no SSH: refused on the first
    // host it would lock out, before any host changes.
    lab.edit(|document| {
        for rule in document["firewall"]["temporary"].as_array_mut().unwrap() {
            let rule = rule.as_table_mut().unwrap();
            if rule["name"].as_str() == Some("operator-ssh") {
                rule.insert("port".into(), 2222.into());
            }
        }
    });
    lab.build();
    let host_fw = cluster.file("pve1", "etc/pve/nodes/pve1/host.fw");
    let before = std::fs::read_to_string(&host_fw).unwrap();
    let refused = cluster.deploy(&lab, &[]);
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("on pve1: refusing to change the host firewall")
            && stderr.contains("SSH on port 22"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&host_fw).unwrap(), before);
}
