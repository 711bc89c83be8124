//! The plan: desired state against the host's, as a list of steps — pure,
//! so it is shown before anything happens and tested without a host.
//!
//! What an operator burned by provider drift and replace cascades expects:
//! a VM whose image or seed changed is replaced only when named with
//! `--allow-replace VM` (otherwise the plan says what it would do and stops
//! short), and never more than one Talos control-plane node per deploy
//! (etcd keeps its quorum); settings that can change in place are updated
//! in place; a disk is only ever grown; a VM the blueprint does not know is
//! reported, never touched; a VM with a blueprint VMID but another name, or
//! an unknown VM with a blueprint VM's name or MAC, is a conflict.

use serde::Serialize;

use super::desired::{Desired, Upload};
use super::observed::{HostVm, Observed};
use crate::plan::vm::{described_files, VmConfig};

/// Settings compared on an existing VM and changed in place.
const UPDATABLE: &[&str] = &["cores", "memory", "cpu", "tags", "onboot", "agent"];

/// One thing the deploy does (or would do, or refuses to do).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Step {
    /// Upload a file the host lacks, from `path` in the tree.
    Upload {
        file: String,
        bytes: u64,
        sha256: String,
        #[serde(skip)]
        path: std::path::PathBuf,
    },
    /// The host has the file (its name carries its hash).
    KeepUpload {
        file: String,
    },
    /// The tree lacks a file the host lacks too (built with --no-images).
    MissingFile {
        file: String,
    },
    /// Create, grow the boot disk, start, wait for the guest agent.
    Create {
        vmid: u32,
        name: String,
        image: String,
        seed: String,
    },
    /// Stop, destroy and create again from new files (`--allow-replace
    /// VM`): its disks, and the state on them, are lost.
    Replace {
        vmid: u32,
        name: String,
        /// What changed: `image a → b` or `seed (configuration) a → b`.
        change: String,
        allowed: bool,
    },
    /// Change settings in place.
    Update {
        vmid: u32,
        name: String,
        changes: Vec<Change>,
    },
    /// Grow scsi0 to the blueprint's size.
    Resize {
        vmid: u32,
        name: String,
        to: String,
    },
    Start {
        vmid: u32,
        name: String,
    },
    /// Nothing to do.
    Keep {
        vmid: u32,
        name: String,
    },
    /// Cannot proceed for this VM (stops the deploy before any change).
    Conflict {
        vmid: u32,
        reason: String,
    },
    /// On the host but not in the blueprint: reported, left alone.
    Unknown {
        vmid: u32,
        name: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub key: String,
    pub from: String,
    pub to: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub steps: Vec<Step>,
}

impl Plan {
    /// True if applying would change the host.
    pub fn changes_anything(&self) -> bool {
        self.steps.iter().any(|step| {
            matches!(
                step,
                Step::Upload { .. }
                    | Step::Create { .. }
                    | Step::Update { .. }
                    | Step::Resize { .. }
                    | Step::Start { .. }
                    | Step::Replace { allowed: true, .. }
            )
        })
    }

    /// Conflicts stop the deploy before any change.
    pub fn conflicts(&self) -> Vec<&Step> {
        self.steps
            .iter()
            .filter(|step| matches!(step, Step::Conflict { .. }))
            .collect()
    }

    /// Steps left undone on purpose: replaces without `--allow-replace`,
    /// VMs whose files the tree lacks.
    pub fn held_back(&self) -> usize {
        self.steps
            .iter()
            .filter(|step| {
                matches!(
                    step,
                    Step::Replace { allowed: false, .. } | Step::MissingFile { .. }
                )
            })
            .count()
    }

    /// One line per step, for people.
    pub fn lines(&self) -> Vec<String> {
        self.steps.iter().map(line).collect()
    }
}

