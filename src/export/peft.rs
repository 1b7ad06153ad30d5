//! PEFT LoRA adapters: an edit written so that `PeftModel.from_pretrained` loads it onto
//! transformers' `LlavaForConditionalGeneration`, and read back (`mkedsl infer --adapter`).
//!
//! PEFT's LoRA computes `y = W x + (α/r) · B (A x)` with `lora_A.weight` `(r, in)` and
//! `lora_B.weight` `(out, r)` — mkedsl's LoRA exactly, with `α/r` its scaling. An edit may hold,
//! per projection, several LoRAs and a weight delta `ΔW` (a fine-tuned weight, or the base change
//! `W ← W − B₀A₀` that ELoRA and LoRA-Null make at initialisation). All of them become ONE LoRA
//! per projection by stacking factors:
//!
//! ```text
//! ΔW_total = s₁B₁A₁ + s₂B₂A₂ + ΔW = s · [B₁ | (s₂/s)B₂ | UₖΣₖ/s] [A₁; A₂; Vₖᵀ]
//! ```
//!
//! with `s` the first LoRA's scaling (kept as `lora_alpha / r` so the scaling is carried, not
//! folded into `B`) and `ΔW = UₖΣₖVₖᵀ` its thin SVD truncated to the singular values above
//! `1e-6·σ_max` (rank `k`, computed in f64). For ELoRA / LoRA-Null, `ΔW = −B₀A₀` has rank `r`,
//! so the adapter has rank `2r`: the form `[B | −B₀][A; A₀]` up to the choice of factors. A
//! fine-tuned weight (FT-L) usually has full rank; it is written exactly, at that rank.
//! Ranks and alphas per module go into `rank_pattern` / `alpha_pattern`.
//!
//! Module paths are transformers' own (`model.language_model.layers.{i}.mlp.up_proj`, as of
//! transformers 4.52), listed in full in `target_modules` so no vision-tower projection of the
//! same short name is touched.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use miette::Diagnostic;
use serde_json::{json, Value};
use thiserror::Error;

use crate::model::site::{LinearSite, Proj};
use crate::model::Lora;

/// PEFT's file names.
pub const CONFIG_FILE: &str = "adapter_config.json";
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// Singular values of a weight delta below this share of the largest are dropped.
const RANK_TOLERANCE: f64 = 1e-6;

/// What cannot be exported, or read back.
#[derive(Debug, Error, Diagnostic)]
pub enum ExportError {
    #[error("this edit cannot be written as a PEFT LoRA adapter: {reason}")]
    #[diagnostic(
        code(mkedsl::export::unsupported),
        help("PEFT LoRA and a plain LlavaForConditionalGeneration hold only linear weights; keep mkedsl's own format (drop --format) for edits with extra neurons or retrieval memory")
    )]
    Unsupported { reason: String },
    #[error("`{}`: {reason}", path.display())]
    #[diagnostic(code(mkedsl::export::adapter))]
    Adapter { path: PathBuf, reason: String },
    #[error("{0}")]
    #[diagnostic(code(mkedsl::export::tensor))]
    Tensor(String),
}

impl From<candle_core::Error> for ExportError {
    fn from(e: candle_core::Error) -> Self {
        ExportError::Tensor(e.to_string())
    }
}

type Result<T> = std::result::Result<T, ExportError>;

/// transformers' module path of a decoder projection in `LlavaForConditionalGeneration`.
pub fn module_name(site: LinearSite) -> String {
    let block = if site.proj.block() == "attn" {
        "self_attn"
    } else {
        "mlp"
    };
    format!(
        "model.language_model.layers.{}.{block}.{}",
        site.layer,
        site.proj.name()
    )
}

/// The site of a module path, in transformers' current naming or the pre-4.52 one
/// (`language_model.model.layers.…`).
pub fn site_of(module: &str) -> Option<LinearSite> {
    let rest = module
        .strip_prefix("model.language_model.layers.")
        .or_else(|| module.strip_prefix("language_model.model.layers."))?;
    let mut parts = rest.split('.');
    let layer = parts.next()?.parse().ok()?;
    let _block = parts.next()?;
    let name = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let proj = Proj::ALL.into_iter().find(|p| p.name() == name)?;
    Some(LinearSite::new(layer, proj))
}

/// One projection's combined LoRA.
struct Stacked {
    a: Tensor,
    b: Tensor,
    scaling: f64,
}

