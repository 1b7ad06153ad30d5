//! Binding call arguments to parameters: positional then named, defaults, and type checks.
//!
//! Builtins and inlined functions share this code, so both report the same diagnostics for an
//! unknown named argument (with "did you mean"), an argument given twice, a missing one, a
//! positional argument after a named one, and a value of the wrong type.

use super::checker::Checker;
use super::expr::widen;
use super::types::Ty;
use super::value::Value;
use crate::diagnostics::{did_you_mean, Diag};
use crate::source::Span;
use crate::syntax::ast::Arg;

/// What a parameter accepts.
#[derive(Debug, Clone)]
pub(super) enum Accept {
    Ty(Ty),
    Either(Ty, Ty),
    ListOf(Ty),
    /// One of these symbols.
    Symbols(&'static [&'static str]),
    /// One of these symbols, or a value of this type.
    SymbolsOr(&'static [&'static str], Ty),
}

impl Accept {
    fn symbols(&self) -> Option<&'static [&'static str]> {
        match self {
            Accept::Symbols(s) | Accept::SymbolsOr(s, _) => Some(s),
            Accept::Ty(Ty::Symbol) => Some(&[]),
            _ => None,
        }
    }

    pub(super) fn describe(&self) -> String {
        let syms = |s: &[&str]| {
            s.iter()
                .map(|x| format!("`{x}`"))
                .collect::<Vec<_>>()
                .join(" | ")
        };
        match self {
            Accept::Ty(t) => t.to_string(),
            Accept::Either(a, b) => format!("{a} or {b}"),
            Accept::ListOf(t) => format!("List<{t}>"),
            Accept::Symbols(s) => syms(s),
            Accept::SymbolsOr(s, t) => format!("{} or {t}", syms(s)),
        }
    }
}

