//! Named places in the decoder where a recipe can read or change a tensor.
//!
//! A site's `Display` is the recipe language's spelling (`layer(3).mlp.down_proj.input`), so a
//! diagnostic, a plan and a cache key all name a site the same way. Sites are
//! model-family-independent (pyvene's lesson): every family maps them onto its own modules, and
//! [`Site::width`] gives the size of the last axis from [`ModelDims`] alone.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::model::config::ModelDims;

/// A linear projection inside a decoder layer: the one projection enum of the crate, with its
/// names and widths, shared by the checker, the plan and the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Proj {
    #[serde(rename = "q_proj")]
    Q,
    #[serde(rename = "k_proj")]
    K,
    #[serde(rename = "v_proj")]
    V,
    #[serde(rename = "o_proj")]
    O,
    #[serde(rename = "gate_proj")]
    Gate,
    #[serde(rename = "up_proj")]
    Up,
    #[serde(rename = "down_proj")]
    Down,
}

impl Proj {
    pub const ALL: [Proj; 7] = [
        Proj::Q,
        Proj::K,
        Proj::V,
        Proj::O,
        Proj::Gate,
        Proj::Up,
        Proj::Down,
    ];

    /// The block the projection belongs to in site names: `attn` or `mlp`.
    pub fn block(self) -> &'static str {
        match self {
            Proj::Q | Proj::K | Proj::V | Proj::O => "attn",
            Proj::Gate | Proj::Up | Proj::Down => "mlp",
        }
    }

    /// The projection's own name, as in Hugging Face tensor names (`q_proj`, `down_proj`).
    pub fn name(self) -> &'static str {
        match self {
            Proj::Q => "q_proj",
            Proj::K => "k_proj",
            Proj::V => "v_proj",
            Proj::O => "o_proj",
            Proj::Gate => "gate_proj",
            Proj::Up => "up_proj",
            Proj::Down => "down_proj",
        }
    }

    /// `(in, out)` widths.
    pub fn in_out(self, dims: &ModelDims) -> (usize, usize) {
        let q = dims.heads * dims.head_dim;
        let kv = dims.kv_heads * dims.head_dim;
        match self {
            Proj::Q => (dims.hidden, q),
            Proj::K | Proj::V => (dims.hidden, kv),
            Proj::O => (q, dims.hidden),
            Proj::Gate | Proj::Up => (dims.hidden, dims.intermediate),
            Proj::Down => (dims.intermediate, dims.hidden),
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Proj::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// One linear layer of the decoder: where LoRA, weight deltas and weight replacement attach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LinearSite {
    pub layer: usize,
    pub proj: Proj,
}

impl LinearSite {
    pub fn new(layer: usize, proj: Proj) -> Self {
        Self { layer, proj }
    }

    /// `(in, out)` widths.
    pub fn in_out(&self, dims: &ModelDims) -> (usize, usize) {
        self.proj.in_out(dims)
    }

    /// The Hugging Face tensor name of the weight in a LLaVA checkpoint.
    pub fn hf_weight_name(&self) -> String {
        let block = if self.proj.block() == "attn" {
            "self_attn"
        } else {
            "mlp"
        };
        format!(
            "language_model.model.layers.{}.{}.{}.weight",
            self.layer,
            block,
            self.proj.name()
        )
    }
}

impl fmt::Display for LinearSite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "layer({}).{}.{}",
            self.layer,
            self.proj.block(),
            self.proj.name()
        )
    }
}

impl FromStr for LinearSite {
    type Err = String;

    /// Parses `layer(3).mlp.down_proj`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a linear layer (e.g. `layer(3).mlp.down_proj`)");
        let rest = s.strip_prefix("layer(").ok_or_else(bad)?;
        let (num, rest) = rest.split_once(").").ok_or_else(bad)?;
        let layer: usize = num.parse().map_err(|_| bad())?;
        let (block, name) = rest.split_once('.').ok_or_else(bad)?;
        let proj = Proj::from_name(name)
            .filter(|p| p.block() == block)
            .ok_or_else(bad)?;
        Ok(LinearSite { layer, proj })
    }
}

/// A tensor inside one decoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum LayerPoint {
    /// The residual stream entering the block (the "pre-attention hidden state").
    Input,
    /// The residual stream leaving the block.
    Output,
    /// The normalised hidden state fed to q/k/v.
    AttnInput,
    /// The attention block's output (after `o_proj`, before the residual add).
    AttnOutput,
    /// The normalised hidden state fed to gate/up (the FFN query of UniKE).
    MlpInput,
    /// The FFN intermediate activation `act(gate) · up`, i.e. the input of `down_proj`.
    MlpAct,
    /// The FFN output (after `down_proj` and any extra neurons, before the residual add).
    MlpOutput,
    /// A projection's input.
    ProjInput(Proj),
    /// A projection's output (after adapters).
    ProjOutput(Proj),
}

