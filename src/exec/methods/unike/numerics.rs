//! UniKE's numerics outside the forward pass (§3.2-3.3, Appendix C-D): the triplet states of the
//! in-context memory, the contrastive truthfulness and semantic encoders, the truthfulness
//! direction ζ and fresh extra neurons. Latent in-context editing itself runs inside the decoder
//! ([`crate::model::memory`]); what an edit changes — the memory's entries, the extra neurons,
//! `W_ζ` — are tensors of the edit state's adapters, so snapshot and restore cover them.
//!
//! - **Memory**: for each (question, true answer, hallucinated answer) triplet, `Q + A+` and
//!   `Q + A−` run through the unedited model; at each memory layer `h_sem` is the layer input at
//!   the question's last token, `h_pos` / `h_neg` at the last token of each full input. The
//!   centre `c` is the mean `h_sem`: every cosine in the semantic space is taken between centred
//!   states.
//! - **Encoders** (Eq. 4-5): per layer, a truthfulness MLP (`d → hidden … → hidden`) and a
//!   semantic MLP (`d → hidden … → d`). Eq. 5 scores the raw (centred) `h_sem` against
//!   `Enc_sem(h_pos)`, so the semantic encoder returns to the hidden states' width; Eq. 7 then
//!   compares `Enc_sem(knowledge)` with the raw layer input the same way. `s` is cosine divided
//!   by a temperature τ = 0.1 (the paper leaves `s` open; with τ = 1 a cosine in [−1, 1] cannot
//!   make a softmax over a batch confident). Trained with Adam on shuffled batches.
//! - **ζ** (§3.3): the mean truthfulness encoding of `h_pos` minus that of `h_neg`, per layer.
//! - **Extra neurons** (Eq. 3, 6): `K ~ N(0, 0.02²)`, `b = 0`, `V = 0`, `W_ζ = 0`.

use candle_core::{DType, Device, Tensor, Var, D};

use crate::exec::error::{ExecError, Result};
use crate::exec::optim::Optimizer;
use crate::exec::rng::Rng;
use crate::model::memory::unit_rows;
use crate::model::nn::mlp::Mlp;
use crate::model::{ExtraNeurons, NeuronRegulation};
use crate::plan::StepId;
use crate::sema::Optimizer as OptimizerSpec;

/// The temperature of every contrastive similarity: `s(a, b) = cos(a, b) / τ`.
pub const TEMPERATURE: f64 = 0.1;

/// One memory layer's triplet states, `(N, d)` each, on the CPU in f32.
#[derive(Debug, Clone)]
pub struct MemoryLayer {
    pub layer: usize,
    pub sem: Tensor,
    pub pos: Tensor,
    pub neg: Tensor,
    /// The mean `h_sem`, `(d,)`.
    pub centre: Tensor,
}

/// A memory's triplet states: one [`MemoryLayer`] per layer of its stream.
#[derive(Debug, Clone)]
pub struct Memory {
    pub layers: Vec<MemoryLayer>,
}

