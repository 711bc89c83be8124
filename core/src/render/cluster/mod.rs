//! What the cluster needs before any CNI exists, delivered as the
//! control-plane machine configs' `cluster.inlineManifests` (Talos creates
//! them once the API server is up, in name order): the Gateway API CRDs,
//! the Cilium chart and its installer, the L2 announcements of the VIPs,
//! the Flux Operator and its `FluxInstance`, and Teleport's ServiceAccount.
//! Each is also a file of the tree (`cluster/bootstrap/NAME.yaml`) so a
//! reviewer reads it on its own; upstream manifests and the chart appear
//! there, and in the review tree's machine configs, as a placeholder naming
//! their URL (their bytes are pinned in the lock file), and images pinned
//! by digest show where the digest is pinned instead of it.
//!
//! Secrets are not here: `bootstrap_secrets` renders them for the API only.

pub mod bootstrap_secrets;
pub mod cilium;
pub mod flux;

pub mod teleport_access;
pub mod upstream;

use std::collections::BTreeMap;

use crate::artifact::Artifact;
use crate::model::Model;
use crate::yaml::{self, YamlError};
use upstream::{UpstreamInputs, UpstreamManifest};

/// One entry of `cluster.inlineManifests`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct InlineManifest {
    pub name: String,
    pub contents: String,
}

/// The inline manifests of the model's cluster, in the order Talos applies
/// them.
pub fn inline_manifests(
    model: &Model,
    upstream: &UpstreamInputs,
) -> Result<Vec<InlineManifest>, YamlError> {
    if model.talos.is_none() {
        return Ok(Vec::new());
    }
    let fetched: BTreeMap<&str, UpstreamManifest> = upstream::manifests(model)
        .into_iter()
        .map(|m| (m.name, m))
        .collect();
    let from_upstream = |name: &str| {
        fetched.get(name).map(|manifest| {
            upstream
                .texts
                .get(&manifest.url)
                .map(|text| pin_images(model, upstream, text))
                .unwrap_or_else(|| placeholder(manifest))
        })
    };
    let rendered =
        |documents: Vec<String>| (!documents.is_empty()).then(|| yaml::stream(&documents));
    let values = |objects: Vec<serde_json::Value>| {
        objects
            .iter()
            .map(yaml::document)
            .collect::<Result<Vec<_>, _>>()
    };
    let all = [
        (
            upstream::GATEWAY_API_CRDS,
            from_upstream(upstream::GATEWAY_API_CRDS),
        ),
        (
            upstream::CILIUM_CHART,
            match cilium::chart(model, upstream)? {
                Some(config_map) => Some(config_map),
                None => upstream::cilium_chart(model).map(|chart| placeholder(&chart)),
            },
        ),
        (
            "20-cilium-install",
            rendered(cilium::installer(model, upstream)?),
        ),
        (
            "30-cilium-l2-announcements",
            rendered(values(cilium::l2_announcements(model))?),
        ),
        (
            upstream::FLUX_OPERATOR,
            from_upstream(upstream::FLUX_OPERATOR),
        ),
        (
            "50-flux-instance",
            rendered(values(flux::instance(model).into_iter().collect())?),
        ),
        (
            "60-teleport-access",
            rendered(teleport_access::objects(model)?),
        ),
    ];
    Ok(all
        .into_iter()
        .filter_map(|(name, contents)| {
            contents.map(|contents| InlineManifest {
                name: name.to_string(),
                contents,
            })
        })
        .collect())
}

/// An upstream manifest's tagged images by digest: the Flux Operator's
/// `install.yaml` names its own image by tag.
fn pin_images(model: &Model, upstream: &UpstreamInputs, text: &str) -> String {
    upstream::tagged_images(model)
        .iter()
        .fold(text.to_string(), |text, image| {
            match upstream.images.get(&image.reference) {
                Some(pinned) => text.replace(
                    &format!("image: {}\n", image.reference),
                    &format!("image: {pinned}\n"),
                ),
                None => text,
            }
        })
}

fn placeholder(manifest: &UpstreamManifest) -> String {
    format!(
        "# {}: not in the review tree.\n# `waddlec build --with-secrets` embeds {}\n# (its sha256 is pinned in the lock file).\n",
        manifest.description, manifest.url
    )
}

/// Each inline manifest as a file of the tree.
pub fn artifacts(manifests: &[InlineManifest]) -> Vec<Artifact> {
    manifests
        .iter()
        .map(|m| {
            Artifact::file(
                format!("cluster/bootstrap/{}.yaml", m.name),
                "kubernetes-manifests",
                m.contents.clone(),
            )
        })
        .collect()
}
