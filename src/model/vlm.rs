//! The model-family interface the executor and trainer program against.
//!
//! Recipes name sites, not modules; a family (LLaVA today; Qwen2-VL, BLIP-2 OPT, text-only Llama
//! later) implements this trait and maps the sites onto its own layers. Everything a method
//! does goes through these calls: encode → batch → embed → (perturb latents) → forward with
//! hooks and adapters → logits, and generate for evaluation.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use image::DynamicImage;

use crate::model::adapters::Adapters;
use crate::model::batch::{Batch, Encoded, Latents, PadSide};
use crate::model::config::{LlavaConfig, ModelDims};
use crate::model::error::Result;
use crate::model::features::FeatureCache;
use crate::model::generate::{GenerateOptions, Generated};
use crate::model::hooks::Hooks;
use crate::model::llava::{LlavaModel, LoadOptions, Readout};
use crate::model::processor::LlavaProcessor;
use crate::model::site::LinearSite;

/// A vision-language model with hookable, adaptable decoding.
pub trait VisionLanguageModel {
    /// Dimensions recipes are checked against.
    fn dims(&self) -> ModelDims;
    fn device(&self) -> &Device;
    fn dtype(&self) -> DType;
    /// Tokenises a prompt (verbatim, BOS per the tokenizer) and preprocesses its images.
    fn encode(&self, prompt: &str, images: &[DynamicImage]) -> Result<Encoded>;
    /// Token ids of a continuation (an answer to score): no special tokens.
    fn tokenize(&self, text: &str) -> Result<Vec<u32>>;
    /// Text of generated ids, special tokens skipped.
    fn decode(&self, ids: &[u32]) -> Result<String>;
    /// The stop token of generation.
    fn eos_token_id(&self) -> Option<u32>;
    /// The id words outside the vocabulary become, if the tokenizer has one.
    fn unk_token_id(&self) -> Option<u32> {
        None
    }
    /// Pads encoded prompts into a batch on the model's device.
    fn batch(&self, prompts: &[Encoded], side: PadSide) -> Result<Batch>;
    /// Input latents `(B, T, hidden)`: text embeddings and projected image features.
    fn embed(&self, batch: &Batch) -> Result<Latents>;
    /// [`Self::embed`], taking the features of images seen before from `features` (a family
    /// whose image features cannot be cached computes them: the default).
    fn embed_cached(&self, batch: &Batch, features: &mut FeatureCache) -> Result<Latents> {
        let _ = features;
        self.embed(batch)
    }
    /// Logits (or hidden states) of latents, with hooks and adapters.
    fn forward(
        &self,
        latents: &Latents,
        hooks: &mut Hooks,
        adapters: &Adapters,
        readout: &Readout,
    ) -> Result<Tensor>;
    /// Greedy generation with a KV cache.
    fn generate(
        &self,
        prompts: &[Encoded],
        hooks: &mut Hooks,
        adapters: &Adapters,
        opts: &GenerateOptions,
    ) -> Result<Generated>;
    /// [`Self::generate`] with image features from `features` (see [`Self::embed_cached`]).
    fn generate_cached(
        &self,
        prompts: &[Encoded],
        features: &mut FeatureCache,
        hooks: &mut Hooks,
        adapters: &Adapters,
        opts: &GenerateOptions,
    ) -> Result<Generated> {
        let _ = features;
        self.generate(prompts, hooks, adapters, opts)
    }
    /// The current weight of a decoder linear.
    fn linear_weight(&self, site: LinearSite) -> Result<Tensor>;
    /// Replaces a decoder linear's weight, returning the previous one (to restore later).
    fn replace_linear_weight(&mut self, site: LinearSite, weight: Tensor) -> Result<Tensor>;
}

/// A LLaVA checkpoint: weights plus processor.
#[derive(Debug, Clone)]
pub struct Llava {
    pub model: LlavaModel,
    pub processor: LlavaProcessor,
}

impl Llava {
    /// Loads a checkpoint folder in Hugging Face's layout.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        let model = LlavaModel::load(dir, opts)?;
        let processor = LlavaProcessor::load(dir, model.config())?;
        Ok(Self { model, processor })
    }

    pub fn config(&self) -> &LlavaConfig {
        self.model.config()
    }

    /// Saves weights, config, tokenizer and preprocessor config into `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.model.save(dir)?;
        self.processor.save(dir)?;
        crate::model::hf_files::write_processor_files(dir, self.model.config())
    }
}

impl VisionLanguageModel for Llava {
    fn dims(&self) -> ModelDims {
        self.model.dims()
    }

    fn device(&self) -> &Device {
        self.model.device()
    }

    fn dtype(&self) -> DType {
        self.model.dtype()
    }

    fn encode(&self, prompt: &str, images: &[DynamicImage]) -> Result<Encoded> {
        self.processor.encode(prompt, images)
    }

    fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        self.processor.tokenize(text, false)
    }

    fn decode(&self, ids: &[u32]) -> Result<String> {
        self.processor.decode(ids)
    }

    fn eos_token_id(&self) -> Option<u32> {
        self.processor.eos_token_id()
    }

    fn unk_token_id(&self) -> Option<u32> {
        self.processor.unk_token_id()
    }

    fn batch(&self, prompts: &[Encoded], side: PadSide) -> Result<Batch> {
        self.model.batch(prompts, side)
    }

    fn embed(&self, batch: &Batch) -> Result<Latents> {
        self.model.embed(batch)
    }

    fn forward(
        &self,
        latents: &Latents,
        hooks: &mut Hooks,
        adapters: &Adapters,
        readout: &Readout,
    ) -> Result<Tensor> {
        self.model.forward(latents, hooks, adapters, readout)
    }

    fn generate(
        &self,
        prompts: &[Encoded],
        hooks: &mut Hooks,
        adapters: &Adapters,
        opts: &GenerateOptions,
    ) -> Result<Generated> {
        self.model.generate(prompts, hooks, adapters, opts)
    }

    fn embed_cached(&self, batch: &Batch, features: &mut FeatureCache) -> Result<Latents> {
        self.model.embed_cached(batch, features)
    }

    fn generate_cached(
        &self,
        prompts: &[Encoded],
        features: &mut FeatureCache,
        hooks: &mut Hooks,
        adapters: &Adapters,
        opts: &GenerateOptions,
    ) -> Result<Generated> {
        let batch = self.model.batch(prompts, PadSide::Left)?;
        let latents = self.model.embed_cached(&batch, features)?;
        self.model.generate_latents(latents, hooks, adapters, opts)
    }

    fn linear_weight(&self, site: LinearSite) -> Result<Tensor> {
        self.model.linear_weight(site)
    }

    fn replace_linear_weight(&mut self, site: LinearSite, weight: Tensor) -> Result<Tensor> {
        self.model.replace_linear_weight(site, weight)
    }
}
