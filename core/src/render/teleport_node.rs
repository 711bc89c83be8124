//! The Proxmox host as an agentless node of the blueprint's Teleport
//! (Teleport 18's OpenSSH integration, no agent on the host): the `node`
//! resource that registers it (`kind: node`, `version: v2`, `sub_kind:
//! openssh`, applied with the other resources by the Teleport VM's
//! `teleport-resources` unit, `tctl create -f`, so every boot converges on
//! it), the host's sshd drop-in (`host/ssh/teleport-node.conf`) that
//! trusts Teleport's `openssh` user CA and presents a host certificate from
//! its host CA, and the Teleport VM's `waddlec-teleport-node-keys`, run by
//! the resources unit after `tctl create`, which exports that CA and signs
//! the host certificate (`tctl auth export --type=openssh`, `tctl auth sign
//! --host=… --format=openssh`) into [`VM_KEY_DIR`]. All follow Teleport's
//! manual-installation guide
//! (`docs/pages/enroll-resources/server-access/openssh/openssh-manual-install.mdx`,
//! steps 1–3) and RFD 98 (`rfd/0098-registered-openssh-nodes.md`: the
//! `openssh` sub-kind, the OpenSSH CA, manual certificate rotation). The
//! host key is made by `tctl` on the Teleport VM (it signs no key it is
//! given): the host setup copies the three files to the host's
//! [`KEY_DIR`] through the VM's guest agent (`render::host_setup`).
//!
//! In a `[cluster]` every host is a node the same way: one resource per
//! host, each host's own drop-in (`hosts/NODE/ssh/teleport-node.conf`,
//! through `render::per_host`), and one certificate per host, signed into
//! `VM_KEY_DIR/NODE/`; a lone host's paths stay as they were.
//!
//! The node's name must be a UUID: it is derived from the project and the
//! host's node name, so it never changes between builds and the host
//! certificate's principals (address, node name, UUID) stay valid.
//! `spec.addr` is the host's address on the Teleport VM's bridge (a
//! cluster host's own VNet address), where the host firewall admits the
//! Teleport VM to SSH (`Model::host_access`).
//! The label `waddlec-host` names the host; the rendered roles admit every
//! node label (`node_labels: {"*": "*"}`), so each role's logins apply.

use std::net::Ipv4Addr;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{RenderError, Templates};
use crate::artifact::Artifact;
use crate::model::{Host, Model, SSH_PORT};

/// Where the drop-in's CA key, host key and certificate live on the host.
pub const KEY_DIR: &str = "/etc/ssh/waddlec-teleport";
/// Where `waddlec-teleport-node-keys` leaves them on the Teleport VM.
pub const VM_KEY_DIR: &str = "/var/lib/teleport/waddlec-node";
/// Where the Teleport VM's image has `waddlec-teleport-node-keys`.
pub const NODE_KEYS_COMMAND: &str = "/usr/local/sbin/waddlec-teleport-node-keys";
/// The label every registered host carries, with the node name as value.
pub const HOST_LABEL: &str = "waddlec-host";

#[derive(Serialize)]
pub(super) struct NodeResource<'a> {
    kind: &'static str,
    version: &'static str,
    sub_kind: &'static str,
    metadata: NodeMetadata<'a>,
    spec: NodeSpec<'a>,
}

#[derive(Serialize)]
struct NodeMetadata<'a> {
    name: String,
    labels: std::collections::BTreeMap<&'static str, &'a str>,
}

#[derive(Serialize)]
struct NodeSpec<'a> {
    addr: String,
    hostname: &'a str,
}

/// One node resource per host the Teleport VM reaches: a lone host, or
/// each host of a cluster.
pub(super) fn resources(model: &Model) -> Vec<NodeResource<'_>> {
    nodes(model)
        .into_iter()
        .map(|(host, address)| NodeResource {
            kind: "node",
            version: "v2",
            sub_kind: "openssh",
            metadata: NodeMetadata {
                name: uuid(model, host),
                labels: [(HOST_LABEL, host.node.as_str())].into(),
            },
            spec: NodeSpec {
                addr: format!("{address}:{SSH_PORT}"),
                hostname: &host.node,
            },
        })
        .collect()
}

/// Every host that is Teleport's node, with its address as the Teleport
/// VM reaches its sshd, in blueprint order.
fn nodes(model: &Model) -> Vec<(&Host, Ipv4Addr)> {
    model
        .proxmox
        .hosts
        .iter()
        .filter_map(|host| Some((host, address(model, host)?)))
        .collect()
}

/// `host`'s address as the Teleport VM reaches its sshd: its own address
/// on the Teleport VM's bridge (a cluster host's VNet address), where its
/// firewall admits the Teleport VM.
pub(super) fn address(model: &Model, host: &Host) -> Option<Ipv4Addr> {
    let teleport = model.teleport.as_ref()?;
    model
        .host_access(host)
        .into_iter()
        .filter(|access| access.port == SSH_PORT)
        .flat_map(|access| access.sources)
        .find(|source| source.vm == teleport.vm)
        .map(|source| source.host_address)
}

