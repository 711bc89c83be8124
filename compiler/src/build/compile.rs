//! A blueprint compiled with what the pure core cannot get itself. The review tree needs nothing (`compile`); the deployable
//! tree reads every secret reference and every upstream input (manifests
//! and the Cilium chart fetched through the cache, image digests, all
//! verified against the lock) in between the core's `check` and `render`
//! stages.

use waddlec_core::blueprint::Date;
use waddlec_core::render::cluster::upstream::UpstreamInputs;
use waddlec_core::source::SourceFile;
use waddlec_core::Compiled;

use super::upstream::Upstream;
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

/// Where upstream inputs (`render::cluster::upstream`: manifests, the
/// Cilium chart, image digests) come from.
pub enum UpstreamSource<'a> {
    /// Placeholders naming the URL: the review tree, built offline.
    Placeholders,
    /// Fetched (or read from the cache) and verified against the lock file.
    Fetch(&'a mut Upstream),
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
    let inputs = match upstream {
        UpstreamSource::Placeholders => UpstreamInputs::default(),
        UpstreamSource::Fetch(upstream) => upstream.inputs(&checked.model)?,
    };
    Ok(waddlec_core::render(checked, values, &inputs)?)
}
