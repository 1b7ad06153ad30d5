//! Symmetric eigendecomposition and singular value decomposition of candle tensors, by faer.
//!
//! Results come back as tensors in the input's dtype and on the input's device, so callers never
//! see faer. The work runs in f64 for f64 input and in f32 otherwise: the caller chooses precision
//! by choosing the dtype (the notes measure eigh of 4096² at 6.6 s in f32 and 14.8 s in f64, and
//! null spaces need f64 to resolve eigenvalues near zero — [`super::CovarianceAccumulator`]
//! therefore returns f64).

use candle_core::{DType, Tensor};
use faer::linalg::solvers::SelfAdjointEigen;
use faer::{Mat, MatRef, Side};

use super::dense::{
    compute_dtype, matrix_dims, matrix_to_tensor, vector_to_tensor, with_matrix, Real,
};
use super::error::{Error, Result};

/// A symmetric eigendecomposition `C = V diag(λ) Vᵀ`.
#[derive(Debug, Clone)]
pub struct Eigh {
    /// Eigenvalues λ in ascending order, shape `(n,)`.
    pub values: Tensor,
    /// Orthonormal eigenvectors as columns, shape `(n, n)`: column `i` belongs to `values[i]`.
    /// Within a cluster of (nearly) equal eigenvalues the columns are arbitrary; compare the
    /// projectors of subspaces, never individual vectors.
    pub vectors: Tensor,
}

/// A thin singular value decomposition `M = U diag(S) Vᵀ` of an `m × n` matrix, `k = min(m, n)`.
#[derive(Debug, Clone)]
pub struct Svd {
    /// Left singular vectors as columns, shape `(m, k)`.
    pub u: Tensor,
    /// Singular values in descending order, shape `(k,)`, all `≥ 0`.
    pub s: Tensor,
    /// Right singular vectors as rows, shape `(k, n)`.
    pub vt: Tensor,
}

/// Eigendecomposition of the symmetric matrix `c` (a covariance), eigenvalues ascending.
///
/// Errors when `c` is not square, not symmetric up to rounding (relative gap above √ε of the
/// compute precision), contains NaN/infinity, or the solver does not converge.
pub fn eigh(c: &Tensor) -> Result<Eigh> {
    const OP: &str = "eigh";
    let (dtype, device) = (c.dtype(), c.device().clone());
    match compute_dtype(OP, dtype)? {
        DType::F64 => symmetric_eigen::<f64, _>(OP, c, |values, vectors| {
            Ok(Eigh {
                values: vector_to_tensor(OP, values.to_vec(), dtype, &device)?,
                vectors: matrix_to_tensor(OP, vectors, dtype, &device)?,
            })
        }),
        _ => symmetric_eigen::<f32, _>(OP, c, |values, vectors| {
            Ok(Eigh {
                values: vector_to_tensor(OP, values.to_vec(), dtype, &device)?,
                vectors: matrix_to_tensor(OP, vectors, dtype, &device)?,
            })
        }),
    }
}

/// Thin SVD of `m`, singular values descending.
pub fn svd(m: &Tensor) -> Result<Svd> {
    const OP: &str = "svd";
    match compute_dtype(OP, m.dtype())? {
        DType::F64 => thin_svd::<f64>(OP, m),
        _ => thin_svd::<f32>(OP, m),
    }
}

/// Singular values of `m` in descending order, shape `(min(m, n),)`; cheaper than [`svd`].
pub fn singular_values(m: &Tensor) -> Result<Tensor> {
    const OP: &str = "singular_values";
    let (dtype, device) = (m.dtype(), m.device().clone());
    match compute_dtype(OP, dtype)? {
        DType::F64 => {
            let values = with_matrix::<f64, _>(OP, m, |view| {
                view.singular_values()
                    .map_err(|_| Error::NoConvergence { op: OP })
            })?;
            vector_to_tensor(OP, values, dtype, &device)
        }
        _ => {
            let values = with_matrix::<f32, _>(OP, m, |view| {
                view.singular_values()
                    .map_err(|_| Error::NoConvergence { op: OP })
            })?;
            vector_to_tensor(OP, values, dtype, &device)
        }
    }
}

