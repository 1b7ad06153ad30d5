//! The builtins: one table entry per function the language provides, grouped by the part of the
//! papers they serve. Each entry declares its parameters (types, defaults); its `run` function
//! checks values and dimensions and returns a value or appends a node.

mod adapters;
mod data;
mod losses;
mod optim;
mod sites;
mod spaces;
mod unike;
mod variants;

use super::args::{Args, Formal};
use super::checker::Checker;
use super::header::{METRICS, MODES};
use super::types::Ty;
use super::value::Value;
use crate::diagnostics::Diag;
use crate::source::Span;
use crate::syntax::ast::Arg;

/// The largest value any count argument takes ([`Checker::count_in`] tightens it per argument).
pub const MAX_COUNT: i64 = 1_000_000;
/// Most perturbed or adversarial variants of one edit (each is a copy of the edit's latents).
pub const MAX_VARIANTS: i64 = 65_536;
/// Most preserved samples of each kind.
pub const MAX_PRESERVE: i64 = 100_000;

/// One builtin function.
pub(crate) struct Builtin {
    pub name: &'static str,
    /// One line for the reference and for `--help`-style listings.
    pub summary: &'static str,
    pub params: &'static [Formal<'static>],
    pub returns: Ty,
    /// Reads the edit case, so only allowed inside `per edit`.
    pub reads_edit: bool,
    /// Attaches an adapter to the model, so not allowed in a train body.
    pub attaches: bool,
    pub run: fn(&mut Checker<'_>, &Args) -> Value,
}

const GROUPS: &[&[Builtin]] = &[
    sites::BUILTINS,
    data::BUILTINS,
    spaces::BUILTINS,
    adapters::BUILTINS,
    variants::BUILTINS,
    unike::BUILTINS,
    losses::BUILTINS,
    optim::BUILTINS,
];

impl Builtin {
    /// `name(param: Type = default, ...) -> Type`.
    pub(crate) fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|f| {
                let default = match f.default {
                    super::args::Dflt::Required | super::args::Dflt::Expr(_) => String::new(),
                    super::args::Dflt::Optional => " = none".into(),
                    super::args::Dflt::Int(n) => format!(" = {n}"),
                    super::args::Dflt::Float(x) => format!(" = {x:?}"),
                    super::args::Dflt::Symbol(s) => format!(" = {s}"),
                    super::args::Dflt::SameAs(p) => format!(" = {p}"),
                };
                format!("{}: {}{default}", f.name, f.accept.describe())
            })
            .collect();
        format!("{}({}) -> {}", self.name, params.join(", "), self.returns)
    }
}

pub(crate) fn all() -> impl Iterator<Item = &'static Builtin> {
    GROUPS.iter().flat_map(|g| g.iter())
}

pub(crate) fn find(name: &str) -> Option<&'static Builtin> {
    all().find(|b| b.name == name)
}

pub(crate) fn names() -> impl Iterator<Item = &'static str> {
    all().map(|b| b.name)
}

/// Names that denote values rather than functions.
pub(crate) fn is_builtin_value(name: &str) -> bool {
    matches!(name, "target" | "embed")
}

/// Whether `name` is a symbol some builtin, the header or `evaluate` accepts.
pub(crate) fn is_symbol(name: &str) -> bool {
    MODES.contains(&name) || METRICS.contains(&name) || all_symbols().any(|s| s == name)
}

fn all_symbols() -> impl Iterator<Item = &'static str> {
    all()
        .flat_map(|b| b.params.iter())
        .flat_map(|f| match f.accept {
            super::args::Accept::Symbols(s) | super::args::Accept::SymbolsOr(s, _) => {
                s.iter().copied()
            }
            _ => [].iter().copied(),
        })
}

