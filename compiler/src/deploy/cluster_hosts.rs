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
