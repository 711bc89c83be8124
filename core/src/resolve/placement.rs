//! Which host each VM and Talos node runs on, and what one host's loss
//! does to etcd.
//!
//! With `[host]` everything runs on it. In a `[cluster]` a `[[vm]]` names
//! its `host`; a Talos node names one or is placed by
//! `cluster.placement = "spread"`: control planes first (by VMID), each on
//! the host with the fewest control planes so far (the placed ones
//! counted; the first of equals in blueprint order; workers do not count,
//! so placing a worker never moves a control plane), then the workers,
//! each on the host with the fewest Talos nodes, so no host runs two
//! control planes while another runs none.
//! Unknown hosts are E0161, unplaced machines E0165, and a placement where
//! losing one host loses etcd's quorum is W0204.

use std::collections::BTreeMap;

use super::{hosts, Checker};
use crate::blueprint::{Blueprint, Placement as Rule, Span, TalosRole};
use crate::diagnostics::rules;
use crate::model;

/// Machine name → the node of the host it runs on. Machines left out were
/// reported (unknown or missing host); they are placed on the first host
/// so that checking goes on, and the model is never handed out.
pub(super) struct Placement {
    hosts: BTreeMap<String, String>,
    first: String,
}

impl Placement {
    pub(super) fn host_of(&self, machine: &str) -> &str {
        self.hosts.get(machine).unwrap_or(&self.first)
    }
}

pub(super) fn place(
    checker: &mut Checker,
    blueprint: &Blueprint,
    proxmox: &model::Proxmox,
) -> Placement {
    let first = proxmox.hosts[0].node.clone();
    let mut placed = BTreeMap::new();
    let Some(cluster) = &blueprint.cluster else {
        for vm in &blueprint.vms {
            placed.insert(vm.name.to_string(), first.clone());
            refuse_host(checker, &vm.host, &format!("vm `{}`", *vm.name));
        }
        for node in blueprint.talos.iter().flat_map(|t| t.nodes.iter()) {
            placed.insert(node.name.to_string(), first.clone());
            refuse_host(checker, &node.host, &format!("Talos node `{}`", *node.name));
        }
        return Placement {
            hosts: placed,
            first,
        };
    };
    let nodes: BTreeMap<&str, Span> = cluster
        .hosts
        .iter()
        .map(|h| (h.node.as_str(), h.node.span()))
        .collect();
    let named = |checker: &mut Checker, host: &crate::blueprint::Located<String>, path: &str| {
        if nodes.contains_key(host.as_str()) {
            Some(host.to_string())
        } else {
            hosts::unknown_host(checker, host, path, &nodes);
            None
        }
    };
    for (v, vm) in blueprint.vms.iter().enumerate() {
        let path = format!("vm[{v}].host");
        match &vm.host {
            Some(host) => {
                if let Some(node) = named(checker, host, &path) {
                    placed.insert(vm.name.to_string(), node);
                }
            }
            None => {
                checker
                    .error(
                        &rules::UNPLACED_MACHINE,
                        vm.name.span(),
                        path,
                        format!("VM `{}` names no host of the cluster", *vm.name),
                    )
                    .help = Some(format!(
                    "add `host = \"NODE\"`, one of: {}",
                    nodes.keys().copied().collect::<Vec<_>>().join(", ")
                ));
            }
        }
    }
    let Some(talos) = &blueprint.talos else {
        return Placement {
            hosts: placed,
            first,
        };
    };
    let role = |node: &crate::blueprint::TalosNode| {
        node.role
            .as_ref()
            .or(talos.node_defaults.role.as_ref())
            .map_or(TalosRole::ControlPlane, |role| role.value)
    };
    let mut spread: Vec<&crate::blueprint::TalosNode> = Vec::new();
    for (n, node) in talos.nodes.iter().enumerate() {
        let path = format!("talos.node[{n}].host");
        match (&node.host, cluster.placement.as_deref()) {
            (Some(host), _) => {
                if let Some(host) = named(checker, host, &path) {
                    placed.insert(node.name.to_string(), host);
                }
            }
            (None, Some(Rule::Spread)) => spread.push(node),
            (None, None) => {
                checker
                    .error(
                        &rules::UNPLACED_MACHINE,
                        node.name.span(),
                        path,
                        format!("Talos node `{}` names no host, and `[cluster]` has no `placement`", *node.name),
                    )
                    .help = Some("add `host = \"NODE\"`, or `placement = \"spread\"` in `[cluster]` to spread the nodes over the hosts".into());
            }
        }
    }
    spread.sort_by_key(|node| (role(node) != TalosRole::ControlPlane, *node.id));
    let order: Vec<&str> = cluster.hosts.iter().map(|h| h.node.as_str()).collect();
    // (control planes, Talos nodes) per host, the placed ones counted.
    let mut load: BTreeMap<&str, (usize, usize)> = order.iter().map(|h| (*h, (0, 0))).collect();
    for node in &talos.nodes {
        if let Some(count) = placed
            .get(node.name.as_str())
            .and_then(|host| load.get_mut(host.as_str()))
        {
            count.0 += usize::from(role(node) == TalosRole::ControlPlane);
            count.1 += 1;
        }
    }
    for node in spread {
        let control_plane = role(node) == TalosRole::ControlPlane;
        // The least loaded host, the first of equals: control planes by
        // control planes alone (so placing a worker never moves one),
        // workers by nodes.
        let host = order
            .iter()
            .min_by_key(|host| {
                let (planes, nodes) = load[**host];
                if control_plane {
                    planes
                } else {
                    nodes
                }
            })
            .copied()
            .unwrap_or(&first);
        if let Some(count) = load.get_mut(host) {
            count.0 += usize::from(control_plane);
            count.1 += 1;
        }
        placed.insert(node.name.to_string(), host.to_string());
    }
    let placement = Placement {
        hosts: placed,
        first,
    };
    check_quorum(checker, blueprint, &placement, &order);
    placement
}

