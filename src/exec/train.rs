//! The optimisation loop of a `train` step (REFERENCE.md §4): every step runs the body in order
//! (variants, the loss), back-propagates the loss, right-multiplies each gradient named by a
//! `project grad` by its space's projector (times `scale`), lets the optimiser propose an update,
//! projects the update where a `project update` says so, and applies it.
//!
//! Trained tensors become fresh `Var`s for the duration of the step (copies: a tensor the
//! evaluator's snapshot holds is never written in place) installed in the state — a LoRA's `B`
//! in the adapters, a weight in the model — so the forward passes see them; every other weight
//! stays a frozen constant whose matmul stores no gradient. At the end plain copies are written
//! back. A loss, gradient or update that is not finite stops the edit with a diagnostic.

use std::collections::HashMap;

use candle_core::{DType, Tensor, Var};

use crate::eval::EditState;
use crate::exec::error::{ExecError, Result};
use crate::exec::executor::{in_step, Executor, KlReference};
use crate::exec::input::EditInput;
use crate::exec::losses;
use crate::exec::methods::unike::numerics::NeuronSlot;
use crate::exec::ops::{Execute, StepContext};
use crate::exec::optim::Optimizer;
use crate::exec::sites::{layer_name, linear_sites, stream_taps, Tap};
use crate::exec::sums;
use crate::exec::taps::{deepest, Reading};
use crate::exec::values::{LoraSlot, Value, Values};
use crate::linalg::Subspace;
use crate::model::site::{LayerPoint, Proj, Site};
use crate::model::{
    ExtraNeurons, Hooks, Latents, LinearSite, Lora, Readout, Residual, ResidualPoint,
    VisionLanguageModel,
};
use crate::plan::{Step, StepId};
use crate::sema::ops;
use crate::sema::{
    AdapterParam, HiddenSpec, LossKind, LossTerm, Op, Param, ParamOwner, Pool, ProjectKind,
    Projection,
};

/// Where a trained tensor lives in the state.
#[derive(Debug, Clone)]
pub enum Slot {
    /// A model weight.
    Weight(LinearSite),
    LoraA(LoraSlot),
    LoraB(LoraSlot),
    /// Extra neurons' keys `(count, d)`.
    Keys(NeuronSlot),
    /// Extra neurons' key bias `(count,)`.
    KeyBias(NeuronSlot),
    /// Extra neurons' values `(count, d)` (`V` of `V + β·W_ζ ζ` when regulated).
    Values(NeuronSlot),
    /// UniKE's `W_ζ` `(d, h)`.
    ZetaMap(NeuronSlot),
}

impl Slot {
    pub fn read(&self, state: &EditState) -> Result<Tensor> {
        match self {
            Slot::Weight(site) => Ok(state.model.linear_weight(*site)?),
            Slot::LoraA(s) => Ok(lora_at(state, *s)?.a),
            Slot::LoraB(s) => Ok(lora_at(state, *s)?.b),
            Slot::Keys(s) => Ok(neurons_at(state, *s)?.keys),
            Slot::KeyBias(s) => neurons_at(state, *s)?
                .bias
                .ok_or_else(|| ExecError::internal("extra neurons without a key bias")),
            Slot::Values(s) => Ok(neurons_at(state, *s)?.values),
            Slot::ZetaMap(s) => neurons_at(state, *s)?
                .regulation
                .map(|r| r.map)
                .ok_or_else(|| ExecError::internal("extra neurons without W_ζ")),
        }
    }

    pub fn write(&self, state: &mut EditState, t: Tensor) -> Result<()> {
        match self {
            Slot::Weight(site) => {
                state.model.replace_linear_weight(*site, t)?;
            }
            Slot::LoraA(s) | Slot::LoraB(s) => {
                let mut lora = lora_at(state, *s)?;
                if matches!(self, Slot::LoraA(_)) {
                    lora.a = t;
                } else {
                    lora.b = t;
                }
                state.adapters.set_lora(s.site, s.index, lora)?;
            }
            Slot::Keys(s) | Slot::KeyBias(s) | Slot::Values(s) | Slot::ZetaMap(s) => {
                let mut n = neurons_at(state, *s)?;
                match self {
                    Slot::Keys(_) => n.keys = t,
                    Slot::KeyBias(_) => n.bias = Some(t),
                    Slot::Values(_) => n.values = t,
                    _ => match n.regulation.as_mut() {
                        Some(r) => r.map = t,
                        None => return Err(ExecError::internal("extra neurons without W_ζ")),
                    },
                }
                state.adapters.set_neurons(s.layer, s.index, n)?;
            }
        }
        Ok(())
    }

