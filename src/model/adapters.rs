//! Persistent, explicit modifications of a frozen model: LoRA, weight deltas, extra FFN
//! key-value neurons, latent key-value memories read by attention, and additive shifts at sites.
//!
//! Adapters hold plain tensors. A tensor that is a `candle_core::Var` (or computed from one, like
//! UniKE's `W_V^extra + β ζ'`) is trainable and receives gradients; any other tensor is frozen
//! and goes through the gradient-free matmul. Build a fresh `Adapters` from the current tensors
//! whenever they change; cloning is cheap (tensors are reference-counted).

use std::collections::BTreeMap;
use std::sync::Arc;

use candle_core::{DType, Tensor};

use crate::model::config::ModelDims;
use crate::model::error::{ModelError, Result};
use crate::model::hooks::{add_broadcast, SiteView};
use crate::model::memory::{LatentMemory, MemoryGate};
use crate::model::nn::activation::Activation;
use crate::model::nn::frozen::matmul_t;
use crate::model::precision::trained_dtype;
use crate::model::site::{LinearSite, Site};

/// Low-rank update of a linear: `y += scaling · (x Aᵀ) Bᵀ`.
#[derive(Debug, Clone)]
pub struct Lora {
    /// `(rank, in)`.
    pub a: Tensor,
    /// `(out, rank)`.
    pub b: Tensor,
    pub scaling: f64,
}

/// Extra FFN key-value neurons (UniKE Eq. 3, T-Patcher):
/// `FFN(q) + act(q K_extraᵀ + b_extra) V_extra`, with `q` the MLP input.
#[derive(Debug, Clone)]
pub struct ExtraNeurons {
    /// Keys, `(n_extra, hidden)` (one row per neuron, like a linear weight).
    pub keys: Tensor,
    /// Optional key bias, `(n_extra,)`.
    pub bias: Option<Tensor>,
    /// Values, `(n_extra, hidden)`.
    pub values: Tensor,
    pub act: Activation,
    /// UniKE Eq. 6: the values are used as `V + β·W_ζ ζ`.
    pub regulation: Option<NeuronRegulation>,
}

/// UniKE Eq. 6's regulation of extra values by the truthfulness direction: `ζ′ = W_ζ ζ` is added,
/// times β, to every extra value. `W_ζ` is trained with the values; ζ is fixed.
#[derive(Debug, Clone)]
pub struct NeuronRegulation {
    /// `W_ζ`, `(hidden, width of ζ)`.
    pub map: Tensor,
    /// ζ, `(width,)`.
    pub zeta: Tensor,
    pub beta: f64,
}

impl ExtraNeurons {
    /// The values the FFN adds, `(n_extra, hidden)`: `V`, or `V + β·W_ζ ζ` when regulated.
    pub fn effective_values(&self) -> candle_core::Result<Tensor> {
        match &self.regulation {
            None => Ok(self.values.clone()),
            Some(r) => {
                let shift = (r.map.matmul(&r.zeta.unsqueeze(1)?)?.squeeze(1)? * r.beta)?;
                self.values.broadcast_add(&shift.unsqueeze(0)?)
            }
        }
    }
}

/// A closure computing an additive shift from a site view (e.g. UniKE's latent in-context shift).
pub type ShiftFn = Arc<dyn Fn(&SiteView) -> candle_core::Result<Tensor> + Send + Sync>;

/// An additive change of a site's value.
#[derive(Clone)]
pub enum Shift {
    /// Broadcast-added to the value.
    Tensor(Tensor),
    /// Computed on every call and broadcast-added.
    Fn(ShiftFn),
}

impl std::fmt::Debug for Shift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shift::Tensor(t) => write!(f, "Shift::Tensor({:?})", t.dims()),
            Shift::Fn(_) => f.write_str("Shift::Fn"),
        }
    }
}

