//! The plan: desired state against the host's, as a list of steps — pure,
//! so it is shown before anything happens and tested without a host.
//!
//! What an operator burned by provider drift and replace cascades expects:
//! the bridges come first (an internal one the node lacks is created and
//! the network applied; one that differs is changed only if it carries
//! waddlec's comment, [`BRIDGE_MARKER`]; the public one, the uplink, is
//! only checked; pending network changes someone else made are never
//! applied by us); a VM whose image or seed changed is replaced only when
//! named with `--allow-replace VM` (otherwise the plan says what it would
//! do and stops short); settings that can change in place are updated in
//! place, and those Proxmox holds for the next start are shown as pending
//! and applied by a clean restart only when named with `--allow-restart
//! VM`; a Talos node whose image or machine config changed is upgraded or
//! configured in place through its Talos API, node by node in the order
//! `rollout` gives, and a replace or restart of a Talos node goes alone
//! (etcd keeps its quorum); a disk is only ever
//! grown; a seed disk of the blueprint's that no step of this plan needs
//! is removed from the host (it may hold secrets), whatever left it there;
//! a VM the blueprint does not know is reported, never touched; a VM with
//! a blueprint VMID but another name, or an unknown VM with a blueprint
//! VM's name or MAC, is a conflict.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::desired::{Desired, DesiredBridge, TalosTarget, Upload};
use super::etcd::{hex, EtcdExit};
use super::observed::{HostIface, HostVm, Observed};
use super::rollout::{self, KubernetesChange};
use crate::plan::images::is_seed_file_of;
use crate::plan::vm::{described_files, described_kubernetes, VmConfig};

/// Settings compared on an existing VM and changed in place.
const UPDATABLE: &[&str] = &["cores", "memory", "cpu", "tags", "onboot", "agent"];

/// The comment on every bridge waddlec creates: a bridge carrying it is the
/// blueprint's to change.
pub const BRIDGE_MARKER: &str = "managed by waddlec";

/// What the operator allows and asks for beyond the blueprint.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options<'a> {
    /// VMs that may be destroyed and created again.
    pub allow_replace: &'a [String],
    /// VMs that may be shut down cleanly and started again to apply
    /// pending settings.
    pub allow_restart: &'a [String],
    /// Leave the host's setup, bridges included, alone: only check the
    /// bridges the VMs use.
    pub skip_host: bool,
}

/// One thing the deploy does (or would do, or refuses to do).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Step {
    /// Add an internal bridge to the node's network configuration (the
    /// host's address on it, no ports, autostart, [`BRIDGE_MARKER`]).
    CreateBridge {
        bridge: String,
        cidr: String,
        /// The host's IPv6 address with its prefix, if the bridge has IPv6.
        #[serde(skip_serializing_if = "Option::is_none")]
        cidr6: Option<String>,
        /// `bridge_vlan_aware`.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        vlan_aware: bool,
    },
    /// Set a bridge waddlec made back to the blueprint's settings.
    UpdateBridge {
        bridge: String,
        changes: Vec<Change>,
    },
    /// Apply the node's pending network configuration, which holds only
    /// the blueprint's bridges' changes, and wait for it.
    ApplyNetwork {
        bridges: Vec<String>,
    },
    /// The bridge is as the blueprint needs it.
    KeepBridge {
        bridge: String,
    },
    /// A bridge the deploy cannot use or may not change (stops the deploy
    /// before any change).
    BridgeConflict {
        bridge: String,
        reason: String,
    },
    /// Delete a seed disk of the blueprint's that no step needs from the
    /// host's storage: it may hold secrets.
    RemoveSeed {
        file: String,
    },
    /// Upload a file the host lacks, from `path` in the tree.
    Upload {
        file: String,
        bytes: u64,
        sha256: String,
        #[serde(skip)]
        path: std::path::PathBuf,
    },
    /// Have the host download an image the artifact store holds, through
    /// a short-lived presigned URL, checked by Proxmox against `sha256`:
    /// the bytes do not pass through the operator's machine.
    Pull {
        file: String,
        bytes: u64,
        sha256: String,
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
    /// Before an allowed replace of a Talos control plane: the node leaves
    /// etcd (or its member is removed through a peer), checked again on the
    /// live cluster right before (`deploy::etcd`).
    EtcdLeave {
        vmid: u32,
        name: String,
        exit: EtcdExit,
    },
    /// After it: wait until the node answers its Talos API and etcd is
    /// healthy with `members` again.
    EtcdRejoin {
        vmid: u32,
        name: String,
        members: Vec<String>,
    },
    /// A Talos node's machine config changed, its image not: the build's
    /// config goes to the node through its Talos API (`ApplyConfiguration`,
    /// mode AUTO; a control plane that reboots is quorum-checked before
    /// and waited for after), then its seed disk and description on the
    /// host are brought current. `preview` is the node's dry run, read by
    /// the workflow; `now` false: another node goes first (next deploy).
    ApplyConfig {
        vmid: u32,
        name: String,
        change: String,
        /// The Kubernetes version the config moves the node to: its kubelet
        /// is waited for after.
        kubernetes: Option<KubernetesChange>,
        preview: Option<ConfigPreview>,
        now: bool,
    },
    /// A Kubernetes upgrade's first phase on a control plane: its new
    /// config with the kubelet kept at the running version
    /// (`rollout::interim_config`), so its API server, controller manager
    /// and scheduler move first; quorum checked before, etcd healthy after.
    /// `preview` as for `ApplyConfig` (empty: the node is past this phase).
    KubernetesControlPlane {
        vmid: u32,
        name: String,
        change: KubernetesChange,
        preview: Option<ConfigPreview>,
        now: bool,
    },
    /// A Talos node's version or schematic changed: `Upgrade` to the
    /// factory `installer`, wait until it runs `version` (and, on a control
    /// plane, etcd is healthy again), then the description records the new
    /// image. Never a destroy.
    Upgrade {
        vmid: u32,
        name: String,
        change: String,
        installer: String,
        version: String,
        /// The Talos version the host's description records (from its
        /// image's name), if it names one.
        from_version: Option<String>,
        /// The version the node reports, read by the workflow: a node that
        /// runs `version` already while its record says otherwise (an
        /// upgrade cut short before its record) is not upgraded again.
        running: Option<String>,
        /// The host's description with the new image: what it records after.
        description: String,
        now: bool,
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
    /// Shut down cleanly and start again, so the settings Proxmox holds
    /// for the next start apply (`--allow-restart VM`); held back
    /// otherwise.
    Restart {
        vmid: u32,
        name: String,
        /// From the running value to the blueprint's.
        changes: Vec<Change>,
        allowed: bool,
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

/// What the node said its dry run of the new config would do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConfigPreview {
    /// The mode AUTO would use needs a reboot.
    pub reboot: bool,
    /// The node's unified diff; empty: the node runs this config already.
    pub diff: String,
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
                Step::CreateBridge { .. }
                    | Step::UpdateBridge { .. }
                    | Step::ApplyNetwork { .. }
                    | Step::RemoveSeed { .. }
                    | Step::Upload { .. }
                    | Step::Pull { .. }
                    | Step::Create { .. }
                    | Step::Update { .. }
                    | Step::Resize { .. }
                    | Step::Start { .. }
                    | Step::Replace { allowed: true, .. }
                    | Step::Restart { allowed: true, .. }
                    | Step::EtcdLeave { .. }
                    | Step::EtcdRejoin { .. }
                    | Step::ApplyConfig { now: true, .. }
                    | Step::KubernetesControlPlane { now: true, .. }
                    | Step::Upgrade { now: true, .. }
            )
        })
    }

    /// Conflicts stop the deploy before any change.
    pub fn conflicts(&self) -> Vec<&Step> {
        self.steps
            .iter()
            .filter(|step| matches!(step, Step::Conflict { .. } | Step::BridgeConflict { .. }))
            .collect()
    }

    /// Steps left undone on purpose: replaces without `--allow-replace`,
    /// restarts without `--allow-restart`, VMs whose files the tree lacks.
    pub fn held_back(&self) -> usize {
        self.steps
            .iter()
            .filter(|step| {
                matches!(
                    step,
                    Step::Replace { allowed: false, .. }
                        | Step::Restart { allowed: false, .. }
                        | Step::MissingFile { .. }
                        | Step::ApplyConfig { now: false, .. }
                        | Step::KubernetesControlPlane { now: false, .. }
                        | Step::Upgrade { now: false, .. }
                )
            })
            .count()
    }

    /// One line per step, for people.
    pub fn lines(&self) -> Vec<String> {
        self.steps.iter().map(line).collect()
    }
}

