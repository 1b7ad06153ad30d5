//! A LLaVA-1.5-architecture model: CLIP vision tower → projector → Llama decoder.

use std::path::Path;

use candle_core::{DType, Device, Tensor, TensorId};
use candle_nn::VarBuilder;

use crate::model::adapters::Adapters;
use crate::model::batch::{gather_rows, Batch, Encoded, Latents, PadSide, TokenLayout};
use crate::model::checkpoint;
use crate::model::clip::ClipVision;
use crate::model::config::{FeatureSelect, LlavaConfig, ModelDims};
use crate::model::device::DeviceKind;
use crate::model::error::{ModelError, Result};
use crate::model::features::FeatureCache;
use crate::model::hooks::Hooks;
use crate::model::llama::{KvCache, LlamaDecoder};
use crate::model::pass::{Pass, Stop, StopAt};
use crate::model::precision::{widen, Precision};
use crate::model::projector::Projector;
use crate::model::site::{LayerPoint, LinearSite, ResidualPoint, Site};

/// Where a checkpoint's tensors go and in which precision.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    /// Every weight is converted to this dtype once, at load: F32 by default, BF16/F16 to halve
    /// the weights' memory (`--dtype`), F64 for gradient checks.
    pub dtype: DType,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: Device::Cpu,
            dtype: DType::F32,
        }
    }
}

impl LoadOptions {
    /// Weights in the precision and on the device a command line named; opening the device
    /// fails where there is no GPU.
    pub fn on(kind: DeviceKind, precision: Precision) -> Result<Self> {
        Ok(Self {
            device: kind.open()?,
            dtype: precision.dtype(),
        })
    }
}

/// Which outputs a forward pass returns (skipping the vocabulary matmul where it is not needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readout {
    /// Logits at every position, `(B, T, vocab)`.
    All,
    /// Logits at each row's last real token, `(B, vocab)`.
    Last,
    /// Logits at the given `(row, column)` positions, `(N, vocab)`.
    Positions(Vec<(usize, usize)>),
    /// The final-norm hidden states, `(B, T, hidden)`, and no logits.
    Hidden,
}

/// The residual stream of some rows at a [`ResidualPoint`], detached: a pass starts from it
/// with [`LlavaModel::forward_from`] instead of recomputing what lies before the point.
#[derive(Debug, Clone)]
pub struct Residual {
    pub point: ResidualPoint,
    /// `(B, T, hidden)` at the point.
    pub stream: Tensor,
    /// Past a layer's attention: the stream entering that layer (the block input its
    /// feed-forward hooks see).
    pub block_input: Option<Tensor>,
}

impl Residual {
    /// The stream as the input of a pass over tokens of `layout`.
    fn latents(&self, layout: &TokenLayout) -> Latents {
        Latents {
            embeds: self.stream.clone(),
            layout: layout.clone(),
        }
    }
}

/// The weights of a LLaVA model. Tokenisation and image preprocessing live in
/// [`crate::model::processor::LlavaProcessor`]; [`crate::model::Llava`] bundles both.
#[derive(Debug, Clone)]
pub struct LlavaModel {
    config: LlavaConfig,
    vision: ClipVision,
    projector: Projector,
    decoder: LlamaDecoder,
    device: Device,
    dtype: DType,
}

impl LlavaModel {
    /// Loads `config.json` and the weights of a checkpoint folder, after checking every tensor.
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Self> {
        if !dir.is_dir() {
            return Err(ModelError::MissingFile {
                path: dir.display().to_string(),
                what: "checkpoint folder",
                help: "pass a folder holding config.json, model.safetensors (or shards), tokenizer.json and preprocessor_config.json".into(),
            });
        }
        let config = LlavaConfig::from_path(dir)?;
        let files = checkpoint::weight_files(dir)?;
        checkpoint::check_tensors(&config, &files)?;
        let vb = checkpoint::var_builder(&files, opts.dtype, &opts.device)?;
        let model = Self::from_var_builder(config, vb)?;
        model.check_finite(dir)?;
        Ok(model)
    }

