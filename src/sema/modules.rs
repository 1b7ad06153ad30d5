//! Loading: a recipe, the stdlib modules it `use`s (transitively), and one table of functions.
//!
//! Functions are inlined at every call, so a function that calls itself (directly or through
//! others) could never be expanded; cycles are reported here, before any call is checked.

use std::collections::{BTreeMap, HashMap};

use super::builtins;
use super::stdlib::Library;
use crate::diagnostics::{did_you_mean, Diag};
use crate::source::{SourceMap, Span};
use crate::syntax::ast::{Expr, ExprKind, FnDef, Item, Module, Stmt};
use crate::syntax::parse;

/// The recipe and everything it imports.
pub struct Loaded {
    /// Stdlib modules in load order, with their `std.` names.
    pub modules: Vec<(String, Module)>,
    /// Every function visible to the recipe, by name.
    pub fns: HashMap<String, FnDef>,
}

/// Loads the modules `root` imports from `library` and collects all functions.
pub fn load(
    root: &Module,
    sources: &mut SourceMap,
    library: &Library,
    diags: &mut Vec<Diag>,
) -> Loaded {
    let mut loaded = Loaded {
        modules: Vec::new(),
        fns: HashMap::new(),
    };
    let mut pending: Vec<(Vec<String>, Span)> = uses(root);
    pending.reverse();
    while let Some((path, span)) = pending.pop() {
        let Some(name) = module_name(&path, span, library, diags) else {
            continue;
        };
        if loaded.modules.iter().any(|(n, _)| n == &name) {
            continue;
        }
        let Some(text) = library.get(&name) else {
            continue;
        };
        let id = sources.add(format!("stdlib/{name}.edit"), text.to_string(), true);
        match parse(sources, id) {
            Ok(module) => {
                check_module_items(&module, diags);
                let mut more = uses(&module);
                more.reverse();
                pending.extend(more);
                loaded.modules.push((name, module));
            }
            Err(errors) => diags.extend(errors.into_vec()),
        }
    }
    let mut all: Vec<&Module> = vec![root];
    all.extend(loaded.modules.iter().map(|(_, m)| m));
    let mut defined_at: HashMap<String, Span> = HashMap::new();
    for module in all {
        for item in &module.items {
            let Item::Fn(def) = item else { continue };
            let name = &def.name.name;
            if builtins::find(name).is_some() || builtins::is_builtin_value(name) {
                diags.push(
                    Diag::error(
                        "mkedsl::name::shadows_builtin",
                        format!("function `{name}` has the name of a builtin"),
                        def.name.span,
                    )
                    .label("builtin name")
                    .help("choose another name; builtins cannot be redefined"),
                );
                continue;
            }
            if let Some(first) = defined_at.get(name) {
                diags.push(
                    Diag::error(
                        "mkedsl::name::duplicate_fn",
                        format!("function `{name}` is defined twice"),
                        def.name.span,
                    )
                    .label("second definition")
                    .note(*first, "first definition")
                    .help("rename one of them"),
                );
                continue;
            }
            defined_at.insert(name.clone(), def.name.span);
            loaded.fns.insert(name.clone(), def.clone());
        }
    }
    report_cycles(&loaded.fns, diags);
    loaded
}

fn uses(module: &Module) -> Vec<(Vec<String>, Span)> {
    module
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Use(u) => Some((u.path.iter().map(|p| p.name.clone()).collect(), u.span)),
            _ => None,
        })
        .collect()
}

