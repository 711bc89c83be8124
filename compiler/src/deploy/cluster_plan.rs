//! The plan for a `[cluster]`, pure like `plan`: the SDN steps first, then
//! where VMs must go (a VM found on another node than the blueprint's is
//! migrated when the target node has the storage for its disks, else
//! replaced there only with `--allow-replace`, as is a Debian VM whose
//! seed changes with the move), then each online node's
//! own plan — `plan::plan` on that node's share of the desired state (its
//! VMs, the files they are made from, its uplink; the internal networks
//! are VNets, never Linux bridges here) against what the node has, a
//! migrated VM counted as already there. A node that runs VMs of the
//! blueprint and is offline is a conflict, as is a VM on an offline node.
//! On a storage in `shared_storages` a file is uploaded once, by the first
//! node whose plan needs it.
//!
//! Every node's Talos steps — in-place changes, allowed replaces and
//! restarts of Talos nodes, their etcd steps — are taken out of the node
//! plans and ordered, paced and judged as one plan (`rollout::roll` here,
//! the live cluster's judgement by the workflow's `TalosGate`), exactly as
//! a lone host's plan with all those VMs would be, then put back under
//! their nodes: two control planes replaced on two hosts are refused as
//! two on one host are, and the rollout goes one Talos node at a time
//! across the hosts ([`ClusterPlan::talos_runs`]).
//!
//! What a cluster deploy does not do is refused rather than half done: a
//! control plane moved to another host by replacing it there (its etcd
//! member would not leave first).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::cluster_observed::ClusterObserved;
use super::desired::{Desired, DesiredBridge};
use super::observed::HostVm;
use super::plan::{files_of, unpaced, Options, Plan, Step};
use super::rollout;
use super::sdn::{self, SdnObjects, SdnStep};
use crate::model::Model;
use crate::plan::vm::{described_files, VmConfig};

/// Where a VM goes, or why it cannot be placed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum PlacementStep {
    /// `POST /nodes/{from}/qemu/{vmid}/migrate`: the VM, its disks and,
    /// when it runs, its memory move to `to`; the rest of its plan is on
    /// `to`.
    Migrate {
        vmid: u32,
        name: String,
        from: String,
        to: String,
        /// It runs: a live migration (`online=1`).
        online: bool,
        /// Its disks are on a node's own storage: copied to this storage
        /// of `to` (`with-local-disks=1`, `targetstorage`).
        #[serde(skip_serializing_if = "Option::is_none")]
        target_storage: Option<String>,
    },
    /// It cannot migrate (`reason`): destroyed on `from` and created on
    /// `to` by that node's plan, with `--allow-replace`; held back
    /// otherwise.
    Relocate {
        vmid: u32,
        name: String,
        from: String,
        to: String,
        reason: String,
        allowed: bool,
    },
    /// Cannot proceed on `node` (stops the deploy before any change).
    Conflict { node: String, reason: String },
}

impl PlacementStep {
    pub fn line(&self) -> String {
        match self {
            PlacementStep::Migrate {
                vmid,
                name,
                from,
                to,
                online,
                target_storage,
            } => {
                let how = if *online { "live" } else { "offline" };
                let disks = target_storage
                    .as_ref()
                    .map(|storage| format!(", its local disks copied to {to}'s {storage}"))
                    .unwrap_or_default();
                format!("migrate  VM {vmid} {name} {from} → {to} ({how}{disks})")
            }
            PlacementStep::Relocate {
                vmid,
                name,
                from,
                to,
                reason,
                allowed,
            } => {
                if *allowed {
                    format!("replace  VM {vmid} {name} {from} → {to}: {reason}; destroyed on {from} (its disks are lost), created on {to}")
                } else {
                    format!("replace  VM {vmid} {name} {from} → {to}: {reason} — needs --allow-replace {name}, not done")
                }
            }
            PlacementStep::Conflict { node, reason } => format!("CONFLICT node {node}: {reason}"),
        }
    }
}

/// One node's share of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodePlan {
    pub node: String,
    #[serde(skip)]
    pub file_storage: String,
    pub steps: Vec<Step>,
    /// What the host's own setup would change (`changed: …` lines of
    /// `host_setup --check`), none with `--skip-host`: not planned here,
    /// but asked of the host by `cluster_hosts`.
    pub host: Vec<String>,
    /// Its firewall's EMERGENCY lines (kept, or to be closed).
    pub emergency: Vec<String>,
}

/// The whole cluster's plan, in the order it is carried out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ClusterPlan {
    pub sdn: Vec<SdnStep>,
    pub placement: Vec<PlacementStep>,
    pub nodes: Vec<NodePlan>,
}

