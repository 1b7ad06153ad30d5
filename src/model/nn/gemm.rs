//! The model's matrix products on the CPU, through faer's kernels instead of candle's.
//!
//! candle's CPU matmul goes through the `gemm` crate, whose f32 and f64 kernels on stable Rust
//! are the 256-bit (AVX2/FMA) ones. faer ships 512-bit kernels and picks them at run time: on
//! the development machine (AVX-512) its one-thread f32 rate is 2–3× candle's on the embedded
//! model's shapes (README, "Speed"). Every product of the model — linears, adapters,
//! attention, and their backward — goes through [`matmul`], which runs faer on CPU f32/f64 and
//! candle's own matmul elsewhere (CUDA, half precision), so results are the same op either way.
//!
//! The op is a `CustomOp2` whose backward returns a gradient only for an operand that takes part
//! in autograd: a frozen weight never gets a model-sized gradient buffer (see `frozen.rs`).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CudaStorage, CustomOp2, Layout, Shape, Tensor};
use faer::{Accum, MatMut, MatRef, Par};

/// Work (`m·k·n` multiply-adds) from which one product is split over the CPU threads when more
/// than one is allowed. Below it the handing out costs more than the second core saves: the
/// embedded model's per-token products (55 × 128 × 344 ≈ 2.4 M) stay on one thread, the
/// knowledge space's batched passes (4,096 × 128 × 344) and a 7B model's products are split.
pub const PARALLEL_MIN_WORK: usize = 16 * 1024 * 1024;

/// `a · b` over the last two dimensions, batch dimensions equal (as `Tensor::matmul`). Counted
/// in `mkedsl bench`'s operations with the backward products autograd will run (`flops.rs`).
pub fn matmul(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    crate::model::flops::matmul(a, b);
    product(a, b)
}

/// `a · bᵀ`: a linear layer's `x · Wᵀ` with `W` as stored, `(out, in)`. A trained `W` then gets
/// its gradient `Gᵀ · x` in its own layout; through a transposed view (`matmul(x, &w.t())`) the
/// gradient would come back transposed, and every optimiser op on it would walk strides.
pub fn matmul_t(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    crate::model::flops::matmul(a, &b.t()?);
    a.apply_op2(
        b,
        Gemm {
            rhs_transposed: true,
        },
    )
}

/// [`matmul`] uncounted: the reference product `mkedsl bench` times.
pub fn product(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    a.apply_op2(
        b,
        Gemm {
            rhs_transposed: false,
        },
    )
}

/// The backward's products: outside autograd, so a gradient never holds on to the forward graph
/// of an operand that is itself trained (an optimiser's moments would then chain every step's
/// graph to the next; LPEdit's peak memory went from 99 to 346 MB before this).
fn untracked(a: &Tensor, b: &Tensor) -> candle_core::Result<Tensor> {
    a.apply_op2_no_bwd(
        b,
        &Gemm {
            rhs_transposed: false,
        },
    )
}

/// `a · b`, or `a · bᵀ` when `rhs_transposed` (the last two dims of `b` read swapped).
struct Gemm {
    rhs_transposed: bool,
}

impl Gemm {
    /// `b`'s layout as the product reads it.
    fn rhs(&self, lb: &Layout) -> candle_core::Result<Layout> {
        let rank = lb.dims().len();
        if self.rhs_transposed && rank >= 2 {
            lb.transpose(rank - 2, rank - 1)
        } else {
            Ok(lb.clone())
        }
    }
}

/// `(batch, m, k, n)` and the dims of the result, checked as `Tensor::matmul` checks them.
fn dims(a: &Layout, b: &Layout) -> candle_core::Result<(usize, usize, usize, usize, Shape)> {
    let (da, db) = (a.dims(), b.dims());
    let rank = da.len();
    if rank < 2
        || db.len() != rank
        || da[..rank - 2] != db[..rank - 2]
        || da[rank - 1] != db[rank - 2]
    {
        candle_core::bail!("matmul: shapes {da:?} and {db:?} do not multiply");
    }
    let (m, k, n) = (da[rank - 2], da[rank - 1], db[rank - 1]);
    let batch = da[..rank - 2].iter().product();
    let mut out = da.to_vec();
    out[rank - 1] = n;
    Ok((batch, m, k, n, Shape::from(out)))
}

/// The storage offset of each batch's matrix (row-major order over the batch dimensions).
fn batch_offsets(layout: &Layout) -> Vec<usize> {
    let rank = layout.dims().len();
    let (dims, strides) = (&layout.dims()[..rank - 2], &layout.stride()[..rank - 2]);
    let mut offsets = vec![layout.start_offset()];
    for (&d, &s) in dims.iter().zip(strides) {
        offsets = offsets
            .iter()
            .flat_map(|&o| (0..d).map(move |i| o + i * s))
            .collect();
    }
    offsets
}

