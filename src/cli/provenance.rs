//! The provenance block of a results JSON: which mkedsl, which exact recipe, model and data (by
//! SHA-256), which numeric settings, and where the time went. Filled here, by the command that
//! ran, because only it knows every input; the evaluator's report carries it.

use std::path::Path;

use crate::eval::{EvalReport, PhaseTimes, Provenance};
use crate::exec::executor::Phases;

/// SHA-256 of a file's bytes, hex.
fn sha256(path: &Path) -> miette::Result<String> {
    Ok(crate::exec::shard::file_hash(path)?)
}

/// The provenance of `report`, produced from `recipe` (none for `mkedsl eval`) on `model_dir`,
/// with the executor's `phases` when a recipe ran; `dtype` is the precision the frozen weights
/// were held and multiplied in (`--dtype`).
pub fn provenance(
    report: &EvalReport,
    recipe: Option<&Path>,
    model_dir: &Path,
    phases: Option<&Phases>,
    dtype: crate::model::Precision,
) -> miette::Result<Provenance> {
    let t = &report.timing;
    Ok(Provenance {
        mkedsl_version: env!("CARGO_PKG_VERSION").to_string(),
        recipe_sha256: recipe.map(sha256).transpose()?,
        model_sha256: crate::exec::cache::model_hash(model_dir)?,
        data_sha256: report
            .data_files
            .iter()
            .map(|d| sha256(Path::new(&d.path)))
            .collect::<miette::Result<_>>()?,
        dtype: dtype.to_string(),
        device: report.device.clone(),
        threads: crate::exec::run::cpu_threads(),
        seed: report.seed,
        phases: PhaseTimes {
            pre_edit_s: t.pre_edit_s,
            prepare_s: t.prepare_s,
            edit_s: t.edit_s,
            spaces_s: phases.map(|p| p.spaces_s),
            optimise_s: phases.map(|p| p.optimise_s),
            score_s: t.score_s,
            total_s: t.total_s,
        },
    })
}
