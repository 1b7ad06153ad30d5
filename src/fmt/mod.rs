//! `mkedsl fmt`: every recipe and stdlib module in one canonical layout, comments kept.
//!
//! [`format_text`] parses the text (a file that does not parse is not formatted: its syntax
//! errors are returned), prints the tree with [`printer`], and then checks its own work before
//! anyone writes the result: the output must parse to the same syntax tree (spans aside) and keep
//! every comment, or formatting fails with an internal error instead of changing a recipe's
//! meaning. Formatting is idempotent: the output of `format_text` is its own fixed point.

pub mod comments;
pub mod printer;

use crate::diagnostics::{Diag, Diagnostics};
use crate::source::SourceMap;
use crate::syntax::{self, ast::Module};
use crate::Failed;

/// `text` (named `name` in diagnostics) in the canonical layout.
pub fn format_text(name: &str, text: &str) -> Result<String, Failed> {
    let mut sources = SourceMap::new();
    let id = sources.add(name, text, false);
    let tree = match syntax::parse(&sources, id) {
        Ok(tree) => tree,
        Err(diagnostics) => {
            return Err(Failed {
                sources,
                diagnostics,
            })
        }
    };
    let found = comments::scan(text);
    let count = found.len();
    let out = printer::print(&tree, text, found);
    let mut check = SourceMap::new();
    let again = check.add(name, out.as_str(), false);
    let same = match syntax::parse(&check, again) {
        Ok(reparsed) => shape(&reparsed) == shape(&tree),
        Err(_) => false,
    };
    if !same || comments::scan(&out).len() != count {
        let diagnostics: Diagnostics = Diag::unplaced(
            "mkedsl::fmt::internal",
            format!("formatting `{name}` would change it, so it was left alone"),
        )
        .help("this is a bug in `mkedsl fmt`; please report it with the file")
        .into();
        return Err(Failed {
            sources,
            diagnostics,
        });
    }
    Ok(out)
}

/// A syntax tree without its positions: what formatting must never change.
pub fn shape(module: &Module) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.retain(|k, _| {
                    !matches!(k.as_str(), "span" | "name_span" | "kind_span" | "source")
                });
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(module).unwrap_or(serde_json::Value::Null);
    strip(&mut value);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(text: &str) -> String {
        let out = format_text("t.edit", text).unwrap_or_else(|f| panic!("{}", f.render_plain()));
        let again = format_text("t.edit", &out).expect("formats its own output");
        assert_eq!(again, out, "not idempotent");
        out
    }

    #[test]
    fn spacing_indentation_and_blank_lines() {
        let src = "recipe \"R\"{paper:\"p\",mode :single}\n\n\n\nuse  std.lora\nper edit{\n\n    train a.B for 70 steps with sgd( lr:1e-2 ){loss nll(target)\nproject grad a.B onto k scale:0.5}}\nevaluate[rel,t_gen]\n";
        assert_eq!(
            fmt(src),
            "recipe \"R\" {\n  paper: \"p\",\n  mode: single,\n}\n\nuse std.lora\nper edit {\n  train a.B for 70 steps with sgd(lr: 1e-2) {\n    loss nll(target)\n    project grad a.B onto k scale: 0.5\n  }\n}\nevaluate [rel, t_gen]\n"
        );
    }

    #[test]
    fn comments_stay_where_they_were_written() {
        let src = "# head\n\nlet x = f(a) # why\nlet yy = g(b)     # aligned\n\n  # before z\nlet z = 1\n# tail\n";
        assert_eq!(
            fmt(src),
            "# head\n\nlet x = f(a)   # why\nlet yy = g(b)  # aligned\n\n# before z\nlet z = 1\n# tail\n"
        );
    }

    #[test]
    fn long_calls_wrap_one_argument_per_line_and_comments_inside_force_it() {
        let long = "let k = knowledge_space(ab.B.input, variants: variants, top: top, keep_above: keep_above, rank: rank)";
        assert_eq!(
            fmt(long),
            "let k = knowledge_space(\n  ab.B.input,\n  variants: variants,\n  top: top,\n  keep_above: keep_above,\n  rank: rank,\n)\n"
        );
        let commented = "let p = preserve(text: 8, # few\n  vqa: 2)\n";
        assert_eq!(
            fmt(commented),
            "let p = preserve(\n  text: 8,  # few\n  vqa: 2,\n)\n"
        );
    }

    #[test]
    fn long_signatures_wrap_and_docs_stay() {
        let src = "##   Doc line.\n##\nfn elora_knowledge(ab: Adapter, variants: Variants, top: Int, keep_above: Float, rank: Int) -> Space { knowledge_space(ab.B.input, variants: variants, top: top, keep_above: keep_above, rank: rank) }";
        assert_eq!(
            fmt(src),
            "## Doc line.\n##\nfn elora_knowledge(\n  ab: Adapter,\n  variants: Variants,\n  top: Int,\n  keep_above: Float,\n  rank: Int,\n) -> Space {\n  knowledge_space(ab.B.input, variants: variants, top: top, keep_above: keep_above, rank: rank)\n}\n"
        );
    }

    #[test]
    fn parentheses_follow_precedence_and_literals_keep_their_spelling() {
        assert_eq!(
            fmt("let x = ((1 + 2)) * -(3 - (4 - 5)) / 2.50"),
            "let x = (1 + 2) * -(3 - (4 - 5)) / 2.50\n"
        );
        assert_eq!(
            fmt("let x = 1 - 2 - 3 + (a * b)"),
            "let x = 1 - 2 - 3 + a * b\n"
        );
        assert_eq!(
            fmt("let l = layers( -4.. )\nlet s = \"a \\\" # b\""),
            "let l = layers(-4..)\nlet s = \"a \\\" # b\"\n"
        );
        assert_eq!(fmt("let y = (1).x"), "let y = (1).x\n");
    }

    #[test]
    fn empty_blocks_and_files() {
        assert_eq!(fmt(""), "");
        assert_eq!(fmt("# only\n"), "# only\n");
        assert_eq!(fmt("per edit {\n}\n"), "per edit {}\n");
        assert_eq!(
            fmt("per edit { # nothing yet\n}\n"),
            "per edit {  # nothing yet\n}\n"
        );
    }

    #[test]
    fn a_file_that_does_not_parse_is_refused() {
        assert!(format_text("t.edit", "let x = (").is_err());
    }
}