impl Step {
    /// The VM the step is about; `None` for a bridge's or a file's.
    pub fn vmid(&self) -> Option<u32> {
        match self {
            Step::Create { vmid, .. }
            | Step::Replace { vmid, .. }
            | Step::EtcdLeave { vmid, .. }
            | Step::EtcdRejoin { vmid, .. }
            | Step::ApplyConfig { vmid, .. }
            | Step::KubernetesControlPlane { vmid, .. }
            | Step::Upgrade { vmid, .. }
            | Step::Update { vmid, .. }
            | Step::Resize { vmid, .. }
            | Step::Restart { vmid, .. }
            | Step::Start { vmid, .. }
            | Step::Keep { vmid, .. }
            | Step::Conflict { vmid, .. }
            | Step::Unknown { vmid, .. } => Some(*vmid),
            Step::CreateBridge { .. }
            | Step::UpdateBridge { .. }
            | Step::ApplyNetwork { .. }
            | Step::KeepBridge { .. }
            | Step::BridgeConflict { .. }
            | Step::RemoveSeed { .. }
            | Step::Upload { .. }
            | Step::Pull { .. }
            | Step::KeepUpload { .. }
            | Step::MissingFile { .. } => None,
        }
    }
}

fn line(step: &Step) -> String {
    match step {
        Step::CreateBridge {
            bridge,
            cidr,
            cidr6,
            vlan_aware,
        } => {
            let vlan = if *vlan_aware { ", VLAN-aware" } else { "" };
            let cidr6 = cidr6.as_ref().map_or(String::new(), |c| format!(" {c}"));
            format!("bridge   create {bridge} {cidr}{cidr6} (no ports, autostart{vlan})")
        }
        Step::UpdateBridge { bridge, changes } => {
            format!("bridge   update {bridge}: {}", changes_text(changes))
        }
        Step::ApplyNetwork { bridges } => format!(
            "network  apply the node's pending network configuration ({})",
            bridges.join(", ")
        ),
        Step::KeepBridge { bridge } => format!("ok       bridge {bridge}"),
        Step::BridgeConflict { bridge, reason } => format!("CONFLICT bridge {bridge}: {reason}"),
        Step::RemoveSeed { file } => {
            format!("remove   {file} (a seed disk no VM is being created from)")
        }
        Step::Upload { file, bytes, .. } => format!("upload   {file} ({})", human(*bytes)),
        Step::Pull { file, bytes, .. } => {
            format!("pull     {file} ({}) from the artifact store", human(*bytes))
        }
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
        Step::EtcdLeave { vmid, name, exit } => match exit {
            EtcdExit::Leave { member } => format!(
                "etcd     {name} leaves etcd (member {}) before VM {vmid} is destroyed; every member is healthy and the rest keep quorum",
                hex(*member)
            ),
            EtcdExit::RemoveById { member, through } => format!(
                "etcd     {name}'s member {} is removed through {through} ({name} does not answer, or its etcd does not) before VM {vmid} is destroyed",
                hex(*member)
            ),
            EtcdExit::NotAMember => format!(
                "etcd     {name} is not an etcd member (it left before): nothing to leave; the other members are healthy"
            ),
            EtcdExit::NotBootstrapped => format!(
                "etcd     not bootstrapped yet (no control plane runs etcd): {name} is replaced without leaving"
            ),
        },
        Step::EtcdRejoin {
            vmid,
            name,
            members,
        } => format!(
            "etcd     wait until {name} (VM {vmid}) answers its Talos API and etcd is healthy with {}",
            members.join(", ")
        ),
        Step::ApplyConfig {
            vmid,
            name,
            change,
            kubernetes,
            preview,
            now,
        } => {
            let kubelet = kubernetes
                .as_ref()
                .map(|k| format!("; its kubelet moves to {} and is waited for", k.to))
                .unwrap_or_default();
            let what = match preview {
                None => "ApplyConfiguration (mode AUTO)".to_string(),
                Some(p) if p.diff.trim().is_empty() => {
                    "the node runs this config already: no ApplyConfiguration".to_string()
                }
                Some(p) if p.reboot => format!(
                    "ApplyConfiguration, Talos reboots the node (quorum checked before, waited for after); diff:\n{}",
                    p.diff.trim_end()
                ),
                Some(p) => format!(
                    "ApplyConfiguration live, no reboot; diff:\n{}",
                    p.diff.trim_end()
                ),
            };
            format!(
                "config   VM {vmid} {name} in place ({change}; no --allow-replace needed{kubelet}): {what}; then its seed disk and description are brought current{}",
                held_tail(*now)
            )
        }
        Step::KubernetesControlPlane {
            vmid,
            name,
            change,
            preview,
            now,
        } => {
            let what = match preview {
                Some(p) if p.diff.trim().is_empty() => {
                    "the node is past this phase: nothing to do".to_string()
                }
                Some(p) => format!(
                    "ApplyConfiguration of its new config with the kubelet kept at {} (etcd checked before, waited for after); diff:\n{}",
                    change.from,
                    p.diff.trim_end()
                ),
                None => format!(
                    "ApplyConfiguration of its new config with the kubelet kept at {}",
                    change.from
                ),
            };
            format!(
                "k8s      VM {vmid} {name}: Kubernetes {} → {}, control plane components first: {what}{}",
                change.from,
                change.to,
                held_tail(*now)
            )
        }
        Step::Upgrade {
            vmid,
            name,
            change,
            installer,
            version,
            now,
            ..
        } if !step_upgrades(step) => format!(
            "upgrade  VM {vmid} {name} runs {version} already ({change}; an upgrade cut short before its record): Upgrade to {installer} not sent again; its description records the new image{}",
            held_tail(*now)
        ),
        Step::Upgrade {
            vmid,
            name,
            change,
            installer,
            version,
            now,
            ..
        } => format!(
            "upgrade  VM {vmid} {name} in place ({change}; no --allow-replace needed): Upgrade to {installer}, wait until it runs {version} (a control plane: quorum checked before, etcd healthy after); its description records the new image{}",
            held_tail(*now)
        ),
        Step::Update {
            vmid,
            name,
            changes,
        } => format!("update   VM {vmid} {name}: {}", changes_text(changes)),
        Step::Resize { vmid, name, to } => format!("grow     VM {vmid} {name} scsi0 to {to}"),
        Step::Restart {
            vmid,
            name,
            changes,
            allowed,
        } => {
            if *allowed {
                format!(
                    "restart  VM {vmid} {name}: {} pending until its next start; clean shutdown, start",
                    changes_text(changes)
                )
            } else {
                format!(
                    "pending  VM {vmid} {name}: {} pending until its next start — needs --allow-restart {name}, not done",
                    changes_text(changes)
                )
            }
        }
        Step::Start { vmid, name } => format!("start    VM {vmid} {name}"),
        Step::Keep { vmid, name } => format!("ok       VM {vmid} {name}"),
        Step::Conflict { vmid, reason } => format!("CONFLICT VM {vmid}: {reason}"),
        Step::Unknown { vmid, name } => {
            format!("unknown  VM {vmid} {name}: not in the blueprint; left alone")
        }
    }
}

/// How a step held back for a later deploy ends its line.
fn held_tail(now: bool) -> &'static str {
    if now {
        ""
    } else {
        " — after the node that goes alone in this deploy; run deploy again, not done"
    }
}

