//! The `qm` script: the seed's hand-typed VM creation for every VM, in VMID
//! order, idempotent and checked before it changes anything.

use serde::Serialize;

use super::images::VmImages;
use super::{RenderError, Templates};
use crate::artifact::Artifact;
use crate::model::{GuestOs, Model};

/// Volume ID of a disk image in the file storage's `import` content (where
/// `waddlec deploy` uploads images).
fn import_volume(model: &Model, file: &str) -> String {
    format!("{}:import/{file}", model.host.file_storage)
}

#[derive(Serialize)]
struct Nic {
    index: usize,
    bridge: String,
    mac: String,
}

#[derive(Serialize)]
struct Vm {
    id: u32,
    name: String,
    tags: String,
    cpu: String,
    cores: u32,
    memory_mib: u64,
    disk: String,
    onboot: u8,
    agent: u8,
    image: String,
    seed: String,
    /// Debian images boot with systemd-boot under OVMF.
    debian: bool,
    /// Talos bootstrap hangs on "VirtIO SCSI single" (talos#11173).
    scsihw: &'static str,
    /// An I/O thread per disk needs the single-controller model.
    iothread: bool,
    nics: Vec<Nic>,
}

#[derive(Serialize)]
struct Data<'a> {
    project: &'a str,
    node: &'a str,
    disk_storage: &'a str,
    file_storage: &'a str,
    images: Vec<String>,
    vms: Vec<Vm>,
}

/// The Talos extension that makes the QEMU guest agent answer.
const TALOS_GUEST_AGENT: &str = "siderolabs/qemu-guest-agent";

/// The script, booting each VM from the disks `plans` name.
pub fn render(
    templates: &Templates,
    model: &Model,
    plans: &[VmImages],
) -> Result<Vec<Artifact>, RenderError> {
    let talos_agent = model
        .talos
        .as_ref()
        .is_some_and(|t| t.extensions.iter().any(|e| e == TALOS_GUEST_AGENT));
    let vms: Vec<Vm> = model
        .vms
        .iter()
        .filter_map(|vm| Some((vm, plans.iter().find(|p| p.vm == vm.name)?)))
        .map(|(vm, plan)| Vm {
            id: vm.id,
            name: vm.name.clone(),
            tags: vm.tags.join(";"),
            cpu: vm.cpu.clone(),
            cores: vm.cores,
            memory_mib: vm.memory.whole_mib().unwrap_or_default(),
            disk: vm.disk.to_string(),
            onboot: u8::from(vm.onboot),
            agent: u8::from(match vm.os {
                GuestOs::Debian { .. } => true,
                GuestOs::Talos => talos_agent,
            }),
            image: import_volume(model, plan.boot.file()),
            seed: import_volume(model, &plan.seed.file),
            debian: matches!(vm.os, GuestOs::Debian { .. }),
            scsihw: match vm.os {
                GuestOs::Debian { .. } => "virtio-scsi-single",
                GuestOs::Talos => "virtio-scsi-pci",
            },
            iothread: matches!(vm.os, GuestOs::Debian { .. }),
            nics: vm
                .nics
                .iter()
                .enumerate()
                .map(|(index, nic)| Nic {
                    index,
                    bridge: nic.bridge.clone(),
                    mac: nic.mac.clone(),
                })
                .collect(),
        })
        .collect();
    let mut images: Vec<String> = vms
        .iter()
        .flat_map(|vm| [vm.image.clone(), vm.seed.clone()])
        .collect();
    images.sort();
    images.dedup();
    let data = Data {
        project: &model.project.name,
        node: &model.host.node,
        disk_storage: &model.host.disk_storage,
        file_storage: &model.host.file_storage,
        images,
        vms,
    };
    Ok(vec![Artifact::file(
        "host/create-vms.sh",
        "qm-script",
        templates.render("create-vms.sh", &data)?,
    )
    .executable()])
}
