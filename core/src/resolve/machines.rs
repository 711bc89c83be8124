//! VMs and Talos nodes: group defaults merged with per-machine overrides
//! (talhelper style: scalars replace, tags append), IDs, names, hostnames and
//! NICs checked, all machines as one list sorted by VMID.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use waddle_images::ByteSize;

use super::network::check_in_network;
use super::{names, versions, Checker};
use crate::blueprint::{Blueprint, BridgeRole, Located, SettingsRef, Span};
use crate::diagnostics::rules;
use crate::model::{self, CheckedString, GuestOs, TalosRole};

const MIN_VMID: u32 = 100;
const MAX_VMID: u32 = 999_999_999;
const MAX_CORES: u32 = 512;
const GIB: u64 = 1024 * 1024 * 1024;
/// What needs the Talos and Kubernetes pins, as a missing one names it.
const TALOS_COMPONENT: &str = "the Talos cluster (`[talos]`)";

/// The extra packages of the image `name`, sorted and de-duplicated.
fn image_packages(blueprint: &Blueprint, name: &str) -> Vec<String> {
    let mut packages: Vec<String> = blueprint
        .images
        .iter()
        .filter(|image| *image.name == name)
        .flat_map(|image| image.packages.iter().map(|p| p.to_string()))
        .collect();
    packages.sort();
    packages.dedup();
    packages
}

/// A machine's settings: its own over its group's defaults, checked. (A
/// missing one is reported, and a placeholder keeps resolve going.)
struct Settings {
    cores: u32,
    memory: ByteSize,
    disk: ByteSize,
    cpu: model::CpuType,
    onboot: bool,
    /// Sorted, de-duplicated: the defaults' and the machine's own.
    tags: Vec<String>,
}

impl Settings {
    /// The machine as the model holds it.
    fn vm(self, id: u32, name: &str, host: &str, os: GuestOs, nics: Vec<model::Nic>) -> model::Vm {
        model::Vm {
            id,
            name: name.to_string(),
            host: host.to_string(),
            os,
            tags: self.tags,
            cores: self.cores,
            memory: self.memory,
            disk: self.disk,
            cpu: self.cpu,
            onboot: self.onboot,
            nics,
        }
    }
}

/// Merges defaults and overrides; reports what is missing at the machine's
/// name, and what is too small for `os` where it was written.
fn settings(
    checker: &mut Checker,
    defaults: &SettingsRef<'_>,
    own: &SettingsRef<'_>,
    name: &Located<String>,
    path: &str,
    defaults_table: &str,
    os: &GuestOs,
) -> Settings {
    let mut required = |key: &str| {
        checker
            .error(
                &rules::MISSING_KEY,
                name.span(),
                format!("{path}.{key}"),
                format!("`{}` has no `{key}`", **name),
            )
            .help = Some(format!(
            "set `{key}` on the machine or in `[{defaults_table}]`"
        ));
    };
    let cores = own.cores.or(defaults.cores);
    let memory = own.memory.or(defaults.memory);
    let disk = own.disk.or(defaults.disk);
    if cores.is_none() {
        required("cores");
    }
    if memory.is_none() {
        required("memory");
    }
    if disk.is_none() {
        required("disk");
    }
    if let Some(cores) = cores.filter(|c| c.value == 0) {
        checker.error(
            &rules::OUT_OF_RANGE,
            cores.span(),
            format!("{path}.cores"),
            "`cores` must be at least 1",
        );
    }
    if let Some(memory) = memory {
        if memory.0.whole_mib().is_none_or(|mib| mib < 64) {
            checker
                .error(
                    &rules::INVALID_SIZE,
                    memory.span(),
                    format!("{path}.memory"),
                    format!(
                        "memory `{}` is not a whole number of MiB of at least 64M",
                        memory.0
                    ),
                )
                .help = Some("Proxmox sets memory in MiB; write e.g. `2G` or `1536M`".into());
        }
    }
    let mut tags: Vec<String> = Vec::new();
    for (i, tag) in defaults.tags.iter().chain(own.tags).enumerate() {
        checker.check_str(
            tag,
            &format!("{path}.tags[{i}]"),
            &rules::INVALID_IDENTIFIER,
            names::check_tag,
        );
        tags.push(tag.to_string());
    }
    tags.sort();
    tags.dedup();
    let cpu = checker.parse_or(
        &own.cpu.or(defaults.cpu).cloned(),
        "host",
        &format!("{path}.cpu"),
        &rules::INVALID_IDENTIFIER,
    );
    if let Some(cores) = cores.filter(|c| c.value > MAX_CORES) {
        checker.error(
            &rules::OUT_OF_RANGE,
            cores.span(),
            format!("{path}.cores"),
            format!(
                "{} cores is more than Proxmox allows ({MAX_CORES})",
                cores.value
            ),
        );
    }
    check_minimums(checker, name, path, os, memory, disk);
    Settings {
        cores: cores.map_or(1, |c| c.value),
        memory: memory.map_or(ByteSize::from_mib(64), |m| m.0),
        disk: disk.map_or(ByteSize::from_mib(1), |d| d.0),
        cpu,
        onboot: own.onboot.or(defaults.onboot).unwrap_or(true),
        tags,
    }
}

