//! Subspaces of a layer's input space: null spaces of preserved covariances (ELoRA §3.3,
//! LPEdit §3.2), principal subspaces (ELoRA's knowledge space, §3.4), their projectors, and the
//! similarity of two subspaces (ELoRA Eq. 9).
//!
//! A subspace is held as an orthonormal basis `U` (d × k), never as the d × d projector, because
//! projecting a weight or a gradient as `(M U) Uᵀ` costs `2·rows·d·k` while forming `U Uᵀ` costs
//! `d²·k` and a d² buffer. Null-space eigenvalues are tiny and clustered, so individual basis
//! vectors are not reproducible across runs or precisions; everything here that compares
//! subspaces goes through projectors, which are.

use candle_core::{DType, Device, Tensor};

use faer::MatRef;

use super::decompose::{checked_eigen, svd, symmetric_eigen};
use super::dense::{
    check_finite, columns_to_tensor, compute_dtype, matrix_dims, with_matrix, Real,
};
use super::error::{Error, Result, TensorContext};

/// How [`null_space`] chooses the directions a covariance barely uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NullSpaceRule {
    /// Eigenvectors whose eigenvalue is strictly below this absolute threshold, measured on the
    /// matrix given (LPEdit uses 0.02; AlphaEdit 0.01 on the mean covariance): pass
    /// [`super::CovarianceAccumulator::mean`] so the threshold does not depend on the token count.
    Below(f64),
    /// The `k` eigenvectors with the smallest eigenvalues.
    Count(usize),
    /// Eigenvectors whose eigenvalue is strictly below this fraction of the largest one: a
    /// threshold in the covariance's own units, so it means the same on models whose
    /// activations have different scales.
    RelativeBelow(f64),
    /// The largest set of smallest eigenvalues whose sum is at most this fraction of the trace:
    /// at most that share of the preserved energy `Σλ` lies inside the null space (may leak).
    Energy(f64),
}

/// How much of the preserved knowledge a null space lets through: its dimension of the width,
/// and `leak = Σ_{i∈null} λ_i / Σ_i λ_i`, the share of the preserved energy (the trace of
/// `XᵀX/N`) along its directions. An update confined to the null space changes a preserved
/// activation's output by at most this share of its energy (in the mean-square sense).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct NullSpaceStats {
    pub dims: usize,
    pub width: usize,
    pub leak: f64,
}

impl NullSpaceStats {
    /// The statistics of the null space made of the `dims` smallest of `values` (ascending
    /// eigenvalues, as every rule picks a prefix of them). Round-off negatives count as 0; an
    /// all-zero covariance leaks nothing.
    pub fn of(values: &[f64], dims: usize) -> Self {
        let energy = |v: &[f64]| v.iter().map(|x| x.max(0.0)).sum::<f64>();
        let total = energy(values);
        let inside = energy(&values[..dims.min(values.len())]);
        let leak = if total > 0.0 { inside / total } else { 0.0 };
        NullSpaceStats {
            dims,
            width: values.len(),
            leak: leak.clamp(0.0, 1.0),
        }
    }
}

/// The indices `rule` picks from ascending eigenvalues `values`: always a prefix `0..k`.
/// Errors when it picks nothing.
pub fn null_indices(values: &[f64], rule: NullSpaceRule) -> Result<Vec<usize>> {
    const OP: &str = "null_space";
    let max = values.last().copied().unwrap_or(0.0).max(0.0);
    let below = |threshold: f64| -> Vec<usize> {
        (0..values.len())
            .filter(|&i| values.get(i).is_some_and(|&v| v < threshold))
            .collect()
    };
    let (chosen, what) = match rule {
        NullSpaceRule::Count(k) => {
            check_count(OP, k, values.len())?;
            return Ok((0..k).collect());
        }
        NullSpaceRule::Below(t) => (below(t), format!("below {t}")),
        NullSpaceRule::RelativeBelow(f) => (
            below(f * max),
            format!("below {f} of the largest eigenvalue {max:e}"),
        ),
        NullSpaceRule::Energy(f) => {
            let budget = f * values.iter().map(|v| v.max(0.0)).sum::<f64>();
            let mut sum = 0.0;
            let k = values
                .iter()
                .take_while(|v| {
                    sum += v.max(0.0);
                    sum <= budget
                })
                .count();
            (
                (0..k).collect(),
                format!("whose sum is within {f} of the trace"),
            )
        }
    };
    if chosen.is_empty() {
        return Err(Error::EmptySelection {
            op: OP,
            reason: format!(
                "no eigenvalue is {what} (the smallest is {:e})",
                values.first().copied().unwrap_or(f64::NAN)
            ),
        });
    }
    Ok(chosen)
}

