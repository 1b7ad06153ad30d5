//! Running UniKE's plan steps against the state: building the memory from hallucination
//! triplets, training and loading encoders, attaching extra neurons and latent ICL, and
//! `remember`. The numerics are in [`numerics`].

pub mod numerics;

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use image::DynamicImage;

use self::numerics::{
    fresh_neurons, train_encoders, truth_direction, EncoderPair, EncoderTraining, Encoders,
    IclHandle, Memory, NeuronHandle, NeuronSlot,
};
use crate::eval::{scored_text, EditState};
use crate::exec::error::{ExecError, Result};
use crate::exec::executor::Executor;
use crate::exec::input::EditInput;
use crate::exec::ops::{Execute, StepContext};
use crate::exec::prepare::PRESERVE_BATCH;
use crate::exec::preserve::PreserveSource;
use crate::exec::rng;
use crate::exec::sites::{layers, stream_taps, Tap};
use crate::exec::taps::{deepest, Reading};
use crate::exec::values::{PerLayer, Value, Values};
use crate::model::nn::mlp::Mlp;
use crate::model::site::Site;
use crate::model::{
    Activation, Hooks, LatentMemory, Latents, MemoryGate, PadSide, VisionLanguageModel,
};
use crate::plan::{Step, StepId};
use crate::sema::ops;
use crate::sema::site::Stream;
use crate::sema::{Alpha, DataSpec, Op};
use crate::world::World;

/// Cache tensor names of an MLP.
fn mlp_tensors(prefix: &str, mlp: &Mlp, out: &mut HashMap<String, Tensor>) {
    for (i, (w, b)) in mlp.layers.iter().enumerate() {
        out.insert(format!("{prefix}.{i}.w"), w.clone());
        out.insert(format!("{prefix}.{i}.b"), b.clone());
    }
}

fn mlp_from(prefix: &str, tensors: &HashMap<String, Tensor>) -> Option<Mlp> {
    let mut layers = Vec::new();
    for i in 0.. {
        match (
            tensors.get(&format!("{prefix}.{i}.w")),
            tensors.get(&format!("{prefix}.{i}.b")),
        ) {
            (Some(w), Some(b)) => layers.push((w.clone(), b.clone())),
            _ => break,
        }
    }
    (!layers.is_empty()).then_some(Mlp { layers })
}

/// Memory ↔ cache tensors.
pub fn memory_tensors(m: &Memory) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    for l in &m.layers {
        out.insert(format!("layer.{}.sem", l.layer), l.sem.clone());
        out.insert(format!("layer.{}.pos", l.layer), l.pos.clone());
        out.insert(format!("layer.{}.neg", l.layer), l.neg.clone());
    }
    out
}

pub fn memory_from(tensors: &HashMap<String, Tensor>, layers: &[usize]) -> Result<Memory> {
    let get = |l: usize, k: &str| {
        tensors
            .get(&format!("layer.{l}.{k}"))
            .cloned()
            .ok_or_else(|| ExecError::internal(format!("cached memory lacks layer {l} {k}")))
    };
    Memory::new(
        layers
            .iter()
            .map(|&l| Ok((l, get(l, "sem")?, get(l, "pos")?, get(l, "neg")?)))
            .collect::<Result<Vec<_>>>()?,
    )
}

pub fn encoder_tensors(e: &Encoders) -> HashMap<String, Tensor> {
    let mut out = HashMap::new();
    for p in &e.layers {
        mlp_tensors(&format!("layer.{}.truth", p.layer), &p.truth, &mut out);
        mlp_tensors(
            &format!("layer.{}.semantic", p.layer),
            &p.semantic,
            &mut out,
        );
    }
    out
}

