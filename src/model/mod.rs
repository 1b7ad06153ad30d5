//! The model runtime: checkpoints in Hugging Face layout, a hookable decoder, adapters, generation.
//!
//! ```text
//! Llava::load(dir)                         config.json + weights (every tensor checked first)
//!   .encode(prompt, images) -> Encoded     tokenise verbatim, expand <image>, preprocess pixels
//!   .batch(&[Encoded], side) -> Batch      pad, move to the device
//!   .embed(&batch) -> Latents              text embeddings + projected image features
//!   .forward(&latents, hooks, adapters, readout) -> logits
//!   .generate(&[Encoded], hooks, adapters, opts) -> Generated
//! ```
//!
//! Sites ([`site::Site`]) name tensors inside the decoder; [`hooks::Hooks`] capture, replace or
//! add there for one call; [`adapters::Adapters`] hold persistent changes (LoRA, weight deltas,
//! extra FFN neurons, shifts). Base weights are frozen constants unless the model was built from
//! a `VarMap` ([`LlavaModel::fresh`]), and back-propagation reaches adapters and input latents
//! without storing gradients for frozen weights.

pub mod adapters;
mod atomic;
pub mod batch;
pub mod checkpoint;
pub mod clip;
pub mod config;
pub mod device;
pub mod error;
pub mod features;
pub mod flops;
pub mod generate;
pub mod hf_files;
pub mod hooks;
pub mod hub;
pub mod infer;
pub mod init;
pub mod llama;
pub mod llava;
pub mod memory;
pub mod nn;
mod pass;
pub mod precision;
pub mod preprocess;
pub mod processor;
pub mod projector;
pub mod save;
pub mod site;
pub mod tensors;
pub mod vlm;

pub use adapters::{Adapters, ExtraNeurons, Lora, NeuronRegulation, Shift};
pub use batch::{Batch, Encoded, Latents, PadSide, TokenKind, TokenLayout};
pub use config::{LlavaConfig, ModelDims};
pub use device::DeviceKind;
pub use error::ModelError;
pub use features::FeatureCache;
pub use generate::{GenerateOptions, Generated};
pub use hooks::{Hook, Hooks, SiteView};
pub use init::FreshInit;
pub use llama::KvCache;
pub use llava::{LlavaModel, LoadOptions, Readout, Residual};
pub use memory::{LatentMemory, MemoryGate};
pub use nn::activation::Activation;
pub use precision::Precision;
pub use processor::LlavaProcessor;
pub use site::{LayerPoint, LinearSite, Proj, ResidualPoint, Site};
pub use vlm::{Llava, VisionLanguageModel};