impl LayerPoint {
    /// Whether a layer has computed this point before its down projection (the FFN activation
    /// and everything before it), so that a pass reading nothing later may stop there.
    pub fn before_down_proj(&self) -> bool {
        !matches!(
            self,
            LayerPoint::ProjOutput(Proj::Down) | LayerPoint::MlpOutput | LayerPoint::Output
        )
    }

    /// Whether this point belongs to the layer's attention half: its input, the attention's
    /// norm, projections and output. A pass that starts past the attention
    /// ([`ResidualPoint::past_attention`]) does not run them.
    pub fn in_attention_half(&self) -> bool {
        match self {
            LayerPoint::Input | LayerPoint::AttnInput | LayerPoint::AttnOutput => true,
            LayerPoint::ProjInput(p) | LayerPoint::ProjOutput(p) => {
                matches!(p, Proj::Q | Proj::K | Proj::V | Proj::O)
            }
            LayerPoint::Output
            | LayerPoint::MlpInput
            | LayerPoint::MlpAct
            | LayerPoint::MlpOutput => false,
        }
    }
}

/// A point of the residual stream where a pass can start (`LlavaModel::forward_from`): the
/// stream entering layer `layer`, or, `past_attention`, the stream after that layer's attention
/// and its residual add, which enters the layer's feed-forward half. Ordered along the stream:
/// by layer, a layer's input before the point past its attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResidualPoint {
    pub layer: usize,
    pub past_attention: bool,
}

impl ResidualPoint {
    /// The input embeddings: the start of a whole pass.
    pub const EMBEDDINGS: ResidualPoint = ResidualPoint {
        layer: 0,
        past_attention: false,
    };

    /// Whether a pass from this point has already run `site` (or, for `embed.*`, the
    /// embeddings): a hook there would never fire.
    pub fn has_passed(&self, site: &Site) -> bool {
        match site {
            Site::EmbedVision | Site::EmbedText => *self != Self::EMBEDDINGS,
            Site::Layer(l, point) => {
                *l < self.layer
                    || (*l == self.layer && self.past_attention && point.in_attention_half())
            }
        }
    }
}

impl fmt::Display for ResidualPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.past_attention {
            write!(f, "layer({}) past its attention", self.layer)
        } else {
            write!(f, "layer({}).input", self.layer)
        }
    }
}

/// A named tensor of the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Site {
    /// Input latents at image-token positions, flattened to `(N, hidden)` in batch-major order.
    EmbedVision,
    /// Input latents at (non-padding) text positions, flattened to `(N, hidden)`.
    EmbedText,
    /// A tensor inside decoder layer `.0`, shaped `(B, T, width)`.
    Layer(usize, LayerPoint),
}

impl Site {
    pub fn layer(layer: usize, point: LayerPoint) -> Self {
        Site::Layer(layer, point)
    }

    pub fn proj_input(site: LinearSite) -> Self {
        Site::Layer(site.layer, LayerPoint::ProjInput(site.proj))
    }

    pub fn proj_output(site: LinearSite) -> Self {
        Site::Layer(site.layer, LayerPoint::ProjOutput(site.proj))
    }

    /// Size of the site's last axis.
    pub fn width(&self, dims: &ModelDims) -> usize {
        match self {
            Site::EmbedVision | Site::EmbedText => dims.hidden,
            Site::Layer(_, point) => match point {
                LayerPoint::MlpAct => dims.intermediate,
                LayerPoint::ProjInput(p) => p.in_out(dims).0,
                LayerPoint::ProjOutput(p) => p.in_out(dims).1,
                _ => dims.hidden,
            },
        }
    }

    /// Fails when the site names a layer the model does not have.
    pub fn check(&self, dims: &ModelDims) -> Result<(), String> {
        match self {
            Site::Layer(l, _) if *l >= dims.num_layers => Err(format!(
                "layer {l} does not exist: the model has {} layers",
                dims.num_layers
            )),
            _ => Ok(()),
        }
    }

