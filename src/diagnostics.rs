//! Errors as data, and the one place that turns them into miette reports.
//!
//! The front end never formats a report itself: parser and checker build [`Diag`] values (a code,
//! a message, a labelled primary span, optional secondary labels and a one-line help) and hand back
//! [`Diagnostics`]. This module renders them with miette, either as a [`miette::Report`] for the
//! command line or as plain, colourless text of a fixed width for snapshot tests.

use std::fmt;
use std::sync::Arc;

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, Severity,
};

use crate::source::{next_boundary, prev_boundary, SourceMap, Span};

/// A secondary labelled span ("defined here", "called from here").
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub span: Span,
    pub label: String,
}

/// One error found in a recipe.
#[derive(Debug, Clone, PartialEq)]
pub struct Diag {
    /// A stable code such as `mkedsl::name::unknown`.
    pub code: &'static str,
    pub message: String,
    /// Where the error is; `None` only for errors that are not about recipe text (I/O).
    pub span: Option<Span>,
    pub label: Option<String>,
    pub help: Option<String>,
    pub notes: Vec<Note>,
}

impl Diag {
    /// An error at `span`.
    pub fn error(code: &'static str, message: impl Into<String>, span: Span) -> Self {
        Self {
            code,
            message: message.into(),
            span: Some(span),
            label: None,
            help: None,
            notes: Vec::new(),
        }
    }

    /// An error that has no place in any source.
    pub fn unplaced(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            span: None,
            label: None,
            help: None,
            notes: Vec::new(),
        }
    }

    /// The text under the primary span.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// A one-line suggestion.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Appends `hint` to the help line (or makes it the help line).
    pub fn push_help(mut self, hint: impl Into<String>) -> Self {
        let hint = hint.into();
        self.help = Some(match self.help {
            Some(h) => format!("{h}; {hint}"),
            None => hint,
        });
        self
    }

    /// A secondary labelled span.
    pub fn note(mut self, span: Span, label: impl Into<String>) -> Self {
        self.notes.push(Note {
            span,
            label: label.into(),
        });
        self
    }
}

/// A non-empty list of errors, in the order they were found.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics(Vec<Diag>);

impl From<Diag> for Diagnostics {
    fn from(diag: Diag) -> Self {
        Diagnostics(vec![diag])
    }
}

impl Diagnostics {
    /// Builds from a list; `None` when the list is empty (nothing went wrong).
    pub fn from_vec(diags: Vec<Diag>) -> Option<Self> {
        if diags.is_empty() {
            None
        } else {
            Some(Diagnostics(diags))
        }
    }

    /// An I/O error reading a recipe.
    pub fn io(message: String) -> Self {
        Diag::unplaced("mkedsl::io", message)
            .help("check the path and its permissions")
            .into()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diag> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<Diag> {
        self.0
    }

    /// One miette report: the first error, with the others attached as related errors.
    pub fn into_report(self, sources: &SourceMap) -> miette::Report {
        let mut rendered = self.0.iter().map(|d| Rendered::new(d, sources));
        let mut first = match rendered.next() {
            Some(first) => first,
            None => Rendered::plain("no errors".into()),
        };
        first.related.extend(rendered);
        miette::Report::new(first)
    }

    /// Every error rendered without colour at a fixed width, for tests and logs.
    pub fn render_plain(&self, sources: &SourceMap) -> String {
        let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .with_links(false)
            .without_syntax_highlighting();
        let mut out = String::new();
        for diag in &self.0 {
            let rendered = Rendered::new(diag, sources);
            if handler.render_report(&mut out, &rendered).is_err() {
                out.push_str(&diag.message);
            }
            out.push('\n');
        }
        out
    }
}

/// A diagnostic in the form miette renders: its own copy of the source text, labels as offsets.
#[derive(Debug)]
struct Rendered {
    message: String,
    code: &'static str,
    help: Option<String>,
    severity: Severity,
    source: Option<NamedSource<Arc<str>>>,
    labels: Vec<LabeledSpan>,
    related: Vec<Rendered>,
}

impl fmt::Display for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Rendered {}

impl Rendered {
    fn plain(message: String) -> Self {
        Self {
            message,
            code: "mkedsl",
            help: None,
            severity: Severity::Error,
            source: None,
            labels: Vec::new(),
            related: Vec::new(),
        }
    }