fn line(step: &Step) -> String {
    match step {
        Step::Upload { file, bytes, .. } => format!("upload   {file} ({})", human(*bytes)),
        Step::KeepUpload { file } => format!("keep     {file} (already on the host)"),
        Step::MissingFile { file } => format!(
            "missing  {file}: not in the tree (built with --no-images?); VMs booting it wait"
        ),
        Step::Create {
            vmid,
            name,
            image,
            seed,
        } => format!("create   VM {vmid} {name} from {image} and {seed}; grow, start"),
        Step::Replace {
            vmid,
            name,
            change,
            allowed,
        } => {
            if *allowed {
                format!("replace  VM {vmid} {name} ({change}; its disks are recreated)")
            } else {
                format!(
                    "replace  VM {vmid} {name} ({change}) — needs --allow-replace {name}, not done"
                )
            }
        }
        Step::Update {
            vmid,
            name,
            changes,
        } => format!(
            "update   VM {vmid} {name}: {}",
            changes
                .iter()
                .map(|c| format!("{} {} → {}", c.key, c.from, c.to))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Step::Resize { vmid, name, to } => format!("grow     VM {vmid} {name} scsi0 to {to}"),
        Step::Start { vmid, name } => format!("start    VM {vmid} {name}"),
        Step::Keep { vmid, name } => format!("ok       VM {vmid} {name}"),
        Step::Conflict { vmid, reason } => format!("CONFLICT VM {vmid}: {reason}"),
        Step::Unknown { vmid, name } => {
            format!("unknown  VM {vmid} {name}: not in the blueprint; left alone")
        }
    }
}

fn human(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} bytes")
    }
}

/// The steps that take `observed` to `desired`; `allow_replace` names the
/// VMs that may be replaced.
pub fn plan(desired: &Desired, observed: &Observed, allow_replace: &[String]) -> Plan {
    let mut vm_steps = Vec::new();
    let missing = |file: &str| {
        desired
            .uploads
            .iter()
            .any(|u| u.file == file && u.path.is_none() && !observed.imports.contains_key(file))
    };
    for vm in &desired.vms {
        let (image, seed) = files_of(vm);
        if missing(&image) || missing(&seed) {
            continue;
        }
        match observed.vms.get(&vm.vmid) {
            None => vm_steps.push(Step::Create {
                vmid: vm.vmid,
                name: vm.name.clone(),
                image,
                seed,
            }),
            Some(host) => {
                let allowed = allow_replace.contains(&vm.name);
                vm_steps.extend(existing(vm, host, &image, &seed, allowed));
            }
        }
    }
    // Seeds only for the VMs being created; images whenever the host lacks
    // them.
    let seeds_needed: Vec<String> = vm_steps
        .iter()
        .filter_map(|step| match step {
            Step::Create { vmid, .. }
            | Step::Replace {
                vmid,
                allowed: true,
                ..
            } => desired.vms.iter().find(|vm| vm.vmid == *vmid),
            _ => None,
        })
        .map(|vm| files_of(vm).1)
        .collect();
    let mut steps: Vec<Step> = desired
        .uploads
        .iter()
        .filter(|upload| !upload.seed || seeds_needed.contains(&upload.file))
        .map(|upload| upload_step(upload, observed))
        .collect();
    steps.extend(vm_steps);
    for host in observed.vms.values() {
        if desired.vms.iter().any(|vm| vm.vmid == host.vmid) {
            continue;
        }
        match double_of(desired, host) {
            Some(reason) => steps.push(Step::Conflict {
                vmid: host.vmid,
                reason,
            }),
            None => steps.push(Step::Unknown {
                vmid: host.vmid,
                name: host.name.clone(),
            }),
        }
    }
    let talos_replaced: Vec<u32> = steps
        .iter()
        .filter_map(|step| match step {
            Step::Replace {
                vmid,
                allowed: true,
                ..
            } => desired
                .vms
                .iter()
                .find(|vm| vm.vmid == *vmid && !vm.debian)
                .map(|vm| vm.vmid),
            _ => None,
        })
        .collect();
    if talos_replaced.len() > 1 {
        steps.push(Step::Conflict {
            vmid: talos_replaced[1],
            reason: format!(
                "replacing Talos nodes {talos_replaced:?} in one deploy would cost etcd its quorum; allow one per deploy"
            ),
        });
    }
    Plan { steps }
}

