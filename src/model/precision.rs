//! The precision frozen weights are held and multiplied in (`--dtype f32|bf16|f16`).
//!
//! Half precision halves the memory of the weights (LLaVA-1.5-7B: ~28 GB in f32, ~14 GB in
//! bf16) and nothing else changes precision with it: every trained tensor (LoRA factors, weight
//! deltas, a trained copy of a weight, extra neurons) and the optimiser's state stay f32,
//! normalisations, attention softmaxes, logits and losses are computed in f32, and the linear
//! algebra of `crate::linalg` widens its inputs to f32 or f64. Activations flow through the
//! frozen layers in the chosen precision and are cast where they meet an f32 tensor, so
//! gradients reach it.

use std::fmt;

use candle_core::DType;

/// A precision a user can choose for the frozen weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, clap::ValueEnum)]
pub enum Precision {
    /// 32-bit floats: the reference.
    #[default]
    #[value(name = "f32")]
    F32,
    /// bfloat16: f32's range with 8 bits of mantissa.
    #[value(name = "bf16")]
    Bf16,
    /// IEEE half: 11 bits of mantissa but a range that ends at 65504.
    #[value(name = "f16")]
    F16,
}

impl Precision {
    /// The candle dtype of the weights.
    pub fn dtype(self) -> DType {
        match self {
            Self::F32 => DType::F32,
            Self::Bf16 => DType::BF16,
            Self::F16 => DType::F16,
        }
    }

    /// Bytes one weight takes.
    pub fn bytes(self) -> u64 {
        match self {
            Self::F32 => 4,
            Self::Bf16 | Self::F16 => 2,
        }
    }

    /// The name on the command line and in results JSON (`f32`, `bf16`, `f16`).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::F16 => "f16",
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The dtype trained tensors and optimiser state are kept in, whatever the weights' precision:
/// f32, or f64 when the model itself is f64 (gradient checks).
pub fn trained_dtype(model: DType) -> DType {
    match model {
        DType::F64 => DType::F64,
        _ => DType::F32,
    }
}

/// `x` in f32 when it is half precision (ops whose accumulations or ranges half precision
/// would spoil: normalisations, softmaxes, log-probabilities); unchanged otherwise.
pub fn widen(x: &candle_core::Tensor) -> candle_core::Result<candle_core::Tensor> {
    match x.dtype() {
        DType::BF16 | DType::F16 => x.to_dtype(DType::F32),
        _ => Ok(x.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn names_parse_and_map_to_dtypes() {
        for p in Precision::value_variants() {
            assert_eq!(Precision::from_str(p.name(), false), Ok(*p));
        }
        assert_eq!(Precision::Bf16.dtype(), DType::BF16);
        assert_eq!(Precision::F16.bytes(), 2);
        assert!(Precision::from_str("fp8", false).is_err());
        assert_eq!(trained_dtype(DType::BF16), DType::F32);
        assert_eq!(trained_dtype(DType::F64), DType::F64);
    }
}
