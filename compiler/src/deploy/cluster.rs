//! `waddlec deploy` of a `[cluster]`: the same tree checks, question and
//! lock as for one host, around the cluster's plan (`cluster_plan`): the
//! cluster read (`cluster_observed`), the plan shown, confirmed, read and
//! planned again under the deploy lock (a resource pool, cluster-wide), and
//! applied in its order — SDN objects created and applied, VMs migrated
//! (or, allowed, replaced on their new node), then each node's plan by
//! `apply`, as for a lone host, against that node.
//!
//! Not yet for a cluster, and refused rather than half done: each host's
//! own setup over SSH (`--skip-host` is required), and any step that needs
//! the live Talos cluster (a conflict in the plan).

use std::time::Duration;

use super::apply::{self, apply, ApplyError, Host, Timeouts};
use super::cluster_observed::{observe_cluster, ClusterObserved};
use super::cluster_plan::{plan_cluster, ClusterPlan, PlacementStep};
use super::desired::desired;
use super::lock::HostLock;
use super::plan::Options;
use super::sdn::{self, SdnObjects};
use super::workflow::{check_names, connect, open_store, DeployError, Outcome, Request, Ui};
use crate::net::pve::{segment, Pve, PveError};

/// Deploys `request.compiled`, a `[cluster]`: see the module doc.
pub fn run(request: &Request<'_>, ui: &dyn Ui) -> Result<Outcome, DeployError> {
    if !request.skip_host {
        return Err(DeployError::ClusterHostSetup);
    }
    let compiled = request.compiled;
    let model = &compiled.model;
    let mut desired = desired(compiled, request.tree)?;
    let store = open_store(compiled, request.blueprint_dir, &mut desired)?;
    check_names(request)?;
    let sdn_objects = SdnObjects::read(request.tree)?;
    let options = Options {
        allow_replace: request.allow_replace,
        allow_restart: request.allow_restart,
        skip_host: request.skip_host,
    };
    let pve = connect(request)?;
    let read_plan = || -> Result<ClusterPlan, PveError> {
        let observed: ClusterObserved = observe_cluster(&pve, model, &sdn_objects)?;
        Ok(plan_cluster(
            model,
            &desired,
            &sdn_objects,
            &observed,
            &options,
        ))
    };
    let shown = read_plan()?;
    ui.show_cluster(&shown);
    if shown.conflicts() > 0 {
        return Err(DeployError::Conflicts);
    }
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
        if read_plan()? != shown {
            return Err(DeployError::Changed);
        }
        let timeouts = Timeouts {
            agent: request.agent_timeout,
            talos: request.talos_wait,
            ..Timeouts::default()
        };
        let result = apply_cluster(&pve, &shown, &desired, store.as_ref(), timeouts, ui);
        ui.uploads_done();
        Ok(result?)
    })();
    if let Err(err) = lock.release() {
        ui.warn(&format!(
            "could not release the cluster's deploy lock: {err}"
        ));
    }
    applied.map(|()| Outcome::Applied { held_back })
}

/// Carries out `plan` in its order.
fn apply_cluster(
    pve: &Pve,
    plan: &ClusterPlan,
    desired: &super::desired::Desired,
    store: Option<&crate::store::ArtifactStore>,
    timeouts: Timeouts,
    ui: &dyn Ui,
) -> Result<(), ApplyError> {
    for step in &plan.sdn {
        let line = step.line();
        if matches!(step, sdn::SdnStep::Keep { .. }) {
            continue;
        }
        ui.step(&line);
        sdn::apply(pve, step, timeouts.task)
            .map_err(|source| ApplyError::Step { step: line, source })?;
    }
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
    for node in &plan.nodes {
        let target = Host {
            pve,
            node: &node.node,
            file_storage: &node.file_storage,
            etcd: None,
            members: &[],
            store,
        };
        let steps = super::plan::Plan {
            steps: node.steps.clone(),
        };
        let on_node = |line: &str| ui.step(&format!("{} {line}", node.node));
        apply(
            &target,
            desired,
            &steps,
            timeouts,
            &on_node,
            &|file: &str| ui.upload(file),
        )?;
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
