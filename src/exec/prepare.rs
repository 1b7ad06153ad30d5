//! The prepare stage: case-independent work, once per run, with the on-disk cache.
//!
//! 1. The original model's next-token distributions on the preserve sets of any
//!    `kl_to_original` term (taken before anything is attached).
//! 2. Which prepare results are needed: a cached step is loaded instead of computed, so its own
//!    inputs are not needed (a cached null space needs no covariance pass).
//! 3. The steps in order. Covariances over the same preserve set that see the unedited model
//!    (those with a cache key) share one pass over the samples, accumulating `XᵀX` at every
//!    requested site through hooks without keeping activations. LoRA initialisation follows
//!    ELoRA Eq. 8: the top-`r` SVD of `W·P` (`P` the null-space projector), `B = U'√Σ'`,
//!    `A = √Σ' V'ᵀ`, and `W ← W − (alpha/rank)·BA` so the adapted layer starts equal to `W`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

use crate::eval::EditState;
use crate::exec::cache::{short, CacheLock};
use crate::exec::error::{ExecError, Result};
use crate::exec::executor::{in_step, Executor, KlReference};
use crate::exec::leak;
use crate::exec::ops::{Execute, StepContext};
use crate::exec::rng;
use crate::exec::sites::{layer_name, linear_sites, stream_taps};
use crate::exec::taps::Reading;
use crate::exec::values::{LoraHandle, LoraSlot, PerLayer, Value, Values};
use crate::linalg::{svd, CovarianceAccumulator, Subspace};
use crate::model::{Encoded, Hooks, Lora, PadSide, Readout, VisionLanguageModel};
use crate::plan::{Stage, Step, StepId};
use crate::sema::ops;
use crate::sema::site::Stream;
use crate::sema::{DataSpec, LoraInit, LossKind, Op};

/// Preserve sequences per forward pass.
pub const PRESERVE_BATCH: usize = 32;

/// The tensor name of a layer's entry in a cache file.
pub(crate) fn layer_key(layer: Option<usize>) -> String {
    match layer {
        Some(l) => format!("layer.{l}"),
        None => "embed".into(),
    }
}

pub(crate) fn parse_layer_key(key: &str) -> Option<Option<usize>> {
    if key == "embed" {
        return Some(None);
    }
    key.strip_prefix("layer.")?.parse().ok().map(Some)
}

impl Executor {
    /// Runs the prepare stage on `state` (the unedited model) and keeps its results.
    pub fn prepare(&mut self, state: &mut EditState) -> Result<()> {
        // Held to the end of the stage: concurrent runs with the same entries compute them once.
        let _lock = self.lock_cache();
        let mut kl_sets: Vec<DataSpec> = Vec::new();
        for step in &self.plan.steps {
            if let Op::Train(ops::Train { loss: terms, .. }) = &step.op {
                for t in terms {
                    if let LossKind::KlToOriginal { over } = &t.kind {
                        if !kl_sets.contains(over) {
                            kl_sets.push(over.clone());
                        }
                    }
                }
            }
        }
        for over in kl_sets {
            let reference = self.kl_reference(&over, state)?;
            self.kl.insert(over, Arc::new(reference));
        }

        let steps: Vec<Step> = self.plan.stage(Stage::Prepare).cloned().collect();
        let hits: HashSet<StepId> = steps
            .iter()
            .filter(|s| {
                matches!(s.cache.as_ref(), Some(k) if matches!(k.kind, "covariance" | "space"))
                    && self.load_cached(s).is_some_and(|t| {
                        // A null space is only reused with the eigenvalues its leak is computed from.
                        !matches!(s.op, Op::NullSpace(_)) || leak::split_entry(t).is_some()
                    })
            })
            .map(|s| s.id)
            .collect();
        self.note_damaged_cache();
        let needed = needed_steps(&self.plan.steps, &steps, &hits);
        let mut values = Values::default();
        for step in &steps {
            if !needed.contains(&step.id) || values.contains(step.id) {
                continue;
            }
            self.step_clock = Some(std::time::Instant::now());
            self.prepare_step(step, &steps, &hits, &needed, state, &mut values)
                .map_err(|e| in_step(step, None, e))?;
        }
        self.prepared = values;
        self.step_clock = None;
        self.note_damaged_cache();
        Ok(())
    }