    /// Whether the tensor is stored transposed relative to the recipe's `[rows, columns]`
    /// (extra neurons' values are `[d, count]` in the language, `(count, d)` in the runtime).
    fn transposed(&self) -> bool {
        matches!(self, Slot::Values(..))
    }
}

fn lora_at(state: &EditState, s: LoraSlot) -> Result<Lora> {
    state
        .adapters
        .loras(s.site)
        .get(s.index)
        .cloned()
        .ok_or_else(|| ExecError::internal(format!("no LoRA {} at {}", s.index, s.site)))
}

fn neurons_at(state: &EditState, s: NeuronSlot) -> Result<ExtraNeurons> {
    state
        .adapters
        .neurons_at(s.layer)
        .get(s.index)
        .cloned()
        .ok_or_else(|| {
            ExecError::internal(format!("no extra neurons {} at layer {}", s.index, s.layer))
        })
}

/// The tensors a parameter names, one per layer.
pub fn resolve(param: &Param, values: &Values) -> Result<Vec<(usize, Slot)>> {
    match &param.owner {
        ParamOwner::Weight { site } => Ok(linear_sites(site)?
            .into_iter()
            .map(|s| (s.layer, Slot::Weight(s)))
            .collect()),
        ParamOwner::Adapter { adapter, name } => match values.get(*adapter)? {
            Value::Lora(handle) => handle
                .slots
                .iter()
                .map(|s| match name {
                    AdapterParam::A => Ok((s.site.layer, Slot::LoraA(*s))),
                    AdapterParam::B => Ok((s.site.layer, Slot::LoraB(*s))),
                    other => Err(ExecError::internal(format!(
                        "a LoRA has no tensor `{}`",
                        other.name()
                    ))),
                })
                .collect(),
            Value::Neurons(handle) => handle
                .slots
                .iter()
                .map(|s| {
                    let slot = match (name, handle.regulated) {
                        (AdapterParam::Keys, _) => Slot::Keys(*s),
                        (AdapterParam::KeyBias, _) => Slot::KeyBias(*s),
                        (AdapterParam::Values, _) => Slot::Values(*s),
                        (AdapterParam::ZetaMap, true) => Slot::ZetaMap(*s),
                        (other, _) => {
                            return Err(ExecError::internal(format!(
                                "these extra neurons have no tensor `{}`",
                                other.name()
                            )))
                        }
                    };
                    Ok((s.layer, slot))
                })
                .collect(),
            other => Err(ExecError::internal(format!(
                "{} is a {}, which has no trainable tensors",
                adapter,
                other.kind()
            ))),
        },
    }
}

/// One trained tensor during a train step.
struct Trained {
    /// Index into the train op's `params`.
    param: usize,
    layer: usize,
    slot: Slot,
    var: Var,
    name: String,
    /// What [`Trained::measured`] gave before the first step.
    start: Tensor,
    /// The size the edit's change is compared with ([`DIVERGENCE_RATIO`]).
    reference: f64,
}

/// How far an edit may move what it trains, as a multiple of the size of the weight it edits,
/// before the optimisation counts as diverged. A loss can stay finite while the weights run
/// away (RMSNorm rescales any overflow-free activation), so the loss alone never tells: SGD at
/// lr 1e4 once left FT-L's loss finite and moved a weight by 4.6e8. Working edits move a weight
/// by a fraction of its norm; 100× is far outside them.
pub const DIVERGENCE_RATIO: f64 = 100.0;

impl Trained {
    /// What the edit's size is measured on: a LoRA factor's effective weight change
    /// `scaling · B·A` (one factor alone says nothing: B starts at zero), else the tensor.
    fn measured(&self, state: &EditState) -> Result<Tensor> {
        match &self.slot {
            Slot::LoraA(s) | Slot::LoraB(s) => {
                let l = lora_at(state, *s)?;
                let ba = crate::model::nn::gemm::product(&l.b.detach(), &l.a.detach())?;
                Ok((ba * l.scaling)?)
            }
            _ => Ok(self.var.as_tensor().detach()),
        }
    }

