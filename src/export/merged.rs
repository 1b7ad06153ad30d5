//! `--format merged`: the edited model as a complete Hugging Face checkpoint folder — config,
//! safetensors, tokenizer, preprocessor, processor config and chat template — that transformers'
//! `LlavaForConditionalGeneration` and `AutoProcessor` load unchanged.
//!
//! Every change of the edit is folded into the weights: `W ← W + ΔW + Σ sᵢ BᵢAᵢ` (in f32). Extra
//! FFN neurons widen the MLP and retrieval memory is no weight at all; a plain LLaVA has no form
//! for either, so such edits are refused, saying why.

use std::path::Path;

use candle_core::{DType, Tensor};

use super::peft::ExportError;
use crate::model::site::LinearSite;
use crate::model::{LoadOptions, Lora, VisionLanguageModel};

/// Writes the checkpoint at `base` with the edit folded in to `out` (a fresh folder that then
/// replaces `out` as one unit).
pub fn write_merged(
    base: &Path,
    out: &Path,
    loras: &[(LinearSite, Lora)],
    deltas: &[(LinearSite, Tensor)],
    neurons: usize,
) -> miette::Result<()> {
    if neurons > 0 {
        return Err(ExportError::Unsupported {
            reason: format!(
                "it adds {neurons} set(s) of extra FFN neurons, which widen the MLP beyond the intermediate_size a plain LlavaForConditionalGeneration has"
            ),
        }
        .into());
    }
    let mut llava = crate::model::Llava::load(base, &LoadOptions::default())?;
    fold(&mut llava, loras, deltas)?;
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ExportError::Adapter {
        path: parent.to_path_buf(),
        reason: e.to_string(),
    })?;
    let staged = crate::data::files::temp_dir_in(parent).map_err(|e| ExportError::Adapter {
        path: parent.to_path_buf(),
        reason: e.to_string(),
    })?;
    llava.save(staged.path())?;
    let template = base.join(crate::eval::TEMPLATE_FILE);
    if template.is_file() {
        std::fs::copy(&template, staged.path().join(crate::eval::TEMPLATE_FILE)).map_err(|e| {
            ExportError::Adapter {
                path: template.clone(),
                reason: e.to_string(),
            }
        })?;
    }
    crate::data::files::replace_dir(staged, out).map_err(|e| ExportError::Adapter {
        path: out.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(())
}

/// `W ← W + ΔW + Σ sᵢ BᵢAᵢ` at every site the edit touches, in f32, stored in the model's dtype.
fn fold(
    llava: &mut crate::model::Llava,
    loras: &[(LinearSite, Lora)],
    deltas: &[(LinearSite, Tensor)],
) -> Result<(), ExportError> {
    let model = |e: crate::model::ModelError| ExportError::Tensor(e.to_string());
    let dtype = llava.dtype();
    let mut sites: Vec<LinearSite> = loras.iter().map(|(s, _)| *s).collect();
    sites.extend(deltas.iter().map(|(s, _)| *s));
    sites.sort();
    sites.dedup();
    for site in sites {
        let mut w = llava
            .linear_weight(site)
            .map_err(model)?
            .to_dtype(DType::F32)?;
        for (_, d) in deltas.iter().filter(|(s, _)| *s == site) {
            w = (w + d.to_dtype(DType::F32)?)?;
        }
        for (_, l) in loras.iter().filter(|(s, _)| *s == site) {
            let ba =
                l.b.to_dtype(DType::F32)?
                    .matmul(&l.a.to_dtype(DType::F32)?)?;
            w = (w + (ba * l.scaling)?)?;
        }
        llava
            .replace_linear_weight(site, w.to_dtype(dtype)?)
            .map_err(model)?;
    }
    Ok(())
}
