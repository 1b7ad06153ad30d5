//! A small multi-layer perceptron: linear layers with exact GELU between them (none after the
//! last). UniKE's truthfulness and semantic encoders are such MLPs ("several MLP layers", D.3);
//! the semantic one also gates latent in-context editing inside the forward pass, which is why it
//! lives with the model's building blocks rather than with the executor that trains it.

use candle_core::{Result, Tensor};

/// `(weight (out, in), bias (out,))` per linear layer, applied in order.
#[derive(Debug, Clone)]
pub struct Mlp {
    pub layers: Vec<(Tensor, Tensor)>,
}

impl Mlp {
    /// Width of what the MLP reads.
    pub fn input_width(&self) -> Option<usize> {
        self.layers.first().and_then(|(w, _)| w.dim(1).ok())
    }

    /// Width of what the MLP returns.
    pub fn output_width(&self) -> Option<usize> {
        self.layers.last().and_then(|(w, _)| w.dim(0).ok())
    }

    /// `x` is `(.., in)`; the result is `(.., out)`. Differentiable in `x` and in every weight.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        let last = self.layers.len().saturating_sub(1);
        for (i, (w, b)) in self.layers.iter().enumerate() {
            x = super::frozen::matmul_t(&x, w)?.broadcast_add(b)?;
            if i < last {
                x = x.gelu_erf()?;
            }
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn two_layers_apply_gelu_between_and_not_after() {
        let d = &Device::Cpu;
        // Layer 1 maps x ↦ (x, −x); layer 2 sums: gelu(x) + gelu(−x) = x·(Φ(x) − Φ(−x)).
        let w1 = Tensor::new(&[[1f32], [-1.0]], d).unwrap();
        let b1 = Tensor::zeros(2, candle_core::DType::F32, d).unwrap();
        let w2 = Tensor::new(&[[1f32, 1.0]], d).unwrap();
        let b2 = Tensor::new(&[0.5f32], d).unwrap();
        let mlp = Mlp {
            layers: vec![(w1, b1), (w2, b2)],
        };
        assert_eq!((mlp.input_width(), mlp.output_width()), (Some(1), Some(1)));
        let x = Tensor::new(&[[1.0f32]], d).unwrap();
        let y = mlp.forward(&x).unwrap().to_vec2::<f32>().unwrap()[0][0];
        // Φ(1) − Φ(−1) = erf(1/√2) = 0.682689…
        let want = 0.682_689_5 + 0.5;
        assert!((y - want).abs() < 1e-5, "{y} vs {want}");
    }
}