/// A linear subspace of `R^ambient`, held as an orthonormal basis.
#[derive(Debug, Clone)]
pub struct Subspace {
    basis: Tensor,
    ambient: usize,
}

/// The null space of the symmetric positive semi-definite `c` (an uncentred covariance `XᵀX`):
/// the eigenvectors chosen by `rule`, ordered by ascending eigenvalue.
///
/// A weight update `ΔW` whose rows lie in it (`ΔW ← ΔW U Uᵀ`, [`Subspace::project_rows`]) leaves
/// `ΔW x ≈ 0` for every preserved activation `x`. Errors when the rule selects nothing.
pub fn null_space(c: &Tensor, rule: NullSpaceRule) -> Result<Subspace> {
    Ok(null_space_spectrum(c, rule)?.0)
}

/// [`null_space`] and the ascending eigenvalues it was cut from (for [`NullSpaceStats::of`]).
pub fn null_space_spectrum(c: &Tensor, rule: NullSpaceRule) -> Result<(Subspace, Vec<f64>)> {
    const OP: &str = "null_space";
    let fraction = |x: f64| x.is_finite() && x > 0.0 && x < 1.0;
    match rule {
        NullSpaceRule::Below(threshold) if !threshold.is_finite() => {
            return Err(Error::InvalidArgument {
                op: OP,
                reason: format!("threshold {threshold} is not a finite number"),
                help: "use a small positive threshold such as 0.02".into(),
            })
        }
        NullSpaceRule::RelativeBelow(f) | NullSpaceRule::Energy(f) if !fraction(f) => {
            return Err(Error::InvalidArgument {
                op: OP,
                reason: format!("fraction {f} is not in (0, 1)"),
                help: "use a small fraction such as 1e-3".into(),
            })
        }
        NullSpaceRule::Count(0) => {
            return Err(Error::EmptySelection {
                op: OP,
                reason: "Count(0) selects no direction".into(),
            })
        }
        _ => {}
    }
    let mut spectrum = Vec::new();
    let space = select_eigenvectors(OP, c, |values| {
        spectrum = values.to_vec();
        null_indices(values, rule)
    })?;
    Ok((space, spectrum))
}

/// The span of the `k` eigenvectors of the symmetric `c` with the largest eigenvalues, column 0
/// being the top one. For a covariance these are its top-k left singular vectors, which is what
/// ELoRA's knowledge space takes from the SVD of the averaged covariance.
pub fn principal_subspace(c: &Tensor, k: usize) -> Result<Subspace> {
    const OP: &str = "principal_subspace";
    select_eigenvectors(OP, c, |values| {
        let n = values.len();
        check_count(OP, k, n)?;
        Ok((n - k..n).rev().collect())
    })
}

/// `tr(P_a P_b) / min(rank_a, rank_b)`: 1 when the smaller subspace lies inside the larger, 0 when
/// they are orthogonal. ELoRA's Eq. 9 compares principal directions with `tr(P_bᵀ P_1)` of the
/// basis matrices, which flips sign with the arbitrary sign of each eigenvector; comparing the
/// projectors removes that arbitrariness. Computed as `‖U_aᵀ U_b‖²_F` in f64, never forming d × d.
pub fn projector_similarity(a: &Subspace, b: &Subspace) -> Result<f64> {
    const OP: &str = "projector_similarity";
    if a.ambient != b.ambient {
        return Err(Error::DimensionMismatch {
            op: OP,
            expected: a.ambient,
            found: b.ambient,
        });
    }
    let as_f64 = |s: &Subspace| {
        s.basis
            .to_device(&Device::Cpu)
            .and_then(|u| u.to_dtype(DType::F64))
    };
    let overlap = as_f64(a)
        .and_then(|ua| ua.t()?.matmul(&as_f64(b)?))
        .and_then(|m| m.sqr()?.sum_all()?.to_scalar::<f64>())
        .during(OP)?;
    Ok(overlap / a.rank().min(b.rank()) as f64)
}

