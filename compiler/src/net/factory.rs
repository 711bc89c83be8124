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

/// The Talos versions the factory at `base` builds images and installers
/// for (`GET /versions`), and those it marks broken (`GET
/// /versions?broken=true`): siderolabs/image-factory,
/// `internal/frontend/http/metadata/handler.go` (a JSON array of `vX.Y.Z`).
pub fn versions(base: &str) -> Result<FactoryVersions, FactoryError> {
    let list = |query: &str| -> Result<Vec<String>, FactoryError> {
        let url = format!("{}/versions{query}", base.trim_end_matches('/'));
        let request_error = |problem: String| NetError::Request {
            url: url.clone(),
            problem,
        };
        let response = http_client()?
            .get(&url)
            .send()
            .map_err(|e| request_error(e.to_string()))?;
        let status = response.status();
        let text = response.text().map_err(|e| request_error(e.to_string()))?;
        if !status.is_success() {
            return Err(request_error(format!("HTTP {status}: {}", text.trim())).into());
        }
        serde_json::from_str(&text)
            .map_err(|e| request_error(format!("unexpected answer ({e}): {}", text.trim())).into())
    };
    Ok(FactoryVersions {
        known: list("")?,
        broken: list("?broken=true")?,
    })
}

/// What the factory says of Talos versions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FactoryVersions {
    pub known: Vec<String>,
    pub broken: Vec<String>,
}

impl FactoryVersions {
    /// Why the factory's installer for `version` cannot be used, if so.
    pub fn refusal(&self, version: &str) -> Option<String> {
        if self.broken.iter().any(|v| v == version) {
            return Some(format!(
                "the Image Factory marks Talos {version} broken; pin another release in versions.talos"
            ));
        }
        if self.known.iter().any(|v| v == version) {
            return None;
        }
        let minor = version.rsplit_once('.').map_or(version, |(minor, _)| minor);
        let mut same_minor: Vec<&str> = self
            .known
            .iter()
            .map(String::as_str)
            .filter(|v| v.starts_with(&format!("{minor}.")))
            .collect();
        same_minor.sort_by_key(|v| {
            v.rsplit_once('.')
                .and_then(|(_, patch)| patch.parse::<u32>().ok())
        });
        Some(format!(
            "the Image Factory does not know Talos {version}, so it has no installer for it{}; pin a release it lists in versions.talos",
            match same_minor.last() {
                Some(newest) => format!(" (its newest {minor}.x is {newest})"),
                None => String::new(),
            }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_the_factory_lacks_or_marks_broken_is_refused_with_the_fix() {
        let versions = FactoryVersions {
            known: ["v1.11.5", "v1.12.0", "v1.12.9", "v1.12.10"]
                .map(String::from)
                .to_vec(),
            broken: vec!["v1.12.0".into()],
        };
        assert_eq!(versions.refusal("v1.12.10"), None);
        let unknown = versions.refusal("v1.12.99").unwrap();
        assert!(unknown.contains("newest v1.12.x is v1.12.10"), "{unknown}");
        assert!(versions.refusal("v1.12.0").unwrap().contains("broken"));
        let other = versions.refusal("v1.13.0").unwrap();
        assert!(!other.contains("newest"), "{other}");
    }
}
