//! What a method's data-dependent knobs resolved to on each case, and their means: how many
//! perturbed variants ELoRA's similarity filter kept, and the mask window and noise scale the
//! perturbations used. The papers' literals were chosen for LLaVA-7B; these records say whether
//! they still do something on the model at hand (a filter that keeps every variant filters
//! nothing), so every run reports them, per case and as a mean.
//!
//! The means are computed from the per-case rows ([`FilterMean::of`], [`PerturbMean::of`]),
//! so a report merged from shards has the same means as the unsharded run.

use serde::{Deserialize, Serialize};

/// What one knowledge space's similarity filter did on one case (ELoRA Alg. 1 lines 18-19).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterCase {
    /// The recipe's name for the space (`up_know`), else `at file:line:column`.
    pub space: String,
    /// `literal` or `chance_corrected`: the score `keep_above` was compared with.
    pub similarity: String,
    pub keep_above: f64,
    pub variants: usize,
    pub kept: usize,
    /// `kept / variants`.
    pub kept_fraction: f64,
    /// Mean similarity of all variants (kept or not) to the clean case.
    pub mean_similarity: f64,
    /// No variant passed, so the clean covariance alone spanned the space.
    pub fell_back: bool,
}

impl FilterCase {
    pub fn new(
        space: String,
        similarity: &str,
        keep_above: f64,
        variants: usize,
        kept: usize,
        similarity_sum: f64,
        fell_back: bool,
    ) -> Self {
        Self {
            space,
            similarity: similarity.to_string(),
            keep_above,
            variants,
            kept,
            kept_fraction: ratio(kept as f64, variants),
            mean_similarity: ratio(similarity_sum, variants),
            fell_back,
        }
    }
}

/// One knowledge space's filter over the run: means over cases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FilterMean {
    pub space: String,
    pub similarity: String,
    pub keep_above: f64,
    pub cases: usize,
    /// Variants per case (the same on every case).
    pub variants: usize,
    /// Mean kept variants per case.
    pub kept: f64,
    /// Mean of the cases' kept fractions.
    pub kept_fraction: f64,
    /// Mean of the cases' mean similarities.
    pub mean_similarity: f64,
    /// Cases on which no variant passed.
    pub fallbacks: usize,
}

impl FilterMean {
    /// The means of every space in `cases` (each case's records), in order of first appearance.
    pub fn of<'a>(cases: impl IntoIterator<Item = &'a [FilterCase]>) -> Vec<FilterMean> {
        let mut out: Vec<(FilterMean, f64)> = Vec::new();
        for record in cases.into_iter().flatten() {
            let at = match out.iter().position(|(m, _)| m.space == record.space) {
                Some(at) => at,
                None => {
                    out.push((FilterMean::empty(record), 0.0));
                    out.len() - 1
                }
            };
            let (mean, kept_sum) = &mut out[at];
            mean.cases += 1;
            mean.variants = mean.variants.max(record.variants);
            *kept_sum += record.kept as f64;
            mean.kept_fraction += record.kept_fraction;
            mean.mean_similarity += record.mean_similarity;
            mean.fallbacks += usize::from(record.fell_back);
        }
        out.into_iter()
            .map(|(mut m, kept_sum)| {
                let n = m.cases;
                m.kept = ratio(kept_sum, n);
                m.kept_fraction = ratio(m.kept_fraction, n);
                m.mean_similarity = ratio(m.mean_similarity, n);
                m
            })
            .collect()
    }

    fn empty(first: &FilterCase) -> Self {
        Self {
            space: first.space.clone(),
            similarity: first.similarity.clone(),
            keep_above: first.keep_above,
            cases: 0,
            variants: 0,
            kept: 0.0,
            kept_fraction: 0.0,
            mean_similarity: 0.0,
            fallbacks: 0,
        }
    }

    /// The line under the metric table.
    pub fn line(&self) -> String {
        format!(
            "knowledge space {}: kept {} of {} variants per case ({:.1} %), mean similarity {:.3} ({}, keep above {}); clean covariance alone in {} of {} cases",
            quoted(&self.space),
            trim(self.kept),
            self.variants,
            100.0 * self.kept_fraction,
            self.mean_similarity,
            self.similarity,
            self.keep_above,
            self.fallbacks,
            self.cases
        )
    }
}

