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
//! The lock-out guard holds for each host whose `host.fw` changes, and for
//! every host when `cluster.fw` does. A login through Teleport, the guard's
//! proof for SSH without a direct rule, is made for a lone host only: a
//! cluster host whose `ssh` goes through Teleport is refused before any
//! host is asked.

use std::path::Path;

use super::cluster_plan::{ClusterPlan, NodePlan};
use super::guard::{self, Proof};
use super::host_setup::{self, HostFiles, Report, Ssh};
use super::workflow::{DeployError, Ui};
use crate::model::{Host, Model, SshRoute};

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
/// request's way to the first host) says, the last with `cluster.fw`.
pub fn hosts(model: &Model, tree: &Path, first: &Ssh) -> Result<Vec<ClusterHost>, DeployError> {
    let hosts = &model.proxmox.hosts;
    if let Some(host) = hosts
        .iter()
        .find(|host| host.ssh_route == SshRoute::Teleport)
    {
        return Err(DeployError::ClusterHostThroughTeleport {
            node: host.node.clone(),
        });
    }
    Ok(hosts
        .iter()
        .enumerate()
        .map(|(i, host)| ClusterHost {
            host: host.clone(),
            ssh: first.to_cluster_host(host),
            files: HostFiles::of_cluster_host(tree, &host.node, i + 1 == hosts.len()),
        })
        .collect())
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
/// behind.
pub fn guard(
    model: &Model,
    hosts: &[ClusterHost],
    reports: &[Report],
    proof: Proof,
) -> Result<(), DeployError> {
    let changes = |report: &Report, what: &str| report.changes.iter().any(|c| c.contains(what));
    let cluster_fw = reports.iter().any(|report| changes(report, CLUSTER_FW));
    for (host, report) in hosts.iter().zip(reports) {
        if !cluster_fw && !changes(report, "/etc/pve/") {
            continue;
        }
        guard::check_host(model, &host.host, proof).map_err(|source| DeployError::HostLockOut {
            node: host.host.node.clone(),
            source,
        })?;
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

    fn cluster_hosts(model: &Model) -> Vec<ClusterHost> {
        let first = Ssh {
            target: "root@pve1".into(),
            config: None,
            root: Some("/roots".into()),
            host_key: Some(("pve1".into(), "ssh-ed25519 AAAA".into())),
            recorded_keys: vec![("pve1".into(), "ssh-ed25519 AAAA".into())],
            teleport: None,
        };
        hosts(model, Path::new("dist"), &first).unwrap()
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
                ("/roots/pve2".into(), "dist/hosts/pve2".into(), false, false),
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