impl Memory {
    /// A memory from per-layer `(layer, h_sem, h_pos, h_neg)`, each `(N, d)`.
    pub fn new(layers: Vec<(usize, Tensor, Tensor, Tensor)>) -> Result<Memory> {
        let layers = layers
            .into_iter()
            .map(|(layer, sem, pos, neg)| {
                let f32 = |t: Tensor| t.to_device(&Device::Cpu)?.to_dtype(DType::F32);
                let (sem, pos, neg) = (f32(sem)?, f32(pos)?, f32(neg)?);
                Ok(MemoryLayer {
                    layer,
                    centre: sem.mean(0)?,
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

    /// Triplets per layer.
    pub fn entries(&self) -> usize {
        self.layers.first().map_or(0, |m| m.sem.dim(0).unwrap_or(0))
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

/// Where one layer of an extra-neurons adapter sits in the state's adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeuronSlot {
    pub layer: usize,
    pub index: usize,
}

/// An extra-neurons adapter step's layers.
#[derive(Debug, Clone)]
pub struct NeuronHandle {
    pub slots: Vec<NeuronSlot>,
    /// Whether the values are regulated by ζ (Eq. 6), which adds the trainable `W_ζ`.
    pub regulated: bool,
}

impl NeuronHandle {
    pub fn slot(&self, layer: usize) -> Option<NeuronSlot> {
        self.slots.iter().copied().find(|s| s.layer == layer)
    }
}

/// A latent-ICL adapter step: the memory it was built from, and where its per-layer memories sit
/// in the state's adapters (`(layer, index in memories_at(layer))`).
#[derive(Debug, Clone)]
pub struct IclHandle {
    pub memory: StepId,
    pub slots: Vec<(usize, usize)>,
}

/// Fresh extra neurons for one layer (Eq. 3): `K ~ N(0, 0.02²)`, `b = 0`, `V = 0`; regulated by
/// `(ζ, β)` with `W_ζ = 0` (Eq. 6).
pub fn fresh_neurons(
    count: usize,
    hidden: usize,
    act: crate::model::Activation,
    regulation: Option<(&Tensor, f64)>,
    dtype: DType,
    device: &Device,
    rng: &mut Rng,
) -> Result<ExtraNeurons> {
    let keys: Vec<f32> = (0..count * hidden)
        .map(|_| (0.02 * rng.normal()) as f32)
        .collect();
    let regulation = match regulation {
        Some((zeta, beta)) => Some(NeuronRegulation {
            map: Tensor::zeros((hidden, zeta.dim(0)?), dtype, device)?,
            zeta: zeta.to_dtype(dtype)?.to_device(device)?,
            beta,
        }),
        None => None,
    };
    Ok(ExtraNeurons {
        keys: Tensor::from_vec(keys, (count, hidden), device)?.to_dtype(dtype)?,
        bias: Some(Tensor::zeros(count, dtype, device)?),
        values: Tensor::zeros((count, hidden), dtype, device)?,
        act,
        regulation,
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

/// `depth` linear layers `input → hidden → … → output`, PyTorch's `nn.Linear` initialisation.
fn fresh_mlp(
    input: usize,
    hidden: usize,
    output: usize,
    depth: usize,
    rng: &mut Rng,
) -> Result<Vec<(Var, Var)>> {
    let depth = depth.max(1);
    let mut out = Vec::with_capacity(depth);
    let mut width = input;
    for i in 0..depth {
        let next = if i + 1 == depth { output } else { hidden };
        // U(−1/√in, 1/√in) for weights and biases.
        let bound = 1.0 / (width as f64).sqrt();
        let mut draw = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| (bound * (2.0 * rng.uniform() - 1.0)) as f32)
                .collect()
        };
        let w = Tensor::from_vec(draw(next * width), (next, width), &Device::Cpu)?;
        let b = Tensor::from_vec(draw(next), next, &Device::Cpu)?;
        out.push((Var::from_tensor(&w)?, Var::from_tensor(&b)?));
        width = next;
    }
    Ok(out)
}

fn as_mlp(vars: &[(Var, Var)], detach: bool) -> Mlp {
    let t = |v: &Var| {
        if detach {
            v.as_tensor().detach()
        } else {
            v.as_tensor().clone()
        }
    };
    Mlp {
        layers: vars.iter().map(|(w, b)| (t(w), t(b))).collect(),
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

/// `s(a_i, b_j) = cos(a_i, b_j) / τ` for every pair of rows.
fn similarities(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    unit_rows(a)?.matmul(&unit_rows(b)?.t()?)? / TEMPERATURE
}

/// Eq. 4 + Eq. 5 on one batch of centred triplet states (rows of `sem`, `pos`, `neg`).
pub fn contrastive_loss(
    truth: &Mlp,
    semantic: &Mlp,
    sem: &Tensor,
    pos: &Tensor,
    neg: &Tensor,
) -> Result<Tensor> {
    let b = pos.dim(0)?;
    // Eq. 4: in the truthfulness space, the same truthfulness attracts.
    let tp = truth.forward(pos)?;
    let tn = truth.forward(neg)?;
    let all = Tensor::cat(&[&tp, &tn], 0)?;
    let sp = similarities(&tp, &all)?; // (b, 2b)
    let sn = similarities(&tn, &all)?;
    let l_pos = (logsumexp(&sp)? - logsumexp(&sp.narrow(1, 0, b)?)?)?;
    let l_neg = (logsumexp(&sn)? - logsumexp(&sn.narrow(1, b, b)?)?)?;
    // Eq. 5: the raw h_sem attracts the semantic encodings of its own h_pos and h_neg.
    let p = semantic.forward(pos)?;
    let n = semantic.forward(neg)?;
    let s2 = similarities(sem, &Tensor::cat(&[&p, &n], 0)?)?; // (b, 2b)
    let own_p = (unit_rows(sem)? * unit_rows(&p)?)?.sum_keepdim(1)?;
    let own_n = (unit_rows(sem)? * unit_rows(&n)?)?.sum_keepdim(1)?;
    let own = logsumexp(&(Tensor::cat(&[&own_p, &own_n], 1)? / TEMPERATURE)?)?;
    let l_sem = (logsumexp(&s2)? - own)?;
    Ok(((l_pos + l_neg)?.mean_all()? + l_sem.mean_all()?)?)
}

/// Trains the two encoders of one memory layer.
pub fn train_encoders(
    m: &MemoryLayer,
    spec: EncoderTraining,
    rng: &mut Rng,
) -> Result<EncoderPair> {
    let centred = |t: &Tensor| t.broadcast_sub(&m.centre);
    let (sem, pos, neg) = (centred(&m.sem)?, centred(&m.pos)?, centred(&m.neg)?);
    let n = sem.dim(0)?;
    let d = pos.dim(1)?;
    let truth = fresh_mlp(d, spec.hidden, spec.hidden, spec.depth, rng)?;
    let semantic = fresh_mlp(d, spec.hidden, d, spec.depth, rng)?;
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
    // Epochs of shuffled batches: every triplet is seen once before any is seen twice.
    let mut order: Vec<u32> = Vec::new();
    for step in 1..=spec.steps {
        if order.len() < batch {
            order = (0..n as u32).collect();
            rng.shuffle(&mut order);
        }
        let take: Vec<u32> = order.split_off(order.len() - batch);
        let idx = Tensor::from_vec(take, batch, &Device::Cpu)?;
        let loss = contrastive_loss(
            &as_mlp(&truth, false),
            &as_mlp(&semantic, false),
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
    Ok(EncoderPair {
        layer: m.layer,
        truth: as_mlp(&truth, true),
        semantic: as_mlp(&semantic, true),
    })
}

/// ζ of one layer: mean truthfulness encoding of the centred `h_pos` minus that of `h_neg`.
pub fn truth_direction(m: &MemoryLayer, pair: &EncoderPair) -> Result<Tensor> {
    let encode = |t: &Tensor| -> Result<Tensor> {
        Ok(pair.truth.forward(&t.broadcast_sub(&m.centre)?)?.mean(0)?)
    };
    Ok((encode(&m.pos)? - encode(&m.neg)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::rng;

    #[test]
    fn contrastive_training_separates_truthful_from_hallucinated_states() {
        // Truthful states cluster around +e0, hallucinated ones around −e0; h_sem is each
        // triplet's own random direction, which its h_pos and h_neg carry too.
        let mut r = rng::stream(0, "test", 0);
        let n = 64;
        let topic: Vec<[f32; 3]> = (0..n)
            .map(|_| [0.0, r.normal() as f32, r.normal() as f32])
            .collect();
        let mut draw = |centre: f32| -> Vec<f32> {
            topic
                .iter()
                .flat_map(|t| [centre + 0.3 * r.normal() as f32, t[1], t[2]])
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
        let train = |steps| {
            train_encoders(
                m,
                EncoderTraining { steps, ..spec },
                &mut rng::stream(0, "enc", 0),
            )
            .unwrap()
        };
        let (untrained, trained) = (train(0), train(60));
        let loss = |p: &EncoderPair| {
            let c = |t: &Tensor| t.broadcast_sub(&m.centre).unwrap();
            contrastive_loss(&p.truth, &p.semantic, &c(&m.sem), &c(&m.pos), &c(&m.neg))
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        assert!(
            loss(&trained) < 0.8 * loss(&untrained),
            "{} vs {}",
            loss(&trained),
            loss(&untrained)
        );
        assert_eq!(
            trained.semantic.output_width(),
            Some(3),
            "back to the states' width"
        );
        let zeta = truth_direction(m, &trained).unwrap();
        assert_eq!(zeta.dims(), &[8]);
    }

    #[test]
    fn the_centre_is_the_mean_semantic_state() {
        let t = |v: &[f32]| Tensor::from_vec(v.to_vec(), (2, 2), &Device::Cpu).unwrap();
        let memory = Memory::new(vec![(
            1,
            t(&[1.0, 2.0, 3.0, 6.0]),
            t(&[0.0; 4]),
            t(&[0.0; 4]),
        )])
        .unwrap();
        let centre = memory.layer(1).unwrap().centre.to_vec1::<f32>().unwrap();
        assert_eq!(centre, vec![2.0, 4.0]);
        assert_eq!(memory.entries(), 2);
    }
}
