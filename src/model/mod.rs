//! The model runtime: checkpoints in Hugging Face layout, a hookable decoder, adapters, generation.

pub mod config;