    /// Says which cache entries were found damaged (and are being recomputed).
    fn note_damaged_cache(&mut self) {
        for report in self.cache.take_reports() {
            self.log.note(report);
        }
    }

    /// Locks this plan's cache entries against other processes for the prepare stage; a lock
    /// that cannot be taken is reported and the run goes on without it (entries are still
    /// written atomically, at worst computed twice).
    fn lock_cache(&mut self) -> Option<CacheLock> {
        let recipes: Vec<String> = (self.plan.steps.iter())
            .filter_map(|s| s.cache.as_ref().map(|k| k.recipe.clone()))
            .collect();
        let log = &mut self.log;
        let lock = self.cache.lock(&recipes, |path| {
            log.note(format!(
                "waiting for another run that prepares the same cache entries (lock {})",
                path.display()
            ))
        });
        match lock {
            Ok(lock) => lock,
            Err(e) => {
                self.log.note(format!(
                    "warning: could not lock the cache ({e}); going on without the lock"
                ));
                None
            }
        }
    }

    /// The cached result of a step, if the plan gave it a key and the cache holds it: the one
    /// place the executor reads the cache (keys and kinds are the planner's).
    pub(crate) fn load_cached(&mut self, step: &Step) -> Option<HashMap<String, Tensor>> {
        let key = step.cache.as_ref()?;
        self.cache.load(key.kind, &key.recipe, &Device::Cpu)
    }

    fn prepare_step(
        &mut self,
        step: &Step,
        steps: &[Step],
        hits: &HashSet<StepId>,
        needed: &HashSet<StepId>,
        state: &mut EditState,
        values: &mut Values,
    ) -> Result<()> {
        if hits.contains(&step.id) {
            let tensors = self
                .load_cached(step)
                .ok_or_else(|| ExecError::internal("a cache entry vanished during the run"))?;
            let tensors = match &step.op {
                Op::NullSpace(_) => {
                    let (basis, spectra) = leak::split_entry(tensors).ok_or_else(|| {
                        ExecError::internal("a null-space cache entry lost its eigenvalues")
                    })?;
                    self.spectra.insert(step.id, spectra);
                    basis
                }
                _ => tensors,
            };
            let value = match &step.op {
                Op::Covariance(_) => Value::Covariance(from_entry(tensors, Ok)?),
                _ => Value::Space(from_entry(tensors, |t| {
                    Ok(Subspace::from_orthonormal_columns(t)?)
                })?),
            };
            self.reused(step);
            values.insert(step.id, value);
            return Ok(());
        }
        let computed: Vec<StepId> = match &step.op {
            Op::Covariance(ops::Covariance { over, .. }) if step.cache.is_some() => {
                // The plan's group of covariances sharing this pass, less those loaded or not needed.
                let group: Vec<(StepId, Stream)> = steps
                    .iter()
                    .filter(|s| s.id == step.id || step.shares_pass.contains(&s.id))
                    .filter(|s| needed.contains(&s.id) && !hits.contains(&s.id))
                    .filter_map(|s| match &s.op {
                        Op::Covariance(ops::Covariance { stream, .. }) => {
                            Some((s.id, stream.clone()))
                        }
                        _ => None,
                    })
                    .collect();
                let mut ids = Vec::new();
                for (id, cov) in self.covariances(&group, over, state, values)? {
                    values.insert(id, Value::Covariance(cov));
                    ids.push(id);
                }
                ids
            }
            _ => {
                self.run_step(step, steps, state, None, values)?;
                vec![step.id]
            }
        };
        for id in computed {
            let s = self.step(id)?.clone();
            let mut tensors: HashMap<String, Tensor> = match values.get(id)? {
                Value::Covariance(c) => c.iter().map(|(l, t)| (layer_key(*l), t.clone())).collect(),
                Value::Space(sp) => sp
                    .iter()
                    .map(|(l, t)| (layer_key(*l), t.basis().clone()))
                    .collect(),
                _ => continue,
            };
            if let Some(spectra) = self.spectra.get(&id) {
                tensors.extend(leak::eigenvalue_tensors(spectra)?);
            }
            self.store_entry(&s, &tensors);
        }
        Ok(())
    }

    /// Says that a step's result came from the cache.
    pub(crate) fn reused(&mut self, step: &Step) {
        let what = describe(step);
        if let Some(k) = &step.cache {
            let full = self.cache.key(&k.recipe);
            self.log.note(format!(
                "reusing cached {what} of step {} ({}) (key {}…)",
                step.id,
                step.origin.at,
                short(&full)
            ));
        }
    }

