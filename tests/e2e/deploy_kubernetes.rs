//! Day-2 changes of the whole cluster through `waddlec deploy`, without
//! `--allow-replace`: a Kubernetes upgrade and the refusals that come
//! before any change (a version outside the skew policy, a Talos version
//! the Image Factory does not know, a node that does not answer).
//!
//! Stand-ins (see `support::deploy_lab`): the Proxmox simulator, a real
//! sshd in a network namespace as the Proxmox host, the simulated Talos
//! cluster behind stand-in apids (`support::talos_cluster`, which restarts
//! a kubelet whose config changed and records every moment Kubernetes'
//! version skew policy is broken), and a local Image Factory answering
//! `GET /versions`.

use std::fs;
use std::time::Duration;

use crate::support::deploy_lab::{Lab, CPS};
use crate::support::text;

/// The lab's blueprint with `versions.kubernetes = version`, built.
fn pin_kubernetes(lab: &Lab, version: &str) {
    let path = lab.lab.path("blueprint.toml");
    let blueprint = fs::read_to_string(&path).unwrap();
    let mut document: toml::Table = blueprint.parse().unwrap();
    document["versions"]
        .as_table_mut()
        .unwrap()
        .insert("kubernetes".into(), version.into());
    fs::write(&path, document.to_string()).unwrap();
    lab.build();
}

/// Every VM's description records `version` and its node runs the build's
/// machine config, byte for byte.
fn assert_on(lab: &Lab, version: &str) {
    for (i, node) in lab.nodes.iter().enumerate() {
        assert!(
            lab.description_of(&node.name)
                .ends_with(&format!(" kubernetes={version}")),
            "{}",
            lab.description_of(&node.name)
        );
        let built = fs::read(
            lab.lab
                .path(&format!("dist/vms/{}/seed/user-data", node.name)),
        )
        .unwrap();
        assert_eq!(
            lab.cluster.config(i),
            built,
            "{} runs another config",
            node.name
        );
    }
}

/// The lab, three control planes and a worker, deployed with Kubernetes
/// 1.34.3, every node then taking its 1.34.3 config in place (the
/// simulated nodes start on configs of their own).
fn on_1_34() -> Lab {
    let lab = Lab::deployed_with(1, |document| {
        document["versions"]
            .as_table_mut()
            .unwrap()
            .insert("kubernetes".into(), "1.34.3".into());
    });
    for node in &lab.nodes {
        lab.age_seed(&node.name);
    }
    let output = lab.deploy(&["--talos-wait", "60"]);
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(
        !text(&output.stdout).contains("k8s "),
        "{}",
        text(&output.stdout)
    );
    assert_on(&lab, "1.34.3");
    lab
}