/// Memory and disk against what the guest needs: the boot image must fit on
/// the disk, and a Talos node gets at least Talos' documented minimums.
fn check_minimums(
    checker: &mut Checker,
    name: &Located<String>,
    path: &str,
    os: &GuestOs,
    memory: Option<&Located<crate::blueprint::Size>>,
    disk: Option<&Located<crate::blueprint::Size>>,
) {
    let whole_gib = |size: ByteSize| size.bytes().div_ceil(GIB);
    let machine = match os {
        GuestOs::Debian { image, .. } => format!("VM `{}` (image `{image}`)", **name),
        GuestOs::Talos(_) => format!("Talos node `{}`", **name),
    };
    if let (GuestOs::Talos(talos), Some(memory)) = (os, memory) {
        let minimum = talos.role.min_memory();
        if memory.0 < minimum {
            let (on, recommended) = match talos.role {
                model::TalosRole::ControlPlane => ("a control-plane node", "4G"),
                model::TalosRole::Worker => ("a worker", "2G"),
            };
            let diagnostic = checker.error(
                &rules::MACHINE_TOO_SMALL,
                memory.span(),
                format!("{path}.memory"),
                format!(
                    "{machine} gets {} of memory; Talos needs at least {minimum} on {on}",
                    memory.0,
                ),
            );
            diagnostic.label = "below Talos' minimum".into();
            diagnostic.help = Some(format!(
                "set `memory = \"{}G\"` or more ({recommended} is Talos' recommendation)",
                whole_gib(minimum)
            ));
        }
    }
    let Some(disk) = disk else { return };
    let image = os.boot_image_size();
    let (needed, why) = match os {
        GuestOs::Talos(_) if model::TALOS_MIN_DISK > image => (
            model::TALOS_MIN_DISK,
            format!("Talos needs at least {}", model::TALOS_MIN_DISK),
        ),
        _ => (image, format!("the image it boots is {image}")),
    };
    if disk.0 < needed {
        let diagnostic = checker.error(
            &rules::MACHINE_TOO_SMALL,
            disk.span(),
            format!("{path}.disk"),
            format!("{machine} gets a {} disk, but {why}", disk.0),
        );
        diagnostic.label = "too small".into();
        diagnostic.help = Some(format!("set `disk = \"{}G\"` or more", whole_gib(needed)));
    }
}

/// The bridges as the host a machine runs on has them: each host routes
/// for its own machines.
pub(super) type HostBridges<'a> = dyn Fn(&str) -> (String, Vec<model::Bridge>) + 'a;

