//! Carrying out a plan through the API, step by step, each waiting for its
//! task. Every step is safe to repeat after an interruption: uploads land
//! under their final name only when Proxmox has verified their sha256; a VM
//! is created with its disks imported in the same call, so it never exists
//! without them; a later deploy re-reads the host and plans again.

use std::time::{Duration, Instant};

use super::desired::Desired;
use super::plan::{Change, Plan, Step};
use crate::net::pve::{segment, Progress, Pve, PveError, UploadFile};
use crate::plan::vm::VmConfig;

/// How long each kind of task may take.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub upload: Duration,
    pub task: Duration,
    /// From start until the guest agent answers.
    pub agent: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            upload: Duration::from_secs(3600),
            task: Duration::from_secs(900),
            agent: Duration::from_secs(300),
        }
    }
}

/// Where the plan is carried out.
pub struct Host<'a> {
    pub pve: &'a Pve,
    pub node: &'a str,
    pub file_storage: &'a str,
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
    #[error("{step}: the guest agent did not answer within {seconds} s (is qemu-guest-agent in the image and the VM booting?)")]
    Agent { step: String, seconds: u64 },
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
    for (step, line) in plan.steps.iter().zip(plan.lines()) {
        let fail = |source| ApplyError::Step {
            step: line.clone(),
            source,
        };
        match step {
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
                destroy(host, *vmid, timeouts).map_err(fail)?;
                create(host, vm, timeouts).map_err(fail)?;
                boot(host, vm, timeouts, &line)?;
            }
            Step::Update { vmid, changes, .. } => {
                report(&line);
                update(host, *vmid, changes).map_err(fail)?;
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
            | Step::MissingFile { .. }
            | Step::Replace { allowed: false, .. }
            | Step::Keep { .. }
            | Step::Conflict { .. }
            | Step::Unknown { .. } => {}
        }
    }
    Ok(())
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

fn qemu_path(host: &Host<'_>, vmid: u32) -> String {
    format!("/nodes/{}/qemu/{vmid}", segment(host.node))
}

/// Waits for the task an API call returned, if it returned one.
fn wait(host: &Host<'_>, answer: serde_json::Value, timeout: Duration) -> Result<(), PveError> {
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

fn create(host: &Host<'_>, vm: &VmConfig, timeouts: Timeouts) -> Result<(), PveError> {
    let mut form = vec![("vmid".to_string(), vm.vmid.to_string())];
    form.extend(vm.params.iter().cloned());
    let answer = host
        .pve
        .post(&format!("/nodes/{}/qemu", segment(host.node)), &form)?;
    wait(host, answer, timeouts.task)?;
    // The VM has its own copy of the seed now; the uploaded one (world-
    // readable in the import directory, possibly holding secrets) goes.
    let answer = host.pve.delete(
        &format!(
            "/nodes/{}/storage/{}/content/{}",
            segment(host.node),
            segment(host.file_storage),
            segment(&vm.seed_volume)
        ),
        &[],
    )?;
    wait(host, answer, timeouts.task)?;
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

fn update(host: &Host<'_>, vmid: u32, changes: &[Change]) -> Result<(), PveError> {
    let form: Vec<(String, String)> = changes
        .iter()
        .map(|change| (change.key.clone(), change.to.clone()))
        .collect();
    host.pve
        .put(&format!("{}/config", qemu_path(host, vmid)), &form)
        .map(drop)
}

/// Stops (hard: the VM is about to be destroyed) and destroys a VM with its
/// disks.
fn destroy(host: &Host<'_>, vmid: u32, timeouts: Timeouts) -> Result<(), PveError> {
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
