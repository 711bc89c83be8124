//! `waddlec deploy --allow-replace talos-cpN` against the Proxmox simulator
//! and a simulated Talos cluster (`support::talos_cluster`), reached as the
//! real one is: through a real sshd in a network namespace playing the
//! Proxmox host, where 10.10.0.10-12:50000 are DNAT'd to the stand-in
//! apids. The simulator and the cluster are tied by a watcher: when the
//! deploy destroys a control plane's VM the node powers off, and when it
//! starts the new VM the node boots with an empty etcd under the same
//! hostname (or, for a node that never comes back, stays off).
//!
//! Checked: the member leaves before its VM is destroyed, the node rejoins
//! and etcd is healthy with three members after; a replace is refused,
//! with nothing changed, while another member is unhealthy; a node that
//! does not come back stops the deploy naming it, and a re-run converges.
//! Never a dead member.
//!
//! In place, without `--allow-replace`: a new machine config reaches the
//! node through `ApplyConfiguration` with the build's bytes and the VM's
//! seed disk and description are brought current; a new Talos image is an
//! `Upgrade` to the factory installer; an upgrade is refused, nothing
//! changed, while another member is unhealthy. Never a destroy; a re-run
//! has nothing to do.

use std::fs;
use std::time::{Duration, Instant};

use crate::support::deploy_lab::{Lab, CPS};
use crate::support::text;