impl ClusterPlan {
    /// The node plans as `Plan`s.
    fn plans(&self) -> impl Iterator<Item = Plan> + '_ {
        self.nodes.iter().map(|node| Plan {
            steps: node.steps.clone(),
        })
    }

    /// True if applying would change the cluster.
    pub fn changes_anything(&self) -> bool {
        self.sdn
            .iter()
            .any(|step| matches!(step, SdnStep::Create { .. } | SdnStep::Apply))
            || self.placement.iter().any(|step| {
                matches!(
                    step,
                    PlacementStep::Migrate { .. } | PlacementStep::Relocate { allowed: true, .. }
                )
            })
            || self.plans().any(|plan| plan.changes_anything())
            || self.nodes.iter().any(|node| !node.host.is_empty())
    }

    /// How many conflicts stop the deploy before any change.
    pub fn conflicts(&self) -> usize {
        self.sdn
            .iter()
            .filter(|step| matches!(step, SdnStep::Conflict { .. }))
            .count()
            + self
                .placement
                .iter()
                .filter(|step| matches!(step, PlacementStep::Conflict { .. }))
                .count()
            + self
                .plans()
                .map(|plan| plan.conflicts().len())
                .sum::<usize>()
    }

    /// Steps left undone on purpose.
    pub fn held_back(&self) -> usize {
        self.placement
            .iter()
            .filter(|step| matches!(step, PlacementStep::Relocate { allowed: false, .. }))
            .count()
            + self.plans().map(|plan| plan.held_back()).sum::<usize>()
    }

    /// Every node's Talos steps as one plan, in `rollout`'s order, and the
    /// node (index in `nodes`) of each VM they name.
    fn talos_steps(&self, desired: &Desired) -> (Plan, BTreeMap<u32, usize>) {
        let mut at = BTreeMap::new();
        let mut steps = Vec::new();
        for (index, node) in self.nodes.iter().enumerate() {
            for step in node.steps.iter().filter(|step| is_talos(step, desired)) {
                if let Some(vmid) = step.vmid() {
                    at.insert(vmid, index);
                }
                steps.push(step.clone());
            }
        }
        let steps = rollout::order(steps, desired);
        (Plan { steps }, at)
    }

    /// Every node's Talos steps as one plan (what the live cluster is
    /// opened for).
    pub fn talos(&self, desired: &Desired) -> Plan {
        self.talos_steps(desired).0
    }

    /// The plan with every node's Talos steps taken out, `judge`d together
    /// as one plan, and each step put back under its VM's node.
    pub fn judge_talos(mut self, desired: &Desired, judge: impl FnOnce(Plan) -> Plan) -> Self {
        let (together, at) = self.talos_steps(desired);
        for node in &mut self.nodes {
            node.steps.retain(|step| !is_talos(step, desired));
        }
        for step in judge(together).steps {
            self.nodes[node_of(&at, &step)].steps.push(step);
        }
        self
    }

    /// The Talos steps in the order they are carried out, one Talos node
    /// at a time across the cluster: runs of consecutive steps on one
    /// node, each run with that node's plan.
    pub fn talos_runs(&self, desired: &Desired) -> Vec<(&NodePlan, Plan)> {
        let (together, at) = self.talos_steps(desired);
        let mut runs: Vec<(usize, Plan)> = Vec::new();
        for step in together.steps {
            let index = node_of(&at, &step);
            match runs.last_mut() {
                Some((last, run)) if *last == index => run.steps.push(step),
                _ => runs.push((index, Plan { steps: vec![step] })),
            }
        }
        runs.into_iter()
            .map(|(index, run)| (&self.nodes[index], run))
            .collect()
    }

    /// A node's steps other than its Talos steps: carried out node by
    /// node, before any Talos step.
    pub fn local_steps(node: &NodePlan, desired: &Desired) -> Plan {
        Plan {
            steps: node
                .steps
                .iter()
                .filter(|step| !is_talos(step, desired))
                .cloned()
                .collect(),
        }
    }

    /// One line per step, for people: each node's under its name.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.sdn.iter().map(SdnStep::line).collect();
        lines.extend(self.placement.iter().map(PlacementStep::line));
        for node in &self.nodes {
            lines.push(format!("node     {}", node.node));
            lines.extend(
                node.host
                    .iter()
                    .map(|change| format!("  host     {change}")),
            );
            lines.extend(
                Plan {
                    steps: node.steps.clone(),
                }
                .lines()
                .into_iter()
                .map(|line| format!("  {line}")),
            );
        }
        lines
    }
}

