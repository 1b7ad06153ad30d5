//! CLIP's vision transformer as LLaVA uses it, from differentiable ops.
//!
//! candle-transformers' CLIP uses the fused LayerNorm (no gradient), and issue 4 trains the
//! tower from scratch, so the project owns this one; candle-transformers' CLIP is the reference
//! in the parity test. The patch convolution (stride = kernel = patch) is written as an unfold
//! and a linear, so a frozen tower uses the gradient-free matmul like every other linear.

use candle_core::Tensor;
use candle_nn::{Init, VarBuilder};

use crate::model::config::VisionConfig;
use crate::model::error::{ModelError, Result};
use crate::model::nn::activation::Activation;
use crate::model::nn::frozen::matmul_t;
use crate::model::nn::linear::Linear;
use crate::model::nn::norm::LayerNorm;

#[derive(Debug, Clone)]
struct ClipAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
}

impl ClipAttention {
    fn load(vb: VarBuilder, cfg: &VisionConfig) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            q_proj: Linear::load(vb.pp("q_proj"), d, d, true)?,
            k_proj: Linear::load(vb.pp("k_proj"), d, d, true)?,
            v_proj: Linear::load(vb.pp("v_proj"), d, d, true)?,
            out_proj: Linear::load(vb.pp("out_proj"), d, d, true)?,
            heads: cfg.num_attention_heads,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let hd = d / self.heads;
        let split = |y: Tensor| -> candle_core::Result<Tensor> {
            y.reshape((b, t, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split((self.q_proj.forward(x)? * (hd as f64).powf(-0.5))?)?;
        let k = split(self.k_proj.forward(x)?)?;
        let v = split(self.v_proj.forward(x)?)?;
        let kt = k.t()?;
        let scores = crate::model::nn::gemm::matmul(&q, &kt)?;
        let probs = crate::model::nn::attention_softmax(&scores, 1.0, None)?;
        let y = crate::model::nn::gemm::matmul(&probs, &v)?
            .transpose(1, 2)?
            .reshape((b, t, d))?;
        Ok(self.out_proj.forward(&y)?)
    }
}

#[derive(Debug, Clone)]
struct ClipLayer {
    layer_norm1: LayerNorm,
    self_attn: ClipAttention,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

impl ClipLayer {
    fn load(vb: VarBuilder, cfg: &VisionConfig, act: Activation) -> Result<Self> {
        let (d, eps) = (cfg.hidden_size, cfg.layer_norm_eps);
        Ok(Self {
            layer_norm1: LayerNorm::load(vb.pp("layer_norm1"), d, eps)?,
            self_attn: ClipAttention::load(vb.pp("self_attn"), cfg)?,
            layer_norm2: LayerNorm::load(vb.pp("layer_norm2"), d, eps)?,
            fc1: Linear::load(vb.pp("mlp.fc1"), d, cfg.intermediate_size, true)?,
            fc2: Linear::load(vb.pp("mlp.fc2"), cfg.intermediate_size, d, true)?,
            act,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = (x + self.self_attn.forward(&self.layer_norm1.forward(x)?)?)?;
        let h = self
            .act
            .forward(&self.fc1.forward(&self.layer_norm2.forward(&x)?)?)?;
        Ok((&x + self.fc2.forward(&h)?)?)
    }

    fn tensors(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) {
        let lin = |name: &str, l: &Linear, out: &mut Vec<(String, Tensor)>| {
            out.push((format!("{prefix}.{name}.weight"), l.weight().clone()));
            if let Some(b) = l.bias() {
                out.push((format!("{prefix}.{name}.bias"), b.clone()));
            }
        };
        let ln = |name: &str, n: &LayerNorm, out: &mut Vec<(String, Tensor)>| {
            out.push((format!("{prefix}.{name}.weight"), n.weight().clone()));
            out.push((format!("{prefix}.{name}.bias"), n.bias().clone()));
        };
        lin("self_attn.q_proj", &self.self_attn.q_proj, out);
        lin("self_attn.k_proj", &self.self_attn.k_proj, out);
        lin("self_attn.v_proj", &self.self_attn.v_proj, out);
        lin("self_attn.out_proj", &self.self_attn.out_proj, out);
        ln("layer_norm1", &self.layer_norm1, out);
        lin("mlp.fc1", &self.fc1, out);
        lin("mlp.fc2", &self.fc2, out);
        ln("layer_norm2", &self.layer_norm2, out);
    }
}

/// The vision tower (`vision_tower.vision_model.*`).
#[derive(Debug, Clone)]
pub struct ClipVision {
    patch_embedding: Tensor,
    class_embedding: Tensor,
    position_embedding: Tensor,
    pre_layrnorm: LayerNorm,
    layers: Vec<ClipLayer>,
    post_layernorm: LayerNorm,
    patch: usize,
}

impl ClipVision {
    /// Loads from `vb` positioned at `vision_tower.vision_model`.
    pub fn load(vb: VarBuilder, cfg: &VisionConfig) -> Result<Self> {
        let act = Activation::from_name(&cfg.hidden_act)
            .ok_or_else(|| unknown_act("vision_config.hidden_act", &cfg.hidden_act))?;
        let d = cfg.hidden_size;
        let p = cfg.patch_size;
        let emb = vb.pp("embeddings");
        let normal = Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| ClipLayer::load(vb.pp(format!("encoder.layers.{i}")), cfg, act))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            patch_embedding: emb.get_with_hints(
                (d, cfg.num_channels, p, p),
                "patch_embedding.weight",
                normal,
            )?,
            class_embedding: emb.get_with_hints(d, "class_embedding", normal)?,
            position_embedding: emb.get_with_hints(
                (cfg.num_patches() + 1, d),
                "position_embedding.weight",
                normal,
            )?,
            pre_layrnorm: LayerNorm::load(vb.pp("pre_layrnorm"), d, cfg.layer_norm_eps)?,
            layers,
            post_layernorm: LayerNorm::load(vb.pp("post_layernorm"), d, cfg.layer_norm_eps)?,
            patch: p,
        })
    }

    /// Hugging Face's `hidden_states` up to index `upto` inclusive: `[0]` is the embeddings after
    /// `pre_layrnorm`, `[i]` the output of encoder layer `i`. Later layers are not run.
    pub fn hidden_states(&self, pixels: &Tensor, upto: usize) -> Result<Vec<Tensor>> {
        let (n, c, h, w) = pixels.dims4()?;
        let p = self.patch;
        let (gh, gw) = (h / p, w / p);
        let d = self.class_embedding.dim(0)?;
        let patches = pixels
            .to_dtype(self.patch_embedding.dtype())?
            .reshape((n, c, gh, p, gw, p))?
            .permute((0, 2, 4, 1, 3, 5))?
            .contiguous()?
            .reshape((n, gh * gw, c * p * p))?;
        let kernel = self.patch_embedding.reshape((d, c * p * p))?;
        let patch_embeds = matmul_t(&patches, &kernel)?;
        let class = self
            .class_embedding
            .reshape((1, 1, d))?
            .broadcast_as((n, 1, d))?;
        let x =
            Tensor::cat(&[&class, &patch_embeds], 1)?.broadcast_add(&self.position_embedding)?;
        let mut x = self.pre_layrnorm.forward(&x)?;
        let mut states = vec![x.clone()];
        for layer in self.layers.iter().take(upto) {
            x = layer.forward(&x)?;
            states.push(x.clone());
        }
        Ok(states)
    }

    /// Number of encoder layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Every tensor with its checkpoint name under `prefix`.
    pub fn tensors(&self, prefix: &str, out: &mut Vec<(String, Tensor)>) {
        out.push((
            format!("{prefix}.embeddings.class_embedding"),
            self.class_embedding.clone(),
        ));
        out.push((
            format!("{prefix}.embeddings.patch_embedding.weight"),
            self.patch_embedding.clone(),
        ));
        out.push((
            format!("{prefix}.embeddings.position_embedding.weight"),
            self.position_embedding.clone(),
        ));
        out.push((
            format!("{prefix}.pre_layrnorm.weight"),
            self.pre_layrnorm.weight().clone(),
        ));
        out.push((
            format!("{prefix}.pre_layrnorm.bias"),
            self.pre_layrnorm.bias().clone(),
        ));
        for (i, layer) in self.layers.iter().enumerate() {
            layer.tensors(&format!("{prefix}.encoder.layers.{i}"), out);
        }
        out.push((
            format!("{prefix}.post_layernorm.weight"),
            self.post_layernorm.weight().clone(),
        ));
        out.push((
            format!("{prefix}.post_layernorm.bias"),
            self.post_layernorm.bias().clone(),
        ));
    }
}

pub(crate) fn unknown_act(field: &str, name: &str) -> ModelError {
    ModelError::Config(crate::model::config::ConfigError::Invalid {
        path: "config.json".into(),
        reason: format!("`{field}` is `{name}`; supported: {}", Activation::NAMES),
    })
}
