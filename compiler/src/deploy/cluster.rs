//! `waddlec deploy` of a `[cluster]`: the same tree checks, question and
//! lock as for one host, around the cluster's plan (`cluster_plan`): the
//! cluster read (`cluster_observed`), each host's own setup asked what it
//! would change (`cluster_hosts`, unless `--skip-host`), the plan shown with
//! those changes under their nodes, the lock-out guard asked for each host
//! whose firewall changes, confirmed, read, planned and asked again under
//! the deploy lock (a resource pool, cluster-wide), and applied in its
//! order — SDN objects created and applied, each host set up, VMs migrated
//! (or, allowed, replaced on their new node), then each node's plan by
//! `apply`, as for a lone host, against that node.
//!
//! A plan that changes a Talos node in place, upgrades it, or replaces
//! or restarts one (`--allow-replace`, `--allow-restart`) reads the live
//! Talos cluster as a lone host's deploy does (`workflow::TalosGate`):
//! through ONE tunnel via the first host's SSH (`request.ssh`, pinned to
//! its record's key) — every host has its own address on the internal
//! network, a VNet spanning them all, so any host reaches every Talos node.
//! Every node's Talos steps are judged together (`cluster_plan`): etcd's
//! quorum sees every control-plane step of the whole cluster, and they are
//! carried out after every node's other steps, one Talos node at a time
//! across the hosts, with a lone host's checks before and waits after.
//!
//! A host reached through Teleport is set up through it, and logged in to
//! through it before the lock-out guard holds for it (`cluster_hosts`).
//!
//! Not yet for a cluster, and refused rather than half done: a control
//! plane moved to another host by replacing it (`cluster_plan`).

use std::time::Duration;

use super::apply::{self, apply, ApplyError, Host, Timeouts};
use super::cluster_hosts::{self, ClusterHost};
use super::cluster_observed::{observe_cluster, ClusterObserved};
use super::cluster_plan::{plan_cluster, ClusterPlan, PlacementStep};
use super::desired::desired;
use super::guard::Proof;
use super::host_setup::Report;
use super::lock::HostLock;
use super::plan::Options;
use super::sdn::{self, SdnObjects};
use super::workflow::{
    check_names, connect, open_store, DeployError, Outcome, Request, TalosGate, Ui,
};
use crate::model::Model;
use crate::net::pve::{segment, Pve, PveError};

/// Deploys `request.compiled`, a `[cluster]`: see the module doc.
pub fn run(request: &Request<'_>, ui: &dyn Ui) -> Result<Outcome, DeployError> {
    let compiled = request.compiled;
    let model = &compiled.model;
    let mut desired = desired(compiled, request.tree)?;
    let store = open_store(compiled, request.blueprint_dir, &mut desired)?;
    check_names(request)?;
    let sdn_objects = SdnObjects::read(request.tree)?;
    let hosts = if request.skip_host {
        Vec::new()
    } else {
        cluster_hosts::hosts(model, request.tree, &request.ssh)?
    };
    let options = Options {
        allow_replace: request.allow_replace,
        allow_restart: request.allow_restart,
        skip_host: request.skip_host,
    };
    let pve = connect(request)?;
    // The plan, each host's setup report under its node, and whether the
    // Teleport VM runs (the guard's way to the API through Teleport).
    let read_plan = || -> Result<(ClusterPlan, Vec<Report>, bool), DeployError> {
        let observed: ClusterObserved = observe_cluster(&pve, model, &sdn_objects)?;
        let mut plan = plan_cluster(model, &desired, &sdn_objects, &observed, &options);
        let reports = cluster_hosts::check(&hosts, request.close_emergency)?;
        cluster_hosts::attach(&mut plan, &hosts, &reports);
        Ok((plan, reports, teleport_up(model, &observed)))
    };
    let (ungated, reports, teleport_up) = read_plan()?;
    let talos = TalosGate::open(request, &ungated.talos(&desired), &desired)?;
    let judged = |plan: ClusterPlan| plan.judge_talos(&desired, |p| talos.judge(p, &desired));
    let shown = judged(ungated);
    ui.show_cluster(&shown);
    if shown.conflicts() > 0 {
        return Err(DeployError::Conflicts);
    }
    // Each host through Teleport is logged in to by the guard itself, its
    // login the proof for that host only.
    let proof = Proof {
        teleport_up,
        logged_in_through_teleport: false,
    };
    cluster_hosts::guard(model, &hosts, &reports, proof)?;
    let held_back = shown.held_back();
    if !shown.changes_anything() {
        return Ok(Outcome::NothingToDo { held_back });
    }
    if request.dry_run {
        return Ok(Outcome::DryRun { held_back });
    }
    if !ui.confirm() {
        return Ok(Outcome::Declined);
    }
    let lock = HostLock::acquire(&pve, request.holder, request.break_lock)?;
    let applied = (|| -> Result<(), DeployError> {
        if judged(read_plan()?.0) != shown {
            return Err(DeployError::Changed);
        }
        let timeouts = Timeouts {
            agent: request.agent_timeout,
            talos: request.talos_wait,
            ..Timeouts::default()
        };
        let setup = Setup {
            hosts: &hosts,
            shown: &reports,
            close_emergency: request.close_emergency,
        };
        let target = Target {
            pve: &pve,
            store: store.as_ref(),
            talos: &talos,
        };
        let result = apply_cluster(&target, &shown, &desired, timeouts, &setup, ui);
        ui.uploads_done();
        result
    })();
    if let Err(err) = lock.release() {
        ui.warn(&format!(
            "could not release the cluster's deploy lock: {err}"
        ));
    }
    applied.map(|()| Outcome::Applied { held_back })
}

