//! Carrying out a plan through the API, step by step, each waiting for its
//! task. Every step is safe to repeat after an interruption: a bridge is
//! written to the node's pending network configuration and then applied,
//! and a later deploy applies what it finds pending of its own; uploads
//! land under their final name only when Proxmox has verified their
//! sha256; a VM is created with its disks imported in the same call, so it
//! never exists without them; a restart is a clean shutdown that fails
//! rather than forcing the VM off; a later deploy re-reads the host and
//! plans again (and removes a seed a failed step left behind). A Talos
//! control plane is destroyed only after its etcd step: the cluster read
//! again and judged as the plan judged it, the node out of etcd, and the
//! member's absence confirmed through a peer; after its VM starts again
//! the next step waits for it to rejoin.

use std::time::{Duration, Instant};

use super::desired::Desired;
use super::etcd::{changeable_live, decide, may_take_down, LiveTalos};
use super::plan::{files_of, step_upgrades, Change, Plan, Step, BRIDGE_MARKER};
use super::rollout::interim_config;
use crate::net::pve::{segment, Progress, Pve, PveError, UploadFile};
use crate::plan::vm::VmConfig;
use crate::store::ArtifactStore;

/// How long each kind of task may take.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub upload: Duration,
    pub task: Duration,
    /// From start until the guest agent answers.
    pub agent: Duration,
    /// A clean shutdown before a restart; then the restart is refused,
    /// never forced.
    pub shutdown: Duration,
    /// A replaced Talos control plane: until it answers and etcd is
    /// healthy with it again.
    pub talos: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            upload: Duration::from_secs(3600),
            task: Duration::from_secs(900),
            agent: Duration::from_secs(300),
            shutdown: Duration::from_secs(180),
            talos: Duration::from_secs(600),
        }
    }
}

/// How long a node that said it reboots may take to go away.
const REBOOT_START: Duration = Duration::from_secs(30);

/// Where the plan is carried out.
pub struct Host<'a> {
    pub pve: &'a Pve,
    pub node: &'a str,
    pub file_storage: &'a str,
    /// The live Talos cluster, when the plan replaces a control plane or
    /// changes a Talos node in place.
    pub etcd: Option<&'a dyn LiveTalos>,
    /// The control planes by hostname: etcd's members to be.
    pub members: &'a [String],
    /// The artifact store the host pulls images from, if the blueprint
    /// has one.
    pub store: Option<&'a ArtifactStore>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{step}: {source}")]
    Step {
        step: String,
        #[source]
        source: PveError,
    },
    #[error("internal error: the plan names VM {vmid}, which the blueprint does not have")]
    NotDesired { vmid: u32 },
    #[error("internal error: the plan names bridge {bridge}, which the blueprint does not have")]
    NotDesiredBridge { bridge: String },
    #[error("{step}: the guest agent did not answer within {seconds} s (is qemu-guest-agent in the image and the VM booting?)")]
    Agent { step: String, seconds: u64 },
    #[error("{step}: VM {vmid} did not shut down cleanly within {seconds} s ({source}); it was not forced off and still runs with its old settings: find out why the guest ignores the shutdown (ACPI, its guest agent), or shut it down yourself, then deploy again")]
    Shutdown {
        step: String,
        vmid: u32,
        seconds: u64,
        #[source]
        source: PveError,
    },
    #[error("{step}: {problem}")]
    Etcd { step: String, problem: String },
    #[error("internal error: the plan destroys VM {vmid} before its node left etcd")]
    NoEtcdStep { vmid: u32 },
    #[error("internal error: the plan pulls {file} without an artifact store")]
    NoStore { file: String },
}

