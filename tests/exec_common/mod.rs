//! Helpers shared by the executor's test files: the tiny LLaVA fixture dressed as an embedded
//! model (a `training.json` naming its world, so preserve samples come from the world's pool), a
//! small dataset written by the data writer, and recipes bound to the fixture's dimensions.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use mkedsl::data::write_dataset;
use mkedsl::eval::{ProbeOptions, SetupRequest};
use mkedsl::exec::{CacheChoice, RunRequest};
use mkedsl::world::{CaseKind, World};

/// The world the fixture "was trained on" (its answers are random, but its preserve pool and
/// edit cases come from this world).
pub const WORLD_SEED: u64 = 5;

pub fn tiny() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tiny-llava"
    ))
}

/// Copies the tiny checkpoint to `dir/model` with a `training.json` naming its world.
pub fn embedded_model(dir: &Path) -> PathBuf {
    let model = dir.join("model");
    std::fs::create_dir_all(&model).expect("model folder");
    for entry in std::fs::read_dir(tiny()).expect("fixture") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), model.join(entry.file_name())).expect("copy");
    }
    std::fs::write(
        model.join("training.json"),
        format!(r#"{{"options": {{"world_seed": {WORLD_SEED}, "seed": 0}}}}"#),
    )
    .expect("training.json");
    model
}

/// `n` E-VQA cases of the world, written under `dir/data`.
pub fn dataset(dir: &Path, n: usize) -> PathBuf {
    let cases = World::new(WORLD_SEED)
        .edit_cases(CaseKind::Evqa, n, 1)
        .expect("plan cases");
    write_dataset(CaseKind::Evqa, &cases, &dir.join("data"), |_, _| {
        Ok("red".into())
    })
    .expect("writes")
    .json
}

/// Writes a recipe file.
pub fn recipe(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("recipe");
    path
}

/// A quiet run of `recipe` on `model` and `data`, caching in `dir/cache`, `limit` cases.
pub fn request(
    dir: &Path,
    recipe: PathBuf,
    model: PathBuf,
    data: PathBuf,
    limit: usize,
) -> RunRequest {
    RunRequest {
        setup: SetupRequest {
            model: Some(model),
            data: Some(data),
            limit: Some(limit),
            ..SetupRequest::default()
        },
        cache: CacheChoice::Dir(dir.join("cache")),
        probe: ProbeOptions {
            batch_size: 16,
            max_new_tokens: 4,
        },
        ..RunRequest::new(recipe)
    }
}

/// ELoRA on the fixture's layer 1: preserve set, null space, Eq. 8, knowledge space, projected SGD.
pub const ELORA: &str = r#"
recipe "ELoRA tiny" { paper: "elora", mode: single, seed: 0 }
use std.lora
use std.spaces
let site = layer(1).mlp.up_proj
let keep = preserved_null_space(site.input, over: preserve(text: 24, vqa: 8, caption: 8), below: 0.5)
let up = null_lora(site, rank: 4, keep: keep)
per edit {
  let v = perturb([mask_vision(window: 4), noise_text(sigma: 0.01)], count: 12, apply: each)
  let know = knowledge_space(up.B.input, variants: v, top: 2, keep_above: 0.05, rank: 3)
  train up.B for 30 steps with sgd(lr: 0.5) {
    loss nll(target)
    project grad up.B onto know
  }
}
evaluate [rel, t_gen, m_gen, t_loc, m_loc]
"#;

/// FT-L: fine-tune the last layer's down projection.
pub const FT_L: &str = r#"
recipe "FT-L tiny" { mode: single, seed: 0 }
let tuned = layer(-1).mlp.down_proj.weight
per edit {
  train tuned for 20 steps with adam(lr: 0.01) { loss nll(target) }
}
"#;

/// FT-L made to diverge: finite numbers whose first update overflows f32.
pub fn diverging_ft_l() -> String {
    FT_L.replace("adam(lr: 0.01)", "sgd(lr: 1e30)")
        .replace("loss nll(target)", "loss 1e30 * nll(target)")
}

/// Plain LoRA on layer 1's FFN.
pub const LORA: &str = r#"
recipe "LoRA tiny" { mode: single, seed: 0 }
use std.lora
let up = plain_lora(layer(1).mlp.up_proj, rank: 4, alpha: 8)
let down = plain_lora(layer(1).mlp.down_proj, rank: 4, alpha: 8)
per edit {
  train [up, down] for 20 steps with adam(lr: 0.01) { loss nll(target) }
}
"#;

/// LoRA-Null: A in the text-only null space, frozen; B trained.
pub const LORA_NULL: &str = r#"
recipe "LoRA-Null tiny" { mode: single, seed: 0 }
use std.lora
use std.spaces
let keep = preserved_null_space(layer(1).mlp.down_proj.input, over: preserve(text: 16), below: 0.5)
let down = null_lora(layer(1).mlp.down_proj, rank: 4, keep: keep)
per edit {
  train down for 40 steps with adam(lr: 0.02) { loss nll(target) }
}
"#;

/// LPEdit: Adam updates of layer 1's down projection projected onto the null space, scaled.
pub const LPEDIT: &str = r#"
recipe "LPEdit tiny" { mode: single, seed: 0 }
use std.spaces
let tuned = layers(1..).mlp.down_proj
let keep = preserved_null_space(tuned.input, over: preserve(text: 16, vqa: 8, caption: 8), below: 0.5)
per edit {
  train tuned.weight for 20 steps with adam(lr: 0.01) {
    loss nll(target)
    project update tuned.weight onto keep scale: 1 / (1 + 0.5)
  }
}
"#;

/// ASAM on FT: adversarial latents every step, RCSL with a detached anchor, KL to the original.
pub const ASAM: &str = r#"
recipe "ASAM tiny" { mode: single, seed: 0 }
use std.asam
let tuned = layer(-1).mlp.down_proj.weight
per edit {
  train tuned for 10 steps with adam(lr: 0.01) {
    let adv = lar(budget: 1e-2, count: 3)
    loss with_alignment(nll(target) + kl_to_original(over: preserve(text: 4, vqa: 4)), layer(-1).output, adv, tau: 4, beta: 1)
  }
}
"#;

/// UniKE on both layers: memory of world triplets, encoders, gated latent ICL, regulated neurons.
pub const UNIKE: &str = r#"
recipe "UniKE tiny" { paper: "unike", mode: single, seed: 0 }
use std.unike
let edit_layers = layers(-2..)
let memory = incontext_memory(hallucinations(count: 48), at: edit_layers.input)
let encoders = contrastive_encoders(memory, hidden: 8, depth: 2, lr: 1e-3, steps: 20, batch: 16)
let icl = gated_icl(edit_layers.attn.output, memory, top_k: 4, encoders: encoders)
per edit {
  remember(memory)
  let neurons = regulated_neurons(edit_layers, count: 4, encoders: encoders, beta: 0.1)
  train neurons for 30 steps with adam(lr: 2e-2) { loss nll(target) }
}
"#;

/// Runs the built `mkedsl` binary: no colours, and no cache folder from the environment.
pub fn mkedsl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mkedsl"))
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("MKEDSL_CACHE")
        .output()
        .expect("run mkedsl")
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