pub(super) fn vms(
    checker: &mut Checker,
    blueprint: &Blueprint,
    host_bridges: &HostBridges<'_>,
) -> Vec<model::Vm> {
    let defaults = blueprint.vm_defaults.settings();
    let mut out = Vec::new();
    for (v, vm) in blueprint.vms.iter().enumerate() {
        let path = format!("vm[{v}]");
        let (host, bridges) = host_bridges(&vm.name);
        let os = GuestOs::Debian {
            image: vm.image.to_string(),
            packages: image_packages(blueprint, &vm.image),
        };
        let merged = settings(
            checker,
            &defaults,
            &vm.settings(),
            &vm.name,
            &path,
            "vm_defaults",
            &os,
        );
        if !blueprint
            .images
            .iter()
            .any(|image| *image.name == *vm.image)
        {
            let known: Vec<_> = blueprint
                .images
                .iter()
                .map(|i| format!("`{}`", *i.name))
                .collect();
            checker
                .error(
                    &rules::UNDEFINED_TARGET,
                    vm.image.span(),
                    format!("{path}.image"),
                    format!("image `{}` is not defined", *vm.image),
                )
                .help = Some(if known.is_empty() {
                "add an `[[image]]` with this name".into()
            } else {
                format!("defined images: {}", known.join(", "))
            });
        }
        if vm.nics.is_empty() {
            checker
                .error(
                    &rules::EMPTY_LIST,
                    vm.nics.span(),
                    format!("{path}.nics"),
                    format!("VM `{}` has no NIC", *vm.name),
                )
                .help =
                Some("add one: `nics = [{ bridge = \"vmbr1\", address = \"10.0.0.5\" }]`".into());
        }
        let single = vm.nics.len() == 1;
        let public_v6 = bridges
            .iter()
            .any(|b| b.role == BridgeRole::Public && b.v6.is_some());
        let mut nics = Vec::new();
        let mut default_routes: Vec<Span> = Vec::new();
        for (n, nic) in vm.nics.iter().enumerate() {
            let nic_path = format!("{path}.nics[{n}]");
            let Some(bridge) = bridges.iter().find(|b| b.name == *nic.bridge) else {
                checker
                    .error(
                        &rules::UNDEFINED_TARGET,
                        nic.bridge.span(),
                        format!("{nic_path}.bridge"),
                        format!("bridge `{}` is not defined", *nic.bridge),
                    )
                    .help = Some(format!(
                    "defined bridges: {}",
                    bridges
                        .iter()
                        .map(|b| format!("`{}`", b.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                continue;
            };
            check_in_network(
                checker,
                *nic.address,
                nic.address.span(),
                &format!("{nic_path}.address"),
                bridge.network,
                &bridge.name,
            );
            let gateway = match &nic.gateway {
                Some(gateway) => {
                    check_in_network(
                        checker,
                        **gateway,
                        gateway.span(),
                        &format!("{nic_path}.gateway"),
                        bridge.network,
                        &bridge.name,
                    );
                    default_routes.push(gateway.span());
                    Some(**gateway)
                }
                // A tagged NIC is not on the host's (untagged) VLAN.
                None if single && nic.tag.is_none() => Some(router_of(bridge)),
                None => None,
            };
            let tag = nic
                .tag
                .as_ref()
                .and_then(|tag| vlan_tag(checker, blueprint, tag, &nic_path, bridge));
            let address6 = super::network6::nic_address6(
                checker,
                nic.address6.as_ref(),
                &format!("{nic_path}.address6"),
                bridge,
            );
            // The IPv6 default route goes with the IPv4 one: the upstream
            // router on the public bridge, the host on an internal bridge
            // only where it NATs IPv6 out (`masquerade`).
            let gateway6 = match (gateway, bridge.v6) {
                (Some(_), Some(v6)) if address6.is_some() => match bridge.role {
                    BridgeRole::Public => v6.gateway,
                    BridgeRole::Internal => {
                        (bridge.masquerade && public_v6).then_some(v6.host_address)
                    }
                },
                _ => None,
            };
            nics.push(model::Nic {
                bridge: bridge.name.clone(),
                mac: mac_address(*vm.id, nics.len()),
                address: Ipv4Net::new(*nic.address, bridge.network.prefix_len())
                    .unwrap_or(bridge.network),
                gateway,
                address6,
                gateway6,
                tag,
            });
        }
        if let [_, extra, ..] = default_routes.as_slice() {
            checker
                .error(
                    &rules::ROLE_MISMATCH,
                    extra.clone(),
                    format!("{path}.nics"),
                    format!("VM `{}` has more than one default route", *vm.name),
                )
                .help = Some("set `gateway` on exactly one NIC".into());
        }
        out.push(merged.vm(*vm.id, &vm.name, &host, os, nics));
    }
    out
}

/// A NIC's VLAN tag: a VLAN ID (1 to 4094, as Proxmox's `tag` takes it)
/// on a VLAN-aware bridge.
fn vlan_tag(
    checker: &mut Checker,
    blueprint: &Blueprint,
    tag: &Located<u16>,
    nic_path: &str,
    bridge: &model::Bridge,
) -> Option<u16> {
    let path = format!("{nic_path}.tag");
    if !(1..=4094).contains(&**tag) {
        let diagnostic = checker.error(
            &rules::OUT_OF_RANGE,
            tag.span(),
            &path,
            format!("`{path}` is {}, not a VLAN ID", **tag),
        );
        diagnostic.label = "here".into();
        diagnostic.help = Some("a VLAN tag is 1 to 4094 (0 and 4095 are reserved)".into());
        return None;
    }
    if !bridge.vlan_aware {
        let diagnostic = checker.error(
            &rules::BRIDGE_NOT_VLAN_AWARE,
            tag.span(),
            &path,
            format!(
                "`{path}` puts the NIC on VLAN {}, but bridge `{}` is not VLAN-aware",
                **tag, bridge.name
            ),
        );
        diagnostic.label = "tagged here".into();
        if let Some(declared) = blueprint.bridges.iter().find(|b| *b.name == *bridge.name) {
            diagnostic
                .related
                .push((declared.name.span(), "the bridge".into()));
        }
        diagnostic.help = Some(format!(
            "add `vlan_aware = true` to bridge `{}`, or remove `tag`",
            bridge.name
        ));
        return None;
    }
    Some(**tag)
}

/// NICs per VM whose MACs are checked for clashes (Proxmox allows net0–net31).
const MAX_NICS: usize = 32;

/// The MAC of a VM's `index`th NIC: Proxmox's locally administered prefix
/// `bc:24:11` and three bytes of a hash of VMID and index, so it is the same
/// on every build and unique in practice (a clash is refused by
/// `check_identities`).
///
/// Lowercase, as the kernel writes it: cloud-init 22.4 compares the seed's
/// `match: macaddress` with the kernel's addresses case-sensitively, and an
/// uppercase MAC fails its first stage ("Not all expected physical devices
/// present"), leaving the VM without network. Proxmox accepts either case.
pub(super) fn mac_address(vm_id: u32, index: usize) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("waddlec nic {vm_id}/{index}"));
    format!(
        "bc:24:11:{:02x}:{:02x}:{:02x}",
        digest[0], digest[1], digest[2]
    )
}

/// The default router for a VM on `bridge`: upstream gateway on the public
/// bridge, the host on an internal one.
fn router_of(bridge: &model::Bridge) -> Ipv4Addr {
    bridge.gateway.unwrap_or(bridge.host_address)
}

pub(super) fn talos(
    checker: &mut Checker,
    blueprint: &Blueprint,
    bridges: &[model::Bridge],
) -> Option<model::TalosCluster> {
    let talos = blueprint.talos.as_ref()?;
    checker.check_str(
        &talos.cluster,
        "talos.cluster",
        &rules::INVALID_DNS_NAME,
        names::check_label,
    );
    for (i, extension) in talos.extensions.iter().enumerate() {
        checker.check_str(
            extension,
            &format!("talos.extensions[{i}]"),
            &rules::INVALID_IDENTIFIER,
            |e| {
                let ok = e.split('/').count() == 2
                    && e.split('/').all(|part| {
                        !part.is_empty()
                            && part.chars().all(|c| {
                                c.is_ascii_lowercase()
                                    || c.is_ascii_digit()
                                    || matches!(c, '-' | '_' | '.')
                            })
                    });
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "`{e}` is not an extension name like `siderolabs/qemu-guest-agent`"
                    ))
                }
            },
        );
    }
    for (i, arg) in talos.kernel_args.iter().enumerate() {
        checker.check_str(
            arg,
            &format!("talos.kernel_args[{i}]"),
            &rules::INVALID_IDENTIFIER,
            |a| {
                let ok = !a.is_empty()
                    && !a.starts_with('-')
                    && a.chars().all(|c| c.is_ascii_alphanumeric() || "._/=,:+-".contains(c));
                if ok {
                    Ok(())
                } else {
                    Err(format!(
                        "`{a}` is not a kernel argument like `console=ttyS0` (letters, digits and `._/=,:+-`, one argument per entry)"
                    ))
                }
            },
        );
    }
    let mut extensions: Vec<String> = talos.extensions.iter().map(|e| e.to_string()).collect();
    extensions.sort();
    extensions.dedup();
    let bridge = bridges.iter().find(|b| b.name == *talos.bridge);
    if bridge.is_none() {
        checker.error(
            &rules::UNDEFINED_TARGET,
            talos.bridge.span(),
            "talos.bridge",
            format!("bridge `{}` is not defined", *talos.bridge),
        );
    }
    if talos.nodes.is_empty() {
        checker.error(
            &rules::MISSING_KEY,
            talos.cluster.span(),
            "talos.node",
            "the Talos cluster has no `[[talos.node]]`",
        );
    }
    Some(model::TalosCluster {
        name: talos.cluster.to_string(),
        extensions,
        kernel_args: talos.kernel_args.iter().map(|a| a.to_string()).collect(),
        secrets: super::bundle::store(checker, talos),
        // An undefined bridge is reported above.
        bridge: bridge.map_or_else(model::BridgeName::example, |b| b.name.clone()),
        api_vip: *talos.api_vip,
        version: versions::required_string(
            checker,
            &blueprint.versions.talos,
            "talos",
            TALOS_COMPONENT,
            talos.cluster.span(),
        ),
        kubernetes: versions::required_string(
            checker,
            &blueprint.versions.kubernetes,
            "kubernetes",
            TALOS_COMPONENT,
            talos.cluster.span(),
        ),
    })
}

