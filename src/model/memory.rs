//! Latent key-value memories read by a decoder layer's own attention: UniKE's external knowledge
//! resorting in the latent space (§3.1-3.3, Eq. 2 and 7, Appendix A).
//!
//! In-context learning prepends knowledge tokens `X_know` to the input; Appendix A shows that each
//! input token's attention output then becomes `α·Attn(x, X_in, X_in) + (1 − α)·Attn(x, X_know,
//! X_know)`, where `1 − α` is the share of attention that went to the knowledge. A memory stores
//! the knowledge as hidden states instead of tokens: `h_sem` (the last question token, the
//! retrieval key) and `h_pos` (the last token of question + true answer), both read at the
//! layer's input, the same residual stream the layer's attention reads. At every token:
//!
//! 1. **retrieval** — the `top_k` entries whose `h_sem` is most cosine-similar to the token's own
//!    layer input (pre-attention state, §3.2). Per token, not per input: a token's output may only
//!    depend on itself and earlier tokens, so teacher-forced scoring, generation with a KV cache
//!    and the training loss all see the same computation;
//! 2. **`h_know = Attn(x, X_know, X_know)`** — the retrieved `h_pos` go through the layer's own
//!    input norm and key/value projections, the token's own query attends over them (per head,
//!    without rotary positions: Appendix A's derivation has none, and a memory slot has no place
//!    in the sequence), and the output projection maps the result into the attention output's
//!    space;
//! 3. **the gate** — `α = clamp(cos(Enc_sem(k̄), x − c), 0, 1)` with `k̄` the retrieved `h_pos`
//!    mixed by the head-averaged attention weights (the knowledge `h_know` is made of, in the
//!    residual space the encoder was trained on), `x` the token's layer input (`h_input[-1]` at
//!    the last token) and `c` the memory's centre (cosines are taken between centred states, so
//!    that unrelated states score near 0 rather than at the residual stream's common offset), or
//!    a fixed α;
//! 4. **the mix** — `y ← (1 − α)·y + α·h_know`. The printed Eq. 7 weights the *input* by the
//!    similarity, but §3.3's prose and the analysis after Eq. 7 say a small α (weak relevance)
//!    means *less* in-context knowledge; we follow the meaning, so α is the knowledge's share and
//!    α = 0 leaves the layer exactly as it was.
//!
//! A memory is plain tensors in [`crate::model::Adapters`], so the evaluator's snapshot and
//! restore cover it like every other edit.

use std::sync::Arc;

use candle_core::{DType, Device, Result, Tensor, D};

use crate::model::nn::mlp::Mlp;

/// How much of the retrieved knowledge enters.
#[derive(Debug, Clone)]
pub enum MemoryGate {
    /// A fixed α in [0, 1].
    Fixed(f64),
    /// UniKE Eq. 7: the semantic encoder compares the retrieved knowledge with the input.
    Semantic(Arc<Mlp>),
}

/// One layer's memory.
#[derive(Debug, Clone)]
pub struct LatentMemory {
    /// Retrieval keys `(N, d)`: unit rows of `h_sem − centre`.
    pub keys: Tensor,
    /// Attended states `(N, d)`: `h_pos`.
    pub values: Tensor,
    /// `(d,)`, subtracted before every cosine: the mean `h_sem` of the memory's triplets.
    pub centre: Tensor,
    /// Entries retrieved per token (at most the number of entries).
    pub top_k: usize,
    pub gate: MemoryGate,
}

/// `x` with each row scaled to unit length (a zero row stays zero).
pub fn unit_rows(x: &Tensor) -> Result<Tensor> {
    let norms = (x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()? + 1e-12)?;
    x.broadcast_div(&norms)
}

/// Row-wise cosine of `a` and `b` (`(R, d)` each) as `(R, 1)`.
pub(crate) fn row_cosine(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    (unit_rows(a)? * unit_rows(b)?)?.sum_keepdim(D::Minus1)
}

impl LatentMemory {
    /// A memory of `sem` / `pos` rows (`(N, d)` each) around `centre` (`(d,)`).
    pub fn new(
        sem: &Tensor,
        pos: Tensor,
        centre: Tensor,
        top_k: usize,
        gate: MemoryGate,
    ) -> Result<Self> {
        Ok(Self {
            keys: unit_rows(&sem.broadcast_sub(&centre)?)?,
            values: pos,
            centre,
            top_k,
            gate,
        })
    }

    pub fn entries(&self) -> usize {
        self.keys.dim(0).unwrap_or(0)
    }

    /// Width of the stored states.
    pub fn width(&self) -> usize {
        self.values.dim(1).unwrap_or(0)
    }

    /// This memory with `sem` / `pos` rows (`(n, d)` each) appended; `self` is unchanged.
    pub fn with_entries(&self, sem: &Tensor, pos: &Tensor) -> Result<Self> {
        let sem = sem
            .to_dtype(self.keys.dtype())?
            .to_device(self.keys.device())?;
        let pos = pos
            .to_dtype(self.values.dtype())?
            .to_device(self.values.device())?;
        let keys = unit_rows(&sem.broadcast_sub(&self.centre)?)?;
        Ok(Self {
            keys: Tensor::cat(&[&self.keys, &keys], 0)?,
            values: Tensor::cat(&[&self.values, &pos], 0)?,
            ..self.clone()
        })
    }

