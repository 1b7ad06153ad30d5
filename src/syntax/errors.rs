//! Turning a pest parse failure into one readable diagnostic.
//!
//! pest reports the rules and literal tokens it tried at the furthest position it reached. We name
//! what was found there, and summarise what was expected in the words a recipe author uses
//! ("an expression", "`)`"), not in grammar-rule names.

use std::collections::BTreeSet;

use pest::error::{Error, ErrorVariant, InputLocation};

use super::parser::Rule;
use crate::diagnostics::Diag;
use crate::source::{next_boundary, prev_boundary, SourceId, Span};

/// Rules whose presence among the expected ones means "an expression could start here".
const EXPRESSION_STARTS: &[Rule] = &[
    Rule::expr,
    Rule::expr_stmt,
    Rule::call,
    Rule::callee,
    Rule::list,
    Rule::paren,
    Rule::string,
    Rule::boolean,
    Rule::float,
    Rule::int,
    Rule::bad_number,
    Rule::range,
    Rule::neg,
    Rule::named_arg,
];

/// Rules that start a statement.
const STATEMENT_STARTS: &[Rule] = &[
    Rule::kw_let,
    Rule::kw_freeze,
    Rule::kw_per,
    Rule::kw_train,
    Rule::kw_loss,
    Rule::kw_project,
    Rule::kw_evaluate,
    Rule::let_stmt,
    Rule::freeze_stmt,
    Rule::per_edit,
    Rule::train_stmt,
    Rule::loss_stmt,
    Rule::project_stmt,
    Rule::evaluate_stmt,
];

fn describe(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::header | Rule::kw_recipe => "`recipe`",
        Rule::use_decl | Rule::kw_use => "`use`",
        Rule::param_decl | Rule::kw_param => "`param`",
        Rule::fn_def | Rule::doc | Rule::kw_fn => "`fn`",
        Rule::kw_edit => "`edit`",
        Rule::kw_for => "`for`",
        Rule::kw_steps => "`steps`",
        Rule::kw_with => "`with`",
        Rule::kw_onto => "`onto`",
        Rule::kw_scale => "`scale`",
        Rule::add | Rule::sub | Rule::mul | Rule::div => "an operator",
        Rule::member => "`.`",
        Rule::ident | Rule::name => "a name",
        Rule::type_expr => "a type",
        Rule::project_kind => "`grad` or `update`",
        Rule::project_scale => "`scale:`",
        Rule::block => "`{`",
        Rule::header_field => "a header field",
        Rule::fn_param => "a parameter",
        Rule::ret_type => "`->`",
        Rule::module_path => "a module name",
        Rule::EOI => "end of file",
        Rule::range_bound => "a whole number",
        Rule::str_inner => "string text",
        _ => return None,
    })
}

/// The diagnostic for a failed parse.
pub fn syntax_error(source: SourceId, text: &str, err: &Error<Rule>) -> Diag {
    let pos = match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let furthest = err.parse_attempts().map(|a| a.max_position).unwrap_or(0);
    let pos = skip_trivia(text, prev_boundary(text, pos.max(furthest)));
    let (found, span) = found_at(source, text, pos);

    let mut rules: Vec<Rule> = Vec::new();
    if let ErrorVariant::ParsingError { positives, .. } = &err.variant {
        rules.extend(positives.iter().copied());
    }
    let mut tokens: BTreeSet<String> = BTreeSet::new();
    if let Some(attempts) = err.parse_attempts() {
        for stack in attempts.call_stacks() {
            if let Some(rule) = stack.deepest.get_rule() {
                rules.push(*rule);
            }
            if let Some(parent) = stack.parent {
                rules.push(parent);
            }
        }
        // pest does not export its token type; its display is the literal itself, `a..z` for a
        // character range and `BUILTIN_RULE` for a built-in. Keep only literals.
        for token in attempts.expected_tokens() {
            let shown = token.to_string();
            let chars: Vec<char> = shown.chars().collect();
            let is_char_range = chars.len() == 4 && chars[1] == '.' && chars[2] == '.';
            let layout = shown.trim().is_empty() || shown == "#";
            // Single letters and `_` are the first characters of names and exponents.
            let letter = chars.len() == 1 && (chars[0].is_ascii_alphanumeric() || chars[0] == '_');
            if shown != "BUILTIN_RULE" && !is_char_range && !layout && !letter {
                tokens.insert(shown);
            }
        }
    }

    let mut expected: Vec<String> = Vec::new();
    let expression = rules.iter().any(|r| EXPRESSION_STARTS.contains(r));
    let statement = rules.iter().any(|r| STATEMENT_STARTS.contains(r));
    if statement {
        expected.push("a statement".into());
    }
    if expression {
        expected.push("an expression".into());
    }
    for rule in &rules {
        if let Some(d) = describe(*rule) {
            if (expression || statement) && d == "a name" {
                continue;
            }
            if !expected.iter().any(|e| e == d) {
                expected.push(d.into());
            }
        }
    }
    let operator = expected.iter().any(|e| e == "an operator");
    for token in tokens {
        let covered = match token.as_str() {
            "+" | "*" | "/" => operator,
            "-" => operator || expression,
            "(" | "[" | "\"" | ".." | "true" | "false" => expression,
            "let" | "freeze" | "per" | "train" | "loss" | "project" | "evaluate" => statement,
            "##" | "fn" => expected.iter().any(|e| e == "`fn`"),
            "." => expected.iter().any(|e| e == "`.`"),
            "recipe" | "use" => true,
            _ => false,
        };
        let shown = format!("`{token}`");
        if !covered && !expected.contains(&shown) {
            expected.push(shown);
        }
    }

    let label = if expected.is_empty() {
        "unexpected here".to_string()
    } else {
        format!("expected {}", join_or(&expected))
    };
    let mut diag = Diag::error(
        "mkedsl::syntax::unexpected",
        format!("unexpected {found}"),
        span,
    )
    .label(label);
    diag = diag.help(hint(&found, &expected));
    if found == "end of file" {
        if let Some(open) = unclosed_bracket(text) {
            diag = diag.note(
                Span::new(source, open, open + 1),
                "this bracket is never closed",
            );
        }
    }
    diag
}

