//! Render: [`Model`] + [`SecretValues`] → artifacts. One module per artifact
//! family, each a pure function: no I/O, no clock, no randomness, no
//! environment. Secret values arrive already read (or as placeholders, for
//! the review tree); renderers cannot tell which.
//!
//! Structured formats (YAML, JSON) are serialised from types (`crate::yaml`); only
//! text configs come from templates.
//!
//! Text configs come from the handlebars templates in `core/templates/`,
//! compiled into the binary, in strict mode (a missing variable is a bug, not
//! an empty string) and without HTML escaping. Template data is built from
//! values `resolve` has already restricted to safe character sets (DNS labels,
//! storage IDs, addresses, tags), which is what makes quoting in the shell
//! templates sound.

mod cloud_init;
pub mod cluster;
mod haproxy;
mod host_firewall;
mod host_network;
mod host_setup;
pub mod k8s;
pub mod kubeconfig;
pub mod platform;
mod proxmox_cluster;
mod qm_script;
pub mod seed;
pub mod talos;
pub mod teleport;
pub mod teleport_node;

use handlebars::Handlebars;
use serde::Serialize;

use crate::artifact::Artifact;
use crate::model::{Host, Model, Vm};
use crate::plan::images::{Role, VmImages};
use crate::secrets::SecretValues;

/// Rendering failed: always a bug in waddlec, never in the blueprint.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("internal error: template `{template}` failed to render: {source}")]
    Template {
        template: &'static str,
        #[source]
        source: handlebars::RenderError,
    },
    #[error(transparent)]
    Yaml(#[from] crate::yaml::YamlError),
    #[error(transparent)]
    Platform(#[from] platform::graph::GraphError),
}

/// The compiled templates.
pub struct Templates {
    registry: Handlebars<'static>,
}

const TEMPLATES: &[(&str, &str)] = &[
    (
        "haproxy.cfg",
        include_str!("../../templates/haproxy.cfg.hbs"),
    ),
    (
        "host-network.rules",
        include_str!("../../templates/host-network.rules.hbs"),
    ),
    (
        "waddlec-host-network",
        include_str!("../../templates/waddlec-host-network.hbs"),
    ),
    (
        "waddlec-host-network.service",
        include_str!("../../templates/waddlec-host-network.service.hbs"),
    ),
    (
        "sysctl.conf",
        include_str!("../../templates/sysctl.conf.hbs"),
    ),
    ("cluster.fw", include_str!("../../templates/cluster.fw.hbs")),
    ("host.fw", include_str!("../../templates/host.fw.hbs")),
    (
        "create-vms.sh",
        include_str!("../../templates/create-vms.sh.hbs"),
    ),
    (
        "host-setup.sh",
        include_str!("../../templates/host-setup.sh.hbs"),
    ),
    (
        "csi-gate.sh",
        include_str!("../../templates/csi-gate.sh.hbs"),
    ),
    (
        "csi-sudoers",
        include_str!("../../templates/csi-sudoers.hbs"),
    ),
    (
        "csi-authorized-keys",
        include_str!("../../templates/csi-authorized-keys.hbs"),
    ),
    (
        "teleport.service",
        include_str!("../../templates/teleport.service.hbs"),
    ),
    (
        "teleport-resources.service",
        include_str!("../../templates/teleport-resources.service.hbs"),
    ),
    (
        "emergency-recovery.sh",
        include_str!("../../templates/emergency-recovery.sh.hbs"),
    ),
    (
        "sshd-teleport-node.conf",
        include_str!("../../templates/sshd-teleport-node.conf.hbs"),
    ),
    (
        "teleport-node-keys.sh",
        include_str!("../../templates/teleport-node-keys.sh.hbs"),
    ),
    (
        "platform-README.md",
        include_str!("../../templates/platform-README.md.hbs"),
    ),
];

impl Templates {
    /// Compiles the embedded templates. A template that does not compile is a
    /// bug caught by every test run.
    pub fn new() -> Result<Self, Box<handlebars::TemplateError>> {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        registry.register_escape_fn(handlebars::no_escape);
        for (name, text) in TEMPLATES {
            registry
                .register_template_string(name, text)
                .map_err(Box::new)?;
        }
        Ok(Templates { registry })
    }

    fn render(&self, template: &'static str, data: &impl Serialize) -> Result<String, RenderError> {
        self.registry
            .render(template, data)
            .map_err(|source| RenderError::Template { template, source })
    }
}

/// Every file the model needs rendered before the plan: configs, units,
/// manifests and the VMs' seeds (`compile` sorts them with the manifest).
pub fn render_all(
    templates: &Templates,
    model: &Model,
    secrets: &SecretValues,
    upstream: &cluster::upstream::UpstreamInputs,
) -> Result<Vec<Artifact>, RenderError> {
    let mut artifacts = Vec::new();
    let inline_manifests = cluster::inline_manifests(model, upstream)?;
    artifacts.extend(cluster::artifacts(&inline_manifests));
    artifacts.extend(per_host(model, |host| {
        let mut files = host_network::render(templates, model, host)?;
        files.extend(host_firewall::render(templates, model, host)?);
        files.extend(host_setup::render(templates, model, host)?);
        files.extend(teleport_node::drop_in(templates, model, host)?);
        Ok(files)
    })?);
    artifacts.push(host_firewall::render_cluster(templates, model)?);
    artifacts.extend(proxmox_cluster::render(model)?);
    artifacts.extend(haproxy::render(templates, model)?);
    artifacts.extend(talos::render(model, secrets, &inline_manifests)?);
    artifacts.extend(teleport::render(model, secrets)?);
    artifacts.extend(teleport::units(templates, model)?);
    artifacts.extend(teleport_node::keys_script(templates, model)?);
    artifacts.extend(platform::render(templates, model)?);
    // Seeds once every file a VM receives is rendered.
    let seeds = cloud_init::render(model, secrets, &artifacts)?;
    artifacts.extend(seeds);
    Ok(artifacts)
}

/// What a VM's role adds to its image (packages, units started after
/// cloud-init): the edge's HAProxy, Teleport's binaries and units.
pub fn role(model: &Model, vm: &Vm) -> Role {
    haproxy::role(model, vm).and(teleport::role(model, vm))
}

/// The artifacts rendered from the plan: the script that creates the VMs
/// with `qm`.
pub fn render_from_plan(
    templates: &Templates,
    model: &Model,
    plans: &[VmImages],
) -> Result<Vec<Artifact>, RenderError> {
    per_host(model, |host| {
        qm_script::render(templates, model, host, plans)
    })
}

/// The files each host gets, from `render`, which names them under
/// `host/`: a lone host's stay there, and each cluster host's go under
/// `hosts/NODE/`.
fn per_host(
    model: &Model,
    render: impl Fn(&Host) -> Result<Vec<Artifact>, RenderError>,
) -> Result<Vec<Artifact>, RenderError> {
    if let Some(host) = model.proxmox.single_host() {
        return render(host);
    }
    let mut artifacts = Vec::new();
    for host in &model.proxmox.hosts {
        for mut artifact in render(host)? {
            if let Some(rest) = artifact.path.strip_prefix("host/") {
                artifact.path = format!("hosts/{}/{rest}", host.node);
            }
            artifacts.push(artifact);
        }
    }
    Ok(artifacts)
}
