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
pub use values::{BundleRef, Date, Port, SecretRef, Size, TargetRef, SECRET_ERROR_MARKER};

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
    if let Some(diagnostic) = table_array(text, &span, &raw) {
        return diagnostic;
    }
    let (rule, mut help) = classify(&raw);
    let mut message = plain_words(&raw);
    if help.is_none() && raw.starts_with("invalid type") {
        help = Some(type_help(&message));
    }
    if let Some((what, fix)) = address_problem(text, &span, &raw) {
        message = what;
        help = Some(fix);
    }
    let mut diagnostic = Diagnostic::new(rule, span, message).with_label("here");
    if let Some(help) = help {
        diagnostic = diagnostic.with_help(help);
    }
    diagnostic
}

/// `[[edge]]` where the language has one `[edge]` table: serde only reports
/// a type error (`invalid type: map, expected …`) at the header, so name the
/// table and the fix.
fn table_array(text: &str, span: &std::ops::Range<usize>, raw: &str) -> Option<Diagnostic> {
    if !raw.starts_with("invalid type:") {
        return None;
    }
    let header = line_at(text, span.start).trim();
    let name = header.strip_prefix("[[")?.split("]]").next()?.trim();
    Some(
        Diagnostic::new(
            &rules::INVALID_VALUE,
            span.clone(),
            format!("only one `[{name}]` is supported, but `[[{name}]]` makes a list of them"),
        )
        .with_label("a list of tables")
        .with_help(format!(
            "write a single `[{name}]` table (single brackets) and merge the others into it"
        )),
    )
}

/// What is wrong with an address or network the IP parser refused, naming
/// the value: IPv6, a prefix past /32, a network where an address belongs
/// or the other way round. `None` if the value is not an address at all.
fn address_problem(
    text: &str,
    span: &std::ops::Range<usize>,
    raw: &str,
) -> Option<(String, String)> {
    if !raw.starts_with("invalid IP") {
        return None;
    }
    let value = text
        .get(span.clone())?
        .trim()
        .trim_matches(|c| c == '"' || c == '\'');
    let (address, prefix) = match value.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (value, None),
    };
    if address.contains(':') {
        return Some((
            format!("`{value}` is an IPv6 address; waddlec supports IPv4 only for now"),
            "write an IPv4 address (IPv6 support is not there yet)".into(),
        ));
    }
    if address.parse::<std::net::Ipv4Addr>().is_err() {
        return Some((
            format!("`{address}` is not an IPv4 address"),
            "write four numbers from 0 to 255 separated by dots, e.g. `10.0.0.5`".into(),
        ));
    }
    let needs_prefix = raw.starts_with("invalid IP address syntax");
    match (prefix, needs_prefix) {
        (None, true) => Some((
            format!("`{value}` has no prefix length, but this setting is a network"),
            format!("write the network with its prefix, e.g. `{value}/24`"),
        )),
        (Some(_), false) => Some((
            format!("`{value}` is a network, but this setting is one address"),
            format!("write the address alone: `{address}`"),
        )),
        (Some(prefix), true) => Some((
            format!("prefix `/{prefix}` of `{value}` is not a prefix length; it must be 0–32"),
            format!("write e.g. `{address}/24`"),
        )),
        (None, false) => None,
    }
}

/// How to write the value a type error expected.
fn type_help(message: &str) -> String {
    let expected = message.split("expected ").nth(1).unwrap_or_default();
    if expected.starts_with("a list") {
        "write a list in brackets, e.g. `[\"a\", \"b\"]`, even for one item".into()
    } else if expected.starts_with("a whole number") || expected.starts_with("an integer") {
        "write the number without quotes, e.g. `2`".into()
    } else if expected.starts_with("a string") {
        "write the value in double quotes".into()
    } else if expected.starts_with("a table") {
        "write a table: a `[section]` or `{ key = value }`".into()
    } else {
        "`waddlec schema` shows the type every key takes".into()
    }
}

/// serde speaks Rust (`expected u16`, `a sequence`, `struct Vm`); blueprints
/// are written by people who write TOML, so say it in TOML's words.
fn plain_words(message: &str) -> String {
    const WORDS: &[(&str, &str)] = &[
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        (
            "expected u32",
            "expected a whole number from 0 to 4294967295",
        ),
        ("expected u64", "expected a whole number of at least 0"),
        ("expected usize", "expected a whole number of at least 0"),
        ("expected i64", "expected an integer"),
        ("expected i32", "expected an integer"),
        ("expected f64", "expected a number"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a table"),
        ("expected a borrowed string", "expected a string"),
        ("invalid type: sequence", "invalid type: a list"),
        ("invalid type: map", "invalid type: a table"),
        ("floating point", "decimal number"),
    ];
    let mut message = WORDS.iter().fold(message.to_string(), |m, (rust, plain)| {
        m.replace(rust, plain)
    });
    // `expected struct Vm` / `expected struct Located`: a table.
    while let Some(start) = message.find("expected struct ") {
        let end = message[start + "expected struct ".len()..]
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .map_or(message.len(), |i| start + "expected struct ".len() + i);
        message.replace_range(start..end, "expected a table");
    }
    message
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
