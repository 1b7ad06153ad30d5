//! Stage 1: recipe text → syntax tree.
//!
//! [`parse`] runs the pest grammar in `grammar/mkedsl.pest` and builds an [`ast::Module`] whose
//! every node carries a [`Span`](crate::source::Span). Nothing here knows what a name means; that
//! is the checker's job ([`crate::sema`]).

pub mod ast;
mod errors;
mod parser;
mod prescan;

use pest::Parser;

use crate::diagnostics::Diagnostics;
use crate::source::SourceId;
use crate::source::SourceMap;
use parser::{Builder, RecipeParser, Rule};

pub use prescan::{MAX_NESTING, MAX_SOURCE_BYTES};

/// Parses one source of `sources` into a syntax tree.
pub fn parse(sources: &SourceMap, id: SourceId) -> Result<ast::Module, Diagnostics> {
    let text = sources.text(id);
    prescan::prescan(id, text)?;
    pest::set_error_detail(true);
    let mut pairs = RecipeParser::parse(Rule::file, text)
        .map_err(|err| errors::syntax_error(id, text, &err))?;
    let Some(file) = pairs.next() else {
        return Ok(ast::Module {
            source: id,
            items: Vec::new(),
        });
    };
    let mut builder = Builder {
        source: id,
        errors: Vec::new(),
    };
    let module = builder.module(file);
    match Diagnostics::from_vec(builder.errors) {
        Some(errors) => Err(errors),
        None => Ok(module),
    }
}

/// Parses one `--set NAME=VALUE` held as the whole text of source `id`.
pub fn parse_set(sources: &SourceMap, id: SourceId) -> Result<ast::SetArg, Diagnostics> {
    let text = sources.text(id);
    prescan::prescan(id, text)?;
    pest::set_error_detail(true);
    let mut pairs = RecipeParser::parse(Rule::set_arg, text)
        .map_err(|err| errors::syntax_error(id, text, &err))?;
    let mut builder = Builder {
        source: id,
        errors: Vec::new(),
    };
    let parsed = pairs.next().ok_or(()).and_then(|p| builder.set_arg(p));
    match (Diagnostics::from_vec(builder.errors), parsed) {
        (Some(errors), _) => Err(errors),
        (None, Ok(set)) => Ok(set),
        (None, Err(())) => Err(crate::diagnostics::Diag::unplaced(
            "mkedsl::set::syntax",
            format!("cannot read `--set {text}`"),
        )
        .help("write `--set NAME=VALUE`, e.g. `--set lr=3e-3`")
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::ast::*;
    use super::*;

    fn parse_text(text: &str) -> Result<Module, Diagnostics> {
        let mut sources = SourceMap::new();
        let id = sources.add("t.edit", text, false);
        parse(&sources, id)
    }

    fn first_expr(text: &str) -> Expr {
        let module = parse_text(&format!("let x = {text}")).expect("parses");
        match module.items.into_iter().next() {
            Some(Item::Stmt(Stmt {
                kind: StmtKind::Let { value, .. },
                ..
            })) => value,
            other => panic!("not a let: {other:?}"),
        }
    }

    fn shape(e: &Expr) -> String {
        match &e.kind {
            ExprKind::Int(n) => n.to_string(),
            ExprKind::Float(x) => format!("{x:?}"),
            ExprKind::Str(s) => format!("{s:?}"),
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::Range { start, end } => format!("{start:?}..{end:?}"),
            ExprKind::Ident(n) => n.clone(),
            ExprKind::List(items) => format!(
                "[{}]",
                items.iter().map(shape).collect::<Vec<_>>().join(",")
            ),
            ExprKind::Call { callee, args } => format!(
                "{}({})",
                callee.name,
                args.iter()
                    .map(|a| match &a.name {
                        Some(n) => format!("{}:{}", n.name, shape(&a.value)),
                        None => shape(&a.value),
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            ExprKind::Member { base, name } => format!("{}.{}", shape(base), name.name),
            ExprKind::Neg(x) => format!("(-{})", shape(x)),
            ExprKind::Binary { op, lhs, rhs } => {
                format!("({} {} {})", shape(lhs), op.symbol(), shape(rhs))
            }
        }
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(shape(&first_expr("1 + 2 * 3 - 4")), "((1 + (2 * 3)) - 4)");
        assert_eq!(shape(&first_expr("-a.b * 2")), "((-a.b) * 2)");
        assert_eq!(shape(&first_expr("(1 + 2) / 3")), "((1 + 2) / 3)");
    }

    #[test]
    fn literals() {
        assert_eq!(shape(&first_expr("1e-3")), "0.001");
        assert_eq!(shape(&first_expr("1.")), "1.0");
        assert_eq!(shape(&first_expr("2.5E+1")), "25.0");
        assert_eq!(shape(&first_expr("\"a\\\"b\\n\"")), "\"a\\\"b\\n\"");
        assert_eq!(shape(&first_expr("-4..")), "Some(-4)..None");
        assert_eq!(shape(&first_expr("..3")), "None..Some(3)");
        assert_eq!(shape(&first_expr("4..8")), "Some(4)..Some(8)");
        assert_eq!(shape(&first_expr("[true, false]")), "[true,false]");
    }

    #[test]
    fn calls_members_and_named_arguments() {
        assert_eq!(
            shape(&first_expr(
                "lora(layer(1).mlp.down_proj, rank: 4, init: random)"
            )),
            "lora(layer(1).mlp.down_proj,rank:4,init:random)"
        );
    }

    #[test]
    fn statements_and_items() {
        let module = parse_text(
            "recipe \"R\" { paper: \"p\", mode: single }\nuse std.lora\n## doc\nfn f(x: Int = 2) -> Int { x }\n\
             per edit { train a.B for 70 steps with sgd(lr: 0.01) { loss nll(target)\n project grad a.B onto k scale: 0.5 } }\n\
             evaluate [rel]",
        )
        .expect("parses");
        assert_eq!(module.items.len(), 5);
        match &module.items[2] {
            Item::Fn(f) => {
                assert_eq!(f.doc, vec!["doc".to_string()]);
                assert_eq!(f.params.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn syntax_errors_name_what_was_expected() {
        let err = parse_text("let x = lora(a, rank = 4)").unwrap_err();
        let diag = err.iter().next().unwrap();
        assert_eq!(diag.message, "unexpected `=`");
        assert!(
            diag.help.as_deref().unwrap_or("").contains("`:`"),
            "{diag:?}"
        );
        let err = parse_text("let x = 1e").unwrap_err();
        assert!(err
            .iter()
            .next()
            .unwrap()
            .message
            .contains("malformed number"));
        let err = parse_text("let x = \"a\\q\"").unwrap_err();
        assert!(err
            .iter()
            .next()
            .unwrap()
            .message
            .contains("unknown escape"));
    }
}