/// Runs every step of `plan` in order; `report` hears each step as it
/// starts, `progress` each upload's bytes.
pub fn apply(
    host: &Host<'_>,
    desired: &Desired,
    plan: &Plan,
    timeouts: Timeouts,
    report: &dyn Fn(&str),
    progress: &dyn Fn(&str) -> Progress,
) -> Result<(), ApplyError> {
    // Talos VMs whose etcd step ran: only these may be destroyed.
    let mut out_of_etcd: Vec<u32> = Vec::new();
    for (step, line) in plan.steps.iter().zip(plan.lines()) {
        let etcd_fail = |problem: String| ApplyError::Etcd {
            step: line.clone(),
            problem,
        };
        let fail = |source| ApplyError::Step {
            step: line.clone(),
            source,
        };
        // The live cluster, open whenever the plan has a Talos step.
        let connection = || {
            host.etcd.ok_or_else(|| {
                etcd_fail("internal error: no connection to the Talos cluster".into())
            })
        };
        let talos_target = |vmid: u32| {
            desired
                .talos
                .get(&vmid)
                .ok_or(ApplyError::NotDesired { vmid })
        };
        match step {
            Step::CreateBridge {
                bridge,
                cidr,
                cidr6,
                vlan_aware,
            } => {
                report(&line);
                let mut form = bridge_form(cidr, cidr6.as_deref(), *vlan_aware);
                form.insert(0, ("iface".to_string(), bridge.clone()));
                host.pve
                    .post(&format!("{}/network", node_path(host)), &form)
                    .map_err(fail)?;
            }
            Step::UpdateBridge { bridge, changes } => {
                report(&line);
                let wanted = desired
                    .bridges
                    .iter()
                    .find(|b| b.name == *bridge)
                    .ok_or_else(|| ApplyError::NotDesiredBridge {
                        bridge: bridge.clone(),
                    })?;
                let mut form =
                    bridge_form(&wanted.cidr, wanted.cidr6.as_deref(), wanted.vlan_aware);
                // What the blueprint's bridge does not have is deleted.
                let changed = |key: &str| changes.iter().any(|c| c.key == key);
                let mut deleted = Vec::new();
                if changed("bridge_ports") {
                    deleted.push("bridge_ports");
                }
                if changed("bridge_vlan_aware") && !wanted.vlan_aware {
                    deleted.push("bridge_vlan_aware");
                }
                if changed("cidr6") && wanted.cidr6.is_none() {
                    deleted.push("cidr6");
                }
                if !deleted.is_empty() {
                    form.push(("delete".to_string(), deleted.join(",")));
                }
                host.pve
                    .put(
                        &format!("{}/network/{}", node_path(host), segment(bridge)),
                        &form,
                    )
                    .map_err(fail)?;
            }
            Step::ApplyNetwork { .. } => {
                report(&line);
                let answer = host
                    .pve
                    .put(&format!("{}/network", node_path(host)), &[])
                    .map_err(fail)?;
                wait(host, answer, timeouts.task).map_err(fail)?;
            }
            Step::RemoveSeed { file } => {
                report(&line);
                remove_import(host, file, timeouts).map_err(fail)?;
            }
            Step::Restart {
                vmid,
                name,
                changes,
                allowed: true,
            } => {
                report(&line);
                // A Talos node is away while it restarts: as for a reboot
                // in place, quorum before and its return after.
                let talos = desired.talos.get(vmid).zip(host.etcd);
                if let Some((target, live)) = talos {
                    if target.control_plane {
                        may_take_down(&live.view(), name, host.members).map_err(etcd_fail)?;
                    }
                }
                restart(host, vm(desired, *vmid)?, changes, timeouts, &line, report)?;
                if let Some((target, live)) = talos {
                    wait_back(live, name, target.control_plane, host.members, timeouts)
                        .map_err(etcd_fail)?;
                }
            }
            Step::Upload {
                file, sha256, path, ..
            } => {
                report(&line);
                let file = UploadFile {
                    storage: host.file_storage,
                    content: "import",
                    name: file,
                    path,
                    sha256,
                };
                upload(host, &file, timeouts, progress(file.name)).map_err(fail)?;
            }
            Step::Pull { file, sha256, .. } => {
                report(&line);
                let store = host
                    .store
                    .ok_or_else(|| ApplyError::NoStore { file: file.clone() })?;
                pull(host, store, file, sha256, timeouts).map_err(fail)?;
            }
            Step::Create { vmid, .. } => {
                report(&line);
                let vm = vm(desired, *vmid)?;
                create(host, vm, timeouts).map_err(fail)?;
                boot(host, vm, timeouts, &line)?;
            }
            Step::Replace {
                vmid,
                allowed: true,
                ..
            } => {
                report(&line);
                let vm = vm(desired, *vmid)?;
                let gated = plan
                    .steps
                    .iter()
                    .any(|s| matches!(s, Step::EtcdLeave { vmid: v, .. } if v == vmid));
                if gated && !out_of_etcd.contains(vmid) {
                    return Err(ApplyError::NoEtcdStep { vmid: *vmid });
                }
                destroy(host, *vmid, timeouts).map_err(fail)?;
                create(host, vm, timeouts).map_err(fail)?;
                boot(host, vm, timeouts, &line)?;
            }
            Step::EtcdLeave { vmid, name, exit } => {
                report(&line);
                let live = connection()?;
                // Right before the step: the cluster must still be as the
                // plan found it.
                let now = decide(&live.view(), name);
                if now != exit.decision() {
                    return Err(etcd_fail(format!(
                        "the cluster changed since the plan ({now:?}); nothing was done to {name}: deploy again"
                    )));
                }
                let done = live.leave(name, exit).map_err(etcd_fail)?;
                report(&format!("etcd     {done}"));
                out_of_etcd.push(*vmid);
            }
            Step::EtcdRejoin { name, members, .. } => {
                report(&line);
                let live = connection()?;
                live.wait_rejoined(name, members, timeouts.talos)
                    .map_err(etcd_fail)?;
                report(&format!(
                    "etcd     {name} is back; etcd is healthy with {}",
                    members.join(", ")
                ));
            }
            Step::Update { vmid, changes, .. } => {
                report(&line);
                update(host, *vmid, changes).map_err(fail)?;
            }
            Step::KubernetesControlPlane {
                vmid,
                name,
                change,
                preview,
                now: true,
            } => {
                report(&line);
                let live = connection()?;
                let target = talos_target(*vmid)?;
                if preview.as_ref().is_none_or(|p| !p.diff.trim().is_empty()) {
                    let interim = interim_config(&target.config, change).map_err(etcd_fail)?;
                    may_take_down(&live.view(), name, host.members).map_err(etcd_fail)?;
                    let (rebooted, _) = live
                        .apply_config(name, &interim, false)
                        .map_err(etcd_fail)?;
                    if rebooted {
                        live.wait_down(name, timeouts.talos.min(REBOOT_START));
                    }
                    wait_back(live, name, true, host.members, timeouts).map_err(etcd_fail)?;
                    report(&format!(
                        "k8s      {name}: control plane components on {}, kubelet still {}",
                        change.to, change.from
                    ));
                }
            }
            Step::ApplyConfig {
                vmid,
                name,
                kubernetes,
                preview,
                now: true,
                ..
            } => {
                report(&line);
                let live = connection()?;
                let target = talos_target(*vmid)?;
                let changes = preview.as_ref().is_none_or(|p| !p.diff.trim().is_empty());
                if changes {
                    // Quorum before any control plane is touched; one that
                    // may reboot must leave enough members behind.
                    if target.control_plane {
                        let view = live.view();
                        if preview.as_ref().is_none_or(|p| p.reboot) {
                            may_take_down(&view, name, host.members)
                        } else {
                            changeable_live(&view, name, host.members)
                        }
                        .map_err(etcd_fail)?;
                    }
                    let (rebooted, _) = live
                        .apply_config(name, &target.config, false)
                        .map_err(etcd_fail)?;
                    if rebooted {
                        report(&format!("talos    {name} reboots into its new config"));
                        // It answers before it goes: a wait begun at once
                        // would find it still up on its old boot.
                        live.wait_down(name, timeouts.talos.min(REBOOT_START));
                        wait_back(live, name, target.control_plane, host.members, timeouts)
                            .map_err(etcd_fail)?;
                    } else {
                        report(&format!("talos    {name} applied its new config live"));
                    }
                    if let Some(kubernetes) = kubernetes {
                        live.wait_healthy(name, "kubelet", timeouts.talos)
                            .map_err(etcd_fail)?;
                        report(&format!(
                            "k8s      {name}: kubelet healthy on {}",
                            kubernetes.to
                        ));
                    }
                }
                refresh_seed(host, vm(desired, *vmid)?, timeouts).map_err(fail)?;
            }
            Step::Upgrade {
                vmid,
                name,
                installer,
                version,
                description,
                now: true,
                ..
            } => {
                report(&line);
                let live = connection()?;
                let control_plane = desired.talos.get(vmid).is_some_and(|t| t.control_plane);
                if step_upgrades(step) {
                    if control_plane {
                        may_take_down(&live.view(), name, host.members).map_err(etcd_fail)?;
                    }
                    let ack = live.upgrade(name, installer).map_err(etcd_fail)?;
                    report(&format!("talos    {name}: {ack}"));
                    // It reboots after answering; on a schematic change the
                    // version it comes back on is the one it runs now, so
                    // only its going away tells the reboot began.
                    live.wait_down(name, timeouts.talos.min(REBOOT_START));
                    live.wait_version(name, Some(version), timeouts.talos)
                        .map_err(etcd_fail)?;
                    if control_plane {
                        live.wait_rejoined(name, host.members, timeouts.talos)
                            .map_err(etcd_fail)?;
                    }
                }
                host.pve
                    .put(
                        &format!("{}/config", qemu_path(host, *vmid)),
                        &[("description".to_string(), description.clone())],
                    )
                    .map_err(fail)?;
            }
            Step::Resize { vmid, to, .. } => {
                report(&line);
                resize(host, *vmid, to, timeouts).map_err(fail)?;
            }
            Step::Start { vmid, .. } => {
                report(&line);
                start(host, *vmid, timeouts).map_err(fail)?;
                if vm(desired, *vmid)?.agent {
                    wait_for_agent(host, *vmid, timeouts, &line)?;
                }
            }
            Step::KeepUpload { .. }
            | Step::ApplyConfig { now: false, .. }
            | Step::KubernetesControlPlane { now: false, .. }
            | Step::Upgrade { now: false, .. }
            | Step::MissingFile { .. }
            | Step::Replace { allowed: false, .. }
            | Step::Restart { allowed: false, .. }
            | Step::KeepBridge { .. }
            | Step::BridgeConflict { .. }
            | Step::Keep { .. }
            | Step::Conflict { .. }
            | Step::Unknown { .. } => {}
        }
    }
    Ok(())
}

