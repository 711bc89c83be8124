//! What waddlec takes from upstream releases rather than rendering: the
//! Gateway API CRDs Cilium needs, the Flux Operator's `install.yaml`, the
//! Cilium chart archive the installer Job installs, and the digests of the
//! images the bootstrap starts. Listed here (pure); the build fetches each
//! once, pins it by sha256 in the lock file, and hands the renderers the
//! bytes (`UpstreamInputs`). Talos' own `extraManifests` would fetch URLs
//! at boot with no checksum, and cilium-cli would download the chart from
//! its Helm repository, so nothing is left for the nodes to download.
//!
//! Images: cilium-cli's and the Flux Operator's are named by tag and
//! resolved to their manifest digest in their registry (the lock's entry is
//! the registry's manifest URL, its sha256 the digest). Cilium's own images
//! are the ones its chart names: a released chart carries each image's
//! digest beside its tag, so the build reads them from the pinned archive
//! and records them in the lock beside it, and the values keep the chart's
//! `useDigest` on (`resolve::cilium` refuses anything that would not).

use std::collections::BTreeMap;

use crate::model::{Flux, Model};

/// The Gateway API release Cilium 1.19 requires: its gateway controller
/// serves v1.4 (v1.5's CRDs crash it; cilium/cilium#45139).
pub const GATEWAY_API_VERSION: &str = "v1.4.1";
const GITHUB: &str = "https://github.com";
/// Cilium's Helm repository, the one cilium-cli downloads from.
pub const CILIUM_HELM_REPOSITORY: &str = "https://helm.cilium.io/";

/// One upstream file and the inline manifest it becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamManifest {
    /// The inline manifest's name.
    pub name: &'static str,
    /// What it is, for the lock file and people.
    pub description: String,
    pub url: String,
}

pub const GATEWAY_API_CRDS: &str = "10-gateway-api-crds";
pub const CILIUM_CHART: &str = "15-cilium-chart";
pub const FLUX_OPERATOR: &str = "40-flux-operator";

/// The upstream manifests (text) the model's cluster needs.
pub fn manifests(model: &Model) -> Vec<UpstreamManifest> {
    let mut all = Vec::new();
    if model.cilium.is_some() {
        all.push(UpstreamManifest {
            name: GATEWAY_API_CRDS,
            description: format!("gateway-api {GATEWAY_API_VERSION} standard CRDs"),
            url: format!(
                "{GITHUB}/kubernetes-sigs/gateway-api/releases/download/{GATEWAY_API_VERSION}/standard-install.yaml"
            ),
        });
    }
    if let Some(flux) = &model.flux {
        let version = flux_operator_version(flux);
        all.push(UpstreamManifest {
            name: FLUX_OPERATOR,
            description: format!("flux-operator v{version} install.yaml"),
            url: format!(
                "{GITHUB}/controlplaneio-fluxcd/flux-operator/releases/download/v{version}/install.yaml"
            ),
        });
    }
    all
}

/// The Cilium chart archive at the pinned version, as Cilium's Helm
/// repository serves it.
pub fn cilium_chart(model: &Model) -> Option<UpstreamManifest> {
    let cilium = model.cilium.as_ref()?;
    Some(UpstreamManifest {
        name: CILIUM_CHART,
        description: format!("cilium {} Helm chart", cilium.version),
        url: format!("{CILIUM_HELM_REPOSITORY}{}", chart_file(&cilium.version)),
    })
}

/// The chart archive's file name (`cilium-1.19.0.tgz`).
pub fn chart_file(version: &str) -> String {
    format!("cilium-{version}.tgz")
}

/// The key of a chart image table in `UpstreamInputs::images`.
pub fn chart_image_key(table: &str) -> String {
    format!("cilium-chart:{table}")
}

/// An image named by tag that the build resolves to its digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaggedImage {
    /// `registry/repository:tag`, also its key in `UpstreamInputs::images`.
    pub reference: String,
}

impl TaggedImage {
    /// The registry's manifest URL of the tag (OCI distribution API); the
    /// lock pins its digest under this URL.
    pub fn manifest_url(&self) -> String {
        image_manifest_url(&self.reference)
    }
}

/// `registry/path:tag` → `https://registry/v2/path/manifests/tag`.
pub fn image_manifest_url(reference: &str) -> String {
    let (name, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
    let (registry, path) = name.split_once('/').unwrap_or(("docker.io", name));
    format!("https://{registry}/v2/{path}/manifests/{tag}")
}

/// The images the bootstrap manifests start that are named by tag: the
/// Cilium CLI the installer Job runs and the Flux Operator.
pub fn tagged_images(model: &Model) -> Vec<TaggedImage> {
    let mut all = Vec::new();
    if let Some(cilium) = &model.cilium {
        all.push(TaggedImage {
            reference: cilium.cli_image.clone(),
        });
    }
    if let Some(flux) = &model.flux {
        all.push(TaggedImage {
            reference: flux_operator_image(flux),
        });
    }
    all
}

/// The Flux Operator image `install.yaml` names.
pub fn flux_operator_image(flux: &Flux) -> String {
    format!(
        "ghcr.io/controlplaneio-fluxcd/flux-operator:v{}",
        flux_operator_version(flux)
    )
}

fn flux_operator_version(flux: &Flux) -> &str {
    flux.operator_version.trim_start_matches('v')
}

/// What the build hands the renderers from upstream: the text of each
/// manifest and the bytes of each archive by URL, and each image pinned by
/// digest (`repository:tag@sha256:…`) by its key. Empty for the review
/// tree, built offline: its renderers write placeholders naming the URL.
#[derive(Clone, Debug, Default)]
pub struct UpstreamInputs {
    pub texts: BTreeMap<String, String>,
    pub archives: BTreeMap<String, Vec<u8>>,
    pub images: BTreeMap<String, String>,
}

impl UpstreamInputs {
    /// `key`'s image by digest, or for the review tree a reference that
    /// says where the digest is pinned.
    pub fn image(&self, key: &str, tagged: &str) -> String {
        self.images
            .get(key)
            .cloned()
            .unwrap_or_else(|| format!("{tagged}@sha256:pinned-in-the-lock-file"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_names_its_registry_manifest() {
        assert_eq!(
            image_manifest_url("quay.io/cilium/cilium-cli:v0.19.0"),
            "https://quay.io/v2/cilium/cilium-cli/manifests/v0.19.0"
        );
        assert_eq!(
            image_manifest_url("ghcr.io/controlplaneio-fluxcd/flux-operator:v0.40.0"),
            "https://ghcr.io/v2/controlplaneio-fluxcd/flux-operator/manifests/v0.40.0"
        );
    }
}