/// The scales one `perturb` resolved to on one case (each absent when no kind needed it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerturbCase {
    /// The recipe's name for the variants, else their recipe line.
    pub variants: String,
    /// Image tokens each masking variant zeroes, and of how many.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask_window: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_tokens: Option<usize>,
    /// The absolute σ of the text noise (for `noise_text(relative: …)`, relative × the clean
    /// text embeddings' RMS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_sigma: Option<f64>,
}

/// One `perturb` over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerturbMean {
    pub variants: String,
    pub cases: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mask_window: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_tokens: Option<usize>,
    /// Mean absolute σ over cases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub noise_sigma: Option<f64>,
}

impl PerturbMean {
    /// The means of every `perturb` in `cases`, in order of first appearance.
    pub fn of<'a>(cases: impl IntoIterator<Item = &'a [PerturbCase]>) -> Vec<PerturbMean> {
        let mut groups: Vec<(String, Vec<&PerturbCase>)> = Vec::new();
        for record in cases.into_iter().flatten() {
            match groups.iter_mut().find(|(name, _)| *name == record.variants) {
                Some((_, all)) => all.push(record),
                None => groups.push((record.variants.clone(), vec![record])),
            }
        }
        groups
            .into_iter()
            .map(|(variants, all)| {
                let mean = |f: fn(&PerturbCase) -> Option<f64>| {
                    let xs: Vec<f64> = all.iter().filter_map(|r| f(r)).collect();
                    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
                };
                PerturbMean {
                    variants,
                    cases: all.len(),
                    mask_window: mean(|r| r.mask_window.map(|w| w as f64)),
                    image_tokens: all.iter().find_map(|r| r.image_tokens),
                    noise_sigma: mean(|r| r.noise_sigma),
                }
            })
            .collect()
    }

    /// The line under the metric table, `None` when no kind has a scale to report.
    pub fn line(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(w) = self.mask_window {
            let of = self
                .image_tokens
                .map_or(String::new(), |n| format!(" of {n}"));
            parts.push(format!("mask window {}{of} image tokens", trim(w)));
        }
        if let Some(s) = self.noise_sigma {
            parts.push(format!("text noise σ {s:.4}"));
        }
        (!parts.is_empty()).then(|| {
            format!(
                "variants  {}: {} (mean over {} cases)",
                quoted(&self.variants),
                parts.join(", "),
                self.cases
            )
        })
    }
}

/// A recipe name in backquotes; an `at file:line` label as it is.
fn quoted(label: &str) -> String {
    if label.starts_with("at ") {
        label.to_string()
    } else {
        format!("`{label}`")
    }
}

fn ratio(sum: f64, n: usize) -> f64 {
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// A count that may be a mean: `511`, or `255.5`.
fn trim(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_are_over_cases_and_keep_each_space_apart() {
        let case = |space: &str, kept: usize, sim: f64| {
            FilterCase::new(space.into(), "literal", 0.05, 4, kept, 4.0 * sim, kept == 0)
        };
        let rows = [
            vec![case("a", 4, 0.5), case("at r.edit:3:1", 0, 0.01)],
            vec![case("a", 2, 0.3), case("at r.edit:3:1", 1, 0.02)],
        ];
        let means = FilterMean::of(rows.iter().map(Vec::as_slice));
        assert_eq!(means.len(), 2);
        let a = &means[0];
        assert_eq!((a.space.as_str(), a.cases, a.variants), ("a", 2, 4));
        assert!((a.kept - 3.0).abs() < 1e-12 && (a.kept_fraction - 0.75).abs() < 1e-12);
        assert!((a.mean_similarity - 0.4).abs() < 1e-12);
        assert_eq!(means[1].fallbacks, 1);
        assert!(a
            .line()
            .contains("`a`: kept 3 of 4 variants per case (75.0 %)"));
        assert!(means[1]
            .line()
            .starts_with("knowledge space at r.edit:3:1: kept 0.5 of 4"));
        let p = [PerturbCase {
            variants: "v".into(),
            mask_window: Some(2),
            image_tokens: Some(36),
            noise_sigma: Some(0.25),
        }];
        let line = PerturbMean::of([p.as_slice()])[0].line().unwrap();
        assert!(
            line.contains("mask window 2 of 36") && line.contains("σ 0.2500"),
            "{line}"
        );
    }
}
