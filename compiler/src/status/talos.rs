//! The Talos layer, through the tunnel via the host as `cluster bootstrap`
//! and `deploy` reach the nodes (mTLS as the bundle's talosctl admin):
//! each node's Talos version as `versions.talos` pins it, each control
//! plane's etcd service running and healthy, and etcd's members exactly
//! the blueprint's control planes, none a learner.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::checks::Check;
use crate::model::Model;
use crate::net::ssh_tunnel::SshTunnel;
use crate::net::talos_api::{Probe, TalosApiError, TalosClient, TalosEndpoint, TalosIdentity};
use crate::secrets::talos::TalosCredentials;

const LAYER: &str = "talos";

/// `tunnel` has one forward per Talos node in `Model::talos_nodes` order,
/// from index `first`; or why it did not open.
pub fn check(
    model: &Model,
    credentials: &TalosCredentials,
    tunnel: Result<(&SshTunnel, usize), &String>,
    timeout: Duration,
) -> Vec<Check> {
    let Some(cluster) = &model.talos else {
        return Vec::new();
    };
    let nodes: Vec<_> = model.talos_nodes().collect();
    let (tunnel, first) = match tunnel {
        Ok(tunnel) => tunnel,
        Err(why) => {
            return nodes
                .iter()
                .map(|node| {
                    Check::unreachable(
                        LAYER,
                        format!("node {} version", node.name()),
                        format!(
                            "behind the tunnel through the Proxmox host, which did not open: {why}"
                        ),
                        "make sure `ssh` to host.ssh logs in without a prompt",
                    )
                })
                .collect()
        }
    };
    let identity = match TalosIdentity::from_credentials(credentials) {
        Ok(identity) => identity,
        Err(e) => {
            return vec![Check::failed(
                LAYER,
                "talosctl identity",
                e.to_string(),
                "`waddlec secrets init` writes the admin identity beside the bundle",
            )]
        }
    };
    let clients: Vec<(String, bool, Result<TalosClient, TalosApiError>)> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let endpoint = TalosEndpoint {
                connect: tunnel.local_addr(first + i),
                server_name: node.ip().to_string(),
            };
            (
                node.name().to_string(),
                node.is_control_plane(),
                TalosClient::new(&endpoint, &identity).map(|c| c.with_timeout(timeout)),
            )
        })
        .collect();

    let mut checks = Vec::new();
    let mut answering = BTreeSet::new();
    for (name, _, client) in &clients {
        let label = format!("node {name} version");
        let check = match client.as_ref().map(TalosClient::probe) {
            Ok(Ok(Probe::Up(version))) if version.tag == cluster.version => {
                answering.insert(name.clone());
                Check::pass(LAYER, label, version.tag)
            }
            Ok(Ok(Probe::Up(version))) => {
                answering.insert(name.clone());
                Check::failed(
                    LAYER,
                    label,
                    format!(
                        "runs Talos {}; versions.talos is {}",
                        version.tag, cluster.version
                    ),
                    "run `waddlec deploy`: it upgrades the node in place, one at a time",
                )
            }
            Ok(Ok(Probe::Down(why))) => Check::unreachable(
                LAYER,
                label,
                why,
                "is the VM running (see the vms layer)? a booting node answers in a minute",
            ),
            Ok(Err(e)) => Check::failed(
                LAYER,
                label,
                e.to_string(),
                "the node answered but not as the bundle's cluster: check it booted with its seed",
            ),
            Err(e) => Check::failed(
                LAYER,
                label,
                e.to_string(),
                "the node answered but not as the bundle's cluster: check it booted with its seed",
            ),
        };
        checks.push(check);
    }

    for (name, control_plane, client) in &clients {
        let (true, Ok(client)) = (*control_plane, client) else {
            continue;
        };
        let label = format!("node {name} etcd");
        if !answering.contains(name) {
            checks.push(Check::unreachable(
                LAYER,
                label,
                "the node does not answer its Talos API",
                "see its version check",
            ));
            continue;
        }
        checks.push(match client.etcd_service() {
            Ok(Some(etcd)) if etcd.state == "Running" && etcd.healthy == Some(true) => {
                Check::pass(LAYER, label, "running, healthy")
            }
            Ok(Some(etcd)) => Check::failed(
                LAYER,
                label,
                format!(
                    "{}, {} ({})",
                    etcd.state,
                    match etcd.healthy {
                        Some(true) => "healthy",
                        Some(false) => "unhealthy",
                        None => "health not known yet",
                    },
                    etcd.last_message
                ),
                format!(
                    "look at `talosctl -n {name} service etcd` and `talosctl -n {name} logs etcd`"
                ),
            ),
            Ok(None) => Check::failed(
                LAYER,
                label,
                "no etcd service",
                "a control plane runs etcd once bootstrapped: `waddlec cluster bootstrap`",
            ),
            Err(e) => Check::unreachable(LAYER, label, e.to_string(), "see its version check"),
        });
    }

    checks.push(members(model, &clients, &answering));
    checks
}

/// etcd's member list, asked of the first answering control plane.
fn members(
    model: &Model,
    clients: &[(String, bool, Result<TalosClient, TalosApiError>)],
    answering: &BTreeSet<String>,
) -> Check {
    let label = "etcd members";
    let wanted: BTreeSet<String> = model
        .control_planes()
        .map(|n| n.name().to_string())
        .collect();
    let mut last = "no control plane answers its Talos API".to_string();
    for (name, control_plane, client) in clients {
        let (true, Ok(client), true) = (*control_plane, client, answering.contains(name)) else {
            continue;
        };
        let members = match client.etcd_members() {
            Ok(members) => members,
            Err(e) => {
                last = format!("{name}: {e}");
                continue;
            }
        };
        let seen: BTreeSet<String> = members.iter().map(|m| m.hostname.clone()).collect();
        let learners: Vec<&str> = members
            .iter()
            .filter(|m| m.is_learner)
            .map(|m| m.hostname.as_str())
            .collect();
        let list = |set: &BTreeSet<String>| set.iter().cloned().collect::<Vec<_>>().join(", ");
        return if seen != wanted || members.len() != wanted.len() {
            let missing: BTreeSet<String> = wanted.difference(&seen).cloned().collect();
            let unknown: BTreeSet<String> = seen.difference(&wanted).cloned().collect();
            Check::failed(
                LAYER,
                label,
                format!(
                    "members {}; missing: {}; not control planes of the blueprint: {}",
                    list(&seen),
                    if missing.is_empty() { "none".into() } else { list(&missing) },
                    if unknown.is_empty() { "none".into() } else { list(&unknown) },
                ),
                "a missing control plane rejoins when it boots; remove an unknown member with `talosctl etcd remove-member` once you know whose it is",
            )
        } else if !learners.is_empty() {
            Check::failed(
                LAYER,
                label,
                format!("still learners: {}", learners.join(", ")),
                "a learner is promoted once it has caught up; if it stays, look at its etcd logs",
            )
        } else {
            Check::pass(LAYER, label, list(&seen))
        };
    }
    Check::unreachable(
        LAYER,
        label,
        last,
        "etcd's members are asked of a control plane: see the nodes' checks",
    )
}