/// Talos nodes as VMs; separate from `talos()` so the cluster and its machines
/// are built from the same checked bridge.
pub(super) fn talos_nodes(
    checker: &mut Checker,
    blueprint: &Blueprint,
    host_bridges: &HostBridges<'_>,
) -> Vec<model::Vm> {
    let Some(talos) = &blueprint.talos else {
        return Vec::new();
    };
    let defaults = talos.node_defaults.settings();
    talos
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(n, node)| {
            let (host, bridges) = host_bridges(&node.name);
            let bridge = bridges.into_iter().find(|b| b.name == *talos.bridge)?;
            let path = format!("talos.node[{n}]");
            let guest = model::TalosGuest {
                role: role_of(talos, node),
                nic: model::TalosNic {
                    address: Ipv4Net::new(*node.address, bridge.network.prefix_len())
                        .unwrap_or(bridge.network),
                    gateway: router_of(&bridge),
                },
            };
            let nic = guest.nic;
            let merged = settings(
                checker,
                &defaults,
                &node.settings(),
                &node.name,
                &path,
                "talos.node_defaults",
                &GuestOs::Talos(guest),
            );
            check_in_network(
                checker,
                *node.address,
                node.address.span(),
                &format!("{path}.address"),
                bridge.network,
                &bridge.name,
            );
            Some(merged.vm(
                *node.id,
                &node.name,
                &host,
                GuestOs::Talos(guest),
                vec![model::Nic {
                    bridge: bridge.name.clone(),
                    mac: mac_address(*node.id, 0),
                    address: nic.address,
                    gateway: Some(nic.gateway),
                    // Talos nodes stay IPv4 only (the cluster network).
                    address6: None,
                    gateway6: None,
                    tag: None,
                }],
            ))
        })
        .collect()
}

