//! Reading a stream during a forward pass.
//!
//! Most streams are runtime sites and are read as they are. The two streams inside adapters are
//! computed from the site that feeds the adapter, with the adapter's current tensors: a LoRA's
//! `B` input is `x Aᵀ` with `x` the projection's input (ELoRA's "input activation of B"), and the
//! extra neurons' activations are `act(q Kᵀ + b)` with `q` the MLP input (UniKE Eq. 3). Reading
//! them this way needs no hook inside the adapter and is exactly what the adapter computes.

use candle_core::Tensor;

use crate::eval::EditState;
use crate::exec::error::{ExecError, Result};
use crate::exec::sites::Tap;
use crate::exec::values::Values;
use crate::model::hooks::SiteView;
use crate::model::site::Site;

/// The deepest decoder layer a forward pass must run to pass every reading (later layers are
/// skipped with `LlavaModel::forward_through`).
pub fn deepest(readings: &[Reading]) -> usize {
    readings.iter().map(Reading::layer).max().unwrap_or(0)
}

/// A stream at one layer, resolved against the current state.
#[derive(Debug, Clone)]
pub enum Reading {
    /// A runtime site, read as it is.
    Site(Site),
    /// `x Aᵀ`: `site` is the projection's input, `a` the LoRA's `A` `(r, din)`.
    LoraMid { site: Site, a: Tensor },
    /// `act(q Kᵀ + b)`: `site` is the MLP input, `keys` `(count, d)`.
    ExtraAct {
        site: Site,
        keys: Tensor,
        bias: Option<Tensor>,
        act: crate::model::Activation,
    },
}

impl Reading {
    /// Resolves a tap: adapter streams look up the adapter's current tensors in `state`.
    pub fn resolve(tap: Tap, values: &Values, state: &EditState) -> Result<Reading> {
        match tap {
            Tap::Site(site) => Ok(Reading::Site(site)),
            Tap::LoraMid { adapter, layer } => {
                let handle = values.lora(adapter)?;
                let slot = handle.slot(layer).ok_or_else(|| {
                    ExecError::internal(format!("adapter {adapter} has no layer {layer}"))
                })?;
                let lora = state
                    .adapters
                    .loras(slot.site)
                    .get(slot.index)
                    .ok_or_else(|| {
                        ExecError::internal(format!("adapter {adapter} is not attached"))
                    })?;
                Ok(Reading::LoraMid {
                    site: Site::proj_input(slot.site),
                    a: lora.a.clone(),
                })
            }
            Tap::ExtraAct { adapter, layer } => {
                let slot = values.neurons(adapter)?.slot(layer).ok_or_else(|| {
                    ExecError::internal(format!("adapter {adapter} has no layer {layer}"))
                })?;
                let n = state
                    .adapters
                    .neurons_at(layer)
                    .get(slot.index)
                    .ok_or_else(|| {
                        ExecError::internal(format!("adapter {adapter} is not attached"))
                    })?;
                Ok(Reading::ExtraAct {
                    site: Site::Layer(layer, crate::model::site::LayerPoint::MlpInput),
                    keys: n.keys.clone(),
                    bias: n.bias.clone(),
                    act: n.act,
                })
            }
        }
    }

    /// The runtime site whose value this reading starts from.
    pub fn site(&self) -> Site {
        match self {
            Reading::Site(s)
            | Reading::LoraMid { site: s, .. }
            | Reading::ExtraAct { site: s, .. } => *s,
        }
    }

    /// The stream's value from the site's value (any shape ending in the site's width).
    ///
    /// A reading through an adapter is computed in the adapter's dtype (f32 on a
    /// half-precision model, where `x` is a bf16/f16 activation).
    pub fn apply(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Reading::Site(_) => Ok(x.clone()),
            Reading::LoraMid { a, .. } => x.to_dtype(a.dtype())?.broadcast_matmul(&a.t()?),
            Reading::ExtraAct {
                keys, bias, act, ..
            } => {
                let pre = x.to_dtype(keys.dtype())?.broadcast_matmul(&keys.t()?)?;
                let pre = match bias {
                    Some(b) => pre.broadcast_add(b)?,
                    None => pre,
                };
                act.forward(&pre)
            }
        }
    }

    /// The decoder layer a forward pass must reach to read this (0 for the embeddings).
    pub fn layer(&self) -> usize {
        match self.site() {
            Site::Layer(l, _) => l,
            Site::EmbedVision | Site::EmbedText => 0,
        }
    }

    /// The stream's rows at the real tokens of a view, `(N, width)`.
    pub fn valid_rows(&self, view: &SiteView) -> candle_core::Result<Tensor> {
        let rows = match view.site {
            // Embedding sites already hold only their own rows.
            Site::EmbedVision | Site::EmbedText => view.value.clone(),
            Site::Layer(..) => view
                .layout
                .valid_rows(view.value)
                .map_err(|e| candle_core::Error::Msg(e.to_string()))?,
        };
        self.apply(&rows)
    }
}
