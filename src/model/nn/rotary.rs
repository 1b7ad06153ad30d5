//! Rotary position embeddings in Hugging Face Llama's "rotate half" form, from primitive ops.
//!
//! Angles are computed per token from explicit position ids, so left-padded batches and KV-cached
//! decoding use the same code: a padded row's first real token is at position 0.

use candle_core::{DType, Device, Result, Tensor, D};

/// cos/sin tables of shape `(B, 1, T, head_dim)` for the given positions.
#[derive(Debug, Clone)]
pub struct Rotary {
    cos: Tensor,
    sin: Tensor,
}

impl Rotary {
    /// `positions` is `B×T` (row-major); angles follow HF: `inv_freq = 1 / θ^(2i/d)` in f32.
    pub fn new(
        positions: &[u32],
        batch: usize,
        head_dim: usize,
        theta: f64,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let seq = positions.len() / batch.max(1);
        let mut angles = Vec::with_capacity(positions.len() * head_dim);
        for &p in positions {
            let row: Vec<f32> = inv_freq.iter().map(|f| p as f32 * f).collect();
            angles.extend_from_slice(&row);
            angles.extend_from_slice(&row);
        }
        let angles = Tensor::from_vec(angles, (batch, 1, seq, head_dim), device)?;
        Ok(Self {
            cos: angles.cos()?.to_dtype(dtype)?,
            sin: angles.sin()?.to_dtype(dtype)?,
        })
    }

    /// Rotates `x` of shape `(B, heads, T, head_dim)`.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let half = x.dim(D::Minus1)? / 2;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        x.broadcast_mul(&self.cos)? + rotated.broadcast_mul(&self.sin)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_pairs_by_position_times_frequency() {
        let dev = Device::Cpu;
        // head_dim 4: frequencies 1 and 1/θ^(1/2) = 0.01 for θ = 10⁴.
        let rot = Rotary::new(&[0, 2], 1, 4, 10_000.0, DType::F64, &dev).unwrap();
        let x = Tensor::new(&[1.0f64, 2.0, 3.0, 4.0], &dev)
            .unwrap()
            .reshape((1, 1, 1, 4))
            .unwrap();
        let x = Tensor::cat(&[&x, &x], 2).unwrap();
        let y = rot
            .apply(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        assert_eq!(&y[..4], &[1.0, 2.0, 3.0, 4.0]); // position 0: identity
        let (a, b) = (2.0f64, 0.02f64); // angles at position 2
        let expected = [
            1.0 * a.cos() - 3.0 * a.sin(),
            2.0 * b.cos() - 4.0 * b.sin(),
            3.0 * a.cos() + 1.0 * a.sin(),
            4.0 * b.cos() + 2.0 * b.sin(),
        ];
        for (g, e) in y[4..].iter().zip(expected) {
            assert!((g - e).abs() < 1e-6, "{g} vs {e}");
        }
    }
}