/// Whether an `Upgrade` step sends `Upgrade`: not to a node that reports
/// the target version while its record names another (its upgrade was cut
/// short before the record). A schematic-only change cannot be told apart
/// by the version, so it is sent again: an upgrade to the running image is
/// only a reboot.
pub fn step_upgrades(step: &Step) -> bool {
    match step {
        Step::Upgrade {
            version,
            from_version,
            running,
            ..
        } => !(running.as_ref() == Some(version) && from_version.as_ref() != Some(version)),
        _ => false,
    }
}

fn changes_text(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|c| {
            let from = if c.from.is_empty() { "none" } else { &c.from };
            let to = if c.to.is_empty() { "none" } else { &c.to };
            format!("{} {from} → {to}", c.key)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn human(bytes: u64) -> String {
    const MIB: u64 = 1 << 20;
    if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{bytes} bytes")
    }
}

/// The steps that take `observed` to `desired`, as far as `options`
/// allow, in `rollout`'s order and pace.
pub fn plan(desired: &Desired, observed: &Observed, options: &Options<'_>) -> Plan {
    rollout::roll(unpaced(desired, observed, options), desired)
}

/// [`plan`]'s steps before `rollout` orders and paces them: a cluster's
/// plan rolls every node's Talos steps together.
pub fn unpaced(desired: &Desired, observed: &Observed, options: &Options<'_>) -> Vec<Step> {
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
                let allowed = Allowed {
                    replace: options.allow_replace.contains(&vm.name),
                    restart: options.allow_restart.contains(&vm.name),
                };
                let in_place = desired.talos.get(&vm.vmid);
                vm_steps.extend(existing(vm, host, &image, &seed, allowed, in_place));
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
            }
            | Step::ApplyConfig {
                vmid, now: true, ..
            } => desired.vms.iter().find(|vm| vm.vmid == *vmid),
            _ => None,
        })
        .map(|vm| files_of(vm).1)
        .collect();
    let mut steps = bridge_steps(desired, observed, options.skip_host);
    steps.extend(
        desired
            .uploads
            .iter()
            .filter(|upload| !upload.seed || seeds_needed.contains(&upload.file))
            .map(|upload| upload_step(upload, observed)),
    );
    // Any other seed of ours on the host is left over (a create the client
    // never heard back from, a deploy killed after it, a VM since changed):
    // it may hold secrets, so it goes.
    steps.extend(
        observed
            .imports
            .keys()
            .filter(|file| !seeds_needed.contains(file))
            .filter(|file| desired.vms.iter().any(|vm| is_seed_file_of(&vm.name, file)))
            .map(|file| Step::RemoveSeed { file: file.clone() }),
    );
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
    steps
}

