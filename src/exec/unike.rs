//! UniKE's operations (§3.2-3.3, Appendix D): the in-context memory, the contrastive
//! truthfulness and semantic encoders, the truthfulness direction ζ, extra FFN neurons regulated
//! by ζ, latent in-context editing with a semantic gate, and `remember`.
//!
//! - **Memory**: for each (question, true answer, hallucinated answer) triplet, `Q + A+` and
//!   `Q + A−` run through the unedited model; at each memory layer `h_sem` is the hidden state of
//!   the question's last token, `h_pos` / `h_neg` that of the last token of each full input.
//! - **Encoders** (Eq. 4-5): per layer a truthfulness and a semantic MLP (`depth` linear layers of
//!   width `hidden`, GELU between), trained with Adam on random batches: Eq. 4 pulls truthful
//!   encodings together and away from hallucinated ones, Eq. 5 pulls `h_sem` towards its own
//!   `h_pos`, `h_neg` and away from other triplets'; `s` is cosine similarity.
//! - **ζ** (§3.3): the mean truthfulness encoding of `h_pos` minus that of `h_neg`, per layer.
//! - **Extra neurons** (Eq. 3, 6): `FFN(q) + act(q Kᵀ + b)(V + β·W_ζ ζ)` with `K ~ N(0, 0.02²)`,
//!   `b = 0`, `V = 0`, `W_ζ = 0`.
//! - **Latent ICL** (Eq. 2, 7): at an attention output, per token, the `top_k` memory entries
//!   whose `h_sem` is most cosine-similar to the layer input are attended with the layer input as
//!   query (`softmax(q·h_pos/√d)`), giving `h_know`; the output becomes `α·h + (1 − α)·h_know`,
//!   `α` fixed or `clamp(cos(Enc_sem(h_know), Enc_sem(h[last])), 0, 1)`.
//! - **remember**: the edit case's `h_sem` (last prompt token) and `h_pos` (last token of prompt +
//!   target), read with the memory's own shift switched off, join the memory.
//!
//! The memory and the regulated values live in the evaluator's state: the latent-ICL shift is a
//! closure holding its memory, so restoring a snapshot restores the memory; [`Side`] maps the
//! installed closures and value tensors back to what they were built from.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, TensorId, Var, D};

use crate::eval::EditState;
use crate::exec::error::{ExecError, Result};
use crate::exec::optim::Optimizer;
use crate::exec::rng::Rng;
use crate::model::adapters::ShiftFn;
use crate::model::hooks::SiteView;
use crate::model::{ExtraNeurons, Shift};
use crate::sema::Optimizer as OptimizerSpec;

/// One memory layer: every entry's unit-norm `h_sem` (retrieval keys) and `h_pos` (attended
/// values), and the triplets' `h_neg`.
#[derive(Debug, Clone)]
pub struct MemoryLayer {
    pub layer: usize,
    pub sem: Tensor,
    pub pos: Tensor,
    pub neg: Tensor,
    /// `sem` with unit rows, for cosine retrieval.
    pub sem_unit: Tensor,
    /// Triplet entries (the rest were added by `remember`).
    pub triplets: usize,
}

/// A memory: one [`MemoryLayer`] per layer of its stream.
#[derive(Debug, Clone)]
pub struct Memory {
    pub layers: Vec<MemoryLayer>,
}

fn unit_rows(x: &Tensor) -> candle_core::Result<Tensor> {
    let norms = (x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()? + 1e-12)?;
    x.broadcast_div(&norms)
}

