//! `mkedsl infer`: run a checkpoint on one prompt (and image) and print the greedy answer.

use std::path::PathBuf;

use clap::Args;

use crate::eval::resolve_template;
use crate::model::device::DeviceKind;
use crate::model::infer::{infer, InferRequest};
use crate::model::Precision;

#[derive(Debug, Args)]
pub struct InferArgs {
    /// Checkpoint folder in Hugging Face layout (config.json, model.safetensors, tokenizer.json, preprocessor_config.json).
    /// `ORG/NAME[@REVISION]` names a snapshot in the Hugging Face cache (offline).
    #[arg(long, value_parser = crate::model::hub::model_arg)]
    pub model: PathBuf,
    /// Image file for the prompt's `<image>`.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors, e.g. from
    /// `run --out DIR --format peft`) applied to the model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// The prompt, used verbatim (write `<image>` where the image goes).
    #[arg(
        long,
        required_unless_present = "question",
        conflicts_with = "question"
    )]
    pub prompt: Option<String>,
    /// A question, formatted with the model's prompt template exactly as the evaluator formats it
    /// (the template's `<image>` is dropped when no --image is given).
    #[arg(long)]
    pub question: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    /// Print a JSON object (prompt, input_ids, next_token_logits, generated_ids, answer) instead of the answer.
    #[arg(long)]
    pub json: bool,
    /// Device to run on: cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceKind,
    /// Precision of the frozen weights: f32, bf16 or f16 (half the memory). Trained tensors,
    /// optimiser state, logits and linear algebra stay f32.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Precision,
}

pub fn run(args: InferArgs) -> miette::Result<()> {
    if args.max_new_tokens == 0 {
        return Err(miette::miette!(
            help = "give it a value of at least 1 (as `run` and `eval` require)",
            "--max-new-tokens must be positive"
        ));
    }
    let prompt = match (args.prompt, args.question) {
        (Some(prompt), _) => prompt,
        (None, Some(question)) => resolve_template(&args.model)?
            .template
            .prompt(&question, args.image.is_some()),
        (None, None) => return Err(miette::miette!("pass --prompt or --question")),
    };
    let output = infer(&InferRequest {
        model: args.model,
        image: args.image,
        prompt,
        max_new_tokens: args.max_new_tokens,
        device: args.device,
        dtype: args.dtype,
        loras: match &args.adapter {
            Some(dir) => crate::export::read_adapter(
                dir,
                &candle_core::Device::Cpu,
                candle_core::DType::F32,
            )?,
            None => Vec::new(),
        },
    })?;
    if args.json {
        let text = serde_json::to_string(&output)
            .map_err(|e| miette::miette!("cannot print JSON: {e}"))?;
        println!("{text}");
    } else {
        println!("{}", output.answer);
    }
    Ok(())
}
