//! The checked program: every name resolved, every function inlined, every number folded.
//!
//! A [`Program`] is a flat list of [`Node`]s in execution order. Each node is one runtime
//! operation ([`Op`]) with all of its arguments resolved to plain data — numbers, symbols, sites
//! with their widths — and references to the nodes it consumes by [`NodeId`]. The planner
//! ([`crate::plan`]) schedules these nodes; the executor runs them. Nothing in here refers to a
//! name, a span or a source file, except [`Origin`], which says where a node was written.

use std::fmt;

use serde::Serialize;

use super::site::{ComponentSite, LinearSite, Stream};
use crate::model::config::ModelDims;

/// Identifies a node (and, after planning, a step). Printed as `#n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// How edit cases are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Mode {
    /// Every case starts from the prepared model; the model is restored after each case.
    Single,
    /// Cases accumulate in sequences of `k`; metrics are taken after the `k`-th edit of a sequence.
    Sequential { k: usize },
}

/// The five MMEdit metrics. Their names (`rel`, `t_gen`, …) are the one table the checker, the
/// plan and the reports use (`Metric::VARIANTS`, [`Metric::name`]).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    strum::VariantNames,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Metric {
    Rel,
    TGen,
    MGen,
    TLoc,
    MLoc,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::Rel,
        Metric::TGen,
        Metric::MGen,
        Metric::TLoc,
        Metric::MLoc,
    ];

    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// The recipe header, with defaults applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recipe {
    pub name: String,
    pub paper: Option<String>,
    pub mode: Mode,
    pub seed: u64,
}

/// Where a node was written: the recipe location, and the functions it was inlined through.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Origin {
    /// `file:line:column` in the recipe (the outermost call site when inlined).
    pub at: String,
    /// Functions the node was inlined through, outermost first.
    pub via: Vec<String>,
}

/// Which block a node was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "block")]
pub enum Block {
    /// Top level: once per run.
    Run,
    /// Inside `per edit { }`: once per edit case.
    Edit,
    /// Inside the body of the `train` node `train`: once per optimisation step.
    Step { train: NodeId },
}

/// One checked operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    pub id: NodeId,
    pub block: Block,
    pub op: Op,
    /// The shape of what the node produces, when the model is bound (see [`Op`] for each meaning).
    pub shape: Option<Vec<usize>>,
    pub origin: Origin,
}

/// The output of the checker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Program {
    pub recipe: Recipe,
    /// The recipe file as given.
    pub source: String,
    /// The dimensions the program was checked against, if a model was bound.
    pub model: Option<ModelDims>,
    pub nodes: Vec<Node>,
    pub metrics: Vec<Metric>,
}

/// A data set drawn from the model's own pools (never from the edit cases), deterministically
/// from the recipe's seed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case", tag = "data")]
pub enum DataSpec {
    /// Preserved-knowledge samples: text-only QA, image QA and image captions.
    Preserve {
        text: usize,
        vqa: usize,
        caption: usize,
    },
    /// UniKE's (question, true answer, hallucinated answer) triplets.
    Hallucinations { count: usize },
}

impl fmt::Display for DataSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSpec::Preserve { text, vqa, caption } => {
                let parts: Vec<String> = [("text", text), ("vqa", vqa), ("caption", caption)]
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(k, n)| format!("{k}: {n}"))
                    .collect();
                write!(f, "preserve({})", parts.join(", "))
            }
            DataSpec::Hallucinations { count } => write!(f, "hallucinations(count: {count})"),
        }
    }
}

/// How a null space is cut from a covariance's eigenvalues.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "cut", content = "value")]
pub enum Cut {
    /// Eigenvectors whose eigenvalue is below this threshold.
    Below(f64),
    /// The `n` eigenvectors with the smallest eigenvalues.
    Rank(usize),
}

/// A trainable tensor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Param {
    /// Spelling for plans and messages: `layer(1).mlp.down_proj.weight`, `#4.B`.
    pub path: String,
    pub owner: ParamOwner,
    /// The stream its columns multiply: a space projecting this parameter must live there.
    /// `None` for tensors that multiply no activation (a bias, UniKE's `W_ζ`).
    pub input: Option<Stream>,
    /// `[rows, columns]` per layer, when known.
    pub shape: Option<Vec<usize>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ParamOwner {
    /// The model's own weight of a projection (`site.weight`).
    Weight { site: LinearSite },
    /// A tensor of an adapter node.
    Adapter { adapter: NodeId, name: AdapterParam },
}