/// The steps that take the cluster `observed` to `desired` (the whole
/// blueprint's) and `sdn`, as far as `options` allow.
pub fn plan_cluster(
    model: &Model,
    desired: &Desired,
    sdn: &SdnObjects,
    observed: &ClusterObserved,
    options: &Options<'_>,
) -> ClusterPlan {
    let mut placement = Vec::new();
    let mut nodes = observed.nodes.clone();
    // VMs held on their old node: not created on the new one.
    let mut held: Vec<u32> = Vec::new();
    for host in &model.proxmox.hosts {
        let names: Vec<&str> = desired
            .vms
            .iter()
            .filter(|vm| vm.node == host.node)
            .map(|vm| vm.name.as_str())
            .collect();
        if !names.is_empty() && !observed.nodes.contains_key(&host.node) {
            let state = match observed.members.get(&host.node) {
                Some(_) => "is offline",
                None => "is not a member of the cluster",
            };
            placement.push(PlacementStep::Conflict {
                node: host.node.clone(),
                reason: format!(
                    "{state}, and the blueprint places VM {} on it: nothing is changed anywhere until it is back (or the blueprint places them on another host)",
                    names.join(", ")
                ),
            });
        }
    }
    for vm in &desired.vms {
        let Some(to) = nodes.get(&vm.node) else {
            continue;
        };
        if to.vms.contains_key(&vm.vmid) {
            continue;
        }
        let Some(from) = observed
            .placed
            .get(&vm.vmid)
            .filter(|from| **from != vm.node)
        else {
            continue;
        };
        let Some(found) = nodes
            .get(from)
            .and_then(|node| node.vms.get(&vm.vmid))
            .cloned()
        else {
            placement.push(PlacementStep::Conflict {
                node: from.clone(),
                reason: format!(
                    "VM {} {} is on {from}, which is offline; the blueprint places it on {}: it moves once {from} is back",
                    vm.vmid, vm.name, vm.node
                ),
            });
            held.push(vm.vmid);
            continue;
        };
        if found.name != vm.name {
            placement.push(PlacementStep::Conflict {
                node: from.clone(),
                reason: format!(
                    "VMID {} is taken on {from} by `{}`, not the blueprint's `{}`; remove or renumber it",
                    vm.vmid, found.name, vm.name
                ),
            });
            held.push(vm.vmid);
            continue;
        }
        if let Some(node) = nodes.get_mut(from) {
            node.vms.remove(&vm.vmid);
        }
        let moved = match reseeded_by_the_move(vm, &found, desired) {
            Some(reason) => Err(reason),
            None => migration(model, &found, from, &vm.node, observed),
        };
        match moved {
            Ok(target_storage) => {
                placement.push(PlacementStep::Migrate {
                    vmid: vm.vmid,
                    name: vm.name.clone(),
                    from: from.clone(),
                    to: vm.node.clone(),
                    online: found.running,
                    target_storage,
                });
                if let Some(node) = nodes.get_mut(&vm.node) {
                    node.vms.insert(vm.vmid, found);
                }
            }
            Err(reason)
                if options.allow_replace.contains(&vm.name)
                    && desired.talos.get(&vm.vmid).is_some_and(|t| t.control_plane) =>
            {
                held.push(vm.vmid);
                placement.push(PlacementStep::Conflict {
                    node: from.clone(),
                    reason: format!(
                        "control plane {} cannot migrate to {} ({reason}), and replacing it there is not built: its etcd member would not leave etcd first; give {} what it lacks, or place {} back on {from}, then deploy again",
                        vm.name, vm.node, vm.node, vm.name
                    ),
                });
            }
            Err(reason) => {
                let allowed = options.allow_replace.contains(&vm.name);
                if !allowed {
                    held.push(vm.vmid);
                }
                placement.push(PlacementStep::Relocate {
                    vmid: vm.vmid,
                    name: vm.name.clone(),
                    from: from.clone(),
                    to: vm.node.clone(),
                    reason,
                    allowed,
                });
            }
        }
    }
    let mut uploaded: BTreeSet<(String, String)> = BTreeSet::new();
    let mut node_plans = Vec::new();
    for host in &model.proxmox.hosts {
        let Some(node_observed) = nodes.get(&host.node) else {
            continue;
        };
        let mut share = desired.on_node(&host.node, vec![DesiredBridge::of(&host.bridges.public)]);
        share.vms.retain(|vm| !held.contains(&vm.vmid));
        let mut steps = unpaced(&share, node_observed, options);
        let shared = model.proxmox.is_shared(&host.file_storage);
        steps.retain(|step| match step {
            Step::Upload { file, .. } | Step::Pull { file, .. } if shared => {
                uploaded.insert((host.file_storage.to_string(), file.clone()))
            }
            _ => true,
        });
        node_plans.push(NodePlan {
            node: host.node.clone(),
            file_storage: host.file_storage.to_string(),
            steps,
            host: Vec::new(),
            emergency: Vec::new(),
        });
    }
    ClusterPlan {
        sdn: sdn::steps(sdn, &observed.sdn),
        placement,
        nodes: node_plans,
    }
    .judge_talos(desired, |together| rollout::roll(together.steps, desired))
}

