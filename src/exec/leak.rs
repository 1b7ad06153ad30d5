//! What each null space lets through: its dimension and the share of preserved energy inside it
//! (the leak), per layer, for `mkedsl run`'s summary, its `--json` report and `mkedsl plan`.
//!
//! The cut is decided once, in [`crate::linalg::null_indices`] as the executor computes the
//! space; the eigenvalues it was cut from are kept with the space (and in its cache entry, as
//! `eigenvalues.layer.N` tensors), and the leak is a pure function of them and the space's
//! dimension ([`NullSpaceStats::of`]). `mkedsl plan` reads those recorded eigenvalues from the
//! cache entry instead of decomposing anything: planning stays free of tensor work (a 7B
//! down_proj covariance is 11008², minutes of eigendecomposition), and the numbers it shows are
//! the ones the run decided. When the entry is absent plan says the lines are printed at run.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use crate::exec::error::Result;
use crate::exec::values::PerLayer;
use crate::linalg::NullSpaceStats;
use crate::plan::Step;
use crate::sema::{ops, Op};

/// A cache entry's tensors by name.
type Tensors = HashMap<String, Tensor>;

/// The prefix of a null-space cache entry's eigenvalue tensors (`eigenvalues.layer.3`).
pub const EIGENVALUES: &str = "eigenvalues.";

/// One null space at one layer.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct NullSpaceReport {
    /// The plan step (`#1`) and the recipe line it came from.
    pub step: String,
    pub at: String,
    /// The stream the covariance was taken at, as the plan spells it.
    pub stream: String,
    pub layer: Option<usize>,
    /// The cut as written: `below: 0.02`.
    pub cut: String,
    pub dims: usize,
    pub width: usize,
    /// `Σ_{i∈null} λ_i / Σ_i λ_i`, in [0, 1].
    pub leak: f64,
}

impl NullSpaceReport {
    /// Reports of a null-space step from the eigenvalues and dimension of each layer's space.
    pub fn of_step(
        step: &Step,
        plan: &crate::plan::Plan,
        layers: &[(Option<usize>, Vec<f64>, usize)],
    ) -> Vec<Self> {
        let Op::NullSpace(ops::NullSpace {
            covariance, cut, ..
        }) = &step.op
        else {
            return Vec::new();
        };
        let stream = match plan.step(*covariance).map(|s| &s.op) {
            Some(Op::Covariance(c)) => c.stream.path.clone(),
            _ => covariance.to_string(),
        };
        layers
            .iter()
            .map(|(layer, values, dims)| {
                let stats = NullSpaceStats::of(values, *dims);
                NullSpaceReport {
                    step: step.id.to_string(),
                    at: step.origin.at.clone(),
                    stream: stream.clone(),
                    layer: *layer,
                    cut: cut.to_string(),
                    dims: stats.dims,
                    width: stats.width,
                    leak: stats.leak,
                }
            })
            .collect()
    }

    /// `null space #1 (recipes/lpedit.edit:22:12) layer 3 mlp.down_proj.input: 237 of 344 dims,
    /// preserved energy inside 0.41 % (below: 0.02)`.
    pub fn line(&self) -> String {
        let site = match (self.layer, self.stream.split_once(").")) {
            (Some(l), Some((_, rest))) => format!("layer {l} {rest}"),
            _ => self.stream.clone(),
        };
        format!(
            "null space {} ({}) {site}: {} of {} dims, preserved energy inside {} ({})",
            self.step,
            self.at,
            self.dims,
            self.width,
            percent(self.leak),
            self.cut
        )
    }
}

/// A share as a percentage with enough digits to tell small leaks apart.
fn percent(x: f64) -> String {
    let p = 100.0 * x;
    if p == 0.0 || p >= 0.01 {
        format!("{p:.2} %")
    } else {
        format!("{p:.1e} %")
    }
}

/// The eigenvalue tensors of a null space's cache entry, one per layer.
pub fn eigenvalue_tensors(spectra: &PerLayer<Vec<f64>>) -> Result<HashMap<String, Tensor>> {
    spectra
        .iter()
        .map(|(l, v)| {
            let t = Tensor::from_vec(v.clone(), v.len(), &Device::Cpu)?;
            Ok((format!("{EIGENVALUES}{}", super::prepare::layer_key(*l)), t))
        })
        .collect()
}

/// Splits a null-space cache entry into its basis tensors and its eigenvalues per layer;
/// `None` for an entry written before eigenvalues were recorded (recomputed then).
pub fn split_entry(mut tensors: HashMap<String, Tensor>) -> Option<(Tensors, PerLayer<Vec<f64>>)> {
    let names: Vec<String> = (tensors.keys())
        .filter(|k| k.starts_with(EIGENVALUES))
        .cloned()
        .collect();
    if names.is_empty() {
        return None;
    }
    let mut spectra = Vec::new();
    for name in names {
        let t = tensors.remove(&name)?;
        let layer = super::prepare::parse_layer_key(&name[EIGENVALUES.len()..])?;
        let values = t.to_dtype(DType::F64).ok()?.to_vec1::<f64>().ok()?;
        spectra.push((layer, values));
    }
    spectra.sort_by_key(|(l, _)| *l);
    Some((tensors, PerLayer(spectra)))
}

/// `mkedsl plan`'s lines about the null spaces of `plan`: with a model folder, the dimension and
/// leak of each one the default cache already holds (for the f32 weights and the model's own
/// preserve pool, as `mkedsl run` without `--preserve` keys it), else that they are printed at
/// run. Reads entries only; never decomposes.
pub fn plan_lines(plan: &crate::plan::Plan, model_dir: Option<&std::path::Path>) -> Vec<String> {
    let steps: Vec<&Step> = (plan.stage(crate::plan::Stage::Prepare))
        .filter(|s| matches!(s.op, Op::NullSpace(_)))
        .collect();
    let cache = model_dir.and_then(run_cache);
    let mut out = Vec::new();
    for step in steps {
        let cached = (cache.as_ref().zip(step.cache.as_ref()))
            .and_then(|(c, k)| c.load(k.kind, &k.recipe, &Device::Cpu))
            .and_then(split_entry);
        let Some((basis, spectra)) = cached else {
            out.push(format!(
                "null space {} ({}): dimension and preserved energy inside printed by `mkedsl run` (not in the cache yet)",
                step.id, step.origin.at
            ));
            continue;
        };
        let layers: Vec<(Option<usize>, Vec<f64>, usize)> = spectra
            .iter()
            .filter_map(|(l, v)| {
                let b = basis.get(&super::prepare::layer_key(*l))?;
                Some((*l, v.clone(), b.dims().get(1).copied()?))
            })
            .collect();
        for r in NullSpaceReport::of_step(step, plan, &layers) {
            out.push(format!("{} · cached", r.line()));
        }
    }
    out
}

/// The cache `mkedsl run MODEL` uses by default, if its key parts can be computed here.
fn run_cache(model_dir: &std::path::Path) -> Option<crate::exec::cache::Cache> {
    use crate::exec::preserve::PreserveSource;
    let hash = crate::exec::cache::model_hash(model_dir).ok()?;
    let template = crate::eval::template::resolve_template(model_dir).ok()?;
    let preserve = PreserveSource::resolve(model_dir, None, None);
    let identity = crate::exec::run::data_identity(
        &preserve,
        &template.template,
        crate::model::Precision::F32,
    );
    let dir = crate::exec::cache::default_dir(model_dir);
    Some(crate::exec::cache::Cache::new(Some(dir), hash, identity))
}
