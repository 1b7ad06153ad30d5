//! Greedy generation with a KV cache, batched over left-padded prompts.
//!
//! Hooks and adapters act during generation exactly as in a forward pass (an edited model
//! generates as edited); the prompt pass and every decoding step each count as one call for
//! captures.

use candle_core::Tensor;

use crate::model::adapters::Adapters;
use crate::model::batch::{Encoded, Latents, PadSide};
use crate::model::error::Result;
use crate::model::hooks::Hooks;
use crate::model::llama::KvCache;
use crate::model::llava::{LlavaModel, Readout};

/// When to stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// Generation of a row stops after any of these ids (typically EOS); it is not returned.
    pub stop_tokens: Vec<u32>,
    /// Most new tokens of each row when shorter than `max_new_tokens` (evaluation: the answer's
    /// length plus one); empty means `max_new_tokens` for every row. Decoding ends when every
    /// row has stopped or reached its limit.
    pub row_limits: Vec<usize>,
}

impl GenerateOptions {
    /// At most `max_new_tokens` per row, stopping at any of `stop_tokens`.
    pub fn new(max_new_tokens: usize, stop_tokens: Vec<u32>) -> Self {
        Self {
            max_new_tokens,
            stop_tokens,
            row_limits: Vec::new(),
        }
    }
}

/// What greedy generation produced.
#[derive(Debug, Clone)]
pub struct Generated {
    /// New tokens per prompt, stop token excluded.
    pub tokens: Vec<Vec<u32>>,
    /// Whether each row ended on a stop token (rather than on `max_new_tokens`).
    pub stopped: Vec<bool>,
    /// Logits at each prompt's last position, before any decoding, `(B, vocab)`.
    pub prompt_logits: Tensor,
}

/// Index of the largest value, the first on ties (like `torch.argmax`): the token greedy
/// decoding picks (evaluation reads greedy tokens off teacher-forced logits with it too).
pub fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best as u32
}

impl LlavaModel {
    /// Greedy decoding of every prompt until a stop token or `max_new_tokens`.
    pub fn generate(
        &self,
        prompts: &[Encoded],
        hooks: &mut Hooks,
        adapters: &Adapters,
        opts: &GenerateOptions,
    ) -> Result<Generated> {
        let batch = self.batch(prompts, PadSide::Left)?;
        let latents = self.embed(&batch)?;
        self.generate_latents(latents, hooks, adapters, opts)
    }

    /// [`Self::generate`] from the input latents of a left-padded batch (image features taken
    /// from a [`crate::model::FeatureCache`], say).
    pub fn generate_latents(
        &self,
        latents: Latents,
        hooks: &mut Hooks,
        adapters: &Adapters,
        opts: &GenerateOptions,
    ) -> Result<Generated> {
        let mut cache = KvCache::new();
        let prompt_logits =
            self.forward_cached(&latents, &mut cache, hooks, adapters, &Readout::Last)?;
        let rows = latents.layout.batch();
        let mut tokens = vec![Vec::new(); rows];
        let mut stopped = vec![false; rows];
        let mut layout = latents.layout;
        let mut logits = prompt_logits
            .to_dtype(candle_core::DType::F32)?
            .to_vec2::<f32>()?;
        // Generation ends at the context's end like at `max_new_tokens`: the first new token
        // comes from the prompt pass, each later one takes a position of the context.
        let room = self
            .config()
            .text_config
            .max_position_embeddings
            .saturating_sub(cache.len());
        let max_new_tokens = opts.max_new_tokens.min(room + 1);
        let limit: Vec<usize> = (0..rows)
            .map(|r| {
                opts.row_limits
                    .get(r)
                    .map_or(max_new_tokens, |&l| l.min(max_new_tokens))
            })
            .collect();
        for step in 0..max_new_tokens {
            let next: Vec<u32> = logits.iter().map(|row| argmax(row)).collect();
            for (row, &id) in next.iter().enumerate() {
                if stopped[row] || tokens[row].len() >= limit[row] {
                    continue;
                }
                if opts.stop_tokens.contains(&id) {
                    stopped[row] = true;
                } else {
                    tokens[row].push(id);
                }
            }
            let all_done = (0..rows).all(|r| stopped[r] || tokens[r].len() >= limit[r]);
            if all_done || step + 1 == max_new_tokens {
                break;
            }
            layout = layout.continuation(1);
            let ids = Tensor::from_vec(next, (rows, 1), self.device())?;
            let step_latents = Latents {
                embeds: self.embed_tokens(&ids)?,
                layout: layout.clone(),
            };
            let out =
                self.forward_cached(&step_latents, &mut cache, hooks, adapters, &Readout::Last)?;
            logits = out.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
        }
        Ok(Generated {
            tokens,
            stopped,
            prompt_logits,
        })
    }
}
