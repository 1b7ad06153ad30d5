//! Streaming uncentred covariance `C = Σ xᵢ xᵢᵀ` of layer activations.
//!
//! ELoRA and LPEdit build their null spaces from thousands of preserved tokens; keeping all
//! activations (N × 11008 floats) would cost far more than the d × d sum, so batches are folded in
//! as they are produced and dropped. The sum is kept in f64: adding thousands of f32 rank-N
//! updates would bury the small eigenvalues that define the null space under rounding noise.

use candle_core::{Device, Tensor};
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat};

use super::dense::with_matrix;
use super::error::{Error, Result, TensorContext};

/// Accumulates `XᵀX` and the token count over batches of activations `X` (tokens × d).
#[derive(Debug, Clone)]
pub struct CovarianceAccumulator {
    sum: Mat<f64>,
    tokens: usize,
}

impl CovarianceAccumulator {
    /// An empty accumulator for activations of width `dim` (the layer's input features).
    pub fn new(dim: usize) -> Result<Self> {
        if dim == 0 {
            return Err(Error::InvalidArgument {
                op: "covariance",
                reason: "feature dimension is 0".into(),
                help: "pass the width of the activations (e.g. the layer's in_features)".into(),
            });
        }
        Ok(Self {
            sum: Mat::zeros(dim, dim),
            tokens: 0,
        })
    }

    /// Width `d` of the activations.
    pub fn dim(&self) -> usize {
        self.sum.nrows()
    }

    /// Number of token rows folded in so far.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// Folds in a batch of activations: any shape whose last dimension is `d` (e.g. `(tokens, d)`
    /// or `(batch, seq, d)`); all leading dimensions count as tokens. An empty batch is a no-op.
    pub fn add(&mut self, activations: &Tensor) -> Result<()> {
        const OP: &str = "covariance";
        let dims = activations.dims();
        let width = dims.last().copied().unwrap_or(0);
        if dims.is_empty() || width != self.dim() {
            return Err(Error::DimensionMismatch {
                op: OP,
                expected: self.dim(),
                found: width,
            });
        }
        let rows = activations.elem_count() / width;
        if rows == 0 {
            return Ok(());
        }
        let x = activations.reshape((rows, width)).during(OP)?;
        let sum = self.sum.as_mut();
        with_matrix::<f64, _>(OP, &x, |x| {
            matmul(
                sum,
                Accum::Add,
                x.transpose(),
                x,
                1.0,
                faer::get_global_parallelism(),
            );
            Ok(())
        })?;
        self.tokens += rows;
        Ok(())
    }

    /// The sum `XᵀX` over every token so far, as a `d × d` f64 CPU tensor. Exactly symmetric
    /// (the two triangles are averaged), so it can go straight into [`super::eigh`].
    pub fn sum(&self) -> Result<Tensor> {
        self.scaled(1.0)
    }

    /// The mean `XᵀX / tokens`, whose eigenvalues do not grow with the number of tokens: the
    /// scale a fixed null-space threshold (LPEdit's 0.02) is meant for.
    pub fn mean(&self) -> Result<Tensor> {
        if self.tokens == 0 {
            return Err(Error::EmptySelection {
                op: "covariance",
                reason: "no activations were added, so there is no mean".into(),
            });
        }
        self.scaled(1.0 / self.tokens as f64)
    }

    /// Writes the symmetrised, scaled sum straight into the tensor's buffer: at d = 11008 every
    /// extra d × d copy is another gigabyte.
    fn scaled(&self, factor: f64) -> Result<Tensor> {
        let d = self.dim();
        let mut data = Vec::with_capacity(d * d);
        for i in 0..d {
            for j in 0..d {
                data.push(0.5 * factor * (self.sum[(i, j)] + self.sum[(j, i)]));
            }
        }
        Tensor::from_vec(data, (d, d), &Device::Cpu).during("covariance")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    fn dense(t: &Tensor) -> Vec<Vec<f64>> {
        t.to_vec2::<f64>().expect("2-D f64 tensor")
    }

    #[test]
    fn sums_outer_products_across_batches() -> Result<()> {
        let mut acc = CovarianceAccumulator::new(2)?;
        // [[1, 2], [3, 4]]ᵀ[[1, 2], [3, 4]] = [[10, 14], [14, 20]].
        acc.add(&Tensor::new(&[[1.0f32, 2.0], [3.0, 4.0]], &Device::Cpu).during("test")?)?;
        assert_eq!(dense(&acc.sum()?), vec![vec![10.0, 14.0], vec![14.0, 20.0]]);
        // + (1, 0)ᵀ(1, 0).
        acc.add(&Tensor::new(&[[1.0f64, 0.0]], &Device::Cpu).during("test")?)?;
        assert_eq!(acc.tokens(), 3);
        assert_eq!(dense(&acc.sum()?), vec![vec![11.0, 14.0], vec![14.0, 20.0]]);
        let mean = dense(&acc.mean()?).concat();
        let expected = [11.0 / 3.0, 14.0 / 3.0, 14.0 / 3.0, 20.0 / 3.0];
        for (m, e) in mean.iter().zip(expected) {
            assert!((m - e).abs() < 1e-14, "{mean:?}");
        }
        Ok(())
    }

    #[test]
    fn counts_every_leading_dimension_as_tokens() -> Result<()> {
        // (batch 2, seq 2, d 2): tokens (1,0), (0,1), (1,1), (2,0) give [[6, 1], [1, 2]].
        let x = Tensor::new(
            &[[[1.0f64, 0.0], [0.0, 1.0]], [[1.0, 1.0], [2.0, 0.0]]],
            &Device::Cpu,
        )
        .during("test")?;
        let mut acc = CovarianceAccumulator::new(2)?;
        acc.add(&x)?;
        acc.add(&Tensor::zeros((0, 2), DType::F32, &Device::Cpu).during("test")?)?;
        assert_eq!(acc.tokens(), 4);
        assert_eq!(dense(&acc.sum()?), vec![vec![6.0, 1.0], vec![1.0, 2.0]]);
        Ok(())
    }

    #[test]
    fn refuses_wrong_width_nan_and_an_empty_mean() -> Result<()> {
        let mut acc = CovarianceAccumulator::new(3)?;
        let narrow = Tensor::ones((4, 2), DType::F32, &Device::Cpu).during("test")?;
        assert!(matches!(
            acc.add(&narrow),
            Err(Error::DimensionMismatch {
                expected: 3,
                found: 2,
                ..
            })
        ));
        assert!(matches!(acc.mean(), Err(Error::EmptySelection { .. })));
        let nan = Tensor::new(&[[0.0f32, f32::NAN, 1.0]], &Device::Cpu).during("test")?;
        assert!(matches!(acc.add(&nan), Err(Error::NonFinite { .. })));
        assert_eq!(acc.tokens(), 0, "a rejected batch must not count");
        assert!(CovarianceAccumulator::new(0).is_err());
        Ok(())
    }
}
