//! Render: [`Model`] + [`SecretValues`] → artifacts. One module per artifact
//! family, each a pure function: no I/O, no clock, no randomness, no
//! environment. Secret values arrive already read (or as placeholders, for
//! the review tree); renderers cannot tell which.
//!
//! Structured formats (YAML, JSON) are serialised from types (`yaml`); only
//! text configs come from templates.
//!
//! Text configs come from the handlebars templates in `compiler/templates/`,
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
pub mod images;
pub mod k8s;
pub mod kubeconfig;
pub mod platform;
mod qm_script;
pub mod seed;
pub mod talos;
pub mod teleport;
pub mod vm_config;
pub mod yaml;

use handlebars::Handlebars;
use serde::Serialize;

use crate::artifact::Artifact;
use crate::model::Model;
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
    Yaml(#[from] yaml::YamlError),
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
        "teleport.service",
        include_str!("../../templates/teleport.service.hbs"),
    ),
    (
        "teleport-resources.service",
        include_str!("../../templates/teleport-resources.service.hbs"),
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

/// Every artifact of the model (`compile` sorts them with the manifest), and
/// the image plan `bake` follows.
pub fn render_all(
    templates: &Templates,
    model: &Model,
    secrets: &SecretValues,
    upstream: &cluster::UpstreamTexts,
) -> Result<(Vec<Artifact>, Vec<images::VmImages>), RenderError> {
    let mut artifacts = Vec::new();
    let inline_manifests = cluster::inline_manifests(model, upstream)?;
    artifacts.extend(cluster::artifacts(&inline_manifests));
    artifacts.extend(host_network::render(templates, model)?);
    artifacts.extend(host_firewall::render(templates, model)?);
    artifacts.extend(host_setup::render(templates, model)?);
    artifacts.extend(haproxy::render(templates, model)?);
    artifacts.extend(talos::render(model, secrets, &inline_manifests)?);
    artifacts.extend(teleport::render(model, secrets)?);
    artifacts.extend(teleport::units(templates, model)?);
    artifacts.extend(platform::render(templates, model)?);
    // Seeds once every file a VM receives is rendered; then the images,
    // named by what goes into them, and the script that boots them.
    let seeds = cloud_init::render(model, &artifacts)?;
    artifacts.extend(seeds);
    let plan = images::plan(model, &artifacts, |vm| {
        haproxy::role(model, vm).and(teleport::role(model, vm))
    })?;
    artifacts.extend(qm_script::render(templates, model, &plan)?);
    artifacts.push(images::artifact(&plan));
    Ok((artifacts, plan))
}
