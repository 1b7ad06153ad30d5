//! Recipe parameters: `param lr = 1.5e-3` and the command line's `--set lr=3e-3`.
//!
//! A parameter is a named literal. Binding happens on the syntax tree, before the checker runs:
//! every use of the name in the recipe's statements and header is replaced by the literal (the
//! `--set` value, else the declared one), with that literal's own span. The checker therefore
//! reads a parameter exactly where a literal would stand, and every check of that place — type,
//! range, dimensions — applies unchanged; a diagnostic about a `--set` value points into the
//! `--set` text, and [`annotate`] adds a note at the declaration.
//!
//! What is checked here is what only a parameter has: a declaration holds a literal, names are
//! unique and used, a `--set` names a declared parameter (with "did you mean") and keeps the
//! default's type.

use std::collections::HashMap;

use serde::Serialize;

use super::builtins;
use crate::diagnostics::{did_you_mean, Diag, Note};
use crate::source::{SourceMap, Span};
use crate::syntax::ast::{
    Block, Expr, ExprKind, FnDef, Header, Item, Module, ParamDecl, SetArg, Stmt,
};

/// The name of the source that holds one `--set NAME=VALUE` (its text is `NAME=VALUE`).
pub const SET_SOURCE: &str = "--set";

/// The `--set NAME=VALUE` texts of one command, in the order given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Overrides(pub Vec<String>);

