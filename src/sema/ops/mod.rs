//! The runtime operations of a checked program: one struct per operation, and the one registry
//! ([`Op`]) that lists them.
//!
//! Each operation declares what the later stages need to know about it through [`OpSpec`]: its
//! name, the nodes it refers to and consumes, whether it reads the edit case or the model,
//! whether it changes state, what it returns, its plan line and the identity its cache key is made
//! of. The planner and the plan display read an operation only through that trait; the executor
//! runs it through its own trait (`exec::ops::Execute`). Adding an operation means its struct and
//! `OpSpec` here (in the file of its family), its builtin signature in `sema/builtins`, its
//! `Execute` in exec, and one line in each registry.

mod adapters;
mod spaces;
mod text;
mod training;
mod unike;
mod variants;

use serde::Serialize;

pub use adapters::{ExtraNeurons, Freeze, Lora};
pub use spaces::{Covariance, KnowledgeSpace, NullSpace, TopSpace};
pub use training::Train;
pub use unike::{ContrastiveEncoders, IncontextMemory, LatentIcl, Remember, TruthDirection};
pub use variants::{Adversarial, Perturb};

pub(crate) use text::shape_text;

use super::program::{NodeId, Param, ParamOwner};
use super::site::{LinearSite, Stream, StreamPoint};

/// What an operation declares about itself, read by the planner and the plan display.
pub trait OpSpec {
    /// The snake-case name of the operation, as the recipe writes it.
    fn name(&self) -> &'static str;

    /// Every node id this operation refers to, in a fixed order (the planner renumbers them).
    fn refs_mut(&mut self) -> Vec<&mut NodeId>;

    /// Ids among [`OpSpec::refs_mut`] that are not inputs: a train step's body, an adapter's
    /// references to itself (its tensors are spelled with its own id).
    fn not_inputs(&self) -> Vec<NodeId> {
        Vec::new()
    }

    /// Whether it reads the edit case (and so can only run per edit).
    fn reads_edit(&self) -> bool {
        false
    }

    /// Whether it runs the model (its result depends on the weights at that moment).
    fn reads_model(&self) -> bool {
        false
    }

    /// Whether it changes the model or the training state (adapters, freezing, memory, weights).
    fn changes_state(&self) -> bool {
        false
    }

    /// Whether it attaches a new adapter. Written in `per edit`, it attaches one per edit: in
    /// sequential editing each edit gets its own (T-Patcher's and UniKE's extra neurons), so it
    /// is never hoisted even though it does not read the edit.
    fn attaches(&self) -> bool {
        false
    }

    /// The kind of value it returns (`space`, `adapter`, …); `None` for effects.
    fn output(&self) -> Option<&'static str> {
        None
    }

    /// Whether it runs on the CPU wherever the model is (eigendecompositions run in faer).
    fn host_only(&self) -> bool {
        false
    }

    /// Its plan line: the operation with its resolved arguments.
    fn describe(&self) -> String;

    /// Lines printed under its plan line, after its body (a train step's loss and projections).
    fn detail_lines(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether attaching it changes the model's function at once (statistics read after it
    /// no longer describe the unedited model).
    fn changes_function(&self) -> bool {
        false
    }

    /// The linear layer whose weight it wraps (and may move at initialisation).
    fn wraps_linear(&self) -> Option<&LinearSite> {
        None
    }

    /// What its on-disk cache key is made of, `(kind, identity)`, when the result is worth
    /// keeping between runs (`None`: not cached). Whether a step is cached at all in a given
    /// program is the planner's decision; `cx` tells what the steps before it did.
    fn cache_identity(&self, _cx: &CacheContext<'_>) -> Option<(&'static str, String)> {
        None
    }
}

/// What the prepare steps before an operation did, for [`OpSpec::cache_identity`].
pub struct CacheContext<'a> {
    pub seed: u64,
    /// An earlier step changed the model's function ([`OpSpec::changes_function`]).
    pub function_changed: bool,
    /// Linear layers wrapped by earlier steps ([`OpSpec::wraps_linear`]).
    pub moved: &'a [LinearSite],
    /// The cache identities of earlier steps.
    pub identities: &'a dyn Fn(NodeId) -> Option<String>,
}

