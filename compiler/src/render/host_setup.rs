//! `host/setup.sh`: the one script that sets the Proxmox host up from the
//! tree's `host/` files (sysctl, forwards and NAT, Proxmox firewall, storage
//! content types), idempotent and with a `--check` mode, so `waddlec deploy`
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
}

pub fn render(templates: &Templates, model: &Model) -> Result<Vec<Artifact>, RenderError> {
    let data = Data {
        project: &model.project.name,
        node: &model.host.node,
        file_storage: &model.host.file_storage,
        disk_storage: &model.host.disk_storage,
    };
    Ok(vec![Artifact::file(
        "host/setup.sh",
        "host-setup-script",
        templates.render("host-setup.sh", &data)?,
    )
    .executable()])
}