/// `host` on a machine of a one-host blueprint (E0161).
fn refuse_host(
    checker: &mut Checker,
    host: &Option<crate::blueprint::Located<String>>,
    what: &str,
) {
    if let Some(host) = host {
        checker
            .error(
                &rules::UNKNOWN_HOST,
                host.span(),
                "host",
                format!(
                    "{what} names host `{}`, but the blueprint has one `[host]`",
                    **host
                ),
            )
            .help = Some("remove `host`: everything runs on the one host".into());
    }
}

/// W0204 when losing one host loses etcd's quorum.
fn check_quorum(
    checker: &mut Checker,
    blueprint: &Blueprint,
    placement: &Placement,
    hosts: &[&str],
) {
    let Some(talos) = &blueprint.talos else {
        return;
    };
    let control_planes: Vec<&crate::blueprint::TalosNode> = talos
        .nodes
        .iter()
        .filter(|node| {
            node.role
                .as_ref()
                .or(talos.node_defaults.role.as_ref())
                .is_none_or(|role| role.value == TalosRole::ControlPlane)
        })
        .collect();
    // An unplaced node is already an error: its host is not known.
    if control_planes
        .iter()
        .any(|node| !placement.hosts.contains_key(node.name.as_str()))
    {
        return;
    }
    let members: Vec<&str> = control_planes
        .iter()
        .map(|node| placement.host_of(&node.name))
        .collect();
    let fatal: Vec<(&str, usize)> = hosts
        .iter()
        .map(|host| (*host, members.iter().filter(|m| *m == host).count()))
        .filter(|&(_, lost)| !model::quorum_survives(members.len(), lost))
        .collect();
    let Some(&(host, lost)) = fatal.first() else {
        return;
    };
    let Some(node) = control_planes
        .iter()
        .find(|node| placement.host_of(&node.name) == host)
    else {
        return;
    };
    let possible = hosts.len() >= 3 && members.len() >= 3;
    let diagnostic = checker.warning(
        &rules::QUORUM_LOST_WITH_HOST,
        node.name.span(),
        "talos.node",
        format!(
            "losing host `{host}` loses {lost} of {} etcd members, and with them etcd's quorum",
            members.len()
        ),
    );
    diagnostic.label = format!("runs on `{host}`");
    diagnostic.help = Some(if possible {
        "put each control plane on a different host (`host`), or set `placement = \"spread\"` in `[cluster]`".into()
    } else {
        format!(
            "no placement survives losing any one host with {} host(s) and {} control plane(s): it takes three of each",
            hosts.len(),
            members.len()
        )
    });
}

/// In a cluster a forward is on the public address of the host its target
/// runs on: the target must be a VM, which stays on its host (E0167). A
/// VIP moves between the Talos nodes, so its replies would leave through
/// another host than the one that translated the request.
pub(super) fn check_forward_targets(checker: &mut Checker, blueprint: &Blueprint) {
    if blueprint.cluster.is_none() {
        return;
    }
    for (i, forward) in blueprint.forwards.iter().enumerate() {
        if blueprint.vms.iter().any(|vm| *vm.name == forward.to.name) {
            continue;
        }
        let diagnostic = checker.error(
            &rules::FORWARD_ACROSS_HOSTS,
            forward.to.span(),
            format!("forward[{i}].to"),
            format!(
                "forward of port {} targets `{}`, which no one host of the cluster holds",
                *forward.port, forward.to.name
            ),
        );
        diagnostic.label = "not a VM".into();
        diagnostic.help = Some(
            "forward to a `[[vm]]` (e.g. the edge, which proxies to the VIP: an `[[edge.route]]`)"
                .into(),
        );
    }
}
