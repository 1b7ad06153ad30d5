//! The pest grammar and the conversion of its parse tree into the syntax tree.

use std::sync::LazyLock;

use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest_derive::Parser;

use super::ast::*;
use crate::diagnostics::Diag;
use crate::source::{SourceId, Span};

#[derive(Parser)]
#[grammar = "grammar/mkedsl.pest"]
pub(super) struct RecipeParser;

/// Most binary operators one expression may chain (the checker recurses over the chain).
const MAX_OPERATORS: usize = 256;
/// Most prefix minus signs or member accesses in a row.
const MAX_AFFIXES: usize = 32;

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
        .op(Op::infix(Rule::mul, Assoc::Left) | Op::infix(Rule::div, Assoc::Left))
        .op(Op::prefix(Rule::neg))
        .op(Op::postfix(Rule::member))
});

/// Converts pest pairs into syntax-tree nodes, collecting every literal error it meets.
pub(super) struct Builder {
    pub source: SourceId,
    pub errors: Vec<Diag>,
}

type Built<T> = Result<T, ()>;

/// Length of `text` without trailing whitespace and `#` comments. Strings never span lines, so a
/// `#` outside quotes on the last line starts a comment.
fn trimmed_len(text: &str) -> usize {
    let mut end = text.trim_end().len();
    loop {
        let body = text.get(..end).unwrap_or("");
        let line_start = body.rfind('\n').map(|i| i + 1).unwrap_or(0);
        let mut in_string = false;
        let mut escaped = false;
        let mut comment = None;
        for (i, c) in body.get(line_start..).unwrap_or("").char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if in_string => escaped = true,
                '"' => in_string = !in_string,
                '#' if !in_string => {
                    comment = Some(line_start + i);
                    break;
                }
                _ => {}
            }
        }
        match comment {
            Some(at) => end = text.get(..at).unwrap_or("").trim_end().len(),
            None => return end,
        }
    }
}

/// Whether a rule is a keyword token (present in the parse tree, meaningless in the syntax tree).
fn is_keyword(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::kw_recipe
            | Rule::kw_use
            | Rule::kw_param
            | Rule::kw_fn
            | Rule::kw_let
            | Rule::kw_freeze
            | Rule::kw_per
            | Rule::kw_edit
            | Rule::kw_train
            | Rule::kw_for
            | Rule::kw_steps
            | Rule::kw_with
            | Rule::kw_loss
            | Rule::kw_project
            | Rule::kw_onto
            | Rule::kw_evaluate
            | Rule::kw_scale
    )
}