/// Waits until a Talos node that went away is back: a control plane
/// answering with etcd healthy with every member, a worker answering.
fn wait_back(
    live: &dyn LiveTalos,
    name: &str,
    control_plane: bool,
    members: &[String],
    timeouts: Timeouts,
) -> Result<(), String> {
    if control_plane {
        live.wait_rejoined(name, members, timeouts.talos)
    } else {
        live.wait_version(name, None, timeouts.talos)
    }
}

/// The desired VM a step names. A plan made from `desired` names only its
/// VMs; a step naming another is a bug, reported rather than acted on.
fn vm(desired: &Desired, vmid: u32) -> Result<&VmConfig, ApplyError> {
    desired
        .vms
        .iter()
        .find(|vm| vm.vmid == vmid)
        .ok_or(ApplyError::NotDesired { vmid })
}

fn node_path(host: &Host<'_>) -> String {
    format!("/nodes/{}", segment(host.node))
}

fn qemu_path(host: &Host<'_>, vmid: u32) -> String {
    format!("{}/qemu/{vmid}", node_path(host))
}

/// A bridge as the blueprint has it (`POST`/`PUT …/network`): the host's
/// address (and IPv6 address), no ports, up at boot, VLAN-aware if the
/// blueprint says so, and the comment that marks it as waddlec's.
fn bridge_form(cidr: &str, cidr6: Option<&str>, vlan_aware: bool) -> Vec<(String, String)> {
    let vlan = vlan_aware.then_some(("bridge_vlan_aware", "1"));
    let cidr6 = cidr6.map(|cidr6| ("cidr6", cidr6));
    [
        ("type", "bridge"),
        ("cidr", cidr),
        ("autostart", "1"),
        ("comments", BRIDGE_MARKER),
    ]
    .into_iter()
    .chain(cidr6)
    .chain(vlan)
    .map(|(key, value)| (key.to_string(), value.to_string()))
    .collect()
}

