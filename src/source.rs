//! Source texts and the spans that point into them.
//!
//! Every recipe, and every standard-library module the recipe imports, is one [`Source`] in a
//! [`SourceMap`]. A [`Span`] names its source, so a diagnostic raised while checking a stdlib
//! function points into `stdlib/<module>.edit`, not into the recipe that called it.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

/// Index of a source in its [`SourceMap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct SourceId(pub u32);

/// A byte range `start..end` in one source. Both ends always lie on UTF-8 character boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Span {
    pub source: SourceId,
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(source: SourceId, start: usize, end: usize) -> Self {
        Self {
            source,
            start,
            end: end.max(start),
        }
    }

    /// The smallest span covering both (which must lie in the same source; otherwise `self`).
    pub fn to(self, other: Span) -> Span {
        if self.source != other.source {
            return self;
        }
        Span::new(
            self.source,
            self.start.min(other.start),
            self.end.max(other.end),
        )
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// One named text: a recipe file or a stdlib module.
#[derive(Debug, Clone)]
pub struct Source {
    /// The name shown in diagnostics: the path as the user gave it, or `stdlib/<module>.edit`.
    pub name: String,
    pub text: Arc<str>,
    /// Whether this source is a standard-library module (no recipe header allowed).
    pub is_stdlib: bool,
}

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LineCol {
    pub line: usize,
    pub column: usize,
}

/// All sources of one compilation.
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    sources: Vec<Source>,
}

impl SourceMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a text under `name` and returns its id.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        text: impl Into<Arc<str>>,
        is_stdlib: bool,
    ) -> SourceId {
        let id = SourceId(u32::try_from(self.sources.len()).unwrap_or(u32::MAX));
        self.sources.push(Source {
            name: name.into(),
            text: text.into(),
            is_stdlib,
        });
        id
    }

    /// Reads a recipe file. Bytes that are not UTF-8 are a diagnostic, not a panic.
    pub fn load(&mut self, path: &Path) -> Result<SourceId, crate::diagnostics::Diagnostics> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|err| {
            crate::diagnostics::Diagnostics::io(format!("cannot read `{shown}`: {err}"))
        })?;
        self.add_bytes(shown, &bytes)
    }

    /// Adds raw bytes as a recipe source; invalid UTF-8 is reported at the first bad byte.
    pub fn add_bytes(
        &mut self,
        name: String,
        bytes: &[u8],
    ) -> Result<SourceId, crate::diagnostics::Diagnostics> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(self.add(name, text, false)),
            Err(err) => {
                // Keep the valid prefix so the diagnostic can show where the bad bytes start.
                // The valid prefix is unchanged by the lossy conversion, so `good` is also the
                // offset of the first replacement character in the shown text.
                let good = err.valid_up_to();
                let shown = String::from_utf8_lossy(bytes).into_owned();
                let end = next_boundary(&shown, good + 1);
                let id = self.add(name, shown, false);
                Err(crate::diagnostics::Diag::error(
                    "mkedsl::syntax::not_utf8",
                    format!("recipe is not valid UTF-8 (byte {good})"),
                    Span::new(id, good, end),
                )
                .label("this byte does not start a UTF-8 character")
                .help("save the recipe as UTF-8 text")
                .into())
            }
        }
    }

    pub fn get(&self, id: SourceId) -> Option<&Source> {
        self.sources.get(id.0 as usize)
    }

    pub fn name(&self, id: SourceId) -> &str {
        self.get(id).map(|s| s.name.as_str()).unwrap_or("<unknown>")
    }

    pub fn text(&self, id: SourceId) -> &str {
        self.get(id).map(|s| &*s.text).unwrap_or("")
    }

    /// The text a span covers (empty if the span does not fit its source).
    pub fn slice(&self, span: Span) -> &str {
        self.text(span.source)
            .get(span.start..span.end)
            .unwrap_or("")
    }

    /// 1-based line and character column of a byte offset.
    pub fn line_col(&self, source: SourceId, offset: usize) -> LineCol {
        let text = self.text(source);
        let offset = prev_boundary(text, offset.min(text.len()));
        let before = text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let column = before
            .get(line_start..)
            .map(|s| s.chars().count())
            .unwrap_or(0)
            + 1;
        LineCol { line, column }
    }

    /// `file:line:col` of a span's start.
    pub fn locate(&self, span: Span) -> String {
        let lc = self.line_col(span.source, span.start);
        format!("{}:{}:{}", self.name(span.source), lc.line, lc.column)
    }
}

/// The largest char boundary ≤ `offset`.
pub fn prev_boundary(text: &str, offset: usize) -> usize {
    let mut i = offset.min(text.len());
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest char boundary ≥ `offset` (capped at the text's length).
pub fn next_boundary(text: &str, offset: usize) -> usize {
    let mut i = offset.min(text.len());
    while i < text.len() && !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let mut map = SourceMap::new();
        let id = map.add("a.edit", "ab\nçd e\n", false);
        assert_eq!(map.line_col(id, 0), LineCol { line: 1, column: 1 });
        assert_eq!(map.line_col(id, 3), LineCol { line: 2, column: 1 });
        // `d` follows the two-byte `ç`: byte 5, character column 2.
        assert_eq!(map.line_col(id, 5), LineCol { line: 2, column: 2 });
        // An offset inside `ç` snaps back to its start.
        assert_eq!(map.line_col(id, 4), LineCol { line: 2, column: 1 });
    }

    #[test]
    fn invalid_utf8_is_a_diagnostic() {
        let mut map = SourceMap::new();
        let err = map
            .add_bytes("bad.edit".into(), b"let x = \xff\xfe 1")
            .unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(err.iter().next().unwrap().message.contains("byte 8"));
    }
}
