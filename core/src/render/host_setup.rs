//! `host/setup.sh`: the one script that sets the Proxmox host up from the
//! tree's `host/` files (sysctl, forwards and NAT, Proxmox firewall, storage
//! content types, and with a platform democratic-csi's ZFS datasets, LIO
//! and SSH key), idempotent and with a `--check` mode, so `waddlec deploy`
//! can show what it would change and a reviewer can read exactly what runs
//! as root on the host.

use serde::Serialize;

use super::{RenderError, Templates};
use crate::artifact::Artifact;
use crate::model::Model;

#[derive(Serialize)]
struct Data<'a> {
    project: &'a str,
    node: &'a str,
    file_storage: &'a str,
    disk_storage: &'a str,
    /// democratic-csi's side of the host, with a platform.
    csi: Option<Csi>,
}

#[derive(Serialize)]
struct Csi {
    dataset: String,
    /// The `authorized_keys` line: the key, usable only from the nodes and
    /// only for commands (no forwarding, no terminal).
    authorized_key: String,
    marker: &'static str,
}

/// Marks the line the setup owns in root's `authorized_keys`.
const CSI_KEY_MARKER: &str = "waddlec:democratic-csi";

pub fn render(templates: &Templates, model: &Model) -> Result<Vec<Artifact>, RenderError> {
    let data = Data {
        project: &model.project.name,
        node: &model.host.node,
        file_storage: &model.host.file_storage,
        disk_storage: &model.host.disk_storage,
        csi: model.platform.as_ref().map(|platform| {
            let nodes: Vec<String> = model
                .talos_nodes()
                .map(|node| node.ip().to_string())
                .collect();
            Csi {
                dataset: platform.dataset.clone(),
                authorized_key: format!(
                    "from=\"{}\",no-agent-forwarding,no-port-forwarding,no-pty,no-X11-forwarding {} {CSI_KEY_MARKER}",
                    nodes.join(","),
                    platform.csi_public_key
                ),
                marker: CSI_KEY_MARKER,
            }
        }),
    };
    Ok(vec![Artifact::file(
        "host/setup.sh",
        "host-setup-script",
        templates.render("host-setup.sh", &data)?,
    )
    .executable()])
}