/// A machine-config diff fit to show: every line holding one of `secrets`
/// (the Talos bundle's values), and the value of every key that names a
/// secret (keys, tokens, secrets, passwords: an old value the bundle no
/// longer has, a secret from elsewhere), replaced; the structure and
/// everything else kept.
pub fn redact(diff: &str, secrets: &[&str]) -> String {
    diff.lines()
        .map(|line| {
            let (mark, rest) = line.split_at(line.len().min(1));
            let holds_secret = secrets
                .iter()
                .any(|secret| !secret.is_empty() && line.contains(secret));
            let Some((key, value)) = rest.split_once(':') else {
                return if holds_secret {
                    format!("{mark}(redacted)")
                } else {
                    line.to_string()
                };
            };
            let name = key.trim().trim_start_matches("- ").to_ascii_lowercase();
            let secret_key = ["key", "token", "secret", "password"]
                .iter()
                .any(|word| name.ends_with(word))
                && !name.contains(' ');
            if holds_secret || (secret_key && !value.trim().is_empty() && !line.starts_with("@@")) {
                format!("{mark}{key}: (redacted)")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The bridge steps: every bridge of the blueprint, before any VM. With
/// `skip_host`, only the bridges the VMs use are checked, never changed.
fn bridge_steps(desired: &Desired, observed: &Observed, skip_host: bool) -> Vec<Step> {
    let network = &observed.network;
    let mut users: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for vm in &desired.vms {
        for bridge in bridges_of(vm) {
            users.entry(bridge).or_default().push(&vm.name);
        }
    }
    let mut steps = Vec::new();
    let mut to_apply = Vec::new();
    for bridge in &desired.bridges {
        let host = network.ifaces.get(&bridge.name);
        let conflict = |reason: String| Step::BridgeConflict {
            bridge: bridge.name.clone(),
            reason,
        };
        if skip_host {
            let Some(vms) = users.get(bridge.name.as_str()) else {
                continue;
            };
            let problem = match host {
                None => "does not exist on the host",
                Some(iface) if !iface.active => "is not active on the host",
                Some(_) => {
                    steps.push(Step::KeepBridge {
                        bridge: bridge.name.clone(),
                    });
                    continue;
                }
            };
            steps.push(conflict(format!(
                "used by VM {}, {problem}: VMs on it cannot start; run `waddlec deploy` without --skip-host, which {}",
                vms.join(", "),
                if bridge.public {
                    "checks the uplink (waddlec never changes it: fix the host's network)"
                } else {
                    "creates and applies it"
                }
            )));
            continue;
        }
        if bridge.public {
            let problem = match host {
                None => Some("does not exist".to_string()),
                Some(iface) if iface.kind != "bridge" => {
                    Some(format!("is a `{}`, not a bridge", iface.kind))
                }
                Some(iface) if !iface.active => Some("is not active".to_string()),
                Some(iface) if address(&iface.cidr) != address(&bridge.cidr) => Some(format!(
                    "holds {}, not the host's address {}",
                    if iface.cidr.is_empty() {
                        "no address"
                    } else {
                        &iface.cidr
                    },
                    address(&bridge.cidr)
                )),
                Some(iface)
                    if bridge
                        .cidr6
                        .as_deref()
                        .is_some_and(|cidr6| address(&iface.cidr6) != address(cidr6)) =>
                {
                    Some(format!(
                        "holds {}, not the host's IPv6 address {}",
                        if iface.cidr6.is_empty() {
                            "no IPv6 address"
                        } else {
                            &iface.cidr6
                        },
                        address(bridge.cidr6.as_deref().unwrap_or_default())
                    ))
                }
                Some(_) => None,
            };
            steps.push(match problem {
                Some(problem) => conflict(format!(
                    "the public bridge {problem}; waddlec never changes the uplink you reach the host through: fix the host's network or the blueprint's [[bridge]] {}",
                    bridge.name
                )),
                None => Step::KeepBridge {
                    bridge: bridge.name.clone(),
                },
            });
            continue;
        }
        match host {
            None => {
                steps.push(Step::CreateBridge {
                    bridge: bridge.name.clone(),
                    cidr: bridge.cidr.clone(),
                    cidr6: bridge.cidr6.clone(),
                    vlan_aware: bridge.vlan_aware,
                });
                to_apply.push(bridge.name.clone());
            }
            Some(iface) if iface.kind != "bridge" => steps.push(conflict(format!(
                "the host's {} is a `{}`, not a bridge; rename the blueprint's bridge or remove the host's interface",
                bridge.name, iface.kind
            ))),
            Some(iface) => {
                let changes = bridge_changes(bridge, iface);
                if changes.is_empty() {
                    if iface.active {
                        steps.push(Step::KeepBridge {
                            bridge: bridge.name.clone(),
                        });
                    } else {
                        to_apply.push(bridge.name.clone());
                    }
                } else if iface.comments.contains(BRIDGE_MARKER) {
                    steps.push(Step::UpdateBridge {
                        bridge: bridge.name.clone(),
                        changes,
                    });
                    to_apply.push(bridge.name.clone());
                } else {
                    steps.push(conflict(format!(
                        "the host's bridge differs ({}) and was not made by waddlec (no `{BRIDGE_MARKER}` comment); change it on the host, or give the blueprint's bridge another name",
                        changes_text(&changes)
                    )));
                }
            }
        }
    }
    if skip_host || network.changes.trim().is_empty() {
        if !to_apply.is_empty() {
            steps.push(Step::ApplyNetwork { bridges: to_apply });
        }
        return steps;
    }
    // Applying applies every pending change on the node: only ours.
    let ours: BTreeSet<&str> = desired
        .bridges
        .iter()
        .filter(|bridge| !bridge.public)
        .map(|bridge| bridge.name.as_str())
        .collect();
    let foreign: Vec<String> = touched_interfaces(&network.changes)
        .into_iter()
        .filter(|iface| !iface.as_deref().is_some_and(|name| ours.contains(name)))
        .map(|iface| iface.unwrap_or_else(|| "lines outside any interface".into()))
        .collect();
    if foreign.is_empty() {
        for bridge in touched_interfaces(&network.changes).into_iter().flatten() {
            if !to_apply.contains(&bridge) {
                to_apply.push(bridge);
            }
        }
        steps.push(Step::ApplyNetwork { bridges: to_apply });
    } else if !to_apply.is_empty() {
        steps.push(Step::BridgeConflict {
            bridge: to_apply.join(", "),
            reason: format!(
                "the node has network changes pending that waddlec did not make ({}), which applying would apply too; apply or revert them on the host (Network → Apply Configuration or Revert) and deploy again",
                foreign.join(", ")
            ),
        });
    }
    steps
}

/// The bridges a VM's NICs are on.
fn bridges_of(vm: &VmConfig) -> Vec<&str> {
    vm.params
        .iter()
        .filter(|(key, _)| key.starts_with("net"))
        .filter_map(|(_, value)| {
            value
                .split(',')
                .find_map(|item| item.strip_prefix("bridge="))
        })
        .collect()
}

/// The address of `10.10.0.1/24`.
fn address(cidr: &str) -> &str {
    cidr.split('/').next().unwrap_or_default()
}

/// How a host's bridge differs from the blueprint's: the host's addresses,
/// autostart, no ports, VLAN awareness.
fn bridge_changes(bridge: &DesiredBridge, iface: &HostIface) -> Vec<Change> {
    let mut changes = Vec::new();
    if iface.cidr != bridge.cidr {
        changes.push(Change {
            key: "cidr".into(),
            from: iface.cidr.clone(),
            to: bridge.cidr.clone(),
        });
    }
    let cidr6 = bridge.cidr6.clone().unwrap_or_default();
    if iface.cidr6 != cidr6 {
        changes.push(Change {
            key: "cidr6".into(),
            from: iface.cidr6.clone(),
            to: cidr6,
        });
    }
    if !iface.autostart {
        changes.push(Change {
            key: "autostart".into(),
            from: "0".into(),
            to: "1".into(),
        });
    }
    let ports = iface.ports.trim();
    if !ports.is_empty() && ports != "none" {
        changes.push(Change {
            key: "bridge_ports".into(),
            from: ports.to_string(),
            to: String::new(),
        });
    }
    if iface.vlan_aware != bridge.vlan_aware {
        changes.push(Change {
            key: "bridge_vlan_aware".into(),
            from: u8::from(iface.vlan_aware).to_string(),
            to: u8::from(bridge.vlan_aware).to_string(),
        });
    }
    changes
}

/// The interfaces whose stanzas the changed lines of a pending network
/// diff (`diff -u interfaces interfaces.new`) fall in, each once; `None`
/// for a changed line whose stanza the hunk does not show.
fn touched_interfaces(diff: &str) -> Vec<Option<String>> {
    let mut touched: Vec<Option<String>> = Vec::new();
    let mut in_hunk = false;
    let mut stanza: Option<String> = None;
    for line in diff.lines() {
        if line.starts_with("@@") {
            in_hunk = true;
            stanza = None;
            continue;
        }
        if !in_hunk {
            continue;
        }
        let (changed, body) = match line.split_at_checked(1) {
            Some(("+" | "-", body)) => (true, body),
            Some((_, body)) => (false, body),
            None => (false, line),
        };
        let words: Vec<&str> = body.split_whitespace().collect();
        match words[..] {
            ["iface", name, ..] | ["auto" | "allow-hotplug", name] => {
                stanza = Some(name.to_string());
            }
            ["auto" | "allow-hotplug" | "source" | "source-directory", ..] => stanza = None,
            _ => {}
        }
        if changed && !words.is_empty() && !touched.contains(&stanza) {
            touched.push(stanza.clone());
        }
    }
    touched
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
        // The host fetches it itself; seeds are never in the store.
        _ if upload.in_store && !upload.seed => Step::Pull {
            file,
            bytes: upload.bytes,
            sha256: upload.sha256.clone(),
        },
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

/// What the operator named a VM in.
#[derive(Clone, Copy, Debug)]
struct Allowed {
    replace: bool,
    restart: bool,
}

/// `in_place`: what a Talos node should run, when it may be upgraded and
/// configured in place rather than replaced.
fn existing(
    vm: &VmConfig,
    host: &HostVm,
    image: &str,
    seed: &str,
    allow: Allowed,
    in_place: Option<&TalosTarget>,
) -> Vec<Step> {
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
    let mut steps = Vec::new();
    match (described, in_place) {
        // A Talos node of ours, not asked to be rebuilt: in place.
        (Some((host_image, host_seed)), Some(target)) if change.is_some() && !allow.replace => {
            let description = host.config.get("description").cloned().unwrap_or_default();
            if host_image != image {
                steps.push(Step::Upgrade {
                    vmid,
                    name: name.clone(),
                    change: format!("image {host_image} → {image}"),
                    installer: target.installer(),
                    version: target.version.clone(),
                    from_version: talos_version_of(&host_image),
                    running: None,
                    description: description
                        .replace(&format!("image={host_image}"), &format!("image={image}")),
                    now: true,
                });
            }
            if host_seed != seed {
                let recorded = described_kubernetes(&description);
                let kubernetes =
                    match rollout::kubernetes_change(recorded.as_deref(), &target.kubernetes) {
                        Ok(kubernetes) => kubernetes,
                        Err(reason) => {
                            return vec![Step::Conflict {
                                vmid,
                                reason: format!("{name}: {reason}"),
                            }]
                        }
                    };
                if let Some(change) = kubernetes.clone().filter(|_| target.control_plane) {
                    steps.push(Step::KubernetesControlPlane {
                        vmid,
                        name: name.clone(),
                        change,
                        preview: None,
                        now: true,
                    });
                }
                steps.push(Step::ApplyConfig {
                    vmid,
                    name: name.clone(),
                    change: format!("seed (configuration) {host_seed} → {seed}"),
                    kubernetes,
                    preview: None,
                    now: true,
                });
            }
        }
        _ => {
            if let Some(change) = change {
                return vec![Step::Replace {
                    vmid,
                    name,
                    change,
                    allowed: allow.replace,
                }];
            }
        }
    }
    // What the VM runs with, and what it will run with after its next
    // start (Proxmox holds some changes of a running VM until then).
    let hotplug = host
        .config
        .get("hotplug")
        .map_or(DEFAULT_HOTPLUG, String::as_str);
    let mut changes = Vec::new();
    let mut at_restart = Vec::new();
    for key in UPDATABLE.iter().copied().chain(
        vm.params
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| k.starts_with("net")),
    ) {
        let want = normalize(key, vm.param(key).unwrap_or_default());
        let now = host.config.get(key).map(String::as_str).unwrap_or_default();
        let pending = host.pending.get(key).map(String::as_str);
        let next = pending.unwrap_or(now);
        let change = |from: &str| Change {
            key: key.to_string(),
            from: from.to_string(),
            to: vm.param(key).unwrap_or_default().to_string(),
        };
        if normalize(key, next) != want {
            changes.push(change(next));
        }
        let held = pending.is_some_and(|value| normalize(key, value) == want);
        if host.running && normalize(key, now) != want && (held || !applies_live(key, hotplug)) {
            at_restart.push(change(now));
        }
    }
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
    if !at_restart.is_empty() {
        steps.push(Step::Restart {
            vmid,
            name: name.clone(),
            changes: at_restart,
            allowed: allow.restart,
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

/// The Talos version in a Talos image's name (`talos-<version>-<schematic>.qcow2`).
fn talos_version_of(image: &str) -> Option<String> {
    let version = image.strip_prefix("talos-")?.split('-').next()?;
    version.starts_with('v').then(|| version.to_string())
}

/// What a VM hot-plugs when its config has no `hotplug` (qemu-server's
/// default).
const DEFAULT_HOTPLUG: &str = "network,disk,usb";

/// Whether Proxmox applies a change of `key` to a running VM at once
/// rather than holding it pending for the next start (qemu-server's
/// `vmconfig_hotplug_pending`): the "fast plug" options always, a NIC or
/// memory only when hot-plugging them is enabled, everything else
/// (cores, cpu type, the agent) never.
fn applies_live(key: &str, hotplug: &str) -> bool {
    let enabled = |what: &str| match hotplug.trim() {
        "1" => DEFAULT_HOTPLUG.split(',').any(|item| item == what),
        "0" => false,
        list => list.split(',').any(|item| item.trim() == what),
    };
    match key {
        "name" | "description" | "tags" | "onboot" => true,
        "memory" => enabled("memory"),
        _ if key.starts_with("net") => enabled("network"),
        _ => false,
    }
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
    use crate::deploy::observed::HostNetwork;

    const SEED: &str = "edge-seed-0123456789ab.raw";

    /// The plan with nothing allowed beyond the blueprint.
    fn plan(desired: &Desired, observed: &Observed, allow_replace: &[String]) -> Plan {
        super::plan(
            desired,
            observed,
            &Options {
                allow_replace,
                ..Options::default()
            },
        )
    }

    fn iface(name: &str, cidr: &str, active: bool, comments: &str) -> HostIface {
        HostIface {
            iface: name.into(),
            kind: "bridge".into(),
            active,
            autostart: true,
            cidr: cidr.into(),
            cidr6: String::new(),
            ports: if name == "vmbr0" {
                "eno1".into()
            } else {
                String::new()
            },
            comments: comments.into(),
            vlan_aware: false,
        }
    }

    /// A freshly installed Proxmox host: the uplink bridge only.
    fn bare() -> Observed {
        Observed {
            network: HostNetwork {
                ifaces: [("vmbr0".into(), iface("vmbr0", "203.0.113.10/24", true, ""))]
                    .into_iter()
                    .collect(),
                changes: String::new(),
            },
            ..Observed::default()
        }
    }

    fn vm() -> VmConfig {
        VmConfig {
            vmid: 100,
            name: "edge".into(),
            node: "pve".into(),
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
            seed_volume: "local:import/edge-seed-0123456789ab.raw".into(),
            debian: true,
            agent: true,
        }
    }

    fn desired() -> Desired {
        Desired {
            bridges: vec![
                DesiredBridge {
                    name: "vmbr0".into(),
                    public: true,
                    cidr: "203.0.113.10/24".into(),
                    cidr6: None,
                    vlan_aware: false,
                },
                DesiredBridge {
                    name: "vmbr1".into(),
                    public: false,
                    cidr: "10.10.0.1/24".into(),
                    cidr6: None,
                    vlan_aware: false,
                },
            ],
            uploads: vec![
                Upload {
                    file: "edge-a.qcow2".into(),
                    seed: false,
                    path: Some("images/edge-a.qcow2".into()),
                    sha256: "aa".into(),
                    bytes: 100,
                    in_store: false,
                },
                Upload {
                    file: "edge-seed-0123456789ab.raw".into(),
                    seed: true,
                    path: Some("vms/edge/seed.img".into()),
                    sha256: "bb".into(),
                    bytes: 10,
                    in_store: false,
                },
            ],
            vms: vec![vm()],
            talos: BTreeMap::new(),
        }
    }

    /// The host after a deploy of `desired()`, in Proxmox's own spelling.
    fn deployed() -> Observed {
        let config: BTreeMap<String, String> = [
            (
                "description",
                "Managed by waddlec. image=edge-a.qcow2 seed=edge-seed-0123456789ab.raw",
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
        let mut host = bare();
        host.network.ifaces.insert(
            "vmbr1".into(),
            iface("vmbr1", "10.10.0.1/24", true, "managed by waddlec\n"),
        );
        host.imports = [("edge-a.qcow2".to_string(), 100)].into_iter().collect();
        host.vms = [(
            100,
            HostVm {
                vmid: 100,
                name: "edge".into(),
                running: true,
                config,
                pending: BTreeMap::new(),
            },
        )]
        .into_iter()
        .collect();
        host
    }

    #[test]
    fn an_empty_host_gets_uploads_and_a_create() {
        let plan = plan(&desired(), &bare(), &[]);
        assert_eq!(
            plan.lines(),
            [
                "ok       bridge vmbr0",
                "bridge   create vmbr1 10.10.0.1/24 (no ports, autostart)",
                "network  apply the node's pending network configuration (vmbr1)",
                "upload   edge-a.qcow2 (100 bytes)",
                "upload   edge-seed-0123456789ab.raw (10 bytes)",
                "create   VM 100 edge from edge-a.qcow2 and edge-seed-0123456789ab.raw; grow, start",
            ]
        );
        assert!(plan.changes_anything());
    }

    #[test]
    fn an_image_in_the_store_is_pulled_by_the_host_and_a_seed_never() {
        let mut desired = desired();
        for upload in &mut desired.uploads {
            upload.in_store = true;
        }
        let pulled = plan(&desired, &bare(), &[]);
        assert!(pulled.steps.contains(&Step::Pull {
            file: "edge-a.qcow2".into(),
            bytes: 100,
            sha256: "aa".into(),
        }));
        let lines = pulled.lines();
        assert!(lines
            .contains(&"pull     edge-a.qcow2 (100 bytes) from the artifact store".to_string()));
        assert!(lines.contains(&"upload   edge-seed-0123456789ab.raw (10 bytes)".to_string()));
        assert!(pulled.changes_anything());
        // A host that has it pulls nothing.
        let again = plan(&desired, &deployed(), &[]);
        assert!(!again.steps.iter().any(|s| matches!(s, Step::Pull { .. })));
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

    /// `desired()` as a Talos node with an in-place target.
    fn talos_node() -> Desired {
        let mut desired = desired();
        desired.vms[0].debian = false;
        desired.talos.insert(
            desired.vms[0].vmid,
            TalosTarget {
                version: "v1.12.2".into(),
                schematic: "abc".into(),
                kubernetes: "1.35.1".into(),
                config: b"version: v1alpha1".to_vec(),
                control_plane: true,
                rollout: 0,
            },
        );
        desired
    }

    #[test]
    fn a_talos_image_change_is_an_upgrade_in_place_a_config_change_an_apply() {
        let mut desired = talos_node();
        desired.vms[0].image_volume = "local:import/edge-c.qcow2".into();
        desired.uploads[0].file = "edge-c.qcow2".into();
        let upgrade = plan(&desired, &deployed(), &[]);
        assert!(
            upgrade
                .steps
                .iter()
                .any(|s| matches!(s, Step::Upgrade { installer, now: true, .. }
                if installer == "factory.talos.dev/nocloud-installer/abc:v1.12.2")),
            "{:#?}",
            upgrade.lines()
        );
        assert!(!upgrade
            .steps
            .iter()
            .any(|s| matches!(s, Step::Replace { .. })));
        assert!(upgrade.changes_anything());
        // Named for a rebuild: a replace, as before.
        let replace = plan(&desired, &deployed(), &["edge".to_string()]);
        assert!(replace
            .steps
            .iter()
            .any(|s| matches!(s, Step::Replace { allowed: true, .. })));

        let mut desired = talos_node();
        desired.vms[0].seed_volume = "local:import/edge-seed-ffffffffffff.raw".into();
        desired.uploads[1].file = "edge-seed-ffffffffffff.raw".into();
        let apply = plan(&desired, &deployed(), &[]);
        assert!(apply.steps.iter().any(|s| matches!(
            s,
            Step::ApplyConfig {
                now: true,
                preview: None,
                ..
            }
        )));
        // Its seed is uploaded for the host's copy to be brought current.
        assert!(apply.steps.iter().any(
            |s| matches!(s, Step::Upload { file, .. } if file == "edge-seed-ffffffffffff.raw")
        ));
        assert!(!apply
            .steps
            .iter()
            .any(|s| matches!(s, Step::Replace { .. })));
    }

    #[test]
    fn a_config_diff_is_shown_without_its_secrets() {
        let diff = "--- a\n+++ b\n@@ -1,3 +1,3 @@\n machine:\n-    token: abc.def\n+    token: ghi.jkl\n     ca:\n+        key: LS0tS0\n+        crt: LS0tQ0\n+    aescbcEncryptionSecret: c2Vj\n     type: controlplane";
        let shown = redact(diff, &[]);
        for secret in ["abc.def", "ghi.jkl", "LS0tS0", "c2Vj"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        // By value: wherever the bundle's secrets stand, under any key.
        let by_value = redact(
            "+  contents: c2VjcmV0LXZhbHVl\n-  - c2VjcmV0LXZhbHVl\n+  crt: LS0tQ0",
            &["c2VjcmV0LXZhbHVl"],
        );
        assert_eq!(
            by_value,
            "+  contents: (redacted)\n-(redacted)\n+  crt: LS0tQ0"
        );
        assert!(shown.contains("-    token: (redacted)"), "{shown}");
        assert!(shown.contains("+        crt: LS0tQ0"), "{shown}");
        assert!(shown.contains("     type: controlplane"), "{shown}");
        assert!(
            shown.starts_with("--- a\n+++ b\n@@ -1,3 +1,3 @@"),
            "{shown}"
        );
    }

    /// Three Talos nodes (VMIDs 100-102; the last a worker) that run
    /// Talos v1.12.0 and Kubernetes `running`; the blueprint wants v1.12.2,
    /// Kubernetes 1.35.1 and new configs. Listed worker first, so the
    /// rollout order is not the VMID order.
    fn talos_cluster(running: &str) -> (Desired, Observed) {
        let mut desired = desired();
        let mut host = deployed();
        desired.vms.clear();
        desired.uploads.clear();
        host.vms.clear();
        for (vmid, name, rollout) in [(102, "w1", 2), (100, "cp1", 0), (101, "cp2", 1)] {
            let mut vm = vm();
            vm.vmid = vmid;
            vm.name = name.into();
            vm.debian = false;
            vm.params[0].1 = name.into();
            vm.params[7].1 = format!("virtio,bridge=vmbr1,macaddr=bc:24:11:00:00:{vmid}");
            vm.image_volume = "local:import/talos-v1.12.2-abc.qcow2".into();
            vm.seed_volume = format!("local:import/{name}-seed-new.raw");
            for (file, seed) in [
                ("talos-v1.12.2-abc.qcow2", false),
                (&*format!("{name}-seed-new.raw"), true),
            ] {
                desired.uploads.push(Upload {
                    file: file.into(),
                    seed,
                    path: Some(file.into()),
                    sha256: "aa".into(),
                    bytes: 1,
                    in_store: false,
                });
            }
            desired.vms.push(vm);
            desired.talos.insert(
                vmid,
                TalosTarget {
                    version: "v1.12.2".into(),
                    schematic: "abc".into(),
                    kubernetes: "1.35.1".into(),
                    config: b"version: v1alpha1".to_vec(),
                    control_plane: rollout < 2,
                    rollout,
                },
            );
            let mut on_host = deployed().vms[&100].clone();
            on_host.vmid = vmid;
            on_host.name = name.into();
            on_host.config.insert(
                "description".into(),
                format!("Managed by waddlec. image=talos-v1.12.0-abc.qcow2 seed={name}-seed-old.raw kubernetes={running}"),
            );
            on_host.config.insert(
                "net0".into(),
                format!("virtio=BC:24:11:00:00:{vmid},bridge=vmbr1"),
            );
            host.vms.insert(vmid, on_host);
        }
        (desired, host)
    }

    /// `(action, VM name, now)` of the in-place steps, in plan order.
    fn in_place_order(plan: &Plan) -> Vec<(&'static str, String, bool)> {
        plan.steps
            .iter()
            .filter_map(|step| match step {
                Step::Upgrade { name, now, .. } => Some(("upgrade", name.clone(), *now)),
                Step::KubernetesControlPlane { name, now, .. } => Some(("k8s", name.clone(), *now)),
                Step::ApplyConfig { name, now, .. } => Some(("config", name.clone(), *now)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_cluster_changes_in_one_deploy_control_planes_first_kubelets_last() {
        let (desired, host) = talos_cluster("1.34.2");
        let plan = plan(&desired, &host, &[]);
        assert!(plan.conflicts().is_empty(), "{:#?}", plan.lines());
        let order: Vec<String> = in_place_order(&plan)
            .into_iter()
            .map(|(action, name, now)| format!("{action} {name}{}", if now { "" } else { " held" }))
            .collect();
        assert_eq!(
            order,
            [
                "upgrade cp1",
                "upgrade cp2",
                "upgrade w1",
                "k8s cp1",
                "k8s cp2",
                "config cp1",
                "config cp2",
                "config w1",
            ]
        );
        assert_eq!(plan.held_back(), 0);
        let text = plan.lines().join("\n");
        assert!(
            text.contains("Kubernetes 1.34.2 → 1.35.1, control plane components first"),
            "{text}"
        );
        assert!(text.contains("its kubelet moves to 1.35.1"), "{text}");
        // The worker gets no control-plane phase.
        assert!(!in_place_order(&plan).contains(&("k8s", "w1".into(), true)));
    }

    #[test]
    fn a_kubernetes_change_outside_the_skew_is_refused_before_anything() {
        for (running, fix) in [("1.33.4", "newest 1.34.x"), ("1.35.2", "back to 1.35.2")] {
            let (desired, host) = talos_cluster(running);
            let plan = plan(&desired, &host, &[]);
            assert_eq!(plan.conflicts().len(), 3, "{:#?}", plan.lines());
            assert!(
                plan.lines().iter().any(|l| l.contains(fix)),
                "{:#?}",
                plan.lines()
            );
        }
    }

    #[test]
    fn a_talos_replace_or_restart_goes_alone() {
        let (mut desired, host) = talos_cluster("1.35.1");
        // Only the image changes: three upgrades.
        for vm in &mut desired.vms {
            vm.seed_volume = format!("local:import/{}-seed-old.raw", vm.name);
        }
        let cp2 = ["cp2".to_string()];
        let plan = with_options(
            &desired,
            &host,
            Options {
                allow_replace: &cp2,
                ..Options::default()
            },
        );
        let order = in_place_order(&plan);
        assert_eq!(
            order,
            [
                ("upgrade", "cp1".into(), false),
                ("upgrade", "w1".into(), false)
            ],
            "{:#?}",
            plan.lines()
        );
        assert!(plan
            .steps
            .iter()
            .any(|s| matches!(s, Step::Replace { name, allowed: true, .. } if name == "cp2")));
        assert_eq!(plan.held_back(), 2);
        // A live config waits for nothing, unless its node's upgrade waits.
        let live = |vmid: u32, name: &str| Step::ApplyConfig {
            vmid,
            name: name.into(),
            change: String::new(),
            kubernetes: None,
            preview: Some(ConfigPreview {
                reboot: false,
                diff: "-a\n+b".into(),
            }),
            now: false,
        };
        let mut steps = plan.steps.clone();
        steps.extend([live(100, "cp1"), live(101, "cp2")]);
        let paced = rollout::pace(Plan { steps }, &desired);
        let configs: Vec<(String, bool)> = in_place_order(&paced)
            .into_iter()
            .filter(|(action, _, _)| *action == "config")
            .map(|(_, name, now)| (name, now))
            .collect();
        assert_eq!(configs, [("cp1".into(), false), ("cp2".into(), true)]);
    }

    #[test]
    fn an_upgrade_cut_short_before_its_record_is_not_sent_again() {
        let (mut desired, host) = talos_cluster("1.35.1");
        for vm in &mut desired.vms {
            vm.seed_volume = format!("local:import/{}-seed-old.raw", vm.name);
        }
        let mut plan = plan(&desired, &host, &[]);
        for step in &mut plan.steps {
            if let Step::Upgrade {
                name,
                running,
                from_version,
                ..
            } = step
            {
                assert_eq!(from_version.as_deref(), Some("v1.12.0"));
                *running = Some(if name == "cp1" { "v1.12.2" } else { "v1.12.0" }.into());
            }
        }
        let sends: Vec<bool> = plan
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Upgrade { .. }))
            .map(step_upgrades)
            .collect();
        assert_eq!(sends, [false, true, true]);
        assert!(
            plan.lines()
                .iter()
                .any(|l| l.contains("cp1 runs v1.12.2 already")),
            "{:#?}",
            plan.lines()
        );
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
            plan.lines()[3..],
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
        assert!(!self::plan(&desired(), &bigger, &[]).changes_anything());
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
                ..HostVm::default()
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
        desired.vms[0].seed_volume = "local:import/edge-seed-abcdef012345.raw".into();
        desired.uploads[1].file = "edge-seed-abcdef012345.raw".into();
        let held = plan(&desired, &deployed(), &["other".to_string()]);
        assert_eq!(
            held.lines().last().unwrap(),
            "replace  VM 100 edge (seed (configuration) edge-seed-0123456789ab.raw → edge-seed-abcdef012345.raw) — needs --allow-replace edge, not done"
        );
    }

    #[test]
    fn a_hand_built_copy_under_another_vmid_is_a_conflict() {
        let mut host = bare();
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
                ..HostVm::default()
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
        let plan = plan(&desired, &bare(), &[]);
        assert_eq!(
            plan.lines()[3..],
            ["missing  edge-a.qcow2: not in the tree (built with --no-images?); VMs booting it wait"]
        );
    }

    fn with_options(desired: &Desired, observed: &Observed, options: Options<'_>) -> Plan {
        super::plan(desired, observed, &options)
    }

    #[test]
    fn a_bridge_waddlec_made_is_corrected_someone_elses_is_a_conflict() {
        let mut host = deployed();
        let vmbr1 = host.network.ifaces.get_mut("vmbr1").unwrap();
        vmbr1.cidr = "10.20.0.1/24".into();
        vmbr1.ports = "eno2".into();
        let plan = plan(&desired(), &host, &[]);
        assert_eq!(
            plan.lines()[1..3],
            [
                "bridge   update vmbr1: cidr 10.20.0.1/24 → 10.10.0.1/24, bridge_ports eno2 → none",
                "network  apply the node's pending network configuration (vmbr1)",
            ]
        );
        host.network.ifaces.get_mut("vmbr1").unwrap().comments = "lab uplink".into();
        let plan = super::plan(&desired(), &host, &Options::default());
        assert_eq!(plan.conflicts().len(), 1, "{:?}", plan.lines());
        assert!(
            plan.lines()[1].starts_with("CONFLICT bridge vmbr1: the host's bridge differs (cidr 10.20.0.1/24 → 10.10.0.1/24"),
            "{:?}",
            plan.lines()
        );
    }

    #[test]
    fn a_vlan_aware_bridge_is_created_so_and_set_back_when_it_is_not() {
        let mut wanted = desired();
        wanted.bridges[1].vlan_aware = true;
        let created = plan(&wanted, &bare(), &[]);
        assert_eq!(
            created.lines()[1],
            "bridge   create vmbr1 10.10.0.1/24 (no ports, autostart, VLAN-aware)"
        );
        let updated = plan(&wanted, &deployed(), &[]);
        assert_eq!(
            updated.lines()[1..3],
            [
                "bridge   update vmbr1: bridge_vlan_aware 0 → 1",
                "network  apply the node's pending network configuration (vmbr1)",
            ]
        );
        let mut host = deployed();
        host.network.ifaces.get_mut("vmbr1").unwrap().vlan_aware = true;
        let kept = plan(&wanted, &host, &[]);
        assert!(!kept.changes_anything(), "{:?}", kept.lines());
    }

    #[test]
    fn a_bridge_created_but_never_applied_is_applied() {
        let mut host = deployed();
        host.network.ifaces.get_mut("vmbr1").unwrap().active = false;
        host.network.changes = "--- /etc/network/interfaces\n+++ /etc/network/interfaces.new\n@@ -10,3 +10,10 @@\n \tbridge-stp off\n \tbridge-fd 0\n \n+auto vmbr1\n+iface vmbr1 inet static\n+\taddress 10.10.0.1/24\n+\tbridge-ports none\n+#managed by waddlec\n".into();
        let plan = plan(&desired(), &host, &[]);
        assert_eq!(
            plan.lines()[..2],
            [
                "ok       bridge vmbr0",
                "network  apply the node's pending network configuration (vmbr1)",
            ]
        );
        assert!(plan.changes_anything());
    }

    #[test]
    fn pending_network_changes_of_someone_else_are_never_applied() {
        let mut host = bare();
        host.network.changes = "--- /etc/network/interfaces\n+++ /etc/network/interfaces.new\n@@ -5,4 +5,4 @@\n iface vmbr0 inet static\n-\taddress 203.0.113.10/24\n+\taddress 203.0.113.11/24\n \tgateway 203.0.113.1\n".into();
        let plan = plan(&desired(), &host, &[]);
        assert_eq!(plan.conflicts().len(), 1, "{:?}", plan.lines());
        assert!(
            plan.lines()
                .iter()
                .any(|line| line
                    .contains("network changes pending that waddlec did not make (vmbr0)"))
        );
        // Nothing of ours to apply: not our business.
        let mut done = deployed();
        done.network.changes = host.network.changes.clone();
        assert!(plan_is_quiet(&super::plan(
            &desired(),
            &done,
            &Options::default()
        )));
    }

    fn plan_is_quiet(plan: &Plan) -> bool {
        !plan.changes_anything() && plan.conflicts().is_empty()
    }

    #[test]
    fn the_uplink_is_only_checked() {
        let mut host = deployed();
        host.network.ifaces.get_mut("vmbr0").unwrap().cidr = "198.51.100.7/24".into();
        let plan = plan(&desired(), &host, &[]);
        assert_eq!(
            plan.lines()[0],
            "CONFLICT bridge vmbr0: the public bridge holds 198.51.100.7/24, not the host's address 203.0.113.10; waddlec never changes the uplink you reach the host through: fix the host's network or the blueprint's [[bridge]] vmbr0"
        );
        assert!(!plan
            .steps
            .iter()
            .any(|step| matches!(step, Step::UpdateBridge { .. } | Step::ApplyNetwork { .. })));
    }

    /// The blueprint with IPv6 on both bridges.
    fn dual_stack() -> Desired {
        let mut desired = desired();
        desired.bridges[0].cidr6 = Some("2001:db8:10::10/64".into());
        desired.bridges[1].cidr6 = Some("fd10:1010:1010::1/64".into());
        desired
    }

    #[test]
    fn the_uplink_must_hold_the_public_ipv6_address() {
        let conflict = plan(&dual_stack(), &deployed(), &[]);
        assert_eq!(
            conflict.lines()[0],
            "CONFLICT bridge vmbr0: the public bridge holds no IPv6 address, not the host's IPv6 address 2001:db8:10::10; waddlec never changes the uplink you reach the host through: fix the host's network or the blueprint's [[bridge]] vmbr0"
        );
        let mut host = deployed();
        host.network.ifaces.get_mut("vmbr0").unwrap().cidr6 = "2001:db8:10::10/64".into();
        host.network.ifaces.get_mut("vmbr1").unwrap().cidr6 = "fd10:1010:1010::1/64".into();
        let quiet = plan(&dual_stack(), &host, &[]);
        assert!(plan_is_quiet(&quiet), "{:#?}", quiet.lines());
    }

    #[test]
    fn an_internal_bridge_gets_its_ipv6_address_created_and_updated() {
        let created = plan(&dual_stack(), &bare(), &[]);
        assert!(
            created.steps.iter().any(|step| *step
                == Step::CreateBridge {
                    bridge: "vmbr1".into(),
                    cidr: "10.10.0.1/24".into(),
                    cidr6: Some("fd10:1010:1010::1/64".into()),
                    vlan_aware: false,
                }),
            "{:#?}",
            created.lines()
        );
        let mut host = deployed();
        host.network.ifaces.get_mut("vmbr0").unwrap().cidr6 = "2001:db8:10::10/64".into();
        let updated = plan(&dual_stack(), &host, &[]);
        assert!(
            updated
                .lines()
                .iter()
                .any(|l| l == "bridge   update vmbr1: cidr6 none → fd10:1010:1010::1/64"),
            "{:#?}",
            updated.lines()
        );
    }

    #[test]
    fn skip_host_creates_no_bridge_and_refuses_when_one_a_vm_uses_is_missing() {
        let options = Options {
            skip_host: true,
            ..Options::default()
        };
        let plan = with_options(&desired(), &bare(), options);
        assert_eq!(
            plan.lines()[0],
            "CONFLICT bridge vmbr1: used by VM edge, does not exist on the host: VMs on it cannot start; run `waddlec deploy` without --skip-host, which creates and applies it"
        );
        assert!(!plan
            .steps
            .iter()
            .any(|step| matches!(step, Step::CreateBridge { .. } | Step::ApplyNetwork { .. })));
        // Only the bridges VMs use are checked: vmbr0 carries none here.
        let plan = with_options(&desired(), &deployed(), options);
        assert_eq!(plan.lines()[0], "ok       bridge vmbr1");
        assert!(plan_is_quiet(&plan), "{:?}", plan.lines());
    }

    #[test]
    fn a_seed_left_on_the_host_is_removed_and_only_the_blueprints() {
        let mut host = deployed();
        for file in [
            SEED,
            "edge-seed-abcdef012345.raw",
            "other-seed-0123456789ab.raw",
            "edge-seed-0123456789AB.raw",
            "edge-seed-notes.raw",
            "edge-seed-0123456789ab.qcow2",
        ] {
            host.imports.insert(file.into(), 10);
        }
        let plan = plan(&desired(), &host, &[]);
        let removed: Vec<&str> = plan
            .steps
            .iter()
            .filter_map(|step| match step {
                Step::RemoveSeed { file } => Some(file.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            removed,
            ["edge-seed-0123456789ab.raw", "edge-seed-abcdef012345.raw"]
        );
        assert!(plan.changes_anything());
        assert!(plan.lines().contains(&format!(
            "remove   {SEED} (a seed disk no VM is being created from)"
        )));
        // A seed a create of this plan needs stays (the create removes it).
        let mut fresh = bare();
        fresh.imports.insert(SEED.into(), 10);
        let plan = self::plan(&desired(), &fresh, &[]);
        assert!(!plan
            .steps
            .iter()
            .any(|step| matches!(step, Step::RemoveSeed { .. })));
        assert!(plan
            .lines()
            .contains(&format!("keep     {SEED} (already on the host)")));
    }

    /// `deployed()` with memory raised in the blueprint.
    fn more_memory() -> Desired {
        let mut desired = desired();
        for (key, value) in &mut desired.vms[0].params {
            if key == "memory" {
                *value = "4096".into();
            }
        }
        desired
    }

    #[test]
    fn a_change_proxmox_holds_for_the_next_start_is_pending_until_a_restart_is_allowed() {
        // The update is sent; memory without hotplug waits for a restart.
        let plan = plan(&more_memory(), &deployed(), &[]);
        assert_eq!(
            plan.lines()[3..],
            [
                "update   VM 100 edge: memory 2048 → 4096",
                "pending  VM 100 edge: memory 2048 → 4096 pending until its next start — needs --allow-restart edge, not done",
            ]
        );
        assert_eq!(plan.held_back(), 1);
        // Proxmox holds it: no update again, still pending.
        let mut host = deployed();
        let vm = host.vms.get_mut(&100).unwrap();
        vm.pending.insert("memory".into(), "4096".into());
        let plan = self::plan(&more_memory(), &host, &[]);
        assert_eq!(
            plan.lines()[3..],
            ["pending  VM 100 edge: memory 2048 → 4096 pending until its next start — needs --allow-restart edge, not done"]
        );
        assert!(!plan.changes_anything());
        let allowed = with_options(
            &more_memory(),
            &host,
            Options {
                allow_restart: &["edge".to_string()],
                ..Options::default()
            },
        );
        assert_eq!(
            allowed.lines()[3..],
            ["restart  VM 100 edge: memory 2048 → 4096 pending until its next start; clean shutdown, start"]
        );
        assert!(allowed.changes_anything());
        assert_eq!(allowed.held_back(), 0);
        // A stopped VM takes it at its start.
        host.vms.get_mut(&100).unwrap().running = false;
        let plan = self::plan(&more_memory(), &host, &[]);
        assert_eq!(plan.lines()[3..], ["start    VM 100 edge"]);
    }

    #[test]
    fn what_proxmox_applies_live_needs_no_restart() {
        let mut desired = desired();
        desired.vms[0].params[1].1 = "edge;infra;web".into();
        let plan = plan(&desired, &deployed(), &[]);
        assert_eq!(
            plan.lines()[3..],
            ["update   VM 100 edge: tags infra;edge → edge;infra;web"]
        );
        assert_eq!(plan.held_back(), 0);
        // Memory hot-plugs when the VM allows it.
        let mut host = deployed();
        host.vms
            .get_mut(&100)
            .unwrap()
            .config
            .insert("hotplug".into(), "network,disk,memory".into());
        let plan = self::plan(&more_memory(), &host, &[]);
        assert_eq!(plan.held_back(), 0, "{:?}", plan.lines());
    }

    #[test]
    fn at_most_one_talos_node_is_restarted_per_deploy() {
        let mut desired = more_memory();
        desired.vms[0].debian = false;
        let mut second = desired.vms[0].clone();
        second.vmid = 101;
        second.name = "cp2".into();
        second.params[7].1 = "virtio,bridge=vmbr1,macaddr=bc:24:11:00:00:02".into();
        desired.vms.push(second);
        for (rollout, vmid) in [100, 101].into_iter().enumerate() {
            desired.talos.insert(
                vmid,
                TalosTarget {
                    control_plane: true,
                    rollout,
                    ..TalosTarget::default()
                },
            );
        }
        let mut host = deployed();
        let mut cp2 = host.vms[&100].clone();
        cp2.vmid = 101;
        cp2.name = "cp2".into();
        cp2.config.insert(
            "net0".into(),
            "virtio=BC:24:11:00:00:02,bridge=vmbr1".into(),
        );
        host.vms.insert(101, cp2);
        for vm in host.vms.values_mut() {
            vm.pending.insert("memory".into(), "4096".into());
        }
        let both = ["edge".to_string(), "cp2".to_string()];
        let plan = with_options(
            &desired,
            &host,
            Options {
                allow_restart: &both,
                ..Options::default()
            },
        );
        assert_eq!(plan.conflicts().len(), 1, "{:?}", plan.lines());
        assert!(plan.lines().last().unwrap().contains("etcd's quorum"));
        let one = with_options(
            &desired,
            &host,
            Options {
                allow_restart: &both[..1],
                ..Options::default()
            },
        );
        assert!(one.conflicts().is_empty(), "{:?}", one.lines());
        assert_eq!(one.held_back(), 1);
    }

    #[test]
    fn pending_network_diffs_are_read_by_stanza() {
        let diff = "--- a\n+++ b\n@@ -1,4 +1,6 @@\n-auto lo eno1\n+auto lo\n iface vmbr1 inet static\n+\tmtu 1400\n \n+\n";
        assert_eq!(
            touched_interfaces(diff),
            [None, Some("lo".to_string()), Some("vmbr1".to_string())]
        );
    }
}