#[test]
fn a_kubernetes_upgrade_moves_every_api_server_before_any_kubelet() {
    let lab = on_1_34();
    // Setting the lab up moved the simulation's own kubelets: only what
    // the upgrade does counts.
    let skew_before = lab.cluster.skew_violations().len();
    pin_kubernetes(&lab, "1.35.1");
    let before = lab.sim.requests().len();
    let output = lab.deploy(&["--talos-wait", "60"]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let skew = lab.cluster.skew_violations();
    assert_eq!(skew[skew_before..], [] as [String; 0], "{stdout}");

    // The plan, in order: each control plane's components, then each
    // node's config (its kubelet), the worker last.
    let planned: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("k8s      VM") || l.starts_with("config   VM"))
        .collect();
    assert_eq!(planned.len(), 7, "{stdout}");
    for (line, (action, vm)) in planned.iter().zip([
        ("k8s", "110 talos-cp1"),
        ("k8s", "111 talos-cp2"),
        ("k8s", "112 talos-cp3"),
        ("config", "110 talos-cp1"),
        ("config", "111 talos-cp2"),
        ("config", "112 talos-cp3"),
        ("config", "113 talos-w1"),
    ]) {
        assert!(line.starts_with(&format!("{action:<8} VM {vm}")), "{line}");
    }
    assert!(planned[0].contains("Kubernetes 1.34.3 → 1.35.1, control plane components first"));
    assert!(
        planned[0].contains("kubelet kept at 1.34.3"),
        "{}",
        planned[0]
    );
    // The first phase's diff, as the node's dry run gave it: the API
    // server moves, the kubelet does not.
    let phase =
        &stdout[stdout.find("k8s      VM 110").unwrap()..stdout.find("k8s      VM 111").unwrap()];
    let added = |image: &str| {
        phase.lines().any(|l| {
            l.starts_with('+') && l.trim_start_matches('+').trim() == format!("image: {image}")
        })
    };
    assert!(added("registry.k8s.io/kube-apiserver:v1.35.1"), "{phase}");
    assert!(!phase.contains("kubelet:v1.35.1"), "{phase}");
    assert!(
        planned[6].contains("its kubelet moves to 1.35.1"),
        "{}",
        planned[6]
    );
    // As carried out (stderr): every API server moved, then every kubelet,
    // each waited for.
    let done: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("→ k8s      "))
        .filter(|l| !l.starts_with("VM "))
        .collect();
    assert_eq!(
        done,
        [
            "talos-cp1: control plane components on 1.35.1, kubelet still 1.34.3",
            "talos-cp2: control plane components on 1.35.1, kubelet still 1.34.3",
            "talos-cp3: control plane components on 1.35.1, kubelet still 1.34.3",
            "talos-cp1: kubelet healthy on 1.35.1",
            "talos-cp2: kubelet healthy on 1.35.1",
            "talos-cp3: kubelet healthy on 1.35.1",
            "talos-w1: kubelet healthy on 1.35.1",
        ],
        "{stderr}"
    );
    assert_on(&lab, "1.35.1");
    // In place: never a destroy, never a reboot; etcd kept every member.
    assert!(!lab
        .sim
        .changes_since(before)
        .iter()
        .any(|c| c.starts_with("DELETE") && c.contains("/qemu/")));
    assert!(!lab.cluster.calls().iter().any(|c| c.method == "Upgrade"));
    assert_eq!(lab.member_names(), CPS);
    assert!(lab.cluster.has_quorum());

    let again = lab.deploy(&[]);
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(
        !stdout.contains("in place") && !stdout.contains("k8s "),
        "{stdout}"
    );
    lab.assert_no_violations();
}

#[test]
fn changes_outside_the_version_rules_are_refused_before_anything_changes() {
    let lab = Lab::deployed();
    let refused = |expect: &str| {
        let before = lab.sim.requests().len();
        let calls = lab.cluster.calls().len();
        let output = lab.deploy(&[]);
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        assert_eq!(output.status.code(), Some(6), "{stdout}\n{stderr}");
        assert!(stdout.contains(expect), "{stdout}");
        assert_eq!(lab.sim.changes_since(before), Vec::<String>::new());
        let mutations: Vec<String> = lab.cluster.calls()[calls..]
            .iter()
            .filter(|c| {
                c.method == "Upgrade"
                    || c.method.starts_with("Etcd") && c.method != "EtcdMemberList"
            })
            .map(|c| c.method.clone())
            .collect();
        assert_eq!(mutations, Vec::<String>::new(), "{stdout}");
    };

    // Down: never.
    pin_kubernetes(&lab, "1.34.3");
    refused("Kubernetes 1.35.1 → 1.34.3 is a downgrade");
    // Two minors at once: one at a time.
    pin_kubernetes(&lab, "1.35.1");
    for node in &lab.nodes {
        lab.age(&node.name, "kubernetes=", "1.33.4");
        lab.age_seed(&node.name);
    }
    refused("set versions.kubernetes to the newest 1.34.x");
    for node in &lab.nodes {
        lab.age(&node.name, "kubernetes=", "1.35.1");
    }

    // A Talos version the factory has no installer for.
    lab.age("talos-cp2", "image=", "talos-v1.12.0-000000000000.qcow2");
    lab.factory_lists(["v1.12.0".to_string(), "v1.12.3".to_string()], []);
    refused("the Image Factory does not know Talos v1.12.4, so it has no installer for it (its newest v1.12.x is v1.12.3)");
    lab.factory_lists(["v1.12.4".to_string()], ["v1.12.4".to_string()]);
    refused("the Image Factory marks Talos v1.12.4 broken");

    // A node that does not answer is not changed in place.
    lab.factory_lists(["v1.12.4".to_string()], []);
    lab.cluster.power_off(1);
    refused("talos-cp2 does not answer its Talos API");
    lab.cluster.power_on(1);
    assert!(lab.cluster.wait_for(1, true, Duration::from_secs(10)));
    lab.assert_no_violations();
}