/// Deletes `file` from the file storage's `import` content.
fn remove_import(host: &Host<'_>, file: &str, timeouts: Timeouts) -> Result<(), PveError> {
    let volume = format!("{}:import/{file}", host.file_storage);
    let answer = host.pve.delete(
        &format!(
            "{}/storage/{}/content/{}",
            node_path(host),
            segment(host.file_storage),
            segment(&volume)
        ),
        &[],
    )?;
    wait(host, answer, timeouts.task)
}

/// Waits for the task an API call returned, if it returned one.
pub(super) fn wait(
    host: &Host<'_>,
    answer: serde_json::Value,
    timeout: Duration,
) -> Result<(), PveError> {
    match answer.as_str() {
        Some(upid) if upid.starts_with("UPID:") => host.pve.wait_task(host.node, upid, timeout),
        _ => Ok(()),
    }
}

fn upload(
    host: &Host<'_>,
    file: &UploadFile<'_>,
    timeouts: Timeouts,
    progress: Progress,
) -> Result<(), PveError> {
    let upid = host.pve.upload(host.node, file, progress)?;
    host.pve.wait_task(host.node, &upid, timeouts.upload)
}

/// How long the URL Proxmox downloads an image from is good for: its
/// download starts at once, and a started transfer is not cut at expiry.
const PRESIGNED_FOR: Duration = Duration::from_secs(15 * 60);

