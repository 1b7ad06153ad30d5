//! `config.json` of a LLaVA-1.5-layout checkpoint, as Hugging Face publishes it.
//!
//! Hugging Face omits every field that equals its class default (`LlamaConfig`, `CLIPVisionConfig`,
//! `LlavaConfig`), so each field here carries that same default: a published llava-1.5 `config.json`
//! lists only a handful of text-config keys and still means a 32-layer, 4096-wide decoder.
//! [`ModelDims`] is the small, model-family-independent view the checker binds recipes against.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Errors reading a checkpoint's `config.json`.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ConfigError {
    #[error("cannot read model config `{path}`: {source}")]
    #[diagnostic(
        code(mkedsl::model::config_io),
        help("pass --model a folder holding config.json")
    )]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("model config `{path}` is not valid JSON for a LLaVA checkpoint: {source}")]
    #[diagnostic(
        code(mkedsl::model::config_json),
        help("compare it with a published llava-1.5 config.json (text_config, vision_config, image_token_index)")
    )]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("model config `{path}` is inconsistent: {reason}")]
    #[diagnostic(
        code(mkedsl::model::config_invalid),
        help("fix the named field in config.json")
    )]
    Invalid { path: String, reason: String },
}

/// Upper bounds on the sizes a `config.json` may give, far above any published model, so that a
/// damaged or hostile file (`num_hidden_layers: 1000000000`) is refused with the field named
/// instead of allocating per-layer bookkeeping before the weights are compared.
pub const MAX_LAYERS: usize = 4096;
/// Widest hidden, intermediate or head size accepted.
pub const MAX_WIDTH: usize = 1 << 20;
/// Largest vocabulary accepted.
pub const MAX_VOCAB: usize = 1 << 24;
/// Most attention heads (or image channels) accepted.
pub const MAX_HEADS: usize = 4096;
/// Longest context accepted.
pub const MAX_POSITIONS: usize = 1 << 24;
/// Largest vision input side accepted.
pub const MAX_IMAGE_SIDE: usize = 1 << 14;

/// The decoder half of a LLaVA config (`text_config`, a `LlamaConfig`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TextConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub tie_word_embeddings: bool,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub torch_dtype: Option<String>,
}

impl Default for TextConfig {
    fn default() -> Self {
        Self {
            model_type: "llama".into(),
            vocab_size: 32000,
            hidden_size: 4096,
            intermediate_size: 11008,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: None,
            head_dim: None,
            hidden_act: "silu".into(),
            max_position_embeddings: 2048,
            rms_norm_eps: 1e-6,
            rope_theta: 10000.0,
            tie_word_embeddings: false,
            attention_bias: false,
            mlp_bias: false,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
            torch_dtype: None,
        }
    }
}

impl TextConfig {
    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }
}

/// The vision half of a LLaVA config (`vision_config`, a `CLIPVisionConfig`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct VisionConfig {
    pub model_type: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub projection_dim: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
}

impl Default for VisionConfig {
    fn default() -> Self {
        Self {
            model_type: "clip_vision_model".into(),
            hidden_size: 768,
            intermediate_size: 3072,
            projection_dim: 512,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
        }
    }
}

impl VisionConfig {
    /// Patch tokens the tower yields per image, without the CLS token.
    pub fn num_patches(&self) -> usize {
        let side = self.image_size / self.patch_size.max(1);
        side * side
    }
}

/// Which vision-tower outputs become image tokens (`vision_feature_select_strategy`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FeatureSelect {
    /// Drop the CLS token (LLaVA-1.5).
    Default,
    /// Keep every token, CLS included.
    Full,
}

/// A whole LLaVA `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LlavaConfig {
    pub model_type: String,
    pub architectures: Vec<String>,
    pub text_config: TextConfig,
    pub vision_config: VisionConfig,
    pub image_token_index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<u32>,
    pub projector_hidden_act: String,
    pub vision_feature_layer: i64,
    pub vision_feature_select_strategy: FeatureSelect,
    pub multimodal_projector_bias: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tie_word_embeddings: Option<bool>,
}

impl Default for LlavaConfig {
    fn default() -> Self {
        Self {
            model_type: "llava".into(),
            architectures: vec!["LlavaForConditionalGeneration".into()],
            text_config: TextConfig::default(),
            vision_config: VisionConfig::default(),
            image_token_index: 32000,
            pad_token_id: None,
            projector_hidden_act: "gelu".into(),
            vision_feature_layer: -2,
            vision_feature_select_strategy: FeatureSelect::Default,
            multimodal_projector_bias: true,
            tie_word_embeddings: None,
        }
    }
}