/// A node's role: its own, else `[talos.node_defaults]`'s, else a control
/// plane.
fn role_of(talos: &crate::blueprint::Talos, node: &crate::blueprint::TalosNode) -> TalosRole {
    node.role
        .as_ref()
        .or(talos.node_defaults.role.as_ref())
        .map_or(TalosRole::ControlPlane, |role| role.value)
}

/// etcd runs on the control planes only: a cluster needs at least one
/// (E0131), and an even number buys no more failure tolerance than one
/// fewer while adding a member that must agree (W0203).
pub(super) fn check_control_planes(checker: &mut Checker, blueprint: &Blueprint) {
    let Some(talos) = &blueprint.talos else {
        return;
    };
    if talos.nodes.is_empty() {
        // Reported as a missing `[[talos.node]]`.
        return;
    }
    let control_planes: Vec<(usize, &crate::blueprint::TalosNode)> = talos
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| role_of(talos, node).is_control_plane())
        .collect();
    match control_planes.as_slice() {
        [] => {
            // Where the worker role was written: the defaults, when a node
            // takes it from there, else the first node's own.
            let (span, path) = match (&talos.node_defaults.role, &talos.nodes[0].role) {
                (Some(role), _) if talos.nodes.iter().any(|node| node.role.is_none()) => {
                    (role.span(), "talos.node_defaults.role".to_string())
                }
                (_, Some(role)) => (role.span(), "talos.node[0].role".to_string()),
                // Not reached: a node without a role and no default is a
                // control plane.
                _ => (talos.cluster.span(), "talos.node".to_string()),
            };
            let count = talos.nodes.len();
            let diagnostic = checker.error(
                &rules::NO_CONTROL_PLANE,
                span,
                path,
                format!(
                    "{} of Talos cluster `{}` {}: nothing would run etcd or the Kubernetes API",
                    if count == 1 {
                        "The only node".to_string()
                    } else {
                        format!("All {count} nodes")
                    },
                    *talos.cluster,
                    if count == 1 {
                        "is a worker"
                    } else {
                        "are workers"
                    },
                ),
            );
            diagnostic.label = "no control plane left".into();
            diagnostic.help = Some(
                "make one node a control plane (`role = \"controlplane\"`, the default); three tolerate the loss of one".into(),
            );
        }
        [.., (n, last)] if control_planes.len().is_multiple_of(2) => {
            let count = control_planes.len();
            let quorum = count / 2 + 1;
            let names: Vec<String> = control_planes
                .iter()
                .map(|(_, node)| format!("`{}`", *node.name))
                .collect();
            let (span, path) = match &last.role {
                Some(role) => (role.span(), format!("talos.node[{n}].role")),
                None => (last.name.span(), format!("talos.node[{n}].name")),
            };
            let diagnostic = checker.warning(
                &rules::EVEN_CONTROL_PLANES,
                span,
                path,
                format!(
                    "{count} control planes ({}): etcd needs {quorum} of them up, so the cluster tolerates {} failed, no more than {} control plane{} would",
                    names.join(", "),
                    count - quorum,
                    count - 1,
                    if count == 2 { "" } else { "s" },
                ),
            );
            diagnostic.label = format!("control plane {count} of {count}");
            diagnostic.help = Some(format!(
                "run an odd number of control planes: make `{}` a worker (`role = \"worker\"`), or add one more control plane",
                *last.name
            ));
        }
        _ => {}
    }
}