    /// Refuses weights holding NaN or ±∞, naming the first such tensor: they would load
    /// silently and turn every output into NaN, which a comparison of outputs would then score
    /// as agreement. One pass over the weights (`x · 0` is 0 for every finite `x`, NaN
    /// otherwise), a fraction of the cost of loading them.
    pub fn check_finite(&self, dir: &Path) -> Result<()> {
        for (name, t) in self.named_tensors() {
            let probe = t
                .affine(0.0, 0.0)?
                .sum_all()?
                .to_dtype(DType::F64)?
                .to_scalar::<f64>()?;
            if !probe.is_finite() {
                return Err(ModelError::NonFinite {
                    path: dir.display().to_string(),
                    tensor: name,
                });
            }
        }
        Ok(())
    }

    /// Builds the model from any var builder: checkpoint files, or a `VarMap` for training (every
    /// tensor then is a `Var` and takes part in autograd).
    pub fn from_var_builder(config: LlavaConfig, vb: VarBuilder) -> Result<Self> {
        let (device, dtype) = (vb.device().clone(), vb.dtype());
        let vision = ClipVision::load(vb.pp("vision_tower.vision_model"), &config.vision_config)?;
        let projector = Projector::load(vb.pp("multi_modal_projector"), &config)?;
        let decoder = LlamaDecoder::load(
            vb.pp("language_model"),
            &config.text_config,
            config.tied_embeddings(),
        )?;
        Ok(Self {
            config,
            vision,
            projector,
            decoder,
            device,
            dtype,
        })
    }

    pub fn config(&self) -> &LlavaConfig {
        &self.config
    }

