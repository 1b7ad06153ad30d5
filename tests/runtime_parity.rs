//! Parity with an independent implementation: candle-transformers' CLIP vision transformer and
//! Llama, assembled into LLaVA here, on the tiny committed checkpoint.
//!
//! candle-transformers' `Llama` returns only the last position's logits, so every position is
//! compared by running it on each prefix of the latents (causal attention makes the logits at
//! position t depend only on the prefix). Its `ClipVisionTransformer::output_hidden_states`
//! returns the outputs of layers 1..=N (no embeddings entry), so HF's `hidden_states[k]` is its
//! `[k - 1]`.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Module, VarBuilder};
use candle_transformers::models::clip::text_model::Activation as ClipActivation;
use candle_transformers::models::clip::vision_model::{ClipVisionConfig, ClipVisionTransformer};
use candle_transformers::models::llama::{Cache, Config, Llama};
use common::*;
use mkedsl::model::{Adapters, Hooks, LlavaConfig, PadSide, Readout, VisionLanguageModel};

const TOL: f64 = 1e-4;

fn reference_vb(dir: &std::path::Path) -> VarBuilder<'static> {
    // SAFETY: read-only map of a test fixture nobody writes during the test.
    unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
        .unwrap()
    }
}

fn llama_config(cfg: &LlavaConfig) -> Config {
    let t = &cfg.text_config;
    Config {
        hidden_size: t.hidden_size,
        intermediate_size: t.intermediate_size,
        vocab_size: t.vocab_size,
        num_hidden_layers: t.num_hidden_layers,
        num_attention_heads: t.num_attention_heads,
        num_key_value_heads: t.kv_heads(),
        use_flash_attn: false,
        rms_norm_eps: t.rms_norm_eps,
        rope_theta: t.rope_theta as f32,
        bos_token_id: t.bos_token_id,
        eos_token_id: None,
        rope_scaling: None,
        max_position_embeddings: t.max_position_embeddings,
        tie_word_embeddings: cfg.tied_embeddings(),
    }
}

fn clip_config(cfg: &LlavaConfig) -> ClipVisionConfig {
    let v = &cfg.vision_config;
    ClipVisionConfig {
        embed_dim: v.hidden_size,
        activation: ClipActivation::QuickGelu,
        intermediate_size: v.intermediate_size,
        num_hidden_layers: v.num_hidden_layers,
        num_attention_heads: v.num_attention_heads,
        projection_dim: v.projection_dim,
        num_channels: v.num_channels,
        image_size: v.image_size,
        patch_size: v.patch_size,
    }
}

/// Last-position logits of the reference Llama on every prefix of `embeds` `(1, T, D)`.
fn reference_all_logits(llama: &Llama, cfg: &Config, embeds: &Tensor) -> Tensor {
    let t = embeds.dim(1).unwrap();
    let rows: Vec<Tensor> = (1..=t)
        .map(|len| {
            let mut cache = Cache::new(false, DType::F32, cfg, &Device::Cpu).unwrap();
            llama
                .forward_input_embed(&embeds.narrow(1, 0, len).unwrap(), 0, &mut cache)
                .unwrap()
        })
        .collect();
    Tensor::cat(&rows, 0).unwrap()
}

#[test]
fn vision_tower_matches_candle_transformers_clip() {
    let llava = load(DType::F32);
    let cfg = llava.config().clone();
    let encoded = llava.encode(PROMPT, &[image()]).unwrap();
    let pixels = encoded.pixel_values.unwrap();
    let ours = llava.model.vision_hidden_states(&pixels).unwrap();
    let reference = ClipVisionTransformer::new(
        reference_vb(&tiny()).pp("vision_tower.vision_model"),
        &clip_config(&cfg),
    )
    .unwrap();
    let theirs = reference.output_hidden_states(&pixels).unwrap();
    assert_eq!(ours.len(), cfg.vision_config.num_hidden_layers + 1);
    for k in 1..ours.len() {
        let diff = max_abs_diff(&ours[k], &theirs[k - 1]);
        eprintln!("vision hidden_states[{k}] max abs diff {diff:.3e}");
        assert!(diff < TOL, "vision layer {k}: {diff}");
    }
}