/// The edit's LoRAs and weight deltas as one LoRA per projection (see the module doc).
fn stack(
    loras: &[(LinearSite, Lora)],
    deltas: &[(LinearSite, Tensor)],
) -> Result<BTreeMap<LinearSite, Stacked>> {
    let mut sites: Vec<LinearSite> = loras.iter().map(|(s, _)| *s).collect();
    sites.extend(deltas.iter().map(|(s, _)| *s));
    sites.sort();
    sites.dedup();
    let mut out = BTreeMap::new();
    for site in sites {
        let mine: Vec<&Lora> = loras
            .iter()
            .filter(|(s, _)| *s == site)
            .map(|(_, l)| l)
            .collect();
        let scaling = mine.first().map_or(1.0, |l| l.scaling);
        if scaling == 0.0 || !scaling.is_finite() {
            return Err(ExportError::Unsupported {
                reason: format!("the LoRA at {site} has scaling {scaling}"),
            });
        }
        let mut a_parts = Vec::new();
        let mut b_parts = Vec::new();
        for l in &mine {
            a_parts.push(l.a.to_dtype(DType::F32)?);
            b_parts.push((l.b.to_dtype(DType::F32)? * (l.scaling / scaling))?);
        }
        for (_, d) in deltas.iter().filter(|(s, _)| *s == site) {
            let (u, vt) = low_rank(d)?;
            if let (Some(u), Some(vt)) = (u, vt) {
                a_parts.push(vt);
                b_parts.push((u / scaling)?);
            }
        }
        if a_parts.is_empty() {
            continue;
        }
        out.insert(
            site,
            Stacked {
                a: Tensor::cat(&a_parts, 0)?,
                b: Tensor::cat(&b_parts, 1)?,
                scaling,
            },
        );
    }
    Ok(out)
}

/// `ΔW = (UΣ) Vᵀ` truncated to its numerical rank: `(UₖΣₖ (out, k), Vₖᵀ (k, in))` in f32, or
/// nothing for a zero delta.
fn low_rank(delta: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let d = delta.to_dtype(DType::F64)?;
    let svd = crate::linalg::svd(&d).map_err(|e| ExportError::Tensor(e.to_string()))?;
    let s: Vec<f64> = svd.s.to_vec1()?;
    let top = s.first().copied().unwrap_or(0.0);
    let k = s
        .iter()
        .take_while(|v| **v > RANK_TOLERANCE * top && top > 0.0)
        .count();
    if k == 0 {
        return Ok((None, None));
    }
    let u = svd
        .u
        .narrow(1, 0, k)?
        .broadcast_mul(&svd.s.narrow(0, 0, k)?.unsqueeze(0)?)?;
    let vt = svd.vt.narrow(0, 0, k)?;
    Ok((
        Some(u.to_dtype(DType::F32)?),
        Some(vt.to_dtype(DType::F32)?),
    ))
}

