//! RMSNorm and LayerNorm with gradients (candle's fused `rms_norm` and `layer_norm` return
//! results with no parents): RMSNorm through our fused op with its own backward
//! (`fused/rms_norm.rs`), LayerNorm from primitive ops.

use candle_core::{Result, Tensor, D};

use crate::model::nn::fused::rms_norm::rms_norm;
use crate::model::precision::widen;
use candle_nn::{Init, VarBuilder};

/// Llama's RMSNorm: `x / sqrt(mean(x²) + eps) · w`.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn load(vb: VarBuilder, size: usize, eps: f64) -> Result<Self> {
        let weight = vb.get_with_hints(size, "weight", Init::Const(1.0))?;
        Ok(Self { weight, eps })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// In f32 for half-precision input (as Hugging Face's `LlamaRMSNorm` does: a bf16 mean of
    /// squares over thousands of channels loses digits), returned in the input's dtype.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let wide = widen(x)?;
        rms_norm(&wide, &self.weight.to_dtype(wide.dtype())?, self.eps)?.to_dtype(x.dtype())
    }
}

/// LayerNorm with affine weight and bias: `(x − mean) / sqrt(var + eps) · w + b`.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn load(vb: VarBuilder, size: usize, eps: f64) -> Result<Self> {
        let weight = vb.get_with_hints(size, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(size, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias, eps })
    }

    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    pub fn bias(&self) -> &Tensor {
        &self.bias
    }

    /// In f32 for half-precision input, returned in the input's dtype.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let wide = widen(x)?;
        let centred = wide.broadcast_sub(&wide.mean_keepdim(D::Minus1)?)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let inv = (var + self.eps)?.sqrt()?.recip()?;
        centred
            .broadcast_mul(&inv)?
            .broadcast_mul(&self.weight.to_dtype(wide.dtype())?)?
            .broadcast_add(&self.bias.to_dtype(wide.dtype())?)?
            .to_dtype(x.dtype())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    #[test]
    fn rms_norm_by_hand() {
        let dev = Device::Cpu;
        let norm = RmsNorm {
            weight: Tensor::new(&[1.0f64, 2.0], &dev).unwrap(),
            eps: 0.0,
        };
        // x = (3, 4): mean(x²) = 12.5, 1/sqrt = 0.28284271247…
        let y = norm
            .forward(&Tensor::new(&[[3.0f64, 4.0]], &dev).unwrap())
            .unwrap();
        let y = y.to_vec2::<f64>().unwrap();
        assert!((y[0][0] - 3.0 / 12.5f64.sqrt()).abs() < 1e-12);
        assert!((y[0][1] - 8.0 / 12.5f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn layer_norm_by_hand_and_it_has_gradients() {
        let dev = Device::Cpu;
        let w = Var::from_tensor(&Tensor::new(&[1.0f64, 1.0, 2.0], &dev).unwrap()).unwrap();
        let b = Var::zeros(3, DType::F64, &dev).unwrap();
        let norm = LayerNorm {
            weight: w.as_tensor().clone(),
            bias: b.as_tensor().clone(),
            eps: 0.0,
        };
        let x = Var::from_tensor(&Tensor::new(&[[1.0f64, 2.0, 6.0]], &dev).unwrap()).unwrap();
        let y = norm.forward(x.as_tensor()).unwrap();
        // mean 3, var (4 + 1 + 9) / 3 = 14/3.
        let s = (14.0f64 / 3.0).sqrt();
        let got = y.to_vec2::<f64>().unwrap();
        for (g, e) in got[0].iter().zip([-2.0 / s, -1.0 / s, 6.0 / s]) {
            assert!((g - e).abs() < 1e-12, "{g} vs {e}");
        }
        let grads = (y.sqr().unwrap().sum_all().unwrap()).backward().unwrap();
        assert!(grads.get(x.as_tensor()).is_some());
        assert!(grads.get(w.as_tensor()).is_some());
        assert!(grads.get(b.as_tensor()).is_some());
    }
}
