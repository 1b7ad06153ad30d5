//! The linear algebra of ELoRA (Algorithm 1) end to end on synthetic activations whose geometry is
//! known: preserved activations confined to a 5-dimensional row space of R¹², so the null space is
//! its 7-dimensional orthogonal complement; perturbed LoRA features concentrated on one direction,
//! so the knowledge space is that direction once the one unfaithful perturbation is filtered out.

use candle_core::{DType, Device, Tensor};
use mkedsl::linalg::{
    null_space, principal_subspace, projector_similarity, svd, CovarianceAccumulator,
    NullSpaceRule, Subspace,
};
use rand::{Rng, SeedableRng};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn random_matrix(rows: usize, cols: usize, rng: &mut impl Rng) -> candle_core::Result<Tensor> {
    let data: Vec<f64> = (0..rows * cols)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    Tensor::from_vec(data, (rows, cols), &Device::Cpu)
}

fn max_abs(t: &Tensor) -> candle_core::Result<f64> {
    t.abs()?
        .flatten_all()?
        .max(0)?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()
}

const D_IN: usize = 12;
const PRESERVED_RANK: usize = 5;

/// Preserved activations X (200 × 12) = Z · R with R (5 × 12): their row space is that of R.
fn preserved_activations(rng: &mut impl Rng) -> candle_core::Result<(Tensor, Tensor)> {
    let row_space = random_matrix(PRESERVED_RANK, D_IN, rng)?;
    let mixing = random_matrix(200, PRESERVED_RANK, rng)?;
    Ok((mixing.matmul(&row_space)?, row_space))
}

#[test]
fn null_space_of_preserved_activations_is_the_complement_of_their_row_space() -> TestResult {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let (x, row_space) = preserved_activations(&mut rng)?;

    // Batches of different shapes, as hooks deliver them: (2, 25, d), (50, d), (100, d).
    let mut acc = CovarianceAccumulator::new(D_IN)?;
    acc.add(&x.narrow(0, 0, 50)?.reshape((2, 25, D_IN))?)?;
    acc.add(&x.narrow(0, 50, 50)?)?;
    acc.add(&x.narrow(0, 100, 100)?)?;
    assert_eq!(acc.tokens(), 200);
    let c = acc.mean()?;

    let null = null_space(&c, NullSpaceRule::Below(1e-10))?;
    assert_eq!(null.rank(), D_IN - PRESERVED_RANK);
    let by_count = null_space(&c, NullSpaceRule::Count(D_IN - PRESERVED_RANK))?;
    assert!((projector_similarity(&null, &by_count)? - 1.0).abs() < 1e-10);

    // Independent check through a different algorithm (SVD of Rᵀ): P_null + P_row = I.
    let row = Subspace::spanned_by(&row_space.t()?)?;
    assert_eq!(row.rank(), PRESERVED_RANK);
    let identity = Tensor::eye(D_IN, DType::F64, &Device::Cpu)?;
    let sum = (null.projector()? + row.projector()?)?;
    assert!(max_abs(&(sum - identity)?)? < 1e-10);
    assert!(projector_similarity(&null, &row)?.abs() < 1e-10);

    // In f32 the basis vectors differ, the projector does not (beyond f32 rounding).
    let null32 = null_space(&c.to_dtype(DType::F32)?, NullSpaceRule::Count(null.rank()))?;
    let gap = (null32.projector()?.to_dtype(DType::F64)? - null.projector()?)?;
    assert!(max_abs(&gap)? < 1e-4);
    Ok(())
}

