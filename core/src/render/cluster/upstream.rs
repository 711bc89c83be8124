//! Manifests waddlec embeds from upstream releases rather than rendering:
//! the Gateway API CRDs Cilium needs and the Flux Operator's `install.yaml`.
//! Listed here by URL (pure); the build fetches each once through the
//! download cache, pinned by sha256 in the lock file, and hands the text to
//! the renderers. Talos' own `extraManifests` would fetch URLs at boot with
//! no checksum, so nothing is left for the nodes to download.

use crate::model::Model;

/// The Gateway API release Cilium 1.19 requires: its gateway controller
/// serves v1.4 (v1.5's CRDs crash it; cilium/cilium#45139).
pub const GATEWAY_API_VERSION: &str = "v1.4.1";
const GITHUB: &str = "https://github.com";

/// One upstream manifest and the inline manifest it becomes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamManifest {
    /// The inline manifest's name.
    pub name: &'static str,
    /// What it is, for the lock file and people.
    pub description: String,
    pub url: String,
}

pub const GATEWAY_API_CRDS: &str = "10-gateway-api-crds";
pub const FLUX_OPERATOR: &str = "40-flux-operator";

/// The upstream manifests the model's cluster needs.
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
    if model.flux.is_some() {
        let version = model.versions.flux_operator.trim_start_matches('v');
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