/// Why an unknown VM looks like a hand-built copy of a blueprint VM (same
/// name or same MAC: two of them would fight over an address).
fn double_of(desired: &Desired, host: &HostVm) -> Option<String> {
    for vm in &desired.vms {
        if host.name == vm.name {
            return Some(format!(
                "VM {} on the host is named `{}` like the blueprint's VM {}; remove or rename it",
                host.vmid, host.name, vm.vmid
            ));
        }
        for (key, value) in vm.params.iter().filter(|(k, _)| k.starts_with("net")) {
            let mac = normalize(key, value);
            let clash = host
                .config
                .iter()
                .filter(|(k, _)| k.starts_with("net"))
                .any(|(k, v)| mac_of(&normalize(k, v)) == mac_of(&mac));
            if clash {
                return Some(format!(
                    "VM {} `{}` on the host has the MAC of the blueprint's VM {} `{}`; remove it",
                    host.vmid, host.name, vm.vmid, vm.name
                ));
            }
        }
    }
    None
}

/// The MAC in a normalised net value (`model mac rest`).
fn mac_of(normalized: &str) -> &str {
    normalized.split(' ').nth(1).unwrap_or_default()
}

fn upload_step(upload: &Upload, observed: &Observed) -> Step {
    let file = upload.file.clone();
    match (observed.imports.get(&upload.file), &upload.path) {
        // The name carries the hash; a size mismatch is a broken upload.
        (Some(size), _) if upload.path.is_none() || *size == upload.bytes => {
            Step::KeepUpload { file }
        }
        (_, Some(path)) => Step::Upload {
            file,
            bytes: upload.bytes,
            sha256: upload.sha256.clone(),
            path: path.clone(),
        },
        (_, None) => Step::MissingFile { file },
    }
}

/// The boot image and seed file names of a VM's config.
pub fn files_of(vm: &VmConfig) -> (String, String) {
    let file = |volume: &str| volume.rsplit('/').next().unwrap_or_default().to_string();
    (file(&vm.image_volume), file(&vm.seed_volume))
}

fn existing(vm: &VmConfig, host: &HostVm, image: &str, seed: &str, allow: bool) -> Vec<Step> {
    let (vmid, name) = (vm.vmid, vm.name.clone());
    if host.name != vm.name {
        return vec![Step::Conflict {
            vmid,
            reason: format!(
                "the host's VM {vmid} is `{}`, the blueprint's is `{}`; refusing to touch someone else's VM",
                host.name, vm.name
            ),
        }];
    }
    if let Some(lock) = host.config.get("lock") {
        return vec![Step::Conflict {
            vmid,
            reason: format!(
                "VM {vmid} is locked ({lock}) by a running task; wait for it and deploy again"
            ),
        }];
    }
    let described = host
        .config
        .get("description")
        .and_then(|d| described_files(d));
    let change = match &described {
        Some((host_image, _)) if host_image != image => {
            Some(format!("image {host_image} → {image}"))
        }
        Some((_, host_seed)) if host_seed != seed => {
            Some(format!("seed (configuration) {host_seed} → {seed}"))
        }
        Some(_) => None,
        None => Some(format!("a VM not created by waddlec → {image}")),
    };
    if let Some(change) = change {
        return vec![Step::Replace {
            vmid,
            name,
            change,
            allowed: allow,
        }];
    }
    let mut steps = Vec::new();
    let changes: Vec<Change> = UPDATABLE
        .iter()
        .copied()
        .chain(
            vm.params
                .iter()
                .map(|(k, _)| k.as_str())
                .filter(|k| k.starts_with("net")),
        )
        .filter_map(|key| {
            let want = vm.param(key).unwrap_or_default();
            let have = host.config.get(key).map(String::as_str).unwrap_or_default();
            (normalize(key, want) != normalize(key, have)).then(|| Change {
                key: key.to_string(),
                from: have.to_string(),
                to: want.to_string(),
            })
        })
        .collect();
    if !changes.is_empty() {
        steps.push(Step::Update {
            vmid,
            name: name.clone(),
            changes,
        });
    }
    let disk_size = host
        .config
        .get("scsi0")
        .and_then(|scsi0| scsi0.split(',').find_map(|item| item.strip_prefix("size=")))
        .and_then(parse_size);
    if disk_size.is_none_or(|size| Some(size) < parse_size(&vm.disk)) {
        steps.push(Step::Resize {
            vmid,
            name: name.clone(),
            to: vm.disk.clone(),
        });
    }
    if !host.running {
        steps.push(Step::Start {
            vmid,
            name: name.clone(),
        });
    }
    if steps.is_empty() {
        steps.push(Step::Keep { vmid, name });
    }
    steps
}