/// IDs, names and hostnames unique across VMs, nodes and VIPs. A machine's
/// hostname is its name (Proxmox's cloud-init drive and the Talos config take
/// it from there), compared case-insensitively.
pub(super) fn check_identities(checker: &mut Checker, blueprint: &Blueprint) {
    struct Machine<'a> {
        path: String,
        id: &'a Located<u32>,
        name: &'a Located<String>,
    }
    let vms = blueprint.vms.iter().enumerate().map(|(v, vm)| Machine {
        path: format!("vm[{v}]"),
        id: &vm.id,
        name: &vm.name,
    });
    let nodes = blueprint.talos.iter().flat_map(|talos| {
        talos.nodes.iter().enumerate().map(|(n, node)| Machine {
            path: format!("talos.node[{n}]"),
            id: &node.id,
            name: &node.name,
        })
    });
    let machines: Vec<Machine<'_>> = vms.chain(nodes).collect();
    let mut ids: BTreeMap<u32, &Located<u32>> = BTreeMap::new();
    let mut macs: BTreeMap<String, u32> = BTreeMap::new();
    for machine in &machines {
        for index in 0..MAX_NICS {
            let mac = mac_address(machine.id.value, index);
            match macs.insert(mac.clone(), machine.id.value) {
                Some(other) if other != machine.id.value => {
                    checker.error(
                        &rules::DUPLICATE_VMID,
                        machine.id.span(),
                        format!("{}.id", machine.path),
                        format!(
                            "VMIDs {other} and {} derive the same NIC MAC address {mac}; choose another VMID",
                            machine.id.value
                        ),
                    );
                }
                _ => {}
            }
        }
    }
    let mut names_seen: BTreeMap<String, Span> = BTreeMap::new();
    let mut hostnames: BTreeMap<String, (Span, String)> = BTreeMap::new();
    for machine in &machines {
        if !(MIN_VMID..=MAX_VMID).contains(&machine.id.value) {
            checker.error(
                &rules::VMID_OUT_OF_RANGE,
                machine.id.span(),
                format!("{}.id", machine.path),
                format!("VMID {} is outside {MIN_VMID}–{MAX_VMID}", machine.id.value),
            );
        }
        if let Some(first) = ids.insert(machine.id.value, machine.id) {
            checker
                .error(
                    &rules::DUPLICATE_VMID,
                    machine.id.span(),
                    format!("{}.id", machine.path),
                    format!("VMID {} is used twice", machine.id.value),
                )
                .related
                .push((first.span(), "first used here".into()));
        }
        checker.check_str_with_help(
            machine.name,
            &format!("{}.name", machine.path),
            &rules::INVALID_DNS_NAME,
            names::check_lowercase_label,
            names::LOWERCASE_LABEL_HELP,
        );
        if let Some(first) = names_seen.insert(machine.name.to_string(), machine.name.span()) {
            checker
                .error(
                    &rules::DUPLICATE_NAME,
                    machine.name.span(),
                    format!("{}.name", machine.path),
                    format!("name `{}` is used twice", **machine.name),
                )
                .related
                .push((first, "first used here".into()));
        }
        let hostname = machine.name.to_ascii_lowercase();
        if let Some((first, first_name)) = hostnames.insert(
            hostname.clone(),
            (machine.name.span(), machine.name.to_string()),
        ) {
            // An exact duplicate name was reported above.
            if first_name != **machine.name {
                checker
                    .error(
                        &rules::DUPLICATE_HOSTNAME,
                        machine.name.span(),
                        format!("{}.name", machine.path),
                        format!(
                            "`{}` and `{first_name}` are the same hostname `{hostname}`",
                            **machine.name
                        ),
                    )
                    .related
                    .push((first, "first used here".into()));
            }
        }
    }
    let machine_names: std::collections::BTreeSet<String> = names_seen.keys().cloned().collect();
    for (i, vip) in blueprint.vips.iter().enumerate() {
        if let Some(first) = names_seen.insert(vip.name.to_string(), vip.name.span()) {
            let message = if machine_names.contains(vip.name.as_str()) {
                format!(
                    "name `{}` is used by a VIP and a machine; routes could not tell them apart",
                    *vip.name
                )
            } else {
                format!("VIP `{}` is defined twice", *vip.name)
            };
            checker
                .error(
                    &rules::DUPLICATE_NAME,
                    vip.name.span(),
                    format!("vip[{i}].name"),
                    message,
                )
                .related
                .push((first, "first used here".into()));
        }
    }
    let mut images: BTreeMap<&str, Span> = BTreeMap::new();
    for (i, image) in blueprint.images.iter().enumerate() {
        checker.check_str(
            &image.name,
            &format!("image[{i}].name"),
            &rules::INVALID_DNS_NAME,
            names::check_label,
        );
        if let Some(first) = images.insert(&image.name, image.name.span()) {
            checker
                .error(
                    &rules::DUPLICATE_NAME,
                    image.name.span(),
                    format!("image[{i}].name"),
                    format!("image `{}` is defined twice", *image.name),
                )
                .related
                .push((first, "first defined here".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn macs_are_lowercase_like_the_kernels() {
        let mac = super::mac_address(101, 0);
        assert_eq!(mac, mac.to_ascii_lowercase());
        assert!(mac.starts_with("bc:24:11:"), "{mac}");
        assert_eq!(mac.len(), 17, "{mac}");
    }
}