    /// The size of the weight the trained tensor edits: the weight itself, a LoRA's site, or
    /// (for extra FFN neurons) the layer's down projection.
    fn reference(&self, state: &EditState) -> Result<f64> {
        let weight = match &self.slot {
            Slot::Weight(_) => self.start.clone(),
            Slot::LoraA(s) | Slot::LoraB(s) => state.model.linear_weight(s.site)?,
            _ => state
                .model
                .linear_weight(LinearSite::new(self.layer, Proj::Down))?,
        };
        Ok(sums::norm(&weight)?.max(f64::MIN_POSITIVE))
    }

    /// Refuses a step after which the edit has moved its tensor by more than
    /// [`DIVERGENCE_RATIO`] times the size of the weight it edits (or by a non-finite amount).
    fn check_divergence(&self, state: &EditState, k: usize, steps: usize) -> Result<()> {
        let moved = sums::distance(&self.measured(state)?, &self.start)?;
        let ratio = moved / self.reference;
        if ratio <= DIVERGENCE_RATIO {
            return Ok(());
        }
        Err(ExecError::Diverged {
            what: self.name.clone(),
            moved,
            reference: self.reference,
            train_step: k,
            steps,
        })
    }
}

/// What one forward pass over a set of rows produced for the loss terms.
struct RowsOut {
    rows: usize,
    logits: Option<Tensor>,
    hidden: Vec<(HiddenSpec, Tensor)>,
}

fn finite(what: impl FnOnce() -> String, t: &Tensor, k: usize, steps: usize) -> Result<()> {
    let v = sums::sum(t)?;
    if v.is_finite() {
        Ok(())
    } else {
        Err(ExecError::NonFinite {
            what: what(),
            value: v,
            train_step: k,
            steps,
        })
    }
}

impl Executor {
    /// Runs a `train` step on one edit case.
    pub(crate) fn train(
        &mut self,
        step: &Step,
        state: &mut EditState,
        edit: &EditInput,
        values: &Values,
    ) -> Result<()> {
        let Op::Train(ops::Train {
            params,
            steps,
            optimizer,
            loss: terms,
            projections,
            ..
        }) = &step.op
        else {
            return Err(ExecError::internal("train on a step that is not `train`"));
        };
        let body: Vec<Step> = self.plan.body(step.id).cloned().collect();
        for p in params {
            if self.frozen.contains(&p.owner) {
                return Err(ExecError::internal(format!(
                    "{} is frozen but trained",
                    p.path
                )));
            }
        }
        let mut trained = Vec::new();
        for (i, p) in params.iter().enumerate() {
            for (layer, slot) in resolve(p, values)? {
                // A copy: the snapshot's tensor is never written in place. Trained tensors are
                // f32 on a half-precision model (a weight trained by FT-L included): the
                // optimiser's steps are often below bf16's spacing and would round away.
                let dtype = crate::model::precision::trained_dtype(state.model.dtype());
                let var = Var::from_tensor(&slot.read(state)?.detach().to_dtype(dtype)?)?;
                slot.write(state, var.as_tensor().clone())?;
                let name = match &slot {
                    Slot::Weight(site) => format!("{site}.weight"),
                    _ => format!("{} at {}", p.path, layer_name(Some(layer))),
                };
                let mut t = Trained {
                    param: i,
                    layer,
                    slot,
                    var,
                    name,
                    start: Tensor::zeros((), DType::F64, &candle_core::Device::Cpu)?,
                    reference: 1.0,
                };
                // A copy: `Var::set` writes the storage the measured tensor may share.
                t.start = t.measured(state)?.copy()?;
                t.reference = t.reference(state)?;
                trained.push(t);
            }
        }
        let prefix = match step.frozen_prefix {
            Some(point) => Some(self.frozen_prefix(point, terms, state, edit)?),
            None => None,
        };
        let body_ids: Vec<StepId> = body.iter().map(|b| b.id).collect();
        let mut cast: HashMap<(StepId, usize), Subspace> = HashMap::new();
        let mut opt = Optimizer::new(*optimizer, trained.len());
        for k in 1..=*steps {
            let mut vals = values.clone();
            cast.retain(|(id, _), _| !body_ids.contains(id));
            for b in &body {
                self.run_step(b, &body, state, Some(edit), &mut vals)
                    .map_err(|e| in_step(b, Some(edit.case), e))?;
            }
            let loss = self.loss(terms, state, edit, &vals, prefix.as_ref())?;
            finite(
                || format!("the loss (step {}, {})", step.id, step.origin.at),
                &loss,
                k,
                *steps,
            )?;
            let grads = loss.backward()?;
            opt.begin_step();
            for (i, t) in trained.iter().enumerate() {
                let p = t.var.as_tensor().detach();
                let mut g = match grads.get(t.var.as_tensor()) {
                    Some(g) => g.clone(),
                    None => p.zeros_like()?,
                };
                finite(|| format!("the gradient of {}", t.name), &g, k, *steps)?;
                let on_this = |kind: ProjectKind| {
                    projections
                        .iter()
                        .filter(move |pr| pr.kind == kind && pr.covers(t.param, t.layer))
                };
                for pr in on_this(ProjectKind::Grad) {
                    g = project(&g, pr, t.layer, t.slot.transposed(), &vals, &mut cast)?;
                }
                let mut u = opt.update(i, &p, &g)?;
                for pr in on_this(ProjectKind::Update) {
                    u = project(&u, pr, t.layer, t.slot.transposed(), &vals, &mut cast)?;
                }
                finite(|| format!("the update of {}", t.name), &u, k, *steps)?;
                t.var.set(&(p + u)?)?;
            }
            // A LoRA's A and B measure the same product: check it once.
            let mut checked = Vec::new();
            for t in &trained {
                let lora = match &t.slot {
                    Slot::LoraA(s) | Slot::LoraB(s) => Some(*s),
                    _ => None,
                };
                if lora.is_some_and(|s| checked.contains(&s)) {
                    continue;
                }
                checked.extend(lora);
                t.check_divergence(state, k, *steps)?;
            }
        }
        for t in trained {
            t.slot.write(state, t.var.as_tensor().detach().copy()?)?;
        }
        Ok(())
    }

