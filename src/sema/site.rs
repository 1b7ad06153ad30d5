//! Sites: the model-independent names a recipe uses for places in a decoder.
//!
//! Following pyvene, a recipe never names a tensor. It names a layer (or a range of layers), a
//! component, a projection and a stream; the checker maps these to widths through the model
//! family's dimensions ([`crate::model::config::ModelDims`]) and the executor maps them to tensors.
//! Several spellings can name one stream (`mlp.down_proj.input` is `mlp.act`); [`StreamPoint::canonical`]
//! decides when two spellings are the same place.

use std::fmt;

use serde::Serialize;

use super::program::NodeId;

/// Decoder layers as written (`layer(-1)`, `layers(2..6)`), and — when a model is bound — the
/// absolute indices they mean.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Layers {
    /// Python-style bounds: `start` inclusive, `end` exclusive or open; negative counts from the end.
    pub start: i64,
    pub end: Option<i64>,
    /// Written as `layer(i)` rather than `layers(a..b)`.
    pub single: bool,
    /// Absolute, ascending layer indices; `None` until a model is bound.
    pub resolved: Option<Vec<usize>>,
    /// `of: N`: `start`/`end` are positions in a model of `N` layers (a paper's "layer 7 of 32"),
    /// resolved against the bound model's depth by [`Layers::scale`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub of: Option<i64>,
}

impl Layers {
    /// `layer(i)`.
    pub fn one(index: i64) -> Self {
        let end = if index == -1 {
            None
        } else {
            Some(index.saturating_add(1))
        };
        Layers {
            start: index,
            end,
            single: true,
            resolved: None,
            of: None,
        }
    }

    /// `layers(start..end)`.
    pub fn range(start: Option<i64>, end: Option<i64>) -> Self {
        Layers {
            start: start.unwrap_or(0),
            end,
            single: false,
            resolved: None,
            of: None,
        }
    }

    /// The same selection written as a position in a model of `of` layers.
    pub fn of_depth(self, of: i64) -> Self {
        Layers {
            of: Some(of),
            ..self
        }
    }

    /// Index `i` of a model of `of` layers mapped to a model of `n` layers: `round(i·n/of)`,
    /// halves rounded up, in integers so no float decides a layer. Rounding to the nearest
    /// layer keeps the relative depth the paper chose (7 of 32 is 22 % deep; 1 of 6 is 17 %,
    /// 2 of 6 would be 33 %); flooring would drift every site toward the input. The caller
    /// clamps the result to the model.
    pub fn scale(i: i64, of: i64, n: i64) -> i64 {
        (2 * i * n + of) / (2 * of)
    }

    /// The paper's reading of an `of:` selection: `layer 7 of 32`, `layers 18–31 of 32`.
    pub fn paper_text(&self) -> Option<String> {
        let of = self.of?;
        Some(if self.single {
            format!("layer {} of {of}", self.start)
        } else {
            format!(
                "layers {}–{} of {of}",
                self.start,
                self.end.unwrap_or(of) - 1
            )
        })
    }

    /// The resolved layers in the same words: `layer 1 of 6`, `layers 3–5 of 6`.
    pub fn model_text(&self, n: usize) -> Option<String> {
        Some(match self.resolved.as_deref()? {
            [one] => format!("layer {one} of {n}"),
            [first, .., last] => format!("layers {first}–{last} of {n}"),
            [] => return None,
        })
    }

    /// Whether two selections certainly name the same layers.
    pub fn same(&self, other: &Layers) -> bool {
        match (&self.resolved, &other.resolved) {
            (Some(a), Some(b)) => a == b,
            _ => self.start == other.start && self.end == other.end && self.of == other.of,
        }
    }

    /// Whether every layer of `self` is also in `other`.
    pub fn within(&self, other: &Layers) -> bool {
        match (&self.resolved, &other.resolved) {
            (Some(a), Some(b)) => a.iter().all(|l| b.contains(l)),
            _ => self.same(other),
        }
    }