    fn new(diag: &Diag, sources: &SourceMap) -> Self {
        let mut out = Self::plain(diag.message.clone());
        out.code = diag.code;
        out.help = diag.help.clone();
        let Some(span) = diag.span else { return out };
        let Some(source) = sources.get(span.source) else {
            return out;
        };
        out.source = Some(NamedSource::new(source.name.clone(), source.text.clone()));
        out.labels
            .push(labeled(&source.text, span, diag.label.clone(), true));
        for note in &diag.notes {
            if note.span.source == span.source {
                out.labels.push(labeled(
                    &source.text,
                    note.span,
                    Some(note.label.clone()),
                    false,
                ));
            } else if let Some(other) = sources.get(note.span.source) {
                // A note in another file (a stdlib module, the calling recipe) becomes an advice
                // with its own snippet.
                let mut advice = Self::plain(note.label.clone());
                advice.code = "mkedsl::note";
                advice.severity = Severity::Advice;
                advice.source = Some(NamedSource::new(other.name.clone(), other.text.clone()));
                advice.labels.push(labeled(
                    &other.text,
                    note.span,
                    Some(note.label.clone()),
                    true,
                ));
                out.related.push(advice);
            }
        }
        out
    }
}

/// A miette label whose offsets are clamped to the text and to character boundaries, so that no
/// span, however it was computed, can make the renderer slice through a character.
fn labeled(text: &str, span: Span, label: Option<String>, primary: bool) -> LabeledSpan {
    let start = prev_boundary(text, span.start);
    let end = next_boundary(text, span.end.max(start));
    if primary {
        LabeledSpan::new_primary_with_span(label, (start, end - start))
    } else {
        LabeledSpan::new_with_span(label, (start, end - start))
    }
}

impl Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn severity(&self) -> Option<Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(self.related.iter().map(|r| r as &dyn Diagnostic)))
        }
    }
}

/// The closest candidate to `name`, for a "did you mean" hint.
///
/// Damerau–Levenshtein distance with a length-scaled cut-off, so a typo in a long name is caught
/// while short unrelated names are not offered.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .filter(|c| *c != name)
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| {
            *d <= limit || (c.len() > 3 && (c.starts_with(name) || name.starts_with(*c)))
        })
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_typos_and_ignores_strangers() {
        let names = ["null_space", "knowledge_space", "lora", "layer"];
        assert_eq!(did_you_mean("null_spcae", names), Some("null_space"));
        assert_eq!(did_you_mean("lroa", names), Some("lora"));
        assert_eq!(did_you_mean("zzz", names), None);
    }

    #[test]
    fn plain_rendering_names_file_line_and_column() {
        let mut sources = SourceMap::new();
        let id = sources.add("r.edit", "let x = 1\nlet y = oops\n", false);
        let diag = Diag::error(
            "mkedsl::name::unknown",
            "unknown name `oops`",
            Span::new(id, 18, 22),
        )
        .label("not defined")
        .help("define it with `let`");
        let text = Diagnostics::from(diag).render_plain(&sources);
        assert!(text.contains("[r.edit:2:9]"), "{text}");
        assert!(text.contains("not defined"), "{text}");
        assert!(text.contains("help: define it with `let`"), "{text}");
    }

    #[test]
    fn spans_inside_a_character_do_not_panic() {
        let mut sources = SourceMap::new();
        let id = sources.add("r.edit", "é🦀x", false);
        let diag = Diag::error("mkedsl::test", "inside", Span::new(id, 1, 4));
        let text = Diagnostics::from(diag).render_plain(&sources);
        assert!(text.contains("inside"));
    }
}
