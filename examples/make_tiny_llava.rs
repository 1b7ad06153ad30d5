//! Writes the tiny random LLaVA checkpoint the runtime tests use (tests/fixtures/tiny-llava).
//!
//! ```text
//! cargo run --example make_tiny_llava -- [OUT_DIR]
//! ```
//!
//! Same seed, same bytes. The weights are scaled so activations and logits are O(1) (a
//! Hugging Face init with std 0.02 would give logits near zero and make parity tests vacuous);
//! norm scales and biases are perturbed away from 1 and 0 so a forgotten bias or a swapped
//! norm weight shows up. The config exercises grouped-query attention (4 query heads, 2 KV
//! heads), untied embeddings, the `default` feature strategy at layer -2 of a 3-layer tower,
//! and 16 image tokens per `<image>`.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use mkedsl::model::config::{LlavaConfig, TextConfig, VisionConfig};
use mkedsl::model::init::normal_samples;
use mkedsl::model::preprocess::ImageProcessor;
use mkedsl::model::tensors::{expected_tensors, Role};
use mkedsl::model::{Llava, LlavaModel, LlavaProcessor};
use rand::SeedableRng;
use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

const SEED: u64 = 20_240_603;

/// Words of the tiny world; ids 3.. in this order. `<unk>`=0, `<s>`=1, `</s>`=2, `<pad>`=62, `<image>`=63.
const WORDS: [&str; 59] = [
    "user",
    "assistant",
    ":",
    "?",
    ".",
    ",",
    "what",
    "color",
    "is",
    "the",
    "shape",
    "how",
    "many",
    "are",
    "there",
    "a",
    "an",
    "of",
    "in",
    "on",
    "left",
    "right",
    "top",
    "bottom",
    "red",
    "green",
    "blue",
    "yellow",
    "purple",
    "orange",
    "white",
    "black",
    "circle",
    "square",
    "triangle",
    "star",
    "shapes",
    "one",
    "two",
    "three",
    "four",
    "five",
    "big",
    "small",
    "describe",
    "picture",
    "image",
    "this",
    "it",
    "yes",
    "no",
    "and",
    "which",
    "side",
    "capital",
    "france",
    "paris",
    "city",
    "answer",
];

fn config() -> LlavaConfig {
    LlavaConfig {
        image_token_index: 63,
        pad_token_id: Some(62),
        text_config: TextConfig {
            vocab_size: 64,
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            num_key_value_heads: Some(2),
            max_position_embeddings: 256,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            bos_token_id: Some(1),
            eos_token_id: Some(2),
            ..TextConfig::default()
        },
        vision_config: VisionConfig {
            hidden_size: 24,
            intermediate_size: 48,
            projection_dim: 16,
            num_hidden_layers: 3,
            num_attention_heads: 2,
            image_size: 28,
            patch_size: 7,
            ..VisionConfig::default()
        },
        ..LlavaConfig::default()
    }
}

fn tokenizer(scratch: &std::path::Path) -> Tokenizer {
    let mut vocab = serde_json::Map::new();
    for (id, tok) in ["<unk>", "<s>", "</s>"].iter().enumerate() {
        vocab.insert(tok.to_string(), id.into());
    }
    for (i, w) in WORDS.iter().enumerate() {
        vocab.insert(w.to_string(), (i + 3).into());
    }
    vocab.insert("<pad>".into(), 62.into());
    vocab.insert("<image>".into(), 63.into());
    let vocab_file = scratch.join("vocab.json");
    std::fs::write(&vocab_file, serde_json::Value::Object(vocab).to_string()).expect("write vocab");
    let model = WordLevel::from_file(vocab_file.to_str().expect("utf-8 path"), "<unk>".into())
        .expect("word level");
    let mut tok = Tokenizer::new(model);
    tok.with_normalizer(Some(tokenizers::normalizers::utils::Lowercase))
        .expect("normalizer");
    tok.with_pre_tokenizer(Some(Whitespace {}));
    let post = TemplateProcessing::builder()
        .try_single("<s> $A")
        .expect("template")
        .try_pair("<s> $A <s> $B")
        .expect("template")
        .special_tokens(vec![("<s>", 1)])
        .build()
        .expect("post-processor");
    tok.with_post_processor(Some(post));
    let specials: Vec<AddedToken> = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    tok.add_special_tokens(specials).expect("special tokens");
    tok
}

fn weights(cfg: &LlavaConfig) -> HashMap<String, Tensor> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(SEED);
    let mut out = HashMap::new();
    for spec in expected_tensors(cfg) {
        let n: usize = spec.shape.iter().product();
        let fan_in: usize = spec.shape.iter().skip(1).product::<usize>().max(1);
        let values: Vec<f32> = match spec.role {
            Role::NormScale => normal_samples(&mut rng, n, 0.1)
                .into_iter()
                .map(|v| (1.0 + v) as f32)
                .collect(),
            Role::Bias => normal_samples(&mut rng, n, 0.1)
                .into_iter()
                .map(|v| v as f32)
                .collect(),
            Role::Weight => {
                let std = if spec.name.ends_with("embed_tokens.weight")
                    || spec.name.ends_with("class_embedding")
                {
                    1.0
                } else if spec.name.ends_with("position_embedding.weight") {
                    0.5
                } else {
                    1.0 / (fan_in as f64).sqrt()
                };
                normal_samples(&mut rng, n, std)
                    .into_iter()
                    .map(|v| v as f32)
                    .collect()
            }
        };
        let t = Tensor::from_vec(values, spec.shape.as_slice(), &Device::Cpu).expect("tensor");
        out.insert(spec.name, t);
    }
    out
}

fn main() {
    let out = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/tiny-llava"
            ))
        });
    std::fs::create_dir_all(&out).expect("create output folder");
    let scratch = tempfile::tempdir().expect("temp dir");
    let cfg = config();
    let vb = VarBuilder::from_tensors(weights(&cfg), DType::F32, &Device::Cpu);
    let model = LlavaModel::from_var_builder(cfg.clone(), vb).expect("model");
    let processor = LlavaProcessor::new(
        tokenizer(scratch.path()),
        "tokenizer.json",
        ImageProcessor::clip(28),
        &cfg,
    )
    .expect("processor");
    Llava { model, processor }.save(&out).expect("save");
    println!("wrote {}", out.display());
}
