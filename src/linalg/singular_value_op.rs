//! Singular values as a differentiable candle op, for ASAM's rank-constrained subspace loss.
//!
//! RCSL (ASAM Eq. 10) treats the singular values of the stacked, normalised hidden states
//! `H` ((n+1) × d) as logits: `-log softmax(σ/τ)₁`. candle has no SVD, so the forward runs faer on
//! the CPU and the backward uses `∂σᵢ/∂H = uᵢ vᵢᵀ`, giving `∂L/∂H = U diag(∂L/∂σ) Vᵀ`. That formula
//! holds wherever `σᵢ` is simple and non-zero — generic for n+1 ≪ d hidden states; at repeated
//! singular values the op returns one element of the subdifferential.

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor, WithDType};
use faer::Mat;

use super::decompose::svd;
use super::dense::{compute_dtype, matrix_dims, with_matrix};
use super::error::{Error, Result, TensorContext};

const OP: &str = "differentiable_singular_values";

/// Singular values of the matrix `h` (shape `(m, n)`) in descending order, shape `(min(m, n),)`,
/// with a backward pass, so a loss built on them trains whatever produced `h`.
///
/// Runs on a CPU copy (`to_device` is differentiable) and returns the values in `h`'s dtype on
/// `h`'s device; f16/bf16 input is computed in f32. Intended for small matrices (a handful of
/// hidden states): forward and backward each cost one SVD.
pub fn differentiable_singular_values(h: &Tensor) -> Result<Tensor> {
    matrix_dims(OP, h)?;
    let compute = compute_dtype(OP, h.dtype())?;
    let on_cpu = h
        .to_device(&Device::Cpu)
        .and_then(|h| h.to_dtype(compute))
        .during(OP)?;
    // Refuse NaN/inf here, with a position, rather than deep inside the forward pass.
    with_matrix::<f64, _>(OP, &on_cpu, |_| Ok(()))?;
    on_cpu
        .apply_op1(SingularValuesOp)
        .and_then(|s| s.to_dtype(h.dtype()))
        .and_then(|s| s.to_device(h.device()))
        .during(OP)
}

/// The candle op behind [`differentiable_singular_values`]; stateless, the backward pass
/// recomputes the factors from the saved input instead of caching them between the passes.
struct SingularValuesOp;

impl CustomOp1 for SingularValuesOp {
    fn name(&self) -> &'static str {
        "singular-values"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let matrix = match storage {
            CpuStorage::F32(data) => read_strided(data, layout)?,
            CpuStorage::F64(data) => read_strided(data, layout)?,
            _ => {
                return Err(candle_core::Error::wrap(Error::UnsupportedDType {
                    op: OP,
                    dtype: storage_dtype(storage),
                }))
            }
        };
        let values = matrix
            .singular_values()
            .map_err(|_| candle_core::Error::wrap(Error::NoConvergence { op: OP }))?;
        let len = values.len();
        let out = match storage {
            CpuStorage::F32(_) => CpuStorage::F32(values.iter().map(|&v| v as f32).collect()),
            _ => CpuStorage::F64(values),
        };
        Ok((out, Shape::from(len)))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let factors = svd(&arg.to_dtype(DType::F64)?).map_err(candle_core::Error::wrap)?;
        let g = grad_res.to_device(&Device::Cpu)?.to_dtype(DType::F64)?;
        let grad = factors
            .u
            .broadcast_mul(&g.unsqueeze(0)?)?
            .matmul(&factors.vt)?
            .to_dtype(arg.dtype())?
            .to_device(arg.device())?;
        Ok(Some(grad))
    }
}