/// The trainable tensors adapters own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterParam {
    /// LoRA `A`, `[r, din]`.
    A,
    /// LoRA `B`, `[dout, r]`.
    B,
    /// Extra FFN keys `W_K^extra`, `[count, hidden]`.
    Keys,
    /// Extra FFN key bias `b_K^extra`, `[count]`.
    KeyBias,
    /// Extra FFN values `W_V^extra`, `[hidden, count]`.
    Values,
    /// UniKE's `W_ζ`, mapping ζ to the representation space, `[hidden, encoder width]`.
    ZetaMap,
}

impl AdapterParam {
    pub fn name(self) -> &'static str {
        match self {
            AdapterParam::A => "A",
            AdapterParam::B => "B",
            AdapterParam::Keys => "keys",
            AdapterParam::KeyBias => "key_bias",
            AdapterParam::Values => "values",
            AdapterParam::ZetaMap => "zeta_map",
        }
    }
}

/// How LoRA's `A` and `B` start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "init")]
pub enum LoraInit {
    /// `A` Kaiming-uniform, `B` zero: `ΔW = 0` at the start (Hu et al.).
    Kaiming,
    /// ELoRA Eq. 8: top-`r` SVD of `W·P` (`P` the space's projector), `B = U√Σ`, `A = √Σ Vᵀ`,
    /// then `W ← W − (alpha/rank)·BA` so the adapted layer starts equal to the original.
    NullSpaceSvd { space: NodeId },
}

/// UniKE Eq. 6: values shifted by `beta · W_ζ ζ`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Regulation {
    pub direction: NodeId,
    pub beta: f64,
}

/// How much of the retrieved in-context state enters the attention output (UniKE Eq. 2, 7).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "alpha")]
pub enum Alpha {
    /// `out = α·h_input + (1 − α)·h_know` with a fixed α.
    Fixed { value: f64 },
    /// α = cosine similarity of the semantic encodings of `h_know` and of the last input token,
    /// clamped to [0, 1].
    SemanticGate { encoders: NodeId },
}

/// A set of symbols a recipe may write for one argument, with the enum it means: the enum's
/// names are the one table for the checker (`Accept::Symbols(T::VARIANTS)`), the builtins
/// ([`Symbol::parse`]) and the plan display ([`Symbol::name`]).
pub trait Symbol: Copy + Into<&'static str> + std::str::FromStr + strum::VariantNames {
    fn name(self) -> &'static str {
        self.into()
    }

    fn parse(symbol: &str) -> Option<Self> {
        symbol.parse().ok()
    }
}

impl<T: Copy + Into<&'static str> + std::str::FromStr + strum::VariantNames> Symbol for T {}

/// One way of perturbing the edit case's input (ELoRA Appendix C.2).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Perturbation {
    /// Zero a random window of `window` consecutive image tokens in `embed.vision`.
    MaskVision { window: usize },
    /// Add Gaussian noise of standard deviation `sigma` to `embed.text`.
    NoiseText { sigma: f64 },
}

/// How several perturbation kinds combine.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    strum::VariantNames,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Apply {
    /// Variant `b` uses kind `b mod n` only.
    Each,
    /// Every variant applies every kind.
    All,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    strum::VariantNames,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum AdvInit {
    /// δ starts uniformly inside the ε-ball.
    Random,
    /// δ starts at zero.
    Zero,
}

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    strum::VariantNames,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Norm {
    L2,
    Linf,
}

/// Where a hidden state is pooled over the sequence.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    strum::VariantNames,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Pool {
    /// The last token of the whole input (prompt and target).
    Last,
    /// The last token of the prompt, before the answer.
    LastPrompt,
    /// The mean over all tokens.
    Mean,
}

/// A feature vector read at a stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HiddenSpec {
    pub stream: Stream,
    pub at: Pool,
}

/// ASAM's treatment of the clean sample's hidden state in the alignment loss.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    strum::VariantNames,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Anchor {
    /// No gradient flows through the clean sample (Eq. 11).
    Detached,
    /// Gradients flow through every sample.
    Attached,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "optimizer")]
pub enum Optimizer {
    /// `p ← p − lr·g`.
    Sgd { lr: f64 },
    /// Adam with bias correction and ε = 1e-8; `weight_decay` is decoupled (AdamW).
    Adam {
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
    },
}

