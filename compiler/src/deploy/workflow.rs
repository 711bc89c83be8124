//! The deploy workflow, as a library function: the deployable tree checked
//! against the blueprint, the host read, the plan shown, confirmed, and
//! applied under the host's deploy lock after reading the host once more,
//! so what is applied is what was shown. The CLI parses arguments and
//! implements [`Ui`]; every way this can fail is a [`DeployError`] with its
//! exit code.
//!
//! A plan that replaces a Talos control plane also reads the live cluster
//! (`talos`, through a tunnel via the host) and carries `etcd`'s decision:
//! the node's way out of etcd before the replace and the wait for its
//! return after, or a conflict (an unhealthy or unknown member, quorum at
//! risk) that stops the deploy before any change. The same judgement
//! (`TalosGate`) serves a `[cluster]`'s deploy, over every node's Talos
//! steps at once.
//!
//! With an artifact store (`[artifacts]`), the images it holds are pulled
//! by the host itself (`download-url`) instead of uploaded from here.
//!
//! With `host.ssh` through Teleport, the first thing done over SSH is a
//! login through it on a fresh connection: its success is what lets the
//! guard accept a firewall without a direct SSH rule, and its failure stops
//! the deploy before anything changes (`guard::unproven`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use waddlec_core::Compiled;

use super::apply::{apply, ApplyError, Host, Timeouts};
use super::desired::Desired;
use super::desired::{desired, DesiredError};
use super::etcd::{decide, gate, LiveTalos};
use super::guard::{self, LockOut};
use super::host_setup::{self, HostSetupError, Ssh};
use super::lock::{HostLock, LockError};
use super::observed::{observe, Observed};
use super::plan::{plan, step_upgrades, ConfigPreview, Options, Plan, Step};
use super::rollout;
use super::talos::{control_planes, LiveCluster, TalosReachError};
use crate::net::factory::FactoryVersions;
use crate::net::pve::{Progress, Pve, PveError};
use crate::secrets::{self, SecretError};
use crate::store::{ArtifactStore, StoreError};

/// What to deploy, and how.
pub struct Request<'a> {
    /// The blueprint built with its secrets and upstream manifests.
    pub compiled: &'a Compiled,
    /// The blueprint's directory: `file:` references are relative to it.
    pub blueprint_dir: &'a Path,
    /// The deployable tree `build --with-secrets` wrote.
    pub tree: &'a Path,
    pub allow_replace: &'a [String],
    /// VMs that may be shut down and started to apply pending settings.
    pub allow_restart: &'a [String],
    pub break_lock: bool,
    /// The API's URL instead of `host.api` (e.g. through an SSH tunnel).
    pub api: Option<&'a str>,
    pub agent_timeout: Duration,
    /// How long a replaced Talos control plane may take to answer and
    /// rejoin etcd.
    pub talos_wait: Duration,
    /// API steps only: leave the host's own setup alone.
    pub skip_host: bool,
    pub ssh: Ssh,
    /// Show the plan and change nothing.
    pub dry_run: bool,
    /// Remove the firewall's EMERGENCY lines (else the setup keeps them).
    pub close_emergency: bool,
    /// Who takes the host's lock (`user@machine pid N`).
    pub holder: &'a str,
    /// The API certificate's fingerprint `host init` recorded, if any.
    pub recorded_fingerprint: Option<&'a str>,
    /// The Image Factory asked which Talos versions it has before an
    /// upgrade is planned.
    pub factory: &'a str,
}

/// What the workflow needs from whoever runs it.
pub trait Ui {
    /// The plan: the API steps, the host setup's changes and the
    /// firewall's EMERGENCY lines (kept, or to be closed).
    fn show(&self, plan: &Plan, host: &host_setup::Report);
    /// A cluster's plan: the SDN, where VMs go, each node's steps.
    fn show_cluster(&self, plan: &super::cluster_plan::ClusterPlan);
    /// Whether to apply the plan just shown.
    fn confirm(&self) -> bool;
    /// One step done (`host …`, `create vm …`).
    fn step(&self, line: &str);
    /// A progress callback for uploading `file`.
    fn upload(&self, file: &str) -> Progress;
    /// Every upload is over.
    fn uploads_done(&self);
    /// Something went wrong that does not fail the deploy.
    fn warn(&self, message: &str);
}