/// A setting's value as Proxmox means it, so that its own spelling of what
/// we sent (`virtio=BC:24:…,bridge=vmbr1`, `1` for `enabled=1`, tags in
/// another order) is not drift.
fn normalize(key: &str, value: &str) -> String {
    let value = value.trim();
    if key.starts_with("net") {
        let mut model = String::new();
        let mut mac = String::new();
        let mut rest: Vec<String> = Vec::new();
        for (i, item) in value.split(',').enumerate() {
            match item.split_once('=') {
                Some(("macaddr", v)) => mac = v.to_ascii_lowercase(),
                Some(("model", v)) => model = v.to_string(),
                Some((k, v))
                    if i == 0
                        && !v.is_empty()
                        && k.chars().all(|c| c.is_ascii_alphanumeric())
                        && v.contains(':') =>
                {
                    model = k.to_string();
                    mac = v.to_ascii_lowercase();
                }
                Some((k, v)) => rest.push(format!("{k}={v}")),
                None if i == 0 => model = item.to_string(),
                None => rest.push(item.to_string()),
            }
        }
        rest.sort();
        return format!("{model} {mac} {}", rest.join(","));
    }
    match key {
        "agent" => {
            let enabled = value
                .split(',')
                .find_map(|item| match item.split_once('=') {
                    Some(("enabled", v)) => Some(v),
                    None => Some(item),
                    _ => None,
                })
                .unwrap_or("0");
            enabled.to_string()
        }
        "tags" => {
            let mut tags: Vec<&str> = value
                .split([';', ',', ' '])
                .filter(|t| !t.is_empty())
                .collect();
            tags.sort();
            tags.join(";")
        }
        _ => value.to_string(),
    }
}

