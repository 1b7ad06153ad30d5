//! `mkedsl infer`: one prompt (and image) through a checkpoint, greedy answer.

use std::path::PathBuf;

use candle_core::DType;
use serde::Serialize;

use crate::model::adapters::Adapters;
use crate::model::device::DeviceKind;
use crate::model::error::Result;
use crate::model::generate::GenerateOptions;
use crate::model::hooks::Hooks;
use crate::model::llava::LoadOptions;
use crate::model::preprocess::load_image;
use crate::model::vlm::{Llava, VisionLanguageModel};

/// What to run.
#[derive(Debug, Clone)]
pub struct InferRequest {
    pub model: PathBuf,
    pub image: Option<PathBuf>,
    pub prompt: String,
    pub max_new_tokens: usize,
    pub device: DeviceKind,
    /// Precision of the frozen weights (`--dtype`).
    pub dtype: crate::model::Precision,
    /// LoRAs to apply (`--adapter`: a PEFT adapter read by [`crate::export::read_adapter`]).
    pub loras: Vec<(crate::model::site::LinearSite, crate::model::Lora)>,
}

/// What came out (the `--json` output).
#[derive(Debug, Clone, Serialize)]
pub struct InferOutput {
    /// The prompt as given to the tokenizer (with `--question`, the formatted question).
    pub prompt: String,
    /// Prompt token ids after `<image>` expansion.
    pub input_ids: Vec<u32>,
    /// Every vocabulary logit at the final prompt position, before decoding.
    pub next_token_logits: Vec<f32>,
    /// Greedy continuation ids (stop token excluded).
    pub generated_ids: Vec<u32>,
    /// Whether generation ended on the end-of-sequence token.
    pub stopped_at_eos: bool,
    /// The decoded continuation.
    pub answer: String,
}

/// Loads the checkpoint and answers the prompt.
pub fn infer(req: &InferRequest) -> Result<InferOutput> {
    let llava = Llava::load(&req.model, &LoadOptions::on(req.device, req.dtype)?)?;
    let images = match &req.image {
        Some(path) => vec![load_image(path)?],
        None => vec![],
    };
    let encoded = llava.encode(&req.prompt, &images)?;
    let mut adapters = Adapters::new();
    for (site, lora) in &req.loras {
        let on = |t: &candle_core::Tensor| t.to_device(llava.device())?.to_dtype(llava.dtype());
        adapters.lora(
            *site,
            crate::model::Lora {
                a: on(&lora.a)?,
                b: on(&lora.b)?,
                scaling: lora.scaling,
            },
        );
    }
    let opts = GenerateOptions::new(
        req.max_new_tokens,
        llava.eos_token_id().into_iter().collect(),
    );
    let generated = llava.generate(
        std::slice::from_ref(&encoded),
        &mut Hooks::new(),
        &adapters,
        &opts,
    )?;
    let next_token_logits = generated
        .prompt_logits
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    if next_token_logits.iter().any(|v| !v.is_finite()) {
        return Err(crate::model::ModelError::NonFiniteOutput {
            what: "next-token logits".into(),
        });
    }
    let generated_ids = generated.tokens.into_iter().next().unwrap_or_default();
    let answer = llava.decode(&generated_ids)?;
    Ok(InferOutput {
        prompt: req.prompt.clone(),
        input_ids: encoded.input_ids,
        next_token_logits,
        generated_ids,
        stopped_at_eos: generated.stopped.first().copied().unwrap_or(false),
        answer,
    })
}
