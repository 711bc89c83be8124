//! `waddlec deploy` of a `[cluster]` (`blueprints/examples/three-hosts.toml`)
//! against the Proxmox VE API simulator (`tests/pve-sim/`, the stand-in for
//! a three-node PVE 9 cluster: nodes pve1..pve3 behind one API, per-node
//! VMs, storages and SDN apply state, migrations, offline nodes), which
//! refuses every request PVE's API schema refuses: each test also asserts
//! the deploy sent nothing the schema forbids.
//!
//! The trees are real `build --with-secrets --no-images` output with small
//! stand-in images (`qemu-img create`), as in `deploy.rs`. Most deploys
//! here are `--skip-host`; the ones that set the hosts up reach three
//! real sshds (`support::ssh_host`, see its test), straight or through
//! Teleport (`support::tsh`, the stand-in `tsh proxy ssh`).

use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::cluster_lab::{
    over_ssh, placement, vm, write_record, ClusterLab, SshCluster, NODES,
};
use crate::support::deploy_lab::{name_as_blueprint, relay, LabNode, CPS};
use crate::support::pve_sim::TOKEN;
use crate::support::ssh_host::SshHost;
use crate::support::talos_cluster::TalosCluster;
use crate::support::tsh::Tsh;
use crate::support::{require, text};

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

/// The Teleport of [`through_teleport`]: its cluster and proxy.
const TRIO_CLUSTER: &str = "teleport.trio.example.net";
const TRIO_PROXY: &str = "teleport.trio.example.net:443";

/// The example with a Teleport (on the edge VM, a role granting `root`),
/// each host `ssh = "teleport:root@NODE"`, and no rule admitting the
/// operator to SSH on port 22.
fn through_teleport(document: &mut toml::Table) {
    for host in document["cluster"]["host"].as_array_mut().unwrap() {
        let host = host.as_table_mut().unwrap();
        let node = host["node"].as_str().unwrap().to_string();
        host.insert("ssh".into(), format!("teleport:root@{node}").into());
    }
    let teleport: toml::Table = toml::from_str(&format!(
        "vm = \"edge\"\npublic_host = \"{TRIO_CLUSTER}\"\n\
         [[role]]\nname = \"admin\"\nlogins = [\"root\"]\n"
    ))
    .unwrap();
    document.insert("teleport".into(), teleport.into());
    document["versions"]
        .as_table_mut()
        .unwrap()
        .insert("teleport".into(), "18.2.1".into());
    let route: toml::Table =
        toml::from_str(&format!("sni = \"{TRIO_CLUSTER}\"\nto = \"edge:3080\"")).unwrap();
    document["edge"]["route"]
        .as_array_mut()
        .unwrap()
        .push(route.into());
    for rule in document["firewall"]["temporary"].as_array_mut().unwrap() {
        let rule = rule.as_table_mut().unwrap();
        if rule["name"].as_str() == Some("operator-ssh") {
            rule.insert("port".into(), 2222.into());
        }
    }
}