/// The top-`k` eigenvectors of each of the symmetric `n × n` matrices stored back to back in
/// `matrices` (row-major f64), as row-major `n × k` bases, column 0 the top one: what
/// [`principal_subspace`] gives, for many small matrices without a tensor each (ELoRA's filter
/// decomposes 512 covariances of 32 × 32 per space and edit). Same checks: finite, square,
/// symmetric up to rounding, `k ≤ n`.
pub fn principal_bases(matrices: &[f64], n: usize, k: usize) -> Result<Vec<f64>> {
    const OP: &str = "principal_subspace";
    check_count(OP, k, n)?;
    let size = n * n;
    if size == 0 || !matrices.len().is_multiple_of(size) {
        return Err(Error::InvalidArgument {
            op: OP,
            reason: format!("{} values are not whole {n} × {n} matrices", matrices.len()),
            help: "pass the matrices back to back, row-major".into(),
        });
    }
    let mut bases = Vec::with_capacity(matrices.len() / n * k);
    for matrix in matrices.chunks_exact(size) {
        check_finite(OP, matrix, n)?;
        let eigen = checked_eigen(OP, MatRef::from_row_major_slice(matrix, n, n))?;
        let vectors = eigen.U();
        for i in 0..n {
            bases.extend((n - k..n).rev().map(|j| vectors[(i, j)]));
        }
    }
    Ok(bases)
}

/// `‖AᵀB‖²_F / k` of two row-major `n × k` orthonormal bases (from [`principal_bases`]):
/// [`projector_similarity`] without tensors.
pub fn basis_similarity(a: &[f64], b: &[f64], k: usize) -> f64 {
    let mut overlap = vec![0f64; k * k];
    for (ra, rb) in a.chunks_exact(k).zip(b.chunks_exact(k)) {
        for (i, &x) in ra.iter().enumerate() {
            for (o, &y) in overlap[i * k..(i + 1) * k].iter_mut().zip(rb) {
                *o += x * y;
            }
        }
    }
    overlap.iter().map(|o| o * o).sum::<f64>() / k.max(1) as f64
}

impl Subspace {
    /// Wraps a basis whose columns are already orthonormal (e.g. one cached from an earlier
    /// [`null_space`] call). Checks `UᵀU = I` up to 8√ε of the dtype, so a corrupted or
    /// non-orthonormal cache is refused instead of silently producing a wrong projector. The check
    /// costs `d·k²`, a fraction of the eigendecomposition that produced the basis.
    pub fn from_orthonormal_columns(basis: Tensor) -> Result<Self> {
        const OP: &str = "subspace";
        let (ambient, rank) = matrix_dims(OP, &basis)?;
        if rank > ambient {
            return Err(Error::InvalidArgument {
                op: OP,
                reason: format!("{rank} columns cannot be orthonormal in dimension {ambient}"),
                help: "pass the basis as columns: shape (d, k) with k ≤ d".into(),
            });
        }
        let epsilon = match compute_dtype(OP, basis.dtype())? {
            DType::F64 => f64::EPSILON,
            _ => f64::from(f32::EPSILON),
        };
        with_matrix::<f64, _>(OP, &basis, |_| Ok(()))?;
        let u = basis
            .to_device(&Device::Cpu)
            .and_then(|u| u.to_dtype(DType::F64))
            .during(OP)?;
        let gram = u
            .t()
            .and_then(|ut| ut.matmul(&u))
            .and_then(|g| g.to_vec2::<f64>())
            .during(OP)?;
        // Generous enough for eigenvectors of an 11008-wide f32 covariance, tight enough to
        // catch a basis that is not one.
        let tolerance = 8.0 * epsilon.sqrt();
        for (i, row) in gram.iter().enumerate() {
            for (j, &g) in row.iter().enumerate() {
                let target = if i == j { 1.0 } else { 0.0 };
                if g.is_nan() || (g - target).abs() > tolerance {
                    return Err(Error::InvalidArgument {
                        op: OP,
                        reason: format!("columns are not orthonormal: (UᵀU)[{i}, {j}] = {g}"),
                        help: "orthonormalise them first with Subspace::spanned_by".into(),
                    });
                }
            }
        }
        Ok(Self { basis, ambient })
    }

