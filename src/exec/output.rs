//! `--out DIR`: the edited artefact of every case (single editing) or group (sequential), as
//! safetensors plus a JSON file saying where each tensor applies.
//!
//! An artefact is everything the edit changed relative to the original model: the LoRAs the
//! recipe attached, with their trained tensors and scaling, and a weight delta `ΔW = W_edited −
//! W_original` for every projection whose weight changed (a fine-tuned weight, or ELoRA's
//! `W ← W − BA`). Applying it to the original checkpoint — `W ← W + ΔW`, then
//! `y += scaling · (x Aᵀ) Bᵀ` — gives the edited model ([`apply`]). Files are written
//! into a fresh folder that then replaces the case's folder as one unit.
//!
//! ```text
//! DIR/case-00012/edit.safetensors   lora.0.A, lora.0.B, …, delta.0, …
//! DIR/case-00012/edit.json          {"format": "mkedsl-edit/1", "loras": [...], "weight_deltas": [...], ...}
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::files::write_atomic;
use crate::eval::EditState;
use crate::exec::cache::save_tensors_atomic;
use crate::exec::error::{ExecError, Result};
use crate::model::site::Proj;
use crate::model::{Activation, ExtraNeurons, LinearSite, Lora, VisionLanguageModel};

/// The artefact format's name and version.
pub const FORMAT: &str = "mkedsl-edit/1";
const TENSORS: &str = "edit.safetensors";
const MANIFEST: &str = "edit.json";

/// What an edit changed.
#[derive(Debug, Clone)]
pub struct Artefact {
    pub loras: Vec<(LinearSite, Lora)>,
    pub deltas: Vec<(LinearSite, Tensor)>,
    /// Extra FFN neurons by layer (their activation is the model's own).
    pub neurons: Vec<(usize, ExtraNeurons)>,
}

