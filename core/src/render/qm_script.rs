//! The `qm` script: the seed's hand-typed VM creation for every VM, in VMID
//! order, idempotent and checked before it changes anything. Each VM is
//! created with exactly the parameters `plan::vm` defines (the ones
//! `waddlec deploy` sends to the API).

use serde::Serialize;

use super::{RenderError, Templates};
use crate::artifact::Artifact;
use crate::model::{Host, Model};
use crate::plan::images::VmImages;
use crate::plan::vm::{vm_configs, VmConfig};

#[derive(Serialize)]
struct Param {
    key: String,
    value: String,
    /// ` \` on every line but the last.
    continuation: &'static str,
}

#[derive(Serialize)]
struct Vm {
    id: u32,
    name: String,
    summary: String,
    disk: String,
    params: Vec<Param>,
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

fn vm(config: &VmConfig) -> Vm {
    let count = config.params.len();
    Vm {
        id: config.vmid,
        name: config.name.clone(),
        summary: format!(
            "{} vCPU, {} MiB, {} disk, {}",
            config.param("cores").unwrap_or_default(),
            config.param("memory").unwrap_or_default(),
            config.disk,
            if config.debian {
                "Debian (UEFI)"
            } else {
                "Talos"
            }
        ),
        disk: config.disk.clone(),
        params: config
            .params
            .iter()
            .enumerate()
            .map(|(i, (key, value))| Param {
                key: key.clone(),
                value: value.clone(),
                continuation: if i + 1 < count { " \\" } else { "" },
            })
            .collect(),
    }
}

/// The script, booting each VM from the disks `plans` name.
/// `host`'s script: `qm` creates a VM on the node it runs on, so each
/// host gets its own, for the VMs it runs.
pub fn render(
    templates: &Templates,
    model: &Model,
    host: &Host,
    plans: &[VmImages],
) -> Result<Vec<Artifact>, RenderError> {
    let configs: Vec<_> = vm_configs(model, plans)
        .into_iter()
        .filter(|config| config.node == host.node)
        .collect();
    let mut images: Vec<String> = configs
        .iter()
        .flat_map(|c| [c.image_volume.clone(), c.seed_volume.clone()])
        .collect();
    images.sort();
    images.dedup();
    let data = Data {
        project: &model.project.name,
        node: &host.node,
        disk_storage: &host.disk_storage,
        file_storage: &host.file_storage,
        images,
        vms: configs.iter().map(vm).collect(),
    };
    Ok(vec![Artifact::file(
        "host/create-vms.sh",
        "qm-script",
        templates.render("create-vms.sh", &data)?,
    )
    .executable()])
}
