//! Parse: blueprint source text → [`Blueprint`] document.
//!
//! Owns the TOML language surface: syntax, strict keys, value spellings and the
//! language version. It knows nothing of topology; `resolve` checks that.

mod document;
mod located;
mod path;
mod values;

pub use crate::source::{SourceFile, Span};
pub use document::*;
pub use located::Located;
pub use values::{Date, Port, SecretRef, Size, TargetRef, SECRET_ERROR_MARKER};

use crate::diagnostics::{rules, Diagnostic, Diagnostics};
use crate::source::SECRET_KEY_HINTS;

/// The blueprint language version this compiler reads.
pub const LANGUAGE_VERSION: u32 = 1;

/// Reads the TOML into the typed document, or explains the first problem.
pub fn parse(source: &SourceFile) -> Result<Blueprint, Diagnostics> {
    let blueprint: Blueprint =
        toml::from_str(&source.text).map_err(|e| Diagnostics::from(toml_error(&source.text, e)))?;
    if *blueprint.version != LANGUAGE_VERSION {
        return Err(Diagnostics::from(
            Diagnostic::new(
                &rules::UNSUPPORTED_VERSION,
                blueprint.version.span(),
                format!(
                    "blueprint language version {} is not supported",
                    *blueprint.version
                ),
            )
            .with_label("this version")
            .with_path("version")
            .with_help(format!("this waddlec reads `version = {LANGUAGE_VERSION}`")),
        ));
    }
    Ok(blueprint)
}

fn line_at(text: &str, offset: usize) -> &str {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    text.get(start..end).unwrap_or_default()
}

fn toml_error(text: &str, err: toml::de::Error) -> Diagnostic {
    let diagnostic = toml_error_without_path(text, err);
    match path::path_at(text, diagnostic.span.start) {
        Some(path) => diagnostic.with_path(path),
        None => diagnostic,
    }
}

fn toml_error_without_path(text: &str, err: toml::de::Error) -> Diagnostic {
    let span = err.span().unwrap_or(0..0);
    let raw = err.message().trim().to_string();
    if let Some(message) = raw.strip_prefix(SECRET_ERROR_MARKER) {
        return Diagnostic::new(&rules::LITERAL_SECRET, span, message.to_string())
            .with_label("not a secret reference")
            .hiding_source();
    }
    // A malformed line whose key looks secret may hold the secret itself: say
    // where, never what.
    let key = line_at(text, span.start)
        .split('=')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if SECRET_KEY_HINTS.iter().any(|hint| key.contains(hint)) {
        let (rule, _) = classify(&raw);
        let message = if raw.starts_with("invalid type") || raw.starts_with("invalid value") {
            "this secret field needs a reference string such as `op://VAULT/ITEM/FIELD`".to_string()
        } else {
            raw
        };
        return Diagnostic::new(rule, span, message).hiding_source();
    }
    let (rule, help) = classify(&raw);
    let mut diagnostic = Diagnostic::new(rule, span, raw).with_label("here");
    if let Some(help) = help {
        diagnostic = diagnostic.with_help(help);
    }
    diagnostic
}

/// Sorts serde/TOML messages into our rules and adds the fix where it is generic.
fn classify(message: &str) -> (&'static rules::Rule, Option<String>) {
    if message.starts_with("unknown field") {
        return (
            &rules::UNKNOWN_KEY,
            Some("blueprints are strict: remove the key or fix its spelling (`waddlec schema` lists every key)".into()),
        );
    }
    if message.starts_with("missing field") {
        return (
            &rules::MISSING_KEY,
            Some("add the key to this table".into()),
        );
    }
    if message.starts_with("invalid size") {
        return (&rules::INVALID_SIZE, None);
    }
    if message.starts_with("port ") || message.contains(" is not a port number") {
        return (&rules::PORT_OUT_OF_RANGE, None);
    }
    if message.starts_with("invalid type")
        || message.starts_with("invalid value")
        || message.starts_with("unknown variant")
        || message.starts_with("invalid IP")
        || message.contains("target `")
        || message.contains("reference")
        || message.contains("date")
    {
        return (&rules::INVALID_VALUE, None);
    }
    (&rules::TOML_SYNTAX, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> SourceFile {
        SourceFile {
            name: "t.toml".into(),
            text: text.into(),
        }
    }

    #[test]
    fn syntax_errors_are_located() {
        let diagnostics = parse(&source("version = 1\n[project\n"))
            .unwrap_err()
            .sorted();
        let diagnostic = &diagnostics[0];
        assert_eq!(diagnostic.rule.code, rules::TOML_SYNTAX.code);
        assert!(diagnostic.span.start >= 12, "{:?}", diagnostic.span);
    }

    #[test]
    fn literal_secrets_hide_their_source() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Holder {
            token: SecretRef,
        }
        let text = "token = \"hunter2-value\"\n";
        let diagnostic = toml_error(text, toml::from_str::<Holder>(text).unwrap_err());
        assert_eq!(diagnostic.rule.code, rules::LITERAL_SECRET.code);
        assert!(diagnostic.hide_source);
        assert!(!diagnostic.message.contains("hunter2"));
    }
}
