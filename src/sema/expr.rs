//! Expressions: literals, names, arithmetic, lists, member access and calls.
//!
//! Numbers are folded here (the checker knows every number before anything runs), losses are
//! combined into weighted sums, and calls go to a builtin or are inlined from a function.

use super::checker::Checker;
use super::program::LossTerm;
use super::types::Ty;
use super::value::Value;
use crate::diagnostics::{did_you_mean, Diag};
use crate::source::Span;
use crate::syntax::ast::{Arg, BinOp, Expr, ExprKind, Ident};

/// A number as f64.
pub(super) fn as_f64(value: &Value) -> Option<f64> {
    match value {
        Value::Int(n) => Some(*n as f64),
        Value::Float(x) => Some(*x),
        _ => None,
    }
}

/// Converts Ints to Floats where a Float (or a list of them) is expected.
pub(super) fn widen(value: Value, expected: &Ty) -> Value {
    match (value, expected) {
        (Value::Int(n), Ty::Float) => Value::Float(n as f64),
        (Value::List(items), Ty::List(inner)) => {
            Value::List(items.into_iter().map(|v| widen(v, inner)).collect())
        }
        (v, _) => v,
    }
}

/// Deepest nesting of expression evaluation, counting through inlined functions.
const MAX_EVAL_DEPTH: usize = 96;

