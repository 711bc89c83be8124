//! Each host of a `[cluster]` set up over SSH, as `host_setup` sets up a
//! lone host: through its own `ssh_target`, its own `hosts/NODE/` files as
//! its `host/`, asked first (`--check`, its changes shown under its node in
//! the cluster's plan) and set up under the deploy lock, one host after the
//! other in the blueprint's order, once the SDN is applied (a host's
//! network script puts its address on the VNets SDN makes).
//!
//! `cluster.fw` is the cluster's one file: `/etc/pve/firewall/` is shared
//! by every node (pmxcfs), so it is staged for one setup only, the last
//! host's, and each host's `setup.sh` installs it only where it is staged.
//! One writer means no setups racing on it and its change shown once; the
//! last, because a setup installs its own `host.fw` (the rules that keep the
//! operator in) before `cluster.fw` (the policy that needs them), so when
//! the policy reaches the cluster every node's `host.fw` is in place.
//!
//! A host whose `ssh` is `teleport:LOGIN@NODE` is reached as a lone host
//! through Teleport is: `LOGIN@NODE.CLUSTER` by the blueprint's proxy, its
//! record's key never used (Teleport's host CA speaks for it); the others
//! straight, pinned to their own record's key.
//!
//! The lock-out guard holds for each host whose `host.fw` changes, and for
//! every host when `cluster.fw` does. Each host through Teleport it holds
//! for is logged in to through Teleport first, on a connection of its own,
//! as a lone host's deploy does: that login is the guard's proof for SSH
//! without a direct rule, for that host only; a failed login stops the
//! deploy before anything changes.

use std::path::Path;

use super::cluster_plan::{ClusterPlan, NodePlan};
use super::guard::{self, Proof};
use super::host_setup::{self, HostFiles, Report, Ssh};
use super::workflow::{DeployError, Ui};
use crate::model::{Host, Model};
use crate::net::ssh::TeleportProxy;

/// Where `cluster.fw` lands on a host: the sign its change is the
/// cluster's, not one node's.
const CLUSTER_FW: &str = "/etc/pve/firewall/cluster.fw";

/// One host of the cluster, as its setup reaches it.
#[derive(Clone, Debug)]
pub struct ClusterHost {
    host: Host,
    ssh: Ssh,
    files: HostFiles,
}

/// The cluster's hosts in blueprint order, each reached as `first` (the
/// request's way to the first host) says, the last with `cluster.fw`. A
/// host through Teleport goes by `first`'s proxy, or, when the first host
/// is reached straight, by the blueprint's (tsh's known_hosts where tsh
/// keeps them, as `Ssh::to_host` is given them).
pub fn hosts(model: &Model, tree: &Path, first: &Ssh) -> Result<Vec<ClusterHost>, DeployError> {
    let teleport = first
        .teleport
        .clone()
        .or_else(|| Ssh::teleport_proxy(model, TeleportProxy::tsh_known_hosts()));
    Ok(hosts_through(model, tree, first, teleport.as_ref()))
}

/// [`hosts`], a host through Teleport going by `teleport`.
fn hosts_through(
    model: &Model,
    tree: &Path,
    first: &Ssh,
    teleport: Option<&TeleportProxy>,
) -> Vec<ClusterHost> {
    let hosts = &model.proxmox.hosts;
    hosts
        .iter()
        .enumerate()
        .map(|(i, host)| ClusterHost {
            host: host.clone(),
            ssh: first.to_cluster_host_through(host, teleport),
            files: HostFiles::of_cluster_host(tree, &host.node, i + 1 == hosts.len()),
        })
        .collect()
}

/// What each host's setup would change, in the order of `hosts`.
pub fn check(hosts: &[ClusterHost], close_emergency: bool) -> Result<Vec<Report>, DeployError> {
    hosts
        .iter()
        .map(|host| {
            Ok(host_setup::run_with(
                &host.ssh,
                &host.files,
                true,
                close_emergency,
            )?)
        })
        .collect()
}

/// `plan` with each host's `reports` under its node (a node the plan has
/// no share for, offline, gets one of its own with no steps).
pub fn attach(plan: &mut ClusterPlan, hosts: &[ClusterHost], reports: &[Report]) {
    for (host, report) in hosts.iter().zip(reports) {
        let node = &host.host.node;
        if !plan.nodes.iter().any(|plan| plan.node == *node) {
            plan.nodes.push(NodePlan {
                node: node.clone(),
                file_storage: String::new(),
                steps: Vec::new(),
                host: Vec::new(),
                emergency: Vec::new(),
            });
        }
        if let Some(plan) = plan.nodes.iter_mut().find(|plan| plan.node == *node) {
            plan.host = report.changes.clone();
            plan.emergency = report.emergency.clone();
        }
    }
}

