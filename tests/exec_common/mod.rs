//! Helpers shared by the executor's test files: the tiny LLaVA fixture dressed as an embedded
//! model (a `training.json` naming its world, so preserve samples come from the world's pool), a
//! small dataset written by the data writer, and recipes bound to the fixture's dimensions.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use mkedsl::data::write_dataset;
use mkedsl::eval::{ProbeOptions, SetupRequest};
use mkedsl::exec::{CacheChoice, RunRequest};
use mkedsl::world::{CaseKind, World};

/// The world the fixture "was trained on" (its answers are random, but its preserve pool and
/// edit cases come from this world).
pub const WORLD_SEED: u64 = 5;

pub fn tiny() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-llava"))
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
    write_dataset(CaseKind::Evqa, &cases, &dir.join("data"), |_, _| Ok("red".into()))
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
pub fn request(dir: &Path, recipe: PathBuf, model: PathBuf, data: PathBuf, limit: usize) -> RunRequest {
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
