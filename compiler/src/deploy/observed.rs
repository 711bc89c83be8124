//! What the host has, read through the API: the file storage's `import`
//! volumes and every VM with its config. Reads only; nothing here changes
//! the host.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::net::pve::{segment, Pve, PveError};

/// One VM on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostVm {
    pub vmid: u32,
    pub name: String,
    pub running: bool,
    /// The VM's config as the API returns it (values as strings).
    pub config: BTreeMap<String, String>,
}

/// The host as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// `file name → size` of the file storage's `import` volumes.
    pub imports: BTreeMap<String, u64>,
    pub vms: BTreeMap<u32, HostVm>,
}

/// Reads the host `node` (its `storage` for imports).
pub fn observe(pve: &Pve, node: &str, storage: &str) -> Result<Observed, PveError> {
    let node_path = format!("/nodes/{}", segment(node));
    let content = pve.get(
        &format!("{node_path}/storage/{}/content", segment(storage)),
        &[("content", "import")],
    )?;
    let prefix = format!("{storage}:import/");
    let imports = content
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|volume| {
            let file = volume["volid"].as_str()?.strip_prefix(&prefix)?;
            Some((
                file.to_string(),
                volume["size"].as_u64().unwrap_or_default(),
            ))
        })
        .collect();
    let mut vms = BTreeMap::new();
    for vm in pve
        .get(&format!("{node_path}/qemu"), &[])?
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(vmid) = vm["vmid"].as_u64().and_then(|id| u32::try_from(id).ok()) else {
            continue;
        };
        let config = pve.get(&format!("{node_path}/qemu/{vmid}/config"), &[])?;
        let config = config
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, value)| (key.clone(), text(value)))
            .collect();
        vms.insert(
            vmid,
            HostVm {
                vmid,
                name: vm["name"].as_str().unwrap_or_default().to_string(),
                running: vm["status"] == "running",
                config,
            },
        );
    }
    Ok(Observed { imports, vms })
}

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