#[test]
fn logits_at_every_position_match_candle_transformers_llava_pieces() {
    let llava = load(DType::F32);
    let cfg = llava.config().clone();
    let vb = reference_vb(&tiny());
    let encoded = llava.encode(PROMPT, &[image()]).unwrap();

    // Reference input latents: tokenizer ids with the single `<image>` id replaced by the
    // projected features of CLIP's hidden state at vision_feature_layer (-2 → HF index 2).
    let tokenizer = tokenizers::Tokenizer::from_file(tiny().join("tokenizer.json")).unwrap();
    let raw: Vec<u32> = tokenizer.encode(PROMPT, true).unwrap().get_ids().to_vec();
    let at = raw
        .iter()
        .position(|&i| i == cfg.image_token_index)
        .unwrap();
    let tokens = cfg.image_tokens();
    let mut expanded = raw[..at].to_vec();
    expanded.extend(std::iter::repeat_n(cfg.image_token_index, tokens));
    expanded.extend(&raw[at + 1..]);
    assert_eq!(encoded.input_ids, expanded, "image-token expansion");
    assert_eq!(
        encoded.image_positions,
        (at..at + tokens).collect::<Vec<_>>()
    );

    let pixels = encoded.pixel_values.clone().unwrap();
    let clip =
        ClipVisionTransformer::new(vb.pp("vision_tower.vision_model"), &clip_config(&cfg)).unwrap();
    let hf_index =
        (cfg.vision_config.num_hidden_layers as i64 + 1 + cfg.vision_feature_layer) as usize;
    let selected = clip.output_hidden_states(&pixels).unwrap()[hf_index - 1]
        .narrow(1, 1, tokens)
        .unwrap();
    let (vd, d) = (cfg.vision_config.hidden_size, cfg.text_config.hidden_size);
    let l1 = candle_nn::linear(vd, d, vb.pp("multi_modal_projector.linear_1")).unwrap();
    let l2 = candle_nn::linear(d, d, vb.pp("multi_modal_projector.linear_2")).unwrap();
    let features = l2
        .forward(
            &candle_nn::Activation::Gelu
                .forward(&l1.forward(&selected).unwrap())
                .unwrap(),
        )
        .unwrap();

    let llama_cfg = llama_config(&cfg);
    let llama = Llama::load(vb.pp("language_model"), &llama_cfg).unwrap();
    let ids = |s: &[u32]| Tensor::new(s, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    let before = llama.embed(&ids(&raw[..at])).unwrap();
    let after = llama.embed(&ids(&raw[at + 1..])).unwrap();
    let embeds = Tensor::cat(&[&before, &features, &after], 1).unwrap();

    let batch = llava.batch(&[encoded], PadSide::Right).unwrap();
    let latents = llava.embed(&batch).unwrap();
    let latent_diff = max_abs_diff(&latents.embeds, &embeds);
    eprintln!("input latents max abs diff {latent_diff:.3e}");
    assert!(latent_diff < TOL);

    let ours = llava
        .forward(&latents, &mut Hooks::new(), &Adapters::new(), &Readout::All)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let theirs = reference_all_logits(&llama, &llama_cfg, &embeds);
    let diff = max_abs_diff(&ours, &theirs);
    let scale = theirs
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    eprintln!(
        "logits (all {} positions, |logit| up to {scale:.2}) max abs diff {diff:.3e}",
        theirs.dim(0).unwrap()
    );
    assert!(
        scale > 1.0,
        "the fixture should give O(1) logits, got {scale}"
    );
    assert!(diff < TOL, "logits differ by {diff}");
}

#[test]
fn tied_embeddings_match_the_reference_and_text_only_prompts_work() {
    let dir = tempfile::tempdir().unwrap();
    copy_tiny(dir.path());
    // Tie: drop lm_head from the weights and say so in config.json.
    let mut tensors =
        candle_core::safetensors::load(tiny().join("model.safetensors"), &Device::Cpu).unwrap();
    tensors.remove("language_model.lm_head.weight").unwrap();
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tiny().join("config.json")).unwrap())
            .unwrap();
    config["text_config"]["tie_word_embeddings"] = true.into();
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();

    let llava = mkedsl::model::Llava::load(dir.path(), &Default::default()).unwrap();
    let cfg = llava.config().clone();
    assert!(cfg.tied_embeddings());
    let encoded = llava
        .encode("what is the capital of france ?", &[])
        .unwrap();
    let batch = llava
        .batch(std::slice::from_ref(&encoded), PadSide::Right)
        .unwrap();
    let latents = llava.embed(&batch).unwrap();
    let ours = llava
        .forward(
            &latents,
            &mut Hooks::new(),
            &Adapters::new(),
            &Readout::Last,
        )
        .unwrap();

    let llama_cfg = llama_config(&cfg);
    let llama = Llama::load(reference_vb(dir.path()).pp("language_model"), &llama_cfg).unwrap();
    let mut cache = Cache::new(false, DType::F32, &llama_cfg, &Device::Cpu).unwrap();
    let ids = Tensor::new(encoded.input_ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let theirs = llama.forward(&ids, 0, &mut cache).unwrap();
    let diff = max_abs_diff(&ours, &theirs);
    eprintln!("tied-embedding text-only last logits max abs diff {diff:.3e}");
    assert!(diff < TOL);
}