/// The lock-out guard for every host whose firewall `reports` change:
/// its own `host.fw`, or the cluster's `cluster.fw`, which every host is
/// behind. `teleport_up` is `proof`'s only part for every host; a host
/// through Teleport is logged in to first ([`log_in`]), its login the
/// proof for its own SSH only.
pub fn guard(
    model: &Model,
    hosts: &[ClusterHost],
    reports: &[Report],
    proof: Proof,
) -> Result<(), DeployError> {
    guard_with(model, hosts, reports, proof, log_in)
}

/// Logs in to `ssh`'s host through Teleport (`host_setup`'s login, the
/// lone host's): ssh's own words when it fails.
fn log_in(ssh: &Ssh) -> Result<(), String> {
    host_setup::log_in_through_teleport(ssh).map_err(|err| err.to_string())
}

/// [`guard`], logging in through Teleport with `log_in`.
fn guard_with(
    model: &Model,
    hosts: &[ClusterHost],
    reports: &[Report],
    proof: Proof,
    log_in: impl Fn(&Ssh) -> Result<(), String>,
) -> Result<(), DeployError> {
    let changes = |report: &Report, what: &str| report.changes.iter().any(|c| c.contains(what));
    let cluster_fw = reports.iter().any(|report| changes(report, CLUSTER_FW));
    for (host, report) in hosts.iter().zip(reports) {
        if !cluster_fw && !changes(report, "/etc/pve/") {
            continue;
        }
        let lock_out = |source| DeployError::HostLockOut {
            node: host.host.node.clone(),
            source,
        };
        // This host's own login, never another's.
        let logged_in_through_teleport = match &host.ssh.teleport {
            Some(teleport) => {
                log_in(&host.ssh).map_err(|reason| {
                    lock_out(guard::unproven(
                        model,
                        &host.ssh.target,
                        &teleport.proxy,
                        &reason,
                    ))
                })?;
                true
            }
            None => false,
        };
        let proof = Proof {
            teleport_up: proof.teleport_up,
            logged_in_through_teleport,
        };
        guard::check_host(model, &host.host, proof).map_err(lock_out)?;
    }
    Ok(())
}

