//! The tensors a LLaVA `config.json` implies, with Hugging Face names and shapes.
//!
//! One table serves three jobs: checking a checkpoint before anything is built, initialising a
//! fresh model for training, and (by test) agreeing with what the model saves.

use crate::model::config::LlavaConfig;
use crate::model::precision::Precision;

/// One expected tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub role: Role,
}

/// What a tensor is for; decides its fresh initialisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A matrix or embedding table: random.
    Weight,
    /// A normalisation scale: ones.
    NormScale,
    /// A bias (normalisation shift included): zeros.
    Bias,
}

fn push(out: &mut Vec<TensorSpec>, name: String, shape: &[usize], role: Role) {
    out.push(TensorSpec {
        name,
        shape: shape.to_vec(),
        role,
    });
}

fn linear(out: &mut Vec<TensorSpec>, prefix: &str, inp: usize, outp: usize, bias: bool) {
    push(out, format!("{prefix}.weight"), &[outp, inp], Role::Weight);
    if bias {
        push(out, format!("{prefix}.bias"), &[outp], Role::Bias);
    }
}

fn layer_norm(out: &mut Vec<TensorSpec>, prefix: &str, size: usize) {
    push(out, format!("{prefix}.weight"), &[size], Role::NormScale);
    push(out, format!("{prefix}.bias"), &[size], Role::Bias);
}

/// Every tensor of the checkpoint, in a stable order.
pub fn expected_tensors(cfg: &LlavaConfig) -> Vec<TensorSpec> {
    let mut out = Vec::new();
    let t = &cfg.text_config;
    let (d, inter) = (t.hidden_size, t.intermediate_size);
    let q = t.num_attention_heads * t.head_dim();
    let kv = t.kv_heads() * t.head_dim();

    let lm = "language_model.model";
    push(
        &mut out,
        format!("{lm}.embed_tokens.weight"),
        &[t.vocab_size, d],
        Role::Weight,
    );
    for i in 0..t.num_hidden_layers {
        let p = format!("{lm}.layers.{i}");
        push(
            &mut out,
            format!("{p}.input_layernorm.weight"),
            &[d],
            Role::NormScale,
        );
        linear(
            &mut out,
            &format!("{p}.self_attn.q_proj"),
            d,
            q,
            t.attention_bias,
        );
        linear(
            &mut out,
            &format!("{p}.self_attn.k_proj"),
            d,
            kv,
            t.attention_bias,
        );
        linear(
            &mut out,
            &format!("{p}.self_attn.v_proj"),
            d,
            kv,
            t.attention_bias,
        );
        linear(
            &mut out,
            &format!("{p}.self_attn.o_proj"),
            q,
            d,
            t.attention_bias,
        );
        push(
            &mut out,
            format!("{p}.post_attention_layernorm.weight"),
            &[d],
            Role::NormScale,
        );
        linear(
            &mut out,
            &format!("{p}.mlp.gate_proj"),
            d,
            inter,
            t.mlp_bias,
        );
        linear(&mut out, &format!("{p}.mlp.up_proj"), d, inter, t.mlp_bias);
        linear(
            &mut out,
            &format!("{p}.mlp.down_proj"),
            inter,
            d,
            t.mlp_bias,
        );
    }
    push(&mut out, format!("{lm}.norm.weight"), &[d], Role::NormScale);
    if !cfg.tied_embeddings() {
        push(
            &mut out,
            "language_model.lm_head.weight".into(),
            &[t.vocab_size, d],
            Role::Weight,
        );
    }

    let v = &cfg.vision_config;
    let vd = v.hidden_size;
    let bias = cfg.multimodal_projector_bias;
    linear(&mut out, "multi_modal_projector.linear_1", vd, d, bias);
    linear(&mut out, "multi_modal_projector.linear_2", d, d, bias);

    let vm = "vision_tower.vision_model";
    push(
        &mut out,
        format!("{vm}.embeddings.class_embedding"),
        &[vd],
        Role::Weight,
    );
    push(
        &mut out,
        format!("{vm}.embeddings.patch_embedding.weight"),
        &[vd, v.num_channels, v.patch_size, v.patch_size],
        Role::Weight,
    );
    push(
        &mut out,
        format!("{vm}.embeddings.position_embedding.weight"),
        &[v.num_patches() + 1, vd],
        Role::Weight,
    );
    layer_norm(&mut out, &format!("{vm}.pre_layrnorm"), vd);
    for i in 0..v.num_hidden_layers {
        let p = format!("{vm}.encoder.layers.{i}");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            linear(&mut out, &format!("{p}.self_attn.{proj}"), vd, vd, true);
        }
        layer_norm(&mut out, &format!("{p}.layer_norm1"), vd);
        linear(
            &mut out,
            &format!("{p}.mlp.fc1"),
            vd,
            v.intermediate_size,
            true,
        );
        linear(
            &mut out,
            &format!("{p}.mlp.fc2"),
            v.intermediate_size,
            vd,
            true,
        );
        layer_norm(&mut out, &format!("{p}.layer_norm2"), vd);
    }
    layer_norm(&mut out, &format!("{vm}.post_layernorm"), vd);
    out
}

/// Bytes the checkpoint's weights take once loaded in `precision` (`--dtype`): every weight is
/// converted to it at load, whatever the file holds.
pub fn weight_bytes(cfg: &LlavaConfig, precision: Precision) -> u64 {
    expected_tensors(cfg)
        .iter()
        .map(|t| {
            t.shape
                .iter()
                .fold(precision.bytes(), |a, &n| a.saturating_mul(n as u64))
        })
        .fold(0u64, u64::saturating_add)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llava_7b_has_the_published_tensor_count_and_shapes() {
        let cfg = LlavaConfig {
            vision_config: crate::model::config::VisionConfig {
                hidden_size: 1024,
                intermediate_size: 4096,
                num_hidden_layers: 24,
                num_attention_heads: 16,
                image_size: 336,
                patch_size: 14,
                ..Default::default()
            },
            ..Default::default()
        };
        let specs = expected_tensors(&cfg);
        // 32 decoder layers × 9 + embed + norm + lm_head; projector 4; vision 3 + 2 + 24 × 16 + 2.
        assert_eq!(specs.len(), 32 * 9 + 3 + 4 + 5 + 24 * 16 + 2);
        let find = |n: &str| specs.iter().find(|s| s.name == n).map(|s| s.shape.clone());
        assert_eq!(
            find("multi_modal_projector.linear_1.weight"),
            Some(vec![4096, 1024])
        );
        assert_eq!(
            find("vision_tower.vision_model.embeddings.position_embedding.weight"),
            Some(vec![577, 1024])
        );
        assert_eq!(
            find("language_model.model.layers.31.mlp.down_proj.weight"),
            Some(vec![4096, 11008])
        );
        // Half precision halves the weights exactly.
        let f32 = weight_bytes(&cfg, Precision::F32);
        assert_eq!(weight_bytes(&cfg, Precision::Bf16) * 2, f32);
        assert_eq!(weight_bytes(&cfg, Precision::F16) * 2, f32);
    }
}