    /// The `top_k` entries closest to each row of `x` (`(R, d)`): flat indices `(R·k,)` row by
    /// row, and `k`. Selection happens on the CPU; no gradient flows through it.
    pub(crate) fn retrieve(&self, x: &Tensor) -> Result<(Tensor, usize)> {
        let n = self.entries();
        let k = self.top_k.clamp(1, n.max(1));
        let query = unit_rows(&x.detach().broadcast_sub(&self.centre)?)?;
        let sims = query
            .matmul(&self.keys.t()?)?
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?;
        let (rows, _) = sims.dims2()?;
        let sims = sims.flatten_all()?.to_vec1::<f32>()?;
        let mut index: Vec<u32> = Vec::with_capacity(rows * k);
        let mut order: Vec<u32> = Vec::with_capacity(n);
        for row in sims.chunks(n.max(1)).take(rows) {
            order.clear();
            order.extend(0..n as u32);
            if k < n {
                // Larger similarity first; NaN last; ties to the lower index (stable results).
                order.select_nth_unstable_by(k - 1, |&a, &b| {
                    let (sa, sb) = (row[a as usize], row[b as usize]);
                    sb.partial_cmp(&sa)
                        .unwrap_or_else(|| sa.is_nan().cmp(&sb.is_nan()))
                        .then(a.cmp(&b))
                });
            }
            index.extend_from_slice(&order[..k]);
        }
        Ok((Tensor::from_vec(index, rows * k, x.device())?, k))
    }

    /// α per row, `(R, 1)`: `weights` `(R, k)` are the head-averaged attention weights over the
    /// retrieved states `gathered` `(R, k, d)`, `x` `(R, d)` the rows' layer inputs.
    pub(crate) fn alpha(&self, weights: &Tensor, gathered: &Tensor, x: &Tensor) -> Result<Tensor> {
        let rows = x.dim(0)?;
        match &self.gate {
            MemoryGate::Fixed(a) => Tensor::full(*a, (rows, 1), x.device())?.to_dtype(x.dtype()),
            MemoryGate::Semantic(encoder) => {
                let mixed = weights.unsqueeze(1)?.matmul(gathered)?.squeeze(1)?;
                let known = encoder.forward(&mixed.broadcast_sub(&self.centre)?)?;
                row_cosine(&known, &x.broadcast_sub(&self.centre)?)?.clamp(0.0, 1.0)
            }
        }
    }

    /// Whether this memory can never change the layer (a fixed α of 0).
    pub(crate) fn is_inert(&self) -> bool {
        matches!(self.gate, MemoryGate::Fixed(a) if a == 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rows: &[[f32; 2]]) -> Tensor {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_vec(flat, (rows.len(), 2), &Device::Cpu).unwrap()
    }

    fn memory(gate: MemoryGate, top_k: usize) -> LatentMemory {
        let sem = t(&[[1.0, 0.1], [0.0, 1.0], [1.0, -0.2]]);
        let pos = t(&[[2.0, 0.0], [0.0, 9.0], [0.0, 2.0]]);
        let centre = Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap();
        LatentMemory::new(&sem, pos, centre, top_k, gate).unwrap()
    }

    #[test]
    fn retrieval_takes_the_top_k_by_cosine_per_row() {
        let m = memory(MemoryGate::Fixed(0.5), 2);
        let x = t(&[[1.0, 0.0], [0.0, 3.0]]);
        let (index, k) = m.retrieve(&x).unwrap();
        let mut got = index.to_vec1::<u32>().unwrap();
        assert_eq!(k, 2);
        got[..2].sort();
        got[2..].sort();
        // Row 0 (1, 0): entries 0 (cos 0.995) and 2 (0.981); row 1 (0, 1): entries 1 and 0.
        assert_eq!(got, vec![0, 2, 0, 1]);
    }

    #[test]
    fn a_top_k_above_the_entries_retrieves_every_entry_once() {
        let m = memory(MemoryGate::Fixed(0.5), 40);
        let (index, k) = m.retrieve(&t(&[[1.0, 0.0]])).unwrap();
        assert_eq!(k, 3);
        let mut got = index.to_vec1::<u32>().unwrap();
        got.sort();
        assert_eq!(got, vec![0, 1, 2]);
    }

    #[test]
    fn appended_entries_are_retrievable_and_the_original_is_unchanged() {
        let m = memory(MemoryGate::Fixed(0.5), 1);
        let more = m
            .with_entries(&t(&[[-1.0, -1.0]]), &t(&[[7.0, 7.0]]))
            .unwrap();
        assert_eq!((m.entries(), more.entries()), (3, 4));
        let (index, _) = more.retrieve(&t(&[[-2.0, -2.1]])).unwrap();
        assert_eq!(index.to_vec1::<u32>().unwrap(), vec![3]);
    }

    #[test]
    fn the_semantic_gate_is_the_clamped_cosine_of_encoded_knowledge_and_input() {
        // An identity encoder: α = clamp(cos(k̄, x), 0, 1).
        let eye = Tensor::new(&[[1f32, 0.0], [0.0, 1.0]], &Device::Cpu).unwrap();
        let zero = Tensor::zeros(2, DType::F32, &Device::Cpu).unwrap();
        let encoder = Arc::new(Mlp {
            layers: vec![(eye, zero)],
        });
        let m = memory(MemoryGate::Semantic(encoder), 2);
        let gathered = Tensor::new(
            &[[[1f32, 0.0], [0.0, 1.0]], [[1.0, 0.0], [1.0, 0.0]]],
            &Device::Cpu,
        )
        .unwrap();
        let weights = Tensor::new(&[[0.5f32, 0.5], [1.0, 0.0]], &Device::Cpu).unwrap();
        let x = t(&[[1.0, 1.0], [-1.0, 0.0]]);
        let a = m
            .alpha(&weights, &gathered, &x)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert!((a[0][0] - 1.0).abs() < 1e-6, "{a:?}");
        assert_eq!(a[1][0], 0.0, "a negative cosine lets no knowledge in");
    }
}