/// Runs faer's self-adjoint eigensolver on `c` in precision `T` and hands the ascending
/// eigenvalues and the eigenvector matrix to `f`. Shared by [`eigh`] and the subspace builders,
/// which keep only some columns and so never materialise the full `n × n` tensor.
pub(crate) fn symmetric_eigen<T: Real, R>(
    op: &'static str,
    c: &Tensor,
    f: impl FnOnce(&[T], MatRef<'_, T>) -> Result<R>,
) -> Result<R> {
    let (rows, cols) = matrix_dims(op, c)?;
    if rows != cols {
        return Err(Error::NotSquare { op, rows, cols });
    }
    let (values, vectors): (Vec<T>, Mat<T>) = with_matrix::<T, _>(op, c, |view| {
        let eigen = checked_eigen(op, view)?;
        let values = eigen.S().column_vector().iter().copied().collect();
        Ok((values, eigen.U().to_owned()))
    })?;
    f(&values, vectors.as_ref())
}

/// faer's self-adjoint eigensolver on a finite `view`, after the symmetry check.
pub(crate) fn checked_eigen<T: Real>(
    op: &'static str,
    view: MatRef<'_, T>,
) -> Result<SelfAdjointEigen<T>> {
    check_symmetric(op, view)?;
    view.self_adjoint_eigen(Side::Lower)
        .map_err(|_| Error::NoConvergence { op })
}

fn thin_svd<T: Real>(op: &'static str, m: &Tensor) -> Result<Svd> {
    let (dtype, device) = (m.dtype(), m.device().clone());
    with_matrix::<T, _>(op, m, |view| {
        let svd = view.thin_svd().map_err(|_| Error::NoConvergence { op })?;
        let s = svd.S().column_vector().iter().copied().collect();
        Ok(Svd {
            u: matrix_to_tensor(op, svd.U(), dtype, &device)?,
            s: vector_to_tensor(op, s, dtype, &device)?,
            vt: matrix_to_tensor(op, svd.V().transpose(), dtype, &device)?,
        })
    })
}

/// faer reads only the lower triangle; a matrix that is not symmetric would silently be replaced
/// by its symmetrised lower half, so asymmetry beyond rounding is an error instead.
fn check_symmetric<T: Real>(op: &'static str, m: MatRef<'_, T>) -> Result<()> {
    let n = m.nrows();
    let mut scale = 0.0f64;
    for j in 0..n {
        for i in 0..n {
            scale = scale.max(m[(i, j)].to_f64().abs());
        }
    }
    let epsilon = if T::DTYPE == DType::F64 {
        f64::EPSILON
    } else {
        f64::from(f32::EPSILON)
    };
    let tolerance = epsilon.sqrt() * scale;
    for j in 0..n {
        for i in (j + 1)..n {
            let gap = (m[(i, j)].to_f64() - m[(j, i)].to_f64()).abs();
            if gap > tolerance {
                return Err(Error::NotSymmetric {
                    op,
                    row: i,
                    col: j,
                    gap,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::error::TensorContext;
    use candle_core::Device;

    const TOL: f64 = 1e-12;

    fn matrix(rows: &[&[f64]]) -> Tensor {
        let data: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        let cols = rows.first().map_or(0, |r| r.len());
        Tensor::from_vec(data, (rows.len(), cols), &Device::Cpu).expect("test matrix")
    }

    fn to_vec2(t: &Tensor) -> Vec<Vec<f64>> {
        t.to_dtype(DType::F64)
            .and_then(|t| t.to_vec2::<f64>())
            .expect("2-D tensor")
    }

    fn to_vec1(t: &Tensor) -> Vec<f64> {
        t.to_dtype(DType::F64)
            .and_then(|t| t.to_vec1::<f64>())
            .expect("1-D tensor")
    }

    fn assert_close(actual: &[f64], expected: &[f64], tol: f64) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() <= tol, "{actual:?} vs {expected:?}");
        }
    }

    /// `v vᵀ` of column `j`: sign-free, so it can be compared with a hand-computed projector.
    fn column_projector(vectors: &[Vec<f64>], j: usize) -> Vec<f64> {
        let col: Vec<f64> = vectors.iter().map(|row| row[j]).collect();
        col.iter()
            .flat_map(|a| col.iter().map(move |b| a * b))
            .collect()
    }

    #[test]
    fn eigh_of_a_diagonal_sorts_ascending_and_returns_unit_vectors() -> Result<()> {
        let e = eigh(&matrix(&[
            &[3.0, 0.0, 0.0],
            &[0.0, 1.0, 0.0],
            &[0.0, 0.0, 2.0],
        ]))?;
        assert_close(&to_vec1(&e.values), &[1.0, 2.0, 3.0], TOL);
        let v = to_vec2(&e.vectors);
        assert_close(
            &column_projector(&v, 0),
            &[0., 0., 0., 0., 1., 0., 0., 0., 0.],
            TOL,
        );
        assert_close(
            &column_projector(&v, 1),
            &[0., 0., 0., 0., 0., 0., 0., 0., 1.],
            TOL,
        );
        assert_close(
            &column_projector(&v, 2),
            &[1., 0., 0., 0., 0., 0., 0., 0., 0.],
            TOL,
        );
        Ok(())
    }

    /// The second-difference matrix tridiag(-1, 2, -1) has eigenvalues 2 - √2, 2, 2 + √2 with
    /// eigenvectors (1, √2, 1)/2, (1, 0, -1)/√2, (1, -√2, 1)/2.
    #[test]
    fn eigh_of_the_second_difference_matrix_matches_the_closed_form() -> Result<()> {
        let c = matrix(&[&[2.0, -1.0, 0.0], &[-1.0, 2.0, -1.0], &[0.0, -1.0, 2.0]]);
        let e = eigh(&c)?;
        let r2 = std::f64::consts::SQRT_2;
        assert_close(&to_vec1(&e.values), &[2.0 - r2, 2.0, 2.0 + r2], TOL);
        let v = to_vec2(&e.vectors);
        let outer = |x: [f64; 3]| -> Vec<f64> {
            x.iter()
                .flat_map(|a| x.iter().map(move |b| a * b))
                .collect()
        };
        assert_close(&column_projector(&v, 0), &outer([0.5, r2 / 2.0, 0.5]), TOL);
        assert_close(
            &column_projector(&v, 1),
            &outer([1.0 / r2, 0.0, -1.0 / r2]),
            TOL,
        );
        assert_close(&column_projector(&v, 2), &outer([0.5, -r2 / 2.0, 0.5]), TOL);
        Ok(())
    }

    #[test]
    fn eigh_in_f32_agrees_with_f64_and_keeps_the_dtype() -> Result<()> {
        let c64 = matrix(&[&[4.0, 1.0, 0.5], &[1.0, 3.0, 0.25], &[0.5, 0.25, 2.0]]);
        let c32 = c64.to_dtype(DType::F32).during("test")?;
        let (e64, e32) = (eigh(&c64)?, eigh(&c32)?);
        assert_eq!(e32.values.dtype(), DType::F32);
        assert_eq!(e32.vectors.dtype(), DType::F32);
        assert_close(&to_vec1(&e32.values), &to_vec1(&e64.values), 1e-5);
        // Reconstruction V diag(λ) Vᵀ = C in f64.
        let v = to_vec2(&e64.vectors);
        let l = to_vec1(&e64.values);
        let c = to_vec2(&c64);
        for i in 0..3 {
            for j in 0..3 {
                let r: f64 = (0..3).map(|k| v[i][k] * l[k] * v[j][k]).sum();
                assert!((r - c[i][j]).abs() < TOL, "({i},{j}): {r} vs {}", c[i][j]);
            }
        }
        Ok(())
    }

    #[test]
    fn eigh_of_half_precision_input_runs_in_f32_and_returns_the_input_dtype() -> Result<()> {
        let c = matrix(&[&[2.0, 1.0], &[1.0, 2.0]])
            .to_dtype(DType::BF16)
            .during("test")?;
        let e = eigh(&c)?;
        assert_eq!(e.values.dtype(), DType::BF16);
        assert_close(&to_vec1(&e.values), &[1.0, 3.0], 1e-2);
        Ok(())
    }

    #[test]
    fn eigh_refuses_non_square_asymmetric_and_nan_input() {
        let wide = matrix(&[&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]]);
        assert!(matches!(
            eigh(&wide),
            Err(Error::NotSquare {
                rows: 2,
                cols: 3,
                ..
            })
        ));
        let skew = matrix(&[&[1.0, 2.0], &[0.0, 1.0]]);
        assert!(matches!(
            eigh(&skew),
            Err(Error::NotSymmetric { row: 1, col: 0, .. })
        ));
        let nan = matrix(&[&[1.0, f64::NAN], &[f64::NAN, 1.0]]);
        assert!(matches!(eigh(&nan), Err(Error::NonFinite { .. })));
        let inf = matrix(&[&[f64::INFINITY]]);
        assert!(matches!(svd(&inf), Err(Error::NonFinite { .. })));
        assert!(matches!(
            singular_values(&inf),
            Err(Error::NonFinite { .. })
        ));
    }

    /// [[3, 0], [4, 5]]: MᵀM = [[25, 20], [20, 25]] has eigenvalues 45 and 5, so σ = 3√5, √5.
    #[test]
    fn svd_of_a_square_matrix_matches_the_closed_form_and_reconstructs() -> Result<()> {
        let m = matrix(&[&[3.0, 0.0], &[4.0, 5.0]]);
        let d = svd(&m)?;
        let s5 = 5.0f64.sqrt();
        assert_close(&to_vec1(&d.s), &[3.0 * s5, s5], TOL);
        let rebuilt =
            d.u.broadcast_mul(&d.s.unsqueeze(0).during("test")?)
                .and_then(|us| us.matmul(&d.vt))
                .during("test")?;
        assert_close(&to_vec2(&rebuilt).concat(), &[3.0, 0.0, 4.0, 5.0], TOL);
        Ok(())
    }

    /// [[3, 2, 2], [2, 3, -2]]: MMᵀ = [[17, 8], [8, 17]], eigenvalues 25 and 9, σ = 5, 3;
    /// u₁ = (1, 1)/√2, v₁ = (1, 1, 0)/√2.
    #[test]
    fn svd_of_a_wide_matrix_is_thin_with_orthonormal_factors() -> Result<()> {
        let m = matrix(&[&[3.0, 2.0, 2.0], &[2.0, 3.0, -2.0]]);
        let d = svd(&m)?;
        assert_eq!(d.u.dims(), &[2, 2]);
        assert_eq!(d.vt.dims(), &[2, 3]);
        assert_close(&to_vec1(&d.s), &[5.0, 3.0], TOL);
        let u = to_vec2(&d.u);
        let vt = to_vec2(&d.vt);
        // u₁ v₁ᵀ is sign-free: both flip together.
        let u1v1: Vec<f64> = (0..2)
            .flat_map(|i| (0..3).map(move |j| (i, j)))
            .map(|(i, j)| u[i][0] * vt[0][j])
            .collect();
        assert_close(&u1v1, &[0.5, 0.5, 0.0, 0.5, 0.5, 0.0], TOL);
        let vvt = d.vt.matmul(&d.vt.t().during("test")?).during("test")?;
        assert_close(&to_vec2(&vvt).concat(), &[1.0, 0.0, 0.0, 1.0], TOL);
        let utu = d.u.t().and_then(|ut| ut.matmul(&d.u)).during("test")?;
        assert_close(&to_vec2(&utu).concat(), &[1.0, 0.0, 0.0, 1.0], TOL);
        Ok(())
    }

    #[test]
    fn singular_values_of_a_rank_one_matrix_are_its_norm_and_zero() -> Result<()> {
        // [[1, 2], [2, 4]] = (1, 2)ᵀ(1, 2): σ₁ = ‖(1,2)‖² = 5, σ₂ = 0.
        let s = singular_values(&matrix(&[&[1.0, 2.0], &[2.0, 4.0]]))?;
        assert_close(&to_vec1(&s), &[5.0, 0.0], 1e-12);
        let s32 = singular_values(
            &matrix(&[&[1.0, 2.0], &[2.0, 4.0]])
                .to_dtype(DType::F32)
                .during("test")?,
        )?;
        assert_eq!(s32.dtype(), DType::F32);
        assert_close(&to_vec1(&s32), &[5.0, 0.0], 1e-5);
        Ok(())
    }
}