impl Memory {
    /// A memory from per-layer `(layer, h_sem, h_pos, h_neg)`, each `(N, d)`.
    pub fn new(layers: Vec<(usize, Tensor, Tensor, Tensor)>) -> Result<Memory> {
        let layers = layers
            .into_iter()
            .map(|(layer, sem, pos, neg)| {
                Ok(MemoryLayer {
                    layer,
                    sem_unit: unit_rows(&sem)?,
                    triplets: sem.dim(0)?,
                    sem,
                    pos,
                    neg,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Memory { layers })
    }

    pub fn layer(&self, layer: usize) -> Option<&MemoryLayer> {
        self.layers.iter().find(|m| m.layer == layer)
    }

    /// This memory with one more entry per layer: `(layer, h_sem (d,), h_pos (d,))`.
    pub fn with(&self, added: &[(usize, Tensor, Tensor)]) -> Result<Memory> {
        let mut layers = self.layers.clone();
        for (layer, sem, pos) in added {
            let m = layers
                .iter_mut()
                .find(|m| m.layer == *layer)
                .ok_or_else(|| ExecError::internal(format!("the memory has no layer {layer}")))?;
            let sem = sem.reshape((1, ()))?.to_dtype(m.sem.dtype())?;
            let pos = pos.reshape((1, ()))?.to_dtype(m.pos.dtype())?;
            m.sem_unit = Tensor::cat(&[&m.sem_unit, &unit_rows(&sem)?], 0)?;
            m.sem = Tensor::cat(&[&m.sem, &sem], 0)?;
            m.pos = Tensor::cat(&[&m.pos, &pos], 0)?;
        }
        Ok(Memory { layers })
    }

    /// Entries per layer (triplets plus remembered edits).
    pub fn entries(&self) -> usize {
        self.layers.first().map_or(0, |m| m.sem.dim(0).unwrap_or(0))
    }
}

/// A multi-layer perceptron: linear layers with GELU between (none after the last).
#[derive(Debug, Clone)]
pub struct Mlp {
    /// `(weight (out, in), bias (out,))` per linear layer.
    pub layers: Vec<(Tensor, Tensor)>,
}

impl Mlp {
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut x = x.clone();
        let last = self.layers.len().saturating_sub(1);
        for (i, (w, b)) in self.layers.iter().enumerate() {
            x = x.broadcast_matmul(&w.t()?)?.broadcast_add(b)?;
            if i < last {
                x = x.gelu_erf()?;
            }
        }
        Ok(x)
    }
}

/// The two encoders of one memory layer.
#[derive(Debug, Clone)]
pub struct EncoderPair {
    pub layer: usize,
    pub truth: Mlp,
    pub semantic: Mlp,
}

/// Encoders of every memory layer.
#[derive(Debug, Clone)]
pub struct Encoders {
    pub layers: Vec<EncoderPair>,
}

impl Encoders {
    pub fn layer(&self, layer: usize) -> Option<&EncoderPair> {
        self.layers.iter().find(|e| e.layer == layer)
    }
}

/// What the executor installed that the state cannot say by itself.
#[derive(Default, Clone)]
pub struct Side {
    /// Latent-ICL closures (by address) → the memory each holds.
    pub memories: HashMap<usize, Arc<Memory>>,
    /// Installed regulated value tensors → `(V, W_ζ)` they were computed from.
    pub regulated: HashMap<TensorId, (Tensor, Tensor)>,
}

/// The address identifying a shift closure.
pub fn closure_key(f: &ShiftFn) -> usize {
    Arc::as_ptr(f) as *const () as usize
}

/// How much of the retrieved state enters (Eq. 2 / Eq. 7).
#[derive(Clone)]
pub enum Gate {
    Fixed(f64),
    Semantic(Arc<Encoders>),
}

/// Eq. 2 (and 7) at one layer: the shift `(1 − α)(h_know − h)` of an attention output `h`.
pub fn icl_shift(
    view: &SiteView,
    memory: &Memory,
    layer: usize,
    top_k: usize,
    gate: &Gate,
) -> candle_core::Result<Tensor> {
    let fail = |m: String| candle_core::Error::Msg(m);
    let m = memory
        .layer(layer)
        .ok_or_else(|| fail(format!("the memory has no layer {layer}")))?;
    let h = view.value;
    let (b, t, d) = h.dims3()?;
    let query = view
        .block_input
        .ok_or_else(|| fail("latent ICL needs the layer input".into()))?;
    let q = query.reshape((b * t, d))?;
    let dtype = q.dtype();
    let n = m.sem_unit.dim(0)?;
    let k = top_k.min(n).max(1);
    // Retrieval: cosine similarity of each token's layer input with every h_sem; top k on the CPU.
    let sims = unit_rows(&q.detach())?
        .matmul(&m.sem_unit.to_dtype(dtype)?.to_device(q.device())?.t()?)?
        .to_dtype(DType::F32)?
        .to_device(&Device::Cpu)?
        .to_vec2::<f32>()?;
    let mut index: Vec<u32> = Vec::with_capacity(b * t * k);
    for row in &sims {
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.select_nth_unstable_by(k - 1, |&x, &y| {
            let (sx, sy) = (row[x as usize], row[y as usize]);
            sy.partial_cmp(&sx).unwrap_or(std::cmp::Ordering::Equal)
        });
        index.extend_from_slice(&order[..k]);
    }
    let index = Tensor::from_vec(index, b * t * k, q.device())?;
    let chosen = m
        .pos
        .to_dtype(dtype)?
        .to_device(q.device())?
        .index_select(&index, 0)?
        .reshape((b * t, k, d))?;
    // Attention over the retrieved h_pos with the layer input as query.
    let scores = (chosen.matmul(&q.unsqueeze(2)?)?.squeeze(2)? / (d as f64).sqrt())?;
    let weights = candle_nn::ops::softmax(&scores, D::Minus1)?;
    let h_know = weights.unsqueeze(1)?.matmul(&chosen)?.squeeze(1)?;
    let h_flat = h.reshape((b * t, d))?;
    let alpha = match gate {
        Gate::Fixed(a) => Tensor::full(*a, (b * t, 1), q.device())?.to_dtype(dtype)?,
        Gate::Semantic(enc) => {
            let pair = enc
                .layer(layer)
                .ok_or_else(|| fail(format!("no encoders for layer {layer}")))?;
            // The encoders live on the CPU in f32; `to_device` and `to_dtype` are differentiable.
            let cpu = |x: &Tensor| x.to_device(&Device::Cpu)?.to_dtype(DType::F32);
            let know = unit_rows(&pair.semantic.forward(&cpu(&h_know)?)?)?;
            // h[-1]: each row's last real token in this call.
            let last: Vec<u32> = view
                .layout
                .last_index()
                .into_iter()
                .map(|i| i.unwrap_or(0))
                .collect();
            let last = Tensor::from_vec(last, b, q.device())?;
            let anchor = unit_rows(
                &pair
                    .semantic
                    .forward(&cpu(&h_flat.index_select(&last, 0)?)?)?,
            )?;
            let per_row = anchor.unsqueeze(1)?.broadcast_as((b, t, anchor.dim(1)?))?;
            let cos = (know * per_row.reshape((b * t, ()))?)?.sum_keepdim(1)?;
            cos.clamp(0.0, 1.0)?
                .to_device(q.device())?
                .to_dtype(dtype)?
        }
    };
    let shift = (h_know - &h_flat)?.broadcast_mul(&(1.0 - alpha)?)?;
    shift.reshape((b, t, d))
}

/// The closure a latent-ICL adapter installs at one layer.
pub fn icl_closure(memory: Arc<Memory>, layer: usize, top_k: usize, gate: Gate) -> ShiftFn {
    Arc::new(move |view: &SiteView| icl_shift(view, &memory, layer, top_k, &gate))
}

/// Where one layer of an extra-neurons adapter sits in the state's adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeuronSlot {
    pub layer: usize,
    pub index: usize,
}

/// UniKE Eq. 6's regulation of one adapter: β and ζ per layer.
#[derive(Debug, Clone)]
pub struct Regulation {
    pub beta: f64,
    pub zeta: Vec<(usize, Tensor)>,
}

impl Regulation {
    pub fn zeta(&self, layer: usize) -> Result<&Tensor> {
        self.zeta
            .iter()
            .find(|(l, _)| *l == layer)
            .map(|(_, z)| z)
            .ok_or_else(|| ExecError::internal(format!("no ζ for layer {layer}")))
    }