/// The 2-D view `layout` describes, as an f64 matrix; candle may hand the op any strides.
fn read_strided<T: WithDType>(data: &[T], layout: &Layout) -> candle_core::Result<Mat<f64>> {
    let (&[rows, cols], &[row_stride, col_stride]) = (layout.dims(), layout.stride()) else {
        return Err(candle_core::Error::wrap(Error::NotAMatrix {
            op: OP,
            shape: layout.dims().to_vec(),
        }));
    };
    let start = layout.start_offset();
    let mut matrix = Mat::zeros(rows, cols);
    for i in 0..rows {
        for j in 0..cols {
            let value = data
                .get(start + i * row_stride + j * col_stride)
                .map(|x| x.to_f64())
                .ok_or_else(|| candle_core::Error::Msg("layout exceeds its storage".into()))?;
            if !value.is_finite() {
                return Err(candle_core::Error::wrap(Error::NonFinite {
                    op: OP,
                    position: format!("row {i}, column {j}"),
                    value,
                }));
            }
            matrix[(i, j)] = value;
        }
    }
    Ok(matrix)
}

fn storage_dtype(storage: &CpuStorage) -> DType {
    use candle_core::backend::BackendStorage;
    storage.dtype()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Var;

    fn matrix(rows: &[&[f64]]) -> Tensor {
        let data: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        let cols = rows.first().map_or(0, |r| r.len());
        Tensor::from_vec(data, (rows.len(), cols), &Device::Cpu).expect("test matrix")
    }

    #[test]
    fn forward_matches_the_closed_form_for_contiguous_and_transposed_input() -> Result<()> {
        // [[3, 2, 2], [2, 3, -2]] has σ = 5, 3; its transpose has the same singular values.
        let m = matrix(&[&[3.0, 2.0, 2.0], &[2.0, 3.0, -2.0]]);
        let s = differentiable_singular_values(&m)?
            .to_vec1::<f64>()
            .during("test")?;
        assert!(
            (s[0] - 5.0).abs() < 1e-12 && (s[1] - 3.0).abs() < 1e-12,
            "{s:?}"
        );
        let st = differentiable_singular_values(&m.t().during("test")?)?
            .to_vec1::<f64>()
            .during("test")?;
        assert!(
            (st[0] - 5.0).abs() < 1e-12 && (st[1] - 3.0).abs() < 1e-12,
            "{st:?}"
        );
        let s32 = differentiable_singular_values(&m.to_dtype(DType::F32).during("test")?)?;
        assert_eq!(s32.dtype(), DType::F32);
        Ok(())
    }

    /// dσ₁/dM = u₁v₁ᵀ; for [[3, 2, 2], [2, 3, -2]], u₁ = (1, 1)/√2, v₁ = (1, 1, 0)/√2, so the
    /// gradient of σ₁ alone is [[½, ½, 0], [½, ½, 0]].
    #[test]
    fn backward_of_the_top_singular_value_is_u1_v1_transposed() -> Result<()> {
        let m = Var::from_tensor(&matrix(&[&[3.0, 2.0, 2.0], &[2.0, 3.0, -2.0]])).during("test")?;
        let s = differentiable_singular_values(m.as_tensor())?;
        let top = s.get(0).during("test")?;
        let grads = top.backward().during("test")?;
        let g = grads
            .get(m.as_tensor())
            .map(|g| g.to_vec2::<f64>())
            .transpose()
            .during("test")?;
        let expected = [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]];
        let g = g.unwrap_or_default();
        assert_eq!(g.len(), 2, "no gradient reached the input");
        for (row, want) in g.iter().zip(expected) {
            for (a, e) in row.iter().zip(want) {
                assert!((a - e).abs() < 1e-12, "{g:?}");
            }
        }
        Ok(())
    }

    #[test]
    fn non_finite_and_non_matrix_input_are_errors() {
        let nan = matrix(&[&[1.0, f64::NAN]]);
        assert!(matches!(
            differentiable_singular_values(&nan),
            Err(Error::NonFinite { .. })
        ));
        // Straight through apply_op1, bypassing the wrapper's check: still an error, no panic.
        assert!(nan.apply_op1(SingularValuesOp).is_err());
        let vector = Tensor::new(&[1.0f64, 2.0], &Device::Cpu).expect("vector");
        assert!(matches!(
            differentiable_singular_values(&vector),
            Err(Error::NotAMatrix { .. })
        ));
        let ints = Tensor::new(&[[1u32, 2], [3, 4]], &Device::Cpu).expect("ints");
        assert!(matches!(
            differentiable_singular_values(&ints),
            Err(Error::UnsupportedDType { .. })
        ));
    }
}