    /// The span of the columns of `vectors` (d × m), orthonormalised by a thin SVD. Directions
    /// with singular value below `max(d, m)·ε·σ₁` count as linear dependence and are dropped.
    pub fn spanned_by(vectors: &Tensor) -> Result<Self> {
        const OP: &str = "subspace";
        let (ambient, count) = matrix_dims(OP, vectors)?;
        let epsilon = match compute_dtype(OP, vectors.dtype())? {
            DType::F64 => f64::EPSILON,
            _ => f64::from(f32::EPSILON),
        };
        let decomposition = svd(vectors)?;
        let sigma = decomposition
            .s
            .to_dtype(DType::F64)
            .and_then(|s| s.to_vec1::<f64>())
            .during(OP)?;
        let top = sigma.first().copied().unwrap_or(0.0);
        let rank = sigma
            .iter()
            .take_while(|&&s| s > ambient.max(count) as f64 * epsilon * top)
            .count();
        if rank == 0 {
            return Err(Error::EmptySelection {
                op: OP,
                reason: "the vectors are all zero and span nothing".into(),
            });
        }
        let basis = decomposition.u.narrow(1, 0, rank).during(OP)?;
        let basis = basis.contiguous().during(OP)?;
        Ok(Self { basis, ambient })
    }

    /// The orthonormal basis `U`, shape `(ambient, rank)`.
    pub fn basis(&self) -> &Tensor {
        &self.basis
    }

    /// Dimension `d` of the space the subspace lives in.
    pub fn ambient(&self) -> usize {
        self.ambient
    }

    /// Dimension `k` of the subspace (number of basis columns), always ≥ 1.
    pub fn rank(&self) -> usize {
        self.basis.dims().get(1).copied().unwrap_or(0)
    }

    /// The orthogonal projector `U Uᵀ` (d × d) in the basis's dtype and device.
    pub fn projector(&self) -> Result<Tensor> {
        self.basis
            .t()
            .and_then(|ut| self.basis.matmul(&ut))
            .during("projector")
    }

    /// `M U Uᵀ`: each row of `m` (shape `(…, d)`, e.g. a weight `d_out × d_in` or its gradient)
    /// projected onto the subspace. Runs in `m`'s dtype and device and stays differentiable in
    /// `m`, so it can sit inside a loss as well as act on a gradient.
    pub fn project_rows(&self, m: &Tensor) -> Result<Tensor> {
        const OP: &str = "project_rows";
        let width = m.dims().last().copied().unwrap_or(0);
        if m.rank() == 0 || width != self.ambient {
            return Err(Error::DimensionMismatch {
                op: OP,
                expected: self.ambient,
                found: width,
            });
        }
        let u = self
            .basis
            .to_device(m.device())
            .and_then(|u| u.to_dtype(m.dtype()))
            .during(OP)?;
        let ut = u.t().during(OP)?;
        if m.rank() == 1 {
            return m
                .unsqueeze(0)
                .and_then(|row| row.matmul(&u)?.matmul(&ut)?.squeeze(0))
                .during(OP);
        }
        m.broadcast_matmul(&u)
            .and_then(|coords| coords.broadcast_matmul(&ut))
            .during(OP)
    }

    /// The same subspace with its basis in another dtype or on another device, so a projection
    /// repeated every optimisation step does not convert the basis every time.
    pub fn cast(&self, dtype: DType, device: &Device) -> Result<Self> {
        let basis = self
            .basis
            .to_dtype(dtype)
            .and_then(|u| u.to_device(device))
            .during("subspace")?;
        Ok(Self {
            basis,
            ambient: self.ambient,
        })
    }
}

fn check_count(op: &'static str, k: usize, n: usize) -> Result<()> {
    if k == 0 || k > n {
        return Err(Error::InvalidArgument {
            op,
            reason: format!("asked for {k} directions of a {n}-dimensional space"),
            help: format!("choose between 1 and {n} directions"),
        });
    }
    Ok(())
}