    /// `V + β·(W_ζ ζ)` broadcast over the neurons: `(count, d)`.
    pub fn values(&self, layer: usize, v: &Tensor, w_zeta: &Tensor) -> Result<Tensor> {
        let z = self
            .zeta(layer)?
            .to_dtype(w_zeta.dtype())?
            .to_device(w_zeta.device())?;
        let shift = (w_zeta.matmul(&z.unsqueeze(1)?)?.squeeze(1)? * self.beta)?;
        Ok(v.broadcast_add(&shift.unsqueeze(0)?)?)
    }
}

/// An extra-neurons adapter step's layers.
#[derive(Debug, Clone)]
pub struct NeuronHandle {
    pub slots: Vec<NeuronSlot>,
    pub regulation: Option<Regulation>,
}

impl NeuronHandle {
    pub fn slot(&self, layer: usize) -> Option<NeuronSlot> {
        self.slots.iter().copied().find(|s| s.layer == layer)
    }
}

/// A latent-ICL adapter step: which memory, which shifts.
#[derive(Clone)]
pub struct IclHandle {
    pub memory: crate::plan::StepId,
    pub top_k: usize,
    pub gate: Gate,
    /// `(layer, index in Adapters::shifts)`.
    pub shifts: Vec<(usize, usize)>,
}

impl std::fmt::Debug for IclHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "IclHandle(memory {}, shifts {:?})",
            self.memory, self.shifts
        )
    }
}