    /// Writes a step's result under the plan's key (if it has one); a failure is reported and
    /// the run goes on.
    pub(crate) fn store_entry(&mut self, step: &Step, tensors: &HashMap<String, Tensor>) {
        let Some(key) = step.cache.as_ref() else {
            return;
        };
        let (kind, recipe) = (key.kind, key.recipe.as_str());
        match self.cache.store(kind, recipe, tensors) {
            Ok(Some(_)) => {
                let key = self.cache.key(recipe);
                let took = self.step_clock.map_or(String::new(), |t| {
                    format!(" in {:.1} s", t.elapsed().as_secs_f64())
                });
                self.log.note(format!(
                    "computed {} of step {} ({}){took}, cached (key {}…)",
                    describe(step),
                    step.id,
                    step.origin.at,
                    short(&key)
                ));
            }
            Ok(None) => {}
            Err(e) => self.log.note(format!(
                "warning: could not write the cache ({e}); going on without it"
            )),
        }
    }

    /// `XᵀX / N` of each requested stream over the samples of `over`, in one pass.
    pub(crate) fn covariances(
        &mut self,
        requests: &[(StepId, Stream)],
        over: &DataSpec,
        state: &EditState,
        values: &Values,
    ) -> Result<Vec<(StepId, PerLayer<Tensor>)>> {
        let samples = self.samples(over)?;
        let mut readings: Vec<(StepId, Option<usize>, Reading)> = Vec::new();
        for (id, stream) in requests {
            for (layer, tap) in stream_taps(stream)? {
                readings.push((*id, layer, Reading::resolve(tap, values, state)?));
            }
        }
        let mut accumulators: Vec<Option<CovarianceAccumulator>> = vec![None; readings.len()];
        let encoded = encode_sorted(state, &samples)?;
        let total = encoded.len();
        let mut done = 0;
        for chunk in encoded.chunks(PRESERVE_BATCH) {
            let batch = state.model.batch(chunk, PadSide::Right)?;
            let latents = state.model.embed(&batch)?;
            let latents = latents.with_embeds(latents.embeds.detach());
            let mut hooks = Hooks::new();
            let mut sites: Vec<_> = readings.iter().map(|(_, _, r)| r.site()).collect();
            sites.sort();
            sites.dedup();
            for s in &sites {
                hooks.capture(*s);
            }
            state
                .model
                .model
                .capture(&latents, &mut hooks, &state.adapters)?;
            let captured = hooks.take_captured();
            for ((_, _, reading), acc) in readings.iter().zip(accumulators.iter_mut()) {
                let (site, value) = captured
                    .iter()
                    .find(|(s, _)| *s == reading.site())
                    .ok_or_else(|| {
                        ExecError::internal(format!("nothing captured at {}", reading.site()))
                    })?;
                let rows = match site {
                    crate::model::site::Site::Layer(..) => latents.layout.valid_rows(value)?,
                    _ => value.clone(),
                };
                let x = reading.apply(&rows.detach())?;
                let width = x.dims().last().copied().unwrap_or(0);
                let acc = match acc {
                    Some(a) => a,
                    None => acc.insert(CovarianceAccumulator::new(width)?),
                };
                acc.add(&x)?;
            }
            done += chunk.len();
            self.log
                .bar
                .set_message(format!("prepare: {done}/{total} preserve samples"));
        }
        let mut out: Vec<(StepId, PerLayer<Tensor>)> = Vec::new();
        for ((id, layer, _), acc) in readings.iter().zip(accumulators) {
            let acc = acc.ok_or_else(|| ExecError::Preserve {
                reason: format!("the preserve set {over} holds no sample"),
                help: "ask for at least one sample".into(),
            })?;
            let mean = acc.mean()?;
            match out.iter_mut().find(|(i, _)| i == id) {
                Some((_, per)) => per.0.push((*layer, mean)),
                None => out.push((*id, PerLayer(vec![(*layer, mean)]))),
            }
        }
        Ok(out)
    }

