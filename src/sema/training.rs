//! `freeze`, `train`, `loss` and `project`: which parameters learn, and how.

use super::checker::{Checker, Ctx, NodeInfo, TrainCtx};
use super::program::{NodeId, Op, Param, ParamOwner, Projection};
use super::types::Ty;
use super::value::Value;
use crate::diagnostics::Diag;
use crate::sema::ops;
use crate::source::Span;
use crate::syntax::ast::{self, ProjectKind};

/// Most optimisation steps a `train` statement may run per edit (stated policy: the papers use
/// tens; a billion would pass `check` and never end).
pub const MAX_TRAIN_STEPS: i64 = 100_000;

/// Whether two parameters are the same tensor(s).
pub(super) fn same_param(a: &Param, b: &Param) -> bool {
    match (&a.owner, &b.owner) {
        (ParamOwner::Weight { site: x }, ParamOwner::Weight { site: y }) => {
            x.proj == y.proj && x.layers.same(&y.layers)
        }
        (
            ParamOwner::Adapter {
                adapter: x,
                name: n,
            },
            ParamOwner::Adapter {
                adapter: y,
                name: m,
            },
        ) => x == y && n == m,
        _ => false,
    }
}

/// Whether `inner` is `outer` or a part of it (a weight at fewer layers).
fn part_of(inner: &Param, outer: &Param) -> bool {
    match (&inner.owner, &outer.owner) {
        (ParamOwner::Weight { site: x }, ParamOwner::Weight { site: y }) => {
            x.proj == y.proj && x.layers.within(&y.layers)
        }
        _ => same_param(inner, outer),
    }
}

fn overlaps(a: &Param, b: &Param) -> bool {
    match (&a.owner, &b.owner) {
        (ParamOwner::Weight { site: x }, ParamOwner::Weight { site: y }) => {
            x.proj == y.proj && x.layers.overlaps(&y.layers)
        }
        _ => same_param(a, b),
    }
}