    /// The residual streams at `point` for the rows a train step's loss reads at every step:
    /// the clean edit input and each `kl_to_original` batch. Computed once per edit case with the
    /// state as the step begins; the plan puts `point` before everything the step trains, so they
    /// do not change while it runs.
    fn frozen_prefix(
        &self,
        point: ResidualPoint,
        terms: &[LossTerm],
        state: &EditState,
        edit: &EditInput,
    ) -> Result<FrozenPrefix> {
        let model = &state.model.model;
        let through = |latents: &Latents| -> Result<Residual> {
            Ok(model.residual(latents, &state.adapters, point)?)
        };
        let clean = through(&Latents {
            embeds: edit.latents.embeds.clone(),
            layout: edit.layout(1),
        })?;
        let mut kl = HashMap::new();
        for t in terms {
            if let LossKind::KlToOriginal { over } = &t.kind {
                if kl.contains_key(over) {
                    continue;
                }
                let batches = (self.original_distributions(over)?.batches.iter())
                    .map(|(latents, _, _)| through(latents))
                    .collect::<Result<Vec<_>>>()?;
                kl.insert(over.clone(), batches);
            }
        }
        Ok(FrozenPrefix { clean, kl })
    }

    fn original_distributions(&self, over: &crate::sema::DataSpec) -> Result<&KlReference> {
        self.kl
            .get(over)
            .map(|r| r.as_ref())
            .ok_or_else(|| ExecError::internal(format!("no original distributions for {over}")))
    }