/// Replaces the `index`-th adapter listed under `key`, returning the previous one; other
/// handles to the old tensors (a snapshot) are not touched.
fn replace_at<K: Ord, T>(
    map: &mut BTreeMap<K, Vec<T>>,
    key: K,
    index: usize,
    value: T,
    site: impl FnOnce() -> String,
    what: &str,
) -> Result<T> {
    let slot = map
        .get_mut(&key)
        .and_then(|list| list.get_mut(index))
        .ok_or_else(|| ModelError::Site {
            site: site(),
            reason: format!("no {what} number {index} is attached here"),
        })?;
    Ok(std::mem::replace(slot, value))
}

/// Adapters attached to one model.
#[derive(Debug, Clone, Default)]
pub struct Adapters {
    loras: BTreeMap<LinearSite, Vec<Lora>>,
    deltas: BTreeMap<LinearSite, Vec<Tensor>>,
    neurons: BTreeMap<usize, Vec<ExtraNeurons>>,
    memories: BTreeMap<usize, Vec<LatentMemory>>,
    shifts: Vec<(Site, Shift)>,
}

impl Adapters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a LoRA on a linear (several may stack).
    pub fn lora(&mut self, site: LinearSite, lora: Lora) -> &mut Self {
        self.loras.entry(site).or_default().push(lora);
        self
    }

    /// Adds a weight delta: the linear runs with `W + ΔW` (FT-L, LPEdit). `ΔW` is `(out, in)`.
    pub fn delta(&mut self, site: LinearSite, delta: Tensor) -> &mut Self {
        self.deltas.entry(site).or_default().push(delta);
        self
    }

    /// Adds extra key-value neurons to layer `layer`'s FFN.
    pub fn neurons(&mut self, layer: usize, neurons: ExtraNeurons) -> &mut Self {
        self.neurons.entry(layer).or_default().push(neurons);
        self
    }

    /// Adds a shift at a site.
    pub fn shift(&mut self, site: Site, shift: Shift) -> &mut Self {
        self.shifts.push((site, shift));
        self
    }

    /// The LoRAs attached at `site`, in the order they were added (an editor reads the current
    /// tensors of the adapters it attached through this and [`Self::set_lora`]).
    pub fn loras(&self, site: LinearSite) -> &[Lora] {
        self.loras.get(&site).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every site that carries at least one LoRA.
    pub fn lora_sites(&self) -> impl Iterator<Item = LinearSite> + '_ {
        self.loras.keys().copied()
    }

    /// Replaces the `index`-th LoRA at `site` (as listed by [`Self::loras`]); the previous one
    /// is returned. Other handles to the old tensors (a snapshot) are not touched.
    pub fn set_lora(&mut self, site: LinearSite, index: usize, lora: Lora) -> Result<Lora> {
        replace_at(
            &mut self.loras,
            site,
            index,
            lora,
            || site.to_string(),
            "LoRA",
        )
    }

    /// The extra neurons attached to layer `layer`'s FFN, in the order they were added.
    pub fn neurons_at(&self, layer: usize) -> &[ExtraNeurons] {
        self.neurons.get(&layer).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Layers that carry extra neurons.
    pub fn neuron_layers(&self) -> impl Iterator<Item = usize> + '_ {
        self.neurons.keys().copied()
    }

    /// Replaces the `index`-th extra-neuron set of layer `layer`; the previous one is returned.
    pub fn set_neurons(
        &mut self,
        layer: usize,
        index: usize,
        neurons: ExtraNeurons,
    ) -> Result<ExtraNeurons> {
        let site = || format!("layer({layer}).mlp");
        replace_at(
            &mut self.neurons,
            layer,
            index,
            neurons,
            site,
            "extra-neuron set",
        )
    }

    /// Adds a latent key-value memory read by layer `layer`'s attention.
    pub fn memory(&mut self, layer: usize, memory: LatentMemory) -> &mut Self {
        self.memories.entry(layer).or_default().push(memory);
        self
    }

    /// The memories layer `layer` reads, in the order they were added.
    pub fn memories_at(&self, layer: usize) -> &[LatentMemory] {
        self.memories.get(&layer).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Replaces the `index`-th memory of layer `layer`; the previous one is returned.
    pub fn set_memory(
        &mut self,
        layer: usize,
        index: usize,
        memory: LatentMemory,
    ) -> Result<LatentMemory> {
        let site = || format!("layer({layer}).attn");
        replace_at(&mut self.memories, layer, index, memory, site, "memory")
    }

    /// Every shift, in the order added.
    pub fn shifts(&self) -> &[(Site, Shift)] {
        &self.shifts
    }

    /// Replaces the shift at position `index` of [`Self::shifts`] (its site stays).
    pub fn set_shift(&mut self, index: usize, shift: Shift) -> Result<Shift> {
        let len = self.shifts.len();
        let slot = self.shifts.get_mut(index).ok_or_else(|| ModelError::Site {
            site: "shift".into(),
            reason: format!("no shift number {index} (there are {len})"),
        })?;
        Ok(std::mem::replace(&mut slot.1, shift))
    }

    pub fn is_empty(&self) -> bool {
        self.loras.is_empty()
            && self.deltas.is_empty()
            && self.neurons.is_empty()
            && self.memories.is_empty()
            && self.shifts.is_empty()
    }

    /// Checks every adapter's shapes and dtypes against the model before a forward pass.
    pub fn check(&self, dims: &ModelDims, dtype: DType) -> Result<()> {
        let bad = |site: String, reason: String| ModelError::Site { site, reason };
        let tensors = self
            .loras
            .iter()
            .flat_map(|(s, ls)| {
                ls.iter()
                    .flat_map(move |l| [(s.to_string(), &l.a), (s.to_string(), &l.b)])
            })
            .chain(
                self.deltas
                    .iter()
                    .flat_map(|(s, ds)| ds.iter().map(move |d| (s.to_string(), d))),
            )
            .chain(self.neurons.iter().flat_map(|(l, ns)| {
                ns.iter().flat_map(move |n| {
                    let name = format!("layer({l}).mlp");
                    [
                        Some((name.clone(), &n.keys)),
                        Some((name.clone(), &n.values)),
                        n.bias.as_ref().map(|b| (name, b)),
                    ]
                    .into_iter()
                    .flatten()
                })
            }));
        for (site, t) in tensors {
            if t.dtype() != dtype && t.dtype() != trained_dtype(dtype) {
                return Err(bad(
                    site,
                    format!(
                        "adapter tensor is {:?} but the model computes in {dtype:?} (and trains in {:?})",
                        t.dtype(),
                        trained_dtype(dtype)
                    ),
                ));
            }
        }
        let layer_ok = |layer: usize, site: String| {
            if layer >= dims.num_layers {
                Err(bad(
                    site,
                    format!("the model has {} layers", dims.num_layers),
                ))
            } else {
                Ok(())
            }
        };
        for (site, loras) in &self.loras {
            layer_ok(site.layer, site.to_string())?;
            let (inp, out) = site.in_out(dims);
            for l in loras {
                let (ra, ia) =
                    l.a.dims2()
                        .map_err(|_| bad(site.to_string(), "LoRA A must be a matrix".into()))?;
                let (ob, rb) =
                    l.b.dims2()
                        .map_err(|_| bad(site.to_string(), "LoRA B must be a matrix".into()))?;
                if ia != inp || ob != out || ra != rb {
                    return Err(bad(
                        site.to_string(),
                        format!(
                            "LoRA A {:?} and B {:?} do not fit: expected A (r, {inp}) and B ({out}, r)",
                            l.a.dims(),
                            l.b.dims()
                        ),
                    ));
                }
            }
        }
        for (site, deltas) in &self.deltas {
            layer_ok(site.layer, site.to_string())?;
            let (inp, out) = site.in_out(dims);
            for d in deltas {
                if d.dims() != [out, inp] {
                    return Err(bad(
                        site.to_string(),
                        format!(
                            "weight delta has shape {:?}, the weight is {:?}",
                            d.dims(),
                            [out, inp]
                        ),
                    ));
                }
            }
        }
        for (layer, list) in &self.neurons {
            let name = format!("layer({layer}).mlp");
            layer_ok(*layer, name.clone())?;
            for n in list {
                let (ne, dk) = n
                    .keys
                    .dims2()
                    .map_err(|_| bad(name.clone(), "extra keys must be a matrix".into()))?;
                let ok_values = n.values.dims() == [ne, dims.hidden];
                let ok_bias = n.bias.as_ref().is_none_or(|b| b.dims() == [ne]);
                if dk != dims.hidden || !ok_values || !ok_bias {
                    return Err(bad(
                        name,
                        format!(
                            "extra neurons keys {:?}, values {:?}, bias {:?} do not fit: expected ({ne}, {h}), ({ne}, {h}), ({ne})",
                            n.keys.dims(),
                            n.values.dims(),
                            n.bias.as_ref().map(|b| b.dims().to_vec()),
                            h = dims.hidden
                        ),
                    ));
                }
            }
        }
        for (layer, list) in &self.memories {
            let name = format!("layer({layer}).attn");
            layer_ok(*layer, name.clone())?;
            for m in list {
                let (n, d) = m
                    .values
                    .dims2()
                    .map_err(|_| bad(name.clone(), "memory states must be a matrix".into()))?;
                if d != dims.hidden || m.keys.dims() != [n, d] || m.centre.dims() != [d] {
                    return Err(bad(
                        name,
                        format!(
                            "a memory of {n} states of width {d} (keys {:?}, centre {:?}) does not fit a layer of width {}",
                            m.keys.dims(),
                            m.centre.dims(),
                            dims.hidden
                        ),
                    ));
                }
                if let MemoryGate::Semantic(enc) = &m.gate {
                    if enc.input_width() != Some(d) || enc.output_width() != Some(d) {
                        return Err(bad(
                            name,
                            format!(
                                "the gate's semantic encoder maps {:?} to {:?} values; the memory's states have {d}",
                                enc.input_width(),
                                enc.output_width()
                            ),
                        ));
                    }
                }
            }
        }
        for (site, _) in &self.shifts {
            site.check(dims)
                .map_err(|reason| bad(site.to_string(), reason))?;
        }
        Ok(())
    }

    pub(crate) fn touches(&self, site: &Site) -> bool {
        self.shifts.iter().any(|(s, _)| s == site)
    }

    /// Adds the shifts registered at `view.site`.
    pub(crate) fn apply_shifts(&self, view: &SiteView) -> Result<Tensor> {
        let mut value = view.value.clone();
        for (site, shift) in &self.shifts {
            if *site != view.site {
                continue;
            }
            let delta = match shift {
                Shift::Tensor(t) => t.clone(),
                Shift::Fn(f) => f(&SiteView {
                    value: &value,
                    ..*view
                })?,
            };
            value = add_broadcast(*site, &value, &delta)?;
        }
        Ok(value)
    }

    /// The weight a linear runs with: the base weight plus any deltas. The sum is formed in
    /// the wider of the two dtypes: an f32 delta on a bf16 weight gives an f32 weight (bf16
    /// would round a small trained delta away), which the linear then multiplies in f32.
    pub(crate) fn effective_weight(&self, site: LinearSite, base: &Tensor) -> Result<Tensor> {
        let mut w = base.clone();
        for d in self.deltas.get(&site).into_iter().flatten() {
            let dtype = wider(w.dtype(), d.dtype());
            w = (w.to_dtype(dtype)? + d.to_dtype(dtype)?)?;
        }
        Ok(w)
    }

    /// The LoRA contributions to a linear's output for input `x`, if any.
    pub(crate) fn lora_output(&self, site: LinearSite, x: &Tensor) -> Result<Option<Tensor>> {
        let mut total: Option<Tensor> = None;
        for l in self.loras.get(&site).into_iter().flatten() {
            // In the factors' dtype (f32 on a half-precision model), back in `x`'s.
            let xa = x.to_dtype(l.a.dtype())?;
            let h = matmul_t(&matmul_t(&xa, &l.a)?, &l.b.to_dtype(l.a.dtype())?)?;
            let h = (h * l.scaling)?.to_dtype(x.dtype())?;
            total = Some(match total {
                Some(t) => (t + h)?,
                None => h,
            });
        }
        Ok(total)
    }

    /// The extra neurons' contribution to layer `layer`'s FFN output for MLP input `q`, if any.
    pub(crate) fn neuron_output(&self, layer: usize, q: &Tensor) -> Result<Option<Tensor>> {
        let mut total: Option<Tensor> = None;
        for n in self.neurons.get(&layer).into_iter().flatten() {
            // In the neurons' dtype (f32 on a half-precision model), back in `q`'s.
            let dtype = n.keys.dtype();
            let mut pre = matmul_t(&q.to_dtype(dtype)?, &n.keys)?;
            if let Some(b) = &n.bias {
                pre = pre.broadcast_add(&b.to_dtype(dtype)?)?;
            }
            let o = n.act.forward(&pre)?;
            let values = n.effective_values()?.to_dtype(dtype)?;
            let out = matmul_t(&o, &values.t()?)?.to_dtype(q.dtype())?;
            total = Some(match total {
                Some(t) => (t + out)?,
                None => out,
            });
        }
        Ok(total)
    }
}