/// The innermost bracket still open at the end of the text (strings and comments skipped).
fn unclosed_bracket(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut open = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'(' | b'[' | b'{' => open.push(i),
            b')' | b']' | b'}' => {
                open.pop();
            }
            _ => {}
        }
        i += 1;
    }
    open.pop()
}

/// The first position at or after `pos` that is not whitespace or a plain comment.
fn skip_trivia(text: &str, mut pos: usize) -> usize {
    loop {
        let rest = text.get(pos..).unwrap_or("");
        let trimmed = rest.trim_start();
        pos += rest.len() - trimmed.len();
        if trimmed.starts_with('#') && !trimmed.starts_with("##") {
            pos += trimmed.find('\n').unwrap_or(trimmed.len());
        } else {
            return pos;
        }
    }
}

/// Words the grammar reserves.
const KEYWORDS: &[&str] = &[
    "recipe", "use", "fn", "let", "freeze", "per", "train", "for", "with", "loss", "project",
    "onto", "evaluate", "true", "false",
];

/// What stands at `pos`: a word, a single character, or the end of the file.
fn found_at(source: SourceId, text: &str, pos: usize) -> (String, Span) {
    let rest = text.get(pos..).unwrap_or("");
    let Some(first) = rest.chars().next() else {
        return ("end of file".into(), Span::new(source, pos, pos));
    };
    if first.is_ascii_alphanumeric() || first == '_' {
        let len = rest
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
            .map(|(i, _)| i)
            .unwrap_or(rest.len());
        let word = rest.get(..len).unwrap_or("");
        return (format!("`{word}`"), Span::new(source, pos, pos + len));
    }
    let end = next_boundary(text, pos + first.len_utf8());
    let shown = match first {
        '\n' | '\r' => "end of line".to_string(),
        c if c.is_control() => format!("character U+{:04X}", c as u32),
        c => format!("`{c}`"),
    };
    (shown, Span::new(source, pos, end))
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// A help line tuned to the most common mistakes.
fn hint(found: &str, expected: &[String]) -> String {
    let expects = |s: &str| expected.iter().any(|e| e == s);
    let word = found.trim_matches('`');
    if KEYWORDS.contains(&word) && expects("a name") {
        return format!("`{word}` is a keyword; choose another name");
    }
    if found == "`.`" && expects("a name") {
        return "range bounds are integer literals, as in `layers(2..)` or `layers(-4..)`".into();
    }
    if found == "`=`" && expects("`:`") {
        return "named arguments and header fields use `:` as in `rank: 4`".into();
    }
    if found == "`:`" && expects("`=`") {
        return "bind a value with `let name = value` (`:` introduces a type)".into();
    }
    if expects("`steps`") {
        return "a training loop reads `train PARAMS for N steps with OPTIMIZER { ... }`".into();
    }
    if expects("`onto`") {
        return "a projection reads `project grad PARAM onto SPACE`".into();
    }
    if expects("`edit`") {
        return "the per-edit block is written `per edit { ... }`".into();
    }
    if found == "`;`" {
        return "statements end at the end of the line; mkedsl has no `;`".into();
    }
    if expects("`fn`") && !expects("a statement") {
        return "a `##` doc comment documents the `fn` that follows it; use `#` for a plain comment".into();
    }
    if found == "end of file" {
        return "the file ended early: look for an unclosed `(`, `[` or `{`".into();
    }
    "see grammar/REFERENCE.md for the syntax of each statement".into()
}