    /// Whether the two selections may share a layer (unknown selections overlap when equal).
    pub fn overlaps(&self, other: &Layers) -> bool {
        match (&self.resolved, &other.resolved) {
            (Some(a), Some(b)) => a.iter().any(|l| b.contains(l)),
            _ => self.same(other),
        }
    }

    /// How many layers, when known.
    pub fn count(&self) -> Option<usize> {
        self.resolved.as_ref().map(Vec::len)
    }
}

impl fmt::Display for Layers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(resolved) = &self.resolved {
            return match resolved.as_slice() {
                [one] => write!(f, "layer({one})"),
                [first, .., last] => write!(f, "layers({first}..{})", last + 1),
                [] => write!(f, "layers()"),
            };
        }
        let of = self.of.map_or(String::new(), |n| format!(", of: {n}"));
        if self.single {
            return write!(f, "layer({}{of})", self.start);
        }
        let start = if self.start == 0 {
            String::new()
        } else {
            self.start.to_string()
        };
        match self.end {
            Some(end) => write!(f, "layers({start}..{end}{of})"),
            None => write!(f, "layers({start}..{of})"),
        }
    }
}

/// The two decoder components.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentKind {
    Attn,
    Mlp,
}

impl ComponentKind {
    pub fn name(self) -> &'static str {
        match self {
            ComponentKind::Attn => "attn",
            ComponentKind::Mlp => "mlp",
        }
    }
}

/// The seven linear projections of a Llama-style decoder layer (one enum, the runtime's).
pub use crate::model::site::Proj;

impl ComponentKind {
    /// The component a projection belongs to.
    pub fn of(proj: Proj) -> ComponentKind {
        match proj {
            Proj::Q | Proj::K | Proj::V | Proj::O => ComponentKind::Attn,
            Proj::Gate | Proj::Up | Proj::Down => ComponentKind::Mlp,
        }
    }

    /// The projections of the component, in forward order.
    pub fn projections(self) -> &'static [Proj] {
        match self {
            ComponentKind::Attn => &[Proj::Q, Proj::K, Proj::V, Proj::O],
            ComponentKind::Mlp => &[Proj::Gate, Proj::Up, Proj::Down],
        }
    }
}

/// `layer(1).mlp` — a component of some layers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentSite {
    pub layers: Layers,
    pub kind: ComponentKind,
}

impl fmt::Display for ComponentSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.layers, self.kind.name())
    }
}

/// `layer(1).mlp.down_proj` — a projection `out = W·in`, `W` of shape `[dout, din]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinearSite {
    pub layers: Layers,
    pub proj: Proj,
    /// Input width (columns of `W`), when a model is bound.
    pub din: Option<usize>,
    /// Output width (rows of `W`), when a model is bound.
    pub dout: Option<usize>,
}

impl fmt::Display for LinearSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{}.{}",
            self.layers,
            ComponentKind::of(self.proj).name(),
            self.proj.name()
        )
    }
}

/// Where an activation is read (or, for `embed.*`, perturbed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "at")]
pub enum StreamPoint {
    /// Projected image-patch embeddings entering the decoder (`embed.vision`).
    EmbedVision,
    /// Text token embeddings entering the decoder (`embed.text`).
    EmbedText,
    /// The residual stream entering a layer (`layer(i).input`).
    LayerInput,
    /// The residual stream leaving a layer (`layer(i).output`).
    LayerOutput,
    /// The normalised input of self-attention (`attn.input`; also q/k/v_proj's input).
    AttnInput,
    /// Self-attention's output after `o_proj`, before the residual add (`attn.output`).
    AttnOutput,
    /// The normalised input of the MLP (`mlp.input`; also gate/up_proj's input).
    MlpInput,
    /// `act(gate_proj(x)) * up_proj(x)` (`mlp.act`; also down_proj's input).
    MlpAct,
    /// The MLP's output before the residual add (`mlp.output`; also down_proj's output).
    MlpOutput,
    LinearInput {
        proj: Proj,
    },
    LinearOutput {
        proj: Proj,
    },
    /// Inside a LoRA adapter: `A·x`, the rank-`r` input of `B` (`ab.B.input`).
    LoraMid {
        adapter: NodeId,
    },
    /// Inside an extra-neurons adapter: `o_extra`, the activations of the added keys (`x.values.input`).
    ExtraAct {
        adapter: NodeId,
    },
}