/// A parameter's default.
#[derive(Debug, Clone, Copy)]
pub(super) enum Dflt<'f> {
    Required,
    /// May be left out; then it is absent.
    Optional,
    Int(i64),
    Float(f64),
    Symbol(&'static str),
    /// The value of another parameter (LoRA's `alpha` defaults to its `rank`).
    SameAs(&'static str),
    /// A function parameter's default expression (`Dflt::Expr(())` marks it; the inliner
    /// evaluates it where the function is defined).
    Expr(std::marker::PhantomData<&'f ()>),
}

#[derive(Debug, Clone)]
pub(super) struct Formal<'f> {
    pub name: &'f str,
    pub accept: Accept,
    pub default: Dflt<'f>,
}

/// A bound argument: its value and where it was written (the call, for a default).
#[derive(Debug, Clone)]
pub(super) struct Bound {
    pub value: Value,
    pub span: Span,
}

/// The arguments of one call, in parameter order.
#[derive(Debug)]
pub(super) struct Args {
    pub call: Span,
    pub names: Vec<String>,
    pub slots: Vec<Option<Bound>>,
}

impl Args {
    pub fn get(&self, name: &str) -> Option<&Bound> {
        let i = self.names.iter().position(|n| n == name)?;
        self.slots.get(i)?.as_ref()
    }

    pub fn value(&self, name: &str) -> Value {
        self.get(name)
            .map(|b| b.value.clone())
            .unwrap_or(Value::Poison)
    }

    pub fn span(&self, name: &str) -> Span {
        self.get(name).map(|b| b.span).unwrap_or(self.call)
    }

    pub fn int(&self, name: &str) -> Option<(i64, Span)> {
        match self.get(name)? {
            Bound {
                value: Value::Int(n),
                span,
            } => Some((*n, *span)),
            _ => None,
        }
    }

    pub fn float(&self, name: &str) -> Option<(f64, Span)> {
        match self.get(name)? {
            Bound {
                value: Value::Float(x),
                span,
            } => Some((*x, *span)),
            Bound {
                value: Value::Int(n),
                span,
            } => Some((*n as f64, *span)),
            _ => None,
        }
    }

    /// A symbol argument as the enum it names (checked against `Accept::Symbols(T::VARIANTS)`).
    pub fn choice<T: crate::sema::program::Symbol>(&self, name: &str) -> Option<T> {
        self.symbol(name).and_then(T::parse)
    }

    pub fn symbol(&self, name: &str) -> Option<&str> {
        match self.get(name)? {
            Bound {
                value: Value::Symbol(s),
                ..
            } => Some(s.as_str()),
            _ => None,
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

impl Checker<'_> {
    /// Binds `args` to `formals`; `None` if anything was wrong (already reported).
    pub(super) fn bind(
        &mut self,
        callee: &str,
        formals: &[Formal<'_>],
        args: &[Arg],
        call: Span,
    ) -> Option<Args> {
        let mut slots: Vec<Option<Bound>> = vec![None; formals.len()];
        let mut ok = true;
        let mut first_named: Option<Span> = None;
        let mut next = 0usize;
        let signature = || {
            format!(
                "{callee}({})",
                formals
                    .iter()
                    .map(|f| match f.default {
                        Dflt::Required => format!("{}: {}", f.name, f.accept.describe()),
                        _ => format!("{}: {} = …", f.name, f.accept.describe()),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        for arg in args {
            let index = match &arg.name {
                None => {
                    if let Some(named) = first_named {
                        self.diags.push(
                            Diag::error(
                                "mkedsl::arg::positional_after_named",
                                "positional argument after a named one",
                                arg.span,
                            )
                            .label("positional")
                            .note(named, "named argument")
                            .help("write positional arguments first, then `name: value` ones"),
                        );
                        ok = false;
                        continue;
                    }
                    if next >= formals.len() {
                        self.diags.push(
                            Diag::error(
                                "mkedsl::arg::too_many",
                                format!(
                                    "`{callee}` takes at most {} argument{}",
                                    formals.len(),
                                    plural(formals.len())
                                ),
                                arg.span,
                            )
                            .label("one too many")
                            .help(format!("signature: {}", signature())),
                        );
                        ok = false;
                        continue;
                    }
                    next += 1;
                    next - 1
                }
                Some(name) => {
                    first_named.get_or_insert(arg.span);
                    match formals.iter().position(|f| f.name == name.name) {
                        Some(i) => i,
                        None => {
                            let mut diag = Diag::error(
                                "mkedsl::arg::unknown",
                                format!("`{callee}` has no parameter `{}`", name.name),
                                name.span,
                            )
                            .label("unknown argument");
                            diag = match did_you_mean(&name.name, formals.iter().map(|f| f.name)) {
                                Some(best) => diag.help(format!(
                                    "did you mean `{best}`? signature: {}",
                                    signature()
                                )),
                                None => diag.help(format!("signature: {}", signature())),
                            };
                            self.diags.push(diag);
                            ok = false;
                            continue;
                        }
                    }
                }
            };
            let Some(formal) = formals.get(index) else {
                continue;
            };
            if let Some(Some(previous)) = slots.get(index) {
                let first = previous.span;
                self.diags.push(
                    Diag::error(
                        "mkedsl::arg::duplicate",
                        format!("argument `{}` is given twice", formal.name),
                        arg.span,
                    )
                    .label("again here")
                    .note(first, "first given here")
                    .help("give each argument once"),
                );
                ok = false;
                continue;
            }
            let value = self.eval_with(&arg.value, formal.accept.symbols());
            let value = self.accept(callee, formal, value, arg.value.span);
            if value.is_poison() {
                ok = false;
            }
            if let Some(slot) = slots.get_mut(index) {
                *slot = Some(Bound {
                    value,
                    span: arg.value.span,
                });
            }
        }
        for (i, formal) in formals.iter().enumerate() {
            if slots.get(i).map(Option::is_some).unwrap_or(true) {
                continue;
            }
            let value = match formal.default {
                // After a misplaced or misspelt argument, a "missing" one is usually that one.
                Dflt::Required if !ok => continue,
                Dflt::Required => {
                    self.diags.push(
                        Diag::error(
                            "mkedsl::arg::missing",
                            format!("`{callee}` needs an argument `{}`", formal.name),
                            call,
                        )
                        .label(format!("`{}` missing", formal.name))
                        .help(format!("signature: {}", signature())),
                    );
                    ok = false;
                    continue;
                }
                Dflt::Optional | Dflt::Expr(_) => continue,
                Dflt::Int(n) => Value::Int(n),
                Dflt::Float(x) => Value::Float(x),
                Dflt::Symbol(s) => Value::Symbol(s.to_string()),
                Dflt::SameAs(other) => {
                    let j = formals.iter().position(|f| f.name == other);
                    match j.and_then(|j| slots.get(j).cloned().flatten()) {
                        Some(b) => match &formal.accept {
                            Accept::Ty(t) => widen(b.value, t),
                            _ => b.value,
                        },
                        None => continue,
                    }
                }
            };
            if let Some(slot) = slots.get_mut(i) {
                *slot = Some(Bound { value, span: call });
            }
        }
        if !ok {
            return None;
        }
        Some(Args {
            call,
            names: formals.iter().map(|f| f.name.to_string()).collect(),
            slots,
        })
    }

    /// Checks a value against what a parameter accepts; widens Ints to Floats.
    pub(super) fn accept(
        &mut self,
        callee: &str,
        formal: &Formal<'_>,
        value: Value,
        span: Span,
    ) -> Value {
        if value.is_poison() {
            return Value::Poison;
        }
        let found = value.ty();
        let ok = match &formal.accept {
            Accept::Ty(t) => found.fits(t),
            Accept::Either(a, b) => found.fits(a) || found.fits(b),
            Accept::ListOf(t) => found.fits(&Ty::List(Box::new(t.clone()))),
            Accept::Symbols(set) | Accept::SymbolsOr(set, _)
                if matches!(value, Value::Symbol(_)) =>
            {
                let Value::Symbol(s) = &value else {
                    return Value::Poison;
                };
                if set.contains(&s.as_str()) {
                    return value;
                }
                let mut diag = Diag::error(
                    "mkedsl::arg::symbol",
                    format!("`{s}` is not a valid `{}` for `{callee}`", formal.name),
                    span,
                )
                .label(format!("expected {}", formal.accept.describe()));
                diag = match did_you_mean(s, set.iter().copied()) {
                    Some(best) => diag.help(format!("did you mean `{best}`?")),
                    None => diag.help(format!(
                        "`{}` is one of {}",
                        formal.name,
                        formal.accept.describe()
                    )),
                };
                return self.error(diag);
            }
            Accept::Symbols(_) => false,
            Accept::SymbolsOr(_, t) => found.fits(t),
        };
        if !ok {
            let shown = match &value {
                Value::Symbol(s) => format!("symbol `{s}`"),
                _ => found.to_string(),
            };
            return self.error(
                Diag::error(
                    "mkedsl::type::arg",
                    format!(
                        "`{}` of `{callee}` expects {}, found {shown}",
                        formal.name,
                        formal.accept.describe()
                    ),
                    span,
                )
                .label(format!("this is {shown}"))
                .help(hint_for(&formal.accept, &found)),
            );
        }
        match &formal.accept {
            Accept::Ty(t) | Accept::ListOf(t) | Accept::SymbolsOr(_, t) => {
                let expected = match &formal.accept {
                    Accept::ListOf(t) => Ty::List(Box::new(t.clone())),
                    _ => t.clone(),
                };
                widen(value, &expected)
            }
            Accept::Either(a, _) if found == Ty::Int && *a == Ty::Float => widen(value, a),
            _ => value,
        }
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// A hint for the commonest confusions between site types.
fn hint_for(accept: &Accept, found: &Ty) -> String {
    match (accept, found) {
        (Accept::Ty(Ty::Linear), Ty::Component) => {
            "name a projection: `.mlp.down_proj`, `.attn.q_proj`, …".into()
        }
        (Accept::Ty(Ty::Linear), Ty::Layer) => {
            "name a projection of the layer, e.g. `layer(1).mlp.down_proj`".into()
        }
        (Accept::Ty(Ty::Stream), Ty::Linear) => {
            "name an activation of the projection: `.input` or `.output`".into()
        }
        (Accept::Ty(Ty::Stream), Ty::Layer) => {
            "name an activation of the layer: `.input` or `.output`".into()
        }
        (Accept::Ty(Ty::Stream), Ty::Param) => {
            "a parameter's activation is `.input`, e.g. `ab.B.input`".into()
        }
        (Accept::Ty(Ty::Int), Ty::Float) => "write a whole number (no decimal point)".into(),
        (Accept::Ty(Ty::Covariance), Ty::Stream) => {
            "wrap the stream: `covariance(STREAM, over: preserve(...))`".into()
        }
        _ => "see grammar/REFERENCE.md for this builtin's signature".into(),
    }
}