impl Overrides {
    pub fn new(sets: Vec<String>) -> Self {
        Self(sets)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `--set a=1 --set b=x`, for messages and provenance.
    pub fn describe(&self) -> String {
        self.0
            .iter()
            .map(|s| format!("--set {s}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A parameter as bound for one compilation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoundParam {
    pub name: String,
    /// The value as written (the `--set` text, else the declaration's literal).
    pub value: String,
    /// The declared default, as written.
    pub default: String,
    /// Whether `--set` gave the value.
    pub set: bool,
}

/// The kind of literal a parameter holds; a `--set` must keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Float,
    Str,
    Bool,
    Symbol,
}

impl Kind {
    /// The kind of a literal; `None` for anything computed. A bare name is a symbol unless it
    /// names a builtin or function; whether the place that reads it accepts that symbol is that
    /// place's check (with its "did you mean").
    fn of(expr: &Expr, fns: &HashMap<String, FnDef>) -> Option<Kind> {
        match &expr.kind {
            ExprKind::Int(_) => Some(Kind::Int),
            ExprKind::Float(_) => Some(Kind::Float),
            ExprKind::Neg(inner) => match Kind::of(inner, fns) {
                Some(k @ (Kind::Int | Kind::Float)) => Some(k),
                _ => None,
            },
            ExprKind::Str(_) => Some(Kind::Str),
            ExprKind::Bool(_) => Some(Kind::Bool),
            ExprKind::Ident(name)
                if builtins::is_symbol(name) || super::reserved(name, fns).is_none() =>
            {
                Some(Kind::Symbol)
            }
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Int => "an Int",
            Kind::Float => "a Float",
            Kind::Str => "a string",
            Kind::Bool => "a Bool",
            Kind::Symbol => "a name",
        }
    }

    /// Whether a value of kind `self` may replace a default of kind `default`.
    fn fits(self, default: Kind) -> bool {
        self == default || (self == Kind::Int && default == Kind::Float)
    }
}

/// A declared parameter and the literal bound to it.
struct Binding {
    decl: ParamDecl,
    kind: Option<Kind>,
    value: Expr,
    set: Option<String>,
    /// Where the recipe names the parameter (before the literal replaced it).
    uses: Vec<Span>,
}

/// A `--set` that replaced a parameter, for [`annotate`].
pub(super) struct SetOrigin {
    /// The `--set` value.
    value: Span,
    text: String,
    name: String,
    decl: Span,
    uses: Vec<Span>,
}

/// The recipe with every parameter replaced by its literal, and the bound values.
pub(super) struct Bound {
    pub module: Module,
    pub params: Vec<BoundParam>,
    /// Each `--set` that replaced a parameter.
    pub set_sources: Vec<SetOrigin>,
}

/// Binds the parameters of `module`, applying `overrides`; diagnostics go to `diags`.
pub(super) fn bind(
    module: &Module,
    overrides: &Overrides,
    sources: &mut SourceMap,
    fns: &HashMap<String, FnDef>,
    diags: &mut Vec<Diag>,
) -> Bound {
    let mut bindings: Vec<Binding> = Vec::new();
    for item in &module.items {
        let Item::Param(decl) = item else { continue };
        if let Some(first) = bindings.iter().find(|b| b.decl.name.name == decl.name.name) {
            diags.push(
                Diag::error(
                    "mkedsl::param::duplicate",
                    format!("parameter `{}` is declared twice", decl.name.name),
                    decl.name.span,
                )
                .label("declared again here")
                .note(first.decl.name.span, "first declared here")
                .help("give each parameter one declaration"),
            );
            continue;
        }
        if let Some(what) = super::reserved(&decl.name.name, fns) {
            diags.push(
                Diag::error(
                    "mkedsl::name::reserved",
                    format!("`{}` is {what}", decl.name.name),
                    decl.name.span,
                )
                .label("cannot be used as a parameter name")
                .help("choose another name"),
            );
            continue;
        }
        let kind = Kind::of(&decl.value, fns);
        if kind.is_none() {
            diags.push(
                Diag::error(
                    "mkedsl::param::not_literal",
                    format!("the value of parameter `{}` is not a literal", decl.name.name),
                    decl.value.span,
                )
                .label("a computed value")
                .help("a parameter holds a number, a string, `true`/`false` or a symbol such as `kaiming`; compute with `let` from it"),
            );
        }
        bindings.push(Binding {
            decl: decl.clone(),
            kind,
            value: decl.value.clone(),
            set: None,
            uses: Vec::new(),
        });
    }

    let mut set_sources = Vec::new();
    let mut seen: Vec<(String, Span)> = Vec::new();
    for text in &overrides.0 {
        let id = sources.add(SET_SOURCE, text.as_str(), false);
        if let Some((name, value)) = text.split_once('=') {
            if value.trim().is_empty() {
                let span = Span::new(id, 0, text.len());
                diags.push(
                    Diag::error(
                        "mkedsl::set::empty",
                        format!("`--set {text}` gives no value"),
                        span,
                    )
                    .label("nothing after `=`")
                    .help(format!(
                        "write the value after `=`: `--set {}=VALUE`",
                        name.trim()
                    )),
                );
                continue;
            }
        }
        let set = match crate::syntax::parse_set(sources, id) {
            Ok(set) => set,
            Err(errors) => {
                diags.extend(
                    errors
                        .into_vec()
                        .into_iter()
                        .map(|d| d.push_help("write `--set NAME=VALUE`, e.g. `--set lr=3e-3`")),
                );
                continue;
            }
        };
        if let Some((_, first)) = seen.iter().find(|(n, _)| *n == set.name.name) {
            diags.push(
                Diag::error(
                    "mkedsl::set::duplicate",
                    format!("`--set {}` is given twice", set.name.name),
                    set.name.span,
                )
                .label("set again here")
                .note(*first, "first set here")
                .help("give each parameter one value per run; `mkedsl sweep` runs several"),
            );
            continue;
        }
        seen.push((set.name.name.clone(), set.name.span));
        bind_one(
            &mut bindings,
            set,
            text,
            sources,
            fns,
            diags,
            &mut set_sources,
        );
    }

    let mut module = module.clone();
    let by_name: HashMap<String, usize> = bindings
        .iter()
        .enumerate()
        .map(|(i, b)| (b.decl.name.name.clone(), i))
        .collect();
    for item in &mut module.items {
        match item {
            Item::Header(h) => substitute_header(h, &by_name, &mut bindings),
            Item::Stmt(s) => substitute_stmt(s, &by_name, &mut bindings),
            Item::Param(_) | Item::Use(_) | Item::Fn(_) => {}
        }
    }
    for origin in &mut set_sources {
        if let Some(b) = bindings.iter().find(|b| b.decl.name.name == origin.name) {
            origin.uses = b.uses.clone();
        }
    }
    for b in &bindings {
        if b.uses.is_empty() {
            diags.push(
                Diag::error(
                    "mkedsl::param::unused",
                    format!("parameter `{}` is never used", b.decl.name.name),
                    b.decl.name.span,
                )
                .label("declared but not used")
                .help("use it in the recipe, or remove the declaration (a `--set` of it would change nothing)"),
            );
        }
    }
    let params = bindings
        .iter()
        .map(|b| BoundParam {
            name: b.decl.name.name.clone(),
            value: sources.slice(b.value.span).to_string(),
            default: sources.slice(b.decl.value.span).to_string(),
            set: b.set.is_some(),
        })
        .collect();
    Bound {
        module,
        params,
        set_sources,
    }
}

/// Applies one parsed `--set` to its parameter.
fn bind_one(
    bindings: &mut [Binding],
    set: SetArg,
    text: &str,
    sources: &SourceMap,
    fns: &HashMap<String, FnDef>,
    diags: &mut Vec<Diag>,
    set_sources: &mut Vec<SetOrigin>,
) {
    let Some(b) = bindings
        .iter_mut()
        .find(|b| b.decl.name.name == set.name.name)
    else {
        let names: Vec<String> = bindings.iter().map(|b| b.decl.name.name.clone()).collect();
        let diag = Diag::error(
            "mkedsl::set::unknown",
            format!("the recipe has no parameter `{}`", set.name.name),
            set.name.span,
        )
        .label("not a parameter of this recipe");
        diags.push(
            match did_you_mean(&set.name.name, names.iter().map(String::as_str)) {
                Some(best) => diag.help(format!("did you mean `{best}`?")),
                None if names.is_empty() => diag.help(
                    "this recipe declares no parameter; declare one with `param NAME = VALUE`",
                ),
                None => diag.help(format!("its parameters are {}", names.join(", "))),
            },
        );
        return;
    };
    let found = Kind::of(&set.value, fns);
    match (found, b.kind) {
        (None, _) => diags.push(
            Diag::error(
                "mkedsl::set::not_literal",
                format!("`--set {text}` is not a literal"),
                set.value.span,
            )
            .label("a computed value")
            .note(b.decl.span, "the parameter is declared here")
            .help("give a number, a quoted string, `true`/`false` or a symbol"),
        ),
        (Some(found), Some(want)) if !found.fits(want) => diags.push(
            Diag::error(
                "mkedsl::set::type",
                format!(
                    "`--set {text}` gives {}; `{}` is {}",
                    found.name(),
                    set.name.name,
                    want.name()
                ),
                set.value.span,
            )
            .label(format!("this is {}", found.name()))
            .note(
                b.decl.value.span,
                format!(
                    "declared {} by its default `{}`",
                    want.name(),
                    sources.slice(b.decl.value.span)
                ),
            )
            .help(format!(
                "give {} like the default, e.g. `--set {}={}`",
                want.name(),
                set.name.name,
                sources.slice(b.decl.value.span)
            )),
        ),
        _ => {
            set_sources.push(SetOrigin {
                value: set.value.span,
                text: text.to_string(),
                name: b.decl.name.name.clone(),
                decl: b.decl.span,
                uses: Vec::new(),
            });
            b.value = set.value;
            b.set = Some(text.to_string());
        }
    }
}

/// Adds, to every diagnostic about a `--set` value, a note at the parameter's declaration; and
/// to a diagnostic raised inside a function (the value is checked where the function reads it),
/// when the call it notes passes a `--set` parameter, a note at that `--set`.
pub(super) fn annotate(diags: &mut [Diag], set_sources: &[SetOrigin]) {
    let covers = |outer: Span, inner: Span| {
        outer.source == inner.source && outer.start <= inner.start && inner.end <= outer.end
    };
    for diag in diags {
        let Some(span) = diag.span else { continue };
        let mut notes = Vec::new();
        for origin in set_sources {
            if span.source == origin.value.source {
                notes.push(Note {
                    span: origin.decl,
                    label: format!("the value of `param {}`, declared here", origin.name),
                });
            } else if origin
                .uses
                .iter()
                .any(|&u| covers(span, u) || diag.notes.iter().any(|n| covers(n.span, u)))
            {
                notes.push(Note {
                    span: origin.value,
                    label: format!("`{}` comes from `--set {}`", origin.name, origin.text),
                });
            }
        }
        for note in notes {
            if !diag.notes.iter().any(|n| n.span == note.span) {
                diag.notes.push(note);
            }
        }
    }
}

fn substitute_header(h: &mut Header, by_name: &HashMap<String, usize>, b: &mut [Binding]) {
    for field in &mut h.fields {
        substitute(&mut field.value, by_name, b);
    }
}

fn substitute_block(block: &mut Block, by_name: &HashMap<String, usize>, b: &mut [Binding]) {
    for s in &mut block.stmts {
        substitute_stmt(s, by_name, b);
    }
}

fn substitute_stmt(stmt: &mut Stmt, by_name: &HashMap<String, usize>, b: &mut [Binding]) {
    for e in stmt.kind.exprs_mut() {
        substitute(e, by_name, b);
    }
    if let Some(block) = stmt.kind.block_mut() {
        substitute_block(block, by_name, b);
    }
}

/// Replaces every identifier that names a parameter by the parameter's literal. Iterative, like
/// [`Expr::walk`], so a long operator chain cannot exhaust the stack.
fn substitute(expr: &mut Expr, by_name: &HashMap<String, usize>, b: &mut [Binding]) {
    let mut todo: Vec<&mut Expr> = vec![expr];
    while let Some(e) = todo.pop() {
        if let ExprKind::Ident(name) = &e.kind {
            if let Some(binding) = by_name.get(name).and_then(|&i| b.get_mut(i)) {
                binding.uses.push(e.span);
                *e = binding.value.clone();
            }
            continue;
        }
        match &mut e.kind {
            ExprKind::Call { args, .. } => todo.extend(args.iter_mut().map(|a| &mut a.value)),
            ExprKind::List(items) => todo.extend(items.iter_mut()),
            ExprKind::Member { base, .. } | ExprKind::Neg(base) => todo.push(base),
            ExprKind::Binary { lhs, rhs, .. } => {
                todo.push(lhs);
                todo.push(rhs);
            }
            _ => {}
        }
    }
}
