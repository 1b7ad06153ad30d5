//! Stage 2: syntax tree → checked program.
//!
//! [`check`] loads the stdlib modules a recipe imports, checks every function definition, then
//! walks the recipe's statements in order: names are resolved (with "did you mean"), types and
//! value ranges are checked, functions are inlined, and — when a model's [`ModelDims`] are given —
//! layers are resolved and dimensions are compared. The result is a flat [`Program`] of nodes with
//! every argument resolved, or every error found.

mod args;
mod builtins;
mod checker;
mod definitions;
mod dims;
mod expr;
mod header;
mod inline;
mod members;
mod modules;
pub mod ops;
pub mod params;
pub mod program;
pub mod site;
mod stdlib;
mod training;
pub mod types;
mod value;

use std::collections::HashMap;

pub use ops::{Op, OpSpec};
pub use params::{BoundParam, Overrides};
pub use program::*;
pub use stdlib::Library;

use crate::diagnostics::{Diag, Diagnostics};
use crate::model::config::ModelDims;
use crate::source::{SourceMap, Span};
use crate::syntax::ast::{FnDef, Item, Module};
use checker::Checker;

/// Most diagnostics reported for one recipe; the rest are summarised.
const MAX_DIAGNOSTICS: usize = 40;

/// Checks a parsed recipe against the standard library and, optionally, a model's dimensions.
pub fn check(
    module: &Module,
    sources: &mut SourceMap,
    dims: Option<&ModelDims>,
) -> Result<Program, Diagnostics> {
    check_with(module, sources, dims, &Library::std())
}

/// [`check`] with another library of importable modules.
pub fn check_with(
    module: &Module,
    sources: &mut SourceMap,
    dims: Option<&ModelDims>,
    library: &Library,
) -> Result<Program, Diagnostics> {
    check_bound(module, sources, dims, library, &Overrides::default()).map(|(p, _)| p)
}

/// [`check_with`] with the recipe's parameters bound: `--set` values from `overrides`, the
/// declared literals otherwise ([`params`]). Returns the bound values beside the program.
pub fn check_bound(
    module: &Module,
    sources: &mut SourceMap,
    dims: Option<&ModelDims>,
    library: &Library,
    overrides: &Overrides,
) -> Result<(Program, Vec<BoundParam>), Diagnostics> {
    let mut diags: Vec<Diag> = Vec::new();
    let loaded = modules::load(module, sources, library, &mut diags);
    let broken = definitions::check_definitions(&loaded.fns, &mut diags);
    let bound = params::bind(module, overrides, sources, &loaded.fns, &mut diags);
    let module = &bound.module;
    let sources: &SourceMap = sources;

    let mut checker = Checker::new(sources, dims, &loaded.fns);
    checker.broken_fns = broken;
    // Parameters are names of the recipe's outermost scope: a `let` cannot take one.
    for item in &module.items {
        if let Item::Param(decl) = item {
            // Every use was replaced by the literal, so this binding is never read.
            let value = value::Value::Poison;
            if let Some(frame) = checker.frames.first_mut() {
                if !frame.iter().any(|(n, _)| *n == decl.name.name) {
                    frame.push((
                        decl.name.name.clone(),
                        checker::Binding {
                            value,
                            span: decl.name.span,
                        },
                    ));
                }
            }
        }
    }
    let headers: Vec<&crate::syntax::ast::Header> = module
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Header(h) => Some(h),
            _ => None,
        })
        .collect();
    let recipe = match headers.as_slice() {
        [] => {
            checker.diags.push(
                Diag::error(
                    "mkedsl::header::missing",
                    "this recipe has no `recipe` header",
                    Span::new(module.source, 0, 0),
                )
                .label("expected `recipe \"Name\" { ... }` here")
                .help("start the file with `recipe \"Name\" { paper: \"...\", mode: single }`"),
            );
            None
        }
        [first, rest @ ..] => {
            for extra in rest {
                checker.diags.push(
                    Diag::error(
                        "mkedsl::header::duplicate_header",
                        "a recipe has one `recipe` header",
                        extra.span,
                    )
                    .label("second header")
                    .note(first.span, "first header")
                    .help("remove one of them"),
                );
            }
            Some(checker.header(first))
        }
    };
    checker.check_root(module);
    let metrics = checker
        .metrics
        .take()
        .map(|(m, _)| m)
        .unwrap_or_else(|| Metric::ALL.to_vec());
    diags.extend(std::mem::take(&mut checker.diags));
    params::annotate(&mut diags, &bound.set_sources);
    if diags.len() > MAX_DIAGNOSTICS {
        let dropped = diags.len() - MAX_DIAGNOSTICS;
        diags.truncate(MAX_DIAGNOSTICS);
        diags.push(
            Diag::unplaced(
                "mkedsl::too_many_errors",
                format!("{dropped} more errors not shown"),
            )
            .help("fix the errors above first"),
        );
    }
    if let Some(errors) = Diagnostics::from_vec(diags) {
        return Err(errors);
    }
    let Some(recipe) = recipe else {
        return Err(Diag::unplaced("mkedsl::header::missing", "no recipe header").into());
    };
    let program = Program {
        recipe,
        source: sources.name(module.source).to_string(),
        model: dims.cloned(),
        nodes: checker.nodes,
        metrics,
        depths: checker.depths,
    };
    Ok((program, bound.params))
}

/// What a reserved name is, if it is one: a variable may not take it.
fn reserved(name: &str, fns: &HashMap<String, FnDef>) -> Option<&'static str> {
    if builtins::find(name).is_some() {
        Some("a builtin function")
    } else if builtins::is_builtin_value(name) {
        Some("a builtin value")
    } else if fns.contains_key(name) {
        Some("a function")
    } else if builtins::is_symbol(name) {
        Some("a symbol that some parameter accepts")
    } else {
        None
    }
}

/// Every builtin's signature (`name(param: Type = default, ...) -> Type`) and one-line summary,
/// for the reference and its test.
pub fn builtin_signatures() -> Vec<(String, &'static str)> {
    builtins::all()
        .map(|b| (b.signature(), b.summary))
        .collect()
}