#[test]
fn a_control_plane_leaves_etcd_before_its_vm_goes_and_rejoins_after() {
    let lab = Lab::deployed();
    lab.age_seed("talos-cp2");
    let before = lab.sim.requests().len();
    let (output, seen) = lab.deploy_watched(
        &["--allow-replace", "talos-cp2", "--talos-wait", "60"],
        true,
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}\n{seen:?}");
    for line in [
        "etcd     talos-cp2 leaves etcd (member ",
        "replace  VM 111 talos-cp2 (seed (configuration) talos-cp2-seed-000000000000.raw → ",
        "etcd     wait until talos-cp2 (VM 111) answers its Talos API and etcd is healthy with talos-cp1, talos-cp2, talos-cp3",
    ] {
        assert!(stdout.contains(line), "{line}\n{stdout}");
    }
    assert!(
        stderr.contains("etcd     talos-cp2 left etcd")
            && stderr.contains(
                "etcd     talos-cp2 is back; etcd is healthy with talos-cp1, talos-cp2, talos-cp3"
            ),
        "{stderr}"
    );
    // The member left (on the node itself) before the VM was destroyed.
    assert_eq!(
        seen,
        ["destroy: members talos-cp1,talos-cp3 leaves 1", "start"],
        "{stderr}"
    );
    let calls = lab.cluster.calls();
    let leave = calls
        .iter()
        .filter(|c| c.method == "EtcdLeaveCluster")
        .collect::<Vec<_>>();
    assert_eq!(leave.len(), 1);
    assert_eq!((leave[0].entry, leave[0].target), (1, Some(1)));
    assert!(leave[0].roles.contains(&"os:admin".to_string()));
    let changes = lab.sim.changes_since(before);
    let destroyed = changes
        .iter()
        .position(|c| c.starts_with("DELETE ") && c.ends_with("/qemu/111"));
    let started = changes
        .iter()
        .position(|c| c.ends_with("/qemu/111/status/start"));
    assert!(destroyed.is_some() && started > destroyed, "{changes:?}");
    // Three healthy members, the new talos-cp2 among them; no dead one.
    assert_eq!(lab.member_names(), CPS);
    assert!(lab.cluster.members().iter().all(|m| m.healthy));
    assert!(lab.cluster.has_quorum());

    // Done: the plan sees no change, and nothing is touched again.
    let before = lab.sim.requests().len();
    let calls_before = lab.cluster.calls().len();
    let output = lab.deploy(&["--allow-replace", "talos-cp2"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("nothing to do"));
    assert_eq!(lab.sim.changes_since(before), Vec::<String>::new());
    assert_eq!(lab.cluster.calls().len(), calls_before, "no Talos call");
    lab.assert_no_violations();
}

#[test]
fn a_replace_is_refused_while_another_member_is_unhealthy_and_nothing_changes() {
    let lab = Lab::deployed();
    lab.age_seed("talos-cp2");
    lab.cluster.set_member_unhealthy(2, true);
    let members = lab.cluster.members();
    let before = lab.sim.requests().len();
    let calls_before = lab.cluster.calls().len();
    let (output, seen) = lab.deploy_watched(&["--allow-replace", "talos-cp2"], true);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(6), "{stdout}\n{stderr}");
    let cp3 = format!("{:016x}", lab.cluster.member_of(2).unwrap());
    assert!(
        stdout.contains(&format!(
            "CONFLICT VM 111: talos-cp2 is not replaced now: etcd member {cp3} `talos-cp3` is not healthy (etcd unhealthy: context deadline exceeded)"
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains("the host conflicts with the blueprint; nothing was changed"),
        "{stderr}"
    );
    assert_eq!(lab.sim.changes_since(before), Vec::<String>::new());
    assert!(seen.is_empty(), "{seen:?}");
    assert!(!lab.cluster.calls()[calls_before..]
        .iter()
        .any(|c| c.method.starts_with("EtcdLeave") || c.method.starts_with("EtcdRemove")));
    assert_eq!(lab.cluster.members(), members);

    // Healthy again: the replace goes ahead.
    lab.cluster.set_member_unhealthy(2, false);
    let (output, _) = lab.deploy_watched(
        &["--allow-replace", "talos-cp2", "--talos-wait", "60"],
        true,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(lab.member_names(), CPS);
    lab.assert_no_violations();
}

#[test]
fn a_node_that_never_comes_back_stops_the_deploy_naming_it_and_a_rerun_converges() {
    let lab = Lab::deployed();
    lab.age_seed("talos-cp2");
    let started = Instant::now();
    let (output, seen) = lab.deploy_watched(
        &["--allow-replace", "talos-cp2", "--talos-wait", "5"],
        false,
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(69), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(120));
    assert!(
        stderr
            .contains("talos-cp2 did not come back within 5 s: waited for its Talos API to answer")
            && stderr.contains("run deploy again to converge"),
        "{stderr}"
    );
    assert_eq!(seen.len(), 2, "{seen:?}");
    // It left before it went: two healthy members, no dead one.
    assert_eq!(lab.member_names(), ["talos-cp1", "talos-cp3"]);
    assert!(lab.cluster.members().iter().all(|m| m.healthy));
    assert!(lab.cluster.has_quorum());

    // The node boots after all, and joins under its name.
    lab.cluster.replace_without_leave(1, "talos-cp2");
    assert_eq!(lab.member_names(), CPS);
    let before = lab.sim.requests().len();
    let output = lab.deploy(&["--allow-replace", "talos-cp2"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("nothing to do"));
    assert_eq!(lab.sim.changes_since(before), Vec::<String>::new());
    assert!(lab.cluster.members().iter().all(|m| m.healthy));
    lab.assert_no_violations();
}

/// What a deploy did to VM 111 through the API: its changes, minus reads.
fn destroyed_111(lab: &Lab, before: usize) -> bool {
    lab.sim.requests()[before..].iter().any(|r| {
        r["method"].as_str() == Some("DELETE")
            && r["path"].as_str().is_some_and(|p| p.ends_with("/qemu/111"))
    })
}

#[test]
fn a_config_change_is_applied_in_place_and_the_seed_brought_current() {
    let lab = Lab::deployed();
    let current = lab.description_of("talos-cp2");
    lab.age_seed("talos-cp2");
    lab.cluster.set_reboot_time(1, Duration::from_millis(500));
    let before = lab.sim.requests().len();
    let output = lab.deploy(&["--talos-wait", "60"]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("config   VM 111 talos-cp2 in place"),
        "{stdout}"
    );
    assert!(!destroyed_111(&lab, before), "{stdout}");
    // The diff is shown, its secrets not.
    assert!(stdout.contains("+    type: controlplane"), "{stdout}");
    assert!(stdout.contains("key: (redacted)"), "{stdout}");
    let built_text =
        String::from_utf8(fs::read(lab.lab.path("dist/vms/talos-cp2/seed/user-data")).unwrap())
            .unwrap();
    let token = built_text
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap();
    assert!(!stdout.contains(token), "{stdout}");
    // The node runs exactly the bytes the build wrote.
    let built = fs::read(lab.lab.path("dist/vms/talos-cp2/seed/user-data")).unwrap();
    assert_eq!(lab.cluster.config(1), built);
    assert!(lab.cluster.is_up(1));
    assert_eq!(lab.cluster.staged_config(1), None);
    assert!(lab
        .cluster
        .calls()
        .iter()
        .any(|c| c.method == "ApplyConfiguration" && c.target.unwrap_or(c.entry) == 1));
    // The host's copy is current: the description, one seed disk, no
    // leftover import.
    assert_eq!(lab.description_of("talos-cp2"), current);
    let config = &lab.sim.state()["vms"]["111"]["config"];
    assert!(
        !config
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("unused")),
        "{config:#}"
    );
    assert_eq!(lab.member_names(), CPS);

    let again = lab.deploy(&[]);
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(!stdout.contains("in place"), "{stdout}");
    lab.assert_no_violations();
}

#[test]
fn a_new_talos_image_is_an_upgrade_in_place() {
    let lab = Lab::deployed();
    let current = lab.description_of("talos-cp2");
    // The blueprint's version, as its image's name carries it.
    let wanted = current
        .split_whitespace()
        .find_map(|w| w.strip_prefix("image=talos-"))
        .and_then(|rest| rest.split('-').next())
        .unwrap()
        .to_string();
    assert_ne!(lab.cluster.version(1), wanted);
    lab.age("talos-cp2", "image=", "talos-v1.12.0-000000000000.qcow2");
    lab.cluster.set_reboot_time(1, Duration::from_millis(500));
    let before = lab.sim.requests().len();
    let output = lab.deploy(&["--talos-wait", "60"]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("upgrade  VM 111 talos-cp2 in place")
            && stdout.contains("factory.talos.dev/nocloud-installer/"),
        "{stdout}"
    );
    assert!(!destroyed_111(&lab, before), "{stdout}");
    assert!(lab
        .cluster
        .calls()
        .iter()
        .any(|c| c.method == "Upgrade" && c.target.unwrap_or(c.entry) == 1));
    assert_eq!(lab.cluster.version(1), wanted);
    assert_eq!(lab.description_of("talos-cp2"), current);
    assert_eq!(lab.member_names(), CPS);

    let again = lab.deploy(&[]);
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(!stdout.contains("in place"), "{stdout}");
    lab.assert_no_violations();
}

#[test]
fn an_upgrade_is_refused_while_another_member_is_unhealthy_and_nothing_changes() {
    let lab = Lab::deployed();
    lab.age("talos-cp2", "image=", "talos-v1.12.0-000000000000.qcow2");
    let aged = lab.description_of("talos-cp2");
    lab.cluster.set_member_unhealthy(2, true);
    let version = lab.cluster.version(1);
    let before = lab.sim.requests().len();
    let output = lab.deploy(&[]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(6), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("CONFLICT VM 111: talos-cp2 is not taken down now")
            && stdout.contains("talos-cp3"),
        "{stdout}"
    );
    assert_eq!(lab.sim.changes_since(before), Vec::<String>::new());
    assert!(!lab.cluster.calls().iter().any(|c| c.method == "Upgrade"));
    assert_eq!(lab.cluster.version(1), version);
    assert_eq!(lab.description_of("talos-cp2"), aged);
    lab.assert_no_violations();
}