    /// The original model's log-probabilities at every position of the preserve set `over`.
    fn kl_reference(&mut self, over: &DataSpec, state: &EditState) -> Result<KlReference> {
        let samples = self.samples(over)?;
        let encoded = encode_sorted(state, &samples)?;
        let mut batches = Vec::new();
        for chunk in encoded.chunks(PRESERVE_BATCH) {
            let batch = state.model.batch(chunk, PadSide::Right)?;
            let latents = state.model.embed(&batch)?;
            let latents = latents.with_embeds(latents.embeds.detach());
            let positions: Vec<(usize, usize)> = (0..latents.layout.batch())
                .flat_map(|r| (0..latents.layout.seq()).map(move |c| (r, c)))
                .filter(|&(r, c)| latents.layout.is_valid(r, c))
                .collect();
            let logits = state.model.forward(
                &latents,
                &mut Hooks::new(),
                &state.adapters,
                &Readout::Positions(positions.clone()),
            )?;
            let log_p =
                candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, candle_core::D::Minus1)?
                    .detach();
            batches.push((latents, positions, log_p));
        }
        Ok(KlReference { batches })
    }

    /// Attaches a LoRA at every layer of its site (ELoRA Eq. 8 for `null_space_svd`).
    pub(crate) fn attach_lora(
        &mut self,
        step: &Step,
        state: &mut EditState,
        values: &mut Values,
    ) -> Result<()> {
        let Op::Lora(ops::Lora {
            site,
            rank,
            alpha,
            init,
            ..
        }) = &step.op
        else {
            return Err(ExecError::internal(
                "attach_lora on a step that is not `lora`",
            ));
        };
        let rank = *rank;
        let scaling = alpha / rank as f64;
        let dtype = state.model.dtype();
        // The factors are trained: f32 even on a half-precision model.
        let factors = crate::model::precision::trained_dtype(dtype);
        let device = state.model.device().clone();
        let sites = linear_sites(site)?;
        let cached = self.load_cached(step);
        let mut fresh: HashMap<String, Tensor> = HashMap::new();
        let mut slots = Vec::new();
        for s in &sites {
            let w = state.model.linear_weight(*s)?;
            let (dout, din) = w.dims2()?;
            let (a, b) = match init {
                LoraInit::Kaiming => {
                    let mut r = rng::stream(
                        self.seed,
                        "lora-kaiming",
                        u64::from(step.id.0) << 16 | s.layer as u64,
                    );
                    let bound = 1.0 / (din as f64).sqrt();
                    let a: Vec<f32> = (0..rank * din)
                        .map(|_| (bound * (2.0 * r.uniform() - 1.0)) as f32)
                        .collect();
                    let a = Tensor::from_vec(a, (rank, din), &device)?.to_dtype(factors)?;
                    let b = Tensor::zeros((dout, rank), factors, &device)?;
                    (a, b)
                }
                LoraInit::NullSpaceSvd { space } => {
                    let name = |t: &str| format!("layer.{}.{t}", s.layer);
                    let stored = cached.as_ref().and_then(|c| {
                        Some((c.get(&name("A"))?.clone(), c.get(&name("B"))?.clone()))
                    });
                    let (a, b) = match stored {
                        Some((a, b)) if a.dims() == [rank, din] && b.dims() == [dout, rank] => {
                            (a, b)
                        }
                        _ => {
                            let sub =
                                values.space(*space)?.get(Some(s.layer)).ok_or_else(|| {
                                    ExecError::internal(format!(
                                        "space {space} has no {}",
                                        layer_name(Some(s.layer))
                                    ))
                                })?;
                            let (a, b) = null_space_init(&w, sub, rank).map_err(|e| match e {
                                ExecError::Numeric { reason, help } => ExecError::Numeric {
                                    reason: format!("{s}: {reason}"),
                                    help,
                                },
                                other => other,
                            })?;
                            fresh.insert(name("A"), a.clone());
                            fresh.insert(name("B"), b.clone());
                            (a, b)
                        }
                    };
                    // W ← W − (alpha/rank)·BA: the adapted layer starts equal to W.
                    // (On the CPU in f64, where A and B were computed.)
                    let ba = b.to_dtype(DType::F64)?.matmul(&a.to_dtype(DType::F64)?)?;
                    let w64 = w.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
                    let moved = (w64 - (ba * scaling)?)?;
                    state
                        .model
                        .replace_linear_weight(*s, moved.to_dtype(dtype)?.to_device(&device)?)?;
                    (
                        a.to_dtype(factors)?.to_device(&device)?,
                        b.to_dtype(factors)?.to_device(&device)?,
                    )
                }
            };
            let index = state.adapters.loras(*s).len();
            state.adapters.lora(*s, Lora { a, b, scaling });
            slots.push(LoraSlot { site: *s, index });
        }
        if !fresh.is_empty() {
            self.store_entry(step, &fresh);
        } else if cached.is_some() {
            self.reused(step);
        }
        values.insert(
            step.id,
            Value::Lora(LoraHandle {
                rank,
                scaling,
                slots,
            }),
        );
        Ok(())
    }
}

