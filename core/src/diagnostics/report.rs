//! Showing diagnostics: miette's graphical report for people (no colour under
//! `NO_COLOR` or when not on a terminal), a JSON array for machines.

use std::fmt;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use serde::Serialize;

use super::{Diagnostic, Severity};
use crate::source::{SourceFile, SECRET_KEY_HINTS};

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// Renders for a person. `color` picks the theme; spans are shown with their
/// source lines unless the diagnostic hides its source (possible secret).
/// A diagnostic without help of its own points at its rule's explanation.
pub fn render_text(source: &SourceFile, diagnostics: &[Diagnostic], color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut out = String::new();
    for diagnostic in diagnostics {
        let (line, column) = line_col(&source.text, diagnostic.span.start);
        let location = format!("{}:{line}:{column}", source.name);
        if diagnostic.hide_source {
            out.push_str(&format!(
                "{}[{}]: {location}: {}\n",
                severity_word(diagnostic.severity()),
                diagnostic.rule.code,
                diagnostic.message
            ));
            let help = diagnostic
                .help
                .clone()
                .unwrap_or_else(|| explain_hint(diagnostic));
            out.push_str(&format!("  help: {help}\n"));
            out.push_str("  (source line not shown: it may contain a secret)\n\n");
            continue;
        }
        let report = Report {
            diagnostic,
            location,
            source: NamedSource::new(&source.name, redacted(&source.text)),
        };
        // Rendering into a String cannot fail for I/O reasons; fall back to the
        // plain header if miette ever refuses.
        if handler.render_report(&mut out, &report).is_err() {
            out.push_str(&report.to_string());
        }
        out.push('\n');
    }
    out
}

/// The source with the value of every secret-looking key (`api_token = …`,
/// `client_secret = …`, also inside inline tables) masked by `*`, byte for
/// byte, so spans stay valid while context lines can never show a secret.
pub fn redacted(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = text.as_bytes();
    let mut mask = vec![false; bytes.len()];
    for hint in SECRET_KEY_HINTS {
        for (start, _) in lower.match_indices(hint) {
            let mut i = start + hint.len();
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'-'))
            {
                i += 1;
            }
            while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
                i += 1;
            }
            if i >= bytes.len() || bytes[i] != b'=' {
                continue;
            }
            i += 1;
            while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
                i += 1;
            }
            let quote = bytes.get(i).copied().filter(|b| matches!(b, b'"' | b'\''));
            if quote.is_some() {
                i += 1;
            }
            while i < bytes.len() && bytes[i] != b'\n' {
                let end = match quote {
                    Some(q) => bytes[i] == q,
                    None => matches!(bytes[i], b',' | b'}' | b'#' | b' '),
                };
                if end {
                    break;
                }
                mask[i] = true;
                i += 1;
            }
        }
    }
    text.char_indices()
        .map(|(i, c)| {
            if mask[i] {
                "*".repeat(c.len_utf8())
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn severity_word(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

struct Report<'a> {
    diagnostic: &'a Diagnostic,
    location: String,
    source: NamedSource<String>,
}

impl fmt::Debug for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.location)
    }
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.diagnostic.message)?;
        if let Some(path) = &self.diagnostic.path {
            write!(f, " (at `{path}`)")?;
        }
        Ok(())
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(format!(
            "{} {}",
            self.diagnostic.rule.code, self.diagnostic.rule.name
        )))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.diagnostic.severity() {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    /// The diagnostic's own help, else where its rule is explained: every
    /// finding says how to go on, as rustc points at `--explain`.
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(match &self.diagnostic.help {
            Some(help) => Box::new(help) as Box<dyn fmt::Display>,
            None => Box::new(explain_hint(self.diagnostic)),
        })
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary = LabeledSpan::new_primary_with_span(
            Some(self.diagnostic.label.clone()).filter(|l| !l.is_empty()),
            to_source_span(&self.diagnostic.span),
        );
        let related = self.diagnostic.related.iter().map(|(span, label)| {
            LabeledSpan::new_with_span(Some(label.clone()), to_source_span(span))
        });
        Some(Box::new(std::iter::once(primary).chain(related)))
    }
}

fn to_source_span(span: &std::ops::Range<usize>) -> SourceSpan {
    (span.start, span.end.saturating_sub(span.start)).into()
}

/// One diagnostic as the `--format json` output shows it.
#[derive(Serialize)]
pub struct JsonDiagnostic<'a> {
    pub code: &'a str,
    pub rule: &'a str,
    pub severity: Severity,
    pub message: &'a str,
    pub file: &'a str,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub path: Option<&'a str>,
    pub help: Option<&'a str>,
}

pub fn to_json<'a>(
    source: &'a SourceFile,
    diagnostics: &'a [Diagnostic],
) -> Vec<JsonDiagnostic<'a>> {
    diagnostics
        .iter()
        .map(|d| {
            let (line, column) = line_col(&source.text, d.span.start);
            let (end_line, end_column) = line_col(&source.text, d.span.end);
            JsonDiagnostic {
                code: d.rule.code,
                rule: d.rule.name,
                severity: d.severity(),
                message: &d.message,
                file: &source.name,
                line,
                column,
                end_line,
                end_column,
                path: d.path.as_deref(),
                help: d.help.as_deref(),
            }
        })
        .collect()
}

/// Where a finding without help of its own is explained.
fn explain_hint(diagnostic: &Diagnostic) -> String {
    format!(
        "`waddlec explain {}` says what the rule guards against and how to write it",
        diagnostic.rule.code
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_masks_secret_values_only() {
        let text = "api_token = \"root@pam!x=S3CRET\"\nname = \"é\"\ngithub = { org = \"o\", client_secret = \"HUNTER2\" }\n";
        let masked = redacted(text);
        assert_eq!(masked.len(), text.len());
        assert!(
            !masked.contains("S3CRET") && !masked.contains("HUNTER2"),
            "{masked}"
        );
        assert!(
            masked.contains("name = \"é\"") && masked.contains("org = \"o\""),
            "{masked}"
        );
    }

    #[test]
    fn line_col_counts_characters() {
        let text = "a = 1\nb = \"é\"x\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // byte 13 follows the two-byte é: the column counts it once
        assert_eq!(line_col(text, 13), (2, 7));
        assert_eq!(line_col(text, 999), (3, 1));
    }
}