/// One matrix of `data` as faer sees it: rows `m`, cols `k`, the layout's last two strides.
fn view<'a, T>(
    data: &'a [T],
    offset: usize,
    rows: usize,
    cols: usize,
    layout: &Layout,
) -> MatRef<'a, T> {
    let rank = layout.dims().len();
    let (rs, cs) = (layout.stride()[rank - 2], layout.stride()[rank - 1]);
    let span = if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    };
    let data = &data[offset..offset + span];
    // SAFETY: every index `i·rs + j·cs` with `i < rows`, `j < cols` lies in `data`, which `span`
    // was cut to; the view lives no longer than the borrow of `data`.
    unsafe { MatRef::from_raw_parts(data.as_ptr(), rows, cols, rs as isize, cs as isize) }
}

fn parallelism(work: usize) -> Par {
    let threads = candle_core::utils::get_num_threads();
    if threads > 1 && work >= PARALLEL_MIN_WORK {
        Par::rayon(threads)
    } else {
        Par::Seq
    }
}

fn faer_matmul<T: faer::traits::ComplexField + Copy>(
    a: &[T],
    la: &Layout,
    b: &[T],
    lb: &Layout,
    one: T,
) -> candle_core::Result<(Vec<T>, Shape)> {
    let (batch, m, k, n, shape) = dims(la, lb)?;
    let len = batch * m * n;
    // The result is written, not zero-filled first: filling it was 5 % of an ELoRA edit (a
    // memset of every product's output, then faer overwrote it).
    let mut out: Vec<T> = Vec::with_capacity(len);
    let base = out.spare_capacity_mut().as_mut_ptr().cast::<T>();
    let par = parallelism(m * k * n);
    for (i, (oa, ob)) in batch_offsets(la)
        .into_iter()
        .zip(batch_offsets(lb))
        .enumerate()
    {
        // SAFETY: batch `i`'s `m × n` row-major block lies inside the `len` reserved elements,
        // and the blocks do not overlap; the view is dropped before `out` is touched again.
        let dst = unsafe { MatMut::from_raw_parts_mut(base.add(i * m * n), m, n, n as isize, 1) };
        faer::linalg::matmul::matmul(
            dst,
            Accum::Replace,
            view(a, oa, m, k, la),
            view(b, ob, k, n, lb),
            one,
            par,
        );
    }
    // SAFETY: with `Accum::Replace` faer writes every element of each block and does not read
    // the preexisting values (its documented contract; zeros when k = 0), and the blocks cover
    // all `len` elements.
    unsafe { out.set_len(len) };
    Ok((out, shape))
}

/// candle's own product, for the devices and dtypes faer does not cover.
fn candle_matmul<S: BackendStorage>(
    a: &S,
    la: &Layout,
    b: &S,
    lb: &Layout,
) -> candle_core::Result<(S, Shape)> {
    let (batch, m, k, n, shape) = dims(la, lb)?;
    Ok((a.matmul(b, (batch, m, n, k), la, lb)?, shape))
}