/// Every host reached through Teleport (`tsh proxy ssh`, the stand-in
/// relaying to each host's sshd), none admitted to SSH directly: deploy
/// sets each host up through Teleport, logs in through it on each host
/// before that host's firewall goes out, and every ssh it ran went by
/// `tsh config`'s ProxyCommand to `root@NODE.CLUSTER`.
#[test]
fn a_cluster_deploy_sets_each_host_up_through_teleport_after_its_own_login() {
    let lab = ClusterLab::new(&[], through_teleport);
    let cluster = SshCluster::start(&lab);
    let nodes: Vec<(&str, &SshHost)> = NODES.iter().copied().zip(&cluster.hosts).collect();
    let tsh = Tsh::for_nodes(&nodes, TRIO_CLUSTER, TRIO_PROXY, &cluster.config);
    let config = tsh.config.display().to_string();
    let root = cluster.roots.path().display().to_string();
    let output =
        lab.deploy_setting_up_with(&tsh.env(), &["--ssh-config", &config, "--host-root", &root]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for node in NODES {
        let host_fw =
            std::fs::read_to_string(cluster.file(node, &format!("etc/pve/nodes/{node}/host.fw")))
                .unwrap_or_else(|e| panic!("{node}: {e}"));
        assert!(
            !host_fw.contains("-dport 22 -log nolog # temporary")
                && host_fw.contains("-dport 2222 "),
            "{node}: {host_fw}"
        );
    }
    assert!(cluster
        .file("pve3", "etc/pve/firewall/cluster.fw")
        .is_file());
    let calls = tsh.calls();
    for node in NODES {
        let expected = format!(
            "proxy ssh --cluster={TRIO_CLUSTER} --proxy={TRIO_PROXY} root@{node}.{TRIO_CLUSTER}:22"
        );
        // The check, the login, the check again under the lock, the setup.
        let made = calls.lines().filter(|line| *line == expected).count();
        assert!(made >= 4, "{node}: {calls}");
    }
    assert!(
        calls.lines().all(|line| line.starts_with(&format!(
            "proxy ssh --cluster={TRIO_CLUSTER} --proxy={TRIO_PROXY} root@"
        ))),
        "{calls}"
    );
    // The only requests the simulator refuses: the guest-agent calls that
    // copy the Teleport node's files off the Teleport VM (`agent/exec`,
    // which pve-sim does not implement; the setup goes on without them).
    let violations = lab.sim.violations();
    assert!(
        violations.iter().all(|v| v["path"]
            .as_str()
            .is_some_and(|path| path.ends_with("/agent/exec"))),
        "{violations:#?}"
    );
}

/// The cluster's Talos nodes as the lab names them: the simulated
/// cluster's hostnames and addresses (`talos-cp1`… on `10.10.0.10`…, then
/// `talos-w1`…), the example's VMIDs.
const TALOS_NODES: [(&str, u32); 5] = [
    ("talos-cp1", 3100),
    ("talos-cp2", 3101),
    ("talos-cp3", 3102),
    ("talos-w1", 3110),
    ("talos-w2", 3111),
];

/// The example with its Talos nodes named and addressed as the simulated
/// cluster's (its VNet `10.10.0.0/22`: the hosts `.1`-`.3`, the edge
/// `.5`, the nodes from `.10`), and its first host reached as
/// `waddle-host`, the sshd of `support::ssh_host`.
fn as_talos_lab(document: &mut toml::Table) {
    let hosts = document["cluster"]["host"].as_array_mut().unwrap();
    for (i, host) in hosts.iter_mut().enumerate() {
        let host = host.as_table_mut().unwrap();
        let mut addresses = toml::Table::new();
        addresses.insert("vnet1".into(), format!("10.10.0.{}", i + 1).into());
        host.insert("addresses".into(), addresses.into());
        if i == 0 {
            host.insert("ssh".into(), "waddle-host".into());
        }
    }
    for bridge in document["bridge"].as_array_mut().unwrap() {
        let bridge = bridge.as_table_mut().unwrap();
        if bridge["name"].as_str() == Some("vnet1") {
            bridge.insert("cidr".into(), "10.10.0.0/22".into());
        }
    }
    let edge = document["vm"].as_array_mut().unwrap()[0]
        .as_table_mut()
        .unwrap();
    edge.insert(
        "nics".into(),
        toml::Value::Array(vec![toml::Value::Table(
            [
                ("bridge".to_string(), toml::Value::from("vnet1")),
                ("address".to_string(), toml::Value::from("10.10.0.5")),
            ]
            .into_iter()
            .collect(),
        )]),
    );
    let talos = document["talos"].as_table_mut().unwrap();
    talos.insert("api_vip".into(), "10.10.1.100".into());
    let nodes = talos["node"].as_array_mut().unwrap();
    for (i, (node, (name, vmid))) in nodes.iter_mut().zip(TALOS_NODES).enumerate() {
        let node = node.as_table_mut().unwrap();
        assert_eq!(node["id"].as_integer(), Some(i64::from(vmid)));
        node.insert("name".into(), name.into());
        node.insert("address".into(), format!("10.10.0.{}", 10 + i).into());
    }
    for vip in document["vip"].as_array_mut().unwrap() {
        vip.as_table_mut()
            .unwrap()
            .insert("address".into(), "10.10.1.200".into());
    }
}

/// The cluster lab with a Talos cluster behind its first host: a real
/// sshd (`support::ssh_host`) playing pve1, recorded with its host key as
/// `host init` records it, inside whose namespace every node's address
/// `10.10.0.1X:50000` is DNAT'd to its stand-in apid
/// (`support::talos_cluster`: mTLS from the lab's own bundle, one
/// simulated etcd, machine configs parsed as Talos parses them), as each
/// host reaches every node over the VNet. Only pve1 has an sshd: a deploy
/// that tried another host's SSH would fail.
struct TalosTrio {
    lab: ClusterLab,
    host: SshHost,
    cluster: TalosCluster,
}

impl TalosTrio {
    /// Built, the nodes renamed as the blueprint's, and deployed once (no
    /// Talos step: nothing goes through the tunnel).
    fn deployed() -> Self {
        require("curl");
        let lab = ClusterLab::new(&[], as_talos_lab);
        let host = SshHost::start();
        // Every host recorded (records are all or none); only pve1 is
        // reached, so the others pin its key too.
        let blueprint = lab.lab.path("blueprint.toml");
        for node in NODES {
            write_record(
                &blueprint,
                node,
                &host.host_public_key(),
                &lab.sim.fingerprint,
            );
        }
        let credentials = lab.lab.credentials();
        let cluster = TalosCluster::start(&credentials.bundle, CPS.len(), 2);
        let nodes: Vec<LabNode> = TALOS_NODES
            .iter()
            .map(|(name, vmid)| LabNode {
                name: name.to_string(),
                vmid: *vmid,
            })
            .collect();
        name_as_blueprint(&cluster, &credentials, &nodes);
        let mut rules = format!("ip route add 10.10.0.0/24 via {}", host.host_side);
        for i in 0..nodes.len() {
            let relay = relay(&host.host_side, cluster.endpoint(i).connect);
            rules.push_str(&format!(
                " && iptables -t nat -A OUTPUT -d {}/32 -p tcp --dport 50000 -j DNAT --to-destination {relay}",
                cluster.name(i)
            ));
        }
        host.netns.sh(&rules);
        let trio = TalosTrio { lab, host, cluster };
        let output = trio.deploy();
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        assert!(output.status.success(), "{stdout}\n{stderr}");
        assert!(!stdout.contains("config   "), "{stdout}");
        trio
    }

    fn deploy(&self) -> Output {
        let config = self.host.config.display().to_string();
        self.lab
            .deploy(&["--ssh-config", &config, "--talos-wait", "60"])
    }

    /// VM `name`'s description names an older seed, as if it ran an older
    /// config: its next plan changes it in place.
    fn age_seed(&self, name: &str) {
        let state = self.lab.sim.state();
        let (vmid, found) = vm(&state, name);
        let node = found["node"]
            .as_str()
            .unwrap_or_else(|| panic!("{found:#}"));
        let description = found["config"]["description"].as_str().unwrap();
        let seed = description
            .split_whitespace()
            .find(|w| w.starts_with("seed="))
            .unwrap();
        let old = description.replace(seed, &format!("seed={name}-seed-000000000000.raw"));
        let output = crate::support::run(
            std::process::Command::new("curl")
                .args(["-sS", "-k", "--fail-with-body", "-X", "PUT"])
                .arg("-H")
                .arg(format!("Authorization: PVEAPIToken={TOKEN}"))
                .arg("--data-urlencode")
                .arg(format!("description={old}"))
                .arg(format!(
                    "{}/api2/json/nodes/{node}/qemu/{vmid}/config",
                    self.lab.sim.url
                )),
        );
        assert!(output.status.success(), "{}", text(&output.stderr));
    }

    /// The node `name` is at in the simulated cluster.
    fn index(name: &str) -> usize {
        TALOS_NODES.iter().position(|(n, _)| *n == name).unwrap()
    }

    /// The config `name` runs is its build's seed `user-data`.
    fn runs_its_build(&self, name: &str) -> bool {
        let built = std::fs::read(
            self.lab
                .lab
                .path(&format!("dist/vms/{name}/seed/user-data")),
        )
        .unwrap();
        self.cluster.config(Self::index(name)) == built
    }
}

/// Day 2 on a cluster: a control plane on pve2 and a worker on another
/// host whose configs changed are applied in place through the one tunnel
/// via pve1's sshd, one node at a time with etcd checked; a second deploy
/// has nothing to do and opens no tunnel.
#[test]
fn a_changed_talos_config_is_applied_in_place_through_the_first_hosts_tunnel() {
    let trio = TalosTrio::deployed();
    let placed: std::collections::BTreeMap<String, String> =
        placement(&trio.lab).into_iter().collect();
    assert_eq!(placed["talos-cp2"], "pve2", "{placed:?}");
    let worker = ["talos-w1", "talos-w2"]
        .into_iter()
        .find(|w| placed[*w] != "pve2")
        .unwrap();
    for name in ["talos-cp2", worker] {
        trio.age_seed(name);
        let i = TalosTrio::index(name);
        trio.cluster.set_reboot_time(i, Duration::from_millis(500));
        assert!(!trio.runs_its_build(name));
    }
    let calls = trio.cluster.calls().len();
    let before = trio.lab.sim.requests().len();
    let output = trio.deploy();
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    // What the plan shows: each under its own host, with the node's diff.
    let vmid = |name: &str| TALOS_NODES[TalosTrio::index(name)].1;
    for name in ["talos-cp2", worker] {
        let planned = format!("config   VM {} {name} in place", vmid(name));
        assert!(stdout.contains(&planned), "{name}: {stdout}");
        assert!(trio.runs_its_build(name), "{name}: {stderr}");
        assert!(trio.cluster.is_up(TalosTrio::index(name)));
    }
    assert!(stdout.contains("key: (redacted)"), "{stdout}");
    // Each on its own host's API, the control plane first; nothing
    // destroyed.
    let applied: Vec<usize> = trio.cluster.calls()[calls..]
        .iter()
        .filter(|c| c.method == "ApplyConfiguration")
        .map(|c| c.target.unwrap_or(c.entry))
        .collect();
    let (cp2, w) = (TalosTrio::index("talos-cp2"), TalosTrio::index(worker));
    assert!(
        applied.contains(&cp2) && applied.contains(&w),
        "{applied:?}"
    );
    assert!(
        applied.iter().all(|i| [cp2, w].contains(i)),
        "only the changed nodes: {applied:?}"
    );
    let changes = trio.lab.sim.changes_since(before);
    assert!(
        !changes
            .iter()
            .any(|c| c.starts_with("DELETE ") && c.contains("/qemu/31")),
        "{changes:?}"
    );
    // Carried out on each VM's own host, one node at a time: the worker
    // starts only once the control plane is done.
    let done = |name: &str| {
        let node = &placed[name];
        [
            format!("{node} talos    {name} reboots into its new config"),
            format!("{node} talos    {name} applied its new config live"),
        ]
        .iter()
        .find_map(|line| stderr.find(line.as_str()))
    };
    let starts = |name: &str| {
        stderr.find(&format!(
            "{} config   VM {} {name} in place",
            placed[name],
            vmid(name)
        ))
    };
    for name in ["talos-cp2", worker] {
        assert!(
            starts(name) < done(name) && starts(name).is_some(),
            "{name}: {stderr}"
        );
    }
    assert!(done("talos-cp2") < starts(worker), "{stderr}");
    let mut members: Vec<String> = trio
        .cluster
        .members()
        .into_iter()
        .map(|m| m.hostname)
        .collect();
    members.sort();
    assert_eq!(members, CPS);
    trio.lab.assert_no_violations();

    // Again: nothing to do, no Talos call (no tunnel), only reads.
    let calls = trio.cluster.calls().len();
    let before = trio.lab.sim.requests().len();
    let again = trio.deploy();
    let (stdout, stderr) = (text(&again.stdout), text(&again.stderr));
    assert!(again.status.success(), "{stdout}\n{stderr}");
    assert!(stderr.contains("nothing to do"), "{stderr}");
    assert_eq!(trio.cluster.calls().len(), calls);
    assert_eq!(trio.lab.sim.changes_since(before), Vec::<String>::new());

    // The worker moved to another host in the blueprint: migrated with its
    // disks (not replaced), then its new config (its gateway is its new
    // host's) applied in place through the same tunnel.
    let from = placed[worker].clone();
    let to = NODES.iter().find(|n| **n != from).unwrap().to_string();
    trio.lab.edit(|document| {
        for node in document["talos"]["node"].as_array_mut().unwrap() {
            let node = node.as_table_mut().unwrap();
            if node["name"].as_str() == Some(worker) {
                node.insert("host".into(), to.clone().into());
            }
        }
    });
    trio.lab.build();
    let calls = trio.cluster.calls().len();
    let before = trio.lab.sim.requests().len();
    let moved = trio.deploy();
    let (stdout, stderr) = (text(&moved.stdout), text(&moved.stderr));
    assert!(moved.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "migrate  VM {} {worker} {from} → {to}",
            vmid(worker)
        )),
        "{stdout}"
    );
    let changes = trio.lab.sim.changes_since(before);
    let migrate = format!("POST /api2/json/nodes/{from}/qemu/{}/migrate", vmid(worker));
    assert!(changes.contains(&migrate), "{changes:?}");
    // Spread places the other worker again; no control plane moves, and no
    // VM is destroyed.
    assert!(
        !changes
            .iter()
            .any(|c| c.starts_with("DELETE ") && c.contains("/qemu/")),
        "{changes:?}"
    );
    for cp in ["talos-cp1", "talos-cp2", "talos-cp3"] {
        let moved = format!("/qemu/{}/migrate", vmid(cp));
        assert!(
            !changes.iter().any(|c| c.ends_with(&moved)),
            "{cp}: {changes:?}"
        );
    }
    assert_eq!(vm(&trio.lab.sim.state(), worker).1["node"], to.as_str());
    assert!(
        trio.cluster.calls()[calls..]
            .iter()
            .any(|c| c.method == "ApplyConfiguration"),
        "{stderr}"
    );
    assert!(trio.runs_its_build(worker), "{stderr}");
    trio.lab.assert_no_violations();
}
