//! From the checker's sites (layers as written, resolved against the model) to the runtime's
//! sites: which tensor of which layer a stream, a projection or a parameter names.

use crate::exec::error::{ExecError, Result};
use crate::model::site::{LayerPoint, LinearSite, Site};
use crate::sema::site::{self, Layers, Stream, StreamPoint};

/// The absolute layer indices of a selection (the plan is compiled with the model bound, so they
/// are always resolved here).
pub fn layers(l: &Layers) -> Result<&[usize]> {
    l.resolved.as_deref().ok_or_else(|| {
        ExecError::internal(format!("layers {l} were not resolved against the model"))
    })
}

/// Every runtime linear site of a checker linear site, one per layer.
pub fn linear_sites(s: &site::LinearSite) -> Result<Vec<LinearSite>> {
    Ok(layers(&s.layers)?
        .iter()
        .map(|&l| LinearSite::new(l, s.proj))
        .collect())
}

/// Where a stream is read at one of its layers (`None` for the embeddings).
///
/// Streams inside adapters (`ab.B.input`, `n.values.input`) are not runtime sites: they are
/// computed from the site that feeds the adapter ([`Tap`]).
pub fn stream_site(point: StreamPoint, layer: Option<usize>) -> Result<Tap> {
    let at = |p: LayerPoint| -> Result<Tap> {
        let l = layer.ok_or_else(|| {
            ExecError::internal(format!("stream {point:?} is inside a layer but has none"))
        })?;
        Ok(Tap::Site(Site::Layer(l, p)))
    };
    match point.canonical() {
        StreamPoint::EmbedVision => Ok(Tap::Site(Site::EmbedVision)),
        StreamPoint::EmbedText => Ok(Tap::Site(Site::EmbedText)),
        StreamPoint::LayerInput => at(LayerPoint::Input),
        StreamPoint::LayerOutput => at(LayerPoint::Output),
        StreamPoint::AttnInput => at(LayerPoint::AttnInput),
        StreamPoint::AttnOutput => at(LayerPoint::AttnOutput),
        StreamPoint::MlpInput => at(LayerPoint::MlpInput),
        StreamPoint::MlpAct => at(LayerPoint::MlpAct),
        StreamPoint::MlpOutput => at(LayerPoint::MlpOutput),
        StreamPoint::LinearInput { proj: p } => at(LayerPoint::ProjInput(p)),
        StreamPoint::LinearOutput { proj: p } => at(LayerPoint::ProjOutput(p)),
        StreamPoint::LoraMid { adapter } => Ok(Tap::LoraMid {
            adapter,
            layer: layer.ok_or_else(|| ExecError::internal("a LoRA stream without a layer"))?,
        }),
        StreamPoint::ExtraAct { adapter } => Ok(Tap::ExtraAct {
            adapter,
            layer: layer
                .ok_or_else(|| ExecError::internal("an extra-neuron stream without a layer"))?,
        }),
    }
}

/// One place a stream is read, per layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tap {
    /// A runtime site, read as it is.
    Site(Site),
    /// `A·x` of a LoRA adapter's layer: read the projection's input, multiply by `Aᵀ`.
    LoraMid {
        adapter: crate::sema::NodeId,
        layer: usize,
    },
    /// The extra neurons' activations of an adapter's layer.
    ExtraAct {
        adapter: crate::sema::NodeId,
        layer: usize,
    },
}

/// The layers a stream is read at: its resolved layers, or `[None]` for an embedding.
pub fn stream_layers(stream: &Stream) -> Result<Vec<Option<usize>>> {
    match &stream.layers {
        None => Ok(vec![None]),
        Some(l) => Ok(layers(l)?.iter().map(|&i| Some(i)).collect()),
    }
}

/// Every `(layer, tap)` of a stream.
pub fn stream_taps(stream: &Stream) -> Result<Vec<(Option<usize>, Tap)>> {
    stream_layers(stream)?
        .into_iter()
        .map(|l| Ok((l, stream_site(stream.point, l)?)))
        .collect()
}

/// `layer(3)` or `embed` for messages.
pub fn layer_name(layer: Option<usize>) -> String {
    match layer {
        Some(l) => format!("layer({l})"),
        None => "embed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::site::Proj;

    fn resolved(l: usize) -> Layers {
        let mut layers = Layers::one(l as i64);
        layers.resolved = Some(vec![l]);
        layers
    }

    #[test]
    fn projection_streams_map_to_component_sites() {
        let down_in = StreamPoint::LinearInput {
            proj: site::Proj::Down,
        };
        assert_eq!(
            stream_site(down_in, Some(2)).unwrap(),
            Tap::Site(Site::Layer(2, LayerPoint::MlpAct))
        );
        let up_in = StreamPoint::LinearInput {
            proj: site::Proj::Up,
        };
        assert_eq!(
            stream_site(up_in, Some(1)).unwrap(),
            Tap::Site(Site::Layer(1, LayerPoint::MlpInput))
        );
        assert_eq!(
            stream_site(StreamPoint::EmbedText, None).unwrap(),
            Tap::Site(Site::EmbedText)
        );
        assert!(stream_site(StreamPoint::LayerInput, None).is_err());
        let lin = site::LinearSite {
            layers: resolved(1),
            proj: site::Proj::Up,
            din: None,
            dout: None,
        };
        assert_eq!(
            linear_sites(&lin).unwrap(),
            vec![LinearSite::new(1, Proj::Up)]
        );
        assert!(layers(&Layers::one(1)).is_err());
    }
}
