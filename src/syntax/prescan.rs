//! Limits checked before the grammar runs, so that no input can exhaust the stack.
//!
//! The parser and the checker recurse over nested brackets and operator chains. A recipe is a
//! page of text, so generous fixed limits cost nothing and turn pathological input (a fuzzer's
//! ten thousand `(`) into a diagnostic instead of a stack overflow. The scan also finds strings
//! that never close, which the grammar alone reports poorly.

use crate::diagnostics::{Diag, Diagnostics};
use crate::source::{next_boundary, SourceId, Span};

/// Deepest nesting of `(`, `[` and `{` a recipe may use.
pub const MAX_NESTING: usize = 32;
/// Largest recipe accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;

/// Checks size, bracket nesting and string termination.
pub fn prescan(source: SourceId, text: &str) -> Result<(), Diagnostics> {
    if text.len() > MAX_SOURCE_BYTES {
        return Err(Diag::error(
            "mkedsl::syntax::too_large",
            format!(
                "recipe is {} bytes; the limit is {MAX_SOURCE_BYTES}",
                text.len()
            ),
            Span::new(source, 0, 0),
        )
        .label("this file")
        .help("a recipe is a page of text; move shared parts into functions")
        .into());
    }
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                let start = i;
                i += 1;
                loop {
                    match bytes.get(i) {
                        None | Some(b'\n') | Some(b'\r') => {
                            let end = next_boundary(text, i);
                            return Err(Diag::error(
                                "mkedsl::syntax::unterminated_string",
                                "unterminated string",
                                Span::new(source, start, end),
                            )
                            .label("this string has no closing `\"` on its line")
                            .help("close the string with `\"`; write a quote inside a string as `\\\"`")
                            .into());
                        }
                        Some(b'\\') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(Diag::error(
                        "mkedsl::syntax::too_deep",
                        format!("brackets are nested more than {MAX_NESTING} deep"),
                        Span::new(source, i, i + 1),
                    )
                    .label("this bracket is too deep")
                    .help("name inner parts with `let` to flatten the expression")
                    .into());
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_refused() {
        let text = "(".repeat(MAX_NESTING + 1);
        let err = prescan(SourceId(0), &text)
            .unwrap_err()
            .into_vec()
            .remove(0);
        assert_eq!(err.code, "mkedsl::syntax::too_deep");
        assert!(prescan(SourceId(0), &"(".repeat(MAX_NESTING)).is_ok());
    }

    #[test]
    fn brackets_in_strings_and_comments_do_not_count() {
        let text = format!("# {}\nlet s = \"{}\"", "(".repeat(99), "[".repeat(99));
        assert!(prescan(SourceId(0), &text).is_ok());
    }

    #[test]
    fn unterminated_string_spans_to_end_of_line() {
        let err = prescan(SourceId(0), "let s = \"abc\nlet t = 1")
            .unwrap_err()
            .into_vec()
            .remove(0);
        assert_eq!(err.code, "mkedsl::syntax::unterminated_string");
        assert_eq!(err.span.map(|s| (s.start, s.end)), Some((8, 12)));
        // An escaped quote does not close the string; a trailing backslash at EOF is safe.
        assert!(prescan(SourceId(0), "\"a\\\"b\"").is_ok());
        assert!(prescan(SourceId(0), "\"a\\").is_err());
    }
}
