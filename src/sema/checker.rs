//! The checker's state and its walk over statements.
//!
//! The checker evaluates a recipe the way the executor will run it, minus the tensors: statements
//! in order, functions inlined at their call sites, each runtime operation appended to the program
//! as a [`Node`]. Where a statement stands (top level, `per edit`, a `train` body) is tracked in
//! [`Ctx`] and decides both what is allowed there and which [`Block`] a node belongs to.

use std::collections::{HashMap, HashSet};

use super::program::{Block, Metric, Node, NodeId, Op, Origin, Param};
use super::site::{Layers, Stream};
use super::value::Value;
use crate::diagnostics::{did_you_mean, Diag};
use crate::model::config::ModelDims;
use crate::sema::ops;
use crate::source::{SourceMap, Span};
use crate::syntax::ast::{self, FnDef, Item, Module, StmtKind};

/// A name bound by `let` or a function parameter.
#[derive(Debug, Clone)]
pub(super) struct Binding {
    pub value: Value,
    pub span: Span,
}

/// What the enclosing `train` block trains, and whether its `loss` was written yet.
#[derive(Debug, Clone)]
pub(super) struct TrainCtx {
    pub train: NodeId,
    pub params: Vec<Param>,
    /// The body's `loss` statement, for the "one loss" check.
    pub loss: Option<Span>,
    /// The loss's terms and the body's projections, carried by the train node.
    pub terms: Vec<super::program::LossTerm>,
    pub projections: Vec<super::program::Projection>,
    /// The `train` statement, for notes.
    pub span: Span,
}

/// Where the statement being checked stands.
#[derive(Debug, Clone)]
pub(super) enum Ctx {
    Run,
    Edit,
    Step(TrainCtx),
}

/// What the checker knows about a node's result, for the checks of later statements.
#[derive(Debug, Clone)]
pub(super) enum NodeInfo {
    Covariance {
        stream: Stream,
    },
    Space {
        stream: Stream,
        rank: Option<usize>,
    },
    Adapter {
        kind: AdapterKind,
        params: Vec<Param>,
    },
    Variants,
    Memory {
        at: Stream,
        /// Triplets the memory starts with (edits join it with `remember`).
        entries: usize,
    },
    Encoders {
        memory: NodeId,
        hidden: usize,
    },
    Direction {
        width: usize,
        layers: Option<Layers>,
    },
    Effect,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum AdapterKind {
    Lora { rank: usize },
    ExtraNeurons,
    LatentIcl { layers: Option<Layers> },
}

pub(super) struct Checker<'a> {
    pub sources: &'a SourceMap,
    pub dims: Option<&'a ModelDims>,
    pub fns: &'a HashMap<String, FnDef>,
    /// Functions whose definitions already failed: calls to them are not expanded again.
    pub broken_fns: HashSet<String>,
    /// Lexical frames of the function being checked (the recipe is the outermost "function").
    pub frames: Vec<Vec<(String, Binding)>>,
    pub ctx: Vec<Ctx>,
    pub nodes: Vec<Node>,
    pub info: Vec<NodeInfo>,
    pub diags: Vec<Diag>,
    /// Parameters frozen so far, with the `freeze` that froze them.
    pub frozen: Vec<(Param, Span)>,
    /// The inlining stack: function names and their call spans, outermost first.
    pub calls: Vec<(String, Span)>,
    pub metrics: Option<(Vec<Metric>, Span)>,
    /// `remember(memory)` calls, checked at the end against the memories `latent_icl` reads.
    pub remembered: Vec<(NodeId, Span)>,
    /// Current depth of nested expression evaluation (bounded, so no input exhausts the stack).
    pub depth: usize,
    pub too_deep_reported: bool,
    /// `of:` layer selections and their resolutions, for the plan ([`super::program::Depth`]).
    pub depths: Vec<super::program::Depth>,
}