/// The children of a pair, without keyword tokens.
fn children(pair: Pair<'_, Rule>) -> impl Iterator<Item = Pair<'_, Rule>> {
    pair.into_inner().filter(|p| !is_keyword(p.as_rule()))
}

impl Builder {
    /// The pair's span without the whitespace and comments pest may have skipped at its end.
    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        let s = pair.as_span();
        Span::new(
            self.source,
            s.start(),
            s.start() + trimmed_len(pair.as_str()),
        )
    }

    fn fail<T>(&mut self, diag: Diag) -> Built<T> {
        self.errors.push(diag);
        Err(())
    }

    pub fn module(&mut self, file: Pair<'_, Rule>) -> Module {
        let mut items = Vec::new();
        for pair in file.into_inner() {
            let item = match pair.as_rule() {
                Rule::header => self.header(pair).map(Item::Header),
                Rule::use_decl => Ok(Item::Use(self.use_decl(pair))),
                Rule::param_decl => self.param_decl(pair).map(Item::Param),
                Rule::fn_def => self.fn_def(pair).map(Item::Fn),
                Rule::EOI => continue,
                _ => self.stmt(pair).map(Item::Stmt),
            };
            if let Ok(item) = item {
                items.push(item);
            }
        }
        Module {
            source: self.source,
            items,
        }
    }

    /// A name being bound (by `let`, `fn` or a parameter); keywords are refused here.
    fn binder(&mut self, pair: Pair<'_, Rule>) -> Built<Ident> {
        let ident = self.ident(pair.clone());
        if pair.as_rule() == Rule::reserved_word {
            return self.fail(
                Diag::error(
                    "mkedsl::syntax::keyword",
                    format!("`{}` is a keyword", ident.name),
                    ident.span,
                )
                .label("cannot be used as a name")
                .help("choose another name"),
            );
        }
        Ok(ident)
    }

    fn ident(&self, pair: Pair<'_, Rule>) -> Ident {
        Ident {
            name: pair.as_str().to_string(),
            span: self.span(&pair),
        }
    }

    fn header(&mut self, pair: Pair<'_, Rule>) -> Built<Header> {
        let span = self.span(&pair);
        let mut inner = children(pair);
        let name_pair = inner.next().ok_or(())?;
        let name_span = self.span(&name_pair);
        let name = self.string(name_pair)?;
        let mut fields = Vec::new();
        for field in inner {
            let mut parts = field.into_inner();
            let key = self.ident(parts.next().ok_or(())?);
            let value = self.expr(parts.next().ok_or(())?)?;
            fields.push(Field { key, value });
        }
        Ok(Header {
            name,
            name_span,
            fields,
            span,
        })
    }

    fn use_decl(&mut self, pair: Pair<'_, Rule>) -> UseDecl {
        let span = self.span(&pair);
        let path = children(pair)
            .flat_map(|p| p.into_inner())
            .map(|p| self.ident(p))
            .collect();
        UseDecl { path, span }
    }

    fn param_decl(&mut self, pair: Pair<'_, Rule>) -> Built<ParamDecl> {
        let span = self.span(&pair);
        let mut inner = children(pair);
        let name = self.binder(inner.next().ok_or(())?)?;
        let value = self.expr(inner.next().ok_or(())?)?;
        Ok(ParamDecl { name, value, span })
    }

    /// `NAME=VALUE` of a `--set` (the `set_arg` rule).
    pub fn set_arg(&mut self, pair: Pair<'_, Rule>) -> Built<SetArg> {
        let mut inner = pair.into_inner().filter(|p| p.as_rule() != Rule::EOI);
        let name = self.ident(inner.next().ok_or(())?);
        let value = self.expr(inner.next().ok_or(())?)?;
        Ok(SetArg { name, value })
    }

    fn fn_def(&mut self, pair: Pair<'_, Rule>) -> Built<FnDef> {
        let span = self.span(&pair);
        let mut doc = Vec::new();
        let mut name = None;
        let mut params = Vec::new();
        let mut ret = None;
        let mut body = None;
        for part in children(pair) {
            match part.as_rule() {
                Rule::doc => doc.push(part.as_str().trim_start_matches('#').trim().to_string()),
                Rule::ident | Rule::reserved_word => name = Some(self.binder(part)?),
                Rule::fn_param => params.push(self.fn_param(part)?),
                Rule::ret_type => ret = Some(self.type_expr(part.into_inner().next().ok_or(())?)),
                Rule::block => body = Some(self.block(part)?),
                _ => {}
            }
        }
        Ok(FnDef {
            name: name.ok_or(())?,
            doc,
            params,
            ret,
            body: body.ok_or(())?,
            span,
        })
    }

    fn fn_param(&mut self, pair: Pair<'_, Rule>) -> Built<FnParam> {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let name = self.binder(inner.next().ok_or(())?)?;
        let ty = self.type_expr(inner.next().ok_or(())?);
        let default = match inner.next() {
            Some(expr) => Some(self.expr(expr)?),
            None => None,
        };
        Ok(FnParam {
            name,
            ty,
            default,
            span,
        })
    }

    fn type_expr(&self, pair: Pair<'_, Rule>) -> TypeExpr {
        let span = self.span(&pair);
        let mut inner = pair.into_inner();
        let name = inner.next().map(|p| self.ident(p)).unwrap_or(Ident {
            name: String::new(),
            span,
        });
        let arg = inner.next().map(|p| Box::new(self.type_expr(p)));
        TypeExpr { name, arg, span }
    }

    fn block(&mut self, pair: Pair<'_, Rule>) -> Built<Block> {
        let span = self.span(&pair);
        let mut stmts = Vec::new();
        let mut ok = true;
        for stmt in pair.into_inner() {
            match self.stmt(stmt) {
                Ok(s) => stmts.push(s),
                Err(()) => ok = false,
            }
        }
        if ok {
            Ok(Block { stmts, span })
        } else {
            Err(())
        }
    }

    fn stmt(&mut self, pair: Pair<'_, Rule>) -> Built<Stmt> {
        let span = self.span(&pair);
        let rule = pair.as_rule();
        let mut inner = children(pair);
        let kind = match rule {
            Rule::let_stmt => {
                let name = self.binder(inner.next().ok_or(())?)?;
                let mut ty = None;
                let mut value = None;
                for part in inner {
                    match part.as_rule() {
                        Rule::type_expr => ty = Some(self.type_expr(part)),
                        _ => value = Some(self.expr(part)?),
                    }
                }
                StmtKind::Let {
                    name,
                    ty,
                    value: value.ok_or(())?,
                }
            }
            Rule::freeze_stmt => StmtKind::Freeze(self.expr(inner.next().ok_or(())?)?),
            Rule::per_edit => StmtKind::PerEdit(self.block(inner.next().ok_or(())?)?),
            Rule::train_stmt => {
                let target = self.expr(inner.next().ok_or(())?);
                let steps = self.expr(inner.next().ok_or(())?);
                let optimizer = self.expr(inner.next().ok_or(())?);
                let body = self.block(inner.next().ok_or(())?);
                StmtKind::Train {
                    target: target?,
                    steps: steps?,
                    optimizer: optimizer?,
                    body: body?,
                }
            }
            Rule::loss_stmt => StmtKind::Loss(self.expr(inner.next().ok_or(())?)?),
            Rule::project_stmt => {
                let kind_pair = inner.next().ok_or(())?;
                let kind_span = self.span(&kind_pair);
                let kind = if kind_pair.as_str() == "grad" {
                    ProjectKind::Grad
                } else {
                    ProjectKind::Update
                };
                let param = self.expr(inner.next().ok_or(())?);
                let space = self.expr(inner.next().ok_or(())?);
                let scale = match inner.next() {
                    Some(scale) => Some(self.expr(children(scale).next().ok_or(())?)?),
                    None => None,
                };
                StmtKind::Project {
                    kind,
                    kind_span,
                    param: param?,
                    space: space?,
                    scale,
                }
            }
            Rule::evaluate_stmt => StmtKind::Evaluate(self.expr(inner.next().ok_or(())?)?),
            Rule::expr_stmt => StmtKind::Expr(self.expr(inner.next().ok_or(())?)?),
            _ => return Err(()),
        };
        Ok(Stmt { kind, span })
    }

    /// An `expr` pair: a flat run of operands and operators, folded by the Pratt parser.
    fn expr(&mut self, pair: Pair<'_, Rule>) -> Built<Expr> {
        let span = self.span(&pair);
        let pairs = pair.into_inner();
        self.check_limits(&pairs, span)?;
        let source = self.source;
        let folded = PRATT
            .map_primary(|p| self.primary(p))
            .map_prefix(move |op, rhs| {
                let operand = rhs?;
                let span = Span::new(source, op.as_span().start(), operand.span.end);
                Ok(Expr {
                    kind: ExprKind::Neg(Box::new(operand)),
                    span,
                })
            })
            .map_postfix(move |lhs, op| {
                let base = lhs?;
                let name_pair = op.into_inner().next().ok_or(())?;
                let at = name_pair.as_span();
                let name = Ident {
                    name: name_pair.as_str().to_string(),
                    span: Span::new(source, at.start(), at.end()),
                };
                let span = base.span.to(name.span);
                Ok(Expr {
                    kind: ExprKind::Member {
                        base: Box::new(base),
                        name,
                    },
                    span,
                })
            })
            .map_infix(|lhs, op, rhs| {
                let (lhs, rhs) = (lhs?, rhs?);
                let op = match op.as_rule() {
                    Rule::add => BinOp::Add,
                    Rule::sub => BinOp::Sub,
                    Rule::mul => BinOp::Mul,
                    _ => BinOp::Div,
                };
                let span = lhs.span.to(rhs.span);
                Ok(Expr {
                    kind: ExprKind::Binary {
                        op,
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                    },
                    span,
                })
            })
            .parse(pairs);
        folded
    }

    /// Refuses operator chains long enough to threaten the recursion that folds and checks them.
    fn check_limits(&mut self, pairs: &Pairs<'_, Rule>, span: Span) -> Built<()> {
        let mut operators = 0usize;
        let mut run = 0usize;
        for p in pairs.clone() {
            match p.as_rule() {
                Rule::add | Rule::sub | Rule::mul | Rule::div => {
                    operators += 1;
                    run = 0;
                }
                Rule::neg | Rule::member => {
                    run += 1;
                    if run > MAX_AFFIXES {
                        let at = self.span(&p);
                        return self.fail(
                            Diag::error(
                                "mkedsl::syntax::too_long",
                                format!("more than {MAX_AFFIXES} `-` or `.` in a row"),
                                at,
                            )
                            .label("here")
                            .help("name intermediate values with `let`"),
                        );
                    }
                }
                _ => run = 0,
            }
        }
        if operators > MAX_OPERATORS {
            return self.fail(
                Diag::error(
                    "mkedsl::syntax::too_long",
                    format!(
                        "expression chains {operators} operators; the limit is {MAX_OPERATORS}"
                    ),
                    span,
                )
                .label("this expression")
                .help("split it into several `let` bindings"),
            );
        }
        Ok(())
    }

    fn primary(&mut self, pair: Pair<'_, Rule>) -> Built<Expr> {
        let span = self.span(&pair);
        let kind = match pair.as_rule() {
            Rule::int => match pair.as_str().parse::<i64>() {
                Ok(n) => ExprKind::Int(n),
                Err(_) => {
                    return self.fail(
                        Diag::error(
                            "mkedsl::syntax::number",
                            "integer literal is too large",
                            span,
                        )
                        .label("does not fit in 64 bits")
                        .help("integers range up to 9223372036854775807"),
                    );
                }
            },
            Rule::float => match pair.as_str().parse::<f64>() {
                Ok(x) if x.is_finite() => ExprKind::Float(x),
                _ => {
                    return self.fail(
                        Diag::error(
                            "mkedsl::syntax::number",
                            "float literal is out of range",
                            span,
                        )
                        .label("not a finite 64-bit float"),
                    );
                }
            },
            Rule::bad_number => {
                return self.fail(
                    Diag::error(
                        "mkedsl::syntax::number",
                        format!("malformed number `{}`", pair.as_str()),
                        span,
                    )
                    .label("not a number")
                    .help("write integers as `42`, floats as `0.5`, `1.`, `1e-3` or `2.5E+4`"),
                );
            }
            Rule::string => ExprKind::Str(self.string(pair)?),
            Rule::boolean => ExprKind::Bool(pair.as_str() == "true"),
            Rule::ident => ExprKind::Ident(pair.as_str().to_string()),
            Rule::range => {
                let text = pair.as_str();
                let (start, end) = text.split_once("..").unwrap_or((text, ""));
                ExprKind::Range {
                    start: self.bound(start, span)?,
                    end: self.bound(end, span)?,
                }
            }
            Rule::list => {
                let mut items = Vec::new();
                let mut ok = true;
                for item in pair.into_inner() {
                    match self.expr(item) {
                        Ok(e) => items.push(e),
                        Err(()) => ok = false,
                    }
                }
                if !ok {
                    return Err(());
                }
                ExprKind::List(items)
            }
            Rule::paren => {
                let inner = self.expr(pair.into_inner().next().ok_or(())?)?;
                return Ok(Expr {
                    kind: inner.kind,
                    span,
                });
            }
            Rule::call => {
                let mut inner = pair.into_inner();
                let callee_pair = inner.next().ok_or(())?;
                let callee = self.ident(callee_pair.into_inner().next().ok_or(())?);
                let mut args = Vec::new();
                let mut ok = true;
                for arg in inner {
                    match self.arg(arg) {
                        Ok(a) => args.push(a),
                        Err(()) => ok = false,
                    }
                }
                if !ok {
                    return Err(());
                }
                ExprKind::Call { callee, args }
            }
            _ => return Err(()),
        };
        Ok(Expr { kind, span })
    }

    fn bound(&mut self, text: &str, span: Span) -> Built<Option<i64>> {
        if text.is_empty() {
            return Ok(None);
        }
        match text.parse::<i64>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => self.fail(
                Diag::error("mkedsl::syntax::number", "range bound is too large", span)
                    .label("does not fit in 64 bits"),
            ),
        }
    }

    fn arg(&mut self, pair: Pair<'_, Rule>) -> Built<Arg> {
        let span = self.span(&pair);
        match pair.as_rule() {
            Rule::named_arg => {
                let mut inner = pair.into_inner();
                let name = self.ident(inner.next().ok_or(())?);
                let value = self.expr(inner.next().ok_or(())?)?;
                Ok(Arg {
                    name: Some(name),
                    value,
                    span,
                })
            }
            _ => Ok(Arg {
                name: None,
                value: self.expr(pair)?,
                span,
            }),
        }
    }

    /// A string literal with its escapes resolved: `\"`, `\\`, `\n`, `\t`.
    fn string(&mut self, pair: Pair<'_, Rule>) -> Built<String> {
        let inner = pair.into_inner().next().ok_or(())?;
        let base = inner.as_span().start();
        let raw = inner.as_str();
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.char_indices();
        while let Some((i, c)) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some((_, '"')) => out.push('"'),
                Some((_, '\\')) => out.push('\\'),
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((j, other)) => {
                    let span = Span::new(self.source, base + i, base + j + other.len_utf8());
                    return self.fail(
                        Diag::error(
                            "mkedsl::syntax::escape",
                            format!("unknown escape `\\{other}`"),
                            span,
                        )
                        .label("not an escape")
                        .help("strings know `\\\"`, `\\\\`, `\\n` and `\\t`"),
                    );
                }
                None => {}
            }
        }
        Ok(out)
    }
}