#[test]
fn lora_initialised_in_the_null_space_leaves_preserved_outputs_unchanged() -> TestResult {
    let mut rng = rand::rngs::StdRng::seed_from_u64(12);
    let (x, _) = preserved_activations(&mut rng)?;
    let mut acc = CovarianceAccumulator::new(D_IN)?;
    acc.add(&x)?;
    let null = null_space(&acc.mean()?, NullSpaceRule::Below(1e-10))?;

    // Algorithm 1, lines 5–8: ΔW_proj = W U Uᵀ, SVD, B = U'√Σ', A = √Σ' V'ᵀ.
    let w = random_matrix(6, D_IN, &mut rng)?;
    let projected = null.project_rows(&w)?;
    let scale = max_abs(&w)? * max_abs(&x)?;
    assert!(max_abs(&projected.matmul(&x.t()?)?)? < 1e-10 * scale);

    let factors = svd(&projected)?;
    let rank = 6; // min(d_out, null-space rank)
    let root = factors.s.narrow(0, 0, rank)?.sqrt()?;
    let b = factors
        .u
        .narrow(1, 0, rank)?
        .broadcast_mul(&root.unsqueeze(0)?)?;
    let a = factors
        .vt
        .narrow(0, 0, rank)?
        .broadcast_mul(&root.unsqueeze(1)?)?;
    assert!(max_abs(&(b.matmul(&a)? - &projected)?)? < 1e-12 * scale);
    // A's rows lie in the null space, so (W - BA) xᵀ = W xᵀ on every preserved activation.
    assert!(max_abs(&a.matmul(&x.t()?)?)? < 1e-10 * scale);
    // And projecting a weight already in the null space changes nothing.
    assert!(max_abs(&(null.project_rows(&projected)? - &projected)?)? < 1e-12 * scale);
    Ok(())
}

#[test]
fn knowledge_space_filters_the_unfaithful_perturbation() -> TestResult {
    const R: usize = 4; // LoRA rank: the knowledge space lives in R^r
    let mut rng = rand::rngs::StdRng::seed_from_u64(13);
    let semantic = Tensor::new(&[[1.0f64, 2.0, 0.0, -1.0]], &Device::Cpu)?;
    let off_axis = Tensor::new(&[[2.0f64, -1.0, 1.0, 0.0]], &Device::Cpu)?; // ⟂ semantic

    // Features K_b (tokens × r): a strong component along one axis plus small noise.
    let mut features = |axis: &Tensor| -> candle_core::Result<Tensor> {
        let weights = random_matrix(30, 1, &mut rng)?.affine(3.0, 0.0)?;
        let noise = random_matrix(30, R, &mut rng)?.affine(0.05, 0.0)?;
        weights.matmul(axis)? + noise
    };
    let covariance = |k: &Tensor| -> Result<Tensor, Box<dyn std::error::Error>> {
        let mut acc = CovarianceAccumulator::new(R)?;
        acc.add(k)?;
        Ok(acc.sum()?)
    };

    // Algorithm 1, lines 13–23, with k = 1 and θ = 0.5.
    let c0 = covariance(&features(&semantic)?)?;
    let p0 = principal_subspace(&c0, 1)?;
    let perturbed = [
        covariance(&features(&semantic)?)?,
        covariance(&features(&off_axis)?)?,
        covariance(&features(&semantic)?)?,
    ];
    let mut kept = Vec::new();
    let mut similarities = Vec::new();
    for c in &perturbed {
        let s = projector_similarity(&principal_subspace(c, 1)?, &p0)?;
        similarities.push(s);
        if s > 0.5 {
            kept.push(c.clone());
        }
    }
    assert!(
        similarities[0] > 0.99 && similarities[2] > 0.99,
        "{similarities:?}"
    );
    assert!(similarities[1] < 0.01, "{similarities:?}");
    assert_eq!(kept.len(), 2);

    let average = (Tensor::stack(&kept, 0)?.sum(0)? / kept.len() as f64)?;
    let knowledge = principal_subspace(&average, 1)?;
    let truth = Subspace::spanned_by(&semantic.t()?)?;
    assert!(projector_similarity(&knowledge, &truth)? > 0.999);

    // Eq. 11: ∇B ← ∇B P. A gradient along the off-axis direction is removed entirely.
    let gradient = Tensor::cat(&[&semantic, &off_axis], 0)?; // d_out = 2 rows of ∇B
    let projected = knowledge.project_rows(&gradient)?;
    let off_component = projected.matmul(&off_axis.t()?)?;
    assert!(max_abs(&off_component)? < 0.01 * max_abs(&gradient)?);
    // The semantic row survives: its component along `semantic` stays ‖semantic‖² = 6.
    let kept_component = projected.get(0)?.unsqueeze(0)?.matmul(&semantic.t()?)?;
    let kept_component = kept_component.reshape(())?.to_scalar::<f64>()?;
    assert!(
        (kept_component - 6.0).abs() < 0.01 * 6.0,
        "{kept_component}"
    );
    Ok(())
}

