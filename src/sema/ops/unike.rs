//! UniKE's intrinsic and in-context knowledge (§3.2-3.3): latent in-context learning, its
//! memory, the contrastive encoders and the truthfulness direction ζ.

use serde::Serialize;

use super::{stream_refs, CacheContext, OpSpec};
use crate::sema::program::{Alpha, DataSpec, NodeId};
use crate::sema::site::Stream;

/// UniKE Eq. 2/7: at `site` (attention output), retrieve the `top_k` memory entries whose
/// `h_sem` is most cosine-similar to the layer input, attend over their `h_pos` with the
/// layer input as query, and mix into the attention output with `alpha`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LatentIcl {
    pub site: Stream,
    pub memory: NodeId,
    pub top_k: usize,
    pub alpha: Alpha,
}

impl OpSpec for LatentIcl {
    fn name(&self) -> &'static str {
        "latent_icl"
    }
    fn refs_mut(&mut self) -> Vec<&mut NodeId> {
        let mut out = stream_refs(&mut self.site);
        out.push(&mut self.memory);
        if let Alpha::SemanticGate { encoders } = &mut self.alpha {
            out.push(encoders);
        }
        out
    }
    fn changes_state(&self) -> bool {
        true
    }
    fn attaches(&self) -> bool {
        true
    }
    fn changes_function(&self) -> bool {
        true
    }
    fn output(&self) -> Option<&'static str> {
        Some("adapter")
    }
    fn describe(&self) -> String {
        let alpha = match self.alpha {
            Alpha::Fixed { value } => value.to_string(),
            Alpha::SemanticGate { encoders } => format!("semantic_gate({encoders})"),
        };
        let (site, memory, top_k) = (&self.site, self.memory, self.top_k);
        format!("latent_icl {site} memory {memory} top_k {top_k} alpha {alpha}")
    }
}

/// UniKE §3.3: for each triplet `(Q, A+, A−)`, `h_sem` (last question token), `h_pos`, `h_neg`
/// (last token of `Q + A±`) read at `at`. Shape `[entries, width]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncontextMemory {
    pub triplets: DataSpec,
    pub at: Stream,
}

impl OpSpec for IncontextMemory {
    fn name(&self) -> &'static str {
        "incontext_memory"
    }
    fn refs_mut(&mut self) -> Vec<&mut NodeId> {
        stream_refs(&mut self.at)
    }
    fn reads_model(&self) -> bool {
        true
    }
    fn output(&self) -> Option<&'static str> {
        Some("memory")
    }
    fn describe(&self) -> String {
        format!("incontext_memory {} of {}", self.at, self.triplets)
    }
    fn cache_identity(&self, cx: &CacheContext<'_>) -> Option<(&'static str, String)> {
        cx.sees_unedited_model(&self.at).then(|| {
            let (at, triplets, seed) = (&self.at.path, &self.triplets, cx.seed);
            let id = format!("incontext_memory(at: {at}; triplets: {triplets}; seed: {seed})");
            ("memory", id)
        })
    }
}

/// UniKE Eq. 4-5: truthfulness and semantic MLP encoders (`depth` linear layers `hidden` wide,
/// GELU between; similarity = cosine) per memory layer, trained contrastively with Adam.
/// Shape `[width, hidden]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContrastiveEncoders {
    pub memory: NodeId,
    pub hidden: usize,
    pub depth: usize,
    pub lr: f64,
    pub steps: usize,
    pub batch: usize,
}

impl OpSpec for ContrastiveEncoders {
    fn name(&self) -> &'static str {
        "contrastive_encoders"
    }
    fn refs_mut(&mut self) -> Vec<&mut NodeId> {
        vec![&mut self.memory]
    }
    fn output(&self) -> Option<&'static str> {
        Some("encoders")
    }
    fn describe(&self) -> String {
        let Self {
            memory,
            hidden,
            depth,
            lr,
            steps,
            batch,
        } = self;
        format!("contrastive_encoders on {memory} hidden {hidden} depth {depth} lr {lr} steps {steps} batch {batch}")
    }
    fn cache_identity(&self, cx: &CacheContext<'_>) -> Option<(&'static str, String)> {
        let k = cx.key_of(self.memory)?;
        let Self {
            hidden,
            depth,
            lr,
            steps,
            batch,
            ..
        } = self;
        let seed = cx.seed;
        Some(("encoders", format!(
            "contrastive_encoders({k}; hidden: {hidden}; depth: {depth}; lr: {lr:?}; steps: {steps}; batch: {batch}; centred, semantic to state width, temperature 0.1; seed: {seed})"
        )))
    }
}

/// UniKE §3.3: ζ = mean truthfulness encoding of `h_pos` − that of `h_neg`. Shape `[hidden]`.
/// Cheaper to recompute than to read, so never cached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TruthDirection {
    pub encoders: NodeId,
}

impl OpSpec for TruthDirection {
    fn name(&self) -> &'static str {
        "truth_direction"
    }
    fn refs_mut(&mut self) -> Vec<&mut NodeId> {
        vec![&mut self.encoders]
    }
    fn output(&self) -> Option<&'static str> {
        Some("direction")
    }
    fn describe(&self) -> String {
        format!("truth_direction of {}", self.encoders)
    }
}

/// Adds the edit case (`h_sem`, and `h_pos` of prompt + target) to a memory, read with that
/// memory's own in-context shift switched off.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Remember {
    pub memory: NodeId,
}

impl OpSpec for Remember {
    fn name(&self) -> &'static str {
        "remember"
    }
    fn refs_mut(&mut self) -> Vec<&mut NodeId> {
        vec![&mut self.memory]
    }
    fn reads_edit(&self) -> bool {
        true
    }
    fn reads_model(&self) -> bool {
        true
    }
    fn changes_state(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        format!("remember edit case into {}", self.memory)
    }
}