    pub fn dims(&self) -> ModelDims {
        self.config.dims()
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The id padding positions hold (masked, so only its being in the vocabulary matters).
    pub fn pad_id(&self) -> u32 {
        self.config
            .pad_token_id
            .filter(|&p| (p as usize) < self.config.text_config.vocab_size)
            .unwrap_or(0)
    }

    /// Pads encoded prompts into a batch on this model's device.
    pub fn batch(&self, prompts: &[Encoded], side: PadSide) -> Result<Batch> {
        let mut batch = Batch::new(prompts, side, self.pad_id(), &self.device)?;
        batch.pixel_values = batch
            .pixel_values
            .map(|p| p.to_dtype(self.dtype))
            .transpose()?;
        Ok(batch)
    }

    /// Every Hugging Face hidden state of the vision tower (`[0]` = embeddings, `[i]` = layer i).
    pub fn vision_hidden_states(&self, pixels: &Tensor) -> Result<Vec<Tensor>> {
        self.vision.hidden_states(pixels, self.vision.num_layers())
    }

    /// Projected image features `(N, image_tokens, hidden)`: the vision tower's
    /// `vision_feature_layer` hidden state, CLS dropped under the `default` strategy, projected.
    pub fn image_features(&self, pixels: &Tensor) -> Result<Tensor> {
        let v = &self.config.vision_config;
        let want = [v.num_channels, v.image_size, v.image_size];
        if pixels.rank() != 4 || pixels.dims()[1..] != want {
            return Err(ModelError::Preprocessor {
                path: crate::model::preprocess::PREPROCESSOR_FILE.into(),
                reason: format!(
                    "images are {:?} but the vision tower takes (N, {}, {}, {})",
                    pixels.dims(),
                    want[0],
                    want[1],
                    want[2]
                ),
            });
        }
        let layers = self.vision.num_layers() as i64;
        let index = match self.config.vision_feature_layer {
            k if k < 0 => layers + 1 + k,
            k => k,
        };
        let index = usize::try_from(index).unwrap_or(0);
        let states = self.vision.hidden_states(pixels, index)?;
        let selected = states
            .last()
            .ok_or_else(|| internal("the vision tower returned no hidden state"))?;
        let selected = match self.config.vision_feature_select_strategy {
            FeatureSelect::Default => {
                let tokens = selected.dim(1)?;
                selected.narrow(1, 1, tokens - 1)?
            }
            FeatureSelect::Full => selected.clone(),
        };
        self.projector.forward(&selected)
    }

    /// Input latents of a batch: token embeddings at text positions, projected image features at
    /// image-token positions (in order, like Hugging Face's `masked_scatter`).
    pub fn embed(&self, batch: &Batch) -> Result<Latents> {
        self.embed_with(batch, |pixels| self.image_features(pixels))
    }

    /// [`Self::embed`] with the image features of images seen before taken from `cache` (and
    /// those of new images added to it): the same latents, the vision tower run once per
    /// distinct image over the cache's life.
    pub fn embed_cached(&self, batch: &Batch, cache: &mut FeatureCache) -> Result<Latents> {
        self.embed_with(batch, |pixels| {
            cache.features(self.vision_weights(), pixels, |p| self.image_features(p))
        })
    }

    /// Ids of the tensors image features depend on (vision tower and projector).
    fn vision_weights(&self) -> Vec<TensorId> {
        let mut named = Vec::new();
        self.projector.tensors("multi_modal_projector", &mut named);
        self.vision.tensors("vision_tower.vision_model", &mut named);
        named.iter().map(|(_, t)| t.id()).collect()
    }

    fn embed_with(
        &self,
        batch: &Batch,
        features: impl FnOnce(&Tensor) -> Result<Tensor>,
    ) -> Result<Latents> {
        let text = self.decoder.embed(&batch.input_ids)?;
        let layout = batch.layout.clone();
        let visual = layout.visual_index();
        let embeds = match (&batch.pixel_values, visual.is_empty()) {
            (None, true) => text,
            (Some(pixels), false) => {
                let feats = features(pixels)?;
                let (n, tokens, d) = feats.dims3()?;
                if n * tokens != visual.len() {
                    return Err(ModelError::Prompt {
                        reason: format!(
                            "the batch has {} image-token positions but its {n} image(s) yield {} features",
                            visual.len(),
                            n * tokens
                        ),
                        help: format!("each `<image>` must expand to exactly {tokens} image tokens"),
                    });
                }
                scatter_rows(&text, &visual, &feats.reshape((n * tokens, d))?)?
            }
            (Some(_), true) => {
                return Err(ModelError::Prompt {
                    reason: "images were given but no prompt holds an image token".into(),
                    help: "put `<image>` in the prompt where the image belongs".into(),
                })
            }
            (None, false) => {
                return Err(ModelError::Prompt {
                    reason: "the prompt holds image tokens but no image was given".into(),
                    help: "pass an image for every `<image>` in the prompt".into(),
                })
            }
        };
        Ok(Latents { embeds, layout })
    }

    /// Runs the decoder on latents with hooks and adapters.
    pub fn forward(
        &self,
        latents: &Latents,
        hooks: &mut Hooks,
        adapters: &Adapters,
        readout: &Readout,
    ) -> Result<Tensor> {
        self.run(latents, hooks, adapters, readout, None, (None, None))
    }

    /// Runs the decoder only as far as the hooks' sites need, for a pass whose only product is
    /// what its hooks capture: up to the deepest hooked layer, and within it only up to the FFN
    /// activation when no hooked site there comes after it. ELoRA's knowledge space and the
    /// preserved-knowledge statistics read B's or a projection's input at the up and down
    /// projections: the deepest layer's down projection, a ninth of a two-layer pass, is skipped.
    pub fn capture(&self, latents: &Latents, hooks: &mut Hooks, adapters: &Adapters) -> Result<()> {
        let deepest = hooks
            .sites()
            .filter_map(|s| match s {
                Site::Layer(l, _) => Some(*l),
                Site::EmbedVision | Site::EmbedText => None,
            })
            .max()
            .unwrap_or(0);
        let early = hooks.sites().all(|s| match s {
            Site::Layer(l, point) => *l < deepest || point.before_down_proj(),
            Site::EmbedVision | Site::EmbedText => true,
        });
        let at = if early {
            StopAt::BeforeDownProj
        } else {
            StopAt::Output
        };
        let stop = Stop::new(deepest, at);
        self.run_until(latents, hooks, adapters, stop)?;
        Ok(())
    }

    /// Runs the decoder only up to layer `last` (inclusive) and returns the residual stream
    /// leaving it, `(B, T, hidden)`: later layers, the final norm and the logits are skipped.
    /// For statistics that hooks gather at or before `last` (a covariance at an early layer) at
    /// a fraction of a full pass's cost; the hooks see exactly what a full pass would show them.
    pub fn forward_through(
        &self,
        latents: &Latents,
        hooks: &mut Hooks,
        adapters: &Adapters,
        last: usize,
    ) -> Result<Tensor> {
        self.run_until(latents, hooks, adapters, Stop::new(last, StopAt::Output))
    }

    /// The residual stream leaving layer `layer` at `column` of every row, `(B, hidden)`: what
    /// a capture at `layer(l).output` read at one column gives (ASAM's alignment features at
    /// the last prompt token), at a fraction of that pass. A causal model's stream at a column
    /// depends on no later column, so only the first `column + 1` columns run; and the layer
    /// itself needs their keys and values but its queries, attention output and FFN only at
    /// `column`.
    pub fn output_at(
        &self,
        latents: &Latents,
        adapters: &Adapters,
        layer: usize,
        column: usize,
    ) -> Result<Tensor> {
        self.run_to_column(latents, None, adapters, layer, column)
    }

    /// [`Self::output_at`] from `residual` (what [`Self::residual`] returned for latents of
    /// `layout`), as [`Self::forward_from`] is to [`Self::forward`].
    pub fn output_at_from(
        &self,
        residual: &Residual,
        layout: &TokenLayout,
        adapters: &Adapters,
        layer: usize,
        column: usize,
    ) -> Result<Tensor> {
        self.run_to_column(
            &residual.latents(layout),
            Some(residual),
            adapters,
            layer,
            column,
        )
    }

    /// The pass of [`Self::output_at`] over the first `column + 1` columns of `latents` (of
    /// `from` too when given).
    fn run_to_column(
        &self,
        latents: &Latents,
        from: Option<&Residual>,
        adapters: &Adapters,
        layer: usize,
        column: usize,
    ) -> Result<Tensor> {
        let seq = latents.layout.seq();
        if column >= seq {
            return Err(ModelError::Prompt {
                reason: format!("column {column} is outside a sequence of {seq}"),
                help: "read a column of the sequence".into(),
            });
        }
        let keep = column + 1;
        let first = |t: &Tensor| t.narrow(1, 0, keep);
        let cut = Latents {
            embeds: first(&latents.embeds)?,
            layout: latents.layout.first_columns(keep),
        };
        let from = match from {
            Some(r) => Some(Residual {
                point: r.point,
                stream: first(&r.stream)?,
                block_input: r.block_input.as_ref().map(first).transpose()?,
            }),
            None => None,
        };
        let stop = Stop {
            from_column: column,
            ..Stop::new(layer, StopAt::Output)
        };
        let out = self.run(
            &cut,
            &mut Hooks::new(),
            adapters,
            &Readout::Hidden,
            None,
            (from.as_ref(), Some(stop)),
        )?;
        // `(B, 1, hidden)`, or every kept column where the layer could not be cut.
        let last = out.dim(1)? - 1;
        Ok(out.narrow(1, last, 1)?.squeeze(1)?)
    }

    /// The residual stream at `point` for `latents` (no hooks): what [`Self::forward_from`]
    /// starts from. A train step's frozen prefix computes it once per edit case for the rows
    /// its loss reads at every step. Past a layer's attention it also keeps the stream entering
    /// that layer, which the feed-forward half's hooks see as the block input.
    pub fn residual(
        &self,
        latents: &Latents,
        adapters: &Adapters,
        point: ResidualPoint,
    ) -> Result<Residual> {
        let mut hooks = Hooks::new();
        let (stop, input) = match point {
            ResidualPoint::EMBEDDINGS => {
                return Err(ModelError::Prompt {
                    reason: "a residual at the embeddings is the latents themselves".into(),
                    help: "start a prefix past layer 0's attention or at a later layer".into(),
                })
            }
            ResidualPoint {
                layer,
                past_attention: true,
            } => {
                let input = Site::Layer(layer, LayerPoint::Input);
                hooks.capture(input);
                let at = StopAt::AfterAttention;
                (Stop::new(layer, at), Some(input))
            }
            ResidualPoint { layer, .. } => (Stop::new(layer - 1, StopAt::Output), None),
        };
        let stream = self
            .run_until(latents, &mut hooks, adapters, stop)?
            .detach();
        let block_input = match input {
            Some(site) => Some(
                (hooks.captured(&site).first())
                    .map(|t| t.detach())
                    .ok_or_else(|| ModelError::Site {
                        site: site.to_string(),
                        reason: "the pass did not reach the layer's input".into(),
                    })?,
            ),
            None => None,
        };
        Ok(Residual {
            point,
            stream,
            block_input,
        })
    }

    /// An uncached pass from the embeddings that ends at `stop`, returning what it ends with.
    fn run_until(
        &self,
        latents: &Latents,
        hooks: &mut Hooks,
        adapters: &Adapters,
        stop: Stop,
    ) -> Result<Tensor> {
        let readout = Readout::Hidden;
        self.run(latents, hooks, adapters, &readout, None, (None, Some(stop)))
    }

    /// Runs the decoder from `residual` (what [`Self::residual`] returned for latents of
    /// `layout`): the layers, and the attention half, it already covers are not run. A hook
    /// there is refused, and adapters there act only through the residual (which must have been
    /// computed with them). For training that changes only what comes after the point, whose
    /// input is the same at every step (the plan's frozen prefix): the same result as a full
    /// pass, at the cost of the rest.
    pub fn forward_from(
        &self,
        residual: &Residual,
        layout: &TokenLayout,
        hooks: &mut Hooks,
        adapters: &Adapters,
        readout: &Readout,
    ) -> Result<Tensor> {
        self.run(
            &residual.latents(layout),
            hooks,
            adapters,
            readout,
            None,
            (Some(residual), None),
        )
    }

    /// Like [`Self::forward`], continuing from (and extending) a KV cache: the latents are the
    /// new tokens only, laid out as `TokenLayout::continuation` of the previous call.
    pub fn forward_cached(
        &self,
        latents: &Latents,
        cache: &mut KvCache,
        hooks: &mut Hooks,
        adapters: &Adapters,
        readout: &Readout,
    ) -> Result<Tensor> {
        self.run(latents, hooks, adapters, readout, Some(cache), (None, None))
    }

    fn run(
        &self,
        latents: &Latents,
        hooks: &mut Hooks,
        adapters: &Adapters,
        readout: &Readout,
        cache: Option<&mut KvCache>,
        (from, stop): (Option<&Residual>, Option<Stop>),
    ) -> Result<Tensor> {
        let (start, block_input) = match from {
            Some(r) => (r.point, r.block_input.clone()),
            None => (ResidualPoint::EMBEDDINGS, None),
        };
        let dims = self.dims();
        adapters.check(&dims, self.dtype)?;
        for site in hooks.sites() {
            site.check(&dims).map_err(|reason| ModelError::Site {
                site: site.to_string(),
                reason,
            })?;
        }
        let layout = &latents.layout;
        let context = self.config.text_config.max_position_embeddings;
        let positions = cache.as_ref().map_or(0, |c| c.len()) + layout.seq();
        if positions > context {
            return Err(ModelError::Prompt {
                reason: format!(
                    "the sequence reaches {positions} positions but the model's context is {context} (max_position_embeddings)"
                ),
                help: "shorten the prompt, its answer or --max-new-tokens; a model attends over at most max_position_embeddings positions".into(),
            });
        }
        let expected = [layout.batch(), layout.seq(), dims.hidden];
        if latents.embeds.dims() != expected {
            return Err(ModelError::Site {
                site: "input latents".into(),
                reason: format!(
                    "latents have shape {:?}, their layout implies {expected:?}",
                    latents.embeds.dims()
                ),
            });
        }
        if let Some(Stop { layer: l, .. }) = stop {
            if l >= dims.num_layers {
                return Err(ModelError::Site {
                    site: format!("layer({l}).output"),
                    reason: format!("the model has {} layers", dims.num_layers),
                });
            }
            if cache.is_some() {
                return Err(ModelError::Prompt {
                    reason: "a forward pass that stops early cannot extend a KV cache".into(),
                    help: "stop early only in an uncached forward".into(),
                });
            }
        }
        if start != ResidualPoint::EMBEDDINGS {
            if start.layer >= dims.num_layers || cache.is_some() {
                return Err(ModelError::Prompt {
                    reason: format!(
                        "a pass cannot start at {start} of {} layers here",
                        dims.num_layers
                    ),
                    help: "start inside the decoder, in an uncached forward".into(),
                });
            }
            if let Some(s) = stop.filter(|s| s.layer < start.layer) {
                return Err(ModelError::Prompt {
                    reason: format!(
                        "a pass that starts at {start} cannot end in layer {}",
                        s.layer
                    ),
                    help: "end a pass at or after the point it starts from".into(),
                });
            }
            if let Some(site) = hooks.sites().find(|s| start.has_passed(s)) {
                return Err(ModelError::Site {
                    site: site.to_string(),
                    reason: format!("a pass that starts at {start} does not run it"),
                });
            }
        }
        let read_from = read_from(
            readout,
            layout,
            dims.num_layers,
            &cache,
            stop,
            hooks,
            adapters,
        );
        let mut pass = Pass {
            hooks,
            adapters,
            layout,
            block_input,
            stop,
            start,
            read_from,
        };
        let mut x = latents.embeds.to_dtype(self.dtype)?;
        for site in [Site::EmbedVision, Site::EmbedText] {
            if start != ResidualPoint::EMBEDDINGS || !pass.touches(&site) {
                continue;
            }
            let index = if site == Site::EmbedVision {
                layout.visual_index()
            } else {
                layout.text_index()
            };
            if index.is_empty() {
                continue;
            }
            let rows = pass.at(site, gather_rows(&x, &index)?)?;
            x = scatter_rows(&x, &index, &rows)?;
        }
        let hidden = self.decoder.forward(x, &mut pass, cache)?;
        // Whatever the weights' precision, what leaves the model is f32: logits go into
        // log-softmaxes and metrics, hidden states into losses and statistics.
        let out = match readout {
            Readout::Hidden => Ok(hidden),
            Readout::All => self.decoder.logits(&hidden),
            Readout::Last => {
                let index = layout
                    .last_index()
                    .into_iter()
                    .enumerate()
                    .map(|(row, i)| {
                        i.ok_or_else(|| ModelError::Prompt {
                            reason: format!("row {row} of the batch holds only padding"),
                            help: "every prompt needs at least one token".into(),
                        })
                    })
                    .collect::<Result<Vec<u32>>>()?;
                let index = shifted(&index, layout.seq(), read_from);
                self.decoder.logits(&gather_rows(&hidden, &index)?)
            }
            Readout::Positions(positions) => {
                let mut index = Vec::with_capacity(positions.len());
                for &(row, col) in positions {
                    if !layout.is_valid(row, col) {
                        return Err(ModelError::Prompt {
                            reason: format!(
                                "position ({row}, {col}) is padding or outside the batch"
                            ),
                            help: format!("the batch is {} × {}", layout.batch(), layout.seq()),
                        });
                    }
                    index.push((row * layout.seq() + col) as u32);
                }
                let index = shifted(&index, layout.seq(), read_from);
                self.decoder.logits(&gather_rows(&hidden, &index)?)
            }
        }?;
        Ok(widen(&out)?)
    }

    /// Token embeddings of ids `(B, T)` (no image features).
    pub fn embed_tokens(&self, ids: &Tensor) -> Result<Tensor> {
        self.decoder.embed(ids)
    }

    /// The current weight of a decoder linear.
    pub fn linear_weight(&self, site: LinearSite) -> Result<Tensor> {
        let lin = self
            .decoder
            .linear(site)
            .ok_or_else(|| no_layer(site, self.decoder.num_layers()))?;
        Ok(lin.weight().clone())
    }

    /// Replaces a decoder linear's weight (ELoRA's `W ← W − BA`) and returns the previous one;
    /// pass that back to restore. The shape must not change.
    ///
    /// The weight is stored in the model's dtype, except that an f32 weight on a half-precision
    /// model stays f32: it is a trained copy (FT-L trains the weight itself), whose updates are
    /// often smaller than bf16's spacing at the weight's size and would round away. The linear
    /// then multiplies in f32 (see [`crate::model::nn::linear::Linear::forward_with`]).
    pub fn replace_linear_weight(&mut self, site: LinearSite, weight: Tensor) -> Result<Tensor> {
        let layers = self.decoder.num_layers();
        let dtype = match (self.dtype, weight.dtype()) {
            (DType::BF16 | DType::F16, DType::F32) => DType::F32,
            (model, _) => model,
        };
        let lin = self
            .decoder
            .linear_mut(site)
            .ok_or_else(|| no_layer(site, layers))?;
        if weight.shape() != lin.weight().shape() {
            return Err(ModelError::Site {
                site: site.to_string(),
                reason: format!(
                    "new weight has shape {:?}, the weight is {:?}",
                    weight.dims(),
                    lin.weight().dims()
                ),
            });
        }
        Ok(lin.replace_weight(weight.to_dtype(dtype)?))
    }

    /// Every tensor under its Hugging Face name (what `save` writes).
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        self.decoder.tensors("language_model", &mut out);
        self.projector.tensors("multi_modal_projector", &mut out);
        self.vision.tensors("vision_tower.vision_model", &mut out);
        out
    }
}