/// `download-url`: the host fetches `file` from the store itself and
/// checks its sha256. The presigned URL (a credential for that object
/// until it expires) is sent once, and never shown: Proxmox's own task
/// log names it, so errors carry it redacted.
fn pull(
    host: &Host<'_>,
    store: &ArtifactStore,
    file: &str,
    sha256: &str,
    timeouts: Timeouts,
) -> Result<(), PveError> {
    let url = store.presign_image(file, PRESIGNED_FOR);
    let form = [
        ("url", url.expose()),
        ("content", "import"),
        ("filename", file),
        ("checksum", sha256),
        ("checksum-algorithm", "sha256"),
        ("verify-certificates", "1"),
    ]
    .map(|(key, value)| (key.to_string(), value.to_string()));
    let path = format!(
        "{}/storage/{}/download-url",
        node_path(host),
        segment(host.file_storage)
    );
    let result = host
        .pve
        .post(&path, &form)
        .and_then(|answer| wait(host, answer, timeouts.upload));
    result.map_err(|error| redact(error, url.expose(), &url.to_string()))
}

/// `error` with every occurrence of `secret` (the presigned URL) replaced
/// by `shown` (its printable form).
fn redact(error: PveError, secret: &str, shown: &str) -> PveError {
    let clean = |text: String| text.replace(secret, shown);
    match error {
        PveError::Api {
            method,
            path,
            status,
            message,
        } => PveError::Api {
            method,
            path,
            status,
            message: clean(message),
        },
        PveError::Unreachable {
            method,
            path,
            problem,
        } => PveError::Unreachable {
            method,
            path,
            problem: clean(problem),
        },
        PveError::Task {
            upid,
            exitstatus,
            log,
        } => PveError::Task {
            upid,
            exitstatus: clean(exitstatus),
            log: log.into_iter().map(clean).collect(),
        },
        other => other,
    }
}

fn create(host: &Host<'_>, vm: &VmConfig, timeouts: Timeouts) -> Result<(), PveError> {
    let mut form = vec![("vmid".to_string(), vm.vmid.to_string())];
    form.extend(vm.params.iter().cloned());
    let answer = host
        .pve
        .post(&format!("/nodes/{}/qemu", segment(host.node)), &form)?;
    wait(host, answer, timeouts.task)?;
    // The VM has its own copy of the seed now; the uploaded one (world-
    // readable in the import directory, possibly holding secrets) goes.
    let (_, seed) = files_of(vm);
    remove_import(host, &seed, timeouts)?;
    resize(host, vm.vmid, &vm.disk, timeouts)
}

/// Boots a VM just created and waits for its agent.
fn boot(host: &Host<'_>, vm: &VmConfig, timeouts: Timeouts, line: &str) -> Result<(), ApplyError> {
    start(host, vm.vmid, timeouts).map_err(|source| ApplyError::Step {
        step: line.to_string(),
        source,
    })?;
    if vm.agent {
        wait_for_agent(host, vm.vmid, timeouts, line)?;
    }
    Ok(())
}