/// The memory an ICL adapter currently holds in `state`.
pub fn current_memory(icl: &IclHandle, state: &EditState, side: &Side) -> Result<Arc<Memory>> {
    let (_, index) = icl
        .shifts
        .first()
        .ok_or_else(|| ExecError::internal("a latent ICL adapter without layers"))?;
    match state.adapters.shifts().get(*index).map(|(_, s)| s) {
        Some(Shift::Fn(f)) => {
            side.memories.get(&closure_key(f)).cloned().ok_or_else(|| {
                ExecError::internal("a latent ICL shift the executor did not install")
            })
        }
        _ => Err(ExecError::internal("the latent ICL shift is missing")),
    }
}

/// Reinstalls every shift of `icl` with `memory`.
pub fn install_memory(
    icl: &IclHandle,
    memory: Arc<Memory>,
    state: &mut EditState,
    side: &mut Side,
) -> Result<()> {
    for (layer, index) in &icl.shifts {
        let f = icl_closure(memory.clone(), *layer, icl.top_k, icl.gate.clone());
        side.memories.insert(closure_key(&f), memory.clone());
        state.adapters.set_shift(*index, Shift::Fn(f))?;
    }
    Ok(())
}

/// Fresh extra neurons for one layer (Eq. 3): `K ~ N(0, 0.02²)`, `b = 0`, `V = 0`.
pub fn fresh_neurons(
    count: usize,
    hidden: usize,
    act: crate::model::Activation,
    dtype: DType,
    device: &Device,
    rng: &mut Rng,
) -> Result<ExtraNeurons> {
    let keys: Vec<f32> = (0..count * hidden)
        .map(|_| (0.02 * rng.normal()) as f32)
        .collect();
    Ok(ExtraNeurons {
        keys: Tensor::from_vec(keys, (count, hidden), device)?.to_dtype(dtype)?,
        bias: Some(Tensor::zeros(count, dtype, device)?),
        values: Tensor::zeros((count, hidden), dtype, device)?,
        act,
    })
}

/// What contrastive training needs.
#[derive(Debug, Clone, Copy)]
pub struct EncoderTraining {
    pub hidden: usize,
    pub depth: usize,
    pub lr: f64,
    pub steps: usize,
    pub batch: usize,
}

fn fresh_mlp(
    input: usize,
    hidden: usize,
    depth: usize,
    rng: &mut Rng,
    device: &Device,
) -> Result<Vec<(Var, Var)>> {
    let mut out = Vec::with_capacity(depth);
    let mut width = input;
    for _ in 0..depth.max(1) {
        // PyTorch's nn.Linear default: U(−1/√in, 1/√in) for weights and biases.
        let bound = 1.0 / (width as f64).sqrt();
        let w: Vec<f32> = (0..hidden * width)
            .map(|_| (bound * (2.0 * rng.uniform() - 1.0)) as f32)
            .collect();
        let b: Vec<f32> = (0..hidden)
            .map(|_| (bound * (2.0 * rng.uniform() - 1.0)) as f32)
            .collect();
        out.push((
            Var::from_tensor(&Tensor::from_vec(w, (hidden, width), device)?)?,
            Var::from_tensor(&Tensor::from_vec(b, hidden, device)?)?,
        ));
        width = hidden;
    }
    Ok(out)
}

fn as_mlp(vars: &[(Var, Var)]) -> Mlp {
    Mlp {
        layers: vars
            .iter()
            .map(|(w, b)| (w.as_tensor().clone(), b.as_tensor().clone()))
            .collect(),
    }
}

fn logsumexp(x: &Tensor) -> candle_core::Result<Tensor> {
    let m = x.max_keepdim(D::Minus1)?.detach();
    x.broadcast_sub(&m)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        .broadcast_add(&m)
}

