//! Differentiable building blocks: every function here has a gradient with respect to every
//! tensor input that can carry one (see notes/candle-0.11.md for the fused candle ops that
//! silently drop gradients, and why none of them appear here).

pub mod activation;
pub mod frozen;
pub mod fused;
pub mod gemm;
pub mod linear;
pub mod mlp;
pub mod norm;
pub mod rotary;

/// Softmax over the last dimension of attention scores times `scale`, plus an additive `bias`
/// `(B, 1, T, S)` (the causal and padding mask, f32), computed in f32 whatever the scores' dtype
/// and returned in it: the mask's −1e9 is −∞ in f16, and a fully masked row would turn into NaN;
/// bf16's 8-bit mantissa would also blur the largest scores. One fused pass on CPU f32
/// (`fused/softmax.rs`); elsewhere the scores are scaled in their dtype, widened, masked and
/// normalised by candle's ops.
pub fn attention_softmax(
    scores: &candle_core::Tensor,
    scale: f64,
    bias: Option<&candle_core::Tensor>,
) -> candle_core::Result<candle_core::Tensor> {
    if let Some(probs) = fused::softmax::scaled_softmax(scores, scale, bias)? {
        return Ok(probs);
    }
    let scaled = if scale == 1.0 {
        scores.clone()
    } else {
        scores.affine(scale, 0.0)?
    };
    let mut wide = crate::model::precision::widen(&scaled)?;
    if let Some(b) = bias {
        wide = wide.broadcast_add(&b.to_dtype(wide.dtype())?)?;
    }
    candle_nn::ops::softmax(&wide, candle_core::D::Minus1)?.to_dtype(scores.dtype())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Tensor};

    #[test]
    fn attention_softmax_in_f16_survives_a_fully_masked_row() {
        // In f16 the mask's −1e9 would be −∞ and the fully masked row NaN.
        let dev = Device::Cpu;
        let scores = Tensor::zeros((1, 2, 3), DType::F16, &dev).unwrap();
        let bias = Tensor::new(&[[[-1e9f32, -1e9, -1e9], [0.0, -1e9, -1e9]]], &dev).unwrap();
        let p = attention_softmax(&scores, 1.0, Some(&bias)).unwrap();
        assert_eq!(p.dtype(), DType::F16);
        let p = p.to_dtype(DType::F32).unwrap().to_vec3::<f32>().unwrap();
        for v in &p[0][0] {
            assert!((v - 1.0 / 3.0).abs() < 1e-3, "{:?}", p);
        }
        assert_eq!(p[0][1], vec![1.0, 0.0, 0.0]);
    }
}