/// The wider of two float dtypes (f64 > f32 > bf16, f16).
fn wider(a: DType, b: DType) -> DType {
    let rank = |d: DType| match d {
        DType::F64 => 3,
        DType::F32 => 2,
        _ => 1,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::site::Proj;
    use candle_core::Device;

    fn lora(value: f32) -> Lora {
        let t = |shape: (usize, usize)| Tensor::full(value, shape, &Device::Cpu).unwrap();
        Lora {
            a: t((2, 4)),
            b: t((3, 2)),
            scaling: 1.0,
        }
    }

    #[test]
    fn loras_are_listed_and_replaced_by_index_without_touching_clones() {
        let site = LinearSite::new(1, Proj::Up);
        let mut adapters = Adapters::new();
        adapters.lora(site, lora(1.0)).lora(site, lora(2.0));
        let snapshot = adapters.clone();
        assert_eq!(adapters.loras(site).len(), 2);
        assert_eq!(adapters.lora_sites().collect::<Vec<_>>(), vec![site]);
        let old = adapters.set_lora(site, 1, lora(5.0)).unwrap();
        assert_eq!(old.a.to_vec2::<f32>().unwrap()[0][0], 2.0);
        assert_eq!(
            adapters.loras(site)[1].a.to_vec2::<f32>().unwrap()[0][0],
            5.0
        );
        assert_eq!(
            snapshot.loras(site)[1].a.to_vec2::<f32>().unwrap()[0][0],
            2.0
        );
        assert!(adapters.set_lora(site, 2, lora(0.0)).is_err());
        assert!(adapters.loras(LinearSite::new(0, Proj::Down)).is_empty());
    }

    #[test]
    fn neurons_and_shifts_are_listed_and_replaced_by_index() {
        let t = |v: f32, shape: (usize, usize)| Tensor::full(v, shape, &Device::Cpu).unwrap();
        let n = |v: f32| ExtraNeurons {
            keys: t(v, (2, 4)),
            bias: None,
            values: t(v, (2, 4)),
            act: Activation::Relu,
            regulation: None,
        };
        let mut adapters = Adapters::new();
        adapters.neurons(3, n(1.0));
        adapters.shift(Site::EmbedText, Shift::Tensor(t(1.0, (1, 4))));
        let snapshot = adapters.clone();
        assert_eq!(adapters.neuron_layers().collect::<Vec<_>>(), vec![3]);
        adapters.set_neurons(3, 0, n(2.0)).unwrap();
        assert_eq!(
            adapters.neurons_at(3)[0].keys.to_vec2::<f32>().unwrap()[0][0],
            2.0
        );
        assert_eq!(
            snapshot.neurons_at(3)[0].keys.to_vec2::<f32>().unwrap()[0][0],
            1.0
        );
        assert!(adapters.set_neurons(3, 1, n(0.0)).is_err());
        assert!(adapters.neurons_at(2).is_empty());
        adapters
            .set_shift(0, Shift::Tensor(t(5.0, (1, 4))))
            .unwrap();
        let Shift::Tensor(now) = &adapters.shifts()[0].1 else {
            panic!()
        };
        assert_eq!(now.to_vec2::<f32>().unwrap()[0][0], 5.0);
        assert!(adapters
            .set_shift(1, Shift::Tensor(t(0.0, (1, 4))))
            .is_err());
    }
}
