//! NoCloud seed contents shared by every VM: `meta-data` and a version 2
//! `network-config`. (The seed filesystem image is built by `images`.)
//!
//! The `instance-id` is derived from the seed's content, so a changed config
//! is a new instance and cloud-init (or Talos) reads the seed again;
//! Proxmox's own instance-id ignores snippet content, which silently keeps
//! old configs.
//!
//! NICs are matched by MAC address (the qm script sets each NIC's MAC) and
//! named `eth0`, `eth1`…, so the seed does not depend on how the image names
//! interfaces.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::{Model, Vm};
use crate::yaml::{self, YamlError};

#[derive(Serialize)]
struct MetaData<'a> {
    #[serde(rename = "instance-id")]
    instance_id: String,
    #[serde(rename = "local-hostname")]
    local_hostname: &'a str,
}

/// `meta-data` for `vm`, whose other seed files are `contents`.
pub fn meta_data(vm: &Vm, contents: &[&str]) -> Result<String, YamlError> {
    let mut hash = Sha256::new();
    for content in contents {
        hash.update(content.len().to_le_bytes());
        hash.update(content);
    }
    yaml::document(&MetaData {
        instance_id: format!("{}-{}", vm.name, &hex::encode(hash.finalize())[..16]),
        local_hostname: &vm.name,
    })
}

#[derive(Serialize)]
struct NetworkConfig {
    version: u8,
    ethernets: BTreeMap<String, Ethernet>,
}

#[derive(Serialize)]
struct Ethernet {
    #[serde(rename = "match")]
    matching: Match,
    #[serde(rename = "set-name")]
    set_name: String,
    addresses: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway4: Option<String>,
    /// On a cluster's VNet: VXLAN's headers come out of the uplink's.
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway6: Option<String>,
    nameservers: Nameservers,
}

#[derive(Serialize)]
struct Match {
    macaddress: String,
}

#[derive(Serialize)]
struct Nameservers {
    addresses: Vec<String>,
}

/// Link name of the `index`th NIC.
pub fn link_name(index: usize) -> String {
    format!("eth{index}")
}

/// `network-config` (version 2): static addresses (an IPv6 one beside the
/// IPv4 one where the NIC has it), the default routes on the NIC that has
/// the gateway, the host's DNS servers.
pub fn network_config(model: &Model, vm: &Vm) -> Result<String, YamlError> {
    let ethernets = vm
        .nics
        .iter()
        .enumerate()
        .map(|(index, nic)| {
            let name = link_name(index);
            let ethernet = Ethernet {
                matching: Match {
                    macaddress: nic.mac.clone(),
                },
                set_name: name.clone(),
                addresses: std::iter::once(nic.address.to_string())
                    .chain(nic.address6.map(|a| a.to_string()))
                    .collect(),
                gateway4: nic.gateway.map(|g| g.to_string()),
                mtu: model.vnet_mtu(&nic.bridge),
                gateway6: nic.gateway6.map(|g| g.to_string()),
                nameservers: Nameservers {
                    addresses: model.proxmox.dns.iter().map(|a| a.to_string()).collect(),
                },
            };
            (name, ethernet)
        })
        .collect();
    yaml::document(&NetworkConfig {
        version: 2,
        ethernets,
    })
}