impl Checker<'_> {
    pub fn eval(&mut self, expr: &Expr) -> Value {
        self.eval_with(expr, None)
    }

    /// Evaluates `expr`; a bare unknown identifier becomes a symbol when `symbols` is given (the
    /// receiving parameter checks that it is one of its own).
    pub fn eval_with(&mut self, expr: &Expr, symbols: Option<&[&str]>) -> Value {
        if self.depth >= MAX_EVAL_DEPTH {
            if self.too_deep_reported {
                return Value::Poison;
            }
            self.too_deep_reported = true;
            return self.error(
                Diag::error(
                    "mkedsl::fn::too_deep",
                    "expressions and function calls nest too deeply",
                    expr.span,
                )
                .label(format!("more than {MAX_EVAL_DEPTH} levels deep here"))
                .help("name intermediate values with `let` and flatten chains of helper functions"),
            );
        }
        self.depth += 1;
        let value = self.eval_inner(expr, symbols);
        self.depth -= 1;
        value
    }

    fn eval_inner(&mut self, expr: &Expr, symbols: Option<&[&str]>) -> Value {
        match &expr.kind {
            ExprKind::Int(n) => Value::Int(*n),
            ExprKind::Float(x) => Value::Float(*x),
            ExprKind::Str(s) => Value::Str(s.clone()),
            ExprKind::Bool(b) => Value::Bool(*b),
            ExprKind::Range { start, end } => Value::Range {
                start: *start,
                end: *end,
            },
            ExprKind::Ident(name) => self.ident(name, expr.span, symbols),
            ExprKind::List(items) => self.list(items, symbols),
            ExprKind::Call { callee, args } => self.call(callee, args, expr.span),
            ExprKind::Member { base, name } => {
                let base_value = self.eval(base);
                self.member(base_value, name, expr.span)
            }
            ExprKind::Neg(operand) => {
                let v = self.eval(operand);
                self.negate(v, expr.span)
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let l = self.eval(lhs);
                let r = self.eval(rhs);
                self.binary(*op, l, r, lhs.span, rhs.span, expr.span)
            }
        }
    }

    fn ident(&mut self, name: &str, span: Span, symbols: Option<&[&str]>) -> Value {
        if let Some(binding) = self.lookup(name) {
            return binding.value.clone();
        }
        match name {
            "target" => {
                if self.in_edit() {
                    return Value::Target;
                }
                return self.error(
                    Diag::error("mkedsl::edit::target_outside", "`target` exists only inside `per edit`", span)
                        .label("no edit case here")
                        .help("`target` is the current edit case's answer; use it inside `per edit { ... }`"),
                );
            }
            "embed" => return Value::Embed,
            _ => {}
        }
        if symbols.is_some() || super::builtins::is_symbol(name) {
            return Value::Symbol(name.to_string());
        }
        if self.fns.contains_key(name) || super::builtins::find(name).is_some() {
            return self.error(
                Diag::error(
                    "mkedsl::type::fn_as_value",
                    format!("`{name}` is a function"),
                    span,
                )
                .label("used as a value")
                .help(format!("call it: `{name}(...)`")),
            );
        }
        self.unknown_name(name, span)
    }

    fn list(&mut self, items: &[Expr], symbols: Option<&[&str]>) -> Value {
        let mut values = Vec::with_capacity(items.len());
        let mut common = Ty::Any;
        let mut poisoned = false;
        for item in items {
            let v = self.eval_with(item, symbols);
            if v.is_poison() {
                poisoned = true;
                values.push(v);
                continue;
            }
            let t = v.ty();
            if common == Ty::Any {
                common = t;
            } else if t.fits(&common) {
                // Int in a Float list: widened below.
            } else if common.fits(&t) {
                common = t;
            } else if matches!(
                (&common, &t),
                (Ty::Param, Ty::Adapter) | (Ty::Adapter, Ty::Param)
            ) {
                // `[up, down.B]`: an adapter among parameters stands for its tensors.
                common = Ty::Param;
            } else {
                self.diags.push(
                    Diag::error(
                        "mkedsl::type::mixed_list",
                        format!("list elements must share one type: found {common} and {t}"),
                        item.span,
                    )
                    .label(format!("this is {t}"))
                    .help("split the list, or call a function that takes this kind of value"),
                );
                poisoned = true;
            }
            values.push(v);
        }
        if poisoned {
            return Value::Poison;
        }
        widen(Value::List(values), &Ty::List(Box::new(common)))
    }

    fn negate(&mut self, value: Value, span: Span) -> Value {
        match value {
            Value::Int(n) => match n.checked_neg() {
                Some(m) => Value::Int(m),
                None => self.overflow(span),
            },
            Value::Float(x) => Value::Float(-x),
            Value::Poison => Value::Poison,
            Value::Loss(_) => self.error(
                Diag::error(
                    "mkedsl::type::negate_loss",
                    "a loss cannot be negated",
                    span,
                )
                .label("mkedsl minimises every loss")
                .help("a negated loss would be maximised; weight terms with positive numbers"),
            ),
            other => {
                let ty = other.ty();
                self.error(
                    Diag::error(
                        "mkedsl::type::negate",
                        format!("cannot negate {}", ty.a()),
                        span,
                    )
                    .label(format!("this is {ty}"))
                    .help("only numbers can be negated"),
                )
            }
        }
    }

    fn overflow(&mut self, span: Span) -> Value {
        self.error(
            Diag::error(
                "mkedsl::range::overflow",
                "integer arithmetic overflows",
                span,
            )
            .label("result does not fit in 64 bits")
            .help("use smaller numbers, or Floats"),
        )
    }

    fn binary(&mut self, op: BinOp, l: Value, r: Value, ls: Span, rs: Span, span: Span) -> Value {
        if l.is_poison() || r.is_poison() {
            return Value::Poison;
        }
        match (&l, &r) {
            (Value::Int(a), Value::Int(b)) => {
                let (a, b) = (*a, *b);
                let out = match op {
                    BinOp::Add => a.checked_add(b).map(Value::Int),
                    BinOp::Sub => a.checked_sub(b).map(Value::Int),
                    BinOp::Mul => a.checked_mul(b).map(Value::Int),
                    BinOp::Div => return self.divide(a as f64, b as f64, rs, span),
                };
                return out.unwrap_or_else(|| self.overflow(span));
            }
            (Value::Int(_) | Value::Float(_), Value::Int(_) | Value::Float(_)) => {
                let (a, b) = (as_f64(&l).unwrap_or(0.0), as_f64(&r).unwrap_or(0.0));
                let x = match op {
                    BinOp::Add => a + b,
                    BinOp::Sub => a - b,
                    BinOp::Mul => a * b,
                    BinOp::Div => return self.divide(a, b, rs, span),
                };
                return self.finite(x, span);
            }
            _ => {}
        }
        match (op, l, r) {
            (BinOp::Add, Value::Loss(mut a), Value::Loss(b)) => {
                a.extend(b);
                Value::Loss(a)
            }
            (BinOp::Mul, k @ (Value::Int(_) | Value::Float(_)), Value::Loss(terms))
            | (BinOp::Mul, Value::Loss(terms), k @ (Value::Int(_) | Value::Float(_))) => {
                self.scale_loss(terms, as_f64(&k).unwrap_or(1.0), span)
            }
            (BinOp::Div, Value::Loss(terms), k @ (Value::Int(_) | Value::Float(_))) => {
                let k = as_f64(&k).unwrap_or(1.0);
                if k == 0.0 {
                    return self.divide(1.0, 0.0, rs, span);
                }
                self.scale_loss(terms, 1.0 / k, span)
            }
            (BinOp::Sub, Value::Loss(_), Value::Loss(_)) => self.error(
                Diag::error(
                    "mkedsl::type::subtract_loss",
                    "losses cannot be subtracted",
                    span,
                )
                .label("this would maximise the right-hand loss")
                .help("combine losses with `+` and positive weights"),
            ),
            (op, l, r) => {
                let (lt, rt) = (l.ty(), r.ty());
                let verb = match op {
                    BinOp::Add => "add",
                    BinOp::Sub => "subtract",
                    BinOp::Mul => "multiply",
                    BinOp::Div => "divide",
                };
                let culprit = if matches!(l, Value::Int(_) | Value::Float(_) | Value::Loss(_)) {
                    rs
                } else {
                    ls
                };
                self.error(
                    Diag::error(
                        "mkedsl::type::operator",
                        format!("cannot {verb} {lt} and {rt}"),
                        span,
                    )
                    .label(format!("`{}` between {lt} and {rt}", op.symbol()))
                    .note(culprit, "this operand")
                    .help("`+ - * /` work on numbers; losses add to losses and scale by numbers"),
                )
            }
        }
    }

    fn scale_loss(&mut self, terms: Vec<LossTerm>, k: f64, span: Span) -> Value {
        if k <= 0.0 || !k.is_finite() {
            return self.error(
                Diag::error("mkedsl::range::loss_weight", format!("a loss weight must be positive, not {k}"), span)
                    .label("non-positive weight")
                    .help("mkedsl minimises losses; a zero or negative weight would drop or invert the term"),
            );
        }
        let scaled: Vec<LossTerm> = terms
            .into_iter()
            .map(|t| LossTerm {
                weight: t.weight * k,
                kind: t.kind,
            })
            .collect();
        if scaled
            .iter()
            .any(|t| !t.weight.is_finite() || t.weight <= 0.0)
        {
            return self.error(
                Diag::error(
                    "mkedsl::range::loss_weight",
                    "a loss weight overflows",
                    span,
                )
                .label("weight is not a finite positive number")
                .help("use moderate weights such as `10 * rank_align(...)`"),
            );
        }
        Value::Loss(scaled)
    }

    fn divide(&mut self, a: f64, b: f64, rs: Span, span: Span) -> Value {
        if b == 0.0 {
            return self.error(
                Diag::error("mkedsl::range::div_zero", "division by zero", rs)
                    .label("this is zero")
                    .help("check the constant"),
            );
        }
        self.finite(a / b, span)
    }

    fn finite(&mut self, x: f64, span: Span) -> Value {
        if x.is_finite() {
            Value::Float(x)
        } else {
            self.error(
                Diag::error(
                    "mkedsl::range::not_finite",
                    "arithmetic result is not a finite number",
                    span,
                )
                .label("overflows a 64-bit float")
                .help("use smaller numbers"),
            )
        }
    }

    /// Calls a builtin, or inlines a function.
    fn call(&mut self, callee: &Ident, args: &[Arg], span: Span) -> Value {
        let name = callee.name.as_str();
        if self.lookup(name).is_some() {
            return self.error(
                Diag::error(
                    "mkedsl::type::not_callable",
                    format!("`{name}` is a value, not a function"),
                    callee.span,
                )
                .label("called here")
                .help("only functions and builtins can be called"),
            );
        }
        if let Some(def) = self.fns.get(name) {
            return self.call_fn(def, args, span);
        }
        if let Some(builtin) = super::builtins::find(name) {
            return self.call_builtin(builtin, args, span, callee.span);
        }
        let mut names: Vec<&str> = self.fns.keys().map(String::as_str).collect();
        for n in super::builtins::names() {
            names.push(n);
        }
        let mut diag = Diag::error(
            "mkedsl::name::unknown_fn",
            format!("unknown function `{name}`"),
            callee.span,
        )
        .label("no builtin or function has this name");
        diag = match did_you_mean(name, names) {
            Some(best) => diag.help(format!("did you mean `{best}`?")),
            None => diag.help(
                "see grammar/REFERENCE.md for the builtins; `use std.NAME` imports functions",
            ),
        };
        self.error(diag)
    }
}
