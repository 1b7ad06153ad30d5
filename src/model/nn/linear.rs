//! A linear layer in Hugging Face's layout (`weight` is `(out, in)`, optional `bias`).

use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

use super::frozen::matmul_t;

/// `y = x Wᵀ + b`. Frozen weights go through the gradient-free op of [`super::frozen`].
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Loads `weight` (and `bias` when `bias` is true) under `vb`'s prefix.
    pub fn load(vb: VarBuilder, inp: usize, out: usize, bias: bool) -> Result<Self> {
        let weight = vb.get_with_hints((out, inp), "weight", Init::Const(0.0))?;
        let bias = if bias {
            Some(vb.get_with_hints(out, "bias", Init::Const(0.0))?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    /// Wraps existing tensors (the tied output head shares the embedding matrix).
    pub fn from_weights(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Swaps the weight, returning the previous one (same shape is checked by the caller).
    pub fn replace_weight(&mut self, weight: Tensor) -> Tensor {
        std::mem::replace(&mut self.weight, weight)
    }

    /// Applies the layer with `weight` standing in for the stored weight (a weight delta).
    /// `x · weightᵀ + bias`. A weight of another dtype than `x` (an f32 trained copy or delta
    /// sum on a half-precision model) multiplies in its own dtype: `x` is cast to it and the
    /// product back, both casts differentiable, so the gradient reaches an f32 weight in f32.
    pub fn forward_with(&self, x: &Tensor, weight: &Tensor) -> Result<Tensor> {
        let y = if weight.dtype() == x.dtype() {
            matmul_t(x, weight)?
        } else {
            matmul_t(&x.to_dtype(weight.dtype())?, weight)?.to_dtype(x.dtype())?
        };
        match &self.bias {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_with(x, &self.weight)
    }
}
