//! The VMs layer, from the platform as the API showed it: each VM of the
//! blueprint present under its name, on the node the blueprint places it
//! on (a cluster: where `/cluster/resources` says it lives), running, its
//! guest agent answering (`POST …/agent/ping`, which only asks the agent
//! to answer), and booted from the image and seed of the current build —
//! the files its description records, as `deploy` decides whether a VM is
//! current. Every check names the node it was made on.

use crate::checks::{Check, Outcome};
use crate::deploy::observed::HostVm;
use crate::plan::vm::{described_files, vm_configs, VmConfig};
use crate::Compiled;

use super::host::Reached;

const LAYER: &str = "vms";

/// The VMs' checks; `api` is the host layer's API check, which says why
/// when `reached` is `None`.
pub fn check(compiled: &Compiled, reached: Option<&Reached>, api: &Check) -> Vec<Check> {
    let wanted = vm_configs(&compiled.model, &compiled.images);
    let Some(reached) = reached else {
        let why = match &api.outcome {
            Outcome::Failed { why, .. } | Outcome::Unreachable { why, .. } => why.as_str(),
            Outcome::Pass { .. } => "",
        };
        return wanted
            .iter()
            .map(|vm| {
                Check::unreachable(
                    LAYER,
                    format!("VM {} {}", vm.vmid, vm.name),
                    format!("behind the Proxmox API: {why}"),
                    "see the host layer's API check",
                )
                .on_node(&vm.node)
            })
            .collect();
    };
    let cluster = compiled.model.proxmox.single_host().is_none();
    wanted
        .iter()
        .flat_map(|vm| placed(vm, reached, cluster))
        .collect()
}

/// Where the VM lives, against the blueprint (a cluster), then its own
/// checks on that node.
fn placed(vm: &VmConfig, reached: &Reached, cluster: bool) -> Vec<Check> {
    let name = |what: &str| format!("VM {} {} {what}", vm.vmid, vm.name);
    let Some(node) = reached.placed.get(&vm.vmid) else {
        let whose = if cluster { "cluster" } else { "host" };
        return vec![Check::failed(
            LAYER,
            name("exists"),
            format!("the {whose} has no such VM"),
            "run `waddlec deploy`",
        )
        .on_node(&vm.node)];
    };
    let mut checks = Vec::new();
    if cluster {
        checks.push(
            if *node == vm.node {
                Check::pass(
                    LAYER,
                    name("node"),
                    format!("on {node}, as the blueprint places it"),
                )
            } else {
                Check::failed(
                    LAYER,
                    name("node"),
                    format!("runs on {node}, the blueprint places it on {}", vm.node),
                    "run `waddlec deploy`: it migrates the VM to the blueprint's node",
                )
            }
            .on_node(node),
        );
    }
    if reached.members.get(node) == Some(&false) {
        checks.push(
            Check::unreachable(
                LAYER,
                format!("VM {} {}", vm.vmid, vm.name),
                format!("its node {node} is offline"),
                format!("see the host layer's `node {node}` check"),
            )
            .on_node(node),
        );
        return checks;
    }
    match reached.nodes.get(node).and_then(|n| n.vms.get(&vm.vmid)) {
        Some(host) => checks.extend(
            one(vm, node, host, reached)
                .into_iter()
                .map(|check| check.on_node(node)),
        ),
        // A node of the cluster the blueprint does not use: not read.
        None => checks.push(
            Check::unreachable(
                LAYER,
                format!("VM {} {}", vm.vmid, vm.name),
                format!("{node} is no host of the blueprint: its VMs are not read"),
                "run `waddlec deploy`: it migrates the VM to the blueprint's node",
            )
            .on_node(node),
        ),
    }
    checks
}

/// The VM's own checks on `node`, which has it as `host`.
fn one(vm: &VmConfig, node: &str, host: &HostVm, reached: &Reached) -> Vec<Check> {
    let name = |what: &str| format!("VM {} {} {what}", vm.vmid, vm.name);
    if host.name != vm.name {
        return vec![Check::failed(
            LAYER,
            name("exists"),
            format!("VM {} on the host is `{}`", vm.vmid, host.name),
            "another VM holds the blueprint's ID: give one of them another ID",
        )];
    }
    let mut checks = Vec::new();
    let image = file_of(&vm.image_volume);
    let seed = file_of(&vm.seed_volume);
    let files = match host
        .config
        .get("description")
        .and_then(|d| described_files(d))
    {
        Some((host_image, host_seed)) if host_image == image && host_seed == seed => {
            Check::pass(LAYER, name("image and seed"), format!("{image}, {seed}"))
        }
        Some((host_image, host_seed)) => Check::failed(
            LAYER,
            name("image and seed"),
            format!(
                "it runs {host_image} with {host_seed}; the current build is {image} with {seed}"
            ),
            "run `waddlec deploy` (a Talos node is changed in place, another VM needs --allow-replace)",
        ),
        None => Check::failed(
            LAYER,
            name("image and seed"),
            "its description records no files: it was not created by waddlec",
            "let `waddlec deploy --allow-replace` create it",
        ),
    };
    checks.push(files);
    if !host.running {
        checks.push(Check::failed(
            LAYER,
            name("running"),
            "stopped",
            format!(
                "start it: `qm start {}` on {node}, or in the Proxmox UI",
                vm.vmid
            ),
        ));
        return checks;
    }
    checks.push(Check::pass(LAYER, name("running"), ""));
    if vm.agent {
        let path = format!(
            "/nodes/{}/qemu/{}/agent/ping",
            crate::net::pve::segment(node),
            vm.vmid
        );
        checks.push(match reached.pve.post(&path, &[]) {
            Ok(_) => Check::pass(LAYER, name("guest agent"), "answers"),
            Err(e @ crate::net::pve::PveError::Unreachable { .. }) => Check::unreachable(
                LAYER,
                name("guest agent"),
                e.to_string(),
                "the API stopped answering: see the host layer",
            ),
            Err(e) => Check::failed(
                LAYER,
                name("guest agent"),
                e.to_string(),
                "a VM that just started answers once booted; else look at its console",
            ),
        });
    }
    checks
}

/// `local:import/a.qcow2` → `a.qcow2`.
fn file_of(volume: &str) -> String {
    volume
        .split_once(":import/")
        .map_or(volume, |(_, file)| file)
        .to_string()
}