/// Sets up every host whose `shown` report has changes, in order. The
/// caller asked them all again under the lock (`check`): what is applied
/// is what was shown.
pub fn apply(
    hosts: &[ClusterHost],
    shown: &[Report],
    close_emergency: bool,
    ui: &dyn Ui,
) -> Result<(), DeployError> {
    for (host, report) in hosts.iter().zip(shown) {
        if report.changes.is_empty() {
            continue;
        }
        let done = host_setup::run_with(&host.ssh, &host.files, false, close_emergency)?;
        for line in done.changes.iter().chain(&done.emergency) {
            ui.step(&format!("{} host {line}", host.host.node));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cluster example's model, its text edited by `edit`.
    fn model(edit: impl Fn(&str) -> String) -> Model {
        let source = crate::blueprint::SourceFile {
            name: "three-hosts.toml".into(),
            text: edit(include_str!(
                "../../../blueprints/examples/three-hosts.toml"
            )),
        };
        let today = crate::blueprint::Date {
            year: 2026,
            month: 1,
            day: 1,
        };
        let document = crate::blueprint::parse(&source).unwrap();
        crate::resolve::resolve(&document, today).unwrap().0
    }

    fn first() -> Ssh {
        Ssh {
            target: "root@pve1".into(),
            config: None,
            root: Some("/roots".into()),
            host_key: Some(("pve1".into(), "ssh-ed25519 AAAA".into())),
            recorded_keys: vec![
                ("pve1".into(), "ssh-ed25519 AAAA".into()),
                ("pve2".into(), "ssh-ed25519 BBBB".into()),
            ],
            teleport: None,
        }
    }

    fn cluster_hosts(model: &Model) -> Vec<ClusterHost> {
        hosts(model, Path::new("dist"), &first()).unwrap()
    }

    fn proxy() -> TeleportProxy {
        TeleportProxy {
            cluster: "teleport.example.org".into(),
            proxy: "teleport.example.org:443".into(),
            known_hosts: "/home/op/.tsh/known_hosts".into(),
        }
    }

    /// `model` with pve2's `ssh` through Teleport (`teleport:` before its
    /// own target), and its hosts reached by `proxy()`.
    fn pve2_through_teleport(mut model: Model) -> (Model, Vec<ClusterHost>) {
        let pve2 = &mut model.proxmox.hosts[1];
        assert_eq!(pve2.node, "pve2");
        pve2.ssh_route = crate::model::SshRoute::Teleport;
        let hosts = hosts_through(&model, Path::new("dist"), &first(), Some(&proxy()));
        (model, hosts)
    }

    /// The cluster example without the operator's SSH rule.
    fn without_ssh_rule() -> Model {
        model(|text| {
            text.replace(
                "name = \"operator-ssh\"\nport = 22",
                "name = \"operator-ssh\"\nport = 2222",
            )
        })
    }

    #[test]
    fn a_host_through_teleport_goes_by_the_proxy_unpinned_the_others_straight_pinned() {
        let (_, hosts) = pve2_through_teleport(model(str::to_string));
        let pve2 = &hosts[1].ssh;
        let login_at_node = hosts[1].host.ssh_target.to_string();
        assert_eq!(pve2.target, format!("{login_at_node}.teleport.example.org"));
        assert_eq!(pve2.teleport, Some(proxy()));
        assert_eq!(pve2.host_key, None);
        assert!(pve2.remote(None).teleport.is_some());
        assert_eq!(pve2.root.as_deref(), Some("/roots/pve2"));
        let pve1 = &hosts[0].ssh;
        assert_eq!(pve1.teleport, None);
        assert_eq!(
            pve1.host_key,
            Some(("pve1".into(), "ssh-ed25519 AAAA".into()))
        );
        assert!(!pve1.target.contains("teleport"), "{}", pve1.target);
        assert_eq!(hosts[2].ssh.teleport, None);
    }

    #[test]
    fn a_first_host_through_teleport_lends_its_proxy() {
        let mut model = model(str::to_string);
        model.proxmox.hosts[1].ssh_route = crate::model::SshRoute::Teleport;
        let through = Ssh {
            teleport: Some(proxy()),
            ..first()
        };
        let hosts = hosts(&model, Path::new("dist"), &through).unwrap();
        assert_eq!(hosts[1].ssh.teleport, Some(proxy()));
        assert!(
            hosts[1].ssh.target.ends_with(".teleport.example.org"),
            "{}",
            hosts[1].ssh.target
        );
        assert_eq!(hosts[0].ssh.teleport, None);
    }

    #[test]
    fn a_host_through_teleport_is_logged_in_to_before_its_firewall_changes() {
        let (model, hosts) = pve2_through_teleport(without_ssh_rule());
        let proof = Proof::default();
        let quiet = || changing(&[]);
        let reports = [
            quiet(),
            changing(&["would change: /etc/pve/nodes/pve2/host.fw"]),
            quiet(),
        ];
        // Its login is made, on pve2 alone, and is the proof.
        let logged_in = std::cell::RefCell::new(Vec::new());
        let log_in = |ssh: &Ssh| {
            logged_in.borrow_mut().push(ssh.target.clone());
            Ok(())
        };
        assert!(guard_with(&model, &hosts, &reports, proof, log_in).is_ok());
        assert_eq!(*logged_in.borrow(), [hosts[1].ssh.target.clone()]);
        assert!(hosts[1].ssh.target.ends_with(".teleport.example.org"));
        // No login made, no proof: the guard refuses, naming the host.
        let failed = |_: &Ssh| Err("ERROR: Not logged in.".to_string());
        let refused = guard_with(&model, &hosts, &reports, proof, failed).unwrap_err();
        let refused = refused.to_string();
        assert!(refused.starts_with("on pve2: "), "{refused}");
        for part in [
            "Not logged in",
            "tsh login --proxy=teleport.example.org:443",
        ] {
            assert!(refused.contains(part), "{part}: {refused}");
        }
    }

    #[test]
    fn one_hosts_teleport_login_proves_nothing_for_a_host_reached_straight() {
        let (model, hosts) = pve2_through_teleport(without_ssh_rule());
        let reports = [
            changing(&[]),
            changing(&[]),
            changing(&["would change: /etc/pve/firewall/cluster.fw"]),
        ];
        let logged_in = std::cell::RefCell::new(Vec::new());
        let log_in = |ssh: &Ssh| {
            logged_in.borrow_mut().push(ssh.target.clone());
            Ok(())
        };
        let refused = guard_with(&model, &hosts, &reports, Proof::default(), log_in).unwrap_err();
        // pve1 is straight, without a rule for SSH: refused before pve2's login.
        assert!(refused.to_string().starts_with("on pve1: "), "{refused}");
        assert!(logged_in.borrow().is_empty());
        // Even a proof handed in for the run is not pve1's login.
        let handed = Proof {
            teleport_up: true,
            logged_in_through_teleport: true,
        };
        let refused = guard_with(&model, &hosts, &reports, handed, |_: &Ssh| Ok(())).unwrap_err();
        assert!(refused.to_string().starts_with("on pve1: "), "{refused}");
    }

    #[test]
    fn a_host_through_teleport_with_a_direct_rule_still_logs_in() {
        let (model, hosts) = pve2_through_teleport(model(str::to_string));
        let reports = [
            changing(&[]),
            changing(&["would change: /etc/pve/nodes/pve2/host.fw"]),
            changing(&[]),
        ];
        assert!(guard_with(&model, &hosts, &reports, Proof::default(), |_: &Ssh| Ok(())).is_ok());
        let failed = |_: &Ssh| Err("refused".to_string());
        let refused = guard_with(&model, &hosts, &reports, Proof::default(), failed).unwrap_err();
        assert!(
            !refused.to_string().contains("no firewall rule"),
            "{refused}"
        );
    }

    fn changing(lines: &[&str]) -> Report {
        Report {
            changes: lines.iter().map(|line| line.to_string()).collect(),
            emergency: Vec::new(),
        }
    }

    #[test]
    fn each_host_its_own_files_and_root_and_only_the_last_cluster_fw() {
        let hosts = cluster_hosts(&model(str::to_string));
        let staged: Vec<_> = hosts
            .iter()
            .map(|host| {
                (
                    host.ssh.root.clone().unwrap(),
                    host.files.dir.clone(),
                    host.files.cluster_fw.is_some(),
                    host.ssh.host_key.is_some(),
                )
            })
            .collect();
        assert_eq!(
            staged,
            [
                ("/roots/pve1".into(), "dist/hosts/pve1".into(), false, true),
                ("/roots/pve2".into(), "dist/hosts/pve2".into(), false, true),
                ("/roots/pve3".into(), "dist/hosts/pve3".into(), true, false),
            ]
        );
    }

    #[test]
    fn a_cluster_fw_change_guards_every_host_a_host_fw_change_its_own() {
        // No rule admits the operator to SSH: every host would lock out.
        let model = model(|text| {
            text.replace(
                "name = \"operator-ssh\"\nport = 22",
                "name = \"operator-ssh\"\nport = 2222",
            )
        });
        let hosts = cluster_hosts(&model);
        let proof = Proof::default();
        let quiet = || changing(&[]);
        let reports = [
            quiet(),
            quiet(),
            changing(&["would change: /etc/sysctl.d/x"]),
        ];
        assert!(guard(&model, &hosts, &reports, proof).is_ok());
        let reports = [
            quiet(),
            changing(&["would change: /etc/pve/nodes/pve2/host.fw"]),
            quiet(),
        ];
        let refused = guard(&model, &hosts, &reports, proof).unwrap_err();
        assert!(refused.to_string().starts_with("on pve2: "), "{refused}");
        let reports = [
            quiet(),
            quiet(),
            changing(&["would change: /etc/pve/firewall/cluster.fw"]),
        ];
        let refused = guard(&model, &hosts, &reports, proof).unwrap_err();
        assert!(refused.to_string().starts_with("on pve1: "), "{refused}");
    }

    #[test]
    fn reports_go_under_their_nodes() {
        let model = model(str::to_string);
        let hosts = cluster_hosts(&model);
        let mut plan = ClusterPlan::default();
        plan.nodes.push(NodePlan {
            node: "pve2".into(),
            file_storage: "local".into(),
            steps: Vec::new(),
            host: Vec::new(),
            emergency: Vec::new(),
        });
        let reports = [
            changing(&["would change: /etc/pve/nodes/pve1/host.fw"]),
            changing(&[]),
            changing(&["would change: /etc/pve/firewall/cluster.fw"]),
        ];
        attach(&mut plan, &hosts, &reports);
        let nodes: Vec<_> = plan.nodes.iter().map(|n| n.node.as_str()).collect();
        assert_eq!(nodes, ["pve2", "pve1", "pve3"]);
        assert!(plan.changes_anything());
        let lines = plan.lines().join("\n");
        assert!(
            lines.contains("node     pve3\n  host     would change: /etc/pve/firewall/cluster.fw"),
            "{lines}"
        );
    }
}