/// Eq. 4 + Eq. 5 on one batch of triplets (rows of `sem`, `pos`, `neg`).
pub fn contrastive_loss(
    truth: &Mlp,
    semantic: &Mlp,
    sem: &Tensor,
    pos: &Tensor,
    neg: &Tensor,
) -> Result<Tensor> {
    let b = pos.dim(0)?;
    // Eq. 4: in the truthfulness space, same truthfulness attracts.
    let tp = unit_rows(&truth.forward(pos)?)?;
    let tn = unit_rows(&truth.forward(neg)?)?;
    let all = Tensor::cat(&[&tp, &tn], 0)?;
    let sp = tp.matmul(&all.t()?)?; // (b, 2b)
    let sn = tn.matmul(&all.t()?)?;
    let l_pos = (logsumexp(&sp)? - logsumexp(&sp.narrow(1, 0, b)?)?)?;
    let l_neg = (logsumexp(&sn)? - logsumexp(&sn.narrow(1, b, b)?)?)?;
    // Eq. 5: in the semantic space, h_sem attracts its own h_pos and h_neg.
    let q = unit_rows(&semantic.forward(sem)?)?;
    let p = unit_rows(&semantic.forward(pos)?)?;
    let n = unit_rows(&semantic.forward(neg)?)?;
    let s2 = q.matmul(&Tensor::cat(&[&p, &n], 0)?.t()?)?; // (b, 2b)
    let own_p = (&q * &p)?.sum_keepdim(1)?;
    let own_n = (&q * &n)?.sum_keepdim(1)?;
    let own = logsumexp(&Tensor::cat(&[&own_p, &own_n], 1)?)?;
    let l_sem = (logsumexp(&s2)? - own)?;
    Ok(((l_pos + l_neg)?.mean_all()? + l_sem.mean_all()?)?)
}

/// Trains the two encoders of one memory layer.
pub fn train_encoders(
    m: &MemoryLayer,
    spec: EncoderTraining,
    rng: &mut Rng,
) -> Result<EncoderPair> {
    let device = Device::Cpu;
    let to = |t: &Tensor| -> Result<Tensor> { Ok(t.to_device(&device)?.to_dtype(DType::F32)?) };
    let (sem, pos, neg) = (to(&m.sem)?, to(&m.pos)?, to(&m.neg)?);
    let n = m.triplets;
    let d = pos.dim(1)?;
    let truth = fresh_mlp(d, spec.hidden, spec.depth, rng, &device)?;
    let semantic = fresh_mlp(d, spec.hidden, spec.depth, rng, &device)?;
    let vars: Vec<&Var> = truth
        .iter()
        .chain(&semantic)
        .flat_map(|(w, b)| [w, b])
        .collect();
    let mut opt = Optimizer::new(
        OptimizerSpec::Adam {
            lr: spec.lr,
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.0,
        },
        vars.len(),
    );
    let batch = spec.batch.min(n).max(1);
    for step in 1..=spec.steps {
        let mut order: Vec<u32> = (0..n as u32).collect();
        rng.shuffle(&mut order);
        order.truncate(batch);
        let idx = Tensor::from_vec(order, batch, &device)?;
        let loss = contrastive_loss(
            &as_mlp(&truth),
            &as_mlp(&semantic),
            &sem.index_select(&idx, 0)?,
            &pos.index_select(&idx, 0)?,
            &neg.index_select(&idx, 0)?,
        )?;
        let value = loss.to_scalar::<f32>()?;
        if !value.is_finite() {
            return Err(ExecError::NonFinite {
                what: format!("the contrastive loss of layer {}", m.layer),
                value: f64::from(value),
                train_step: step,
                steps: spec.steps,
            });
        }
        let grads = loss.backward()?;
        opt.begin_step();
        for (i, v) in vars.iter().enumerate() {
            let p = v.as_tensor().detach();
            let g = match grads.get(v.as_tensor()) {
                Some(g) => g.clone(),
                None => p.zeros_like()?,
            };
            let u = opt.update(i, &p, &g)?;
            v.set(&(p + u)?)?;
        }
    }
    let frozen = |vars: &[(Var, Var)]| Mlp {
        layers: vars
            .iter()
            .map(|(w, b)| (w.as_tensor().detach(), b.as_tensor().detach()))
            .collect(),
    };
    Ok(EncoderPair {
        layer: m.layer,
        truth: frozen(&truth),
        semantic: frozen(&semantic),
    })
}