/// ELoRA Eq. 8 for one weight `W` `(dout, din)` and null space `P = UUᵀ`: the top-`rank` SVD
/// `U'Σ'V'ᵀ` of `W·P` gives `B = U'√Σ'` `(dout, rank)` and `A = √Σ'V'ᵀ` `(rank, din)`, in f64.
pub fn null_space_init(w: &Tensor, space: &Subspace, rank: usize) -> Result<(Tensor, Tensor)> {
    if space.rank() < rank {
        return Err(ExecError::Numeric {
            reason: format!(
                "the null space has {} directions, fewer than the LoRA rank {rank}, so W·P has rank below {rank}",
                space.rank()
            ),
            help: "raise the null space's `below` threshold, or lower the LoRA rank".into(),
        });
    }
    let w = w.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
    let projected = space.cast(DType::F64, &Device::Cpu)?.project_rows(&w)?;
    let d = svd(&projected)?;
    let root = d.s.narrow(0, 0, rank)?.sqrt()?;
    let b = d.u.narrow(1, 0, rank)?.broadcast_mul(&root.unsqueeze(0)?)?;
    let a =
        d.vt.narrow(0, 0, rank)?
            .broadcast_mul(&root.unsqueeze(1)?)?;
    Ok((a.contiguous()?, b.contiguous()?))
}

/// A prepare result rebuilt from a cache entry's tensors.
fn from_entry<T>(
    tensors: HashMap<String, Tensor>,
    make: impl Fn(Tensor) -> Result<T>,
) -> Result<PerLayer<T>> {
    let mut out = Vec::new();
    for (name, t) in tensors {
        let layer = parse_layer_key(&name).ok_or_else(|| {
            ExecError::internal(format!("cache entry holds an unknown tensor `{name}`"))
        })?;
        out.push((layer, make(t)?));
    }
    out.sort_by_key(|(l, _)| *l);
    Ok(PerLayer(out))
}

/// What a cached step holds, for messages.
fn describe(step: &Step) -> String {
    match &step.op {
        Op::Covariance(ops::Covariance { stream, over }) => {
            format!("covariance of {} over {over}", stream.path)
        }
        Op::NullSpace(_) => "null space".into(),
        Op::TopSpace(_) => "top space".into(),
        Op::Lora(ops::Lora { site, .. }) => format!("LoRA initialisation (Eq. 8) of {site}"),
        Op::IncontextMemory(_) => "in-context memory".into(),
        Op::ContrastiveEncoders(_) => "contrastive encoders".into(),
        other => other.name().to_string(),
    }
}