impl LlavaConfig {
    /// Reads and validates `config.json` (a file, or a checkpoint folder holding one).
    pub fn from_path(path: &Path) -> Result<Self, ConfigError> {
        let file = if path.is_dir() {
            path.join("config.json")
        } else {
            path.to_path_buf()
        };
        let shown = file.display().to_string();
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Io {
            path: shown.clone(),
            source,
        })?;
        Self::from_json(&text, &shown)
    }

    /// Parses and validates the JSON text of a config; `path` is only used in messages.
    pub fn from_json(text: &str, path: &str) -> Result<Self, ConfigError> {
        let cfg: Self = serde_json::from_str(text).map_err(|source| ConfigError::Json {
            path: path.to_string(),
            source,
        })?;
        cfg.validate().map_err(|reason| ConfigError::Invalid {
            path: path.to_string(),
            reason,
        })?;
        Ok(cfg)
    }

    /// Whether the output head shares the token-embedding matrix.
    pub fn tied_embeddings(&self) -> bool {
        self.tie_word_embeddings
            .unwrap_or(self.text_config.tie_word_embeddings)
    }

    /// Image tokens one `<image>` expands to.
    pub fn image_tokens(&self) -> usize {
        match self.vision_feature_select_strategy {
            FeatureSelect::Default => self.vision_config.num_patches(),
            FeatureSelect::Full => self.vision_config.num_patches() + 1,
        }
    }

    fn validate(&self) -> Result<(), String> {
        let t = &self.text_config;
        let v = &self.vision_config;
        let positive = [
            ("text_config.vocab_size", t.vocab_size),
            ("text_config.hidden_size", t.hidden_size),
            ("text_config.intermediate_size", t.intermediate_size),
            ("text_config.num_hidden_layers", t.num_hidden_layers),
            ("text_config.num_attention_heads", t.num_attention_heads),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.num_hidden_layers", v.num_hidden_layers),
            ("vision_config.num_attention_heads", v.num_attention_heads),
            ("vision_config.image_size", v.image_size),
            ("vision_config.patch_size", v.patch_size),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, n)| *n == 0) {
            return Err(format!("`{name}` must be positive"));
        }
        let sizes = [
            ("text_config.vocab_size", t.vocab_size, MAX_VOCAB),
            ("text_config.hidden_size", t.hidden_size, MAX_WIDTH),
            (
                "text_config.intermediate_size",
                t.intermediate_size,
                MAX_WIDTH,
            ),
            (
                "text_config.num_hidden_layers",
                t.num_hidden_layers,
                MAX_LAYERS,
            ),
            (
                "text_config.num_attention_heads",
                t.num_attention_heads,
                MAX_HEADS,
            ),
            ("text_config.num_key_value_heads", t.kv_heads(), MAX_HEADS),
            ("text_config.head_dim", t.head_dim(), MAX_WIDTH),
            (
                "text_config.max_position_embeddings",
                t.max_position_embeddings,
                MAX_POSITIONS,
            ),
            ("vision_config.hidden_size", v.hidden_size, MAX_WIDTH),
            (
                "vision_config.intermediate_size",
                v.intermediate_size,
                MAX_WIDTH,
            ),
            (
                "vision_config.num_hidden_layers",
                v.num_hidden_layers,
                MAX_LAYERS,
            ),
            (
                "vision_config.num_attention_heads",
                v.num_attention_heads,
                MAX_HEADS,
            ),
            ("vision_config.num_channels", v.num_channels, MAX_HEADS),
            ("vision_config.image_size", v.image_size, MAX_IMAGE_SIDE),
        ];
        if let Some((name, n, max)) = sizes.iter().find(|(_, n, max)| n > max) {
            return Err(format!(
                "`{name}` is {n}, above the {max} mkedsl accepts (no published model comes near; a value this large would exhaust memory before the weights are compared)"
            ));
        }
        if t.max_position_embeddings == 0 {
            return Err("`text_config.max_position_embeddings` must be positive".into());
        }
        for (name, eps) in [
            ("text_config.rms_norm_eps", t.rms_norm_eps),
            ("vision_config.layer_norm_eps", v.layer_norm_eps),
        ] {
            if !(eps > 0.0 && eps.is_finite()) {
                return Err(format!(
                    "`{name}` is {eps}; it must be a small positive number (published models use 1e-5 or 1e-6): a norm divides by sqrt(mean + eps)"
                ));
            }
        }
        if !(t.rope_theta > 0.0 && t.rope_theta.is_finite()) {
            return Err(format!(
                "`text_config.rope_theta` is {}; it must be positive (published models use 10000)",
                t.rope_theta
            ));
        }
        if t.head_dim.is_none() && !t.hidden_size.is_multiple_of(t.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                t.hidden_size, t.num_attention_heads
            ));
        }
        if !t.num_attention_heads.is_multiple_of(t.kv_heads().max(1)) || t.kv_heads() == 0 {
            return Err(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                t.num_attention_heads,
                t.kv_heads()
            ));
        }
        if !v.hidden_size.is_multiple_of(v.num_attention_heads) {
            return Err(format!(
                "vision hidden_size {} is not divisible by its num_attention_heads {}",
                v.hidden_size, v.num_attention_heads
            ));
        }
        if !v.image_size.is_multiple_of(v.patch_size) {
            return Err(format!(
                "vision image_size {} is not a multiple of patch_size {}",
                v.image_size, v.patch_size
            ));
        }
        for (field, name) in [
            ("text_config.hidden_act", &t.hidden_act),
            ("vision_config.hidden_act", &v.hidden_act),
            ("projector_hidden_act", &self.projector_hidden_act),
        ] {
            if crate::model::nn::activation::Activation::from_name(name).is_none() {
                return Err(format!(
                    "`{field}` is `{name}`; supported: {}",
                    crate::model::nn::activation::Activation::NAMES
                ));
            }
        }
        if !t.head_dim().is_multiple_of(2) {
            return Err(format!(
                "head_dim {} must be even for rotary embeddings",
                t.head_dim()
            ));
        }
        if v.num_channels == 0 {
            return Err("`vision_config.num_channels` must be positive".into());
        }
        let layers = v.num_hidden_layers as i64;
        let feature = self.vision_feature_layer;
        if feature > layers || feature < -layers - 1 {
            return Err(format!(
                "vision_feature_layer {feature} is outside the vision tower's {layers} layers"
            ));
        }
        if (self.image_token_index as usize) >= t.vocab_size {
            return Err(format!(
                "image_token_index {} is outside the vocabulary of {}",
                self.image_token_index, t.vocab_size
            ));
        }
        Ok(())
    }

    /// The dimensions a recipe can be checked against.
    pub fn dims(&self) -> ModelDims {
        let t = &self.text_config;
        ModelDims {
            family: "llava".into(),
            num_layers: t.num_hidden_layers,
            hidden: t.hidden_size,
            intermediate: t.intermediate_size,
            heads: t.num_attention_heads,
            kv_heads: t.kv_heads(),
            head_dim: t.head_dim(),
            vocab: t.vocab_size,
            vision_tokens: self.image_tokens(),
            vision_hidden: self.vision_config.hidden_size,
        }
    }
}

