//! Diagnostics: what is wrong with a blueprint, where, and how to fix it.
//!
//! Owns the [`Diagnostic`] value, the catalogue of named rules (`rules`) and
//! the two ways of showing them (`report`: miette text for people, JSON for
//! machines). Checks produce values; only the CLI prints them.

pub mod report;
pub mod rules;

use crate::source::Span;
pub use rules::{Rule, Severity};

/// One finding, anchored at a span of the blueprint source.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub rule: &'static Rule,
    pub message: String,
    pub span: Span,
    /// Short text under the primary span.
    pub label: String,
    /// Dotted path of the offending value, Butane-style (`vm[1].nics[0].address`).
    pub path: Option<String>,
    pub help: Option<String>,
    /// Other places that explain the finding (e.g. the first of two duplicates).
    pub related: Vec<(Span, String)>,
    /// The source line may contain a secret: never print it.
    pub hide_source: bool,
}

impl Diagnostic {
    pub fn new(rule: &'static Rule, span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            rule,
            message: message.into(),
            span,
            label: String::new(),
            path: None,
            help: None,
            related: Vec::new(),
            hide_source: false,
        }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn hiding_source(mut self) -> Self {
        self.hide_source = true;
        self
    }

    pub fn severity(&self) -> Severity {
        self.rule.severity
    }
}

/// All findings of one run, in the order of their position in the file.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics(Vec<Diagnostic>);

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.0.push(diagnostic);
    }

    /// Adds a finding and hands it back for decoration (label, help, related).
    pub fn push_mut(&mut self, diagnostic: Diagnostic) -> &mut Diagnostic {
        self.0.push(diagnostic);
        let last = self.0.len() - 1;
        &mut self.0[last]
    }

    pub fn has_errors(&self) -> bool {
        self.0.iter().any(|d| d.severity() == Severity::Error)
    }

    pub fn has_warnings(&self) -> bool {
        self.0.iter().any(|d| d.severity() == Severity::Warning)
    }

    pub fn count(&self) -> usize {
        self.0.len()
    }

    /// Findings sorted by position, then code, so output is stable.
    pub fn sorted(mut self) -> Vec<Diagnostic> {
        self.0
            .sort_by(|a, b| (a.span.start, a.rule.code).cmp(&(b.span.start, b.rule.code)));
        self.0
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(diagnostic: Diagnostic) -> Self {
        Diagnostics(vec![diagnostic])
    }
}