/// `std.NAME` → `NAME`, if the library has it.
fn module_name(
    path: &[String],
    span: Span,
    library: &Library,
    diags: &mut Vec<Diag>,
) -> Option<String> {
    let shown = path.join(".");
    match path {
        [ns, name] if ns == "std" => {
            if library.get(name).is_some() {
                return Some(name.clone());
            }
            let mut diag = Diag::error(
                "mkedsl::name::unknown_module",
                format!("unknown module `{shown}`"),
                span,
            )
            .label("not in the standard library");
            diag = match did_you_mean(name, library.names()) {
                Some(best) => diag.help(format!("did you mean `std.{best}`?")),
                None => diag.help(format!(
                    "the standard library has {}",
                    library
                        .names()
                        .map(|n| format!("`std.{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            };
            diags.push(diag);
            None
        }
        _ => {
            diags.push(
                Diag::error(
                    "mkedsl::name::unknown_module",
                    format!("unknown module `{shown}`"),
                    span,
                )
                .label("modules are named `std.NAME`")
                .help("only standard-library modules can be imported: `use std.lora`"),
            );
            None
        }
    }
}

/// A stdlib module defines functions and imports other modules; nothing else.
fn check_module_items(module: &Module, diags: &mut Vec<Diag>) {
    for item in &module.items {
        match item {
            Item::Header(h) => diags.push(
                Diag::error(
                    "mkedsl::module::header",
                    "a stdlib module cannot have a recipe header",
                    h.span,
                )
                .label("recipe header in a module")
                .help("only the recipe file that is run has a `recipe` header"),
            ),
            Item::Stmt(s) => diags.push(
                Diag::error(
                    "mkedsl::module::statement",
                    "a stdlib module only defines functions",
                    s.span,
                )
                .label("statement at the top of a module")
                .help("wrap it in a `fn` and call that from the recipe"),
            ),
            Item::Param(d) => diags.push(
                Diag::error(
                    "mkedsl::module::param",
                    "a stdlib module cannot declare a `param`",
                    d.span,
                )
                .label("parameter in a module")
                .help(
                    "declare it in the recipe and pass it to the module's function as an argument",
                ),
            ),
            Item::Use(_) | Item::Fn(_) => {}
        }
    }
}

/// Reports each call cycle once, at the call that closes it.
fn report_cycles(fns: &HashMap<String, FnDef>, diags: &mut Vec<Diag>) {
    let sorted: BTreeMap<&String, &FnDef> = fns.iter().collect();
    let mut edges: BTreeMap<&str, Vec<(String, Span)>> = BTreeMap::new();
    for (name, def) in &sorted {
        let mut calls = Vec::new();
        for stmt in &def.body.stmts {
            stmt_calls(stmt, &mut calls);
        }
        calls.retain(|(callee, _)| fns.contains_key(callee));
        edges.insert(name.as_str(), calls);
    }
    // 0 = unvisited, 1 = on the stack, 2 = done.
    let mut state: HashMap<&str, u8> = HashMap::new();
    let mut reported: Vec<Vec<String>> = Vec::new();
    for start in edges.keys() {
        let mut stack: Vec<(&str, usize)> = vec![(start, 0)];
        let mut path: Vec<&str> = Vec::new();
        while let Some((node, next)) = stack.pop() {
            if next == 0 {
                if state.get(node).copied().unwrap_or(0) != 0 {
                    continue;
                }
                state.insert(node, 1);
                path.push(node);
            }
            let out = edges.get(node).map(Vec::as_slice).unwrap_or(&[]);
            if let Some((callee, span)) = out.get(next) {
                stack.push((node, next + 1));
                match state.get(callee.as_str()).copied().unwrap_or(0) {
                    0 => {
                        if let Some((key, _)) = edges.get_key_value(callee.as_str()) {
                            stack.push((key, 0));
                        }
                    }
                    1 => {
                        let from = path.iter().position(|p| *p == callee).unwrap_or(0);
                        let mut cycle: Vec<String> = path
                            .get(from..)
                            .unwrap_or(&[])
                            .iter()
                            .map(|s| s.to_string())
                            .collect();
                        let mut key = cycle.clone();
                        key.sort();
                        if !reported.contains(&key) {
                            reported.push(key);
                            cycle.push(callee.clone());
                            diags.push(
                                Diag::error(
                                    "mkedsl::fn::recursion",
                                    format!("recursive function: {}", cycle.join(" → ")),
                                    *span,
                                )
                                .label("this call closes the cycle")
                                .help("functions are inlined where they are called, so they cannot call themselves"),
                            );
                        }
                    }
                    _ => {}
                }
            } else {
                state.insert(node, 2);
                path.pop();
            }
        }
    }
}

fn stmt_calls(stmt: &Stmt, out: &mut Vec<(String, Span)>) {
    stmt.kind
        .exprs()
        .into_iter()
        .for_each(|e| expr_calls(e, out));
    if let Some(block) = stmt.kind.block() {
        block.stmts.iter().for_each(|s| stmt_calls(s, out));
    }
}

/// Every call in an expression.
pub fn expr_calls(expr: &Expr, out: &mut Vec<(String, Span)>) {
    out.extend(expr.walk().filter_map(|e| match &e.kind {
        ExprKind::Call { callee, .. } => Some((callee.name.clone(), callee.span)),
        _ => None,
    }));
}
