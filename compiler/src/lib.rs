//! waddlec: compiles one TOML blueprint into every artifact of the platform.
//!
//! The pipeline, one module per stage, data flowing one way:
//! `blueprint` (parse) → `resolve` (defaults, references, topology checks) →
//! `model` → `render` (pure, one module per artifact family) → `emit`
//! (manifest, temp-dir-and-rename, `--check`). `diagnostics` carries findings
//! out of every stage; `cli` is the only place that touches the terminal.
//! See ARCHITECTURE.md for the invariants.

pub mod artifact;
pub mod blueprint;
pub mod cli;
pub mod diagnostics;
pub mod emit;
pub mod model;
pub mod render;
pub mod resolve;

use artifact::Artifact;
use blueprint::{Date, SourceFile};
use diagnostics::Diagnostics;

/// What one successful compilation produced.
pub struct Compiled {
    pub model: model::Model,
    /// Every artifact, `manifest.json` included, sorted by path.
    pub artifacts: Vec<Artifact>,
    /// What `manifest.json` says, for `--format json`.
    pub manifest: emit::Manifest,
    pub warnings: Diagnostics,
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

/// Parses, validates and renders a blueprint. Pure apart from `today`, which
/// only decides whether expired temporary rules are warned about.
pub fn compile(source: &SourceFile, today: Date) -> Result<Compiled, CompileError> {
    let document = blueprint::parse(source).map_err(CompileError::Invalid)?;
    let (model, warnings) = resolve::resolve(&document, today).map_err(CompileError::Invalid)?;
    let templates = render::Templates::new()?;
    let mut artifacts = render::render_all(&templates, &model)?;
    let manifest = emit::manifest(&model.project.name, &source.text, &artifacts);
    artifacts.push(manifest.to_artifact());
    artifacts.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Compiled {
        model,
        artifacts,
        manifest,
        warnings,
    })
}
