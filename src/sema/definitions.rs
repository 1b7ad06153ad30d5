//! Checks every function definition once, whether or not it is called: parameter and return
//! types exist, no name is used before it is defined, and no statement is out of place.
//!
//! A function body's types are checked where it is inlined (with real arguments); this pass
//! catches what does not depend on arguments, and marks broken functions so calls to them are not
//! expanded into a second copy of the same errors.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::builtins;
use super::types::{type_names, Ty};
use crate::diagnostics::{did_you_mean, Diag};
use crate::source::Span;
use crate::syntax::ast::{Expr, ExprKind, FnDef, Stmt, StmtKind};

/// A diagnostic for an unknown type name.
pub(super) fn unknown_type(bad: &str, span: Span) -> Diag {
    let diag = Diag::error(
        "mkedsl::type::unknown",
        format!("unknown type `{bad}`"),
        span,
    )
    .label("not a type");
    match did_you_mean(bad.trim_end_matches("<…>"), type_names()) {
        Some(best) if best != "List" || bad != "List" => {
            diag.help(format!("did you mean `{best}`?"))
        }
        _ if bad == "List" => diag.help("write the element type: `List<Stream>`"),
        _ => diag.help(format!(
            "types are {}",
            type_names().collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Checks all definitions; returns the names of functions that have errors.
pub(super) fn check_definitions(
    fns: &HashMap<String, FnDef>,
    diags: &mut Vec<Diag>,
) -> HashSet<String> {
    let mut broken = HashSet::new();
    let sorted: BTreeMap<&String, &FnDef> = fns.iter().collect();
    for (name, def) in sorted {
        let before = diags.len();
        let mut scope: Vec<Vec<String>> = vec![Vec::new()];
        for p in &def.params {
            if let Err(bad) = Ty::from_expr(&p.ty) {
                diags.push(unknown_type(&bad, p.ty.span));
            }
            if let Some(what) = super::reserved(&p.name.name, fns) {
                diags.push(
                    Diag::error(
                        "mkedsl::name::reserved",
                        format!("`{}` is {what}", p.name.name),
                        p.name.span,
                    )
                    .label("cannot be used as a parameter name")
                    .help("choose another name"),
                );
            }
            if scope
                .first()
                .map(|f| f.contains(&p.name.name))
                .unwrap_or(false)
            {
                diags.push(
                    Diag::error(
                        "mkedsl::fn::duplicate_param",
                        format!("parameter `{}` appears twice", p.name.name),
                        p.name.span,
                    )
                    .label("duplicate parameter")
                    .help("give each parameter its own name"),
                );
            }
            if let Some(default) = &p.default {
                // Defaults see no parameters.
                check_expr(default, &[Vec::new()], fns, diags);
            }
            if let Some(frame) = scope.first_mut() {
                frame.push(p.name.name.clone());
            }
        }
        if let Some(ret) = &def.ret {
            if let Err(bad) = Ty::from_expr(ret) {
                diags.push(unknown_type(&bad, ret.span));
            }
        }
        check_stmts(&def.body.stmts, &mut scope, fns, diags);
        if diags.len() > before {
            broken.insert(name.clone());
        }
    }
    broken
}

fn check_stmts(
    stmts: &[Stmt],
    scope: &mut Vec<Vec<String>>,
    fns: &HashMap<String, FnDef>,
    diags: &mut Vec<Diag>,
) {
    for stmt in stmts {
        match &stmt.kind {
            StmtKind::Let { name, ty, value } => {
                check_expr(value, scope, fns, diags);
                if let Some(Err(bad)) = ty.as_ref().map(Ty::from_expr) {
                    diags.push(unknown_type(
                        &bad,
                        ty.as_ref().map(|t| t.span).unwrap_or(name.span),
                    ));
                }
                if let Some(what) = super::reserved(&name.name, fns) {
                    diags.push(
                        Diag::error(
                            "mkedsl::name::reserved",
                            format!("`{}` is {what}", name.name),
                            name.span,
                        )
                        .label("cannot be used as a variable name")
                        .help("choose another name"),
                    );
                }
                if let Some(frame) = scope.last_mut() {
                    frame.push(name.name.clone());
                }
            }
            StmtKind::PerEdit(_) => diags.push(
                Diag::error(
                    "mkedsl::block::per_edit_in_fn",
                    "a function cannot contain `per edit`",
                    stmt.span,
                )
                .label("per-edit block inside a function")
                .help("write `per edit` in the recipe and call the function inside it"),
            ),
            StmtKind::Evaluate(_) => diags.push(
                Diag::error(
                    "mkedsl::block::evaluate_place",
                    "`evaluate` belongs at the top level of a recipe",
                    stmt.span,
                )
                .label("inside a function")
                .help("write `evaluate [...]` once, at the end of the recipe"),
            ),
            other => {
                other
                    .exprs()
                    .into_iter()
                    .for_each(|e| check_expr(e, scope, fns, diags));
                if let Some(body) = other.block() {
                    scope.push(Vec::new());
                    check_stmts(&body.stmts, scope, fns, diags);
                    scope.pop();
                }
            }
        }
    }
}

/// Every identifier must be defined before use; every call must name a function or builtin.
fn check_expr(
    expr: &Expr,
    scope: &[Vec<String>],
    fns: &HashMap<String, FnDef>,
    diags: &mut Vec<Diag>,
) {
    for e in expr.walk() {
        match &e.kind {
            ExprKind::Ident(name) => {
                let known = scope.iter().any(|f| f.contains(name))
                    || builtins::is_builtin_value(name)
                    || builtins::is_symbol(name)
                    || fns.contains_key(name)
                    || builtins::find(name).is_some();
                if !known {
                    let mut candidates: Vec<&str> =
                        scope.iter().flatten().map(String::as_str).collect();
                    candidates.extend(fns.keys().map(String::as_str));
                    for n in builtins::names() {
                        candidates.push(n);
                    }
                    let diag = Diag::error(
                        "mkedsl::name::unknown",
                        format!("unknown name `{name}`"),
                        e.span,
                    )
                    .label("not defined");
                    diags.push(match did_you_mean(name, candidates) {
                        Some(best) => diag.help(format!("did you mean `{best}`?")),
                        None => diag.help("a function sees only its parameters, its own `let`s, functions and builtins"),
                    });
                }
            }
            ExprKind::Call { callee, .. }
                if !fns.contains_key(&callee.name) && builtins::find(&callee.name).is_none() =>
            {
                let mut candidates: Vec<&str> = fns.keys().map(String::as_str).collect();
                for n in builtins::names() {
                    candidates.push(n);
                }
                let diag = Diag::error(
                    "mkedsl::name::unknown_fn",
                    format!("unknown function `{}`", callee.name),
                    callee.span,
                )
                .label("no builtin or function has this name");
                diags.push(match did_you_mean(&callee.name, candidates) {
                    Some(best) => diag.help(format!("did you mean `{best}`?")),
                    None => diag.help("see grammar/REFERENCE.md for the builtins"),
                });
            }
            _ => {}
        }
    }
}