    /// Every site of a model, in forward order.
    pub fn all(dims: &ModelDims) -> Vec<Site> {
        let mut sites = vec![Site::EmbedVision, Site::EmbedText];
        for l in 0..dims.num_layers {
            let mut points = vec![LayerPoint::Input, LayerPoint::AttnInput];
            for p in [Proj::Q, Proj::K, Proj::V, Proj::O] {
                points.extend([LayerPoint::ProjInput(p), LayerPoint::ProjOutput(p)]);
            }
            points.extend([LayerPoint::AttnOutput, LayerPoint::MlpInput]);
            for p in [Proj::Gate, Proj::Up] {
                points.extend([LayerPoint::ProjInput(p), LayerPoint::ProjOutput(p)]);
            }
            points.push(LayerPoint::MlpAct);
            points.extend([
                LayerPoint::ProjInput(Proj::Down),
                LayerPoint::ProjOutput(Proj::Down),
            ]);
            points.extend([LayerPoint::MlpOutput, LayerPoint::Output]);
            sites.extend(points.into_iter().map(|p| Site::Layer(l, p)));
        }
        sites
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (layer, point) = match self {
            Site::EmbedVision => return f.write_str("embed.vision"),
            Site::EmbedText => return f.write_str("embed.text"),
            Site::Layer(l, p) => (l, p),
        };
        write!(f, "layer({layer}).")?;
        match point {
            LayerPoint::Input => f.write_str("input"),
            LayerPoint::Output => f.write_str("output"),
            LayerPoint::AttnInput => f.write_str("attn.input"),
            LayerPoint::AttnOutput => f.write_str("attn.output"),
            LayerPoint::MlpInput => f.write_str("mlp.input"),
            LayerPoint::MlpAct => f.write_str("mlp.act"),
            LayerPoint::MlpOutput => f.write_str("mlp.output"),
            LayerPoint::ProjInput(p) => write!(f, "{}.{}.input", p.block(), p.name()),
            LayerPoint::ProjOutput(p) => write!(f, "{}.{}.output", p.block(), p.name()),
        }
    }
}

impl FromStr for Site {
    type Err = String;

    /// Parses the `Display` spelling back; the recipe checker gives the friendlier messages.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("`{s}` is not a site (e.g. `embed.vision`, `layer(3).mlp.down_proj.input`)");
        match s {
            "embed.vision" => return Ok(Site::EmbedVision),
            "embed.text" => return Ok(Site::EmbedText),
            _ => {}
        }
        let rest = s.strip_prefix("layer(").ok_or_else(bad)?;
        let (num, rest) = rest.split_once(").").ok_or_else(bad)?;
        let layer: usize = num.parse().map_err(|_| bad())?;
        let point = match rest {
            "input" => LayerPoint::Input,
            "output" => LayerPoint::Output,
            "attn.input" => LayerPoint::AttnInput,
            "attn.output" => LayerPoint::AttnOutput,
            "mlp.input" => LayerPoint::MlpInput,
            "mlp.act" => LayerPoint::MlpAct,
            "mlp.output" => LayerPoint::MlpOutput,
            _ => {
                let (block_proj, end) = rest.rsplit_once('.').ok_or_else(bad)?;
                let (block, proj) = block_proj.split_once('.').ok_or_else(bad)?;
                let proj = Proj::from_name(proj)
                    .filter(|p| p.block() == block)
                    .ok_or_else(bad)?;
                match end {
                    "input" => LayerPoint::ProjInput(proj),
                    "output" => LayerPoint::ProjOutput(proj),
                    _ => return Err(bad()),
                }
            }
        };
        Ok(Site::Layer(layer, point))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims() -> ModelDims {
        ModelDims {
            family: "llava".into(),
            num_layers: 4,
            hidden: 32,
            intermediate: 88,
            heads: 4,
            kv_heads: 2,
            head_dim: 8,
            vocab: 100,
            vision_tokens: 16,
            vision_hidden: 24,
        }
    }

    #[test]
    fn spelling_round_trips_for_every_site() {
        let d = dims();
        let all = Site::all(&d);
        assert_eq!(all.len(), 2 + 4 * 21); // 7 points + 7 projections × (input, output)
        for site in all {
            let text = site.to_string();
            assert_eq!(text.parse::<Site>(), Ok(site), "{text}");
        }
        assert_eq!(
            Site::layer(3, LayerPoint::ProjInput(Proj::Down)).to_string(),
            "layer(3).mlp.down_proj.input"
        );
        assert_eq!(
            Site::layer(3, LayerPoint::ProjOutput(Proj::Q)).to_string(),
            "layer(3).attn.q_proj.output"
        );
        assert_eq!(
            LinearSite::new(1, Proj::O).to_string(),
            "layer(1).attn.o_proj"
        );
        assert!("layer(3).attn.down_proj.input".parse::<Site>().is_err());
        assert!("layer(x).input".parse::<Site>().is_err());
    }

    #[test]
    fn widths_follow_the_config() {
        let d = dims();
        assert_eq!(Site::EmbedVision.width(&d), 32);
        assert_eq!(Site::layer(0, LayerPoint::MlpAct).width(&d), 88);
        assert_eq!(
            Site::layer(0, LayerPoint::ProjInput(Proj::Down)).width(&d),
            88
        );
        assert_eq!(
            Site::layer(0, LayerPoint::ProjOutput(Proj::K)).width(&d),
            16
        );
        assert_eq!(
            Site::layer(0, LayerPoint::ProjOutput(Proj::Q)).width(&d),
            32
        );
        assert!(Site::layer(4, LayerPoint::Input).check(&d).is_err());
        assert_eq!(
            LinearSite::new(2, Proj::Gate).hf_weight_name(),
            "language_model.model.layers.2.mlp.gate_proj.weight"
        );
    }
}