/// Encodes preserve samples, shortest first (less padding per batch).
fn encode_sorted(
    state: &EditState,
    samples: &[crate::exec::preserve::Sample],
) -> Result<Vec<Encoded>> {
    let mut encoded = samples
        .iter()
        .map(|s| {
            let images: Vec<_> = s.image.iter().cloned().collect();
            state.model.encode(&s.text, &images)
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    encoded.sort_by_key(Encoded::len);
    Ok(encoded)
}

/// The prepare steps whose results are needed: state-changing steps always; a value step when a
/// needed step (of any stage) consumes it and it is not loaded from the cache; inputs of a cache
/// hit are not needed for it.
pub fn needed_steps(all: &[Step], prepare: &[Step], hits: &HashSet<StepId>) -> HashSet<StepId> {
    let mut needed: HashSet<StepId> = HashSet::new();
    let mut consumed: HashSet<StepId> = HashSet::new();
    for s in all.iter().filter(|s| s.stage != Stage::Prepare) {
        consumed.extend(s.inputs.iter().copied());
        // A train step's body consumes through the train step.
    }
    for s in prepare.iter().rev() {
        let value_only = matches!(s.op, Op::Covariance(_) | Op::NullSpace(_) | Op::TopSpace(_));
        if !value_only || consumed.contains(&s.id) {
            needed.insert(s.id);
            if !hits.contains(&s.id) {
                consumed.extend(s.inputs.iter().copied());
            }
        }
    }
    needed
}

impl Execute for ops::Covariance {
    fn execute(&self, ex: &mut Executor, cx: &mut StepContext<'_>) -> Result<()> {
        let requests = [(cx.step.id, self.stream.clone())];
        for (id, c) in ex.covariances(&requests, &self.over, cx.state, cx.values)? {
            cx.values.insert(id, Value::Covariance(c));
        }
        Ok(())
    }
}

impl Execute for ops::Lora {
    fn execute(&self, ex: &mut Executor, cx: &mut StepContext<'_>) -> Result<()> {
        ex.attach_lora(cx.step, cx.state, cx.values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::null_space;
    use crate::linalg::NullSpaceRule;
    use crate::sema::NodeId;

    #[test]
    fn eq8_moves_the_null_space_part_of_w_into_b_a() {
        // A covariance with two large and two tiny eigen-directions in R⁴.
        let x = Tensor::new(
            &[
                [1.0f64, 2.0, 0.0, 0.0],
                [2.0, -1.0, 0.0, 0.0],
                [0.5, 0.5, 0.0, 0.0],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let c = x.t().unwrap().matmul(&x).unwrap();
        let space = null_space(&c, NullSpaceRule::Below(1e-9)).unwrap();
        assert_eq!(space.rank(), 2);
        let w = Tensor::new(
            &[
                [1.0f64, 2.0, 3.0, 4.0],
                [0.0, 1.0, 0.0, -1.0],
                [2.0, 0.0, 1.0, 0.0],
            ],
            &Device::Cpu,
        )
        .unwrap();
        let (a, b) = null_space_init(&w, &space, 2).unwrap();
        assert_eq!((a.dims(), b.dims()), (&[2, 4][..], &[3, 2][..]));
        // BA = W·P: the part of W acting on the null space, and A·x = 0 on preserved rows.
        let ba = b.matmul(&a).unwrap();
        let wp = space.project_rows(&w).unwrap();
        let diff = (ba.clone() - wp)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(diff < 1e-10, "{diff}");
        let ax = a
            .matmul(&x.t().unwrap())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(ax < 1e-10, "{ax}");
        // (W − BA) + BA = W.
        let restored = ((w.clone() - &ba).unwrap() + ba).unwrap();
        let diff = (restored - w.clone())
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(diff < 1e-12);
        // A rank above the space's is refused.
        assert!(matches!(
            null_space_init(&w, &space, 3),
            Err(ExecError::Numeric { .. })
        ));
    }

    #[test]
    fn cached_steps_need_no_inputs() {
        use crate::plan::{Device as PlanDevice, Step};
        use crate::sema::{Cut, Origin};
        let origin = Origin {
            at: "r:1:1".into(),
            via: vec![],
            name: None,
        };
        let mk = |id: u32, op: Op, inputs: Vec<u32>, stage: Stage| Step {
            id: NodeId(id),
            stage,
            parent: None,
            inputs: inputs.into_iter().map(NodeId).collect(),
            output: None,
            device: PlanDevice::Cpu,
            cache: None,
            hoisted: false,
            shares_pass: Vec::new(),
            frozen_prefix: None,
            origin: origin.clone(),
            op,
        };
        let null = |c: u32| {
            Op::NullSpace(ops::NullSpace {
                covariance: NodeId(c),
                cut: Cut::Below(0.1),
                rank: None,
            })
        };
        let cov = Op::Freeze(ops::Freeze { params: vec![] }); // stands in for a state-changing step
        let steps = vec![
            mk(0, null(9), vec![], Stage::Prepare),
            mk(1, null(0), vec![0], Stage::Prepare),
            mk(2, cov, vec![], Stage::Prepare),
            mk(3, null(1), vec![1], Stage::PerEdit),
        ];
        let prepare: Vec<Step> = steps[..3].to_vec();
        let none = needed_steps(&steps, &prepare, &HashSet::new());
        assert!(
            none.contains(&NodeId(0)) && none.contains(&NodeId(1)) && none.contains(&NodeId(2))
        );
        let hit = needed_steps(&steps, &prepare, &HashSet::from([NodeId(1)]));
        assert!(!hit.contains(&NodeId(0)) && hit.contains(&NodeId(1)) && hit.contains(&NodeId(2)));
    }
}