/// Where the Teleport VM leaves `host`'s files: [`VM_KEY_DIR`] for a lone
/// host, `VM_KEY_DIR/NODE` for each host of a cluster.
pub(super) fn vm_key_dir(model: &Model, host: &Host) -> String {
    match model.proxmox.single_host() {
        Some(_) => VM_KEY_DIR.to_string(),
        None => format!("{VM_KEY_DIR}/{}", host.node),
    }
}

/// A UUID (version 8, RFC 9562: custom) from the project and node names.
fn uuid(model: &Model, host: &Host) -> String {
    let digest = Sha256::digest(format!(
        "waddlec teleport node {}/{}",
        model.project.name, host.node
    ));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// The certificate's principals: the address the proxy dials, the node
/// name, the node's UUID.
fn principals(model: &Model, host: &Host, address: Ipv4Addr) -> String {
    format!("{address},{},{}", host.node, uuid(model, host))
}

/// `host/ssh/teleport-node.conf`, `host`'s sshd drop-in, when it is
/// Teleport's node.
pub fn drop_in(
    templates: &Templates,
    model: &Model,
    host: &Host,
) -> Result<Vec<Artifact>, RenderError> {
    let (Some(teleport), Some(address)) = (&model.teleport, address(model, host)) else {
        return Ok(Vec::new());
    };
    #[derive(Serialize)]
    struct Data<'a> {
        project: &'a str,
        node: &'a str,
        cluster: &'a str,
        dir: &'static str,
        principals: String,
    }
    let data = Data {
        project: &model.project.name,
        node: &host.node,
        cluster: &teleport.public_host,
        dir: KEY_DIR,
        principals: principals(model, host, address),
    };
    Ok(vec![Artifact::file(
        "host/ssh/teleport-node.conf",
        "sshd-config",
        templates.render("sshd-teleport-node.conf", &data)?,
    )])
}

/// The Teleport VM's `waddlec-teleport-node-keys`: a lone host's keys in
/// [`VM_KEY_DIR`], or each cluster host's in its own directory below it.
pub fn keys_script(templates: &Templates, model: &Model) -> Result<Vec<Artifact>, RenderError> {
    let nodes = nodes(model);
    let Some(teleport) = model.teleport.as_ref().filter(|_| !nodes.is_empty()) else {
        return Ok(Vec::new());
    };
    /// A lone host: its node name and principals.
    #[derive(Serialize)]
    struct Lone<'a> {
        hostname: &'a str,
        principals: String,
    }
    /// A cluster host: where its files go, for which principals.
    #[derive(Serialize)]
    struct Node<'a> {
        hostname: &'a str,
        dir: String,
        principals: String,
    }
    #[derive(Serialize)]
    struct Keys<'a> {
        project: &'a str,
        dir: &'static str,
        lone: Option<Lone<'a>>,
        hosts: Vec<Node<'a>>,
    }
    let lone = model.proxmox.single_host().is_some();
    let keys = Keys {
        project: &model.project.name,
        dir: VM_KEY_DIR,
        lone: nodes.iter().find(|_| lone).map(|&(host, address)| Lone {
            hostname: &host.node,
            principals: principals(model, host, address),
        }),
        hosts: nodes
            .iter()
            .filter(|_| !lone)
            .map(|&(host, address)| Node {
                hostname: &host.node,
                dir: vm_key_dir(model, host),
                principals: principals(model, host, address),
            })
            .collect(),
    };
    Ok(vec![Artifact::file(
        format!("vms/{}/waddlec-teleport-node-keys", teleport.vm),
        "teleport-node-keys-script",
        templates.render("teleport-node-keys.sh", &keys)?,
    )
    .executable()
    .for_guest(&teleport.vm, NODE_KEYS_COMMAND, 0o755)])
}

/// The command the resources unit runs after `tctl create`, when a host
/// is a node.
pub fn node_keys_command(model: &Model) -> Option<&'static str> {
    (!nodes(model).is_empty()).then_some(NODE_KEYS_COMMAND)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waddle() -> Model {
        let source = crate::blueprint::SourceFile {
            name: "waddle.toml".into(),
            text: include_str!("../../../blueprints/waddle.toml").into(),
        };
        let today = crate::blueprint::Date {
            year: 2026,
            month: 1,
            day: 1,
        };
        let document = crate::blueprint::parse(&source).unwrap();
        crate::resolve::resolve(&document, today).unwrap().0
    }

    #[test]
    fn the_node_name_is_a_stable_uuid() {
        let model = waddle();
        let name = uuid(&model, model.host());
        assert_eq!(name, uuid(&model, model.host()));
        let groups: Vec<usize> = name.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12]);
        assert_eq!(&name[14..15], "8", "version 8: {name}");
    }

    #[test]
    fn the_node_is_the_host_on_the_teleport_vms_bridge() {
        let model = waddle();
        let [node] = resources(&model).try_into().ok().unwrap();
        let node = crate::yaml::document(&node).unwrap();
        assert!(node.contains("sub_kind: openssh"), "{node}");
        assert!(node.contains("addr: 10.10.0.1:22"), "{node}");
        assert!(node.contains("hostname: waddle-proxmox01"), "{node}");
        assert!(node.contains("waddlec-host: waddle-proxmox01"), "{node}");
    }
}
