//! Binding sites to a model's dimensions.
//!
//! Without a model, sites keep their written layer indices and have unknown widths; the checks
//! that need numbers wait. With a [`ModelDims`], layer indices are resolved (negative ones from
//! the end), out-of-range layers are errors, and every stream and projection gets its width.

use super::checker::Checker;
use super::site::{Layers, LinearSite, Proj, Stream, StreamPoint};
use crate::diagnostics::Diag;
use crate::model::config::ModelDims;
use crate::source::Span;

/// Model families with a site table. Every family here is a Llama-style decoder, which has every
/// site the language can name.
const FAMILIES: &[&str] = &["llava", "llama"];

/// Width of a stream in a bound model (`None` for adapter-internal streams).
pub(super) fn point_width(dims: &ModelDims, point: StreamPoint) -> Option<usize> {
    use StreamPoint::*;
    Some(match point {
        EmbedVision | EmbedText | LayerInput | LayerOutput | AttnInput | AttnOutput | MlpInput
        | MlpOutput => dims.hidden,
        MlpAct => dims.intermediate,
        LinearInput { proj } => proj.in_out(dims).0,
        LinearOutput { proj } => proj.in_out(dims).1,
        LoraMid { .. } | ExtraAct { .. } => return None,
    })
}

impl Checker<'_> {
    /// Checks a layer selection, and resolves it when a model is bound.
    pub(super) fn bind_layers(&mut self, mut layers: Layers, span: Span) -> Option<Layers> {
        let shown = layers.to_string();
        if layers.of.is_some() {
            return self.bind_depth(layers, span);
        }
        let Some(dims) = self.dims else {
            // Without a model only an obviously empty range can be refused.
            if let (false, Some(end)) = (layers.single, layers.end) {
                if (layers.start >= 0) == (end >= 0) && layers.start >= end {
                    self.diags.push(
                        Diag::error(
                            "mkedsl::dim::empty_layers",
                            format!("`{shown}` selects no layer"),
                            span,
                        )
                        .label("empty range")
                        .help("a range `a..b` includes a and excludes b, so it needs a < b"),
                    );
                    return None;
                }
            }
            return Some(layers);
        };
        if !FAMILIES.contains(&dims.family.as_str()) {
            self.diags.push(
                Diag::error(
                    "mkedsl::dim::family",
                    format!("model family `{}` has no site table", dims.family),
                    span,
                )
                .label("cannot map this site")
                .help(format!("supported families: {}", FAMILIES.join(", "))),
            );
            return None;
        }
        let n = dims.num_layers as i64;
        let norm = |i: i64| if i < 0 { i + n } else { i };
        let help =
            format!("the model has {n} layers: 0..{n} from the front, or -{n}..-1 from the end");
        if layers.single {
            let i = norm(layers.start);
            if i < 0 || i >= n {
                self.diags.push(
                    Diag::error(
                        "mkedsl::dim::layer",
                        format!("layer {} does not exist in a {n}-layer model", layers.start),
                        span,
                    )
                    .label("out of range")
                    .help(help),
                );
                return None;
            }
            layers.resolved = Some(vec![i as usize]);
            return Some(layers);
        }
        let start = norm(layers.start);
        let end = layers.end.map(norm).unwrap_or(n);
        if start < 0 || start >= n || end > n || end <= start {
            self.diags.push(
                Diag::error(
                    "mkedsl::dim::layers",
                    format!("`{shown}` is not a non-empty range of a {n}-layer model"),
                    span,
                )
                .label("out of range")
                .help(help),
            );
            return None;
        }
        layers.resolved = Some((start as usize..end as usize).collect());
        Some(layers)
    }

    /// Resolves a selection written against a paper's depth (`of: N`, already checked by the
    /// builtin: `of ≥ 1`, indices within it, a non-empty range) against the bound model's `n`
    /// layers with [`Layers::scale`], clamped so a single layer exists and a range keeps at
    /// least one layer; records both readings for the plan. Without a model nothing is resolved.
    fn bind_depth(&mut self, mut layers: Layers, span: Span) -> Option<Layers> {
        let of = layers.of?;
        if let Some(dims) = self.dims {
            if !FAMILIES.contains(&dims.family.as_str()) {
                // The plain path reports the family once.
                return self.bind_layers(Layers { of: None, ..layers }, span);
            }
            let n = dims.num_layers as i64;
            let start = Layers::scale(layers.start, of, n).clamp(0, n - 1);
            let resolved: Vec<usize> = if layers.single {
                vec![start as usize]
            } else {
                let end = match layers.end {
                    Some(e) => Layers::scale(e, of, n).clamp(start + 1, n),
                    None => n,
                };
                (start as usize..end as usize).collect()
            };
            layers.resolved = Some(resolved);
        }
        let depth = super::program::Depth {
            written: Layers {
                resolved: None,
                ..layers.clone()
            }
            .to_string(),
            paper: layers.paper_text()?,
            model: self.dims.and_then(|d| layers.model_text(d.num_layers)),
        };
        if !self.depths.contains(&depth) {
            self.depths.push(depth);
        }
        Some(layers)
    }

    /// A stream at `point` (of `layers`), with its width when known.
    pub(super) fn stream(
        &self,
        point: StreamPoint,
        layers: Option<Layers>,
        path: String,
    ) -> Stream {
        let width = self.dims.and_then(|d| point_width(d, point));
        Stream {
            path,
            point,
            layers,
            width,
        }
    }

    pub(super) fn linear(&self, layers: Layers, proj: Proj) -> LinearSite {
        let (din, dout) = match self.dims {
            Some(d) => {
                let (i, o) = proj.in_out(d);
                (Some(i), Some(o))
            }
            None => (None, None),
        };
        LinearSite {
            layers,
            proj,
            din,
            dout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dims() -> ModelDims {
        ModelDims {
            family: "llava".into(),
            num_layers: 6,
            hidden: 128,
            intermediate: 344,
            heads: 4,
            kv_heads: 2,
            head_dim: 32,
            vocab: 1000,
            vision_tokens: 36,
            vision_hidden: 64,
        }
    }

    #[test]
    fn projection_widths_follow_llama() {
        let d = dims();
        assert_eq!(Proj::Q.in_out(&d), (128, 128));
        assert_eq!(Proj::K.in_out(&d), (128, 64));
        assert_eq!(Proj::O.in_out(&d), (128, 128));
        assert_eq!(Proj::Up.in_out(&d), (128, 344));
        assert_eq!(Proj::Down.in_out(&d), (344, 128));
        assert_eq!(point_width(&d, StreamPoint::MlpAct), Some(344));
        assert_eq!(
            point_width(&d, StreamPoint::LinearInput { proj: Proj::Down }),
            Some(344)
        );
        assert_eq!(point_width(&d, StreamPoint::EmbedVision), Some(128));
    }

    fn resolve(layers: Layers) -> Option<Vec<usize>> {
        let (sources, fns) = (crate::source::SourceMap::default(), Default::default());
        let d = dims();
        let mut c = Checker::new(&sources, Some(&d), &fns);
        c.bind_layers(layers, Span::new(crate::source::SourceId(0), 0, 0))?
            .resolved
    }

    #[test]
    fn paper_depths_round_to_the_nearest_layer_and_clamp() {
        assert_eq!(Layers::scale(7, 32, 6), 1); // 1.3125
        assert_eq!(Layers::scale(18, 32, 6), 3); // 3.375
        assert_eq!(Layers::scale(8, 32, 6), 2); // 1.5: halves round up
        assert_eq!(Layers::scale(7, 32, 32), 7);
        assert_eq!(resolve(Layers::one(7).of_depth(32)), Some(vec![1]));
        // 31·6/32 = 5.81 → 6, clamped to the last layer.
        assert_eq!(resolve(Layers::one(31).of_depth(32)), Some(vec![5]));
        assert_eq!(
            resolve(Layers::range(Some(18), None).of_depth(32)),
            Some(vec![3, 4, 5])
        );
        // 0..1 of 32 → 0..0 on 6 layers: the end is clamped so one layer remains.
        assert_eq!(
            resolve(Layers::range(None, Some(1)).of_depth(32)),
            Some(vec![0])
        );
    }
}
