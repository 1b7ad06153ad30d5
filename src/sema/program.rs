//! The checked program: every name resolved, every function inlined, every number folded.
//!
//! A [`Program`] is a flat list of [`Node`]s in execution order. Each node is one runtime
//! operation ([`Op`]) with all of its arguments resolved to plain data — numbers, symbols, sites
//! with their widths — and references to the nodes it consumes by [`NodeId`]. The planner
//! ([`crate::plan`]) schedules these nodes; the executor runs them. Nothing in here refers to a
//! name, a span or a source file, except [`Origin`], which says where a node was written.

use std::fmt;

use serde::Serialize;

pub use super::ops::Op;
use super::site::{LinearSite, Stream};
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
    /// The variable the recipe bound the node's value to (`let up_know = …`), the outermost
    /// `let` when a function's result is bound again: how run summaries name a step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Origin {
    /// The recipe's name for the node, else `at file:line:column`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("at {}", self.at),
        }
    }
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
    /// Every `layer(i, of: N)` / `layers(a..b, of: N)` and what it became, in recipe order.
    pub depths: Vec<Depth>,
}

/// A site written as a position in a paper's model (`layer(7, of: 32)`) and its resolution
/// against the bound model, for `mkedsl plan` to show both: `layer 7 of 32 → layer 1 of 6`.
/// The checker makes it (the one place layers are resolved); the plan only prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Depth {
    /// As written: `layer(7, of: 32)`.
    pub written: String,
    /// The paper's reading: `layer 7 of 32`.
    pub paper: String,
    /// The bound model's: `layer 1 of 6`; `None` without a model.
    pub model: Option<String>,
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
    /// Eigenvectors whose eigenvalue is below this fraction of the largest: transfers between
    /// models whose activations have different scales, as an absolute threshold does not.
    RelativeBelow(f64),
    /// The most smallest eigenvalues whose sum is at most this fraction of the trace: the
    /// preserved energy the null space may hold (its leak) is bounded by it.
    Energy(f64),
}

impl fmt::Display for Cut {
    /// As written in a recipe: `below: 0.02`, `relative_below: 0.001`, `energy: 0.01`, `rank: 8`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cut::Below(x) => write!(f, "below: {x}"),
            Cut::Rank(r) => write!(f, "rank: {r}"),
            Cut::RelativeBelow(x) => write!(f, "relative_below: {x}"),
            Cut::Energy(x) => write!(f, "energy: {x}"),
        }
    }
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
    /// [`Perturbation::MaskVision`] with the window given as a share of the image's tokens,
    /// so that ELoRA's 24 of LLaVA-1.5's 576 tokens means the same 4 % of any image. The window
    /// is [`share_window`] of the edit case's image tokens at run time; `tokens` is the
    /// model's count when the recipe was checked against one, for the plan.
    MaskVisionShare { share: f64, tokens: Option<usize> },
    /// Add Gaussian noise of standard deviation `sigma` to `embed.text`.
    NoiseText { sigma: f64 },
    /// [`Perturbation::NoiseText`] with `sigma = relative × rms`, where `rms` is the root mean
    /// square over every entry of the clean edit case's prompt text-token embeddings (the rows
    /// the noise is added to): a scale read in the model's own embedding units, since an
    /// absolute σ means a different signal-to-noise ratio in every model.
    NoiseTextRelative { relative: f64 },
}

/// The mask window of `share` of `tokens` image tokens: `max(1, round(share × tokens))`,
/// never more than `tokens` (for a share in (0, 1]).
pub fn share_window(share: f64, tokens: usize) -> usize {
    ((share * tokens as f64).round() as usize).clamp(1, tokens.max(1))
}

/// How ELoRA's filter scores a variant's principal subspace against the clean one's (Eq. 9).
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
pub enum Similarity {
    /// The paper's `s = ‖U_bᵀU_0‖²_F / k`: 1 for the same subspace, 0 for orthogonal ones.
    Literal,
    /// `(s − k/r) / (1 − k/r)` for top-`k` subspaces of an `r`-wide stream: 0 for the score a
    /// uniformly random `k`-dimensional subspace gets in expectation (`k/r`), 1 for the same
    /// subspace. The literal score's floor depends on the width, so a threshold such as ELoRA's
    /// 0.05 (written for r = 128, k unpublished) means something else at another width; this
    /// one reads "better than chance by this much" at any width.
    ChanceCorrected,
}

/// How ASAM's budget ε bounds the adversarial δ (Eq. 5 leaves the norm's domain open).
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
pub enum BudgetScale {
    /// One ball over every coordinate of the joint latent: `‖δ‖ ≤ ε` (ASAM's literal reading).
    Absolute,
    /// Each token's δ alone: `‖δ_t‖ ≤ ε`, so the budget does not shrink per token as the
    /// sequence (576 image tokens in LLaVA, 36 here) grows.
    PerToken,
    /// `‖δ‖ ≤ ε·‖z‖` for the clean joint latent `z`: a budget in units of the latent's own size.
    Relative,
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