fn resize(host: &Host<'_>, vmid: u32, size: &str, timeouts: Timeouts) -> Result<(), PveError> {
    let answer = host.pve.put(
        &format!("{}/resize", qemu_path(host, vmid)),
        &[
            ("disk".to_string(), "scsi0".to_string()),
            ("size".to_string(), size.to_string()),
        ],
    )?;
    wait(host, answer, timeouts.task)
}

fn start(host: &Host<'_>, vmid: u32, timeouts: Timeouts) -> Result<(), PveError> {
    let answer = host
        .pve
        .post(&format!("{}/status/start", qemu_path(host, vmid)), &[])?;
    wait(host, answer, timeouts.task)
}

/// Applies the settings Proxmox holds for `vm`'s next start: a clean
/// shutdown (refused, never forced, when the guest does not go down in
/// time), then a start. Nothing happens if nothing is pending any more
/// (Proxmox applied the update live).
fn restart(
    host: &Host<'_>,
    vm: &VmConfig,
    changes: &[Change],
    timeouts: Timeouts,
    line: &str,
    report: &dyn Fn(&str),
) -> Result<(), ApplyError> {
    let fail = |source| ApplyError::Step {
        step: line.to_string(),
        source,
    };
    let path = qemu_path(host, vm.vmid);
    let pending = host
        .pve
        .get(&format!("{path}/pending"), &[])
        .map_err(fail)?;
    let held = pending.as_array().into_iter().flatten().any(|item| {
        let key = item["key"].as_str().unwrap_or_default();
        changes.iter().any(|change| change.key == key)
            && (!item["pending"].is_null() || item["delete"].as_u64().unwrap_or_default() > 0)
    });
    if !held {
        report(&format!(
            "{line}: Proxmox applied it live, no restart needed"
        ));
        return Ok(());
    }
    let seconds = timeouts.shutdown.as_secs();
    let shutdown = || -> Result<(), PveError> {
        let answer = host.pve.post(
            &format!("{path}/status/shutdown"),
            &[("timeout".to_string(), seconds.to_string())],
        )?;
        // Proxmox gives up after `timeout` and fails the task (no
        // forceStop): a little longer here, to read that failure.
        wait(host, answer, timeouts.shutdown + Duration::from_secs(30))
    };
    shutdown().map_err(|source| ApplyError::Shutdown {
        step: line.to_string(),
        vmid: vm.vmid,
        seconds,
        source,
    })?;
    boot(host, vm, timeouts, line)
}

fn update(host: &Host<'_>, vmid: u32, changes: &[Change]) -> Result<(), PveError> {
    let form: Vec<(String, String)> = changes
        .iter()
        .map(|change| (change.key.clone(), change.to.clone()))
        .collect();
    host.pve
        .put(&format!("{}/config", qemu_path(host, vmid)), &form)
        .map(drop)
}

/// Brings a Talos VM's seed disk and description current after its node
/// took the new config in place, so a later rebuild boots what it runs:
/// scsi1 imported again from the uploaded seed (Proxmox keeps the old disk
/// as `unusedN`, which is then deleted), the description naming the new
/// files, the uploaded seed removed.
/// `desired` (a description as the blueprint writes it) naming the image
/// `current` (the host's description) names, if it names one.
fn keep_image(desired: &str, current: &str) -> String {
    let image = |description: &str| {
        description
            .split_whitespace()
            .find(|word| word.starts_with("image="))
            .map(str::to_string)
    };
    match (image(desired), image(current)) {
        (Some(new), Some(running)) => desired.replacen(&new, &running, 1),
        _ => desired.to_string(),
    }
}