    /// `Σ weight · term` of a loss, with the forward passes shared between terms that read the
    /// same rows (the clean input, or the clean input and one set of variants).
    fn loss(
        &self,
        terms: &[LossTerm],
        state: &EditState,
        edit: &EditInput,
        values: &Values,
        prefix: Option<&FrozenPrefix>,
    ) -> Result<Tensor> {
        let mut needs: Vec<RowsNeed> = Vec::new();
        fn slot(needs: &mut Vec<RowsNeed>, key: Option<StepId>) -> usize {
            match needs.iter().position(|(k, _, _)| *k == key) {
                Some(i) => i,
                None => {
                    needs.push((key, false, Vec::new()));
                    needs.len() - 1
                }
            }
        }
        for t in terms {
            match &t.kind {
                LossKind::Nll { on } => {
                    let i = slot(&mut needs, *on);
                    needs[i].1 = true;
                }
                LossKind::RankAlign { hidden, over, .. } => {
                    let i = slot(&mut needs, Some(*over));
                    needs[i].2.push(hidden.clone());
                }
                LossKind::KlToOriginal { .. } => {}
            }
        }
        let mut outs: Vec<(Option<StepId>, RowsOut)> = Vec::new();
        for need in &needs {
            let out = self.forward_rows(need, state, edit, values, prefix)?;
            outs.push((need.0, out));
        }
        let out_of = |key: Option<StepId>| {
            outs.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, o)| o)
                .ok_or_else(|| ExecError::internal("a loss term's forward pass is missing"))
        };
        let mut total: Option<Tensor> = None;
        for t in terms {
            let value = match &t.kind {
                LossKind::Nll { on } => {
                    let o = out_of(*on)?;
                    let logits = o
                        .logits
                        .as_ref()
                        .ok_or_else(|| ExecError::internal("nll without logits"))?;
                    losses::target_nll(logits, &edit.target, o.rows)?
                }
                LossKind::RankAlign {
                    hidden,
                    over,
                    tau,
                    anchor,
                } => {
                    let o = out_of(Some(*over))?;
                    let h = o
                        .hidden
                        .iter()
                        .find(|(spec, _)| spec == hidden)
                        .map(|(_, h)| h)
                        .ok_or_else(|| {
                            ExecError::internal("rank_align without its hidden states")
                        })?;
                    losses::rank_align(h, *tau, *anchor == crate::sema::Anchor::Detached)?
                }
                LossKind::KlToOriginal { over } => self.kl_term(over, state, prefix)?,
            };
            let weighted = (value * t.weight)?;
            total = Some(match total {
                Some(acc) => (acc + weighted)?,
                None => weighted,
            });
        }
        total.ok_or_else(|| ExecError::internal("a loss without terms"))
    }

    /// One forward pass over the clean input (and the variants `key`, stacked after it).
    fn forward_rows(
        &self,
        need: &RowsNeed,
        state: &EditState,
        edit: &EditInput,
        values: &Values,
        prefix: Option<&FrozenPrefix>,
    ) -> Result<RowsOut> {
        let (key, logits, hidden) = (need.0, need.1, need.2.as_slice());
        if !logits {
            if let Some(out) =
                self.features_at_last_prompt(key, hidden, state, edit, values, prefix)?
            {
                return Ok(out);
            }
        }
        let (embeds, rows) = match key {
            None => (edit.latents.embeds.clone(), 1),
            Some(id) => {
                let v = values.variants(id)?;
                (
                    Tensor::cat(&[&edit.latents.embeds, &v.latents], 0)?,
                    1 + v.count,
                )
            }
        };
        let mut readings = Vec::new();
        let mut hooks = Hooks::new();
        for spec in hidden {
            let (_, tap) = stream_taps(&spec.stream)?
                .into_iter()
                .next()
                .ok_or_else(|| ExecError::internal("a hidden stream without a layer"))?;
            let reading = Reading::resolve(tap, values, state)?;
            if !hooks.sites().any(|s| *s == reading.site()) {
                hooks.capture(reading.site());
            }
            readings.push(reading);
        }
        let latents = Latents {
            embeds,
            layout: edit.layout(rows),
        };
        let out = if logits {
            let readout = Readout::Positions(edit.target_readout(rows));
            match prefix.filter(|_| key.is_none() && hidden.is_empty()) {
                Some(p) => p.forward(&p.clean, &latents, state, &readout)?,
                None => state
                    .model
                    .forward(&latents, &mut hooks, &state.adapters, &readout)?,
            }
        } else {
            state.model.model.forward_through(
                &latents,
                &mut hooks,
                &state.adapters,
                deepest(&readings),
            )?
        };
        let mut features = Vec::new();
        for (spec, reading) in hidden.iter().zip(&readings) {
            let value = hooks
                .captured(&reading.site())
                .first()
                .map(|t| (*t).clone())
                .ok_or_else(|| {
                    ExecError::internal(format!("nothing captured at {}", reading.site()))
                })?;
            let pooled = match spec.at {
                Pool::Last => value.narrow(1, edit.len() - 1, 1)?.squeeze(1)?,
                Pool::LastPrompt => value.narrow(1, edit.last_prompt(), 1)?.squeeze(1)?,
                Pool::Mean => value.mean(1)?,
            };
            features.push((spec.clone(), reading.apply(&pooled)?));
        }
        Ok(RowsOut {
            rows,
            logits: logits.then_some(out),
            hidden: features,
        })
    }

    /// Features that are all one layer's output at the last prompt token, the clean row first
    /// and then each variant of `key`: [`crate::model::LlavaModel::output_at`] runs only the
    /// columns up to that token, and the layer itself only at it. The clean row starts from
    /// the frozen prefix when there is one before that layer. `None` for any other features
    /// (read with hooks over the whole pass).
    fn features_at_last_prompt(
        &self,
        key: Option<StepId>,
        hidden: &[HiddenSpec],
        state: &EditState,
        edit: &EditInput,
        values: &Values,
        prefix: Option<&FrozenPrefix>,
    ) -> Result<Option<RowsOut>> {
        let mut layers = Vec::new();
        for spec in hidden {
            let reading = match stream_taps(&spec.stream)?.into_iter().next() {
                Some((_, Tap::Site(site))) => site,
                _ => return Ok(None),
            };
            match (reading, spec.at) {
                (Site::Layer(l, LayerPoint::Output), Pool::LastPrompt) => layers.push(l),
                _ => return Ok(None),
            }
        }
        let Some(&layer) = layers.first() else {
            return Ok(None);
        };
        if layers.iter().any(|&l| l != layer) {
            return Ok(None);
        }
        let (model, adapters) = (&state.model.model, &state.adapters);
        let column = edit.last_prompt();
        let output = Site::Layer(layer, LayerPoint::Output);
        let clean = match prefix.filter(|p| !p.clean.point.has_passed(&output)) {
            Some(p) => model.output_at_from(&p.clean, &edit.layout(1), adapters, layer, column)?,
            None => model.output_at(&edit.latents, adapters, layer, column)?,
        };
        let (features, rows) = match key {
            None => (clean, 1),
            Some(id) => {
                let v = values.variants(id)?;
                let variants = Latents {
                    embeds: v.latents.clone(),
                    layout: v.layout.clone(),
                };
                let variants = model.output_at(&variants, adapters, layer, column)?;
                (Tensor::cat(&[&clean, &variants], 0)?, 1 + v.count)
            }
        };
        let hidden = (hidden.iter())
            .map(|spec| (spec.clone(), features.clone()))
            .collect();
        Ok(Some(RowsOut {
            rows,
            logits: None,
            hidden,
        }))
    }

    /// `KL(p_original ‖ p_current)` over a preserve set, averaged over every position.
    fn kl_term(
        &self,
        over: &crate::sema::DataSpec,
        state: &EditState,
        prefix: Option<&FrozenPrefix>,
    ) -> Result<Tensor> {
        let reference = self.original_distributions(over)?;
        let residuals = prefix.and_then(|p| Some((p, p.kl.get(over)?)));
        let mut total: Option<Tensor> = None;
        let mut rows = 0usize;
        for (i, (latents, positions, log_p)) in reference.batches.iter().enumerate() {
            let readout = Readout::Positions(positions.clone());
            let logits = match residuals.and_then(|(p, r)| Some((p, r.get(i)?))) {
                Some((p, residual)) => p.forward(residual, latents, state, &readout)?,
                None => {
                    let mut hooks = Hooks::new();
                    (state.model).forward(latents, &mut hooks, &state.adapters, &readout)?
                }
            };
            let kl = (losses::kl_to_original(log_p, &logits)? * positions.len() as f64)?;
            rows += positions.len();
            total = Some(match total {
                Some(t) => (t + kl)?,
                None => kl,
            });
        }
        let total = total
            .ok_or_else(|| ExecError::internal(format!("the preserve set {over} is empty")))?;
        Ok((total / rows.max(1) as f64)?)
    }
}

