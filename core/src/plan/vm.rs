//! Every VM as Proxmox creates it: the parameters of `POST
//! /nodes/{node}/qemu` (the same names `qm create` takes as options), in a
//! fixed order. The one definition of a VM, shared by the qm script and
//! `waddlec deploy`, so the two can never create different machines.
//!
//! Disks are imported at creation (`import-from`) from the plan's files in
//! the file storage's `import` content: scsi0 the boot image, scsi1 the
//! NoCloud seed disk. Debian images boot with systemd-boot under OVMF (an
//! EFI disk without pre-enrolled keys: the bootloader is not signed).

use super::images::{BootImage, VmImages};
use crate::model::{GuestOs, Model, Vm};

/// The Talos extension that makes the QEMU guest agent answer.
const TALOS_GUEST_AGENT: &str = "siderolabs/qemu-guest-agent";
/// Marks a VM's description: the VM is managed by waddlec, and these are
/// the files it was created from (`deploy` reads them back).
pub const DESCRIPTION_PREFIX: &str = "Managed by waddlec.";

/// One VM to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    pub vmid: u32,
    pub name: String,
    /// `(parameter, value)` in creation order.
    pub params: Vec<(String, String)>,
    /// The blueprint's disk size (`8G`): scsi0 is grown to it after import.
    pub disk: String,
    /// Volume IDs of the boot image and the seed disk.
    /// The Proxmox node it is created on.
    pub node: String,
    pub image_volume: String,
    pub seed_volume: String,
    pub debian: bool,
    /// Whether the guest agent answers (Debian images; Talos with the
    /// extension).
    pub agent: bool,
}

impl VmConfig {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The volume ID of a file in the `import` content of the file storage of
/// the host `vm` runs on.
pub fn import_volume(model: &Model, vm: &Vm, file: &str) -> String {
    format!("{}:import/{file}", model.host_of(vm).file_storage)
}

/// Every VM with a plan, in VMID order.
pub fn vm_configs(model: &Model, plans: &[VmImages]) -> Vec<VmConfig> {
    model
        .vms
        .iter()
        .filter_map(|vm| {
            Some(vm_config(
                model,
                vm,
                plans.iter().find(|p| p.vm == vm.name)?,
            ))
        })
        .collect()
}

fn vm_config(model: &Model, vm: &Vm, plan: &VmImages) -> VmConfig {
    let debian = matches!(vm.os, GuestOs::Debian { .. });
    let agent = debian
        || model
            .talos
            .as_ref()
            .is_some_and(|t| t.extensions.iter().any(|e| e == TALOS_GUEST_AGENT));
    let host = model.host_of(vm);
    let storage = &host.disk_storage;
    let image_volume = import_volume(model, vm, plan.boot.file());
    let seed_volume = import_volume(model, vm, &plan.seed.file);
    // An I/O thread per disk needs the single-controller model; Talos
    // bootstrap hangs on "VirtIO SCSI single" (talos#11173).
    let (scsihw, iothread) = if debian {
        ("virtio-scsi-single", ",iothread=1")
    } else {
        ("virtio-scsi-pci", "")
    };
    let mut params: Vec<(String, String)> = Vec::new();
    let mut set = |key: &str, value: String| params.push((key.to_string(), value));
    for (key, value) in [
        ("name", vm.name.clone()),
        ("description", description(model, plan)),
        ("tags", vm.tags.join(";")),
        ("ostype", "l26".into()),
        ("cpu", vm.cpu.to_string()),
        ("cores", vm.cores.to_string()),
        (
            "memory",
            vm.memory.whole_mib().unwrap_or_default().to_string(),
        ),
        ("onboot", u8::from(vm.onboot).to_string()),
        ("agent", format!("enabled={}", u8::from(agent))),
        ("scsihw", scsihw.into()),
    ] {
        set(key, value);
    }
    if debian {
        set("bios", "ovmf".into());
        set(
            "efidisk0",
            format!("{storage}:1,efitype=4m,pre-enrolled-keys=0"),
        );
    }
    set(
        "scsi0",
        format!("{storage}:0,import-from={image_volume},discard=on{iothread}"),
    );
    set(
        "scsi1",
        format!("{storage}:0,import-from={seed_volume}{iothread}"),
    );
    set("boot", "order=scsi0".into());
    for (index, nic) in vm.nics.iter().enumerate() {
        let tag = nic.tag.map(|tag| format!(",tag={tag}")).unwrap_or_default();
        // A VNet's frames travel in VXLAN: the guest must send smaller
        // ones, and virtio hands it the MTU set here.
        let mtu = model
            .vnet_mtu(&nic.bridge)
            .map(|mtu| format!(",mtu={mtu}"))
            .unwrap_or_default();
        set(
            &format!("net{index}"),
            format!("virtio,bridge={},macaddr={}{tag}{mtu}", nic.bridge, nic.mac),
        );
    }
    set("serial0", "socket".into());
    if debian {
        set("vga", "serial0".into());
    }
    VmConfig {
        vmid: vm.id,
        name: vm.name.clone(),
        node: host.node.clone(),
        params,
        disk: vm.disk.to_string(),
        image_volume,
        seed_volume,
        debian,
        agent,
    }
}

/// The description names the files the VM was created from, which is how
/// a later deploy knows whether the VM still matches the plan; a Talos
/// node's also names the Kubernetes version its machine config runs, so a
/// later deploy knows an upgrade's starting point and its skew.
fn description(model: &Model, plan: &VmImages) -> String {
    let kubernetes = match (&plan.boot, &model.talos) {
        (BootImage::Talos(_), Some(cluster)) => format!(" kubernetes={}", cluster.kubernetes),
        _ => String::new(),
    };
    format!(
        "{DESCRIPTION_PREFIX} image={} seed={}{kubernetes}",
        plan.boot.file(),
        plan.seed.file
    )
}

/// The Kubernetes version a Talos node's description records, if any
/// (descriptions written before it was recorded have none).
pub fn described_kubernetes(description: &str) -> Option<String> {
    let rest = description.trim().strip_prefix(DESCRIPTION_PREFIX)?;
    rest.split_whitespace()
        .find_map(|word| word.strip_prefix("kubernetes="))
        .map(str::to_string)
}

/// The image and seed files a description names, if waddlec wrote it.
pub fn described_files(description: &str) -> Option<(String, String)> {
    let rest = description.trim().strip_prefix(DESCRIPTION_PREFIX)?;
    let mut image = None;
    let mut seed = None;
    for word in rest.split_whitespace() {
        if let Some(file) = word.strip_prefix("image=") {
            image = Some(file.to_string());
        } else if let Some(file) = word.strip_prefix("seed=") {
            seed = Some(file.to_string());
        }
    }
    Some((image?, seed?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_read_back_what_they_name() {
        assert_eq!(
            described_files("Managed by waddlec. image=a-1.qcow2 seed=a-seed-2.raw\n"),
            Some(("a-1.qcow2".into(), "a-seed-2.raw".into()))
        );
        assert_eq!(described_files("hand-made VM"), None);
        assert_eq!(described_files("Managed by waddlec. image=a.qcow2"), None);
        assert_eq!(
            described_kubernetes("Managed by waddlec. image=t.qcow2 seed=s.raw kubernetes=1.35.1"),
            Some("1.35.1".into())
        );
        assert_eq!(
            described_kubernetes("Managed by waddlec. image=t.qcow2 seed=s.raw"),
            None
        );
    }
}