fn refresh_seed(host: &Host<'_>, vm: &VmConfig, timeouts: Timeouts) -> Result<(), PveError> {
    let path = format!("{}/config", qemu_path(host, vm.vmid));
    let before = host.pve.get(&path, &[])?;
    let disk_of = |value: &serde_json::Value| {
        value
            .as_str()
            .and_then(|v| v.split(',').next())
            .unwrap_or_default()
            .to_string()
    };
    let old = disk_of(&before["scsi1"]);
    // The description records the new seed (and Kubernetes version), and
    // still the image the node runs: an upgrade not done yet stays due.
    let description = keep_image(
        vm.param("description").unwrap_or_default(),
        before["description"].as_str().unwrap_or_default(),
    );
    let mut form: Vec<(String, String)> = vec![("description".to_string(), description)];
    if let Some(scsi1) = vm.param("scsi1") {
        form.insert(0, ("scsi1".to_string(), scsi1.to_string()));
    }
    let answer = host.pve.post(&path, &form)?;
    wait(host, answer, timeouts.task)?;
    let after = host.pve.get(&path, &[])?;
    let unused: Vec<String> = after
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(key, value)| {
            key.starts_with("unused") && !old.is_empty() && disk_of(value) == old
        })
        .map(|(key, _)| key.clone())
        .collect();
    if !unused.is_empty() {
        let answer = host
            .pve
            .post(&path, &[("delete".to_string(), unused.join(","))])?;
        wait(host, answer, timeouts.task)?;
    }
    let (_, seed) = files_of(vm);
    remove_import(host, &seed, timeouts)
}

/// Stops (hard: the VM is about to be destroyed) and destroys a VM with its
/// disks.
pub(super) fn destroy(host: &Host<'_>, vmid: u32, timeouts: Timeouts) -> Result<(), PveError> {
    let path = qemu_path(host, vmid);
    let status = host.pve.get(&format!("{path}/status/current"), &[])?;
    if status["status"] == "running" {
        let answer = host.pve.post(&format!("{path}/status/stop"), &[])?;
        wait(host, answer, timeouts.task)?;
    }
    let answer = host.pve.delete(
        &path,
        &[("purge", "1"), ("destroy-unreferenced-disks", "1")],
    )?;
    wait(host, answer, timeouts.task)
}

fn wait_for_agent(
    host: &Host<'_>,
    vmid: u32,
    timeouts: Timeouts,
    line: &str,
) -> Result<(), ApplyError> {
    let started = Instant::now();
    let path = format!("{}/agent/ping", qemu_path(host, vmid));
    loop {
        match host.pve.post(&path, &[]) {
            Ok(_) => return Ok(()),
            // "QEMU guest agent is not running" until the guest has booted.
            Err(error) if error.status() == Some(500) => {}
            Err(source) => {
                return Err(ApplyError::Step {
                    step: line.to_string(),
                    source,
                })
            }
        }
        if started.elapsed() > timeouts.agent {
            return Err(ApplyError::Agent {
                step: line.to_string(),
                seconds: timeouts.agent.as_secs(),
            });
        }
        std::thread::sleep(host.pve.poll);
    }
}

#[cfg(test)]
mod tests {
    use crate::net::pve::PveError;

    /// Proxmox's task log and exit status name the URL it downloaded.
    #[test]
    fn a_failed_pull_never_shows_the_presigned_url() {
        let url = "http://s3.test/b/images/a.qcow2?X-Amz-Signature=f00d";
        let error = PveError::Task {
            upid: "UPID:x".into(),
            exitstatus: format!(
                "download failed: command 'wget -O /tmp/a {url}' failed: exit code 8"
            ),
            log: vec![format!("downloading {url} to /var/lib/vz/import/a.qcow2")],
        };
        let shown =
            super::redact(error, url, "http://s3.test/b/images/a.qcow2?<presigned>").to_string();
        assert!(!shown.contains("f00d"), "{shown}");
        assert!(
            shown.contains("a.qcow2?<presigned>' failed: exit code 8"),
            "{shown}"
        );
    }

    #[test]
    fn a_refreshed_seed_keeps_the_image_the_node_runs() {
        assert_eq!(
            super::keep_image(
                "Managed by waddlec. image=talos-v1.12.2-a.qcow2 seed=n-seed-2.raw kubernetes=1.35.1",
                "Managed by waddlec. image=talos-v1.12.0-a.qcow2 seed=n-seed-1.raw kubernetes=1.34.3"
            ),
            "Managed by waddlec. image=talos-v1.12.0-a.qcow2 seed=n-seed-2.raw kubernetes=1.35.1"
        );
        assert_eq!(
            super::keep_image("Managed by waddlec. image=a seed=b", "hand-made"),
            "Managed by waddlec. image=a seed=b"
        );
    }
}
