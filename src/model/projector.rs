//! LLaVA's multi-modal projector: `linear_2(act(linear_1(vision features)))`.

use candle_core::Tensor;
use candle_nn::VarBuilder;

use crate::model::clip::unknown_act;
use crate::model::config::LlavaConfig;
use crate::model::error::Result;
use crate::model::nn::activation::Activation;
use crate::model::nn::linear::Linear;

#[derive(Debug, Clone)]
pub struct Projector {
    linear_1: Linear,
    linear_2: Linear,
    act: Activation,
}

impl Projector {
    /// Loads from `vb` positioned at `multi_modal_projector`.
    pub fn load(vb: VarBuilder, cfg: &LlavaConfig) -> Result<Self> {
        let act = Activation::from_name(&cfg.projector_hidden_act)
            .ok_or_else(|| unknown_act("projector_hidden_act", &cfg.projector_hidden_act))?;
        let (vd, d) = (cfg.vision_config.hidden_size, cfg.text_config.hidden_size);
        let bias = cfg.multimodal_projector_bias;
        Ok(Self {
            linear_1: Linear::load(vb.pp("linear_1"), vd, d, bias)?,
            linear_2: Linear::load(vb.pp("linear_2"), d, d, bias)?,
            act,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.act.forward(&self.linear_1.forward(x)?)?;
        Ok(self.linear_2.forward(&h)?)
    }

    pub fn tensors(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) {
        for (name, l) in [("linear_1", &self.linear_1), ("linear_2", &self.linear_2)] {
            out.push((format!("{prefix}.{name}.weight"), l.weight().clone()));
            if let Some(b) = l.bias() {
                out.push((format!("{prefix}.{name}.bias"), b.clone()));
            }
        }
    }
}
