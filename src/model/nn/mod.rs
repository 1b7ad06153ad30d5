//! Differentiable building blocks: every function here has a gradient with respect to every
//! tensor input that can carry one (see notes/candle-0.11.md for the fused candle ops that
//! silently drop gradients, and why none of them appear here).

pub mod activation;
pub mod frozen;
pub mod linear;
pub mod mlp;
pub mod norm;
pub mod rotary;

/// Softmax over the last dimension of attention scores, plus an additive `bias` (the causal and
/// padding mask, f32), computed in f32 whatever the scores' dtype and returned in it: the mask's
/// −1e9 is −∞ in f16, and a fully masked row would turn into NaN; bf16's 8-bit mantissa would
/// also blur the largest scores.
pub fn attention_softmax(
    scores: &candle_core::Tensor,
    bias: Option<&candle_core::Tensor>,
) -> candle_core::Result<candle_core::Tensor> {
    let mut wide = crate::model::precision::widen(scores)?;
    if let Some(b) = bias {
        wide = wide.broadcast_add(&b.to_dtype(wide.dtype())?)?;
    }
    candle_nn::ops::softmax(&wide, candle_core::D::Minus1)?.to_dtype(scores.dtype())
}
