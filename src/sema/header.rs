//! The recipe header (`recipe "Name" { ... }`) and the `evaluate` statement.

use super::checker::Checker;
use super::program::{Metric, Mode, Recipe};
use super::value::Value;
use crate::diagnostics::{did_you_mean, Diag};
use crate::syntax::ast::{Expr, Header};

const HEADER_KEYS: &[&str] = &["paper", "mode", "seed", "sequential_k"];
pub(super) const MODES: &[&str] = &["single", "sequential"];
pub(super) const METRICS: &[&str] = <Metric as strum::VariantNames>::VARIANTS;

/// The recipe name with terminal control characters (ESC, BEL, carriage return, …) written as
/// escapes: the name is echoed in tables, progress lines and JSON reports, and raw control
/// bytes would let a recipe file rewrite the user's terminal.
fn printable(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl Checker<'_> {
    pub(super) fn header(&mut self, header: &Header) -> Recipe {
        let mut recipe = Recipe {
            name: printable(&header.name),
            paper: None,
            mode: Mode::Single,
            seed: 0,
        };
        if header.name.trim().is_empty() {
            self.diags.push(
                Diag::error(
                    "mkedsl::header::name",
                    "the recipe name is empty",
                    header.name_span,
                )
                .label("empty name")
                .help("name the recipe, e.g. `recipe \"ELoRA\" { ... }`"),
            );
        }
        let mut seen: Vec<(&str, crate::source::Span)> = Vec::new();
        let mut sequential = false;
        let mut k: Option<(usize, crate::source::Span)> = None;
        for field in &header.fields {
            let key = field.key.name.as_str();
            if let Some((_, first)) = seen.iter().find(|(k, _)| *k == key) {
                let first = *first;
                self.diags.push(
                    Diag::error(
                        "mkedsl::header::duplicate",
                        format!("header key `{key}` is given twice"),
                        field.key.span,
                    )
                    .label("again here")
                    .note(first, "first given here")
                    .help("give each header key once"),
                );
                continue;
            }
            seen.push((key, field.key.span));
            // Bare names are symbols here, so `paper: elora` is a type error with a clear help.
            let value = self.eval_with(&field.value, Some(if key == "mode" { MODES } else { &[] }));
            let span = field.value.span;
            match (key, value) {
                (_, Value::Poison) => {}
                ("paper", Value::Str(s)) => recipe.paper = Some(s),
                ("mode", Value::Symbol(s)) if MODES.contains(&s.as_str()) => {
                    sequential = s == "sequential"
                }
                ("mode", Value::Symbol(s)) => {
                    let diag =
                        Diag::error("mkedsl::header::mode", format!("unknown mode `{s}`"), span)
                            .label("expected `single` or `sequential`");
                    self.diags.push(match did_you_mean(&s, MODES.iter().copied()) {
                        Some(best) => diag.help(format!("did you mean `{best}`?")),
                        None => diag.help("`single` restores the model after every edit; `sequential` accumulates edits"),
                    });
                }
                ("seed", Value::Int(n)) if n >= 0 => recipe.seed = n as u64,
                ("sequential_k", Value::Int(n)) if n >= 1 => k = Some((n as usize, span)),
                ("seed" | "sequential_k", Value::Int(n)) => {
                    let min = if key == "seed" { 0 } else { 1 };
                    self.diags.push(
                        Diag::error(
                            "mkedsl::range::header",
                            format!("`{key}` must be ≥ {min}, not {n}"),
                            span,
                        )
                        .label("out of range")
                        .help(if key == "seed" {
                            "seeds are non-negative integers"
                        } else {
                            "a sequence holds at least one edit (UniKE uses 10 and 20)"
                        }),
                    );
                }
                ("paper" | "mode" | "seed" | "sequential_k", other) => {
                    let expected = match key {
                        "paper" => "a string",
                        "mode" => "`single` or `sequential`",
                        _ => "an Int",
                    };
                    let ty = other.ty();
                    let help = match (&other, key) {
                        (Value::Symbol(s), "paper") => {
                            format!("write it in quotes: `paper: \"{s}\"`")
                        }
                        _ => "e.g. recipe \"ELoRA\" { paper: \"elora\", mode: single, seed: 0 }"
                            .to_string(),
                    };
                    self.diags.push(
                        Diag::error(
                            "mkedsl::header::type",
                            format!("`{key}` takes {expected}, not {}", ty.a()),
                            span,
                        )
                        .label(format!("this is {}", ty.a()))
                        .help(help),
                    );
                }
                (_, _) => {
                    let diag = Diag::error(
                        "mkedsl::header::unknown_key",
                        format!("unknown header key `{key}`"),
                        field.key.span,
                    )
                    .label("not a header key");
                    self.diags
                        .push(match did_you_mean(key, HEADER_KEYS.iter().copied()) {
                            Some(best) => diag.help(format!("did you mean `{best}`?")),
                            None => {
                                diag.help(format!("header keys are {}", HEADER_KEYS.join(", ")))
                            }
                        });
                }
            }
        }
        match (sequential, k) {
            (true, Some((k, _))) => recipe.mode = Mode::Sequential { k },
            (true, None) => self.diags.push(
                Diag::error(
                    "mkedsl::header::sequential_k",
                    "sequential mode needs `sequential_k`",
                    header.span,
                )
                .label("how many edits per sequence?")
                .help("add `sequential_k: 10` (UniKE evaluates sequences of 10 and 20 edits)"),
            ),
            (false, Some((_, span))) => self.diags.push(
                Diag::error(
                    "mkedsl::header::sequential_k",
                    "`sequential_k` only takes effect in sequential mode",
                    span,
                )
                .label("ignored in single mode")
                .help("add `mode: sequential`, or remove `sequential_k`"),
            ),
            (false, None) => {}
        }
        recipe
    }

    /// `evaluate [rel, t_gen, ...]`.
    pub(super) fn metric_list(&mut self, expr: &Expr) -> Vec<Metric> {
        let value = self.eval_with(expr, Some(METRICS));
        let items = match value {
            Value::List(items) => items,
            Value::Poison => return Metric::ALL.to_vec(),
            other => {
                let ty = other.ty();
                self.diags.push(
                    Diag::error(
                        "mkedsl::evaluate::list",
                        format!("`evaluate` takes a list of metrics, not {ty}"),
                        expr.span,
                    )
                    .label(format!("this is {ty}"))
                    .help("write `evaluate [rel, t_gen, m_gen, t_loc, m_loc]`"),
                );
                return Metric::ALL.to_vec();
            }
        };
        let spans: Vec<crate::source::Span> = match &expr.kind {
            crate::syntax::ast::ExprKind::List(es) => es.iter().map(|e| e.span).collect(),
            _ => Vec::new(),
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let span = spans.get(i).copied().unwrap_or(expr.span);
            let metric = match item {
                Value::Symbol(s) => s.parse::<Metric>().ok(),
                _ => None,
            };
            match (metric, item) {
                (Some(m), _) if out.contains(&m) => self.diags.push(
                    Diag::error(
                        "mkedsl::evaluate::duplicate",
                        format!("metric `{}` is listed twice", m.name()),
                        span,
                    )
                    .label("again here")
                    .help("list each metric once"),
                ),
                (Some(m), _) => out.push(m),
                (None, Value::Symbol(s)) => {
                    let diag = Diag::error(
                        "mkedsl::evaluate::unknown",
                        format!("unknown metric `{s}`"),
                        span,
                    )
                    .label("not a metric");
                    self.diags
                        .push(match did_you_mean(s, METRICS.iter().copied()) {
                            Some(best) => diag.help(format!("did you mean `{best}`?")),
                            None => diag.help(format!("metrics are {}", METRICS.join(", "))),
                        });
                }
                (None, other) => {
                    let ty = other.ty();
                    self.diags.push(
                        Diag::error(
                            "mkedsl::evaluate::list",
                            format!("a metric is a name, not {ty}"),
                            span,
                        )
                        .label(format!("this is {ty}"))
                        .help(format!("metrics are {}", METRICS.join(", "))),
                    );
                }
            }
        }
        if out.is_empty() && items.is_empty() {
            self.diags.push(
                Diag::error(
                    "mkedsl::evaluate::empty",
                    "`evaluate` lists no metric",
                    expr.span,
                )
                .label("empty list")
                .help("write `evaluate [rel, t_gen, m_gen, t_loc, m_loc]`"),
            );
        }
        out
    }
}