/// `8G`, `512M`, `2252M` → bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let number: u64 = number.parse().ok()?;
    let shift = match unit {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return None,
    };
    number.checked_shl(shift)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn vm() -> VmConfig {
        VmConfig {
            vmid: 100,
            name: "edge".into(),
            params: vec![
                ("name".into(), "edge".into()),
                ("tags".into(), "edge;infra".into()),
                ("cores".into(), "2".into()),
                ("memory".into(), "2048".into()),
                ("cpu".into(), "host".into()),
                ("onboot".into(), "1".into()),
                ("agent".into(), "enabled=1".into()),
                (
                    "net0".into(),
                    "virtio,bridge=vmbr1,macaddr=bc:24:11:00:00:01".into(),
                ),
            ],
            disk: "8G".into(),
            image_volume: "local:import/edge-a.qcow2".into(),
            seed_volume: "local:import/edge-seed-b.raw".into(),
            debian: true,
            agent: true,
        }
    }

    fn desired() -> Desired {
        Desired {
            uploads: vec![
                Upload {
                    file: "edge-a.qcow2".into(),
                    seed: false,
                    path: Some("images/edge-a.qcow2".into()),
                    sha256: "aa".into(),
                    bytes: 100,
                },
                Upload {
                    file: "edge-seed-b.raw".into(),
                    seed: true,
                    path: Some("vms/edge/seed.img".into()),
                    sha256: "bb".into(),
                    bytes: 10,
                },
            ],
            vms: vec![vm()],
        }
    }

    /// The host after a deploy of `desired()`, in Proxmox's own spelling.
    fn deployed() -> Observed {
        let config: BTreeMap<String, String> = [
            (
                "description",
                "Managed by waddlec. image=edge-a.qcow2 seed=edge-seed-b.raw",
            ),
            ("tags", "infra;edge"),
            ("cores", "2"),
            ("memory", "2048"),
            ("cpu", "host"),
            ("onboot", "1"),
            ("agent", "1"),
            ("net0", "virtio=BC:24:11:00:00:01,bridge=vmbr1"),
            ("scsi0", "vmdata:vm-100-disk-1,discard=on,size=8G"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Observed {
            imports: [
                ("edge-a.qcow2".to_string(), 100),
                ("edge-seed-b.raw".to_string(), 10),
            ]
            .into_iter()
            .collect(),
            vms: [(
                100,
                HostVm {
                    vmid: 100,
                    name: "edge".into(),
                    running: true,
                    config,
                },
            )]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn an_empty_host_gets_uploads_and_a_create() {
        let plan = plan(&desired(), &Observed::default(), &[]);
        assert_eq!(
            plan.lines(),
            [
                "upload   edge-a.qcow2 (100 bytes)",
                "upload   edge-seed-b.raw (10 bytes)",
                "create   VM 100 edge from edge-a.qcow2 and edge-seed-b.raw; grow, start",
            ]
        );
        assert!(plan.changes_anything());
    }

    #[test]
    fn a_deployed_host_in_proxmox_spelling_needs_nothing() {
        let plan = plan(&desired(), &deployed(), &[]);
        assert!(!plan.changes_anything(), "{:?}", plan.lines());
    }

    #[test]
    fn a_changed_image_is_replaced_only_when_allowed() {
        let mut desired = desired();
        desired.vms[0].image_volume = "local:import/edge-c.qcow2".into();
        desired.uploads[0].file = "edge-c.qcow2".into();
        let held = plan(&desired, &deployed(), &[]);
        assert!(matches!(
            held.steps.last(),
            Some(Step::Replace { allowed: false, .. })
        ));
        assert_eq!(held.held_back(), 1);
        let allowed = plan(&desired, &deployed(), &["edge".to_string()]);
        assert!(matches!(
            allowed.steps.last(),
            Some(Step::Replace { allowed: true, .. })
        ));
    }

    #[test]
    fn drift_is_updated_in_place_and_disks_only_grow() {
        let mut host = deployed();
        let vm = host.vms.get_mut(&100).unwrap();
        vm.config.insert("cores".into(), "1".into());
        vm.config
            .insert("scsi0".into(), "vmdata:vm-100-disk-1,size=2252M".into());
        vm.running = false;
        let plan = plan(&desired(), &host, &[]);
        assert_eq!(
            plan.lines()[1..],
            [
                "update   VM 100 edge: cores 1 → 2",
                "grow     VM 100 edge scsi0 to 8G",
                "start    VM 100 edge",
            ]
        );
        let mut bigger = deployed();
        bigger
            .vms
            .get_mut(&100)
            .unwrap()
            .config
            .insert("scsi0".into(), "vmdata:vm-100-disk-1,size=16G".into());
        assert!(!super::plan(&desired(), &bigger, &[]).changes_anything());
    }

    #[test]
    fn someone_elses_vm_is_a_conflict_and_unknown_vms_are_left_alone() {
        let mut host = deployed();
        host.vms.get_mut(&100).unwrap().name = "database".into();
        host.vms.insert(
            150,
            HostVm {
                vmid: 150,
                name: "old".into(),
                running: true,
                config: BTreeMap::new(),
            },
        );
        let plan = plan(&desired(), &host, &["edge".to_string()]);
        assert_eq!(plan.conflicts().len(), 1);
        assert_eq!(
            plan.lines().last().unwrap(),
            "unknown  VM 150 old: not in the blueprint; left alone"
        );
    }

    #[test]
    fn a_changed_seed_is_held_back_unless_its_vm_is_named() {
        let mut desired = desired();
        desired.vms[0].seed_volume = "local:import/edge-seed-c.raw".into();
        desired.uploads[1].file = "edge-seed-c.raw".into();
        let held = plan(&desired, &deployed(), &["other".to_string()]);
        assert_eq!(
            held.lines().last().unwrap(),
            "replace  VM 100 edge (seed (configuration) edge-seed-b.raw → edge-seed-c.raw) — needs --allow-replace edge, not done"
        );
    }

    #[test]
    fn a_hand_built_copy_under_another_vmid_is_a_conflict() {
        let mut host = Observed::default();
        host.vms.insert(
            120,
            HostVm {
                vmid: 120,
                name: "edge-old".into(),
                running: true,
                config: [(
                    "net0".to_string(),
                    "virtio=BC:24:11:00:00:01,bridge=vmbr1".to_string(),
                )]
                .into_iter()
                .collect(),
            },
        );
        let plan = plan(&desired(), &host, &[]);
        assert_eq!(plan.conflicts().len(), 1, "{:?}", plan.lines());
        assert!(plan.lines().last().unwrap().contains("has the MAC of"));
    }

    #[test]
    fn a_tree_without_images_waits_for_them() {
        let mut desired = desired();
        desired.uploads[0].path = None;
        let plan = plan(&desired, &Observed::default(), &[]);
        assert_eq!(
            plan.lines(),
            ["missing  edge-a.qcow2: not in the tree (built with --no-images?); VMs booting it wait"]
        );
    }
}