/// One forward pass a loss needs: over the clean input and the variants `.0` (`None`: the clean
/// input alone), whether it reads logits, and the hidden states it reads.
type RowsNeed = (Option<StepId>, bool, Vec<HiddenSpec>);

/// What [`Executor::frozen_prefix`] computes once per edit case: the residual streams at the
/// plan's point, where each optimisation step starts.
struct FrozenPrefix {
    /// The clean edit input's, `(1, T, hidden)`.
    clean: Residual,
    /// Each batch's of each `kl_to_original` preserve set, in batch order.
    kl: HashMap<crate::sema::DataSpec, Vec<Residual>>,
}

impl FrozenPrefix {
    /// The pass over `latents` from `residual` (one of the residuals computed for those
    /// latents) on, with no hooks.
    fn forward(
        &self,
        residual: &Residual,
        latents: &Latents,
        state: &EditState,
        readout: &Readout,
    ) -> Result<Tensor> {
        let mut hooks = Hooks::new();
        Ok((state.model.model).forward_from(
            residual,
            &latents.layout,
            &mut hooks,
            &state.adapters,
            readout,
        )?)
    }
}

/// `scale · m P` with `P` the projector of the space's subspace at `layer` (for a tensor stored
/// transposed, `(scale · mᵀ P)ᵀ`).
fn project(
    m: &Tensor,
    pr: &Projection,
    layer: usize,
    transposed: bool,
    values: &Values,
    cast: &mut HashMap<(StepId, usize), Subspace>,
) -> Result<Tensor> {
    let sub = match cast.get(&(pr.space, layer)) {
        Some(s) => s.clone(),
        None => {
            let s = values
                .space(pr.space)?
                .get(Some(layer))
                .ok_or_else(|| {
                    ExecError::internal(format!(
                        "space {} has no {}",
                        pr.space,
                        layer_name(Some(layer))
                    ))
                })?
                .cast(m.dtype(), m.device())?;
            cast.insert((pr.space, layer), s.clone());
            s
        }
    };
    if transposed {
        return Ok((sub.project_rows(&m.t()?)? * pr.scale)?.t()?.contiguous()?);
    }
    Ok((sub.project_rows(m)? * pr.scale)?)
}

