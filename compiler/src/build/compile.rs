//! A blueprint compiled with what the pure core cannot get itself. The review tree needs nothing (`compile`); the deployable
//! tree reads every secret reference and the text of every upstream
//! manifest (fetched through the cache and verified against the lock) in
//! between the core's `check` and `render` stages.

use waddlec_core::blueprint::Date;
use waddlec_core::render::cluster::upstream::{self, UpstreamManifest};
use waddlec_core::render::cluster::UpstreamTexts;
use waddlec_core::source::SourceFile;
use waddlec_core::Compiled;

use crate::net::fetch::FetchError;
use crate::secrets;

/// Why a build produced nothing.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Core(#[from] waddlec_core::CompileError),
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error(transparent)]
    Upstream(#[from] FetchError),
}

/// Which secret values a build writes.
pub enum SecretSource<'a> {
    /// Placeholders: the review tree, buildable without any secret.
    Redacted,
    /// Read every secret reference; `file:` paths are relative to this
    /// directory (the blueprint's).
    Resolve(&'a std::path::Path),
}

/// Where the text of upstream manifests (`render::cluster::upstream`) comes
/// from.
pub enum UpstreamSource<'a> {
    /// Placeholders naming the URL: the review tree, built offline.
    Placeholders,
    /// The text of each manifest, fetched (or read from the cache) and
    /// verified against the lock file.
    Fetch(&'a mut dyn FnMut(&UpstreamManifest) -> Result<String, FetchError>),
}

/// Parses, validates and renders a blueprint into the review tree. Pure
/// apart from `today`, which only decides whether expired temporary rules
/// are warned about.
pub fn compile(source: &SourceFile, today: Date) -> Result<Compiled, CompileError> {
    Ok(waddlec_core::compile(source, today)?)
}

/// Like [`compile`], with the secret values `secrets` says and upstream
/// manifests from `upstream`.
pub fn compile_with(
    source: &SourceFile,
    today: Date,
    secrets: SecretSource<'_>,
    upstream: UpstreamSource<'_>,
) -> Result<Compiled, CompileError> {
    let checked = waddlec_core::check(source, today)?;
    let values = match secrets {
        SecretSource::Redacted => None,
        SecretSource::Resolve(base) => Some(secrets::resolve(&checked.model, base)?),
    };
    let mut texts = UpstreamTexts::default();
    if let UpstreamSource::Fetch(fetch) = upstream {
        for manifest in upstream::manifests(&checked.model) {
            tracing::info!(url = %manifest.url, "embedding {}", manifest.description);
            texts.0.insert(manifest.url.clone(), fetch(&manifest)?);
        }
    }
    Ok(waddlec_core::render(checked, values, &texts)?)
}
