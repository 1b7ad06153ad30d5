//! Rotary position embeddings in Hugging Face Llama's "rotate half" form: fused on the CPU
//! (`fused/rope.rs`), from primitive ops elsewhere.
//!
//! Angles are computed per token from explicit position ids, so left-padded batches and KV-cached
//! decoding use the same code: a padded row's first real token is at position 0.

use std::sync::{Arc, OnceLock};

use candle_core::{DType, Device, Result, Tensor, D};

use super::fused::rope::{rotate_heads, Angles};

/// The rotation of one batch: the angles per position, applied by the fused split-and-rotate on
/// CPU f32 and by primitive ops elsewhere (their `(B, 1, T, head_dim)` tables built on first use).
#[derive(Debug)]
pub struct Rotary {
    angles: Arc<Angles>,
    batch: usize,
    dtype: DType,
    device: Device,
    tables: OnceLock<(Tensor, Tensor)>,
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
        let distinct = positions.iter().max().map_or(0, |&p| p as usize + 1);
        let (mut cos, mut sin) = (
            Vec::with_capacity(distinct * half),
            Vec::with_capacity(distinct * half),
        );
        for p in 0..distinct {
            for f in &inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Ok(Self {
            angles: Arc::new(Angles {
                positions: positions.to_vec(),
                half,
                cos,
                sin,
            }),
            batch,
            dtype,
            device: device.clone(),
            tables: OnceLock::new(),
        })
    }

    /// A projection's output `y` `(B, T, heads·head_dim)` as rotated heads `(B, heads, T,
    /// head_dim)`.
    pub fn heads(&self, y: &Tensor, heads: usize) -> Result<Tensor> {
        if let Some(rotated) = rotate_heads(y, &self.angles, heads)? {
            return Ok(rotated);
        }
        let (b, t, _) = y.dims3()?;
        let split = y
            .reshape((b, t, heads, 2 * self.angles.half))?
            .transpose(1, 2)?
            .contiguous()?;
        self.apply(&split)
    }

    /// Rotates `x` of shape `(B, heads, T, head_dim)` with primitive ops.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let (cos, sin) = self.tables()?;
        let half = x.dim(D::Minus1)? / 2;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        x.broadcast_mul(cos)? + rotated.broadcast_mul(sin)?
    }

    /// cos/sin of every token's angles, each half repeated: `(B, 1, T, head_dim)`.
    fn tables(&self) -> Result<(&Tensor, &Tensor)> {
        if self.tables.get().is_none() {
            let a = &self.angles;
            let seq = a.positions.len() / self.batch.max(1);
            let shape = (self.batch, 1, seq, 2 * a.half);
            let expand = |table: &[f32]| -> Result<Tensor> {
                let mut rows = Vec::with_capacity(a.positions.len() * 2 * a.half);
                for &p in &a.positions {
                    let row = &table[p as usize * a.half..][..a.half];
                    rows.extend_from_slice(row);
                    rows.extend_from_slice(row);
                }
                Tensor::from_vec(rows, shape, &self.device)?.to_dtype(self.dtype)
            };
            let tables = (expand(&a.cos)?, expand(&a.sin)?);
            let _ = self.tables.set(tables);
        }
        match self.tables.get() {
            Some((cos, sin)) => Ok((cos, sin)),
            None => candle_core::bail!("rotary tables were not built"),
        }
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
