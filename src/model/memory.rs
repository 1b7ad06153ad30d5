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

    /// The `top_k` entries closest to each row of `x` (`(R, d)`), each row's closest first.
    /// Selection happens on the CPU; no gradient flows through it.
    pub(crate) fn retrieve(&self, x: &Tensor) -> Result<Retrieved> {
        let n = self.entries();
        let k = self.top_k.clamp(1, n.max(1));
        let query = unit_rows(&x.detach().broadcast_sub(&self.centre)?)?;
        // faer's product, as the linears use: candle's took 16 % of a UniKE edit.
        let sims = crate::model::nn::gemm::matmul_t(&query, &self.keys)?
            .to_dtype(DType::F32)?
            .to_device(&Device::Cpu)?;
        let (rows, _) = sims.dims2()?;
        let sims = sims.flatten_all()?.to_vec1::<f32>()?;
        let mut index: Vec<u32> = Vec::with_capacity(rows * k);
        let mut best = Vec::with_capacity(k);
        for row in sims.chunks(n.max(1)).take(rows) {
            top_k(row, k, &mut best);
            index.extend(best.iter().map(|&(_, i)| i));
        }
        let mut distinct = index.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let slot: Vec<u32> = (index.iter())
            .map(|i| distinct.partition_point(|d| d < i) as u32)
            .collect();
        let (device, count) = (x.device(), distinct.len());
        Ok(Retrieved {
            k,
            distinct: Tensor::from_vec(distinct, count, device)?,
            slot: Tensor::from_vec(slot, rows * k, device)?,
        })
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

/// What [`LatentMemory::retrieve`] found for `R` rows: `k` entries per row, as the distinct
/// entry ids and, for each of the `R·k` retrieved entries row by row, its place among them.
#[derive(Debug)]
pub struct Retrieved {
    /// Entries per row.
    pub k: usize,
    /// The distinct entry ids retrieved, ascending `(U,)`: the rows of a batch retrieve
    /// overlapping sets, so per-entry work (UniKE's key and value projections) is done once per
    /// distinct entry and gathered by `slot`.
    pub distinct: Tensor,
    /// Each retrieved entry's place in `distinct`, `(R·k,)`, row by row.
    pub slot: Tensor,
}

/// Whether `(value, index)` `a` ranks before `b`: the larger similarity first, NaN after every
/// number, ties to the lower index (stable results).
#[inline]
fn ranks_before(a: (f32, u32), b: (f32, u32)) -> bool {
    match (a.0.is_nan(), b.0.is_nan()) {
        (false, true) => true,
        (true, false) => false,
        (true, true) => a.1 < b.1,
        (false, false) => a.0 > b.0 || (a.0 == b.0 && a.1 < b.1),
    }
}

/// The `k` best-ranked entries of `row` into `best`, in rank order, in one pass over the row:
/// an entry is inserted only when it beats the `k`-th so far, and once `best` is full a single
/// comparison turns most entries away. Selecting over the whole row with a comparator cost a
/// fifth of a UniKE edit (retrieval runs at every token of every memory layer at every step);
/// this pass, a tenth.
fn top_k(row: &[f32], k: usize, best: &mut Vec<(f32, u32)>) {
    best.clear();
    if k == 0 {
        return;
    }
    // Once `best` is full and its last entry a number, only a strictly larger value can enter
    // (an equal one comes later, so it ranks after).
    let mut bar = None;
    for (i, &v) in row.iter().enumerate() {
        // `v <= bar` or NaN: it cannot beat the full buffer's last (a number).
        if bar.is_some_and(|bar| v.partial_cmp(&bar) != Some(std::cmp::Ordering::Greater)) {
            continue;
        }
        let candidate = (v, i as u32);
        if best.len() == k {
            match best.last() {
                Some(&last) if ranks_before(candidate, last) => {
                    best.pop();
                }
                _ => continue,
            }
        }
        // From the back: this branch predicts well where a binary search's did not.
        let mut at = best.len();
        while at > 0 && !ranks_before(best[at - 1], candidate) {
            at -= 1;
        }
        best.insert(at, candidate);
        if best.len() == k {
            bar = best.last().map(|&(v, _)| v).filter(|v| !v.is_nan());
        }
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

    /// The retrieved entry ids row by row: `distinct` gathered by `slot`.
    fn ids(r: &Retrieved) -> Vec<u32> {
        r.distinct
            .index_select(&r.slot, 0)
            .unwrap()
            .to_vec1::<u32>()
            .unwrap()
    }

    #[test]
    fn retrieval_takes_the_top_k_by_cosine_per_row() {
        let m = memory(MemoryGate::Fixed(0.5), 2);
        let x = t(&[[1.0, 0.0], [0.0, 3.0]]);
        let r = m.retrieve(&x).unwrap();
        assert_eq!(r.k, 2);
        // Row 0 (1, 0): entries 0 (cos 0.995) then 2 (0.981); row 1 (0, 1): entries 1 then 0.
        assert_eq!(ids(&r), vec![0, 2, 1, 0]);
        assert_eq!(r.distinct.to_vec1::<u32>().unwrap(), vec![0, 1, 2]);
        assert_eq!(r.slot.to_vec1::<u32>().unwrap(), vec![0, 2, 1, 0]);
    }

    /// The one-pass selection against a full sort by the same ranking, on rows with ties and
    /// NaNs, for k from 1 to past the row's length.
    #[test]
    fn top_k_equals_the_first_k_of_a_full_sort() {
        let mut state = 12345u64;
        let mut draw = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
            (state >> 33) as u32
        };
        let mut best = Vec::new();
        for _ in 0..200 {
            let n = 1 + (draw() % 60) as usize;
            let row: Vec<f32> = (0..n)
                .map(|_| match draw() % 10 {
                    0 => f32::NAN,
                    1..=3 => 0.5, // ties
                    _ => (draw() % 1000) as f32 / 1000.0 - 0.5,
                })
                .collect();
            let mut sorted: Vec<(f32, u32)> = row.iter().copied().zip(0..).collect();
            sorted.sort_by(|&a, &b| {
                if ranks_before(a, b) {
                    std::cmp::Ordering::Less
                } else {
                    std::cmp::Ordering::Greater
                }
            });
            for k in [1, 2, 7, n, n + 3] {
                top_k(&row, k.min(n), &mut best);
                let want: Vec<u32> = sorted.iter().take(k.min(n)).map(|&(_, i)| i).collect();
                let got: Vec<u32> = best.iter().map(|&(_, i)| i).collect();
                assert_eq!(got, want, "row {row:?} k {k}");
            }
        }
    }

    #[test]
    fn a_top_k_above_the_entries_retrieves_every_entry_once() {
        let m = memory(MemoryGate::Fixed(0.5), 40);
        let r = m.retrieve(&t(&[[1.0, 0.0]])).unwrap();
        assert_eq!(r.k, 3);
        let mut got = ids(&r);
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
        let r = more.retrieve(&t(&[[-2.0, -2.1]])).unwrap();
        assert_eq!(ids(&r), vec![3]);
        assert_eq!(r.slot.to_vec1::<u32>().unwrap(), vec![0]);
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