pub fn encoders_from(tensors: &HashMap<String, Tensor>, layers: &[usize]) -> Result<Encoders> {
    let layers = layers
        .iter()
        .map(|&l| {
            let truth = mlp_from(&format!("layer.{l}.truth"), tensors);
            let semantic = mlp_from(&format!("layer.{l}.semantic"), tensors);
            match (truth, semantic) {
                (Some(truth), Some(semantic)) => Ok(EncoderPair {
                    layer: l,
                    truth,
                    semantic,
                }),
                _ => Err(ExecError::internal(format!(
                    "cached encoders lack layer {l}"
                ))),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Encoders { layers })
}

/// The sites a memory's stream is read at, with their layers.
fn memory_sites(at: &Stream) -> Result<Vec<(usize, Site)>> {
    stream_taps(at)?
        .into_iter()
        .map(|(l, tap)| match (l, tap) {
            (Some(l), Tap::Site(site)) => Ok((l, site)),
            _ => Err(ExecError::internal(format!(
                "memory stream {} is not a layer state",
                at.path
            ))),
        })
        .collect()
}

impl Executor {
    /// The memory step's stream.
    fn memory_stream(&self, memory: StepId) -> Result<Stream> {
        match &self.step(memory)?.op {
            Op::IncontextMemory(ops::IncontextMemory { at, .. }) => Ok(at.clone()),
            _ => Err(ExecError::internal(format!(
                "step {memory} is not a memory"
            ))),
        }
    }

    /// UniKE §3.3: `h_sem`, `h_pos`, `h_neg` of every triplet at every layer of `at`.
    pub(crate) fn incontext_memory(
        &mut self,
        triplets: &DataSpec,
        at: &Stream,
        state: &EditState,
    ) -> Result<Memory> {
        let DataSpec::Hallucinations { count } = triplets else {
            return Err(ExecError::internal(format!("{triplets} are not triplets")));
        };
        let PreserveSource::World { world_seed } = &self.preserve else {
            return Err(ExecError::Preserve {
                reason: "hallucination triplets come from the embedded world, and this model is not the embedded one".into(),
                help: "run UniKE recipes on the embedded model (examples/model)".into(),
            });
        };
        let triplets = World::new(*world_seed).hallucination_triplets(*count, self.seed);
        let sites = memory_sites(at)?;
        let readings: Vec<Reading> = sites.iter().map(|(_, s)| Reading::Site(*s)).collect();
        let last = deepest(&readings);
        let model = &state.model;
        // Per triplet: the positive and negative sequences and where h_sem / h_last sit.
        let mut sem: Vec<Vec<Tensor>> = vec![Vec::new(); sites.len()];
        let mut pos: Vec<Vec<Tensor>> = vec![Vec::new(); sites.len()];
        let mut neg: Vec<Vec<Tensor>> = vec![Vec::new(); sites.len()];
        let mut done = 0;
        for chunk in triplets.chunks(PRESERVE_BATCH / 2) {
            let mut encoded = Vec::with_capacity(2 * chunk.len());
            let mut columns = Vec::with_capacity(2 * chunk.len());
            for t in chunk {
                let images: Vec<DynamicImage> = t
                    .image
                    .iter()
                    .map(|v| DynamicImage::ImageRgb8(v.render()))
                    .collect();
                let prompt = self.template.prompt(&t.question, t.image.is_some());
                for answer in [&t.truth, &t.hallucination] {
                    let e = model.encode(&scored_text(&prompt, answer), &images)?;
                    let n = model.tokenize(answer.trim())?.len();
                    let len = e.len();
                    columns.push((len.saturating_sub(n + 1), len - 1));
                    encoded.push(e);
                }
            }
            let batch = model.batch(&encoded, PadSide::Right)?;
            let latents = model.embed(&batch)?;
            let latents = latents.with_embeds(latents.embeds.detach());
            let mut hooks = Hooks::new();
            for (_, site) in &sites {
                hooks.capture(*site);
            }
            model
                .model
                .forward_through(&latents, &mut hooks, &state.adapters, last)?;
            // Flat `(row · T + column)` indices of each kind of state: compact copies, so the
            // memory does not keep every batch's activations alive through row views.
            let t_len = latents.layout.seq();
            let flat = |keep: usize, col: fn(&(usize, usize)) -> usize| -> Vec<u32> {
                columns
                    .iter()
                    .enumerate()
                    .filter(|(row, _)| row % 2 == keep)
                    .map(|(row, c)| (row * t_len + col(c)) as u32)
                    .collect()
            };
            let picks = [
                flat(0, |c| c.0), // h_sem: the question's last token, positive row
                flat(0, |c| c.1), // h_pos: the last token, positive row
                flat(1, |c| c.1), // h_neg: the last token, negative row
            ];
            for (i, (_, site)) in sites.iter().enumerate() {
                let value = hooks
                    .captured(site)
                    .first()
                    .map(|t| (*t).detach())
                    .ok_or_else(|| ExecError::internal(format!("nothing captured at {site}")))?;
                let (b, t, d) = value.dims3()?;
                let rows = value.reshape((b * t, d))?;
                for (store, pick) in [&mut sem, &mut pos, &mut neg].into_iter().zip(&picks) {
                    let index = Tensor::from_slice(pick, pick.len(), rows.device())?;
                    store[i].push(
                        rows.index_select(&index, 0)?
                            .to_device(&Device::Cpu)?
                            .to_dtype(DType::F32)?,
                    );
                }
            }
            done += chunk.len();
            self.log
                .bar
                .set_message(format!("prepare: {done}/{} triplets", triplets.len()));
        }
        let stack = |rows: &[Tensor]| -> Result<Tensor> { Ok(Tensor::cat(rows, 0)?) };
        Memory::new(
            sites
                .iter()
                .enumerate()
                .map(|(i, (l, _))| Ok((*l, stack(&sem[i])?, stack(&pos[i])?, stack(&neg[i])?)))
                .collect::<Result<Vec<_>>>()?,
        )
    }

    /// Runs a UniKE step (any stage).
    pub(crate) fn run_unike(
        &mut self,
        step: &Step,
        state: &mut EditState,
        edit: Option<&EditInput>,
        values: &mut Values,
    ) -> Result<()> {
        match &step.op {
            Op::IncontextMemory(ops::IncontextMemory { triplets, at }) => {
                let layers: Vec<usize> = memory_sites(at)?.into_iter().map(|(l, _)| l).collect();
                let cached = self
                    .load_cached(step)
                    .and_then(|t| memory_from(&t, &layers).ok());
                let memory = match cached {
                    Some(m) => {
                        self.reused(step);
                        m
                    }
                    None => {
                        let m = self.incontext_memory(triplets, at, state)?;
                        self.store_entry(step, &memory_tensors(&m));
                        m
                    }
                };
                values.insert(step.id, Value::Memory(Arc::new(memory)));
            }
            Op::ContrastiveEncoders(ops::ContrastiveEncoders {
                memory,
                hidden,
                depth,
                lr,
                steps,
                batch,
            }) => {
                let mem = values.memory(*memory)?.clone();
                let layers: Vec<usize> = mem.layers.iter().map(|m| m.layer).collect();
                let cached = self
                    .load_cached(step)
                    .and_then(|t| encoders_from(&t, &layers).ok());
                let encoders = match cached {
                    Some(e) => {
                        self.reused(step);
                        e
                    }
                    None => {
                        let spec = EncoderTraining {
                            hidden: *hidden,
                            depth: *depth,
                            lr: *lr,
                            steps: *steps,
                            batch: *batch,
                        };
                        let mut pairs = Vec::new();
                        for m in &mem.layers {
                            self.log
                                .bar
                                .set_message(format!("prepare: encoders of layer {}", m.layer));
                            let mut r = rng::stream(self.seed, "encoders", m.layer as u64);
                            pairs.push(train_encoders(m, spec, &mut r)?);
                        }
                        let e = Encoders { layers: pairs };
                        self.store_entry(step, &encoder_tensors(&e));
                        e
                    }
                };
                values.insert(step.id, Value::Encoders(Arc::new(encoders)));
            }
            Op::TruthDirection(ops::TruthDirection { encoders }) => {
                let memory = match &self.step(*encoders)?.op {
                    Op::ContrastiveEncoders(ops::ContrastiveEncoders { memory, .. }) => *memory,
                    _ => return Err(ExecError::internal("ζ of something that is not encoders")),
                };
                let mem = values.memory(memory)?.clone();
                let enc = values.encoders(*encoders)?.clone();
                let mut per = Vec::new();
                for m in &mem.layers {
                    let pair = enc.layer(m.layer).ok_or_else(|| {
                        ExecError::internal(format!("no encoders for layer {}", m.layer))
                    })?;
                    per.push((Some(m.layer), truth_direction(m, pair)?));
                }
                values.insert(step.id, Value::Direction(PerLayer(per)));
            }
            Op::ExtraNeurons(ops::ExtraNeurons {
                site,
                count,
                regulate,
                ..
            }) => {
                let dims = state.model.dims();
                let dtype = state.model.dtype();
                let device = state.model.device().clone();
                let act_name = &state.model.config().text_config.hidden_act;
                let act = Activation::from_name(act_name).ok_or_else(|| {
                    ExecError::internal(format!("the model's activation `{act_name}` is unknown"))
                })?;
                let zeta = match regulate {
                    Some(r) => Some((values.direction(r.direction)?.clone(), r.beta)),
                    None => None,
                };
                // Each edit draws its own keys (sequential editing adds fresh pairs per edit).
                let case = edit.map_or(0, |e| e.case as u64 + 1);
                let mut slots = Vec::new();
                for &layer in layers(&site.layers)? {
                    let mut r = rng::stream(
                        self.seed,
                        "extra-neurons",
                        case << 32 | u64::from(step.id.0) << 16 | layer as u64,
                    );
                    let regulation = match &zeta {
                        Some((per, beta)) => {
                            let z = per
                                .iter()
                                .find(|(l, _)| *l == Some(layer))
                                .map(|(_, z)| z)
                                .ok_or_else(|| {
                                    ExecError::internal(format!("no ζ for layer {layer}"))
                                })?;
                            Some((z, *beta))
                        }
                        None => None,
                    };
                    let n = fresh_neurons(
                        *count,
                        dims.hidden,
                        act,
                        regulation,
                        crate::model::precision::trained_dtype(dtype),
                        &device,
                        &mut r,
                    )?;
                    let index = state.adapters.neurons_at(layer).len();
                    state.adapters.neurons(layer, n);
                    slots.push(NeuronSlot { layer, index });
                }
                values.insert(
                    step.id,
                    Value::Neurons(NeuronHandle {
                        slots,
                        regulated: regulate.is_some(),
                    }),
                );
            }
            Op::LatentIcl(ops::LatentIcl {
                site,
                memory,
                top_k,
                alpha,
            }) => {
                let mem = values.memory(*memory)?.clone();
                let dtype = state.model.dtype();
                let device = state.model.device().clone();
                let on_model =
                    |t: &Tensor| -> Result<Tensor> { Ok(t.to_dtype(dtype)?.to_device(&device)?) };
                let mut slots = Vec::new();
                for (layer, _) in stream_taps(site)? {
                    let layer =
                        layer.ok_or_else(|| ExecError::internal("latent ICL outside a layer"))?;
                    let m = mem.layer(layer).ok_or_else(|| {
                        ExecError::internal(format!("the memory has no layer {layer}"))
                    })?;
                    let gate = match alpha {
                        Alpha::Fixed { value } => MemoryGate::Fixed(*value),
                        Alpha::SemanticGate { encoders } => {
                            let enc = values.encoders(*encoders)?;
                            let pair = enc.layer(layer).ok_or_else(|| {
                                ExecError::internal(format!("no encoders for layer {layer}"))
                            })?;
                            let layers = pair
                                .semantic
                                .layers
                                .iter()
                                .map(|(w, b)| Ok((on_model(w)?, on_model(b)?)))
                                .collect::<Result<Vec<_>>>()?;
                            MemoryGate::Semantic(Arc::new(Mlp { layers }))
                        }
                    };
                    let latent = LatentMemory::new(
                        &on_model(&m.sem)?,
                        on_model(&m.pos)?,
                        on_model(&m.centre)?,
                        *top_k,
                        gate,
                    )?;
                    let index = state.adapters.memories_at(layer).len();
                    state.adapters.memory(layer, latent);
                    slots.push((layer, index));
                }
                values.insert(
                    step.id,
                    Value::Icl(IclHandle {
                        memory: *memory,
                        slots,
                    }),
                );
            }
            Op::Remember(ops::Remember { memory }) => {
                let edit =
                    edit.ok_or_else(|| ExecError::internal("`remember` ran outside an edit"))?;
                let icls: Vec<IclHandle> = values.icls_of(*memory).into_iter().cloned().collect();
                if icls.is_empty() {
                    return Err(ExecError::internal(
                        "`remember` of a memory no latent ICL reads",
                    ));
                }
                // Read the edit case with this memory's own retrieval switched off.
                let mut off = state.adapters.clone();
                for (layer, index) in icls.iter().flat_map(|i| &i.slots) {
                    let m = &state.adapters.memories_at(*layer)[*index];
                    let inert = LatentMemory {
                        gate: MemoryGate::Fixed(0.0),
                        ..m.clone()
                    };
                    off.set_memory(*layer, *index, inert)?;
                }
                let sites = memory_sites(&self.memory_stream(*memory)?)?;
                let readings: Vec<Reading> = sites.iter().map(|(_, s)| Reading::Site(*s)).collect();
                let mut hooks = Hooks::new();
                for (_, s) in &sites {
                    hooks.capture(*s);
                }
                let latents = Latents {
                    embeds: edit.latents.embeds.clone(),
                    layout: edit.latents.layout.clone(),
                };
                state.model.model.forward_through(
                    &latents,
                    &mut hooks,
                    &off,
                    deepest(&readings),
                )?;
                for (l, s) in &sites {
                    let v = hooks
                        .captured(s)
                        .first()
                        .map(|t| (*t).detach())
                        .ok_or_else(|| ExecError::internal(format!("nothing captured at {s}")))?
                        .get(0)?;
                    let sem = v.get(edit.last_prompt())?.unsqueeze(0)?;
                    let pos = v.get(edit.len() - 1)?.unsqueeze(0)?;
                    for (layer, index) in icls.iter().flat_map(|i| &i.slots) {
                        if layer == l {
                            let grown = state.adapters.memories_at(*layer)[*index]
                                .with_entries(&sem, &pos)?;
                            state.adapters.set_memory(*layer, *index, grown)?;
                        }
                    }
                }
                values.insert(step.id, Value::Done);
            }
            other => {
                return Err(ExecError::internal(format!(
                    "`{}` is not a UniKE step",
                    other.name()
                )))
            }
        }
        Ok(())
    }
}

impl Execute for ops::ExtraNeurons {
    fn execute(&self, ex: &mut Executor, cx: &mut StepContext<'_>) -> Result<()> {
        ex.run_unike(cx.step, cx.state, cx.edit, cx.values)
    }
}

impl Execute for ops::LatentIcl {
    fn execute(&self, ex: &mut Executor, cx: &mut StepContext<'_>) -> Result<()> {
        ex.run_unike(cx.step, cx.state, cx.edit, cx.values)
    }
}

impl Execute for ops::IncontextMemory {
    fn execute(&self, ex: &mut Executor, cx: &mut StepContext<'_>) -> Result<()> {
        ex.run_unike(cx.step, cx.state, cx.edit, cx.values)
    }
}

impl Execute for ops::ContrastiveEncoders {
    fn execute(&self, ex: &mut Executor, cx: &mut StepContext<'_>) -> Result<()> {
        ex.run_unike(cx.step, cx.state, cx.edit, cx.values)
    }
}

impl Execute for ops::TruthDirection {
    fn execute(&self, ex: &mut Executor, cx: &mut StepContext<'_>) -> Result<()> {
        ex.run_unike(cx.step, cx.state, cx.edit, cx.values)
    }
}

impl Execute for ops::Remember {
    fn execute(&self, ex: &mut Executor, cx: &mut StepContext<'_>) -> Result<()> {
        ex.run_unike(cx.step, cx.state, cx.edit, cx.values)
    }
}
