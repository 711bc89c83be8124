//! The host layer of a `[cluster]`, from what the one API said (`host`
//! reads it as `deploy` does, `deploy::cluster_observed`): each node of
//! the blueprint a member and online (`/cluster/status`), its uplink
//! active with its address, and the SDN zone, VNets and subnets as the
//! build's `hosts/sdn.json` has them and applied (compared as `deploy`
//! compares them, `deploy::sdn::steps`; nothing is changed).
//!
//! Not checked for a cluster yet, and said so by one `unreachable` check
//! per host: what the lone host's layer reads over ssh (the `WDLC-*`
//! chains and the Proxmox firewall's files).

use crate::checks::Check;
use crate::deploy::sdn::{self, Kind, SdnObjects, SdnStep, SDN_PATH};
use crate::model::Model;
use crate::Compiled;

use super::host::{bridge_check, Reached, LAYER};

/// The build's SDN objects (`hosts/sdn.json`), as `deploy` reads them
/// from the tree.
pub fn sdn_objects(compiled: &Compiled) -> Result<SdnObjects, String> {
    let artifact = compiled
        .artifacts
        .iter()
        .find(|a| a.path == SDN_PATH)
        .ok_or_else(|| format!("the build has no {SDN_PATH}"))?;
    serde_json::from_slice(&artifact.contents).map_err(|e| format!("{SDN_PATH}: {e}"))
}

/// Each node of the blueprint: a member of the cluster, online; an
/// offline one names the blueprint's VMs it holds.
pub fn nodes(model: &Model, reached: &Reached) -> Vec<Check> {
    model
        .proxmox
        .hosts
        .iter()
        .map(|host| {
            let name = format!("node {}", host.node);
            let vms: Vec<&str> = model.vms_on(host).map(|vm| vm.name.as_str()).collect();
            match reached.members.get(&host.node) {
                Some(true) => Check::pass(LAYER, name, "online"),
                Some(false) => Check::failed(
                    LAYER,
                    name,
                    if vms.is_empty() {
                        "offline (`/cluster/status`)".to_string()
                    } else {
                        format!(
                            "offline (`/cluster/status`), and the blueprint places {} on it",
                            vms.join(", ")
                        )
                    },
                    format!(
                        "bring {} back (its power, its network; `pvecm status` on another node shows the quorum): \
                         until then `waddlec deploy` changes nothing, unless the blueprint places its VMs on other hosts",
                        host.node
                    ),
                ),
                None => Check::failed(
                    LAYER,
                    name,
                    "not a member of the cluster the API answers for",
                    format!(
                        "join {} to the cluster (`pvecm add` on it), or fix its `node` in the blueprint",
                        host.node
                    ),
                ),
            }
        })
        .collect()
}

/// Each online node's uplink (the internal networks are the SDN's VNets,
/// checked by `sdn`).
pub fn uplinks(model: &Model, reached: &Reached) -> Vec<Check> {
    model
        .proxmox
        .hosts
        .iter()
        .filter_map(|host| {
            let observed = reached.nodes.get(&host.node)?;
            let bridge = &host.bridges.public;
            Some(bridge_check(
                format!("node {} bridge {}", host.node, bridge.name),
                bridge,
                observed,
            ))
        })
        .collect()
}

/// The SDN objects of the build, each as the cluster has it, and the
/// configuration applied.
pub fn sdn(wanted: &SdnObjects, reached: &Reached) -> Vec<Check> {
    let Some(observed) = &reached.sdn else {
        return Vec::new();
    };
    let fix = "run `waddlec deploy` (it creates the blueprint's SDN objects and applies them)";
    let mut checks: Vec<Check> = sdn::steps(wanted, observed)
        .into_iter()
        .filter_map(|step| match step {
            SdnStep::Keep { object, id } => Some(Check::pass(
                LAYER,
                format!("sdn {} {id}", noun(object)),
                "as built",
            )),
            SdnStep::Create { object, id, .. } => Some(Check::failed(
                LAYER,
                format!("sdn {} {id}", noun(object)),
                "the cluster has no such object",
                fix,
            )),
            SdnStep::Conflict { object, id, reason } => Some(Check::failed(
                LAYER,
                format!("sdn {} {id}", noun(object)),
                reason,
                "change it in Datacenter → SDN, or rename the blueprint's",
            )),
            SdnStep::Apply => None,
        })
        .collect();
    checks.push(if observed.pending {
        Check::failed(
            LAYER,
            "sdn applied",
            "the SDN configuration has edits to the blueprint's objects that are not applied",
            "apply it (Datacenter → SDN → Apply, or `pvesh set /cluster/sdn`), or run `waddlec deploy`",
        )
    } else {
        Check::pass(LAYER, "sdn applied", "the running configuration")
    });
    checks
}

fn noun(kind: Kind) -> &'static str {
    match kind {
        Kind::Zone => "zone",
        Kind::Vnet => "vnet",
        Kind::Subnet => "subnet",
    }
}

/// What the lone host's layer reads over ssh, not read on a cluster's
/// hosts: one check per host saying so.
pub fn not_over_ssh(model: &Model) -> Vec<Check> {
    model
        .proxmox
        .hosts
        .iter()
        .map(|host| {
            Check::unreachable(
                LAYER,
                format!("ssh {}", host.ssh_target),
                format!(
                    "not checked: `waddlec status` does not read a cluster's hosts over ssh yet \
                     (the forwards' WDLC-* chains and the Proxmox firewall's files on {})",
                    host.node
                ),
                format!(
                    "compare `iptables-save` and /etc/pve/nodes/{node}/host.fw on {node} with the build's hosts/{node}/ yourself",
                    node = host.node
                ),
            )
        })
        .collect()
}