impl CustomOp2 for Gemm {
    fn name(&self) -> &'static str {
        if self.rhs_transposed {
            "gemm-t"
        } else {
            "gemm"
        }
    }

    fn cpu_fwd(
        &self,
        a: &CpuStorage,
        la: &Layout,
        b: &CpuStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let lb = &self.rhs(lb)?;
        match (a, b) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => {
                let (out, shape) = faer_matmul(a, la, b, lb, 1f32)?;
                Ok((CpuStorage::F32(out), shape))
            }
            (CpuStorage::F64(a), CpuStorage::F64(b)) => {
                let (out, shape) = faer_matmul(a, la, b, lb, 1f64)?;
                Ok((CpuStorage::F64(out), shape))
            }
            _ => candle_matmul(a, la, b, lb),
        }
    }

    fn cuda_fwd(
        &self,
        a: &CudaStorage,
        la: &Layout,
        b: &CudaStorage,
        lb: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        candle_matmul(a, la, b, &self.rhs(lb)?)
    }

    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let rank = a.rank();
        let swap = |t: &Tensor| t.transpose(rank - 2, rank - 1);
        // y = a·b: da = G·bᵀ, db = aᵀ·G.  y = a·bᵀ: da = G·b, db = Gᵀ·a (in b's own layout).
        let da = match (a.track_op(), self.rhs_transposed) {
            (false, _) => None,
            (true, false) => Some(untracked(grad, &swap(b)?)?),
            (true, true) => Some(untracked(grad, b)?),
        };
        let db = match (b.track_op(), self.rhs_transposed) {
            (false, _) => None,
            (true, false) => Some(untracked(&swap(a)?, grad)?),
            (true, true) => Some(untracked(&swap(grad)?, a)?),
        };
        Ok((da, db))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    /// Deterministic values in [−0.5, 0.5) from a small LCG, independent of candle's RNG.
    pub(crate) fn random(shape: &[usize], seed: u64, dtype: DType) -> Tensor {
        let n: usize = shape.iter().product();
        let mut s = seed;
        let data: Vec<f64> = (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
            })
            .collect();
        Tensor::from_vec(data, shape, &Device::Cpu)
            .unwrap()
            .to_dtype(dtype)
            .unwrap()
    }

    /// The largest absolute difference, in f64 (the operands may differ in dtype).
    pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
        let (a, b) = (
            a.to_dtype(DType::F64).unwrap(),
            b.to_dtype(DType::F64).unwrap(),
        );
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    }

    /// The product of a naive triple loop in f64, independent of both libraries.
    fn naive(a: &Tensor, b: &Tensor) -> Tensor {
        let (bt, m, k) = a.dims3().unwrap();
        let n = b.dim(2).unwrap();
        let a = a.to_dtype(DType::F64).unwrap().to_vec3::<f64>().unwrap();
        let b = b.to_dtype(DType::F64).unwrap().to_vec3::<f64>().unwrap();
        let mut out = vec![0.0; bt * m * n];
        for t in 0..bt {
            for i in 0..m {
                for j in 0..n {
                    out[(t * m + i) * n + j] = (0..k).map(|p| a[t][i][p] * b[t][p][j]).sum();
                }
            }
        }
        Tensor::from_vec(out, (bt, m, n), &Device::Cpu).unwrap()
    }

    #[test]
    fn products_of_strided_batched_operands_match_a_naive_loop() {
        for dtype in [DType::F32, DType::F64] {
            // b is a transposed view (column-major matrices), a a narrowed one (offset, row stride).
            let a = random(&[3, 5, 9], 1, dtype).narrow(2, 2, 7).unwrap();
            let b = random(&[3, 4, 7], 2, dtype).transpose(1, 2).unwrap();
            let y = matmul(&a, &b).unwrap();
            assert_eq!(y.dims(), &[3, 5, 4]);
            let tol = if dtype == DType::F32 { 1e-5 } else { 1e-12 };
            assert!(max_diff(&y.to_dtype(DType::F64).unwrap(), &naive(&a, &b)) < tol);
        }
    }

    #[test]
    fn rank_four_products_equal_candles() {
        let a = random(&[2, 3, 6, 4], 3, DType::F32);
        let b = random(&[2, 3, 6, 4], 4, DType::F32)
            .transpose(2, 3)
            .unwrap();
        let expected = a.matmul(&b.contiguous().unwrap()).unwrap();
        assert!(max_diff(&matmul(&a, &b).unwrap(), &expected) < 1e-6);
    }

    #[test]
    fn gradients_reach_only_operands_in_autograd() {
        let x = Var::from_tensor(&random(&[2, 3, 4], 5, DType::F64)).unwrap();
        let w = random(&[2, 4, 5], 6, DType::F64);
        let g = random(&[2, 3, 5], 7, DType::F64);
        let y = matmul(x.as_tensor(), &w).unwrap();
        let grads = (y * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let dx = grads.get(x.as_tensor()).unwrap();
        assert!(max_diff(dx, &g.matmul(&w.transpose(1, 2).unwrap()).unwrap()) < 1e-12);
        assert!(grads.get(&w).is_none(), "a frozen operand gets no gradient");

        let w = Var::from_tensor(&w).unwrap();
        let x = random(&[2, 3, 4], 5, DType::F64);
        let y = matmul(&x, w.as_tensor()).unwrap();
        let grads = (y * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let dw = grads.get(w.as_tensor()).unwrap();
        assert!(max_diff(dw, &x.transpose(1, 2).unwrap().matmul(&g).unwrap()) < 1e-12);
        assert!(grads.get(&x).is_none());
    }

    #[test]
    fn a_trained_weight_gets_its_gradient_in_its_own_layout() {
        let w = Var::from_tensor(&random(&[5, 4], 10, DType::F32)).unwrap();
        let x = Var::from_tensor(&random(&[3, 4], 11, DType::F32)).unwrap();
        let g = random(&[3, 5], 12, DType::F32);
        let y = matmul_t(x.as_tensor(), w.as_tensor()).unwrap();
        let expected = x.as_tensor().matmul(&w.as_tensor().t().unwrap()).unwrap();
        assert!(max_diff(&y, &expected) < 1e-6);
        let grads = (y * &g).unwrap().sum_all().unwrap().backward().unwrap();
        let dw = grads.get(w.as_tensor()).unwrap();
        assert!(
            dw.is_contiguous(),
            "dW = Gᵀ·x comes back (out, in), not a transposed view"
        );
        let expected_dw = g.t().unwrap().matmul(x.as_tensor()).unwrap();
        assert!(max_diff(dw, &expected_dw) < 1e-6);
        let dx = grads.get(x.as_tensor()).unwrap();
        assert!(max_diff(dx, &g.matmul(w.as_tensor()).unwrap()) < 1e-6);
    }

    #[test]
    fn half_precision_and_mismatched_shapes_go_through_candle() {
        let a = random(&[4, 3], 8, DType::F16);
        let b = random(&[3, 2], 9, DType::F16);
        let y = matmul(&a, &b).unwrap();
        assert!(max_diff(&y, &a.matmul(&b).unwrap()) == 0.0);
        assert!(matmul(&a, &a).is_err());
    }
}