/// How a deploy that did not fail ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The host already matched the blueprint.
    NothingToDo {
        held_back: usize,
    },
    /// `dry_run`: the plan was shown, nothing changed.
    DryRun {
        held_back: usize,
    },
    /// The operator said no.
    Declined,
    Applied {
        held_back: usize,
    },
}

/// Why a deploy stopped. Messages name what to do next.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error(transparent)]
    Desired(#[from] DesiredError),
    #[error("{flag} {name}: the blueprint has no VM `{name}`")]
    UnknownVm { flag: &'static str, name: String },
    #[error("no API certificate is pinned: run `waddlec host init` (it records the fingerprint of the certificate the host's API serves, read over your own SSH), or set host.api_fingerprint from `pvenode cert info` on the host")]
    NoFingerprint,
    #[error("the Proxmox API token: {0}")]
    Token(SecretError),
    #[error("internal error: {0}")]
    Client(PveError),
    #[error(transparent)]
    Remote(#[from] PveError),
    #[error(transparent)]
    HostSetup(#[from] HostSetupError),
    #[error("the host conflicts with the blueprint; nothing was changed")]
    Conflicts,
    #[error(transparent)]
    LockOut(#[from] LockOut),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("host.api_fingerprint is {blueprint} but the host record says {recorded}; remove host.api_fingerprint (the record pins it) or run `waddlec host init --repin` after checking `pvenode cert info` on the host")]
    FingerprintDisagrees { blueprint: String, recorded: String },
    #[error("the host changed since the plan was shown; run deploy again")]
    Changed,
    #[error("{0}\nthe host is as far as the steps above; run deploy again to converge")]
    Apply(#[from] ApplyError),
    #[error("the Talos secrets, to reach the cluster whose nodes the plan changes: {0}")]
    TalosSecrets(SecretError),
    #[error("cannot reach the Talos cluster to check etcd and change its nodes; nothing was changed: {0}")]
    TalosReach(#[from] TalosReachError),
    #[error("{0}; nothing was changed")]
    Store(#[from] StoreError),
    #[error("on {node}: {source}")]
    HostLockOut {
        node: String,
        #[source]
        source: LockOut,
    },
}

/// The blueprint's artifact store, if it has one, with the tree's images
/// it holds whole marked in `desired`: the host pulls those itself.
pub(super) fn open_store(
    compiled: &Compiled,
    blueprint_dir: &Path,
    desired: &mut Desired,
) -> Result<Option<ArtifactStore>, StoreError> {
    let Some(settings) = &compiled.model.artifacts else {
        return Ok(None);
    };
    let store = ArtifactStore::open(settings, blueprint_dir)?;
    for upload in desired.uploads.iter_mut() {
        // A seed is never in the store; an image the tree lacks has no
        // checksum for Proxmox to verify.
        if !upload.seed && !upload.sha256.is_empty() {
            upload.in_store = store.image_size(&upload.file)? == Some(upload.bytes);
        }
    }
    Ok(Some(store))
}

/// The operator's `--allow-replace` and `--allow-restart` names, each a
/// VM of the blueprint.
pub(super) fn check_names(request: &Request<'_>) -> Result<(), DeployError> {
    for (flag, names) in [
        ("--allow-replace", request.allow_replace),
        ("--allow-restart", request.allow_restart),
    ] {
        if let Some(unknown) = names
            .iter()
            .find(|name| request.compiled.model.vm(name).is_none())
        {
            return Err(DeployError::UnknownVm {
                flag,
                name: unknown.clone(),
            });
        }
    }
    Ok(())
}

/// The API client: the blueprint's API (or `--api`) with its token, the
/// certificate pinned by the API host's `api_fingerprint` or the
/// fingerprint `host init` recorded (which must agree when both exist).
/// For a cluster, whose every node answers for all with its own
/// certificate, that is the pin of the node `cluster.api` names.
pub(super) fn connect(request: &Request<'_>) -> Result<Pve, DeployError> {
    let compiled = request.compiled;
    let host = compiled.model.proxmox.api_host();
    let fingerprint = match (
        host.api_fingerprint.as_deref(),
        request.recorded_fingerprint,
    ) {
        (Some(blueprint), Some(recorded)) if !blueprint.eq_ignore_ascii_case(recorded) => {
            return Err(DeployError::FingerprintDisagrees {
                blueprint: blueprint.to_string(),
                recorded: recorded.to_string(),
            })
        }
        (Some(pinned), _) | (None, Some(pinned)) => pinned,
        (None, None) => return Err(DeployError::NoFingerprint),
    };
    let token = secrets::read(
        "host.api_token",
        &compiled.model.proxmox.api_token,
        request.blueprint_dir,
    )
    .map_err(DeployError::Token)?;
    let url = request.api.unwrap_or(&compiled.model.proxmox.api_url);
    Pve::new(url, fingerprint, &token).map_err(DeployError::Client)
}

/// Deploys `request.compiled` onto its host: see the module doc. A
/// `[cluster]` is deployed by `cluster::run`.
pub fn run(request: &Request<'_>, ui: &dyn Ui) -> Result<Outcome, DeployError> {
    if request.compiled.model.proxmox.single_host().is_none() {
        return super::cluster::run(request, ui);
    }
    let compiled = request.compiled;
    let mut desired = desired(compiled, request.tree)?;
    let store = open_store(compiled, request.blueprint_dir, &mut desired)?;
    check_names(request)?;
    let options = Options {
        allow_replace: request.allow_replace,
        allow_restart: request.allow_restart,
        skip_host: request.skip_host,
    };
    let host = &compiled.model.host();
    let pve = connect(request)?;
    let read_host = || -> Result<(Plan, Observed), PveError> {
        let observed = observe(&pve, &host.node, &host.file_storage)?;
        Ok((plan(&desired, &observed, &options), observed))
    };
    let (ungated, observed) = read_host()?;
    let talos = TalosGate::open(request, &ungated, &desired)?;
    let with_etcd = |plan: Plan| talos.judge(plan, &desired);
    let read_plan = || -> Result<(Plan, Observed), PveError> {
        let (plan, observed) = read_host()?;
        Ok((with_etcd(plan), observed))
    };
    let shown = with_etcd(ungated);
    // Through Teleport, the host is reached only if logging in through it
    // works: proven here, on a connection of its own, before anything else
    // goes over it, and before the firewall may drop the direct SSH rule.
    let logged_in_through_teleport = match &request.ssh.teleport {
        Some(teleport) if !request.skip_host => {
            if let Err(err) = host_setup::log_in_through_teleport(&request.ssh) {
                return Err(guard::unproven(
                    &compiled.model,
                    &request.ssh.target,
                    &teleport.proxy,
                    &err.to_string(),
                )
                .into());
            }
            true
        }
        _ => false,
    };
    let host_report = if request.skip_host {
        host_setup::Report::default()
    } else {
        host_setup::run(&request.ssh, request.tree, true, request.close_emergency)?
    };
    let host_changes = &host_report.changes;
    ui.show(&shown, &host_report);
    if !shown.conflicts().is_empty() {
        return Err(DeployError::Conflicts);
    }
    // Firewall changes must leave the operator a way back in.
    if host_changes
        .iter()
        .any(|change| change.contains("/etc/pve/"))
    {
        // Teleport counts as a way in once its VM runs on the host.
        let teleport_up = compiled.model.teleport.as_ref().is_some_and(|teleport| {
            compiled.model.vm(&teleport.vm).is_some_and(|vm| {
                observed
                    .vms
                    .get(&vm.id)
                    .is_some_and(|running| running.running)
            })
        });
        let proof = guard::Proof {
            teleport_up,
            logged_in_through_teleport,
        };
        guard::check(&compiled.model, proof)?;
    }
    let held_back = shown.held_back();
    let changes = shown.changes_anything() || !host_changes.is_empty();
    if !changes {
        return Ok(Outcome::NothingToDo { held_back });
    }
    if request.dry_run {
        return Ok(Outcome::DryRun { held_back });
    }
    if !ui.confirm() {
        return Ok(Outcome::Declined);
    }

    let lock = HostLock::acquire(&pve, request.holder, request.break_lock)?;
    let target = Host {
        pve: &pve,
        node: &host.node,
        file_storage: &host.file_storage,
        etcd: talos.live(),
        members: talos.members(),
        store: store.as_ref(),
    };
    let applied = apply_under_lock(
        request,
        ui,
        &target,
        &desired,
        &shown,
        &host_report,
        read_plan,
    );
    if let Err(err) = lock.release() {
        ui.warn(&format!("could not release the host's deploy lock: {err}"));
    }
    applied.map(|()| Outcome::Applied { held_back })
}

/// The host setup and the API steps, once the lock is held and the host
/// still plans as shown.
fn apply_under_lock(
    request: &Request<'_>,
    ui: &dyn Ui,
    target: &Host<'_>,
    desired: &Desired,
    shown: &Plan,
    host_report: &host_setup::Report,
    read_plan: impl Fn() -> Result<(Plan, Observed), PveError>,
) -> Result<(), DeployError> {
    // Under the lock, the host may differ from what was shown: plan again.
    let (current, _) = read_plan()?;
    if current != *shown {
        return Err(DeployError::Changed);
    }
    if !host_report.changes.is_empty() {
        // As for the API steps: apply only what was shown.
        let close = request.close_emergency;
        if host_setup::run(&request.ssh, request.tree, true, close)? != *host_report {
            return Err(DeployError::Changed);
        }
        let done = host_setup::run(&request.ssh, request.tree, false, close)?;
        for line in done.changes.iter().chain(&done.emergency) {
            ui.step(&format!("host {line}"));
        }
    }
    let timeouts = Timeouts {
        agent: request.agent_timeout,
        talos: request.talos_wait,
        ..Timeouts::default()
    };
    let result = apply(
        target,
        desired,
        &current,
        timeouts,
        &|line: &str| ui.step(line),
        &|file: &str| ui.upload(file),
    );
    ui.uploads_done();
    Ok(result?)
}

/// The live Talos cluster a plan needs, and the plan judged against it:
/// each in-place step with what its node says, paced by `rollout`, every
/// control plane it takes away or changes checked against etcd, each
/// replaced control plane wrapped in `etcd`'s decision. Shared by a lone
/// host's deploy and a cluster's, which judges every node's Talos steps as
/// one plan.
pub(super) struct TalosGate {
    /// Open only when the plan replaces a control plane, or changes or
    /// restarts a Talos node.
    live: Option<LiveCluster>,
    cps: Vec<(u32, String, std::net::Ipv4Addr)>,
    /// The control planes by hostname: etcd's members to be.
    expected: Vec<String>,
    /// The Image Factory's versions, asked once when the plan upgrades.
    factory: Option<Result<FactoryVersions, String>>,
}

impl TalosGate {
    /// Opens the tunnel through `request.ssh` if `plan` (not yet judged)
    /// needs the live cluster, and asks the factory if it upgrades a node.
    pub(super) fn open(
        request: &Request<'_>,
        plan: &Plan,
        desired: &Desired,
    ) -> Result<TalosGate, DeployError> {
        let cps = control_planes(&request.compiled.model);
        let live = if replaced_control_planes(plan, &cps).is_empty() && !in_place(plan, desired) {
            None
        } else {
            Some(open_cluster(request, &cps)?)
        };
        let expected = cps.iter().map(|(_, name, _)| name.clone()).collect();
        // An upgrade's Talos version must be one the factory has an
        // installer for: asked once, before anything changes.
        let factory = plan
            .steps
            .iter()
            .any(|step| matches!(step, Step::Upgrade { .. }))
            .then(|| {
                crate::net::factory::versions(request.factory).map_err(|e| {
                    format!("cannot ask the Image Factory which Talos versions it has ({e}); an upgrade is never sent blind: check the network, or --factory-url")
                })
            });
        Ok(TalosGate {
            live,
            cps,
            expected,
            factory,
        })
    }

    /// `plan` judged against the live cluster (unchanged without one).
    pub(super) fn judge(&self, plan: Plan, desired: &Desired) -> Plan {
        let Some(live) = &self.live else { return plan };
        let plan = preview_in_place(plan, live, desired, &self.expected, self.factory.as_ref());
        let replaced = replaced_control_planes(&plan, &self.cps);
        if replaced.is_empty() {
            return plan;
        }
        let view = live.view();
        let decisions: BTreeMap<u32, _> = replaced
            .into_iter()
            .map(|(vmid, name)| (vmid, decide(&view, &name)))
            .collect();
        gate(plan, &decisions, &self.expected)
    }

    /// The live cluster, for `apply`.
    pub(super) fn live(&self) -> Option<&dyn LiveTalos> {
        self.live.as_ref().map(|live| live as &dyn LiveTalos)
    }

    /// The control planes by hostname, for `apply`.
    pub(super) fn members(&self) -> &[String] {
        &self.expected
    }
}

/// Whether `plan` changes a Talos node in place, or restarts one.
fn in_place(plan: &Plan, desired: &Desired) -> bool {
    plan.steps.iter().any(|step| match step {
        Step::ApplyConfig { .. } | Step::Upgrade { .. } | Step::KubernetesControlPlane { .. } => {
            true
        }
        Step::Restart {
            vmid,
            allowed: true,
            ..
        } => desired.talos.contains_key(vmid),
        _ => false,
    })
}

/// The in-place steps with what the nodes say — each config's dry run,
/// each upgraded node's running version — paced by `rollout`, and a
/// conflict for a node that does not answer or a control plane that may
/// not go down now (etcd not healthy with every member).
fn preview_in_place(
    plan: Plan,
    live: &LiveCluster,
    desired: &Desired,
    members: &[String],
    factory: Option<&Result<FactoryVersions, String>>,
) -> Plan {
    let mut steps = Vec::with_capacity(plan.steps.len());
    for mut step in plan.steps {
        let refused = preview_step(&mut step, live, desired, factory).err();
        let vmid = rollout::vmid_of(&step);
        steps.push(step);
        if let (Some(reason), Some(vmid)) = (refused, vmid) {
            steps.push(Step::Conflict { vmid, reason });
        }
    }
    let paced = rollout::pace(Plan { steps }, desired);
    let view = live.view();
    let mut steps = Vec::with_capacity(paced.steps.len());
    for step in paced.steps {
        // `(vmid, name, away)`: a control plane this step changes, and
        // whether it takes it away (else it changes live).
        let gated = match &step {
            Step::Upgrade {
                vmid,
                name,
                now: true,
                ..
            } if step_upgrades(&step) => Some((*vmid, name.clone(), true)),
            Step::KubernetesControlPlane {
                vmid,
                name,
                preview: Some(p),
                now: true,
                ..
            } if !p.diff.trim().is_empty() => Some((*vmid, name.clone(), true)),
            Step::ApplyConfig {
                vmid,
                name,
                preview: Some(p),
                now: true,
                ..
            } if !p.diff.trim().is_empty() => Some((*vmid, name.clone(), p.reboot)),
            _ => None,
        };
        steps.push(step);
        if let Some((vmid, name, away)) = gated.filter(|(_, name, _)| members.contains(name)) {
            // As apply checks again right before the node: quorum before
            // any control plane is touched, however it changes.
            let ready = if away {
                super::etcd::may_take_down(&view, &name, members)
            } else {
                super::etcd::changeable_live(&view, &name, members)
            };
            if let Err(reason) = ready {
                steps.push(Step::Conflict { vmid, reason });
            }
        }
    }
    Plan { steps }
}

/// Fills in what the node says about one in-place step: its dry run, its
/// running version; an error says why the node cannot be changed now (it
/// does not answer, or the factory has no installer for its upgrade).
fn preview_step(
    step: &mut Step,
    live: &LiveCluster,
    desired: &Desired,
    factory: Option<&Result<FactoryVersions, String>>,
) -> Result<(), String> {
    let target = |vmid: &u32| {
        desired
            .talos
            .get(vmid)
            .ok_or_else(|| format!("internal error: no Talos config for VM {vmid}"))
    };
    let dry_run = |name: &str, config: &[u8]| {
        live.apply_config(name, config, true)
            .map(|(reboot, diff)| ConfigPreview { reboot, diff })
            .map_err(|why| format!("{name}'s dry run of its new config: {why}"))
    };
    match step {
        Step::ApplyConfig {
            vmid,
            name,
            preview,
            ..
        } => *preview = Some(dry_run(name, &target(vmid)?.config)?),
        Step::KubernetesControlPlane {
            vmid,
            name,
            change,
            preview,
            ..
        } => {
            let target = target(vmid)?;
            // A node that runs the build's config already is past this
            // phase: its interim config would move its kubelet back.
            let full = dry_run(name, &target.config)?;
            *preview = Some(if full.diff.trim().is_empty() {
                full
            } else {
                dry_run(name, &rollout::interim_config(&target.config, change)?)?
            });
        }
        Step::Upgrade { name, running, .. } => {
            *running = Some(live.version(name).map_err(|why| {
                format!("{why}; a node is changed in place only when it answers: bring it back, then deploy again")
            })?)
        }
        _ => {}
    }
    if let (true, Step::Upgrade { name, version, .. }) = (step_upgrades(step), &*step) {
        let versions = factory
            .ok_or("internal error: the factory was not asked before an upgrade")?
            .as_ref()
            .map_err(String::clone)?;
        if let Some(why) = versions.refusal(version) {
            return Err(format!("{name} is not upgraded: {why}"));
        }
    }
    Ok(())
}

/// The allowed replaces of control planes in `plan`: `(vmid, hostname)`.
fn replaced_control_planes(
    plan: &Plan,
    cps: &[(u32, String, std::net::Ipv4Addr)],
) -> Vec<(u32, String)> {
    plan.steps
        .iter()
        .filter_map(|step| match step {
            Step::Replace {
                vmid,
                allowed: true,
                ..
            } => cps
                .iter()
                .find(|(id, _, _)| id == vmid)
                .map(|(id, name, _)| (*id, name.clone())),
            _ => None,
        })
        .collect()
}

/// The tunnel to the control planes, as the bundle's talosctl admin.
fn open_cluster(
    request: &Request<'_>,
    cps: &[(u32, String, std::net::Ipv4Addr)],
) -> Result<LiveCluster, DeployError> {
    let Some(talos) = &request.compiled.model.talos else {
        return Err(DeployError::TalosSecrets(SecretError::NoTalos));
    };
    let credentials =
        secrets::load_talos(talos, request.blueprint_dir).map_err(DeployError::TalosSecrets)?;
    let nodes: Vec<(String, std::net::Ipv4Addr)> = cps
        .iter()
        .map(|(_, name, address)| (name.clone(), *address))
        .collect();
    let workers = super::talos::workers(&request.compiled.model);
    Ok(LiveCluster::open(
        &request.ssh,
        &credentials,
        &nodes,
        &workers,
    )?)
}