/// One weighted term of a training loss.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LossTerm {
    pub weight: f64,
    pub kind: LossKind,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "loss")]
pub enum LossKind {
    /// Teacher-forced NLL of the edit target given the edit case's image and prompt; with `on`,
    /// the mean over the clean input and every variant.
    Nll { on: Option<NodeId> },
    /// `KL(p_original ‖ p_current)` of next-token distributions at every position of preserved
    /// samples, averaged.
    KlToOriginal { over: DataSpec },
    /// ASAM Eq. 10: `−log softmax(σ/τ)₁` over the singular values of the ℓ2-normalised hidden
    /// states of the clean input and each variant.
    RankAlign {
        hidden: HiddenSpec,
        over: NodeId,
        tau: f64,
        anchor: Anchor,
    },
}

/// When a projection acts in a training step: the one enum for it, from the syntax tree on.
pub use crate::syntax::ast::ProjectKind;

/// A `project` line of a train body, resolved in sema to the trained tensors it acts on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Projection {
    pub kind: ProjectKind,
    /// Which of the train step's `params` it projects.
    pub param: usize,
    /// The parameter as written: `layer(2).mlp.down_proj.weight`, `#4.B`.
    pub path: String,
    /// The layers of that parameter it acts on, when it names part of a weight trained at more
    /// layers (`project grad layer(2)…` inside `train layers(1..)…`); `None`: every layer.
    pub layers: Option<Vec<usize>>,
    pub space: NodeId,
    /// The projector is multiplied by this (LPEdit's 1/(1+λ)).
    pub scale: f64,
}

impl Projection {
    /// Whether it acts on the tensor of parameter `param` at `layer`.
    pub fn covers(&self, param: usize, layer: usize) -> bool {
        self.param == param && self.layers.as_ref().is_none_or(|ls| ls.contains(&layer))
    }
}

/// Every runtime operation, with resolved arguments. `REFERENCE.md` documents each one.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Op {
    /// Uncentred second moment `XᵀX / N` of `stream` over the samples of `over`, one per layer.
    /// Shape `[d, d]`.
    Covariance { stream: Stream, over: DataSpec },
    /// Projector onto the eigenvectors of a covariance cut by `cut` (small eigenvalues).
    /// Shape `[d, d]`; `rank` is the space's dimension when known before running.
    NullSpace {
        covariance: NodeId,
        cut: Cut,
        rank: Option<usize>,
    },
    /// Projector onto the `rank` eigenvectors with the largest eigenvalues. Shape `[d, d]`.
    TopSpace { covariance: NodeId, rank: usize },
    /// ELoRA Alg. 1 lines 11-23: per-variant covariance of `stream`, its top-`top` principal
    /// subspace `P_b`, similarity `tr(P_b P_0) / top` to the clean input's, keep those
    /// `> keep_above`, average the kept covariances, projector on the top-`rank` eigenvectors.
    /// Shape `[d, d]`.
    KnowledgeSpace {
        stream: Stream,
        variants: NodeId,
        top: usize,
        keep_above: f64,
        rank: usize,
    },
    /// Attaches `W + (alpha / rank)·BA` at `site`.
    Lora {
        site: LinearSite,
        rank: usize,
        alpha: f64,
        init: LoraInit,
        params: Vec<Param>,
    },
    /// UniKE Eq. 3 (and Eq. 6 with `regulate`): `count` extra key-value pairs in the MLP of each
    /// layer, `FFN(q) + V·act(K q + b)` with the model's activation; `K ~ N(0, 0.02²)`, `b = 0`,
    /// `V = 0` (and `W_ζ = 0`), so the model is unchanged until trained. With `regulate`, the
    /// values are `V + beta·W_ζ ζ`.
    ExtraNeurons {
        site: ComponentSite,
        count: usize,
        regulate: Option<Regulation>,
        params: Vec<Param>,
    },
    /// UniKE Eq. 2/7: at `site` (attention output), retrieve the `top_k` memory entries whose
    /// `h_sem` is most cosine-similar to the layer input, attend over their `h_pos` with the
    /// layer input as query, and mix into the attention output with `alpha`.
    LatentIcl {
        site: Stream,
        memory: NodeId,
        top_k: usize,
        alpha: Alpha,
    },
    /// Marks parameters as not trainable from here on.
    Freeze { params: Vec<Param> },
    /// `count` perturbed copies of the edit case's input. Shape `[count]`.
    Perturb {
        kinds: Vec<Perturbation>,
        count: usize,
        apply: Apply,
    },
    /// ASAM LAR (Eq. 4-5): `count` variants `z + δ`, `‖δ‖ ≤ budget`, of the edit case's latents,
    /// each by `steps` steps of projected gradient ascent on the NLL of the target (step size
    /// `budget / steps`, direction the gradient normalised in `norm`). Shape `[count]`.
    Adversarial {
        latents: Vec<Stream>,
        budget: f64,
        count: usize,
        steps: usize,
        init: AdvInit,
        norm: Norm,
    },
    /// UniKE §3.3: for each triplet `(Q, A+, A−)`, `h_sem` (last question token), `h_pos`, `h_neg`
    /// (last token of `Q + A±`) read at `at`. Shape `[entries, width]`.
    IncontextMemory { triplets: DataSpec, at: Stream },
    /// UniKE Eq. 4-5: truthfulness and semantic MLP encoders (`depth` linear layers `hidden` wide,
    /// GELU between; similarity = cosine) per
    /// memory layer, trained contrastively with Adam. Shape `[width, hidden]`.
    ContrastiveEncoders {
        memory: NodeId,
        hidden: usize,
        depth: usize,
        lr: f64,
        steps: usize,
        batch: usize,
    },
    /// UniKE §3.3: ζ = mean truthfulness encoding of `h_pos` − that of `h_neg`. Shape `[hidden]`.
    TruthDirection { encoders: NodeId },
    /// Adds the edit case (`h_sem`, and `h_pos` of prompt + target) to a memory, read with that
    /// memory's own in-context shift switched off.
    Remember { memory: NodeId },
    /// Runs `steps` optimisation steps: the `body` (per-step variants), the forward passes of
    /// `loss` (the weighted sum of its terms), backward, the `grad` projections, the optimiser's
    /// update, the `update` projections, apply. A projection right-multiplies a gradient (or
    /// update) by its space's projector, times its scale.
    Train {
        params: Vec<Param>,
        steps: usize,
        optimizer: Optimizer,
        body: Vec<NodeId>,
        loss: Vec<LossTerm>,
        projections: Vec<Projection>,
    },
}