/// Where an artefact came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    pub recipe: String,
    pub recipe_file: String,
    pub model: String,
    pub model_hash: String,
    pub mode: String,
    /// Indices (in the data file) of the cases edited into this artefact.
    pub cases: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LoraEntry {
    site: String,
    a: String,
    b: String,
    rank: usize,
    scaling: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DeltaEntry {
    site: String,
    tensor: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct NeuronEntry {
    layer: usize,
    keys: String,
    key_bias: Option<String>,
    values: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Manifest {
    format: String,
    #[serde(flatten)]
    provenance: Provenance,
    loras: Vec<LoraEntry>,
    weight_deltas: Vec<DeltaEntry>,
    #[serde(default)]
    extra_neurons: Vec<NeuronEntry>,
    apply: String,
}

/// Everything `state` changed relative to `original`: LoRAs added after the original's, and
/// weights whose tensor was replaced (compared by value).
pub fn capture(state: &EditState, original: &EditState) -> Result<Artefact> {
    let mut loras = Vec::new();
    for site in state.adapters.lora_sites().collect::<Vec<_>>() {
        let before = original.adapters.loras(site).len();
        for l in state.adapters.loras(site).iter().skip(before) {
            loras.push((site, l.clone()));
        }
    }
    let dims = state.model.dims();
    let mut deltas = Vec::new();
    for layer in 0..dims.num_layers {
        for proj in Proj::ALL {
            let site = LinearSite::new(layer, proj);
            let now = state.model.linear_weight(site)?;
            let was = original.model.linear_weight(site)?;
            if now.id() == was.id() {
                continue;
            }
            let delta = (now.to_dtype(DType::F32)? - was.to_dtype(DType::F32)?)?;
            let moved = delta.abs()?.max_all()?.to_scalar::<f32>()?;
            if moved > 0.0 {
                deltas.push((site, delta));
            }
        }
    }
    let mut neurons = Vec::new();
    for layer in state.adapters.neuron_layers().collect::<Vec<_>>() {
        let before = original.adapters.neurons_at(layer).len();
        for n in state.adapters.neurons_at(layer).iter().skip(before) {
            neurons.push((layer, n.clone()));
        }
    }
    Ok(Artefact {
        loras,
        deltas,
        neurons,
    })
}

/// Writes an artefact into `dir` (created if needed).
pub fn write(dir: &Path, artefact: &Artefact, provenance: &Provenance) -> Result<PathBuf> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut loras = Vec::new();
    for (i, (site, l)) in artefact.loras.iter().enumerate() {
        let (a, b) = (format!("lora.{i}.A"), format!("lora.{i}.B"));
        tensors.insert(a.clone(), l.a.detach());
        tensors.insert(b.clone(), l.b.detach());
        loras.push(LoraEntry {
            site: site.to_string(),
            a,
            b,
            rank: l.a.dim(0)?,
            scaling: l.scaling,
        });
    }
    let mut weight_deltas = Vec::new();
    for (i, (site, d)) in artefact.deltas.iter().enumerate() {
        let name = format!("delta.{i}");
        tensors.insert(name.clone(), d.detach());
        weight_deltas.push(DeltaEntry {
            site: site.to_string(),
            tensor: name,
        });
    }
    let mut extra_neurons = Vec::new();
    for (i, (layer, n)) in artefact.neurons.iter().enumerate() {
        let (k, b, v) = (
            format!("neurons.{i}.keys"),
            format!("neurons.{i}.key_bias"),
            format!("neurons.{i}.values"),
        );
        tensors.insert(k.clone(), n.keys.detach());
        // Regulated values are written as used (UniKE Eq. 6: V + β·W_ζ ζ).
        tensors.insert(v.clone(), n.effective_values()?.detach());
        if let Some(bias) = &n.bias {
            tensors.insert(b.clone(), bias.detach());
        }
        extra_neurons.push(NeuronEntry {
            layer: *layer,
            keys: k,
            key_bias: n.bias.as_ref().map(|_| b),
            values: v,
        });
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        provenance: provenance.clone(),
        loras,
        weight_deltas,
        extra_neurons,
        apply: "for each weight delta W ← W + delta; for each LoRA y ← y + scaling · (x Aᵀ) Bᵀ at its site; for each extra-neuron set FFN(q) ← FFN(q) + act(q keysᵀ + key_bias) values, act the model's hidden_act (tensors in edit.safetensors, HF weight layout (out, in))".into(),
    };
    // Both files go into a fresh folder beside `dir`, which then replaces `dir` as one unit: a
    // kill at any moment leaves the previous artefact or the new one, never a manifest naming
    // tensors its safetensors file does not hold. (A killed run's folder is a temporary that
    // the next write cleans.)
    let fail = |path: &Path, e: &dyn std::fmt::Display| ExecError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let parent = dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| fail(parent, &e))?;
    let staged = crate::data::files::temp_dir_in(parent).map_err(|e| fail(parent, &e))?;
    save_tensors_atomic(&staged.path().join(TENSORS), &tensors)?;
    let mut json = serde_json::to_string_pretty(&manifest).map_err(|e| fail(dir, &e))?;
    json.push('\n');
    let staged_manifest = staged.path().join(MANIFEST);
    write_atomic(&staged_manifest, json.as_bytes()).map_err(|e| fail(&staged_manifest, &e))?;
    crate::data::files::replace_dir(staged, dir).map_err(|e| fail(dir, &e))?;
    Ok(dir.join(MANIFEST))
}

/// Reads an artefact folder written by [`write`]; tensors land on `device`. Extra neurons come
/// back with a placeholder activation: [`apply`] gives them the model's.
pub fn read(dir: &Path, device: &candle_core::Device) -> Result<(Artefact, Provenance)> {
    let bad = |reason: String| ExecError::Artefact {
        path: dir.to_path_buf(),
        reason,
    };
    let text =
        std::fs::read_to_string(dir.join(MANIFEST)).map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
    let manifest: Manifest =
        serde_json::from_str(&text).map_err(|e| bad(format!("{MANIFEST}: {e}")))?;
    if manifest.format != FORMAT {
        return Err(bad(format!("format `{}` is not {FORMAT}", manifest.format)));
    }
    let tensors = candle_core::safetensors::load(dir.join(TENSORS), device)
        .map_err(|e| bad(format!("{TENSORS}: {e}")))?;
    let get = |name: &str| {
        tensors
            .get(name)
            .cloned()
            .ok_or_else(|| bad(format!("{TENSORS} has no tensor `{name}`")))
    };
    let site = |s: &str| s.parse::<LinearSite>().map_err(bad);
    let mut loras = Vec::new();
    for l in &manifest.loras {
        loras.push((
            site(&l.site)?,
            Lora {
                a: get(&l.a)?,
                b: get(&l.b)?,
                scaling: l.scaling,
            },
        ));
    }
    let mut deltas = Vec::new();
    for d in &manifest.weight_deltas {
        deltas.push((site(&d.site)?, get(&d.tensor)?));
    }
    let mut neurons = Vec::new();
    for n in &manifest.extra_neurons {
        neurons.push((
            n.layer,
            ExtraNeurons {
                keys: get(&n.keys)?,
                bias: n.key_bias.as_deref().map(get).transpose()?,
                values: get(&n.values)?,
                act: Activation::Silu,
                regulation: None,
            },
        ));
    }
    Ok((
        Artefact {
            loras,
            deltas,
            neurons,
        },
        manifest.provenance,
    ))
}

/// Applies an artefact to a state holding the original model.
pub fn apply(artefact: &Artefact, state: &mut EditState) -> Result<()> {
    // Edited tensors in the dtype they were trained in (f32 on a half-precision model, where an
    // edited weight stays an f32 copy: bf16 would round a small delta away).
    let dtype = crate::model::precision::trained_dtype(state.model.dtype());
    for (site, d) in &artefact.deltas {
        let w = state.model.linear_weight(*site)?;
        let moved = (w.to_dtype(DType::F32)? + d.to_dtype(DType::F32)?)?;
        state
            .model
            .replace_linear_weight(*site, moved.to_dtype(dtype)?)?;
    }
    if !artefact.neurons.is_empty() {
        let name = &state.model.config().text_config.hidden_act;
        let act = Activation::from_name(name).ok_or_else(|| ExecError::Artefact {
            path: std::path::PathBuf::from("edit.json"),
            reason: format!("the model's activation `{name}` is unknown"),
        })?;
        for (layer, n) in &artefact.neurons {
            state.adapters.neurons(
                *layer,
                ExtraNeurons {
                    keys: n.keys.to_dtype(dtype)?,
                    bias: n.bias.as_ref().map(|b| b.to_dtype(dtype)).transpose()?,
                    values: n.values.to_dtype(dtype)?,
                    act,
                    regulation: None,
                },
            );
        }
    }
    for (site, l) in &artefact.loras {
        state.adapters.lora(
            *site,
            Lora {
                a: l.a.to_dtype(dtype)?,
                b: l.b.to_dtype(dtype)?,
                scaling: l.scaling,
            },
        );
    }
    Ok(())
}
