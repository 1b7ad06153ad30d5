//! One forward pass's interventions: the adapters and hooks, applied site by site.

use candle_core::Tensor;

use crate::model::adapters::Adapters;
use crate::model::batch::TokenLayout;
use crate::model::error::Result;
use crate::model::hooks::{Hooks, SiteView};
use crate::model::nn::linear::Linear;
use crate::model::site::{LinearSite, ResidualPoint, Site};

/// What the decoder consults at each site during one call.
pub(crate) struct Pass<'p, 'h> {
    pub hooks: &'p mut Hooks<'h>,
    pub adapters: &'p Adapters,
    /// Layout of the tokens this call processes.
    pub layout: &'p TokenLayout,
    /// The current layer's block input, once known.
    pub block_input: Option<Tensor>,
    /// Where to stop (`LlavaModel::forward_through`, `LlavaModel::capture`,
    /// `LlavaModel::residual`).
    pub stop: Option<Stop>,
    /// Where the input enters the decoder: the embeddings for a whole pass, or a residual
    /// stream a frozen prefix computed (`LlavaModel::forward_from`).
    pub start: ResidualPoint,
    /// The first column the readout reads: the pass's final layer ([`Pass::final_layer`])
    /// computes keys and values for every token and everything after them only from this
    /// column on (0: every token).
    pub read_from: usize,
}

/// The last decoder layer a pass runs, and where in it the pass ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stop {
    pub layer: usize,
    pub at: StopAt,
    /// With `at: Output`, the first column whose output the caller reads: the layer runs its
    /// queries and everything after them from there on (0: every column).
    pub from_column: usize,
}

impl Stop {
    /// Ends the pass at `at` in layer `layer`, every column computed.
    pub fn new(layer: usize, at: StopAt) -> Self {
        Self {
            layer,
            at,
            from_column: 0,
        }
    }
}

/// Where a pass ends within its last layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopAt {
    /// The layer's output.
    Output,
    /// The FFN activation: the down projection and the residual add are skipped.
    BeforeDownProj,
    /// The residual stream after the attention's residual add: the FFN half is skipped.
    AfterAttention,
}

impl Pass<'_, '_> {
    /// The last layer the pass runs, of a decoder of `layers`.
    pub fn final_layer(&self, layers: usize) -> usize {
        self.stop.map_or(layers.saturating_sub(1), |s| s.layer)
    }

    /// Whether the pass ends in layer `l`.
    pub fn stops_after(&self, l: usize) -> bool {
        self.stop.is_some_and(|s| s.layer == l)
    }

    /// Whether the pass ends at `at` in layer `l`.
    pub fn stops_at(&self, l: usize, at: StopAt) -> bool {
        self.stop.is_some_and(|s| s.layer == l && s.at == at)
    }

    /// Whether layer `l`'s attention half already ran in the prefix the pass starts from.
    pub fn starts_past_attention(&self, l: usize) -> bool {
        self.start.layer == l && self.start.past_attention
    }

    /// Whether anything acts at `site` (lets callers skip gathering rows for `embed.*`).
    pub fn touches(&self, site: &Site) -> bool {
        self.adapters.touches(site) || self.hooks.touches(site)
    }

    /// The value of `site` after the adapters' shifts and the hooks.
    pub fn at(&mut self, site: Site, value: Tensor) -> Result<Tensor> {
        if !self.touches(&site) {
            return Ok(value);
        }
        let block_input = self.block_input.as_ref();
        let view = SiteView {
            site,
            value: &value,
            block_input,
            layout: self.layout,
        };
        let shifted = self.adapters.apply_shifts(&view)?;
        self.hooks.apply(SiteView {
            site,
            value: &shifted,
            block_input,
            layout: self.layout,
        })
    }

    /// A decoder linear with its sites and adapters: input hooks, `x (W + ΔW)ᵀ + b`, LoRA,
    /// output hooks.
    pub fn linear(&mut self, site: LinearSite, layer: &Linear, x: Tensor) -> Result<Tensor> {
        let x = self.at(Site::proj_input(site), x)?;
        let y = self.linear_unhooked(site, layer, &x)?;
        self.at(Site::proj_output(site), y)
    }

    /// The same linear with its adapters (deltas, LoRA) but without its sites: a layer's
    /// projections applied to something that is not the layer's own stream (UniKE's memory
    /// states), which hooks at those sites must not see.
    pub fn linear_unhooked(&self, site: LinearSite, layer: &Linear, x: &Tensor) -> Result<Tensor> {
        let weight = self.adapters.effective_weight(site, layer.weight())?;
        let mut y = layer.forward_with(x, &weight)?;
        if let Some(extra) = self.adapters.lora_output(site, x)? {
            y = (y + extra)?;
        }
        Ok(y)
    }
}
