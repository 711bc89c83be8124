//! waddlec: compiles one TOML blueprint into every artifact of the platform.
//!
//! The pipeline, one module per stage, data flowing one way:
//! `blueprint` (parse) → `resolve` (defaults, references, topology checks) →
//! `model` → `render` (pure, one module per artifact family) → `emit`
//! (manifest, temp-dir-and-rename, `--check`). `diagnostics` carries findings
//! out of every stage; `cli` is the only place that touches the terminal.
//! See ARCHITECTURE.md for the invariants.

pub mod artifact;
pub mod bake;
pub mod blueprint;
pub mod bootstrap;
pub mod cli;
pub mod deploy;
pub mod diagnostics;
pub mod emit;
pub mod lock;
pub mod model;
pub mod net;
pub mod publish;
pub mod render;
pub mod resolve;
pub mod secrets;

use artifact::Artifact;
use blueprint::{Date, SourceFile};
use diagnostics::Diagnostics;

/// What one successful compilation produced.
pub struct Compiled {
    pub model: model::Model,
    /// Every artifact, `manifest.json` included, sorted by path.
    pub artifacts: Vec<Artifact>,
    /// The disks each VM boots from (`host/images.json`), for `bake`.
    pub images: Vec<render::images::VmImages>,
    /// What `manifest.json` says, for `--format json`.
    pub manifest: emit::Manifest,
    pub warnings: Diagnostics,
    blueprint_text: String,
}

/// Why a compilation produced nothing.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("the blueprint is invalid")]
    Invalid(Diagnostics),
    #[error(transparent)]
    Render(#[from] render::RenderError),
    #[error(transparent)]
    Secret(#[from] secrets::SecretError),
    #[error("internal error: a template does not compile: {0}")]
    Template(#[from] Box<handlebars::TemplateError>),
    #[error(transparent)]
    Upstream(#[from] net::fetch::FetchError),
}

impl Compiled {
    /// Adds artifacts made after rendering (e.g. `images.json`) and
    /// recomputes the manifest over the whole tree.
    pub fn add_artifacts(&mut self, extra: Vec<Artifact>) {
        self.artifacts.retain(|a| a.path != emit::MANIFEST_PATH);
        self.artifacts.extend(extra);
        self.manifest = emit::manifest(
            &self.manifest.project,
            &self.blueprint_text,
            &self.artifacts,
            self.manifest.secrets,
        );
        self.artifacts.push(self.manifest.to_artifact());
        self.artifacts.sort_by(|a, b| a.path.cmp(&b.path));
    }
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
    Fetch(
        &'a mut dyn FnMut(
            &render::cluster::upstream::UpstreamManifest,
        ) -> Result<String, net::fetch::FetchError>,
    ),
}

/// Parses, validates and renders a blueprint into the review tree. Pure
/// apart from `today`, which only decides whether expired temporary rules
/// are warned about.
pub fn compile(source: &SourceFile, today: Date) -> Result<Compiled, CompileError> {
    compile_with(
        source,
        today,
        SecretSource::Redacted,
        UpstreamSource::Placeholders,
    )
}

/// Like [`compile`], with the secret values `secrets` says and upstream
/// manifests from `upstream`.
pub fn compile_with(
    source: &SourceFile,
    today: Date,
    secrets: SecretSource<'_>,
    upstream: UpstreamSource<'_>,
) -> Result<Compiled, CompileError> {
    tracing::info!(blueprint = %source.name, "parsing");
    let document = blueprint::parse(source).map_err(CompileError::Invalid)?;
    tracing::info!("resolving and checking the topology");
    let (model, warnings) = resolve::resolve(&document, today).map_err(CompileError::Invalid)?;
    tracing::debug!(
        vms = model.vms.len(),
        warnings = warnings.count(),
        "model ready"
    );
    let (values, included) = match secrets {
        SecretSource::Redacted => (secrets::SecretValues::redacted(&model), false),
        SecretSource::Resolve(base) => (secrets::SecretValues::resolve(&model, base)?, true),
    };
    let mut texts = render::cluster::UpstreamTexts::default();
    if let UpstreamSource::Fetch(fetch) = upstream {
        for manifest in render::cluster::upstream::manifests(&model) {
            tracing::info!(url = %manifest.url, "embedding {}", manifest.description);
            texts.0.insert(manifest.url.clone(), fetch(&manifest)?);
        }
    }
    let templates = render::Templates::new()?;
    tracing::info!(
        secrets = if included { "included" } else { "redacted" },
        "rendering"
    );
    let (mut artifacts, images) = render::render_all(&templates, &model, &values, &texts)?;
    for artifact in &artifacts {
        tracing::debug!(path = %artifact.path, kind = artifact.kind, bytes = artifact.contents.len(), "rendered");
    }
    if !included {
        // Placeholders are not secrets: review files get ordinary modes.
        for artifact in &mut artifacts {
            artifact.secret = false;
        }
    }
    let manifest = emit::manifest(
        &model.project.name,
        &source.text,
        &artifacts,
        if included {
            emit::INCLUDED
        } else {
            emit::REDACTED
        },
    );
    artifacts.push(manifest.to_artifact());
    artifacts.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Compiled {
        model,
        artifacts,
        images,
        manifest,
        warnings,
        blueprint_text: source.text.clone(),
    })
}