impl Checker<'_> {
    /// The `freeze` that froze `param` (or a part of it), if any.
    fn frozen_by(&self, param: &Param) -> Option<Span> {
        self.frozen
            .iter()
            .find(|(p, _)| overlaps(p, param))
            .map(|(_, s)| *s)
    }

    /// The parameters a value names: a parameter, an adapter (all its tensors), or a list of these.
    /// `trainable` leaves out the frozen tensors of adapters (they are simply not trained).
    fn params_of(
        &mut self,
        value: &Value,
        span: Span,
        verb: &str,
        trainable: bool,
    ) -> Option<Vec<Param>> {
        match value {
            Value::Poison => None,
            Value::Param(p) => Some(vec![p.clone()]),
            Value::Node {
                id,
                ty: Ty::Adapter,
            } => {
                let params = match self.node_info(*id) {
                    Some(NodeInfo::Adapter { params, .. }) => params.clone(),
                    _ => Vec::new(),
                };
                let all_frozen = !params.is_empty();
                let kept: Vec<Param> = if trainable {
                    params
                        .into_iter()
                        .filter(|p| self.frozen_by(p).is_none())
                        .collect()
                } else {
                    params
                };
                if kept.is_empty() {
                    let (why, help) = if all_frozen {
                        (
                            "has no trainable parameters left",
                            "every tensor of this adapter is frozen; unfreeze one or train another",
                        )
                    } else {
                        (
                            "has no parameters",
                            "latent_icl steers activations and has no tensors to train",
                        )
                    };
                    self.diags.push(
                        Diag::error(
                            "mkedsl::train::no_params",
                            format!("this adapter {why}"),
                            span,
                        )
                        .label(format!("nothing to {verb}"))
                        .help(help),
                    );
                    return None;
                }
                Some(kept)
            }
            Value::List(items) => {
                let mut out: Vec<Param> = Vec::new();
                for item in items {
                    for p in self.params_of(item, span, verb, trainable)? {
                        if !out.iter().any(|q| same_param(q, &p)) {
                            out.push(p);
                        }
                    }
                }
                if out.is_empty() {
                    self.diags.push(
                        Diag::error(
                            "mkedsl::train::no_params",
                            format!("nothing to {verb}"),
                            span,
                        )
                        .label("empty list")
                        .help("name at least one parameter or adapter"),
                    );
                    return None;
                }
                Some(out)
            }
            other => {
                let ty = other.ty();
                self.diags.push(
                    Diag::error(
                        "mkedsl::type::not_param",
                        format!("cannot {verb} {}", ty.a()),
                        span,
                    )
                    .label(format!("this is {}", ty.a()))
                    .help(format!(
                        "only parameters (`site.weight`, `ab.B`) and adapters can be {}",
                        if verb == "freeze" {
                            "frozen"
                        } else {
                            "trained"
                        }
                    )),
                );
                None
            }
        }
    }

    pub(super) fn freeze_stmt(&mut self, expr: &ast::Expr, span: Span) {
        if self.in_step() {
            self.diags.push(
                Diag::error(
                    "mkedsl::train::freeze_in_body",
                    "cannot freeze inside a train body",
                    span,
                )
                .label("would change what this loop trains")
                .help("freeze before the `train` statement"),
            );
            return;
        }
        let value = self.eval(expr);
        let Some(params) = self.params_of(&value, expr.span, "freeze", false) else {
            return;
        };
        for p in &params {
            self.frozen.push((p.clone(), span));
        }
        self.add_node(
            Op::Freeze(ops::Freeze { params }),
            NodeInfo::Effect,
            None,
            span,
        );
    }

    pub(super) fn train_stmt(
        &mut self,
        target: &ast::Expr,
        steps: &ast::Expr,
        optimizer: &ast::Expr,
        body: &ast::Block,
        span: Span,
    ) {
        match self.ctx.last() {
            Some(Ctx::Edit) => {}
            Some(Ctx::Step(_)) => {
                self.diags.push(
                    Diag::error("mkedsl::train::nested", "`train` cannot be nested", span)
                        .label("inside another train body")
                        .help("train several parameters together with `train [p, q] for ...`"),
                );
                return;
            }
            _ => {
                self.diags.push(
                    Diag::error(
                        "mkedsl::train::outside_per_edit",
                        "`train` belongs inside `per edit`",
                        span,
                    )
                    .label("training at the top level")
                    .help("an edit trains on its case: write `per edit { train ... }`"),
                );
                return;
            }
        }
        let target_value = self.eval(target);
        let params = self.params_of(&target_value, target.span, "train", true);
        if let (Some(params), Value::Param(_) | Value::List(_)) = (&params, &target_value) {
            for p in params {
                if let Some(at) = self.frozen_by(p) {
                    self.diags.push(
                        Diag::error(
                            "mkedsl::train::frozen",
                            format!("`{}` is frozen", p.path),
                            target.span,
                        )
                        .label("trained here")
                        .note(at, "frozen here")
                        .help("remove the `freeze` or train another parameter"),
                    );
                }
            }
        }
        let steps_value = self.eval(steps);
        let steps_n = match steps_value {
            Value::Int(n) if n > MAX_TRAIN_STEPS => {
                self.error(
                    Diag::error(
                        "mkedsl::range::steps",
                        format!("a training loop may run at most {MAX_TRAIN_STEPS} steps, not {n}"),
                        steps.span,
                    )
                    .label(format!("must be ≤ {MAX_TRAIN_STEPS}"))
                    .help("the papers use tens of steps per edit (ELoRA: 70); a longer loop would not finish"),
                );
                None
            }
            Value::Int(n) if n >= 1 => usize::try_from(n).ok(),
            Value::Poison => None,
            Value::Int(n) => {
                self.error(
                    Diag::error(
                        "mkedsl::range::steps",
                        format!("a training loop needs at least one step, not {n}"),
                        steps.span,
                    )
                    .label("must be ≥ 1")
                    .help("the papers use tens of steps per edit (ELoRA: 70)"),
                );
                None
            }
            other => {
                let ty = other.ty();
                self.error(
                    Diag::error(
                        "mkedsl::type::mismatch",
                        format!("the number of steps must be an Int, not {ty}"),
                        steps.span,
                    )
                    .label(format!("this is {ty}"))
                    .help("write a whole number such as `70`"),
                );
                None
            }
        };
        let opt_value = self.eval(optimizer);
        let opt = match opt_value {
            Value::Optimizer(o) => Some(o),
            Value::Poison => None,
            other => {
                let ty = other.ty();
                self.error(
                    Diag::error(
                        "mkedsl::type::mismatch",
                        format!("`with` takes an Optimizer, not {ty}"),
                        optimizer.span,
                    )
                    .label(format!("this is {ty}"))
                    .help("use `sgd(lr: ...)` or `adam(lr: ...)`"),
                );
                None
            }
        };
        let (params, steps_n, opt) = match (params, steps_n, opt) {
            (Some(p), Some(s), Some(o)) => (p, s, o),
            // Still walk the body so its own mistakes are reported, under a placeholder node.
            (p, _, _) => (
                p.unwrap_or_default(),
                1,
                super::program::Optimizer::Sgd { lr: 1.0 },
            ),
        };
        let id = self.add_node(
            Op::Train(ops::Train {
                params: params.clone(),
                steps: steps_n,
                optimizer: opt,
                body: Vec::new(),
                loss: Vec::new(),
                projections: Vec::new(),
            }),
            NodeInfo::Effect,
            None,
            span,
        );
        self.ctx.push(Ctx::Step(TrainCtx {
            train: id,
            params,
            loss: None,
            terms: Vec::new(),
            projections: Vec::new(),
            span,
        }));
        self.frames.push(Vec::new());
        self.stmts(&body.stmts);
        self.frames.pop();
        let (loss, terms, found) = match self.ctx.pop() {
            Some(Ctx::Step(t)) => (t.loss, t.terms, t.projections),
            _ => (None, Vec::new(), Vec::new()),
        };
        if loss.is_none() {
            self.diags.push(
                Diag::error(
                    "mkedsl::train::no_loss",
                    "this train body has no `loss`",
                    span,
                )
                .label("nothing to minimise")
                .help("add `loss nll(target)` (or another loss) to the body"),
            );
        }
        let children: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| matches!(n.block, super::program::Block::Step { train } if train == id))
            .map(|n| n.id)
            .collect();
        if let Some(Op::Train(ops::Train {
            body,
            loss,
            projections,
            ..
        })) = self.nodes.get_mut(id.0 as usize).map(|n| &mut n.op)
        {
            *body = children;
            *loss = terms;
            *projections = found;
        }
    }

    fn train_ctx(&mut self) -> Option<&mut TrainCtx> {
        match self.ctx.last_mut() {
            Some(Ctx::Step(t)) => Some(t),
            _ => None,
        }
    }

    pub(super) fn loss_stmt(&mut self, expr: &ast::Expr, span: Span) {
        let Some(ctx) = self.train_ctx() else {
            self.diags.push(
                Diag::error(
                    "mkedsl::train::loss_outside",
                    "`loss` belongs in a train body",
                    span,
                )
                .label("not inside `train ... { }`")
                .help("write `train PARAMS for N steps with OPT { loss ... }`"),
            );
            return;
        };
        if let Some(first) = ctx.loss {
            self.diags.push(
                Diag::error(
                    "mkedsl::train::second_loss",
                    "a train body has one `loss`",
                    span,
                )
                .label("second `loss`")
                .note(first, "first `loss`")
                .help("add the terms into one objective: `loss a + 10 * b`"),
            );
            return;
        }
        ctx.loss = Some(span);
        match self.eval(expr) {
            Value::Loss(terms) => {
                if let Some(ctx) = self.train_ctx() {
                    ctx.terms = terms;
                }
            }
            Value::Poison => {}
            other => {
                let ty = other.ty();
                self.diags.push(
                    Diag::error("mkedsl::type::not_loss", format!("`loss` takes a Loss, not {ty}"), expr.span)
                        .label(format!("this is {ty}"))
                        .help("losses are nll(...), kl_to_original(...), rank_align(...), their sums and multiples"),
                );
            }
        }
    }

    pub(super) fn project_stmt(
        &mut self,
        kind: ProjectKind,
        param_expr: &ast::Expr,
        space: &ast::Expr,
        scale: Option<&ast::Expr>,
        span: Span,
    ) {
        let Some(ctx) = self.train_ctx() else {
            self.diags.push(
                Diag::error(
                    "mkedsl::train::project_outside",
                    "`project` belongs in a train body",
                    span,
                )
                .label("not inside `train ... { }`")
                .help("projections act on a training step's gradients or updates"),
            );
            return;
        };
        let trained = ctx.params.clone();
        let train_span = ctx.span;
        let param_value = self.eval(param_expr);
        let space_value = self.eval(space);
        let scale_value = match scale {
            Some(e) => {
                let v = self.eval(e);
                match v {
                    Value::Int(_) | Value::Float(_) => {
                        let x = super::expr::as_f64(&v).unwrap_or(1.0);
                        if x > 0.0 {
                            Some(x)
                        } else {
                            self.error(
                                Diag::error(
                                    "mkedsl::range::scale",
                                    format!("projection scale must be > 0, not {x}"),
                                    e.span,
                                )
                                .label("must be positive")
                                .help("LPEdit's scale is 1/(1+λ) with λ ≥ 0"),
                            );
                            None
                        }
                    }
                    Value::Poison => None,
                    other => {
                        let ty = other.ty();
                        self.error(
                            Diag::error(
                                "mkedsl::type::mismatch",
                                format!("`scale` takes a Float, not {ty}"),
                                e.span,
                            )
                            .label(format!("this is {ty}"))
                            .help("write a number such as `1 / (1 + 0.5)`"),
                        );
                        None
                    }
                }
            }
            None => Some(1.0),
        };
        let param = match param_value {
            Value::Param(p) => p,
            Value::Poison => return,
            Value::Node {
                ty: Ty::Adapter, ..
            } => {
                self.diags.push(
                    Diag::error(
                        "mkedsl::type::not_param",
                        "project one parameter, not a whole adapter",
                        param_expr.span,
                    )
                    .label("an adapter")
                    .help("name the tensor, e.g. `project grad ab.B onto know`"),
                );
                return;
            }
            other => {
                let ty = other.ty();
                self.diags.push(
                    Diag::error(
                        "mkedsl::type::not_param",
                        format!("cannot project {}", ty.a()),
                        param_expr.span,
                    )
                    .label(format!("this is {}", ty.a()))
                    .help("project a trained parameter such as `ab.B` or `site.weight`"),
                );
                return;
            }
        };
        let Some(index) = trained.iter().position(|t| part_of(&param, t)) else {
            self.diags.push(
                Diag::error(
                    "mkedsl::train::project_untrained",
                    format!("`{}` is not trained by this train block", param.path),
                    param_expr.span,
                )
                .label("not among the trained parameters")
                .note(train_span, "the train block")
                .help(format!(
                    "this block trains {}",
                    trained
                        .iter()
                        .map(|p| format!("`{}`", p.path))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            );
            return;
        };
        // Part of a weight trained at more layers: the projection acts on those layers only.
        let layers = match (&param.owner, trained.get(index)) {
            (ParamOwner::Weight { site }, Some(t)) if !same_param(&param, t) => {
                site.layers.resolved.clone()
            }
            _ => None,
        };
        let Some(space_id) = self.expect_space(&space_value, space.span) else {
            return;
        };
        let Some(NodeInfo::Space { stream, .. }) = self.node_info(space_id).cloned() else {
            return;
        };
        let Some(input) = param.input.clone() else {
            self.diags.push(
                Diag::error(
                    "mkedsl::dim::no_input",
                    format!("`{}` multiplies no activation, so it has no input space to project onto", param.path),
                    param_expr.span,
                )
                .label("a bias or a map of ζ")
                .help("project a weight matrix: `site.weight`, LoRA's `A` or `B`, or extra neurons' `keys`/`values`"),
            );
            return;
        };
        if !self.space_fits_input(&stream, &input, space.span, &param.path) {
            return;
        }
        let Some(scale) = scale_value else { return };
        if let Some(ctx) = self.train_ctx() {
            ctx.projections.push(Projection {
                kind,
                param: index,
                path: param.path.clone(),
                layers,
                space: space_id,
                scale,
            });
        }
    }

    /// The node of a Space value, or a diagnostic.
    pub(super) fn expect_space(&mut self, value: &Value, span: Span) -> Option<NodeId> {
        match value {
            Value::Node { id, ty: Ty::Space } => Some(*id),
            Value::Poison => None,
            other => {
                let ty = other.ty();
                self.error(
                    Diag::error(
                        "mkedsl::type::not_space",
                        format!("expected a Space, found {ty}"),
                        span,
                    )
                    .label(format!("this is {ty}"))
                    .help("spaces come from null_space, top_space and knowledge_space"),
                );
                None
            }
        }
    }

    /// Whether a space over `space` may project a tensor whose columns multiply `input`; reports why not.
    pub(super) fn space_fits_input(
        &mut self,
        space: &super::site::Stream,
        input: &super::site::Stream,
        span: Span,
        what: &str,
    ) -> bool {
        let widths =
            |s: &super::site::Stream| s.width.map(|w| format!(" (width {w})")).unwrap_or_default();
        if !space.same_place(input) {
            self.diags.push(
                Diag::error(
                    "mkedsl::dim::space_site",
                    format!("this space lives in `{space}` but `{what}` multiplies `{input}`"),
                    span,
                )
                .label(format!("space over `{space}`{}", widths(space)))
                .help(format!(
                    "build the space over `{input}`{}, the input of `{what}`",
                    widths(input)
                )),
            );
            return false;
        }
        if let (Some(a), Some(b)) = (space.width, input.width) {
            if a != b {
                self.diags.push(
                    Diag::error(
                        "mkedsl::dim::space_width",
                        format!("space has dimension {a} but `{what}` has {b} input columns"),
                        span,
                    )
                    .label(format!("{a}-dimensional space"))
                    .help("a projector must be square in the parameter's input dimension"),
                );
                return false;
            }
        }
        true
    }
}
