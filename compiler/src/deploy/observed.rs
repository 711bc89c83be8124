//! What the host has, read through the API: the file storage's `import`
//! volumes, the node's network interfaces (as configured, pending changes
//! included, with whether each is active) and every VM with its running
//! config and the changes Proxmox holds for its next start. Reads only;
//! nothing here changes the host.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::net::pve::{segment, Pve, PveError};

/// One VM on the host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostVm {
    pub vmid: u32,
    pub name: String,
    pub running: bool,
    /// The config the VM runs with (`GET …/config?current=1`; values as
    /// strings).
    pub config: BTreeMap<String, String>,
    /// Values Proxmox applies only at the next start (`GET …/pending`),
    /// `key → value`; a pending delete is an empty value.
    pub pending: BTreeMap<String, String>,
}

/// One network interface of the node, as `GET /nodes/{node}/network`
/// lists it: the configuration with its pending changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostIface {
    pub iface: String,
    /// `bridge`, `eth`, `bond`…
    pub kind: String,
    /// Up in the kernel now.
    pub active: bool,
    pub autostart: bool,
    /// `10.10.0.1/24`, from `cidr` or `address` + `netmask`; empty if none.
    pub cidr: String,
    /// `fd10::1/64`, from `cidr6` or `address6` + `netmask6`; empty if none.
    pub cidr6: String,
    /// `bridge_ports`, empty if none.
    pub ports: String,
    /// `bridge_vlan_aware`.
    pub vlan_aware: bool,
    pub comments: String,
}

/// The node's network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostNetwork {
    pub ifaces: BTreeMap<String, HostIface>,
    /// The diff between the active and the pending configuration
    /// (`/etc/network/interfaces` and `interfaces.new`); empty when
    /// nothing is pending.
    pub changes: String,
}

/// The host as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    /// `file name → size` of the file storage's `import` volumes.
    pub imports: BTreeMap<String, u64>,
    pub network: HostNetwork,
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
    let network = network(&pve.get_envelope(&format!("{node_path}/network"), &[])?);
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
        let vm_path = format!("{node_path}/qemu/{vmid}");
        let config = pve.get(&format!("{vm_path}/config"), &[("current", "1")])?;
        let config = config
            .as_object()
            .into_iter()
            .flatten()
            .map(|(key, value)| (key.clone(), text(value)))
            .collect();
        let pending = pending(&pve.get(&format!("{vm_path}/pending"), &[])?);
        vms.insert(
            vmid,
            HostVm {
                vmid,
                name: vm["name"].as_str().unwrap_or_default().to_string(),
                running: vm["status"] == "running",
                config,
                pending,
            },
        );
    }
    Ok(Observed {
        imports,
        network,
        vms,
    })
}

/// The pending values of `GET …/pending` (`[{key, value, pending,
/// delete}]`): keys with a `pending` value or a pending delete.
fn pending(list: &Value) -> BTreeMap<String, String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| {
            let key = item["key"].as_str()?.to_string();
            if let Some(value) = item.get("pending").filter(|v| !v.is_null()) {
                return Some((key, text(value)));
            }
            let delete = item["delete"].as_u64().unwrap_or_default() > 0
                || item["delete"].as_str().is_some_and(|d| d != "0");
            delete.then_some((key, String::new()))
        })
        .collect()
}

/// The interfaces and the pending diff of `GET /nodes/{node}/network`.
fn network(envelope: &Value) -> HostNetwork {
    let ifaces = envelope["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|item| {
            let iface = item["iface"].as_str()?.to_string();
            let cidr = match (item["cidr"].as_str(), item["address"].as_str()) {
                (Some(cidr), _) => cidr.to_string(),
                (None, Some(address)) => item["netmask"]
                    .as_str()
                    .and_then(prefix_length)
                    .map(|prefix| format!("{address}/{prefix}"))
                    .unwrap_or_else(|| address.to_string()),
                (None, None) => String::new(),
            };
            // Proxmox's netmask6 is the prefix length already.
            let cidr6 = match (item["cidr6"].as_str(), item["address6"].as_str()) {
                (Some(cidr6), _) => cidr6.to_string(),
                (None, Some(address6)) => match item["netmask6"].as_str() {
                    Some(prefix) => format!("{address6}/{prefix}"),
                    None => address6.to_string(),
                },
                (None, None) => String::new(),
            };
            Some((
                iface.clone(),
                HostIface {
                    iface,
                    kind: text(&item["type"]),
                    active: flag(&item["active"]),
                    autostart: flag(&item["autostart"]),
                    cidr,
                    cidr6,
                    ports: text(&item["bridge_ports"]),
                    vlan_aware: flag(&item["bridge_vlan_aware"]),
                    comments: text(&item["comments"]),
                },
            ))
        })
        .collect();
    HostNetwork {
        ifaces,
        changes: text(&envelope["changes"]),
    }
}

/// `255.255.255.0` or `24` → 24.
fn prefix_length(netmask: &str) -> Option<u32> {
    if let Ok(prefix) = netmask.parse::<u32>() {
        return (prefix <= 32).then_some(prefix);
    }
    let mask: std::net::Ipv4Addr = netmask.parse().ok()?;
    let bits = u32::from(mask);
    (bits.leading_ones() + bits.trailing_zeros() == 32).then_some(bits.leading_ones())
}

/// A boolean as Proxmox spells it: `1`, `true`, `"1"`.
fn flag(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_u64().is_some_and(|n| n != 0),
        Value::String(s) => s == "1",
        _ => false,
    }
}

/// A value as the API's form takes it (and as a plain string reads it).
pub(super) fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_network_answer_keeps_its_pending_diff_and_reads_both_address_forms() {
        let network = network(&json!({
            "changes": "--- /etc/network/interfaces\n+++ /etc/network/interfaces.new\n",
            "data": [
                {"iface": "vmbr0", "type": "bridge", "active": 1, "autostart": 1,
                 "address": "203.0.113.10", "netmask": "255.255.255.0", "bridge_ports": "eno1",
                 "address6": "2001:db8:10::10", "netmask6": "64"},
                {"iface": "vmbr1", "type": "bridge", "cidr": "10.10.0.1/24",
                 "cidr6": "fd10::1/64", "comments": "managed by waddlec\n"},
            ]
        }));
        assert!(network.changes.starts_with("--- "));
        assert_eq!(network.ifaces["vmbr0"].cidr, "203.0.113.10/24");
        assert!(network.ifaces["vmbr0"].active);
        assert_eq!(network.ifaces["vmbr1"].cidr, "10.10.0.1/24");
        assert!(!network.ifaces["vmbr1"].active);
        assert_eq!(network.ifaces["vmbr0"].cidr6, "2001:db8:10::10/64");
        assert_eq!(network.ifaces["vmbr1"].cidr6, "fd10::1/64");
    }

    #[test]
    fn pending_values_and_deletes_are_read_current_ones_are_not() {
        let pending = pending(&json!([
            {"key": "memory", "value": "2048", "pending": "4096"},
            {"key": "cores", "value": "2"},
            {"key": "agent", "value": "1", "delete": 1},
        ]));
        assert_eq!(
            pending.into_iter().collect::<Vec<_>>(),
            [
                ("agent".to_string(), String::new()),
                ("memory".to_string(), "4096".to_string())
            ]
        );
    }
}
