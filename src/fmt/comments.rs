//! The comments of a recipe, found by scanning its text.
//!
//! The grammar drops `#` comments (they are pest's `COMMENT`), so the syntax tree has none; the
//! formatter finds them here and puts each back beside the node it was written next to. `##` doc
//! lines are part of the tree (a function's `doc`) and are skipped.

/// One `#` comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    /// Byte offset of the `#`.
    pub start: usize,
    /// Byte offset of the end of the line (the comment's text is `start..end`, trailing spaces
    /// removed).
    pub end: usize,
    /// Whether code stands before it on its line (`x = 1  # why`), rather than the comment
    /// having the line to itself.
    pub trailing: bool,
}

impl Comment {
    /// The comment's text, `#` included, without trailing whitespace.
    pub fn text<'a>(&self, source: &'a str) -> &'a str {
        source[self.start..self.end].trim_end()
    }
}

/// Every `#` comment of `source`, in order. Strings are skipped (a `#` inside quotes is text),
/// and so are `##` doc lines.
pub fn scan(source: &str) -> Vec<Comment> {
    let bytes = source.as_bytes();
    let mut comments = Vec::new();
    let mut i = 0;
    let mut line_has_code = false;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                line_has_code = false;
                i += 1;
            }
            b'"' => {
                line_has_code = true;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'#' => {
                let end = source[i..].find('\n').map_or(source.len(), |n| i + n);
                if bytes.get(i + 1) == Some(&b'#') {
                    line_has_code = true;
                } else {
                    comments.push(Comment {
                        start: i,
                        end,
                        trailing: line_has_code,
                    });
                }
                i = end;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            _ => {
                line_has_code = true;
                i += 1;
            }
        }
    }
    comments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_own_line_and_trailing_comments_but_not_strings_or_docs() {
        let src = "# top\nlet x = \"a # b\"  # why\n## doc\nfn f() -> Int { 1 }\n  # inner\n";
        let found: Vec<(&str, bool)> = scan(src)
            .iter()
            .map(|c| (c.text(src), c.trailing))
            .collect();
        assert_eq!(
            found,
            vec![("# top", false), ("# why", true), ("# inner", false)]
        );
    }

    #[test]
    fn an_escaped_quote_does_not_end_the_string() {
        let src = "let x = \"a \\\" # not\" # yes";
        let found: Vec<&str> = scan(src).iter().map(|c| c.text(src)).collect();
        assert_eq!(found, vec!["# yes"]);
    }
}
