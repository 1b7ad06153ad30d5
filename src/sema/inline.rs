//! Calling a recipe or stdlib function: its body is checked in place, with its own names.
//!
//! Functions are hygienic — their body sees its parameters, its own `let`s, functions and
//! builtins, never the caller's variables — and they run in the caller's block, so a function
//! called inside a train body may write `loss` and `project`.

use super::args::{Accept, Bound, Dflt, Formal};
use super::checker::Checker;
use super::types::Ty;
use super::value::Value;
use crate::diagnostics::Diag;
use crate::source::Span;
use crate::syntax::ast::{Arg, FnDef, StmtKind};

/// Deepest chain of function calls (cycles are refused earlier; this bounds long chains).
const MAX_INLINE_DEPTH: usize = 16;

impl Checker<'_> {
    pub(super) fn call_fn(&mut self, def: &FnDef, args: &[Arg], span: Span) -> Value {
        let name = def.name.name.as_str();
        if self.broken_fns.contains(name) || self.calls.iter().any(|(n, _)| n == name) {
            return Value::Poison;
        }
        if self.calls.len() >= MAX_INLINE_DEPTH {
            return self.error(
                Diag::error(
                    "mkedsl::fn::too_deep",
                    format!("functions call each other more than {MAX_INLINE_DEPTH} deep"),
                    span,
                )
                .label("this call")
                .help("flatten the chain of helper functions"),
            );
        }
        let formals: Vec<Formal<'_>> = def
            .params
            .iter()
            .map(|p| {
                let ty = Ty::from_expr(&p.ty).unwrap_or(Ty::Any);
                Formal {
                    name: p.name.name.as_str(),
                    accept: Accept::Ty(ty),
                    default: if p.default.is_some() {
                        Dflt::Expr(std::marker::PhantomData)
                    } else {
                        Dflt::Required
                    },
                }
            })
            .collect();
        let Some(mut bound) = self.bind(name, &formals, args, span) else {
            return Value::Poison;
        };

        let diags_before = self.diags.len();
        let saved = std::mem::replace(&mut self.frames, vec![Vec::new()]);
        // Defaults are evaluated where the function is defined: no caller variables in scope.
        for (i, p) in def.params.iter().enumerate() {
            let missing = bound.slots.get(i).map(Option::is_none).unwrap_or(false);
            if let (true, Some(expr), Some(formal)) = (missing, p.default.as_ref(), formals.get(i))
            {
                let v = self.eval(expr);
                let v = self.accept(name, formal, v, expr.span);
                if let Some(slot) = bound.slots.get_mut(i) {
                    *slot = Some(Bound {
                        value: v,
                        span: expr.span,
                    });
                }
            }
        }
        for (i, p) in def.params.iter().enumerate() {
            let value = bound
                .slots
                .get(i)
                .cloned()
                .flatten()
                .map(|b| b.value)
                .unwrap_or(Value::Poison);
            self.define(&p.name, value);
        }
        self.calls.push((name.to_string(), span));

        let declared = def
            .ret
            .as_ref()
            .map(|t| Ty::from_expr(t).unwrap_or(Ty::Any))
            .unwrap_or(Ty::Unit);
        let stmts = &def.body.stmts;
        let (body, tail) = match stmts.split_last() {
            Some((last, init)) if declared != Ty::Unit => match &last.kind {
                StmtKind::Expr(e) => (init, Some(e)),
                _ => (stmts.as_slice(), None),
            },
            _ => (stmts.as_slice(), None),
        };
        self.stmts(body);
        let result = match tail {
            Some(e) => self.eval(e),
            None => Value::Unit,
        };
        self.calls.pop();
        self.frames = saved;

        let result = if result.is_poison() {
            Value::Poison
        } else if declared != Ty::Unit && tail.is_none() {
            self.error(
                Diag::error(
                    "mkedsl::fn::no_result",
                    format!(
                        "function `{name}` declares `-> {declared}` but does not end with a value"
                    ),
                    def.name.span,
                )
                .label("no final expression")
                .help("end the body with the expression to return"),
            )
        } else if !result.ty().fits(&declared) {
            let found = result.ty();
            let at = tail.map(|e| e.span).unwrap_or(def.name.span);
            self.error(
                Diag::error(
                    "mkedsl::fn::return_type",
                    format!("function `{name}` returns {found} but declares {declared}"),
                    at,
                )
                .label(format!("this is {found}"))
                .help("change the declared return type or the final expression"),
            )
        } else {
            super::expr::widen(result, &declared)
        };
        // Errors inside the body point into the function; show the recipe call that led there.
        if self.calls.is_empty() {
            for diag in self.diags.iter_mut().skip(diags_before) {
                let inside_call = diag
                    .span
                    .map(|s| s.source == span.source && s.start >= span.start && s.end <= span.end)
                    .unwrap_or(true);
                if !inside_call {
                    diag.notes.push(crate::diagnostics::Note {
                        span,
                        label: format!("in this call of `{name}`"),
                    });
                }
            }
        }
        result
    }
}
