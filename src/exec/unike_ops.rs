//! Running UniKE's plan steps against the state: building the memory from hallucination
//! triplets, training and loading encoders, attaching extra neurons and latent ICL, and
//! `remember`. The numerics are in [`super::unike`].

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use image::DynamicImage;

use crate::eval::{scored_text, EditState};
use crate::exec::error::{ExecError, Result};
use crate::exec::executor::Executor;
use crate::exec::input::EditInput;
use crate::exec::prepare::PRESERVE_BATCH;
use crate::exec::preserve::PreserveSource;
use crate::exec::rng;
use crate::exec::sites::{layers, stream_taps, Tap};
use crate::exec::taps::{deepest, Reading};
use crate::exec::unike::{
    current_memory, fresh_neurons, icl_closure, install_memory, train_encoders, truth_direction,
    EncoderPair, EncoderTraining, Encoders, Gate, IclHandle, Memory, Mlp, NeuronHandle, NeuronSlot,
    Regulation,
};
use crate::exec::values::{PerLayer, Value, Values};
use crate::model::site::{LayerPoint, Site};
use crate::model::{Activation, Hooks, Latents, PadSide, Shift, VisionLanguageModel};
use crate::plan::{Step, StepId};
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
            Op::IncontextMemory { at, .. } => Ok(at.clone()),
            _ => Err(ExecError::internal(format!(
                "step {memory} is not a memory"
            ))),
        }
    }

    /// UniKE §3.3: `h_sem`, `h_pos`, `h_neg` of every triplet at every layer of `at`.
    pub fn incontext_memory(
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
            for (i, (_, site)) in sites.iter().enumerate() {
                let value = hooks
                    .captured(site)
                    .first()
                    .map(|t| (*t).detach())
                    .ok_or_else(|| ExecError::internal(format!("nothing captured at {site}")))?;
                for (row, &(prompt_last, last)) in columns.iter().enumerate() {
                    let at_col = |c: usize| -> Result<Tensor> { Ok(value.get(row)?.get(c)?) };
                    if row.is_multiple_of(2) {
                        sem[i].push(at_col(prompt_last)?);
                        pos[i].push(at_col(last)?);
                    } else {
                        neg[i].push(at_col(last)?);
                    }
                }
            }
            done += chunk.len();
            self.log
                .bar
                .set_message(format!("prepare: {done}/{} triplets", triplets.len()));
        }
        let stack = |rows: &[Tensor]| -> Result<Tensor> {
            Ok(Tensor::stack(rows, 0)?
                .to_device(&Device::Cpu)?
                .to_dtype(DType::F32)?)
        };
        Memory::new(
            sites
                .iter()
                .enumerate()
                .map(|(i, (l, _))| Ok((*l, stack(&sem[i])?, stack(&pos[i])?, stack(&neg[i])?)))
                .collect::<Result<Vec<_>>>()?,
        )
    }

    /// Runs a UniKE step (any stage).
    pub fn run_unike(
        &mut self,
        step: &Step,
        state: &mut EditState,
        edit: Option<&EditInput>,
        values: &mut Values,
    ) -> Result<()> {
        match &step.op {
            Op::IncontextMemory { triplets, at } => {
                let layers: Vec<usize> = memory_sites(at)?.into_iter().map(|(l, _)| l).collect();
                let cached = step
                    .cache
                    .as_ref()
                    .and_then(|k| self.cache.load("memory", &k.recipe, &Device::Cpu))
                    .and_then(|t| memory_from(&t, &layers).ok());
                let memory = match cached {
                    Some(m) => {
                        self.reused(step, "in-context memory");
                        m
                    }
                    None => {
                        let m = self.incontext_memory(triplets, at, state)?;
                        if let Some(k) = &step.cache {
                            self.store_entry("memory", &k.recipe, &memory_tensors(&m), step);
                        }
                        m
                    }
                };
                values.insert(step.id, Value::Memory(Arc::new(memory)));
            }
            Op::ContrastiveEncoders {
                memory,
                hidden,
                depth,
                lr,
                steps,
                batch,
            } => {
                let mem = values.memory(*memory)?.clone();
                let layers: Vec<usize> = mem.layers.iter().map(|m| m.layer).collect();
                let cached = step
                    .cache
                    .as_ref()
                    .and_then(|k| self.cache.load("encoders", &k.recipe, &Device::Cpu))
                    .and_then(|t| encoders_from(&t, &layers).ok());
                let encoders = match cached {
                    Some(e) => {
                        self.reused(step, "contrastive encoders");
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
                        if let Some(k) = &step.cache {
                            self.store_entry("encoders", &k.recipe, &encoder_tensors(&e), step);
                        }
                        e
                    }
                };
                values.insert(step.id, Value::Encoders(Arc::new(encoders)));
            }
            Op::TruthDirection { encoders } => {
                let memory = match &self.step(*encoders)?.op {
                    Op::ContrastiveEncoders { memory, .. } => *memory,
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
            Op::ExtraNeurons {
                site,
                count,
                regulate,
                ..
            } => {
                let dims = state.model.dims();
                let dtype = state.model.dtype();
                let device = state.model.device().clone();
                let act_name = &state.model.config().text_config.hidden_act;
                let act = Activation::from_name(act_name).ok_or_else(|| {
                    ExecError::internal(format!("the model's activation `{act_name}` is unknown"))
                })?;
                let regulation = match regulate {
                    Some(r) => Some(Regulation {
                        beta: r.beta,
                        zeta: values
                            .direction(r.direction)?
                            .iter()
                            .filter_map(|(l, z)| l.map(|l| (l, z.clone())))
                            .collect(),
                    }),
                    None => None,
                };
                let mut slots = Vec::new();
                for &layer in layers(&site.layers)? {
                    let mut r = rng::stream(
                        self.seed,
                        "extra-neurons",
                        u64::from(step.id.0) << 16 | layer as u64,
                    );
                    let mut n = fresh_neurons(*count, dims.hidden, act, dtype, &device, &mut r)?;
                    if let Some(reg) = &regulation {
                        let width = reg.zeta(layer)?.dim(0)?;
                        let w_zeta = Tensor::zeros((dims.hidden, width), dtype, &device)?;
                        let v = n.values.clone();
                        n.values = reg.values(layer, &v, &w_zeta)?;
                        self.side.regulated.insert(n.values.id(), (v, w_zeta));
                    }
                    let index = state.adapters.neurons_at(layer).len();
                    state.adapters.neurons(layer, n);
                    slots.push(NeuronSlot { layer, index });
                }
                values.insert(step.id, Value::Neurons(NeuronHandle { slots, regulation }));
            }
            Op::LatentIcl {
                site,
                memory,
                top_k,
                alpha,
            } => {
                let mem = values.memory(*memory)?.clone();
                let gate = match alpha {
                    Alpha::Fixed { value } => Gate::Fixed(*value),
                    Alpha::SemanticGate { encoders } => {
                        Gate::Semantic(values.encoders(*encoders)?.clone())
                    }
                };
                let mut shifts = Vec::new();
                for (layer, _) in stream_taps(site)? {
                    let layer =
                        layer.ok_or_else(|| ExecError::internal("latent ICL outside a layer"))?;
                    let f = icl_closure(mem.clone(), layer, *top_k, gate.clone());
                    self.side
                        .memories
                        .insert(crate::exec::unike::closure_key(&f), mem.clone());
                    let index = state.adapters.shifts().len();
                    state
                        .adapters
                        .shift(Site::Layer(layer, LayerPoint::AttnOutput), Shift::Fn(f));
                    shifts.push((layer, index));
                }
                values.insert(
                    step.id,
                    Value::Icl(IclHandle {
                        memory: *memory,
                        top_k: *top_k,
                        gate,
                        shifts,
                    }),
                );
            }
            Op::Remember { memory } => {
                let edit =
                    edit.ok_or_else(|| ExecError::internal("`remember` ran outside an edit"))?;
                let icls: Vec<IclHandle> = values.icls_of(*memory).into_iter().cloned().collect();
                let first = icls.first().ok_or_else(|| {
                    ExecError::internal("`remember` of a memory no latent ICL reads")
                })?;
                let current = current_memory(first, state, &self.side)?;
                // Read the edit case with this memory's own shifts switched off.
                let mut off = state.adapters.clone();
                let zero = Tensor::zeros(1, state.model.dtype(), state.model.device())?;
                for icl in &icls {
                    for (_, index) in &icl.shifts {
                        off.set_shift(*index, Shift::Tensor(zero.clone()))?;
                    }
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
                let mut added = Vec::new();
                for (l, s) in &sites {
                    let v = hooks
                        .captured(s)
                        .first()
                        .map(|t| (*t).detach())
                        .ok_or_else(|| ExecError::internal(format!("nothing captured at {s}")))?
                        .get(0)?;
                    let sem = v
                        .get(edit.last_prompt())?
                        .to_device(&Device::Cpu)?
                        .to_dtype(DType::F32)?;
                    let pos = v
                        .get(edit.len() - 1)?
                        .to_device(&Device::Cpu)?
                        .to_dtype(DType::F32)?;
                    added.push((*l, sem, pos));
                }
                let next = Arc::new(current.with(&added)?);
                for icl in &icls {
                    install_memory(icl, next.clone(), state, &mut self.side)?;
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

    /// Forgets side records no longer reachable from `state` or the prepared state.
    pub fn prune_side(&mut self, state: &EditState) {
        let mut live_closures: Vec<usize> = self.prepared_side.0.clone();
        let mut live_values = self.prepared_side.1.clone();
        for (_, s) in state.adapters.shifts() {
            if let Shift::Fn(f) = s {
                live_closures.push(crate::exec::unike::closure_key(f));
            }
        }
        for layer in state.adapters.neuron_layers().collect::<Vec<_>>() {
            for n in state.adapters.neurons_at(layer) {
                live_values.push(n.values.id());
            }
        }
        self.side.memories.retain(|k, _| live_closures.contains(k));
        self.side.regulated.retain(|k, _| live_values.contains(k));
    }

    /// Remembers which side records the prepared state uses (they stay for every case).
    pub fn mark_prepared_side(&mut self, state: &EditState) {
        let closures = state
            .adapters
            .shifts()
            .iter()
            .filter_map(|(_, s)| match s {
                Shift::Fn(f) => Some(crate::exec::unike::closure_key(f)),
                Shift::Tensor(_) => None,
            })
            .collect();
        let values = state
            .adapters
            .neuron_layers()
            .collect::<Vec<_>>()
            .into_iter()
            .flat_map(|l| {
                state
                    .adapters
                    .neurons_at(l)
                    .iter()
                    .map(|n| n.values.id())
                    .collect::<Vec<_>>()
            })
            .collect();
        self.prepared_side = (closures, values);
    }
}