impl CacheContext<'_> {
    /// The cache identity of an input.
    pub fn key_of(&self, id: NodeId) -> Option<String> {
        (self.identities)(id)
    }

    /// Whether a statistic read at `stream` sees the unedited model: no earlier step changed
    /// the model's function, and the stream is not inside an adapter.
    pub fn sees_unedited_model(&self, stream: &Stream) -> bool {
        !self.function_changed
            && !matches!(
                stream.point,
                StreamPoint::LoraMid { .. } | StreamPoint::ExtraAct { .. }
            )
    }
}

/// The node ids inside a stream (the adapter it lies in).
fn stream_refs(s: &mut Stream) -> Vec<&mut NodeId> {
    match &mut s.point {
        StreamPoint::LoraMid { adapter } | StreamPoint::ExtraAct { adapter } => vec![adapter],
        _ => Vec::new(),
    }
}

/// The node ids inside a parameter: its adapter, and the adapter its input stream lies in.
fn param_refs(p: &mut Param) -> Vec<&mut NodeId> {
    let mut out = Vec::new();
    if let ParamOwner::Adapter { adapter, .. } = &mut p.owner {
        out.push(adapter);
    }
    if let Some(StreamPoint::LoraMid { adapter } | StreamPoint::ExtraAct { adapter }) =
        p.input.as_mut().map(|s| &mut s.point)
    {
        out.push(adapter);
    }
    out
}

/// [`param_refs`], by value.
fn param_ids(p: &Param) -> Vec<NodeId> {
    param_refs(&mut p.clone())
        .into_iter()
        .map(|id| *id)
        .collect()
}

/// Lists every operation once: the enum, and its view as an [`OpSpec`].
macro_rules! registry {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Every runtime operation, with resolved arguments. `REFERENCE.md` documents each one.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(rename_all = "snake_case", tag = "op")]
        pub enum Op {
            $($(#[$doc])* $name($name),)*
        }

        impl Op {
            /// What the operation declares about itself.
            pub fn spec(&self) -> &dyn OpSpec {
                match self {
                    $(Op::$name(op) => op,)*
                }
            }

            /// [`Op::spec`], mutably (for renumbering).
            pub fn spec_mut(&mut self) -> &mut dyn OpSpec {
                match self {
                    $(Op::$name(op) => op,)*
                }
            }
        }
    };
}

registry! {
    Covariance,
    NullSpace,
    TopSpace,
    KnowledgeSpace,
    Lora,
    ExtraNeurons,
    LatentIcl,
    Freeze,
    Perturb,
    Adversarial,
    IncontextMemory,
    ContrastiveEncoders,
    TruthDirection,
    Remember,
    Train,
}

impl Op {
    /// The snake-case name of the operation.
    pub fn name(&self) -> &'static str {
        self.spec().name()
    }

    /// Every node id this operation refers to, in a fixed order.
    pub fn refs_mut(&mut self) -> Vec<&mut NodeId> {
        self.spec_mut().refs_mut()
    }

    /// The ids this operation consumes, each once, in order of reference.
    pub fn inputs(&self) -> Vec<NodeId> {
        let excluded = self.spec().not_inputs();
        let mut copy = self.clone();
        let mut out: Vec<NodeId> = Vec::new();
        for id in copy.refs_mut() {
            if !excluded.contains(id) && !out.contains(id) {
                out.push(*id);
            }
        }
        out
    }

    /// See [`OpSpec::reads_edit`].
    pub fn reads_edit(&self) -> bool {
        self.spec().reads_edit()
    }

    /// See [`OpSpec::reads_model`].
    pub fn reads_model(&self) -> bool {
        self.spec().reads_model()
    }

    /// See [`OpSpec::changes_state`].
    pub fn changes_state(&self) -> bool {
        self.spec().changes_state()
    }

    /// See [`OpSpec::attaches`].
    pub fn attaches(&self) -> bool {
        self.spec().attaches()
    }
}