impl Op {
    /// The snake-case name of the operation.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Covariance { .. } => "covariance",
            Op::NullSpace { .. } => "null_space",
            Op::TopSpace { .. } => "top_space",
            Op::KnowledgeSpace { .. } => "knowledge_space",
            Op::Lora { .. } => "lora",
            Op::ExtraNeurons { .. } => "extra_neurons",
            Op::LatentIcl { .. } => "latent_icl",
            Op::Freeze { .. } => "freeze",
            Op::Perturb { .. } => "perturb",
            Op::Adversarial { .. } => "adversarial",
            Op::IncontextMemory { .. } => "incontext_memory",
            Op::ContrastiveEncoders { .. } => "contrastive_encoders",
            Op::TruthDirection { .. } => "truth_direction",
            Op::Remember { .. } => "remember",
            Op::Train { .. } => "train",
        }
    }

    /// Every node id this operation refers to, in a fixed order.
    pub fn refs_mut(&mut self) -> Vec<&mut NodeId> {
        fn param_refs(p: &mut Param) -> Vec<&mut NodeId> {
            let mut out = Vec::new();
            if let ParamOwner::Adapter { adapter, .. } = &mut p.owner {
                out.push(adapter);
            }
            if let Some(
                super::site::StreamPoint::LoraMid { adapter }
                | super::site::StreamPoint::ExtraAct { adapter },
            ) = p.input.as_mut().map(|s| &mut s.point)
            {
                out.push(adapter);
            }
            out
        }
        fn stream_refs(s: &mut Stream) -> Vec<&mut NodeId> {
            match &mut s.point {
                super::site::StreamPoint::LoraMid { adapter }
                | super::site::StreamPoint::ExtraAct { adapter } => {
                    vec![adapter]
                }
                _ => Vec::new(),
            }
        }
        match self {
            Op::Covariance { stream, .. } => stream_refs(stream),
            Op::NullSpace { covariance, .. } | Op::TopSpace { covariance, .. } => vec![covariance],
            Op::KnowledgeSpace {
                stream, variants, ..
            } => {
                let mut out = stream_refs(stream);
                out.push(variants);
                out
            }
            Op::Lora { init, params, .. } => {
                let mut out = Vec::new();
                if let LoraInit::NullSpaceSvd { space } = init {
                    out.push(space);
                }
                out.extend(params.iter_mut().flat_map(param_refs));
                out
            }
            Op::ExtraNeurons {
                regulate, params, ..
            } => {
                let mut out = Vec::new();
                if let Some(r) = regulate {
                    out.push(&mut r.direction);
                }
                out.extend(params.iter_mut().flat_map(param_refs));
                out
            }
            Op::LatentIcl {
                site,
                memory,
                alpha,
                ..
            } => {
                let mut out = stream_refs(site);
                out.push(memory);
                if let Alpha::SemanticGate { encoders } = alpha {
                    out.push(encoders);
                }
                out
            }
            Op::Freeze { params } => params.iter_mut().flat_map(param_refs).collect(),
            Op::Perturb { .. } | Op::Adversarial { .. } => Vec::new(),
            Op::IncontextMemory { at, .. } => stream_refs(at),
            Op::ContrastiveEncoders { memory, .. } => vec![memory],
            Op::TruthDirection { encoders } => vec![encoders],
            Op::Remember { memory } => vec![memory],
            Op::Train {
                params,
                body,
                loss,
                projections,
                ..
            } => {
                let mut out: Vec<&mut NodeId> = params.iter_mut().flat_map(param_refs).collect();
                out.extend(body.iter_mut());
                out.extend(loss.iter_mut().flat_map(|t| match &mut t.kind {
                    LossKind::Nll { on } => on.iter_mut().collect::<Vec<_>>(),
                    LossKind::KlToOriginal { .. } => Vec::new(),
                    LossKind::RankAlign { hidden, over, .. } => {
                        let mut out = stream_refs(&mut hidden.stream);
                        out.push(over);
                        out
                    }
                }));
                out.extend(projections.iter_mut().map(|p| &mut p.space));
                out
            }
        }
    }

    /// The ids this operation consumes: a train step's `body` is excluded, and so are an
    /// adapter's references to itself (its tensors are spelled with its own id).
    pub fn inputs(&self) -> Vec<NodeId> {
        let mut copy = match self {
            Op::Lora { init, .. } => match init {
                LoraInit::NullSpaceSvd { space } => return vec![*space],
                LoraInit::Kaiming => return Vec::new(),
            },
            Op::ExtraNeurons { regulate, .. } => {
                return regulate.iter().map(|r| r.direction).collect()
            }
            other => other.clone(),
        };
        let body: Vec<NodeId> = match self {
            Op::Train { body, .. } => body.clone(),
            _ => Vec::new(),
        };
        let mut out: Vec<NodeId> = Vec::new();
        for id in copy.refs_mut() {
            if !body.contains(id) && !out.contains(id) {
                out.push(*id);
            }
        }
        out
    }

    /// Whether the operation reads the edit case (and so can only run per edit).
    pub fn reads_edit(&self) -> bool {
        matches!(
            self,
            Op::Perturb { .. } | Op::Adversarial { .. } | Op::Remember { .. } | Op::Train { .. }
        )
    }

    /// Whether the operation runs the model (its result depends on the weights at that moment).
    pub fn reads_model(&self) -> bool {
        matches!(
            self,
            Op::Covariance { .. }
                | Op::KnowledgeSpace { .. }
                | Op::Lora {
                    init: LoraInit::NullSpaceSvd { .. },
                    ..
                }
                | Op::Adversarial { .. }
                | Op::IncontextMemory { .. }
                | Op::Remember { .. }
        )
    }

    /// Whether the operation changes the model or the training state (adapters, freezing,
    /// memory, weights).
    pub fn changes_state(&self) -> bool {
        matches!(
            self,
            Op::Lora { .. }
                | Op::ExtraNeurons { .. }
                | Op::LatentIcl { .. }
                | Op::Freeze { .. }
                | Op::Remember { .. }
                | Op::Train { .. }
        )
    }

    /// Whether the operation attaches a new adapter. Written in `per edit`, it attaches one per
    /// edit: in sequential editing each edit gets its own (T-Patcher's and UniKE's extra
    /// neurons), so it is never hoisted even though it does not read the edit.
    pub fn attaches(&self) -> bool {
        matches!(
            self,
            Op::Lora { .. } | Op::ExtraNeurons { .. } | Op::LatentIcl { .. }
        )
    }
}
