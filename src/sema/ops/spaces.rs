//! Statistics of activations and the subspaces cut from them (ELoRA §3.3-3.4, LPEdit §3.2).

use serde::Serialize;

use super::{stream_refs, CacheContext, OpSpec};
use crate::sema::program::{Cut, DataSpec, NodeId, Similarity};
use crate::sema::site::Stream;
use crate::sema::Symbol;

/// Uncentred second moment `XᵀX / N` of `stream` over the samples of `over`, one per layer.
/// Shape `[d, d]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Covariance {
    pub stream: Stream,
    pub over: DataSpec,
}

impl OpSpec for Covariance {
    fn name(&self) -> &'static str {
        "covariance"
    }
    fn refs_mut(&mut self) -> Vec<&mut NodeId> {
        stream_refs(&mut self.stream)
    }
    fn reads_model(&self) -> bool {
        true
    }
    fn output(&self) -> Option<&'static str> {
        Some("covariance")
    }
    fn describe(&self) -> String {
        format!("covariance {} over {}", self.stream, self.over)
    }
    fn cache_identity(&self, cx: &CacheContext<'_>) -> Option<(&'static str, String)> {
        cx.sees_unedited_model(&self.stream).then(|| {
            let (stream, over, seed) = (&self.stream.path, &self.over, cx.seed);
            let id = format!("covariance(stream: {stream}; over: {over}; seed: {seed})");
            ("covariance", id)
        })
    }
}

/// Projector onto the eigenvectors of a covariance cut by `cut` (small eigenvalues).
/// Shape `[d, d]`; `rank` is the space's dimension when known before running.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NullSpace {
    pub covariance: NodeId,
    pub cut: Cut,
    pub rank: Option<usize>,
}

impl OpSpec for NullSpace {
    fn name(&self) -> &'static str {
        "null_space"
    }
    fn refs_mut(&mut self) -> Vec<&mut NodeId> {
        vec![&mut self.covariance]
    }
    fn output(&self) -> Option<&'static str> {
        Some("space")
    }
    fn host_only(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        let c = self.covariance;
        match self.cut {
            Cut::Below(x) => format!("null_space of {c} below {x}"),
            Cut::Rank(r) => format!("null_space of {c} rank {r}"),
            Cut::RelativeBelow(x) => format!("null_space of {c} relative_below {x}"),
            Cut::Energy(x) => format!("null_space of {c} energy {x}"),
        }
    }
    fn cache_identity(&self, cx: &CacheContext<'_>) -> Option<(&'static str, String)> {
        let k = cx.key_of(self.covariance)?;
        // The spellings of `below` and `rank` keys are those of entries written before the
        // other cuts existed, so those stay valid.
        Some(match self.cut {
            Cut::Below(x) => ("space", format!("null_space({k}; below: {x:?})")),
            Cut::Rank(r) => ("space", format!("null_space({k}; rank: {r})")),
            Cut::RelativeBelow(x) => ("space", format!("null_space({k}; relative_below: {x:?})")),
            Cut::Energy(x) => ("space", format!("null_space({k}; energy: {x:?})")),
        })
    }
}

/// Projector onto the `rank` eigenvectors with the largest eigenvalues. Shape `[d, d]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopSpace {
    pub covariance: NodeId,
    pub rank: usize,
}

impl OpSpec for TopSpace {
    fn name(&self) -> &'static str {
        "top_space"
    }
    fn refs_mut(&mut self) -> Vec<&mut NodeId> {
        vec![&mut self.covariance]
    }
    fn output(&self) -> Option<&'static str> {
        Some("space")
    }
    fn host_only(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        format!("top_space of {} rank {}", self.covariance, self.rank)
    }
    fn cache_identity(&self, cx: &CacheContext<'_>) -> Option<(&'static str, String)> {
        let k = cx.key_of(self.covariance)?;
        Some(("space", format!("top_space({k}; rank: {})", self.rank)))
    }
}

/// ELoRA Alg. 1 lines 11-23: per-variant covariance of `stream`, its top-`top` principal
/// subspace `P_b`, similarity `tr(P_b P_0) / top` to the clean input's, keep those
/// `> keep_above`, average the kept covariances, projector on the top-`rank` eigenvectors.
/// Shape `[d, d]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KnowledgeSpace {
    pub stream: Stream,
    pub variants: NodeId,
    pub top: usize,
    pub keep_above: f64,
    pub rank: usize,
    /// The score `keep_above` is compared with.
    pub similarity: Similarity,
}

impl OpSpec for KnowledgeSpace {
    fn name(&self) -> &'static str {
        "knowledge_space"
    }
    fn refs_mut(&mut self) -> Vec<&mut NodeId> {
        let mut out = stream_refs(&mut self.stream);
        out.push(&mut self.variants);
        out
    }
    fn reads_model(&self) -> bool {
        true
    }
    fn output(&self) -> Option<&'static str> {
        Some("space")
    }
    fn describe(&self) -> String {
        let Self {
            stream,
            variants,
            top,
            keep_above,
            rank,
            similarity,
        } = self;
        // The paper's score is the default and left out, so existing plans read the same.
        let similarity = match similarity {
            Similarity::Literal => String::new(),
            other => format!(" ({} similarity)", other.name()),
        };
        format!("knowledge_space {stream} from {variants} top {top} keep_above {keep_above}{similarity} rank {rank}")
    }
}