impl Checker<'_> {
    pub(super) fn call_builtin(
        &mut self,
        builtin: &'static Builtin,
        args: &[Arg],
        span: Span,
        name_span: Span,
    ) -> Value {
        if builtin.reads_edit && !self.in_edit() {
            return self.error(
                Diag::error(
                    "mkedsl::edit::outside_per_edit",
                    format!(
                        "`{}` reads the edit case, so it belongs inside `per edit`",
                        builtin.name
                    ),
                    name_span,
                )
                .label("no edit case at the top level")
                .help("move this call into `per edit { ... }`"),
            );
        }
        if builtin.attaches && self.in_step() {
            return self.error(
                Diag::error(
                    "mkedsl::train::attach_in_body",
                    format!(
                        "`{}` attaches an adapter; it cannot run at every training step",
                        builtin.name
                    ),
                    name_span,
                )
                .label("inside a train body")
                .help("create the adapter before `train`, at the top level or in `per edit`"),
            );
        }
        let Some(args) = self.bind(builtin.name, builtin.params, args, span) else {
            return Value::Poison;
        };
        (builtin.run)(self, &args)
    }

    // ---- value checks shared by the builtins ------------------------------------------------

    /// An Int argument that must be ≥ `min` (and at most [`MAX_COUNT`], as every count is).
    pub(super) fn at_least(
        &mut self,
        args: &Args,
        name: &str,
        min: i64,
        why: &str,
    ) -> Option<usize> {
        self.count_in(args, name, min, MAX_COUNT, why)
    }

    /// An Int argument in `[min, max]`. The upper bounds are stated policy: each is far above
    /// what the papers use and below what would exhaust memory or never finish (a billion
    /// perturbed copies of the edit input, a billion preserved samples).
    pub(super) fn count_in(
        &mut self,
        args: &Args,
        name: &str,
        min: i64,
        max: i64,
        why: &str,
    ) -> Option<usize> {
        let (n, span) = args.int(name)?;
        if n > max {
            self.diags.push(
                Diag::error(
                    "mkedsl::range::at_most",
                    format!("`{name}` must be ≤ {max}, not {n}"),
                    span,
                )
                .label(format!("must be ≤ {max}"))
                .help(format!(
                    "{why}; mkedsl refuses more than {max}: it would exhaust memory or never finish"
                )),
            );
            return None;
        }
        if n < min {
            self.diags.push(
                Diag::error(
                    "mkedsl::range::at_least",
                    format!("`{name}` must be ≥ {min}, not {n}"),
                    span,
                )
                .label(format!("must be ≥ {min}"))
                .help(why.to_string()),
            );
            return None;
        }
        usize::try_from(n).ok()
    }

    /// A Float argument that must be > 0 and finite.
    pub(super) fn positive(&mut self, args: &Args, name: &str, why: &str) -> Option<f64> {
        let (x, span) = args.float(name)?;
        if x <= 0.0 || !x.is_finite() {
            self.diags.push(
                Diag::error(
                    "mkedsl::range::positive",
                    format!("`{name}` must be > 0, not {x}"),
                    span,
                )
                .label("must be positive")
                .help(why.to_string()),
            );
            return None;
        }
        Some(x)
    }

    /// A Float argument in `[lo, hi]` (or `[lo, hi)` when `open_hi`).
    pub(super) fn within(
        &mut self,
        args: &Args,
        name: &str,
        lo: f64,
        hi: f64,
        open_hi: bool,
        why: &str,
    ) -> Option<f64> {
        let (x, span) = args.float(name)?;
        let ok = x >= lo && if open_hi { x < hi } else { x <= hi };
        if !ok {
            let bracket = if open_hi { ")" } else { "]" };
            self.diags.push(
                Diag::error(
                    "mkedsl::range::interval",
                    format!("`{name}` must lie in [{lo}, {hi}{bracket}, not {x}"),
                    span,
                )
                .label("out of range")
                .help(why.to_string()),
            );
            return None;
        }
        Some(x)
    }

    /// `value ≤ max` for a dimension known from the model (or an adapter).
    pub(super) fn not_above(
        &mut self,
        value: usize,
        max: Option<usize>,
        span: Span,
        what: &str,
        why: String,
    ) -> bool {
        match max {
            Some(max) if value > max => {
                self.diags.push(
                    Diag::error(
                        "mkedsl::dim::too_large",
                        format!("{what} {value} exceeds {max}"),
                        span,
                    )
                    .label(format!("at most {max}"))
                    .help(why),
                );
                false
            }
            _ => true,
        }
    }

    /// The node id of an argument of a node type (already type-checked by binding).
    pub(super) fn node_arg(&self, args: &Args, name: &str) -> Option<super::program::NodeId> {
        args.get(name)?.value.node()
    }
}
