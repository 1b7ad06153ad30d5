//! Adapters attached to linear layers and MLPs, and freezing (LoRA, ELoRA §3.2, UniKE Eq. 3/6).

use serde::Serialize;

use super::text::{params_text, shapes_suffix};
use super::{param_ids, param_refs, CacheContext, OpSpec};
use crate::sema::program::{LoraInit, NodeId, Param, Regulation};
use crate::sema::site::{ComponentSite, LinearSite};

/// Attaches `W + (alpha / rank)·BA` at `site`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lora {
    pub site: LinearSite,
    pub rank: usize,
    pub alpha: f64,
    pub init: LoraInit,
    pub params: Vec<Param>,
}

impl OpSpec for Lora {
    fn name(&self) -> &'static str {
        "lora"
    }
    fn refs_mut(&mut self) -> Vec<&mut NodeId> {
        let mut out = Vec::new();
        if let LoraInit::NullSpaceSvd { space } = &mut self.init {
            out.push(space);
        }
        out.extend(self.params.iter_mut().flat_map(param_refs));
        out
    }
    fn not_inputs(&self) -> Vec<NodeId> {
        self.params.iter().flat_map(param_ids).collect()
    }
    fn reads_model(&self) -> bool {
        matches!(self.init, LoraInit::NullSpaceSvd { .. })
    }
    fn changes_state(&self) -> bool {
        true
    }
    fn attaches(&self) -> bool {
        true
    }
    fn output(&self) -> Option<&'static str> {
        Some("adapter")
    }
    fn wraps_linear(&self) -> Option<&LinearSite> {
        Some(&self.site)
    }
    fn describe(&self) -> String {
        let init = match self.init {
            LoraInit::Kaiming => "kaiming".to_string(),
            LoraInit::NullSpaceSvd { space } => {
                format!("null_space_svd({space}), W ← W − (alpha/rank)·BA")
            }
        };
        let (site, rank, alpha) = (&self.site, self.rank, self.alpha);
        let shapes = shapes_suffix(&self.params);
        format!("lora {site} rank {rank} alpha {alpha} init {init}{shapes}")
    }
    /// Eq. 8 reads `W`: only while no earlier LoRA at the same projection has moved it.
    fn cache_identity(&self, cx: &CacheContext<'_>) -> Option<(&'static str, String)> {
        let LoraInit::NullSpaceSvd { space } = self.init else {
            return None;
        };
        let moved = cx
            .moved
            .iter()
            .any(|other| other.proj == self.site.proj && other.layers.overlaps(&self.site.layers));
        if moved {
            return None;
        }
        let k = cx.key_of(space)?;
        let (site, rank) = (&self.site, self.rank);
        let id = format!("lora_init(site: {site}; rank: {rank}; init: null_space_svd({k}))");
        Some(("lora_init", id))
    }
}

/// UniKE Eq. 3 (and Eq. 6 with `regulate`): `count` extra key-value pairs in the MLP of each
/// layer, `FFN(q) + V·act(K q + b)` with the model's activation; `K ~ N(0, 0.02²)`, `b = 0`,
/// `V = 0` (and `W_ζ = 0`), so the model is unchanged until trained. With `regulate`, the
/// values are `V + beta·W_ζ ζ`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtraNeurons {
    pub site: ComponentSite,
    pub count: usize,
    pub regulate: Option<Regulation>,
    pub params: Vec<Param>,
}

impl OpSpec for ExtraNeurons {
    fn name(&self) -> &'static str {
        "extra_neurons"
    }
    fn refs_mut(&mut self) -> Vec<&mut NodeId> {
        let mut out = Vec::new();
        if let Some(r) = &mut self.regulate {
            out.push(&mut r.direction);
        }
        out.extend(self.params.iter_mut().flat_map(param_refs));
        out
    }
    fn not_inputs(&self) -> Vec<NodeId> {
        self.params.iter().flat_map(param_ids).collect()
    }
    fn changes_state(&self) -> bool {
        true
    }
    fn attaches(&self) -> bool {
        true
    }
    fn output(&self) -> Option<&'static str> {
        Some("adapter")
    }
    fn describe(&self) -> String {
        let reg = match &self.regulate {
            Some(r) => format!(" regulate {} beta {}", r.direction, r.beta),
            None => String::new(),
        };
        let (site, count) = (&self.site, self.count);
        let shapes = shapes_suffix(&self.params);
        format!("extra_neurons {site} count {count}{reg}{shapes}")
    }
}

/// Marks parameters as not trainable from here on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Freeze {
    pub params: Vec<Param>,
}

impl OpSpec for Freeze {
    fn name(&self) -> &'static str {
        "freeze"
    }
    fn refs_mut(&mut self) -> Vec<&mut NodeId> {
        self.params.iter_mut().flat_map(param_refs).collect()
    }
    fn changes_state(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        format!("freeze {}", params_text(&self.params))
    }
}