impl Execute for ops::Train {
    fn execute(&self, ex: &mut Executor, cx: &mut StepContext<'_>) -> Result<()> {
        ex.train(cx.step, cx.state, cx.edit()?, cx.values)?;
        cx.values.insert(cx.step.id, Value::Done);
        Ok(())
    }
}

impl Execute for ops::Freeze {
    fn execute(&self, ex: &mut Executor, cx: &mut StepContext<'_>) -> Result<()> {
        ex.frozen
            .extend(self.params.iter().map(|p| p.owner.clone()));
        cx.values.insert(cx.step.id, Value::Done);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sema::NodeId;
    use candle_core::Device;

    #[test]
    fn projection_right_multiplies_by_the_projector_times_scale() {
        // Space spanned by (1, 1, 0)/√2 and (0, 0, 1) in R³; P by hand.
        let s = 0.5f64.sqrt();
        let basis = Tensor::new(&[[s, 0.0], [s, 0.0], [0.0, 1.0]], &Device::Cpu).unwrap();
        let sub = Subspace::from_orthonormal_columns(basis).unwrap();
        let p = [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]];
        let g = [[1.0, 2.0, 3.0], [-1.0, 0.0, 4.0]];
        let mut values = Values::default();
        values.insert(
            NodeId(7),
            crate::exec::values::Value::Space(crate::exec::values::PerLayer(vec![(Some(2), sub)])),
        );
        let pr = Projection {
            kind: ProjectKind::Grad,
            param: 0,
            path: "#1.B".into(),
            layers: None,
            space: NodeId(7),
            scale: 2.0 / 3.0,
        };
        let gt = Tensor::new(&g, &Device::Cpu).unwrap();
        let out = project(&gt, &pr, 2, false, &values, &mut HashMap::new())
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        for i in 0..2 {
            for j in 0..3 {
                let want: f64 = (0..3).map(|k| g[i][k] * p[k][j]).sum::<f64>() * 2.0 / 3.0;
                assert!((out[i][j] - want).abs() < 1e-12, "{out:?}");
            }
        }
        assert!(project(&gt, &pr, 3, false, &values, &mut HashMap::new()).is_err());
        // A tensor stored transposed is projected on its columns.
        let back = project(&gt.t().unwrap(), &pr, 2, true, &values, &mut HashMap::new())
            .unwrap()
            .t()
            .unwrap()
            .to_vec2::<f64>()
            .unwrap();
        assert_eq!(back, out);
    }
}
