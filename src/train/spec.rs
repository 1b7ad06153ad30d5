//! The shape of the embedded model and how a fresh one is assembled.
//!
//! The dimensions live in one place because other parts of the project (recipes, the evaluator's
//! fixtures) assume them: a 6-layer, 128-wide Llama decoder with grouped-query attention over a
//! 3-layer CLIP tower that cuts a 48×48 picture into 36 patches. The tokenizer is the world's own,
//! so vocabulary size and special-token ids come from it, never from constants.

use candle_core::{DType, Device};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use crate::model::config::{LlavaConfig, TextConfig, VisionConfig};
use crate::model::preprocess::ImageProcessor;
use crate::model::{FreshInit, Llava, LlavaModel, LlavaProcessor};
use crate::world::tokenizer::{BOS, EOS, IMAGE, PAD};
use crate::world::IMAGE_SIZE;

use super::error::{Result, TrainError};

/// Dimensions of a LLaVA-1.5-architecture model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSpec {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub intermediate: usize,
    pub vision_hidden: usize,
    pub vision_layers: usize,
    pub vision_heads: usize,
    pub vision_intermediate: usize,
    pub image_size: usize,
    pub patch_size: usize,
}

impl ModelSpec {
    /// The embedded default model (≈1.5 M parameters).
    pub fn embedded() -> ModelSpec {
        ModelSpec {
            hidden: 128,
            layers: 6,
            heads: 4,
            kv_heads: 2,
            intermediate: 344,
            vision_hidden: 96,
            vision_layers: 3,
            vision_heads: 4,
            vision_intermediate: 384,
            image_size: IMAGE_SIZE as usize,
            patch_size: 8,
        }
    }

    /// A model small enough to train for a few steps inside a unit test (9 image tokens).
    pub fn tiny() -> ModelSpec {
        ModelSpec {
            hidden: 32,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            intermediate: 64,
            vision_hidden: 16,
            vision_layers: 2,
            vision_heads: 2,
            vision_intermediate: 32,
            image_size: IMAGE_SIZE as usize,
            patch_size: 16,
        }
    }

    /// The `config.json` of a model of this shape using `tokenizer`'s vocabulary and special
    /// tokens (validated like a checkpoint's config).
    pub fn config(&self, tokenizer: &Tokenizer) -> Result<LlavaConfig> {
        let id = |token: &str| {
            tokenizer
                .token_to_id(token)
                .ok_or_else(|| TrainError::MissingToken {
                    token: token.to_string(),
                })
        };
        let config = LlavaConfig {
            image_token_index: id(IMAGE)?,
            pad_token_id: Some(id(PAD)?),
            text_config: TextConfig {
                vocab_size: tokenizer.get_vocab_size(true),
                hidden_size: self.hidden,
                intermediate_size: self.intermediate,
                num_hidden_layers: self.layers,
                num_attention_heads: self.heads,
                num_key_value_heads: Some(self.kv_heads),
                max_position_embeddings: 256,
                rms_norm_eps: 1e-5,
                rope_theta: 10_000.0,
                bos_token_id: Some(id(BOS)?),
                eos_token_id: Some(id(EOS)?),
                ..TextConfig::default()
            },
            vision_config: VisionConfig {
                hidden_size: self.vision_hidden,
                intermediate_size: self.vision_intermediate,
                projection_dim: self.vision_hidden,
                num_hidden_layers: self.vision_layers,
                num_attention_heads: self.vision_heads,
                image_size: self.image_size,
                patch_size: self.patch_size,
                ..VisionConfig::default()
            },
            ..LlavaConfig::default()
        };
        // Round-trip through the checkpoint reader so a bad shape fails here, not mid-training.
        let json = serde_json::to_string(&config).map_err(|e| TrainError::Option {
            reason: format!("cannot serialise the model config: {e}"),
            help: "this is an internal error; please report it".into(),
        })?;
        LlavaConfig::from_json(&json, "<model spec>").map_err(|e| TrainError::Option {
            reason: e.to_string(),
            help: "choose dimensions where heads divide the widths and kv_heads divides heads"
                .into(),
        })
    }

    /// A freshly initialised, fully trainable model with `tokenizer` and CLIP preprocessing,
    /// and the `VarMap` holding its weights.
    pub fn fresh(&self, tokenizer: Tokenizer, seed: u64) -> Result<(Llava, VarMap)> {
        let config = self.config(&tokenizer)?;
        let init = FreshInit {
            seed,
            ..FreshInit::default()
        };
        let (model, varmap) = LlavaModel::fresh(config.clone(), init, DType::F32, &Device::Cpu)?;
        let processor = LlavaProcessor::new(
            tokenizer,
            "tokenizer.json",
            ImageProcessor::clip(self.image_size),
            &config,
        )?;
        Ok((Llava { model, processor }, varmap))
    }
}

/// Number of scalar parameters held by `varmap`.
pub fn parameter_count(varmap: &VarMap) -> usize {
    varmap.all_vars().iter().map(|v| v.elem_count()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{train_tokenizer, World};

    #[test]
    fn the_embedded_spec_matches_the_world_tokenizer_and_stays_small() {
        let tokenizer = train_tokenizer(&World::new(0)).expect("tokenizer");
        let config = ModelSpec::embedded().config(&tokenizer).expect("config");
        assert_eq!(config.image_token_index, 4);
        assert_eq!(config.pad_token_id, Some(2));
        assert_eq!(config.text_config.bos_token_id, Some(0));
        assert_eq!(config.text_config.eos_token_id, Some(1));
        assert_eq!(
            config.text_config.vocab_size,
            tokenizer.get_vocab_size(true)
        );
        assert_eq!(config.image_tokens(), 36);
        let (_, varmap) = ModelSpec::embedded()
            .fresh(tokenizer, 0)
            .expect("fresh model");
        let params = parameter_count(&varmap);
        assert!((1_000_000..4_000_000).contains(&params), "{params}");
    }

    #[test]
    fn a_spec_whose_heads_do_not_divide_is_rejected() {
        let tokenizer = train_tokenizer(&World::new(0)).expect("tokenizer");
        let bad = ModelSpec {
            heads: 3,
            ..ModelSpec::tiny()
        };
        assert!(matches!(
            bad.config(&tokenizer),
            Err(TrainError::Option { .. })
        ));
    }
}
