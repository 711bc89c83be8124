//! The host layer of a `[cluster]`, from what the one API said (`host`
//! reads it as `deploy` does, `deploy::cluster_observed`): each node of
//! the blueprint a member and online (`/cluster/status`), its uplink
//! active with its address, and the SDN zone, VNets and subnets as the
//! build's `hosts/sdn.json` has them and applied (compared as `deploy`
//! compares them, `deploy::sdn::steps`; nothing is changed).
//!
//! Over ssh, every host as `host` reads the lone one (the `WDLC-*` chains,
//! the Proxmox firewall's files) and its own address on each VNet, each
//! through its own `ssh`, against its own files of the build (`over_ssh`).

use std::path::Path;
use std::time::Duration;

use crate::checks::Check;
use crate::deploy::host_setup::{HostFiles, Ssh};
use crate::deploy::sdn::{self, Kind, SdnObjects, SdnStep, SDN_PATH};
use crate::model::{Model, SshRoute};
use crate::Compiled;

use super::host::{self, bridge_check, Reached, LAYER};

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

/// What the lone host's layer reads over ssh, on every host of the
/// cluster: each over its own ssh (`Ssh::to_cluster_host` of `first`, the
/// request's way to the first host), against its own `hosts/NODE/` files,
/// `cluster.fw` on the one host whose setup installs it (the last, as
/// `deploy::cluster_hosts` stages it), each check naming its node. A host
/// that does not answer is unreachable on its own; the others are read.
pub fn over_ssh(compiled: &Compiled, first: &Ssh, timeout: Duration) -> Vec<Check> {
    let hosts = &compiled.model.proxmox.hosts;
    hosts
        .iter()
        .enumerate()
        .flat_map(|(i, host)| {
            let checks = if host.ssh_route == SshRoute::Teleport {
                vec![Check::unreachable(
                    LAYER,
                    format!("ssh {}", host.ssh_target),
                    "not read: its `ssh` goes through Teleport, which status takes to a lone [host] only so far",
                    format!(
                        "write {}'s `ssh` as a direct `user@host`, or compare `iptables-save` and its firewall files with the build's hosts/{}/ yourself",
                        host.node, host.node
                    ),
                )]
            } else {
                let files =
                    HostFiles::of_cluster_host(Path::new(""), &host.node, i + 1 == hosts.len());
                host::over_ssh(compiled, &first.to_cluster_host(host), host, &files, timeout)
            };
            checks.into_iter().map(|check| check.on_node(&host.node))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_host_through_teleport_is_unreachable_on_its_own_node_and_not_dialled() {
        let source = crate::blueprint::SourceFile {
            name: "three-hosts.toml".into(),
            text: crate::test_support::THREE_HOSTS.into(),
        };
        let mut compiled = crate::compile(&source, crate::test_support::TODAY).unwrap();
        for host in &mut compiled.model.proxmox.hosts {
            host.ssh_route = SshRoute::Teleport;
        }
        // Nothing listens there: a host dialled would be `no answer`.
        let first = Ssh {
            target: "root@192.0.2.1".into(),
            config: None,
            root: None,
            host_key: None,
            recorded_keys: Vec::new(),
            teleport: None,
        };
        let checks = over_ssh(&compiled, &first, Duration::from_millis(200));
        let seen: Vec<(Option<String>, String)> = checks
            .iter()
            .map(|check| (check.node.clone(), check.name.clone()))
            .collect();
        let wanted: Vec<(Option<String>, String)> = compiled
            .model
            .proxmox
            .hosts
            .iter()
            .map(|host| (Some(host.node.clone()), format!("ssh {}", host.ssh_target)))
            .collect();
        assert_eq!(seen, wanted);
        for check in &checks {
            match &check.outcome {
                crate::checks::Outcome::Unreachable { why, fix } => {
                    assert!(why.contains("through Teleport"), "{why}");
                    let node = check.node.as_deref().unwrap();
                    assert!(fix.contains(&format!("hosts/{node}/")), "{fix}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
