//! Showing diagnostics: miette's graphical report for people (no colour under
//! `NO_COLOR` or when not on a terminal), a JSON array for machines.

use std::fmt;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, SourceSpan};
use serde::Serialize;

use super::{Diagnostic, Severity};
use crate::blueprint::SourceFile;

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
            if let Some(help) = &diagnostic.help {
                out.push_str(&format!("  help: {help}\n"));
            }
            out.push_str("  (source line not shown: it may contain a secret)\n\n");
            continue;
        }
        let report = Report {
            diagnostic,
            location,
            source: NamedSource::new(&source.name, source.text.clone()),
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

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diagnostic
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
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

#[cfg(test)]
mod tests {
    use super::*;

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