impl StreamPoint {
    /// One spelling per place: projection inputs and outputs that coincide with a component
    /// stream are mapped to it.
    pub fn canonical(self) -> StreamPoint {
        use StreamPoint::*;
        match self {
            LinearInput {
                proj: Proj::Q | Proj::K | Proj::V,
            } => AttnInput,
            LinearOutput { proj: Proj::O } => AttnOutput,
            LinearInput {
                proj: Proj::Gate | Proj::Up,
            } => MlpInput,
            LinearInput { proj: Proj::Down } => MlpAct,
            LinearOutput { proj: Proj::Down } => MlpOutput,
            other => other,
        }
    }

    /// Whether this stream lives inside decoder layers (every point but the embeddings).
    pub fn in_layers(self) -> bool {
        !matches!(self, StreamPoint::EmbedVision | StreamPoint::EmbedText)
    }
}

/// An activation: a point, the layers it is read at, and its width.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stream {
    /// The spelling used in plans and messages, e.g. `layer(3).mlp.down_proj.input`.
    pub path: String,
    pub point: StreamPoint,
    /// `None` for `embed.*`.
    pub layers: Option<Layers>,
    /// Feature width, when known (bound model, or a LoRA rank).
    pub width: Option<usize>,
}

impl Stream {
    /// Whether two streams are the same place (same canonical point, same layers).
    pub fn same_place(&self, other: &Stream) -> bool {
        self.point.canonical() == other.point.canonical()
            && match (&self.layers, &other.layers) {
                (Some(a), Some(b)) => a.same(b),
                (None, None) => true,
                _ => false,
            }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_print_as_written_until_resolved() {
        assert_eq!(Layers::one(-1).to_string(), "layer(-1)");
        assert_eq!(Layers::range(Some(-4), None).to_string(), "layers(-4..)");
        assert_eq!(Layers::range(None, Some(3)).to_string(), "layers(..3)");
        let mut l = Layers::range(Some(-4), None);
        l.resolved = Some(vec![2, 3, 4, 5]);
        assert_eq!(l.to_string(), "layers(2..6)");
        assert_eq!(Layers::one(i64::MAX).end, Some(i64::MAX));
    }

    #[test]
    fn layer_sets_compare_by_resolution_when_known() {
        // `layer(-1)` and `layers(-1..)` name the same layer even unresolved.
        assert!(Layers::one(-1).same(&Layers::range(Some(-1), None)));
        let mut a = Layers::one(5);
        let mut b = Layers::one(-1);
        assert!(!a.same(&b));
        a.resolved = Some(vec![5]);
        b.resolved = Some(vec![5]);
        assert!(a.same(&b));
        let mut wide = Layers::range(Some(2), None);
        wide.resolved = Some(vec![2, 3, 4, 5]);
        assert!(a.within(&wide) && !wide.within(&a) && wide.overlaps(&a));
    }

    #[test]
    fn projection_streams_are_component_streams() {
        use StreamPoint::*;
        assert_eq!(LinearInput { proj: Proj::Down }.canonical(), MlpAct);
        assert_eq!(LinearInput { proj: Proj::Up }.canonical(), MlpInput);
        assert_eq!(LinearOutput { proj: Proj::O }.canonical(), AttnOutput);
        assert_eq!(LinearInput { proj: Proj::Q }.canonical(), AttnInput);
        assert_eq!(
            LinearOutput { proj: Proj::Up }.canonical(),
            LinearOutput { proj: Proj::Up }
        );
    }
}
