//! The Talos Image Factory API: registering a schematic (`POST /schematics`)
//! and checking that the factory computed the ID we computed offline. A
//! mismatch means our canonical encoding and the factory's disagree, and
//! every image and installer reference in the build would be wrong: it is an
//! error, never a warning.

use serde::Deserialize;

use super::{http_client, NetError};
use crate::plan::schematic::{Schematic, FACTORY_HOST};

/// The public factory.
pub fn default_url() -> String {
    format!("https://{FACTORY_HOST}")
}

#[derive(Deserialize)]
struct Created {
    id: String,
    /// Older factories answer without it.
    #[serde(default)]
    schematic: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum FactoryError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(
        "the factory at {url} computed schematic ID {theirs}, waddlec computed {ours}: \
         the images would not be the ones this build references"
    )]
    IdMismatch {
        url: String,
        ours: String,
        theirs: String,
    },
    #[error("the factory at {url} echoed a different schematic than was sent:\n{theirs}")]
    SchematicMismatch { url: String, theirs: String },
}

/// Registers `schematic` with the factory at `base` and returns its ID,
/// after checking the factory agrees with ours.
pub fn register(base: &str, schematic: &Schematic) -> Result<String, FactoryError> {
    let url = format!("{}/schematics", base.trim_end_matches('/'));
    let request_error = |problem: String| NetError::Request {
        url: url.clone(),
        problem,
    };
    let body = schematic
        .canonical_yaml()
        .map_err(|e| request_error(e.to_string()))?;
    let ours = schematic.id().map_err(|e| request_error(e.to_string()))?;
    let response = http_client()?
        .post(&url)
        .header("Content-Type", "application/yaml")
        .body(body.clone())
        .send()
        .map_err(|e| request_error(e.to_string()))?;
    let status = response.status();
    let text = response.text().map_err(|e| request_error(e.to_string()))?;
    if !status.is_success() {
        return Err(request_error(format!("HTTP {status}: {}", text.trim())).into());
    }
    let created: Created = serde_json::from_str(&text)
        .map_err(|e| request_error(format!("unexpected answer ({e}): {}", text.trim())))?;
    if created.id != ours {
        return Err(FactoryError::IdMismatch {
            url,
            ours,
            theirs: created.id,
        });
    }
    if let Some(theirs) = created.schematic.filter(|theirs| *theirs != body) {
        return Err(FactoryError::SchematicMismatch { url, theirs });
    }
    Ok(ours)
}
