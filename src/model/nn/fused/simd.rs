//! The fused kernels' loops compiled for the CPU they run on, and the pieces they share: an `exp`
//! and row reductions written so that the compiler vectorises them.
//!
//! The release binary targets baseline x86-64 (SSE2), and glibc's scalar `expf` took ~5 ns a
//! value: 15 % of a LoRA edit went into the exponentials of SiLU and softmax (perf,
//! `recipes/lora.edit`). [`vectorised`] runs a kernel inside a function compiled for AVX2 + FMA
//! when the CPU has them (pulp's run-time dispatch, the one faer uses), where the loops below
//! become 8-lane code. A kernel is a [`Kernel`] whose `run` is `#[inline(always)]`, and so is
//! every helper here, so that all of it is compiled inside that function. (A closure or a
//! function item passed instead stayed outside it, behind a call shim, as baseline code.)

/// A loop that [`vectorised`] compiles for the CPU; `run` must be `#[inline(always)]`.
pub trait Kernel {
    type Output;
    fn run(self) -> Self::Output;
}

/// Runs `kernel` compiled for the best instruction set this CPU has (AVX2 + FMA, else baseline).
pub fn vectorised<K: Kernel>(kernel: K) -> K::Output {
    pulp::Arch::new().dispatch(Dispatch(kernel))
}

struct Dispatch<K>(K);

impl<K: Kernel> pulp::WithSimd for Dispatch<K> {
    type Output = K::Output;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> K::Output {
        self.0.run()
    }
}

/// Lanes of the partial sums below: one AVX2 register of f32.
const LANES: usize = 8;

/// `eˣ` in f32 to within 2 ulp (Cephes' `expf`: `x = k·ln 2 + r`, a degree-6 polynomial in `r`,
/// `2ᵏ` built in the exponent bits), branch-free so that a loop of it vectorises. Below
/// ln(f32::MIN_POSITIVE) it is 0 (no subnormals), above 88.37 it is +∞ (a little early:
/// ln(f32::MAX) is 88.72), NaN stays NaN.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const LOW: f32 = -87.336_55; // ln(f32::MIN_POSITIVE)
    const HIGH: f32 = 88.37; // below 127.5 · ln 2, so that k ≤ 127 and 2ᵏ stays finite
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2²³: adding it rounds to an integer
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let xc = x.clamp(LOW, HIGH);
    // No `mul_add`: where a kernel is not compiled for FMA it is a slow libm call.
    let k = (xc * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = (xc - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 0.166_666_65;
    p = p * r + 0.5;
    let y = p * (r * r) + r + 1.0;
    let scale = f32::from_bits(((k as i32 + 127) << 23) as u32);
    let e = y * scale;
    if x < LOW {
        0.0
    } else if x > HIGH {
        f32::INFINITY
    } else {
        e
    }
}

/// `1 / (1 + e⁻ˣ)`.
#[inline(always)]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `Σ f(aᵢ, bᵢ)` over two slices of one length, in `LANES` partial sums (a strict left-to-right
/// f32 sum cannot be vectorised).
#[inline(always)]
pub fn sum_of(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(&x, &y)| f(x, y))
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += f(x[l], y[l]);
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ aᵢ`, in `LANES` partial sums.
#[inline(always)]
pub fn sum(a: &[f32]) -> f32 {
    sum_of(a, a, |x, _| x)
}

/// The largest value of a non-empty slice (NaN-ignoring, as `f32::max`).
#[inline(always)]
pub fn max(a: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = a.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for x in chunks {
        for l in 0..LANES {
            acc[l] = acc[l].max(x[l]);
        }
    }
    acc.iter().copied().fold(tail, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against f64's `exp` over the whole finite range, and at the edges.
    #[test]
    fn exp_is_within_two_ulp_of_f64_and_saturates_at_the_edges() {
        let mut worst = 0f64;
        for i in -87_000..=88_000 {
            let x = i as f32 / 1000.0 + 1.234e-4;
            let got = f64::from(exp(x));
            let want = f64::from(x).exp();
            worst = worst.max((got - want).abs() / want);
        }
        assert!(
            worst < 2.0 * f64::from(f32::EPSILON),
            "relative error {worst:e}"
        );
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1e9), 0.0);
        assert_eq!(exp(-87.5), 0.0);
        assert_eq!(exp(1e9), f32::INFINITY);
        assert!(exp(88.37).is_finite() && exp(88.371) == f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
    }

    /// The lane-wise reductions equal plain sums and maxima, tails included.
    #[test]
    fn reductions_equal_the_plain_ones() {
        let a: Vec<f32> = (0..21).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..21).map(|i| (i as f32 * 0.11).cos()).collect();
        let dot: f64 = a.iter().zip(&b).map(|(&x, &y)| f64::from(x * y)).sum();
        assert!((f64::from(sum_of(&a, &b, |x, y| x * y)) - dot).abs() < 1e-5);
        let want = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!(max(&a), want);
        assert_eq!(
            max(&a[..3]),
            a[..3].iter().copied().fold(f32::NEG_INFINITY, f32::max)
        );
    }
}
