//! Run-time refusals pointed at the recipe line a step was written on (the `--max-memory`
//! estimate). Everything the recipe and the model config can tell is refused in sema; these are
//! the refusals that need the machine.

use crate::diagnostics::Diag;
use crate::sema::Origin;
use crate::source::{SourceId, SourceMap, Span};

/// A diagnostic pointing at the recipe line a step was written on (the whole line from its
/// column), or an unplaced one if the origin names no loaded source.
pub fn at_origin(
    sources: &SourceMap,
    origin: &Origin,
    code: &'static str,
    message: String,
) -> Diag {
    match span_of(sources, &origin.at) {
        Some(span) => Diag::error(code, message, span),
        None => Diag::unplaced(code, format!("{message} (at {})", origin.at)),
    }
}

/// The span of `file:line:column` to the end of that line.
fn span_of(sources: &SourceMap, at: &str) -> Option<Span> {
    let mut parts = at.rsplitn(3, ':');
    let column: usize = parts.next()?.parse().ok()?;
    let line: usize = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    let id = (0u32..)
        .map(SourceId)
        .take_while(|id| sources.get(*id).is_some())
        .find(|id| sources.name(*id) == name)?;
    let text = sources.text(id);
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.checked_sub(1)?)
        .map(str::len)
        .sum();
    let line_text = text.get(line_start..)?.lines().next().unwrap_or("");
    let start = line_start
        + line_text
            .char_indices()
            .nth(column.saturating_sub(1))
            .map_or(0, |(i, _)| i);
    let end = line_start + line_text.len();
    Some(Span::new(id, start, end.max(start)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_map_back_to_the_recipe_line() {
        let mut sources = SourceMap::new();
        let id = sources.add("r.edit", "first line\n  let x = y(1)\nlast", false);
        let span = span_of(&sources, "r.edit:2:3").unwrap();
        assert_eq!(sources.slice(span), "let x = y(1)");
        assert_eq!(span.source, id);
        assert!(span_of(&sources, "other.edit:2:3").is_none());
        assert!(span_of(&sources, "r.edit:x:3").is_none());
    }
}