/// ζ of one layer: mean truthfulness encoding of `h_pos` minus that of `h_neg`.
pub fn truth_direction(m: &MemoryLayer, pair: &EncoderPair) -> Result<Tensor> {
    let n = m.triplets;
    let to = |t: &Tensor| -> Result<Tensor> {
        Ok(t.narrow(0, 0, n)?
            .to_device(&Device::Cpu)?
            .to_dtype(DType::F32)?)
    };
    let pos = pair.truth.forward(&to(&m.pos)?)?.mean(0)?;
    let neg = pair.truth.forward(&to(&m.neg)?)?.mean(0)?;
    Ok((pos - neg)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::rng;
    use crate::model::batch::{TokenKind, TokenLayout};
    use crate::model::site::Site;
    use crate::model::PadSide;

    fn t(rows: &[[f32; 2]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (rows.len(), 2), &Device::Cpu).unwrap()
    }

    #[test]
    fn icl_attends_over_the_top_k_closest_entries_and_mixes_with_alpha() {
        // Three entries; the query (1, 0) is closest to entries 0 and 2 by h_sem.
        let sem = t(&[[1.0, 0.1], [0.0, 1.0], [1.0, -0.2]]);
        let pos = t(&[[2.0, 0.0], [0.0, 9.0], [0.0, 2.0]]);
        let memory = Memory::new(vec![(0, sem, pos.clone(), pos)]).unwrap();
        let h = Tensor::from_vec(vec![0.5f32, 0.5], (1, 1, 2), &Device::Cpu).unwrap();
        let query = Tensor::from_vec(vec![1.0f32, 0.0], (1, 1, 2), &Device::Cpu).unwrap();
        let layout = TokenLayout::new(&[vec![TokenKind::Text]], PadSide::Right);
        let view = SiteView {
            site: Site::EmbedText,
            value: &h,
            block_input: Some(&query),
            layout: &layout,
        };
        let shift = icl_shift(&view, &memory, 0, 2, &Gate::Fixed(0.25))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        // Scores q·h_pos/√2 over entries 0 and 2: 2/√2 and 0.
        let (s0, s2) = (2.0f32 / 2f32.sqrt(), 0.0f32);
        let w0 = s0.exp() / (s0.exp() + s2.exp());
        let know = [2.0 * w0, 2.0 * (1.0 - w0)];
        for i in 0..2 {
            let want = 0.75 * (know[i] - 0.5);
            assert!((shift[i] - want).abs() < 1e-5, "{shift:?}");
        }
    }

    #[test]
    fn remembered_entries_are_retrievable_and_the_original_memory_is_unchanged() {
        let sem = t(&[[1.0, 0.0]]);
        let memory = Memory::new(vec![(3, sem.clone(), sem.clone(), sem)]).unwrap();
        let more = memory
            .with(&[(
                3,
                Tensor::new(&[0.0f32, 2.0], &Device::Cpu).unwrap(),
                Tensor::new(&[5.0f32, 5.0], &Device::Cpu).unwrap(),
            )])
            .unwrap();
        assert_eq!((memory.entries(), more.entries()), (1, 2));
        let m = more.layer(3).unwrap();
        assert_eq!(m.sem_unit.to_vec2::<f32>().unwrap()[1], vec![0.0, 1.0]);
        assert_eq!(m.triplets, 1);
        assert!(memory
            .with(&[(
                4,
                Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap(),
                Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap()
            )])
            .is_err());
    }

    #[test]
    fn contrastive_training_separates_truthful_from_hallucinated_states() {
        // Truthful states cluster around +e0, hallucinated ones around −e0, with noise.
        let mut r = rng::stream(0, "test", 0);
        let n = 64;
        let mut draw = |centre: f32| -> Vec<f32> {
            (0..n)
                .flat_map(|_| {
                    [
                        centre + 0.3 * r.normal() as f32,
                        r.normal() as f32,
                        r.normal() as f32,
                    ]
                })
                .collect()
        };
        let pos = Tensor::from_vec(draw(1.0), (n, 3), &Device::Cpu).unwrap();
        let neg = Tensor::from_vec(draw(-1.0), (n, 3), &Device::Cpu).unwrap();
        let sem = Tensor::from_vec(draw(0.0), (n, 3), &Device::Cpu).unwrap();
        let memory = Memory::new(vec![(0, sem, pos, neg)]).unwrap();
        let spec = EncoderTraining {
            hidden: 8,
            depth: 2,
            lr: 1e-2,
            steps: 60,
            batch: 16,
        };
        let m = memory.layer(0).unwrap();
        let untrained = train_encoders(
            m,
            EncoderTraining { steps: 0, ..spec },
            &mut rng::stream(0, "enc", 0),
        )
        .unwrap();
        let trained = train_encoders(m, spec, &mut rng::stream(0, "enc", 0)).unwrap();
        let loss = |p: &EncoderPair| {
            contrastive_loss(&p.truth, &p.semantic, &m.sem, &m.pos, &m.neg)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!(
            loss(&trained) < loss(&untrained),
            "{} vs {}",
            loss(&trained),
            loss(&untrained)
        );
        let zeta = truth_direction(m, &trained).unwrap();
        assert_eq!(zeta.dims(), &[8]);
    }
}
