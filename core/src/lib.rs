//! waddlec-core: the pure stages of the compiler, from one TOML blueprint to
//! every artifact of the platform.
//!
//! The pipeline, one module per stage, data flowing one way:
//! `blueprint` (parse) → `resolve` (defaults, references, topology checks) →
//! `model` → `render` (pure, one module per artifact family) and `plan`
//! (what the actors carry out: disk images, VM definitions, the schematic)
//! → `emit` (manifest, temp-dir-and-rename, `--check`). `diagnostics`
//! carries findings out of parse and resolve, anchored in `source`;
//! `secrets` holds secret values and their placeholders, never reading one.
//!
//! This crate never talks to the network, runs a process or reads the clock
//! (its Cargo.toml has no such dependency; the caller hands in `today`).
//! The `waddlec` crate above it reads secrets, fetches upstream inputs,
//! bakes, deploys and prints. See ARCHITECTURE.md for the invariants.

pub mod artifact;
pub mod blueprint;
pub mod diagnostics;
pub mod emit;
pub mod model;
pub mod plan;
pub mod render;
pub mod resolve;
pub mod secrets;
pub mod source;
pub mod yaml;

use artifact::Artifact;
use blueprint::Date;
use diagnostics::Diagnostics;
use secrets::SecretValues;
use source::SourceFile;

/// A blueprint parsed and checked: the model, and the warnings found on the
/// way. What [`render`] turns into artifacts.
pub struct Checked {
    pub model: model::Model,
    pub warnings: Diagnostics,
    blueprint_text: String,
}

/// What one successful compilation produced.
pub struct Compiled {
    pub model: model::Model,
    /// Every artifact, `manifest.json` included, sorted by path.
    pub artifacts: Vec<Artifact>,
    /// The disks each VM boots from (`host/images.json`), for `bake`.
    pub images: Vec<plan::images::VmImages>,
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
    #[error("internal error: a template does not compile: {0}")]
    Template(#[from] Box<handlebars::TemplateError>),
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

/// Parses, validates and renders a blueprint into the review tree:
/// placeholders for every secret and every upstream manifest. Pure apart
/// from `today`, which only decides whether expired temporary rules are
/// warned about.
pub fn compile(source: &SourceFile, today: Date) -> Result<Compiled, CompileError> {
    render(
        check(source, today)?,
        None,
        &render::cluster::upstream::UpstreamInputs::default(),
    )
}

/// Parses and validates a blueprint into its model.
pub fn check(source: &SourceFile, today: Date) -> Result<Checked, CompileError> {
    tracing::info!(blueprint = %source.name, "parsing");
    let document = blueprint::parse(source).map_err(CompileError::Invalid)?;
    tracing::info!("resolving and checking the topology");
    let (model, warnings) = resolve::resolve(&document, today).map_err(CompileError::Invalid)?;
    tracing::debug!(
        vms = model.vms.len(),
        warnings = warnings.count(),
        "model ready"
    );
    Ok(Checked {
        model,
        warnings,
        blueprint_text: source.text.clone(),
    })
}

/// Renders a checked blueprint. `secrets` are the real values for the
/// deployable tree, or `None` for the review tree's placeholders;
/// `upstream` holds the text of each upstream manifest and the bytes of
/// each archive by URL, and the images pinned by digest (empty: the review
/// tree's placeholders naming the URL).
pub fn render(
    checked: Checked,
    secrets: Option<SecretValues>,
    upstream: &render::cluster::upstream::UpstreamInputs,
) -> Result<Compiled, CompileError> {
    let Checked {
        model,
        warnings,
        blueprint_text,
    } = checked;
    let included = secrets.is_some();
    let values = secrets.unwrap_or_else(|| SecretValues::redacted(&model));
    let templates = render::Templates::new()?;
    tracing::info!(
        secrets = if included { "included" } else { "redacted" },
        "rendering"
    );
    let mut artifacts = render::render_all(&templates, &model, &values, upstream)?;
    // The plan names images by what goes into them, so it follows the
    // rendered files; the qm script and `images.json` follow the plan.
    let images = plan::images::plan(&model, &artifacts, |vm| render::role(&model, vm))
        .map_err(render::RenderError::from)?;
    artifacts.extend(render::render_from_plan(&templates, &model, &images)?);
    artifacts.push(plan::images::artifact(&images));
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
        &blueprint_text,
        &artifacts,
        if included {
            emit::Secrets::Included
        } else {
            emit::Secrets::Redacted
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
        blueprint_text,
    })
}