/// The node (index in `nodes`) of a Talos step's VM, from `at`. Every
/// step the judge adds names a VM of a step it was given, so each has one.
fn node_of(at: &BTreeMap<u32, usize>, step: &Step) -> usize {
    step.vmid()
        .and_then(|vmid| at.get(&vmid))
        .copied()
        .unwrap_or_default()
}

/// Whether `step` is one of a Talos node's that the cluster rolls as one
/// plan: an in-place step, an etcd step, an allowed replace or restart.
fn is_talos(step: &Step, desired: &Desired) -> bool {
    match step {
        Step::ApplyConfig { .. }
        | Step::KubernetesControlPlane { .. }
        | Step::Upgrade { .. }
        | Step::EtcdLeave { .. }
        | Step::EtcdRejoin { .. } => true,
        _ => rollout::goes_alone(step, desired).is_some(),
    }
}

/// Why a Debian VM is recreated rather than migrated: its seed changes
/// with its host (the default route is its host's own address on the
/// VNet) and cloud-init applies a VM's network only when it is created.
/// Migrated, it would keep routing through its old host, which has no
/// state for the new host's forwards: its replies would be lost. A Talos
/// node's new configuration is applied in place after its migration.
fn reseeded_by_the_move(vm: &VmConfig, found: &HostVm, desired: &Desired) -> Option<String> {
    if desired.talos.contains_key(&vm.vmid) {
        return None;
    }
    let (_, seed) = files_of(vm);
    let (_, found_seed) = found
        .config
        .get("description")
        .and_then(|d| described_files(d))?;
    (found_seed != seed).then(|| {
        format!(
            "its seed changes with the move ({found_seed} → {seed}: its gateway is its host's address on the VNet), and cloud-init sets a VM's network only when it is created, so it is created anew on {}",
            vm.node
        )
    })
}

/// Whether `vm` may migrate from `from` to `to`: `Ok` with the target
/// storage for its disks when they are on a node's own storage, or why
/// not.
fn migration(
    model: &Model,
    vm: &HostVm,
    from: &str,
    to: &str,
    observed: &ClusterObserved,
) -> Result<Option<String>, String> {
    let Some(target) = model.proxmox.host(to) else {
        return Err(format!("{to} is not a host of the blueprint"));
    };
    let has = observed.disk_storages.get(to).cloned().unwrap_or_default();
    let storages = disk_storages(vm);
    let mut local = false;
    for storage in &storages {
        let shared = model
            .proxmox
            .shared_storages
            .iter()
            .any(|s| **s == *storage);
        if shared {
            if !has.contains(storage) {
                return Err(format!(
                    "{to} does not have the shared storage {storage} its disks are on"
                ));
            }
        } else {
            local = true;
        }
    }
    if !local {
        return Ok(None);
    }
    let wanted = target.disk_storage.to_string();
    if has.contains(&wanted) {
        Ok(Some(wanted))
    } else {
        Err(format!(
            "its disks are on {from}'s own storage and {to} has no storage {wanted} for VM disks to copy them to"
        ))
    }
}

