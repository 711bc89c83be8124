//! What a Proxmox cluster has, read through its one API: which members are
//! online (`/cluster/status`), where every VM lives
//! (`/cluster/resources`, an offline node's VMs included), and for each
//! online node of the blueprint what `observed` reads of a lone host (its
//! VMs, its file storage's `import` volumes, its network) and which
//! storages it has for VM disks; then the SDN objects (`sdn::observe`).
//! Reads only; an offline node is never asked (the API would answer 595).

use std::collections::BTreeMap;

use super::observed::{observe, Observed};
use super::sdn::{self, SdnObjects, SdnObserved};
use crate::model::Model;
use crate::net::pve::{segment, Pve, PveError};

/// The cluster as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterObserved {
    /// Every member `/cluster/status` lists: node → online.
    pub members: BTreeMap<String, bool>,
    /// VMID → the node it lives on, for every VM of the cluster.
    pub placed: BTreeMap<u32, String>,
    /// What each online node of the blueprint has.
    pub nodes: BTreeMap<String, Observed>,
    /// The storages each online node of the blueprint has for VM disks
    /// (`images` content).
    pub disk_storages: BTreeMap<String, Vec<String>>,
    pub sdn: SdnObserved,
}

/// Reads the cluster `model` deploys to; `sdn` names the SDN objects of
/// interest.
pub fn observe_cluster(
    pve: &Pve,
    model: &Model,
    sdn: &SdnObjects,
) -> Result<ClusterObserved, PveError> {
    let members = pve
        .get("/cluster/status", &[])?
        .as_array()
        .into_iter()
        .flatten()
        .filter(|entry| entry["type"] == "node")
        .filter_map(|entry| {
            let name = entry["name"].as_str()?.to_string();
            let online = entry["online"].as_u64().unwrap_or_default() == 1
                || entry["online"] == serde_json::Value::Bool(true);
            Some((name, online))
        })
        .collect::<BTreeMap<_, _>>();
    let placed = pve
        .get("/cluster/resources", &[("type", "vm")])?
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|vm| {
            let vmid = u32::try_from(vm["vmid"].as_u64()?).ok()?;
            Some((vmid, vm["node"].as_str()?.to_string()))
        })
        .collect();
    let mut nodes = BTreeMap::new();
    let mut disk_storages = BTreeMap::new();
    for host in &model.proxmox.hosts {
        if members.get(&host.node) != Some(&true) {
            continue;
        }
        nodes.insert(
            host.node.clone(),
            observe(pve, &host.node, &host.file_storage)?,
        );
        let storages = pve
            .get(
                &format!("/nodes/{}/storage", segment(&host.node)),
                &[("content", "images")],
            )?
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|storage| storage["storage"].as_str().map(str::to_string))
            .collect();
        disk_storages.insert(host.node.clone(), storages);
    }
    Ok(ClusterObserved {
        members,
        placed,
        nodes,
        disk_storages,
        sdn: sdn::observe(pve, sdn)?,
    })
}