impl<'a> Checker<'a> {
    pub fn new(
        sources: &'a SourceMap,
        dims: Option<&'a ModelDims>,
        fns: &'a HashMap<String, FnDef>,
    ) -> Self {
        Checker {
            sources,
            dims,
            fns,
            broken_fns: HashSet::new(),
            frames: vec![Vec::new()],
            ctx: vec![Ctx::Run],
            nodes: Vec::new(),
            info: Vec::new(),
            diags: Vec::new(),
            frozen: Vec::new(),
            calls: Vec::new(),
            metrics: None,
            remembered: Vec::new(),
            depth: 0,
            too_deep_reported: false,
            depths: Vec::new(),
        }
    }

    pub fn error(&mut self, diag: Diag) -> Value {
        self.diags.push(diag);
        Value::Poison
    }

    // ---- nodes --------------------------------------------------------------------------------

    pub fn block(&self) -> Block {
        match self.ctx.last() {
            Some(Ctx::Edit) => Block::Edit,
            Some(Ctx::Step(t)) => Block::Step { train: t.train },
            _ => Block::Run,
        }
    }

    fn origin(&self, span: Span) -> Origin {
        let at = self.calls.first().map(|(_, s)| *s).unwrap_or(span);
        Origin {
            at: self.sources.locate(at),
            via: self.calls.iter().map(|(n, _)| n.clone()).collect(),
            name: None,
        }
    }

    /// Appends a node written at `span` and returns its id.
    pub fn add_node(
        &mut self,
        op: Op,
        info: NodeInfo,
        shape: Option<Vec<usize>>,
        span: Span,
    ) -> NodeId {
        let id = NodeId(u32::try_from(self.nodes.len()).unwrap_or(u32::MAX));
        let block = self.block();
        let origin = self.origin(span);
        self.nodes.push(Node {
            id,
            block,
            op,
            shape,
            origin,
        });
        self.info.push(info);
        id
    }

    /// The id the next node will get (adapters name their tensors by it).
    pub fn next_id(&self) -> NodeId {
        NodeId(u32::try_from(self.nodes.len()).unwrap_or(u32::MAX))
    }

    pub fn node_info(&self, id: NodeId) -> Option<&NodeInfo> {
        self.info.get(id.0 as usize)
    }

    pub fn in_edit(&self) -> bool {
        matches!(self.ctx.last(), Some(Ctx::Edit | Ctx::Step(_)))
    }

    pub fn in_step(&self) -> bool {
        matches!(self.ctx.last(), Some(Ctx::Step(_)))
    }

    // ---- names --------------------------------------------------------------------------------

    pub fn lookup(&self, name: &str) -> Option<&Binding> {
        self.frames
            .iter()
            .rev()
            .flat_map(|f| f.iter().rev())
            .find(|(n, _)| n == name)
            .map(|(_, b)| b)
    }

    /// Binds `name`, refusing to shadow anything: a variable, a function, a builtin or a symbol.
    pub fn define(&mut self, name: &ast::Ident, value: Value) {
        if let Some(previous) = self.lookup(&name.name) {
            let first = previous.span;
            self.diags.push(
                Diag::error(
                    "mkedsl::name::redefined",
                    format!("`{}` is already defined", name.name),
                    name.span,
                )
                .label("defined again here")
                .note(first, "first defined here")
                .help("choose a new name; bindings cannot be reassigned or shadowed"),
            );
            return;
        }
        if let Some(what) = super::reserved(&name.name, self.fns) {
            self.diags.push(
                Diag::error(
                    "mkedsl::name::reserved",
                    format!("`{}` is {what}", name.name),
                    name.span,
                )
                .label("cannot be used as a variable name")
                .help("choose another name"),
            );
            return;
        }
        if let Some(frame) = self.frames.last_mut() {
            frame.push((
                name.name.clone(),
                Binding {
                    value,
                    span: name.span,
                },
            ));
        }
    }

