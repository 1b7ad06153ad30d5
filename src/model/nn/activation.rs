//! Activation functions named as Hugging Face configs name them.

use candle_core::{Result, Tensor};

/// An activation named by `hidden_act` / `projector_hidden_act` in `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// SiLU (Llama's `silu`, also spelled `swish`).
    Silu,
    /// Exact GELU with erf (`gelu`).
    Gelu,
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`, `gelu_new`, `gelu_fast`).
    GeluTanh,
    /// CLIP's `quick_gelu`: x · sigmoid(1.702 x).
    QuickGelu,
    /// `relu`.
    Relu,
}

impl Activation {
    /// Every name the runtime accepts, for error messages.
    pub const NAMES: &'static str =
        "silu, swish, gelu, gelu_pytorch_tanh, gelu_new, gelu_fast, quick_gelu, relu";

    /// Parses a Hugging Face activation name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "silu" | "swish" => Self::Silu,
            "gelu" => Self::Gelu,
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Self::GeluTanh,
            "quick_gelu" => Self::QuickGelu,
            "relu" => Self::Relu,
            _ => return None,
        })
    }

    /// Applies the activation elementwise; every branch has a backward in candle 0.11.
    pub fn forward(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Silu => x.silu(),
            Self::Gelu => x.gelu_erf(),
            Self::GeluTanh => x.gelu(),
            Self::QuickGelu => x * candle_nn::ops::sigmoid(&(x * 1.702)?)?,
            Self::Relu => x.relu(),
        }
    }

    /// `act(gate) · up`, the gated MLP's product; SiLU's is one fused op on the CPU.
    pub fn gated(self, gate: &Tensor, up: &Tensor) -> Result<Tensor> {
        match self {
            Self::Silu => super::fused::silu_gate::silu_gate(gate, up),
            _ => self.forward(gate)? * up,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn activations_match_their_formulas() {
        let xs = [-2.0f64, -0.5, 0.0, 0.7, 3.0];
        let x = Tensor::new(&xs[..], &Device::Cpu).unwrap();
        let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
        type Formula = fn(f64) -> f64;
        let cases: [(Activation, Formula); 3] = [
            (Activation::Silu, |v| v / (1.0 + (-v).exp())),
            (Activation::Relu, |v| v.max(0.0)),
            (Activation::GeluTanh, |v| {
                0.5 * v
                    * (1.0
                        + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v)).tanh())
            }),
        ];
        for (act, f) in cases {
            let got = act.forward(&x).unwrap().to_vec1::<f64>().unwrap();
            for (g, v) in got.iter().zip(xs) {
                assert!((g - f(v)).abs() < 1e-12, "{act:?}({v}) = {g}");
            }
        }
        let got = Activation::QuickGelu
            .forward(&x)
            .unwrap()
            .to_vec1::<f64>()
            .unwrap();
        for (g, v) in got.iter().zip(xs) {
            assert!((g - v * sigmoid(1.702 * v)).abs() < 1e-12);
        }
        // erf GELU at hand-checked points: gelu(1) = 0.8413447460685429, gelu(-0.5) = -0.15426876936299347.
        let got = Activation::Gelu
            .forward(&Tensor::new(&[1.0f64, -0.5], &Device::Cpu).unwrap())
            .unwrap();
        let got = got.to_vec1::<f64>().unwrap();
        assert!((got[0] - 0.841_344_746_068_542_9).abs() < 1e-9);
        assert!((got[1] + 0.154_268_769_362_993_47).abs() < 1e-9);
        assert_eq!(
            Activation::from_name("gelu_new"),
            Some(Activation::GeluTanh)
        );
        assert_eq!(Activation::from_name("mish"), None);
    }
}