/// The storages a VM's disks are on (`scsi0: local-zfs:vm-100-disk-0,…`),
/// CD-ROMs and empty drives left out.
fn disk_storages(vm: &HostVm) -> BTreeSet<String> {
    const DRIVES: &[&str] = &[
        "scsi", "virtio", "sata", "ide", "efidisk", "tpmstate", "unused",
    ];
    vm.config
        .iter()
        .filter(|(key, _)| {
            DRIVES.iter().any(|prefix| {
                key.strip_prefix(prefix)
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .filter(|(_, value)| !value.contains("media=cdrom"))
        .filter_map(|(_, value)| {
            let volume = value.split(',').next()?;
            let (storage, _) = volume.split_once(':')?;
            Some(storage.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::deploy::desired::TalosTarget;
    use crate::deploy::etcd::{gate, Decision};
    use crate::deploy::observed::Observed;
    use crate::deploy::plan;
    use crate::plan::vm::VmConfig;

    /// The cluster example's model: edge on pve1, the Talos nodes spread.
    fn model() -> Model {
        crate::test_support::cluster(str::to_string)
    }

    fn sdn() -> SdnObjects {
        serde_json::from_value(serde_json::json!({
            "zone": {"zone": "trio", "type": "vxlan"}, "vnets": [], "subnets": []
        }))
        .unwrap()
    }

    /// The edge, wanted on `node`.
    fn edge_on(node: &str) -> Desired {
        Desired {
            bridges: Vec::new(),
            uploads: Vec::new(),
            vms: vec![VmConfig {
                vmid: 3000,
                name: "edge".into(),
                params: vec![("name".into(), "edge".into())],
                disk: "6G".into(),
                node: node.into(),
                image_volume: "local:import/debian-edge.qcow2".into(),
                seed_volume: "local:import/edge-seed-0123456789ab.raw".into(),
                debian: true,
                agent: true,
            }],
            talos: BTreeMap::new(),
        }
    }

    /// Three online nodes with `local-zfs` on `with_disks`, the edge
    /// running on pve1 with its disks there.
    fn cluster(with_disks: &[&str]) -> ClusterObserved {
        let mut observed = ClusterObserved::default();
        for node in ["pve1", "pve2", "pve3"] {
            observed.members.insert(node.into(), true);
            observed.nodes.insert(node.into(), Observed::default());
            let storages = if with_disks.contains(&node) {
                vec!["local".to_string(), "local-zfs".to_string()]
            } else {
                vec!["local".to_string()]
            };
            observed.disk_storages.insert(node.into(), storages);
        }
        let edge = HostVm {
            vmid: 3000,
            name: "edge".into(),
            running: true,
            config: [
                ("scsi0", "local-zfs:vm-3000-disk-0,size=6G"),
                ("name", "edge"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            pending: BTreeMap::new(),
        };
        observed
            .nodes
            .get_mut("pve1")
            .unwrap()
            .vms
            .insert(3000, edge);
        observed.placed.insert(3000, "pve1".into());
        // The SDN is as wanted.
        observed.sdn.zones = vec![sdn().zone];
        observed
    }

    /// As a cluster deploy runs: `--skip-host`, the uplinks unseen here.
    fn skip_host<'a>() -> Options<'a> {
        Options {
            skip_host: true,
            ..Options::default()
        }
    }

    fn steps_on<'a>(plan: &'a ClusterPlan, node: &str) -> &'a [Step] {
        &plan.nodes.iter().find(|n| n.node == node).unwrap().steps
    }

    fn names_vm(step: &Step, id: u32) -> bool {
        serde_json::to_value(step).unwrap()["vmid"] == id
    }

    #[test]
    fn a_vm_wanted_on_another_node_migrates_with_its_local_disks_and_continues_there() {
        let plan = plan_cluster(
            &model(),
            &edge_on("pve2"),
            &sdn(),
            &cluster(&["pve1", "pve2", "pve3"]),
            &skip_host(),
        );
        assert_eq!(
            plan.placement,
            [PlacementStep::Migrate {
                vmid: 3000,
                name: "edge".into(),
                from: "pve1".into(),
                to: "pve2".into(),
                online: true,
                target_storage: Some("local-zfs".into()),
            }]
        );
        assert!(!steps_on(&plan, "pve1").iter().any(|s| names_vm(s, 3000)));
        let on_pve2: Vec<&Step> = steps_on(&plan, "pve2")
            .iter()
            .filter(|s| names_vm(s, 3000))
            .collect();
        assert!(!on_pve2.is_empty(), "{plan:#?}");
        assert!(
            !on_pve2.iter().any(|s| matches!(s, Step::Create { .. })),
            "{on_pve2:?}"
        );
    }

    #[test]
    fn a_vm_that_cannot_migrate_is_replaced_only_when_allowed() {
        let observed = cluster(&["pve1", "pve3"]);
        let held = plan_cluster(&model(), &edge_on("pve2"), &sdn(), &observed, &skip_host());
        let PlacementStep::Relocate {
            allowed, reason, ..
        } = &held.placement[0]
        else {
            panic!("{:?}", held.placement)
        };
        assert!(!allowed);
        assert!(reason.contains("pve2 has no storage local-zfs"), "{reason}");
        assert_eq!(held.held_back(), 1);
        assert!(!held.changes_anything());
        for node in ["pve1", "pve2"] {
            assert!(
                !steps_on(&held, node).iter().any(|s| names_vm(s, 3000)),
                "{node}"
            );
        }
        let names = ["edge".to_string()];
        let options = Options {
            allow_replace: &names,
            ..skip_host()
        };
        let replaced = plan_cluster(&model(), &edge_on("pve2"), &sdn(), &observed, &options);
        assert!(matches!(
            replaced.placement[0],
            PlacementStep::Relocate { allowed: true, .. }
        ));
        assert!(steps_on(&replaced, "pve2")
            .iter()
            .any(|s| matches!(s, Step::Create { vmid: 3000, .. })));
    }

    /// A Debian VM whose seed changes with its host is not migrated (it
    /// would keep its old host as gateway): it is created anew on its new
    /// node with `--allow-replace`, and left where it is without.
    #[test]
    fn a_debian_vm_whose_seed_changes_with_the_move_is_recreated_not_migrated() {
        let mut observed = cluster(&["pve1", "pve2", "pve3"]);
        let described = |seed: &str| {
            format!(
                "{}image=debian-edge.qcow2 seed={seed}",
                crate::plan::vm::DESCRIPTION_PREFIX
            )
        };
        let edge = observed
            .nodes
            .get_mut("pve1")
            .unwrap()
            .vms
            .get_mut(&3000)
            .unwrap();
        edge.config.insert(
            "description".into(),
            described("edge-seed-ffffffffffff.raw"),
        );
        let held = plan_cluster(&model(), &edge_on("pve2"), &sdn(), &observed, &skip_host());
        let PlacementStep::Relocate {
            allowed, reason, ..
        } = &held.placement[0]
        else {
            panic!("{:?}", held.placement)
        };
        assert!(!allowed);
        assert!(
            reason.contains("its gateway is its host's address"),
            "{reason}"
        );
        assert!(!held.changes_anything());
        let names = ["edge".to_string()];
        let options = Options {
            allow_replace: &names,
            ..skip_host()
        };
        let replaced = plan_cluster(&model(), &edge_on("pve2"), &sdn(), &observed, &options);
        assert!(steps_on(&replaced, "pve2")
            .iter()
            .any(|s| matches!(s, Step::Create { vmid: 3000, .. })));

        // The same seed on both hosts: migrated.
        let edge = observed
            .nodes
            .get_mut("pve1")
            .unwrap()
            .vms
            .get_mut(&3000)
            .unwrap();
        edge.config.insert(
            "description".into(),
            described("edge-seed-0123456789ab.raw"),
        );
        let migrated = plan_cluster(&model(), &edge_on("pve2"), &sdn(), &observed, &skip_host());
        assert!(
            matches!(migrated.placement[0], PlacementStep::Migrate { .. }),
            "{:?}",
            migrated.placement
        );
    }

    #[test]
    fn an_offline_node_with_blueprint_vms_is_a_conflict_and_gets_no_plan() {
        let mut observed = cluster(&["pve1", "pve2", "pve3"]);
        observed.members.insert("pve1".into(), false);
        observed.nodes.remove("pve1");
        let plan = plan_cluster(&model(), &edge_on("pve1"), &sdn(), &observed, &skip_host());
        assert_eq!(plan.conflicts(), 1);
        assert_eq!(
            plan.placement[0].line(),
            "CONFLICT node pve1: is offline, and the blueprint places VM edge on it: nothing is changed anywhere until it is back (or the blueprint places them on another host)"
        );
        assert!(plan.nodes.iter().all(|n| n.node != "pve1"));
    }

    /// The example's Talos nodes, each on its host as the blueprint
    /// spreads them, deployed running Talos v1.12.0 (`talos-v1.12.0.qcow2`)
    /// with `NAME-seed-old.raw`: `(vmid, name, node, rollout position)`,
    /// control planes first.
    const TALOS: [(u32, &str, &str, usize); 5] = [
        (3100, "cp-1", "pve1", 0),
        (3101, "cp-2", "pve2", 1),
        (3102, "cp-3", "pve3", 2),
        (3110, "worker-1", "pve1", 3),
        (3111, "worker-2", "pve2", 4),
    ];

    /// The blueprint wanting each Talos node on `image` with seed
    /// `NAME-SEED.raw`, and the cluster as deployed.
    fn talos(image: &str, seed: &str) -> (Desired, ClusterObserved) {
        let mut desired = edge_on("pve1");
        desired.vms.clear();
        let mut observed = cluster(&["pve1", "pve2", "pve3"]);
        for (vmid, name, node, rollout) in TALOS {
            desired.vms.push(VmConfig {
                vmid,
                name: name.into(),
                params: vec![("name".into(), name.into())],
                disk: "10G".into(),
                node: node.into(),
                image_volume: format!("local:import/{image}"),
                seed_volume: format!("local:import/{name}-{seed}.raw"),
                debian: false,
                agent: true,
            });
            desired.talos.insert(
                vmid,
                TalosTarget {
                    version: "v1.12.2".into(),
                    schematic: "abc".into(),
                    kubernetes: "1.35.1".into(),
                    config: b"version: v1alpha1".to_vec(),
                    control_plane: rollout < 3,
                    rollout,
                },
            );
            let found = HostVm {
                vmid,
                name: name.into(),
                running: true,
                config: [
                    ("name", name.to_string()),
                    ("scsi0", format!("local-zfs:vm-{vmid}-disk-0,size=10G")),
                    (
                        "description",
                        format!("Managed by waddlec. image=talos-v1.12.0.qcow2 seed={name}-seed-old.raw kubernetes=1.35.1"),
                    ),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
                pending: BTreeMap::new(),
            };
            let on = observed.nodes.get_mut(node).unwrap();
            on.vms.insert(vmid, found);
            observed.placed.insert(vmid, node.into());
        }
        (desired, observed)
    }

    /// The same VMs and host state on one lone host.
    fn one_host(observed: &ClusterObserved) -> Observed {
        let mut host = Observed::default();
        for node in observed.nodes.values() {
            host.vms.extend(node.vms.clone());
        }
        host
    }

    /// `NODE ACTION NAME` of each step of `steps` that changes a Talos
    /// node.
    fn talos_order<'a>(steps: impl Iterator<Item = (&'a str, &'a Step)>) -> Vec<String> {
        steps
            .filter_map(|(node, step)| {
                let value = serde_json::to_value(step).unwrap();
                let name = value["name"].as_str()?;
                let action = value["action"].as_str().unwrap();
                let talos = TALOS.iter().any(|(_, n, _, _)| *n == name);
                (talos && action != "keep").then(|| format!("{node} {action} {name}"))
            })
            .collect()
    }

    #[test]
    fn an_in_place_talos_config_change_in_a_cluster_plans_an_apply_config() {
        let (desired, observed) = talos("talos-v1.12.0.qcow2", "seed-new");
        let plan = plan_cluster(&model(), &desired, &sdn(), &observed, &skip_host());
        assert_eq!(plan.conflicts(), 0, "{:#?}", plan.lines());
        for (vmid, name, node, _) in TALOS {
            let applies: Vec<&Step> = steps_on(&plan, node)
                .iter()
                .filter(|step| {
                    matches!(step, Step::ApplyConfig { vmid: v, now: true, preview: None, .. } if *v == vmid)
                })
                .collect();
            assert_eq!(applies.len(), 1, "{name} on {node}: {:#?}", plan.lines());
        }
        assert!(plan.changes_anything());
        // What the live cluster is opened for: every node's config.
        assert_eq!(plan.talos(&desired).steps.len(), TALOS.len());
    }

    #[test]
    fn the_talos_rollout_goes_one_node_at_a_time_across_the_hosts_as_on_one_host() {
        let (desired, observed) = talos("talos-v1.12.2.qcow2", "seed-new");
        let plan = plan_cluster(&model(), &desired, &sdn(), &observed, &skip_host());
        assert_eq!(plan.conflicts(), 0, "{:#?}", plan.lines());
        let runs = plan.talos_runs(&desired);
        let across: Vec<String> = talos_order(
            runs.iter()
                .flat_map(|(node, run)| run.steps.iter().map(|step| (node.node.as_str(), step))),
        );
        // Every upgrade before any config, control planes first, each
        // step on its VM's own host.
        assert_eq!(
            across,
            [
                "pve1 upgrade cp-1",
                "pve2 upgrade cp-2",
                "pve3 upgrade cp-3",
                "pve1 upgrade worker-1",
                "pve2 upgrade worker-2",
                "pve1 apply-config cp-1",
                "pve2 apply-config cp-2",
                "pve3 apply-config cp-3",
                "pve1 apply-config worker-1",
                "pve2 apply-config worker-2",
            ]
        );
        // Consecutive steps on one host are one run: the next run is
        // another host's.
        assert!(runs.windows(2).all(|w| w[0].0.node != w[1].0.node));
        // The very order a lone host with these VMs would go in.
        let alone = plan::plan(&desired, &one_host(&observed), &skip_host());
        let strip = |line: &String| line.split_once(' ').unwrap().1.to_string();
        assert_eq!(
            across.iter().map(strip).collect::<Vec<_>>(),
            talos_order(alone.steps.iter().map(|step| ("-", step)))
                .iter()
                .map(strip)
                .collect::<Vec<_>>()
        );
        // A node's own steps (the edge, unknown here, on pve1) are not
        // the Talos ones.
        for node in &plan.nodes {
            let local = ClusterPlan::local_steps(node, &desired);
            let steps = local.steps.iter().map(|step| (node.node.as_str(), step));
            assert_eq!(talos_order(steps), Vec::<String>::new());
        }
    }

    #[test]
    fn two_control_planes_replaced_on_two_hosts_are_refused_as_two_on_one_host() {
        let (desired, observed) = talos("talos-v1.12.0.qcow2", "seed-new");
        let names = ["cp-1".to_string(), "cp-2".to_string()];
        let options = Options {
            allow_replace: &names,
            ..skip_host()
        };
        let plan = plan_cluster(&model(), &desired, &sdn(), &observed, &options);
        let alone = plan::plan(&desired, &one_host(&observed), &options);
        let conflicts: Vec<&Step> = plan
            .nodes
            .iter()
            .flat_map(|node| node.steps.iter())
            .filter(|step| matches!(step, Step::Conflict { .. }))
            .collect();
        assert_eq!(conflicts, alone.conflicts(), "{:#?}", plan.lines());
        let [Step::Conflict { vmid, reason }] = conflicts[..] else {
            panic!("{conflicts:?}")
        };
        assert!(reason.contains("more than one node away"), "{reason}");
        // Under the second replaced node's own host.
        assert!(steps_on(&plan, "pve2").contains(conflicts[0]));
        assert_eq!(*vmid, 3101);

        // The etcd gate on top, as the workflow judges with the live
        // cluster: each replace gets its node's exit and rejoin, on its own
        // host, and the refusal stays.
        let expected: Vec<String> = ["cp-1", "cp-2", "cp-3"].map(String::from).to_vec();
        let decisions: BTreeMap<u32, Decision> = [(3100, 0x100), (3101, 0x101)]
            .into_iter()
            .map(|(vmid, member)| (vmid, Decision::Leave { member }))
            .collect();
        let gated = plan.judge_talos(&desired, |together| gate(together, &decisions, &expected));
        assert_eq!(gated.conflicts(), 1, "{:#?}", gated.lines());
        for (node, vmid) in [("pve1", 3100), ("pve2", 3101)] {
            let actions: Vec<String> = steps_on(&gated, node)
                .iter()
                .filter(|step| names_vm(step, vmid) && !matches!(step, Step::Conflict { .. }))
                .map(|step| serde_json::to_value(step).unwrap()["action"].to_string())
                .collect();
            assert_eq!(
                actions,
                ["\"etcd-leave\"", "\"replace\"", "\"etcd-rejoin\""],
                "{node}: {actions:?}"
            );
        }
    }

    #[test]
    fn a_control_plane_that_cannot_migrate_is_not_replaced_on_its_new_host() {
        let (mut desired, observed) = talos("talos-v1.12.0.qcow2", "seed-old");
        // The blueprint moves cp-1 to pve2, which has no local-zfs here.
        let mut observed = observed;
        observed
            .disk_storages
            .insert("pve2".into(), vec!["local".into()]);
        desired.vms[0].node = "pve2".into();
        let cp1 = observed.nodes["pve1"].vms[&3100].clone();
        let mut with_disk = cp1.clone();
        with_disk
            .config
            .insert("scsi0".into(), "local-zfs:vm-3100-disk-0,size=10G".into());
        observed
            .nodes
            .get_mut("pve1")
            .unwrap()
            .vms
            .insert(3100, with_disk);
        let names = ["cp-1".to_string()];
        let options = Options {
            allow_replace: &names,
            ..skip_host()
        };
        let plan = plan_cluster(&model(), &desired, &sdn(), &observed, &options);
        let [PlacementStep::Conflict { node, reason }] = &plan.placement[..] else {
            panic!("{:?}", plan.placement)
        };
        assert_eq!(node, "pve1");
        assert!(
            reason.contains("control plane cp-1 cannot migrate to pve2")
                && reason.contains("would not leave etcd first"),
            "{reason}"
        );
        assert!(!plan
            .nodes
            .iter()
            .any(|n| n.steps.iter().any(|s| matches!(s, Step::Create { .. }))));
    }

    #[test]
    fn a_vms_disk_storages_leave_out_cdroms_and_other_keys() {
        let found = disk_storages(&HostVm {
            config: [
                ("scsi0", "local-zfs:vm-100-disk-0,discard=on,size=6G"),
                ("scsi1", "local-zfs:vm-100-disk-1,size=1M"),
                ("efidisk0", "nas:vm-100-disk-2,efitype=4m"),
                ("ide2", "local:iso/x.iso,media=cdrom"),
                ("net0", "virtio=BC:24:11:00:00:01,bridge=vnet1"),
                ("scsihw", "virtio-scsi-single"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ..HostVm::default()
        });
        assert_eq!(
            found.into_iter().collect::<Vec<_>>(),
            ["local-zfs".to_string(), "nas".to_string()]
        );
    }
}
