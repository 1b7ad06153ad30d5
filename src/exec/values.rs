//! Step results by step id: covariances, spaces, adapters, variants.
//!
//! Prepare results live for the whole run; per-edit results are dropped before the next case.
//! Adapters are not stored as tensors here: their tensors live in the [`crate::eval::EditState`]
//! the evaluator snapshots and restores, and a value only says where to find them
//! ([`LoraHandle`]). That keeps single editing honest — a restore undoes every trained tensor —
//! and lets sequential edits start from the previous edit's tensors.

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::Tensor;

use crate::exec::error::{ExecError, Result};
use crate::exec::methods::unike::numerics::{Encoders, IclHandle, Memory, NeuronHandle};
use crate::linalg::Subspace;
use crate::model::batch::TokenLayout;
use crate::model::LinearSite;
use crate::plan::StepId;

/// One result per layer of a stream (`None` = an embedding stream).
#[derive(Debug, Clone)]
pub struct PerLayer<T>(pub Vec<(Option<usize>, T)>);

impl<T> PerLayer<T> {
    pub fn get(&self, layer: Option<usize>) -> Option<&T> {
        self.0.iter().find(|(l, _)| *l == layer).map(|(_, t)| t)
    }

    pub fn iter(&self) -> impl Iterator<Item = &(Option<usize>, T)> {
        self.0.iter()
    }
}

/// Where one layer of a LoRA adapter sits in the state's adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoraSlot {
    pub site: LinearSite,
    /// Position in `Adapters::loras(site)`.
    pub index: usize,
}

/// A LoRA adapter step's layers.
#[derive(Debug, Clone)]
pub struct LoraHandle {
    pub rank: usize,
    pub scaling: f64,
    pub slots: Vec<LoraSlot>,
}

impl LoraHandle {
    pub fn slot(&self, layer: usize) -> Option<LoraSlot> {
        self.slots.iter().copied().find(|s| s.site.layer == layer)
    }
}

/// Variants of the edit case's input: latents of `count` rows, each a perturbed copy of the
/// clean sequence (same layout per row).
#[derive(Debug, Clone)]
pub struct Variants {
    /// `(count, T, hidden)`, no autograd history.
    pub latents: Tensor,
    /// The layout of the `count` rows.
    pub layout: TokenLayout,
    pub count: usize,
}

/// The result of a step.
#[derive(Debug, Clone)]
pub enum Value {
    /// `XᵀX / N` per layer, f64 on the CPU.
    Covariance(PerLayer<Tensor>),
    /// A subspace per layer.
    Space(PerLayer<Subspace>),
    Lora(LoraHandle),
    Variants(Variants),
    /// UniKE's in-context memory as prepared (edits join the copy the latent-ICL shifts hold).
    Memory(Arc<Memory>),
    /// UniKE's truthfulness and semantic encoders, per memory layer.
    Encoders(Arc<Encoders>),
    /// UniKE's ζ per layer, `(hidden,)`.
    Direction(PerLayer<Tensor>),
    Neurons(NeuronHandle),
    Icl(IclHandle),
    /// Steps that only change state (`freeze`, `train`).
    Done,
}

impl Value {
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Covariance(_) => "covariance",
            Value::Space(_) => "space",
            Value::Lora(_) => "LoRA adapter",
            Value::Variants(_) => "variants",
            Value::Memory(_) => "memory",
            Value::Encoders(_) => "encoders",
            Value::Direction(_) => "direction",
            Value::Neurons(_) => "extra-neurons adapter",
            Value::Icl(_) => "latent ICL adapter",
            Value::Done => "nothing",
        }
    }
}

/// Results by step id.
#[derive(Debug, Clone, Default)]
pub struct Values {
    map: HashMap<StepId, Value>,
}

impl Values {
    pub fn insert(&mut self, id: StepId, value: Value) {
        self.map.insert(id, value);
    }

    pub fn remove(&mut self, id: StepId) {
        self.map.remove(&id);
    }

    pub fn contains(&self, id: StepId) -> bool {
        self.map.contains_key(&id)
    }

    pub fn get(&self, id: StepId) -> Result<&Value> {
        self.map
            .get(&id)
            .ok_or_else(|| ExecError::internal(format!("step {id} was used before it ran")))
    }

    fn wrong(id: StepId, want: &str, got: &Value) -> ExecError {
        ExecError::internal(format!(
            "step {id} should hold a {want} but holds {}",
            got.kind()
        ))
    }

    pub fn covariance(&self, id: StepId) -> Result<&PerLayer<Tensor>> {
        match self.get(id)? {
            Value::Covariance(c) => Ok(c),
            other => Err(Self::wrong(id, "covariance", other)),
        }
    }

    pub fn space(&self, id: StepId) -> Result<&PerLayer<Subspace>> {
        match self.get(id)? {
            Value::Space(s) => Ok(s),
            other => Err(Self::wrong(id, "space", other)),
        }
    }

    pub fn lora(&self, id: StepId) -> Result<&LoraHandle> {
        match self.get(id)? {
            Value::Lora(l) => Ok(l),
            other => Err(Self::wrong(id, "LoRA adapter", other)),
        }
    }

    pub fn memory(&self, id: StepId) -> Result<&Arc<Memory>> {
        match self.get(id)? {
            Value::Memory(m) => Ok(m),
            other => Err(Self::wrong(id, "memory", other)),
        }
    }

    pub fn encoders(&self, id: StepId) -> Result<&Arc<Encoders>> {
        match self.get(id)? {
            Value::Encoders(e) => Ok(e),
            other => Err(Self::wrong(id, "encoders", other)),
        }
    }

    pub fn direction(&self, id: StepId) -> Result<&PerLayer<Tensor>> {
        match self.get(id)? {
            Value::Direction(d) => Ok(d),
            other => Err(Self::wrong(id, "direction", other)),
        }
    }

    pub fn neurons(&self, id: StepId) -> Result<&NeuronHandle> {
        match self.get(id)? {
            Value::Neurons(n) => Ok(n),
            other => Err(Self::wrong(id, "extra-neurons adapter", other)),
        }
    }

    /// Every latent-ICL adapter reading the memory `memory`.
    pub fn icls_of(&self, memory: StepId) -> Vec<&IclHandle> {
        let mut out: Vec<(&StepId, &IclHandle)> = self
            .map
            .iter()
            .filter_map(|(id, v)| match v {
                Value::Icl(h) if h.memory == memory => Some((id, h)),
                _ => None,
            })
            .collect();
        out.sort_by_key(|(id, _)| **id);
        out.into_iter().map(|(_, h)| h).collect()
    }

    pub fn variants(&self, id: StepId) -> Result<&Variants> {
        match self.get(id)? {
            Value::Variants(v) => Ok(v),
            other => Err(Self::wrong(id, "variants", other)),
        }
    }
}