/// Eigendecomposes the symmetric `c`, lets `select` pick columns from the ascending eigenvalues
/// (given in f64), and returns those eigenvectors as a subspace in `c`'s dtype and device.
fn select_eigenvectors(
    op: &'static str,
    c: &Tensor,
    select: impl FnOnce(&[f64]) -> Result<Vec<usize>>,
) -> Result<Subspace> {
    match compute_dtype(op, c.dtype())? {
        DType::F64 => select_typed::<f64>(op, c, select),
        _ => select_typed::<f32>(op, c, select),
    }
}

fn select_typed<T: Real>(
    op: &'static str,
    c: &Tensor,
    select: impl FnOnce(&[f64]) -> Result<Vec<usize>>,
) -> Result<Subspace> {
    let (dtype, device) = (c.dtype(), c.device().clone());
    symmetric_eigen::<T, _>(op, c, |values, vectors| {
        let values: Vec<f64> = values.iter().map(|v| v.to_f64()).collect();
        let columns = select(&values)?;
        Ok(Subspace {
            basis: columns_to_tensor(op, vectors, &columns, dtype, &device)?,
            ambient: values.len(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: &[&[f64]]) -> Tensor {
        let data: Vec<f64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        let cols = rows.first().map_or(0, |r| r.len());
        Tensor::from_vec(data, (rows.len(), cols), &Device::Cpu).expect("test matrix")
    }

    fn diag(values: &[f64]) -> Tensor {
        let n = values.len();
        let mut data = vec![0.0; n * n];
        for (i, v) in values.iter().enumerate() {
            data[i * n + i] = *v;
        }
        Tensor::from_vec(data, (n, n), &Device::Cpu).expect("diagonal")
    }

    fn flat(t: &Tensor) -> Vec<f64> {
        t.to_dtype(DType::F64)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f64>())
            .expect("tensor")
    }

    fn assert_close(actual: &[f64], expected: &[f64], tol: f64) {
        assert_eq!(actual.len(), expected.len(), "{actual:?} vs {expected:?}");
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() <= tol, "{actual:?} vs {expected:?}");
        }
    }

    /// XᵀX of rows spanning {e₁, e₂} in R⁴: the null space is span{e₃, e₄}, P = diag(0, 0, 1, 1).
    #[test]
    fn null_space_of_a_rank_two_covariance_is_the_missing_coordinates() -> Result<()> {
        let x = matrix(&[
            &[1.0, 1.0, 0.0, 0.0],
            &[1.0, -1.0, 0.0, 0.0],
            &[2.0, 0.0, 0.0, 0.0],
        ]);
        let c = x.t().and_then(|xt| xt.matmul(&x)).during("test")?;
        let expected = flat(&diag(&[0.0, 0.0, 1.0, 1.0]));
        for rule in [NullSpaceRule::Below(1e-9), NullSpaceRule::Count(2)] {
            let null = null_space(&c, rule)?;
            assert_eq!((null.ambient(), null.rank()), (4, 2), "{rule:?}");
            assert_close(&flat(&null.projector()?), &expected, 1e-12);
        }
        Ok(())
    }

    /// Rows (1, -1, 0) and (0, 1, -1) are orthogonal to (1, 1, 1), so the null space of their
    /// covariance is that line and its projector is the all-ones matrix over 3.
    #[test]
    fn null_space_of_a_rotated_covariance_is_the_orthogonal_line() -> Result<()> {
        let x = matrix(&[&[1.0, -1.0, 0.0], &[0.0, 1.0, -1.0]]);
        let c = x.t().and_then(|xt| xt.matmul(&x)).during("test")?;
        let null = null_space(&c, NullSpaceRule::Below(1e-9))?;
        assert_eq!(null.rank(), 1);
        assert_close(&flat(&null.projector()?), &[1.0 / 3.0; 9], 1e-12);
        Ok(())
    }

    /// LPEdit's threshold 0.02 keeps the eigenvalues 0.01 and 0.001 and drops 0.03 and 5.
    #[test]
    fn threshold_rule_keeps_exactly_the_eigenvalues_below_it() -> Result<()> {
        let null = null_space(&diag(&[0.01, 0.03, 5.0, 0.001]), NullSpaceRule::Below(0.02))?;
        assert_eq!(null.rank(), 2);
        assert_close(
            &flat(&null.projector()?),
            &flat(&diag(&[1.0, 0.0, 0.0, 1.0])),
            1e-12,
        );
        Ok(())
    }

    /// Eigenvalues 0.001, 0.01, 0.03, 5 (trace 5.041): `relative_below: 0.005` cuts below
    /// 0.025 (two directions, leak 0.011/5.041); `energy: 0.01` allows 0.05041 of leaked energy,
    /// which 0.001 + 0.01 + 0.03 = 0.041 fits and + 5 does not (three directions).
    #[test]
    fn relative_and_energy_rules_cut_where_the_arithmetic_says() -> Result<()> {
        let values = [0.001, 0.01, 0.03, 5.0];
        let c = diag(&[0.01, 0.03, 5.0, 0.001]);
        let (null, spectrum) = null_space_spectrum(&c, NullSpaceRule::RelativeBelow(0.005))?;
        assert_close(&spectrum, &values, 1e-12);
        assert_eq!(null.rank(), 2);
        let stats = NullSpaceStats::of(&spectrum, null.rank());
        assert_eq!((stats.dims, stats.width), (2, 4));
        assert!((stats.leak - 0.011 / 5.041).abs() < 1e-12, "{stats:?}");
        let (null, spectrum) = null_space_spectrum(&c, NullSpaceRule::Energy(0.01))?;
        assert_eq!(null.rank(), 3);
        let leak = NullSpaceStats::of(&spectrum, 3).leak;
        assert!(
            (leak - 0.041 / 5.041).abs() < 1e-12 && leak <= 0.01,
            "{leak}"
        );
        // The cut is the leak budget's edge: just under 0.041/5.041 keeps two directions.
        assert_eq!(
            null_indices(&values, NullSpaceRule::Energy(0.0081))?.len(),
            2
        );
        assert!(matches!(
            null_indices(&values, NullSpaceRule::Energy(1e-4)),
            Err(Error::EmptySelection { .. })
        ));
        assert!(matches!(
            null_space(&c, NullSpaceRule::RelativeBelow(1.5)),
            Err(Error::InvalidArgument { .. })
        ));
        Ok(())
    }

    #[test]
    fn leak_of_a_zero_covariance_is_zero_and_round_off_negatives_count_as_zero() {
        assert_eq!(NullSpaceStats::of(&[0.0, 0.0], 1).leak, 0.0);
        let stats = NullSpaceStats::of(&[-1e-9, 1.0, 3.0], 2);
        assert!((stats.leak - 0.25).abs() < 1e-12, "{stats:?}");
    }

    #[test]
    fn null_space_rules_that_select_nothing_are_errors() {
        let c = diag(&[1.0, 2.0]);
        assert!(matches!(
            null_space(&c, NullSpaceRule::Below(0.5)),
            Err(Error::EmptySelection { .. })
        ));
        assert!(matches!(
            null_space(&c, NullSpaceRule::Count(0)),
            Err(Error::EmptySelection { .. })
        ));
        assert!(matches!(
            null_space(&c, NullSpaceRule::Count(3)),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            null_space(&c, NullSpaceRule::Below(f64::NAN)),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            principal_subspace(&c, 0),
            Err(Error::InvalidArgument { .. })
        ));
    }

    #[test]
    fn principal_subspace_orders_the_top_direction_first() -> Result<()> {
        let top = principal_subspace(&diag(&[1.0, 5.0, 3.0]), 2)?;
        let u = flat(top.basis());
        // Column 0 is ±e₂ (eigenvalue 5), column 1 is ±e₃ (eigenvalue 3).
        assert_close(
            &u.iter().map(|x| x.abs()).collect::<Vec<_>>(),
            &[0., 0., 1., 0., 0., 1.],
            1e-12,
        );
        assert_close(
            &flat(&top.projector()?),
            &flat(&diag(&[0.0, 1.0, 1.0])),
            1e-12,
        );
        Ok(())
    }

    /// Two matrices back to back: diag(1, 5, 3) and a rotated one whose top eigenvector is
    /// (1, 1, 0)/√2 (eigenvalues 4, 0, 2); the raw bases are principal_subspace's columns up to
    /// sign, and asymmetric or non-finite input is refused as principal_subspace refuses it.
    #[test]
    fn principal_bases_are_principal_subspaces_of_each_matrix() -> Result<()> {
        let a = [1.0, 0.0, 0.0, 0.0, 5.0, 0.0, 0.0, 0.0, 3.0];
        let b = [2.0, 2.0, 0.0, 2.0, 2.0, 0.0, 0.0, 0.0, 2.0];
        let both: Vec<f64> = a.iter().chain(&b).copied().collect();
        let bases = principal_bases(&both, 3, 2)?;
        assert_eq!(bases.len(), 2 * 3 * 2);
        let abs = |v: &[f64]| v.iter().map(|x| x.abs()).collect::<Vec<_>>();
        // diag: top e₁ (5), then e₂ (3); rows are coordinates, columns the two vectors.
        assert_close(&abs(&bases[..6]), &[0.0, 0.0, 1.0, 0.0, 0.0, 1.0], 1e-12);
        let h = 0.5f64.sqrt();
        assert_close(&abs(&bases[6..]), &[h, 0.0, h, 0.0, 0.0, 1.0], 1e-12);
        for (raw, m) in [(&bases[..6], &a), (&bases[6..], &b)] {
            let c = Tensor::from_vec(m.to_vec(), (3, 3), &Device::Cpu).during("test")?;
            let space = principal_subspace(&c, 2)?;
            assert_close(&abs(raw), &abs(&flat(space.basis())), 1e-12);
            assert!((basis_similarity(raw, &flat(space.basis()), 2) - 1.0).abs() < 1e-12);
        }
        let mut asymmetric = both.clone();
        asymmetric[1] = 1.0;
        assert!(matches!(
            principal_bases(&asymmetric, 3, 2),
            Err(Error::NotSymmetric { .. })
        ));
        let mut nan = both;
        nan[13] = f64::NAN;
        assert!(matches!(
            principal_bases(&nan, 3, 2),
            Err(Error::NonFinite { .. })
        ));
        assert!(principal_bases(&[1.0; 8], 3, 2).is_err());
        Ok(())
    }

    #[test]
    fn principal_subspace_in_f32_keeps_the_dtype() -> Result<()> {
        let c = diag(&[1.0, 5.0, 3.0]).to_dtype(DType::F32).during("test")?;
        let top = principal_subspace(&c, 1)?;
        assert_eq!(top.basis().dtype(), DType::F32);
        assert_close(
            &flat(&top.projector()?),
            &flat(&diag(&[0.0, 1.0, 0.0])),
            1e-6,
        );
        Ok(())
    }

    #[test]
    fn similarity_is_sign_free_and_measures_overlap() -> Result<()> {
        let e1 = Subspace::spanned_by(&matrix(&[&[1.0], &[0.0], &[0.0]]))?;
        let minus_e1 = Subspace::spanned_by(&matrix(&[&[-1.0], &[0.0], &[0.0]]))?;
        let e2 = Subspace::spanned_by(&matrix(&[&[0.0], &[1.0], &[0.0]]))?;
        let diagonal = Subspace::spanned_by(&matrix(&[&[1.0], &[1.0], &[0.0]]))?;
        let plane = Subspace::spanned_by(&matrix(&[&[1.0, 0.0], &[0.0, 1.0], &[0.0, 0.0]]))?;
        assert!((projector_similarity(&e1, &minus_e1)? - 1.0).abs() < 1e-12);
        assert!(projector_similarity(&e1, &e2)?.abs() < 1e-12);
        // cos²(45°) = 1/2.
        assert!((projector_similarity(&e1, &diagonal)? - 0.5).abs() < 1e-12);
        // The line e₁ lies in the plane {e₁, e₂}.
        assert!((projector_similarity(&e1, &plane)? - 1.0).abs() < 1e-12);
        let r4 = Subspace::spanned_by(&matrix(&[&[1.0], &[0.0], &[0.0], &[0.0]]))?;
        assert!(matches!(
            projector_similarity(&e1, &r4),
            Err(Error::DimensionMismatch { .. })
        ));
        Ok(())
    }

    /// span{(1, 0, 0), (1, 1, 0)} is the plane z = 0; (1, 1, 0) and (2, 2, 0) span one line.
    #[test]
    fn spanned_by_orthonormalises_and_drops_dependent_vectors() -> Result<()> {
        let plane = Subspace::spanned_by(&matrix(&[&[1.0, 1.0], &[0.0, 1.0], &[0.0, 0.0]]))?;
        assert_eq!(plane.rank(), 2);
        assert_close(
            &flat(&plane.projector()?),
            &flat(&diag(&[1.0, 1.0, 0.0])),
            1e-12,
        );
        let line = Subspace::spanned_by(&matrix(&[&[1.0, 2.0], &[1.0, 2.0], &[0.0, 0.0]]))?;
        assert_eq!(line.rank(), 1);
        assert_close(
            &flat(&line.projector()?),
            &[0.5, 0.5, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0],
            1e-12,
        );
        assert!(matches!(
            Subspace::spanned_by(&matrix(&[&[0.0], &[0.0]])),
            Err(Error::EmptySelection { .. })
        ));
        Ok(())
    }

    #[test]
    fn project_rows_keeps_components_in_the_subspace_and_removes_the_rest() -> Result<()> {
        // Subspace: the line through (1, 1, 0)/√2. Row (1, 1, 5) keeps (1, 1, 0); row (1, -1, 0)
        // is orthogonal and vanishes; row (2, 0, 0) projects to (1, 1, 0).
        let line = Subspace::spanned_by(&matrix(&[&[1.0], &[1.0], &[0.0]]))?;
        let m = matrix(&[&[1.0, 1.0, 5.0], &[1.0, -1.0, 0.0], &[2.0, 0.0, 0.0]]);
        let expected = [1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0];
        assert_close(&flat(&line.project_rows(&m)?), &expected, 1e-12);
        // Same through the explicit projector, in f32, and for a batch and a single vector.
        let explicit = m.matmul(&line.projector()?).during("test")?;
        assert_close(&flat(&explicit), &expected, 1e-12);
        let m32 = m.to_dtype(DType::F32).during("test")?;
        let p32 = line.project_rows(&m32)?;
        assert_eq!(p32.dtype(), DType::F32);
        assert_close(&flat(&p32), &expected, 1e-6);
        let batch = m
            .unsqueeze(0)
            .and_then(|b| b.repeat((2, 1, 1)))
            .during("test")?;
        assert_close(
            &flat(&line.project_rows(&batch)?),
            &[expected, expected].concat(),
            1e-12,
        );
        let row = m.get(0).during("test")?;
        assert_close(&flat(&line.project_rows(&row)?), &expected[..3], 1e-12);
        let wrong = matrix(&[&[1.0, 2.0]]);
        assert!(matches!(
            line.project_rows(&wrong),
            Err(Error::DimensionMismatch { .. })
        ));
        Ok(())
    }

    #[test]
    fn from_orthonormal_columns_accepts_a_basis_and_refuses_a_non_basis() -> Result<()> {
        let null = null_space(&diag(&[0.0, 1.0, 0.0]), NullSpaceRule::Count(2))?;
        let reloaded = Subspace::from_orthonormal_columns(null.basis().clone())?;
        assert!((projector_similarity(&null, &reloaded)? - 1.0).abs() < 1e-12);
        let skewed = matrix(&[&[1.0, 1.0], &[0.0, 1.0], &[0.0, 0.0]]);
        assert!(matches!(
            Subspace::from_orthonormal_columns(skewed),
            Err(Error::InvalidArgument { .. })
        ));
        let nan = matrix(&[&[f64::NAN], &[0.0]]);
        assert!(matches!(
            Subspace::from_orthonormal_columns(nan),
            Err(Error::NonFinite { .. })
        ));
        let too_many = matrix(&[&[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0]]);
        assert!(matches!(
            Subspace::from_orthonormal_columns(too_many),
            Err(Error::InvalidArgument { .. })
        ));
        Ok(())
    }
}
