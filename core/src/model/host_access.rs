//! What the VMs may reach on the host itself, derived from the model: each
//! service the platform uses, on which bridge, from which VMs. The host
//! firewall admits exactly this from the internal bridges and drops the
//! rest, so the internet-facing edge VM reaches no host service at all.
//!
//! - SSH (22) from the Talos nodes, control planes and workers alike, for
//!   democratic-csi (its controller may run on any node, and pods leave a
//!   node masqueraded as the node), and from the Teleport VM (the
//!   operator's way in once Teleport is up);
//! - iSCSI (3260) from every Talos node, for the volumes democratic-csi
//!   shares (any node that runs pods attaches them; each target's portal
//!   is the host's address on their bridge);
//! - the Proxmox API from the Teleport VM, when a Teleport app fronts it.
//!
//! democratic-csi's SSH and iSCSI are only on the storage host
//! ([`Model::storage_host`]): in a cluster, the others admit neither.

use std::net::Ipv4Addr;

use super::{Bridge, Host, Model, Protocol};

/// The iSCSI target's port.
pub const ISCSI_PORT: u16 = 3260;
/// The host's sshd.
pub const SSH_PORT: u16 = 22;

/// One host service and the VMs that may use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostAccess {
    /// `ssh`, `iscsi`, `proxmox-api`.
    pub service: &'static str,
    pub protocol: Protocol,
    pub port: u16,
    pub sources: Vec<AccessSource>,
}

/// A VM allowed to reach a host service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessSource {
    pub vm: String,
    pub address: Ipv4Addr,
    /// The internal bridge its traffic arrives on.
    pub bridge: String,
    /// The host's address on that bridge: the only one the service is
    /// reached at (pods leave a node masqueraded as the node, so a rule
    /// without it would open the host's public address to them too).
    pub host_address: Ipv4Addr,
    /// What it uses the service for, for the rule's comment.
    pub purpose: &'static str,
}

impl Model {
    /// Every service of `host` a VM may use, at the host's own address on
    /// the VM's bridge, in a fixed order; services nobody
    /// uses are left out.
    pub fn host_access(&self, host: &Host) -> Vec<HostAccess> {
        let nodes = |purpose| -> Vec<AccessSource> {
            self.talos_nodes()
                .filter_map(|node| self.access_source(host, node.name(), node.ip(), purpose))
                .collect()
        };
        let teleport = |purpose| -> Vec<AccessSource> {
            self.teleport
                .as_ref()
                .and_then(|teleport| self.vm(&teleport.vm))
                .into_iter()
                .flat_map(|vm| {
                    vm.nics.iter().filter_map(move |nic| {
                        self.access_source(host, &vm.name, nic.address.addr(), purpose)
                    })
                })
                .collect()
        };
        let api_port = self.proxmox.api_port();
        let api_fronted = self
            .teleport
            .as_ref()
            .is_some_and(|teleport| teleport.fronts_port(api_port));
        let storage = self
            .storage_host()
            .is_some_and(|storage| storage.node == host.node);
        let mut ssh = Vec::new();
        if storage {
            ssh.extend(nodes("democratic-csi manages its volumes"));
        }
        ssh.extend(teleport("the operator, through Teleport"));
        let iscsi = if storage {
            nodes("the node attaches its volumes")
        } else {
            Vec::new()
        };
        let api = if api_fronted {
            teleport("Teleport's app in front of the API")
        } else {
            Vec::new()
        };
        [
            ("ssh", SSH_PORT, ssh),
            ("iscsi", ISCSI_PORT, iscsi),
            ("proxmox-api", api_port, api),
        ]
        .into_iter()
        .filter(|(_, _, sources)| !sources.is_empty())
        .map(|(service, port, sources)| HostAccess {
            service,
            protocol: Protocol::Tcp,
            port,
            sources,
        })
        .collect()
    }

    /// `vm` at `address`, if an internal bridge holds that address.
    fn access_source(
        &self,
        host: &Host,
        vm: &str,
        address: Ipv4Addr,
        purpose: &'static str,
    ) -> Option<AccessSource> {
        host.bridges
            .internal
            .iter()
            .find(|bridge: &&Bridge| bridge.network.contains(&address))
            .map(|bridge| AccessSource {
                vm: vm.to_string(),
                address,
                bridge: bridge.name.to_string(),
                host_address: bridge.host_address,
                purpose,
            })
    }
}