    /// Every name a "did you mean" may offer for an unknown identifier.
    pub fn visible_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .frames
            .iter()
            .flat_map(|f| f.iter().map(|(n, _)| n.clone()))
            .collect();
        names.extend(self.fns.keys().cloned());
        names.extend(super::builtins::names().map(str::to_string));
        names.extend(["target", "embed"].iter().map(|s| s.to_string()));
        names
    }

    pub fn unknown_name(&mut self, name: &str, span: Span) -> Value {
        let names = self.visible_names();
        let mut diag = Diag::error(
            "mkedsl::name::unknown",
            format!("unknown name `{name}`"),
            span,
        )
        .label("not defined");
        diag = match did_you_mean(name, names.iter().map(String::as_str)) {
            Some(best) => diag.help(format!("did you mean `{best}`?")),
            None => diag.help(
                "define it with `let` before this line, or import a module with `use std.NAME`",
            ),
        };
        self.error(diag)
    }

    // ---- statements ---------------------------------------------------------------------------

    /// Checks the recipe's statements in order; returns nothing, results accumulate in `self`.
    pub fn check_root(&mut self, module: &Module) {
        let mut per_edit: Option<Span> = None;
        for item in &module.items {
            let Item::Stmt(stmt) = item else { continue };
            match &stmt.kind {
                StmtKind::Evaluate(_) => {}
                StmtKind::PerEdit(_) if per_edit.is_some() => {
                    let first = per_edit.unwrap_or(stmt.span);
                    self.diags.push(
                        Diag::error(
                            "mkedsl::block::second_per_edit",
                            "a recipe has one `per edit` block",
                            stmt.span,
                        )
                        .label("second `per edit`")
                        .note(first, "first `per edit`")
                        .help("merge the two blocks into one"),
                    );
                    continue;
                }
                _ if per_edit.is_some() => {
                    let first = per_edit.unwrap_or(stmt.span);
                    self.diags.push(
                        Diag::error(
                            "mkedsl::block::after_per_edit",
                            "top-level statements must come before `per edit`",
                            stmt.span,
                        )
                        .label("written after the per-edit block")
                        .note(first, "the per-edit block")
                        .help("top-level statements run once before any edit; move this line above `per edit`"),
                    );
                    continue;
                }
                _ => {}
            }
            if matches!(stmt.kind, StmtKind::PerEdit(_)) {
                per_edit = Some(stmt.span);
            }
            self.stmt(stmt);
        }
        self.check_remembered();
    }

    /// A `remember` of a memory that no `latent_icl` reads could have no effect.
    fn check_remembered(&mut self) {
        for (memory, span) in std::mem::take(&mut self.remembered) {
            let read = self
                .nodes
                .iter()
                .any(|n| matches!(&n.op, Op::LatentIcl(ops::LatentIcl { memory: m, .. }) if *m == memory));
            if !read {
                self.diags.push(
                    Diag::error(
                        "mkedsl::unike::memory_unread",
                        "`remember` adds the edit to a memory that no `latent_icl` reads",
                        span,
                    )
                    .label("would have no effect")
                    .help("attach `latent_icl(..., memory: ...)` on the same memory, or drop `remember`"),
                );
            }
        }
    }

    pub fn stmts(&mut self, stmts: &[ast::Stmt]) {
        for stmt in stmts {
            self.stmt(stmt);
        }
    }

    pub fn stmt(&mut self, stmt: &ast::Stmt) {
        match &stmt.kind {
            StmtKind::Let { name, ty, value } => self.let_stmt(name, ty.as_ref(), value),
            StmtKind::Freeze(expr) => self.freeze_stmt(expr, stmt.span),
            StmtKind::PerEdit(block) => self.per_edit(block, stmt.span),
            StmtKind::Train {
                target,
                steps,
                optimizer,
                body,
            } => self.train_stmt(target, steps, optimizer, body, stmt.span),
            StmtKind::Loss(expr) => self.loss_stmt(expr, stmt.span),
            StmtKind::Project {
                kind,
                param,
                space,
                scale,
                ..
            } => self.project_stmt(*kind, param, space, scale.as_ref(), stmt.span),
            StmtKind::Evaluate(expr) => self.evaluate_stmt(expr, stmt.span),
            StmtKind::Expr(expr) => {
                let value = self.eval(expr);
                if !matches!(value, Value::Unit | Value::Poison) {
                    let ty = value.ty();
                    self.diags.push(
                        Diag::error("mkedsl::type::unused", format!("this {ty} is computed and then dropped"), expr.span)
                            .label(format!("unused {ty}"))
                            .help("bind it with `let NAME = ...`; only calls that return Unit can stand alone"),
                    );
                }
            }
        }
    }

    fn let_stmt(&mut self, name: &ast::Ident, ty: Option<&ast::TypeExpr>, value: &ast::Expr) {
        let v = self.eval(value);
        let v = match ty.map(super::types::Ty::from_expr) {
            None => v,
            Some(Err(bad)) => {
                let diag =
                    super::definitions::unknown_type(&bad, ty.map(|t| t.span).unwrap_or(name.span));
                self.diags.push(diag);
                Value::Poison
            }
            Some(Ok(expected)) => {
                if v.ty().fits(&expected) {
                    super::expr::widen(v, &expected)
                } else {
                    let found = v.ty();
                    self.error(
                        Diag::error(
                            "mkedsl::type::mismatch",
                            format!(
                                "`{}` is declared {expected} but its value is {found}",
                                name.name
                            ),
                            value.span,
                        )
                        .label(format!("this is {found}"))
                        .note(
                            ty.map(|t| t.span).unwrap_or(name.span),
                            format!("declared {expected}"),
                        )
                        .help("change the annotation or the value"),
                    )
                }
            }
        };
        if let Value::Node { id, .. } = &v {
            if let Some(node) = self.nodes.get_mut(id.0 as usize) {
                node.origin.name = Some(name.name.clone());
            }
        }
        self.define(name, v);
    }

    fn per_edit(&mut self, block: &ast::Block, span: Span) {
        if !self.calls.is_empty() {
            self.diags.push(
                Diag::error(
                    "mkedsl::block::per_edit_in_fn",
                    "a function cannot contain `per edit`",
                    span,
                )
                .label("per-edit block inside a function")
                .help("write `per edit` in the recipe and call the function inside it"),
            );
            return;
        }
        if !matches!(self.ctx.last(), Some(Ctx::Run)) {
            self.diags.push(
                Diag::error("mkedsl::block::nested_per_edit", "`per edit` cannot be nested", span)
                    .label("already inside a per-edit block")
                    .help("everything inside `per edit` already runs once per edit case; remove the inner block"),
            );
            return;
        }
        self.ctx.push(Ctx::Edit);
        self.frames.push(Vec::new());
        self.stmts(&block.stmts);
        self.frames.pop();
        self.ctx.pop();
    }

    fn evaluate_stmt(&mut self, expr: &ast::Expr, span: Span) {
        if !self.calls.is_empty() || !matches!(self.ctx.last(), Some(Ctx::Run)) {
            self.diags.push(
                Diag::error(
                    "mkedsl::block::evaluate_place",
                    "`evaluate` belongs at the top level of a recipe",
                    span,
                )
                .label("not at the top level")
                .help("write `evaluate [...]` once, at the end of the recipe"),
            );
            return;
        }
        if let Some((_, first)) = &self.metrics {
            let first = *first;
            self.diags.push(
                Diag::error(
                    "mkedsl::block::second_evaluate",
                    "a recipe has one `evaluate` statement",
                    span,
                )
                .label("second `evaluate`")
                .note(first, "first `evaluate`")
                .help("list every metric in one `evaluate [...]`"),
            );
            return;
        }
        let metrics = self.metric_list(expr);
        self.metrics = Some((metrics, span));
    }
}