/// Writes a PEFT adapter for an edit of the checkpoint at `base_model` into `dir`
/// (`adapter_config.json`, `adapter_model.safetensors`; each written atomically).
pub fn write_adapter(
    dir: &Path,
    base_model: &str,
    loras: &[(LinearSite, Lora)],
    deltas: &[(LinearSite, Tensor)],
    neurons: usize,
) -> Result<()> {
    if neurons > 0 {
        return Err(ExportError::Unsupported {
            reason: format!(
                "it adds {neurons} set(s) of extra FFN neurons, which change the MLP's width: no LoRA (and no weight of a plain LLaVA) expresses them"
            ),
        });
    }
    let stacked = stack(loras, deltas)?;
    if stacked.is_empty() {
        return Err(ExportError::Unsupported {
            reason: "it changes no linear weight".into(),
        });
    }
    let fail = |path: &Path, e: &dyn std::fmt::Display| ExportError::Adapter {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut targets = Vec::new();
    let mut ranks = serde_json::Map::new();
    let mut alphas = serde_json::Map::new();
    let first_rank = stacked
        .values()
        .next()
        .map_or(1, |s| s.a.dim(0).unwrap_or(1));
    let first_alpha = stacked
        .values()
        .next()
        .map_or(1.0, |s| s.scaling * first_rank as f64);
    for (site, s) in &stacked {
        let name = module_name(*site);
        let r = s.a.dim(0)?;
        tensors.push((
            format!("base_model.model.{name}.lora_A.weight"),
            s.a.contiguous()?,
        ));
        tensors.push((
            format!("base_model.model.{name}.lora_B.weight"),
            s.b.contiguous()?,
        ));
        ranks.insert(name.clone(), json!(r));
        alphas.insert(name.clone(), json!(s.scaling * r as f64));
        targets.push(name);
    }
    let config = json!({
        "peft_type": "LORA",
        "task_type": null,
        "base_model_name_or_path": base_model,
        "inference_mode": true,
        "r": first_rank,
        "lora_alpha": first_alpha,
        "lora_dropout": 0.0,
        "bias": "none",
        "fan_in_fan_out": false,
        "use_rslora": false,
        "use_dora": false,
        "init_lora_weights": true,
        "modules_to_save": null,
        "target_modules": targets,
        "rank_pattern": Value::Object(ranks),
        "alpha_pattern": Value::Object(alphas),
    });
    std::fs::create_dir_all(dir).map_err(|e| fail(dir, &e))?;
    let weights = dir.join(WEIGHTS_FILE);
    let map: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
    crate::exec::cache::save_tensors_atomic(&weights, &map).map_err(|e| fail(&weights, &e))?;
    let cfg = dir.join(CONFIG_FILE);
    let mut text = serde_json::to_string_pretty(&config).map_err(|e| fail(&cfg, &e))?;
    text.push('\n');
    crate::data::files::write_atomic(&cfg, text.as_bytes()).map_err(|e| fail(&cfg, &e))?;
    Ok(())
}

/// Reads a PEFT LoRA adapter folder into one LoRA per projection, tensors on `device` in
/// `dtype`. Refuses what it would silently misapply: another PEFT type, DoRA, bias training,
/// `fan_in_fan_out`, modules outside the decoder's projections.
pub fn read_adapter(dir: &Path, device: &Device, dtype: DType) -> Result<Vec<(LinearSite, Lora)>> {
    let cfg_path = dir.join(CONFIG_FILE);
    let bad = |reason: String| ExportError::Adapter {
        path: cfg_path.clone(),
        reason,
    };
    let text =
        std::fs::read_to_string(&cfg_path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let cfg: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    if cfg["peft_type"] != "LORA" {
        return Err(bad(format!(
            "peft_type is {}, not \"LORA\"",
            cfg["peft_type"]
        )));
    }
    for (key, refused) in [("use_dora", "DoRA"), ("fan_in_fan_out", "fan_in_fan_out")] {
        if cfg[key] == true {
            return Err(bad(format!("{refused} adapters are not supported")));
        }
    }
    if cfg["bias"].as_str().is_some_and(|b| b != "none") {
        return Err(bad("adapters that train biases are not supported".into()));
    }
    let rslora = cfg["use_rslora"] == true;
    let r0 = cfg["r"].as_f64().unwrap_or(8.0);
    let alpha0 = cfg["lora_alpha"].as_f64().unwrap_or(8.0);
    let pattern = |key: &str, module: &str| {
        cfg[key].as_object().and_then(|m| {
            m.iter()
                .find(|(k, _)| module == k.as_str() || module.ends_with(&format!(".{k}")))
                .and_then(|(_, v)| v.as_f64())
        })
    };
    let weights = dir.join(WEIGHTS_FILE);
    let tensors =
        candle_core::safetensors::load(&weights, device).map_err(|e| ExportError::Adapter {
            path: weights.clone(),
            reason: e.to_string(),
        })?;
    let mut out = Vec::new();
    for (name, a) in &tensors {
        let Some(module) = name
            .strip_suffix(".lora_A.weight")
            .map(|m| m.strip_prefix("base_model.model.").unwrap_or(m))
        else {
            continue;
        };
        let site = site_of(module).ok_or_else(|| ExportError::Adapter {
            path: weights.clone(),
            reason: format!("`{module}` is not a projection of the language model's decoder"),
        })?;
        let b_name = name.replace(".lora_A.weight", ".lora_B.weight");
        let b = tensors.get(&b_name).ok_or_else(|| ExportError::Adapter {
            path: weights.clone(),
            reason: format!("`{name}` has no `{b_name}`"),
        })?;
        let r = pattern("rank_pattern", module).unwrap_or(r0);
        let alpha = pattern("alpha_pattern", module).unwrap_or(alpha0);
        let scaling = if rslora { alpha / r.sqrt() } else { alpha / r };
        out.push((
            site,
            Lora {
                a: a.to_dtype(dtype)?,
                b: b.to_dtype(dtype)?,
                scaling,
            },
        ));
    }
    if out.is_empty() {
        return Err(ExportError::Adapter {
            path: weights,
            reason: "it holds no `lora_A.weight` tensor".into(),
        });
    }
    out.sort_by_key(|(s, _)| *s);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_names_round_trip() {
        for proj in Proj::ALL {
            let site = LinearSite::new(3, proj);
            assert_eq!(site_of(&module_name(site)), Some(site));
        }
        assert_eq!(
            module_name(LinearSite::new(1, Proj::Up)),
            "model.language_model.layers.1.mlp.up_proj"
        );
        assert_eq!(
            site_of("language_model.model.layers.2.self_attn.q_proj"),
            Some(LinearSite::new(2, Proj::Q))
        );
        assert_eq!(
            site_of("model.vision_tower.encoder.layers.0.self_attn.q_proj"),
            None
        );
    }

    #[test]
    fn stacking_reproduces_loras_and_a_low_rank_delta() -> Result<()> {
        let dev = Device::Cpu;
        let site = LinearSite::new(0, Proj::Up);
        let a = Tensor::randn(0f32, 1.0, (2, 5), &dev)?;
        let b = Tensor::randn(0f32, 1.0, (4, 2), &dev)?;
        let b0 = Tensor::randn(0f32, 1.0, (4, 2), &dev)?;
        let a0 = Tensor::randn(0f32, 1.0, (2, 5), &dev)?;
        let delta = b0.matmul(&a0)?.neg()?;
        let lora = Lora {
            a: a.clone(),
            b: b.clone(),
            scaling: 0.5,
        };
        let stacked = stack(&[(site, lora)], &[(site, delta.clone())])?;
        let s = &stacked[&site];
        assert_eq!(s.a.dim(0)?, 4, "rank 2r");
        assert_eq!(s.scaling, 0.5);
        let want = ((b.matmul(&a)? * 0.5)? + delta)?;
        let got = (s.b.matmul(&s.a)? * s.scaling)?;
        let err = (want - got)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(err < 1e-5, "{err}");
        Ok(())
    }
}