fn no_layer(site: LinearSite, layers: usize) -> ModelError {
    ModelError::Site {
        site: site.to_string(),
        reason: format!("the model has {layers} layers"),
    }
}

fn internal(what: &str) -> ModelError {
    ModelError::Tensor(candle_core::Error::Msg(what.to_string()))
}

/// `x` `(B, T, D)` with the rows at flat indices `index` replaced by `rows` `(N, D)`;
/// differentiable with respect to both.
fn scatter_rows(x: &Tensor, index: &[u32], rows: &Tensor) -> Result<Tensor> {
    let (b, t, d) = x.dims3()?;
    let flat = x.reshape((b * t, d))?;
    let idx = Tensor::from_slice(index, index.len(), x.device())?;
    let placed = flat
        .zeros_like()?
        .index_add(&idx, &rows.to_dtype(x.dtype())?, 0)?;
    let mut mask = vec![0u8; b * t];
    for &i in index {
        mask[i as usize] = 1;
    }
    let mask = Tensor::from_vec(mask, (b * t, 1), x.device())?.broadcast_as((b * t, d))?;
    Ok(mask.where_cond(&placed, &flat)?.reshape((b, t, d))?)
}

/// The first column a pass's readout reads, when its final layer may run only from there on
/// (`Pass::read_from`): logits at a few positions (a teacher-forced answer, the last token), or
/// a layer's output from a column on ([`Stop::from_column`]); no KV cache to fill, and nothing
/// hooked or shifted in the final layer (a hook there sees every token). 0 otherwise.
fn read_from(
    readout: &Readout,
    layout: &TokenLayout,
    layers: usize,
    cache: &Option<&mut KvCache>,
    stop: Option<Stop>,
    hooks: &Hooks,
    adapters: &Adapters,
) -> usize {
    let (last, first) = match stop {
        Some(Stop {
            layer,
            at: StopAt::Output,
            from_column,
        }) => (layer, Some(from_column)),
        Some(_) => return 0,
        None => {
            let seq = layout.seq().max(1);
            let first = match readout {
                Readout::Positions(positions) => positions.iter().map(|&(_, col)| col).min(),
                Readout::Last => (layout.last_index().iter().flatten())
                    .map(|&i| i as usize % seq)
                    .min(),
                Readout::All | Readout::Hidden => None,
            };
            (layers.saturating_sub(1), first)
        }
    };
    let in_last = |site: &Site| matches!(site, Site::Layer(l, _) if *l == last);
    if cache.is_some()
        || hooks.sites().any(in_last)
        || adapters.shifts().iter().any(|(site, _)| in_last(site))
    {
        return 0;
    }
    // A column outside the batch is refused by the readout itself, with its own message.
    first.filter(|&c| c < layout.seq()).unwrap_or(0)
}

/// Flat `(row, col)` indices into `(B, seq)` rewritten for the `(B, seq − from)` columns a pass
/// that read from `from` returns.
fn shifted(index: &[u32], seq: usize, from: usize) -> Vec<u32> {
    if from == 0 {
        return index.to_vec();
    }
    let kept = seq - from;
    (index.iter())
        .map(|&i| {
            let (row, col) = (i as usize / seq, i as usize % seq);
            (row * kept + col - from) as u32
        })
        .collect()
}
