//! Talos artifacts: the cluster's schematic and image references, each
//! node's machine config (a control plane's or a worker's) delivered as its
//! NoCloud seed, and the talosconfig. Secret values come from [`SecretValues`]: real ones, or
//! placeholders for the review tree.

pub mod machine_config;
pub mod talosconfig;

use serde::Serialize;

use super::seed;
use crate::artifact::Artifact;
use crate::model::Model;
use crate::plan::schematic::{self, Schematic};
use crate::render::cluster::InlineManifest;
use crate::secrets::SecretValues;
use crate::yaml::YamlError;

/// What the factory serves for this cluster, for `deploy` and for people.
#[derive(Serialize)]
struct ImageReferences<'a> {
    talos_version: &'a str,
    kubernetes_version: &'a str,
    schematic_id: &'a str,
    disk_image: String,
    installer: &'a str,
}

pub fn render(
    model: &Model,
    secrets: &SecretValues,
    inline_manifests: &[InlineManifest],
) -> Result<Vec<Artifact>, YamlError> {
    let (Some(cluster), Some(credentials)) = (&model.talos, &secrets.talos) else {
        return Ok(Vec::new());
    };
    let version = &cluster.version;
    let schematic = Schematic::new(&cluster.extensions, &cluster.kernel_args);
    let id = schematic.id()?;
    let installer = schematic::installer_image(&id, version);
    let references = ImageReferences {
        talos_version: version,
        kubernetes_version: &cluster.kubernetes,
        schematic_id: &id,
        disk_image: schematic::disk_image_url(&id, version),
        installer: &installer,
    };
    let mut artifacts = vec![
        Artifact::file(
            "talos/schematic.yaml",
            "talos-schematic",
            schematic.canonical_yaml()?,
        ),
        Artifact::file(
            "talos/images.json",
            "talos-images",
            serde_json::to_string_pretty(&references).expect("plain data serialises") + "\n",
        ),
        Artifact::file(
            "talos/talosconfig",
            "talosconfig",
            talosconfig::render(model, cluster, credentials)?,
        )
        .secret(),
    ];
    for node in model.talos_nodes() {
        let machine_config = machine_config::render(&machine_config::NodeInput {
            model,
            cluster,
            bundle: &credentials.bundle,
            role: node.role,
            hostname: node.name(),
            address: node.nic.address,
            gateway: node.nic.gateway,
            installer_image: &installer,
            inline_manifests,
        })?;
        let network_config = seed::network_config(model, node.vm)?;
        let meta_data = seed::meta_data(node.vm, &[&machine_config, &network_config])?;
        let dir = format!("vms/{}/seed", node.name());
        artifacts.push(
            Artifact::file(
                format!("{dir}/user-data"),
                "talos-machine-config",
                machine_config,
            )
            .secret(),
        );
        artifacts.push(Artifact::file(
            format!("{dir}/network-config"),
            "nocloud-network-config",
            network_config,
        ));
        artifacts.push(Artifact::file(
            format!("{dir}/meta-data"),
            "nocloud-meta-data",
            meta_data,
        ));
    }
    Ok(artifacts)
}