/// Whether the blueprint's Teleport VM runs, on whichever node.
fn teleport_up(model: &Model, observed: &ClusterObserved) -> bool {
    model.teleport.as_ref().is_some_and(|teleport| {
        model.vm(&teleport.vm).is_some_and(|vm| {
            observed
                .nodes
                .values()
                .any(|node| node.vms.get(&vm.id).is_some_and(|found| found.running))
        })
    })
}

/// The hosts' setup as shown in the plan (none with `--skip-host`).
struct Setup<'a> {
    hosts: &'a [ClusterHost],
    shown: &'a [Report],
    close_emergency: bool,
}

/// Where the plan is carried out: the cluster's API, the artifact store,
/// the live Talos cluster (when the plan needs it).
struct Target<'a> {
    pve: &'a Pve,
    store: Option<&'a crate::store::ArtifactStore>,
    talos: &'a TalosGate,
}

/// Carries out `plan` in its order, the hosts set up once the SDN is
/// applied (their VNets exist) and before any VM is moved or made (a
/// host's setup gives its storages the content types the images need);
/// every node's own steps, then the Talos steps one node at a time across
/// the cluster.
fn apply_cluster(
    target: &Target<'_>,
    plan: &ClusterPlan,
    desired: &super::desired::Desired,
    timeouts: Timeouts,
    setup: &Setup<'_>,
    ui: &dyn Ui,
) -> Result<(), DeployError> {
    let (pve, store) = (target.pve, target.store);
    for step in &plan.sdn {
        let line = step.line();
        if matches!(step, sdn::SdnStep::Keep { .. }) {
            continue;
        }
        ui.step(&line);
        sdn::apply(pve, step, timeouts.task)
            .map_err(|source| ApplyError::Step { step: line, source })?;
    }
    cluster_hosts::apply(setup.hosts, setup.shown, setup.close_emergency, ui)?;
    for step in &plan.placement {
        let line = step.line();
        let fail = |source| ApplyError::Step {
            step: line.clone(),
            source,
        };
        match step {
            PlacementStep::Migrate {
                vmid,
                from,
                to,
                online,
                target_storage,
                ..
            } => {
                ui.step(&line);
                migrate(
                    pve,
                    *vmid,
                    from,
                    to,
                    *online,
                    target_storage.as_deref(),
                    timeouts,
                )
                .map_err(fail)?;
            }
            PlacementStep::Relocate {
                vmid,
                from,
                allowed: true,
                ..
            } => {
                ui.step(&line);
                let source = Host {
                    pve,
                    node: from,
                    file_storage: "",
                    etcd: None,
                    members: &[],
                    store,
                };
                apply::destroy(&source, *vmid, timeouts).map_err(fail)?;
            }
            PlacementStep::Relocate { .. } | PlacementStep::Conflict { .. } => {}
        }
    }
    let runs = plan
        .nodes
        .iter()
        .map(|node| (node, ClusterPlan::local_steps(node, desired)))
        .chain(plan.talos_runs(desired));
    for (node, steps) in runs {
        let host = Host {
            pve,
            node: &node.node,
            file_storage: &node.file_storage,
            etcd: target.talos.live(),
            members: target.talos.members(),
            store,
        };
        let on_node = |line: &str| ui.step(&format!("{} {line}", node.node));
        apply(&host, desired, &steps, timeouts, &on_node, &|file: &str| {
            ui.upload(file)
        })?;
    }
    Ok(())
}

/// `POST /nodes/{from}/qemu/{vmid}/migrate` and its task, on `from`.
fn migrate(
    pve: &Pve,
    vmid: u32,
    from: &str,
    to: &str,
    online: bool,
    target_storage: Option<&str>,
    timeouts: Timeouts,
) -> Result<(), PveError> {
    let mut form = vec![("target".to_string(), to.to_string())];
    if online {
        form.push(("online".into(), "1".into()));
    }
    if let Some(storage) = target_storage {
        form.push(("with-local-disks".into(), "1".into()));
        form.push(("targetstorage".into(), storage.to_string()));
    }
    let answer = pve.post(
        &format!("/nodes/{}/qemu/{vmid}/migrate", segment(from)),
        &form,
    )?;
    match answer.as_str() {
        // Copying disks takes as long as an upload may.
        Some(upid) => pve.wait_task(from, upid, timeouts.upload.max(Duration::from_secs(60))),
        None => Ok(()),
    }
}