/// A covariance at the scale of a small model's FFN input (d = 1024, 512 preserved directions):
/// the null space must still be exact, and the projector idempotent (well under a second).
#[test]
fn null_space_at_model_width_is_exact() -> TestResult {
    const D: usize = 1024;
    const RANK: usize = 512;
    let mut rng = rand::rngs::StdRng::seed_from_u64(14);
    let row_space = random_matrix(RANK, D, &mut rng)?;
    let mut acc = CovarianceAccumulator::new(D)?;
    for _ in 0..4 {
        acc.add(&random_matrix(256, RANK, &mut rng)?.matmul(&row_space)?)?;
    }
    let c = acc.mean()?;
    let null = null_space(&c, NullSpaceRule::Below(1e-9))?;
    assert_eq!(null.rank(), D - RANK);
    // C U ≈ 0 relative to C's scale, and P² = P.
    let residual = c.matmul(null.basis())?;
    assert!(max_abs(&residual)? < 1e-10 * max_abs(&c)?);
    let p = null.projector()?;
    assert!(max_abs(&(p.matmul(&p)? - &p)?)? < 1e-10);
    // The rows of the preserved basis are annihilated.
    assert!(max_abs(&null.project_rows(&row_space)?)? < 1e-9 * max_abs(&row_space)?);
    Ok(())
}

/// The leak reported from eigenvalues equals `tr(P C) / tr(C)` computed from the projector and
/// the covariance (no eigenvalue involved), for every way of cutting, on a full-rank covariance
/// whose spectrum spans orders of magnitude; the energy rule keeps the leak within its budget.
#[test]
fn the_leak_is_the_share_of_the_trace_inside_the_null_space() -> TestResult {
    use mkedsl::linalg::{null_space_spectrum, NullSpaceStats};
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    // X = Z · diag(scales) · Q: per-direction energies from 1e-4 to 1.
    let z = random_matrix(400, D_IN, &mut rng)?;
    let scales: Vec<f64> = (0..D_IN)
        .map(|i| 10f64.powf(-4.0 * i as f64 / 11.0))
        .collect();
    let q = Subspace::spanned_by(&random_matrix(D_IN, D_IN, &mut rng)?)?;
    let x = z
        .broadcast_mul(&Tensor::from_vec(scales, (1, D_IN), &Device::Cpu)?)?
        .matmul(&q.basis().t()?)?;
    let c = (x.t()?.matmul(&x)? / 400.0)?;
    let trace = |m: &Tensor| -> candle_core::Result<f64> {
        let n = m.dim(0)?;
        let eye = Tensor::eye(n, DType::F64, &Device::Cpu)?;
        (m * eye)?.sum_all()?.to_scalar::<f64>()
    };
    for rule in [
        NullSpaceRule::Below(1e-3),
        NullSpaceRule::RelativeBelow(1e-2),
        NullSpaceRule::Energy(1e-3),
        NullSpaceRule::Count(4),
    ] {
        let (null, spectrum) = null_space_spectrum(&c, rule)?;
        let stats = NullSpaceStats::of(&spectrum, null.rank());
        let independent = trace(&null.projector()?.matmul(&c)?)? / trace(&c)?;
        assert!(
            (stats.leak - independent).abs() < 1e-10,
            "{rule:?}: {stats:?} vs tr(PC)/tr(C) = {independent}"
        );
        assert!((0.0..=1.0).contains(&stats.leak));
        assert_eq!((stats.width, stats.dims), (D_IN, null.rank()));
        if let NullSpaceRule::Energy(f) = rule {
            assert!(stats.leak <= f, "{stats:?}");
        }
    }
    Ok(())
}