/// Model-family-independent dimensions: everything the checker needs to bind sites, ranks and spaces.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ModelDims {
    pub family: String,
    pub num_layers: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub vision_tokens: usize,
    pub vision_hidden: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_llava_config_gets_class_defaults() {
        let json = r#"{
          "architectures": ["LlavaForConditionalGeneration"], "image_token_index": 32000,
          "model_type": "llava", "pad_token_id": 32001, "projector_hidden_act": "gelu",
          "text_config": {"model_type": "llama", "rms_norm_eps": 1e-05, "vocab_size": 32064},
          "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
            "model_type": "clip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 24,
            "patch_size": 14, "projection_dim": 768},
          "vision_feature_layer": -2, "vision_feature_select_strategy": "default"
        }"#;
        let cfg = LlavaConfig::from_json(json, "config.json").unwrap();
        let dims = cfg.dims();
        assert_eq!(dims.num_layers, 32);
        assert_eq!(dims.hidden, 4096);
        assert_eq!(dims.intermediate, 11008);
        assert_eq!(dims.kv_heads, 32);
        assert_eq!(dims.head_dim, 128);
        assert_eq!(dims.vision_tokens, 576);
        assert_eq!(cfg.text_config.rms_norm_eps, 1e-5);
        assert!(!cfg.tied_embeddings());
    }

    #[test]
    fn inconsistent_config_is_rejected_with_the_field() {
        let json = r#"{"text_config": {"hidden_size": 100, "num_attention_heads": 3}}"#;
        let err = LlavaConfig::from_json(json, "x/config.json").unwrap_err();
        assert!(err.to_string().contains("not divisible"), "{err}");
        let err = LlavaConfig::from_json("{", "x/config.json").unwrap_err();
        assert!(matches!(err, ConfigError::Json { .. }));
    }
}
