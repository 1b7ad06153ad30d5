//! Loading real-layout checkpoints, and every way a checkpoint can be wrong: each failure is a
//! diagnostic naming the file (and the tensor), never a panic.

mod common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use common::*;
use miette::Diagnostic;
use mkedsl::model::{
    Adapters, Hooks, Llava, LlavaModel, LoadOptions, ModelError, PadSide, Readout,
    VisionLanguageModel,
};

fn weights() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(tiny().join("model.safetensors"), &Device::Cpu).unwrap()
}

fn damaged(edit: impl FnOnce(&Path)) -> (tempfile::TempDir, ModelError) {
    let dir = tempfile::tempdir().unwrap();
    copy_tiny(dir.path());
    edit(dir.path());
    let err = Llava::load(dir.path(), &LoadOptions::default())
        .expect_err("a damaged checkpoint must not load");
    assert!(
        err.help().is_some(),
        "every loading error carries a help line: {err}"
    );
    (dir, err)
}

fn last_logits(llava: &Llava) -> Tensor {
    let encoded = llava.encode(PROMPT, &[image()]).unwrap();
    let batch = llava.batch(&[encoded], PadSide::Right).unwrap();
    let latents = llava.embed(&batch).unwrap();
    llava
        .forward(
            &latents,
            &mut Hooks::new(),
            &Adapters::new(),
            &Readout::Last,
        )
        .unwrap()
}

#[test]
fn missing_tensor_names_it_and_the_file() {
    let (_dir, err) = damaged(|d| {
        let mut w = weights();
        w.remove("language_model.model.layers.1.mlp.up_proj.weight");
        candle_core::safetensors::save(&w, d.join("model.safetensors")).unwrap();
    });
    let msg = err.to_string();
    assert!(matches!(err, ModelError::MissingTensor { .. }), "{msg}");
    assert!(
        msg.contains("language_model.model.layers.1.mlp.up_proj.weight")
            && msg.contains("model.safetensors"),
        "{msg}"
    );
}

#[test]
fn wrong_shape_names_expected_and_found() {
    let (_dir, err) = damaged(|d| {
        let mut w = weights();
        w.insert(
            "multi_modal_projector.linear_1.weight".into(),
            Tensor::zeros((32, 25), DType::F32, &Device::Cpu).unwrap(),
        );
        candle_core::safetensors::save(&w, d.join("model.safetensors")).unwrap();
    });
    let msg = err.to_string();
    assert!(
        msg.contains("multi_modal_projector.linear_1.weight"),
        "{msg}"
    );
    assert!(
        msg.contains("[32, 25]") && msg.contains("[32, 24]"),
        "{msg}"
    );
}

#[test]
fn config_with_more_layers_than_the_weights() {
    let (_dir, err) = damaged(|d| {
        let text = std::fs::read_to_string(d.join("config.json")).unwrap();
        std::fs::write(
            d.join("config.json"),
            text.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"),
        )
        .unwrap();
    });
    assert!(
        err.to_string().contains("language_model.model.layers.2."),
        "{err}"
    );
}

#[test]
fn truncated_weights_are_reported_not_mapped() {
    let (_dir, err) = damaged(|d| {
        let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
        std::fs::write(d.join("model.safetensors"), &bytes[..bytes.len() - 1000]).unwrap();
    });
    let msg = err.to_string();
    assert!(matches!(err, ModelError::Safetensors { .. }), "{msg}");
    assert!(
        msg.contains("model.safetensors") && msg.contains("truncated"),
        "{msg}"
    );
    let (_dir, err) =
        damaged(|d| std::fs::write(d.join("model.safetensors"), [1u8, 2, 3]).unwrap());
    assert!(err.to_string().contains("too short"), "{err}");
    let (_dir, err) = damaged(|d| {
        let mut bytes = 20u64.to_le_bytes().to_vec();
        bytes.extend(b"{not json at all!!!}");
        std::fs::write(d.join("model.safetensors"), bytes).unwrap();
    });
    assert!(err.to_string().contains("not valid JSON"), "{err}");
}

#[test]
fn unsupported_dtype_is_named() {
    let (_dir, err) = damaged(|d| {
        let mut w = weights();
        w.insert(
            "language_model.model.norm.weight".into(),
            Tensor::zeros(32, DType::I64, &Device::Cpu).unwrap(),
        );
        candle_core::safetensors::save(&w, d.join("model.safetensors")).unwrap();
    });
    assert!(matches!(err, ModelError::UnsupportedDType { .. }), "{err}");
    assert!(err.to_string().contains("I64"), "{err}");
}

#[test]
fn bad_or_missing_files() {
    let (_dir, err) =
        damaged(|d| std::fs::write(d.join("config.json"), "{\"text_config\": ").unwrap());
    assert!(
        err.to_string().contains("config.json") && err.to_string().contains("JSON"),
        "{err}"
    );
    let (_dir, err) = damaged(|d| std::fs::remove_file(d.join("config.json")).unwrap());
    assert!(err.to_string().contains("config.json"), "{err}");
    let (_dir, err) = damaged(|d| std::fs::remove_file(d.join("model.safetensors")).unwrap());
    assert!(
        matches!(err, ModelError::MissingFile { .. })
            && err.to_string().contains("model.safetensors"),
        "{err}"
    );
    let (_dir, err) = damaged(|d| std::fs::remove_file(d.join("tokenizer.json")).unwrap());
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    let (_dir, err) = damaged(|d| std::fs::write(d.join("tokenizer.json"), "[]").unwrap());
    assert!(
        matches!(err, ModelError::Tokenizer { .. }) && err.to_string().contains("tokenizer.json"),
        "{err}"
    );
    let (_dir, err) =
        damaged(|d| std::fs::remove_file(d.join("preprocessor_config.json")).unwrap());
    assert!(
        err.to_string().contains("preprocessor_config.json"),
        "{err}"
    );
    let (_dir, err) = damaged(|d| {
        let text = std::fs::read_to_string(d.join("config.json")).unwrap();
        std::fs::write(
            d.join("config.json"),
            text.replace("\"silu\"", "\"swiglu\""),
        )
        .unwrap();
    });
    assert!(err.to_string().contains("hidden_act"), "{err}");
}

/// Splits the fixture into two shards with an index, like `save_pretrained(max_shard_size=…)`.
fn shard(dir: &Path) {
    let w = weights();
    let mut names: Vec<&String> = w.keys().collect();
    names.sort();
    let (first, second) = names.split_at(names.len() / 2);
    let mut map = serde_json::Map::new();
    for (file, part) in [
        ("model-00001-of-00002.safetensors", first),
        ("model-00002-of-00002.safetensors", second),
    ] {
        let tensors: HashMap<String, Tensor> =
            part.iter().map(|n| ((*n).clone(), w[*n].clone())).collect();
        candle_core::safetensors::save(&tensors, dir.join(file)).unwrap();
        for n in part {
            map.insert((*n).clone(), file.into());
        }
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
}

#[test]
fn sharded_checkpoint_loads_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    copy_tiny(dir.path());
    shard(dir.path());
    let sharded = Llava::load(dir.path(), &LoadOptions::default()).unwrap();
    assert_eq!(
        max_abs_diff(&last_logits(&sharded), &last_logits(&load(DType::F32))),
        0.0
    );

    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    let err = Llava::load(dir.path(), &LoadOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("model-00002-of-00002.safetensors"),
        "{err}"
    );

    let (_dir, err) = damaged(|d| {
        shard(d);
        std::fs::write(
            d.join("model.safetensors.index.json"),
            "{\"weight_map\": 3}",
        )
        .unwrap();
    });
    assert!(matches!(err, ModelError::Index { .. }), "{err}");
}

#[test]
fn half_precision_weights_load_and_save_round_trips() {
    let llava = load(DType::F32);
    let reference = last_logits(&llava);
    for dtype in [DType::F16, DType::BF16] {
        let dir = tempfile::tempdir().unwrap();
        copy_tiny(dir.path());
        llava.model.save_as(dir.path(), dtype).unwrap();
        let header =
            mkedsl::model::checkpoint::read_header(&dir.path().join("model.safetensors")).unwrap();
        let expected = if dtype == DType::F16 { "F16" } else { "BF16" };
        assert!(header.tensors.values().all(|e| e.dtype == expected));
        let half = Llava::load(dir.path(), &LoadOptions::default()).unwrap();
        let diff = max_abs_diff(&last_logits(&half), &reference);
        assert!(diff > 0.0 && diff < 0.1, "{dtype:?}: {diff}");
    }
    // f32 save → load is exact, and the saved header carries transformers' format tag.
    let dir = tempfile::tempdir().unwrap();
    llava.save(dir.path()).unwrap();
    let again = Llava::load(dir.path(), &LoadOptions::default()).unwrap();
    assert_eq!(max_abs_diff(&last_logits(&again), &reference), 0.0);
    assert_eq!(again.config(), llava.config());
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    assert_eq!(header["__metadata__"]["format"], "pt");
}

#[test]
fn fresh_model_saves_every_tensor_the_config_implies() {
    let cfg = load(DType::F32).config().clone();
    let (model, _vars) =
        LlavaModel::fresh(cfg.clone(), Default::default(), DType::F32, &Device::Cpu).unwrap();
    let mut saved: Vec<String> = model.named_tensors().into_iter().map(|(n, _)| n).collect();
    let mut expected: Vec<String> = mkedsl::model::tensors::expected_tensors(&cfg)
        .into_iter()
        .map(|s| s.name)
        .collect();
    saved.sort();
    expected.sort();
    assert_eq!(saved, expected);
    let dir = tempfile::tempdir().unwrap();
    model.save(dir.path()).unwrap();
    let loaded = LlavaModel::load(dir.path(), &LoadOptions::default()).unwrap();
    for ((name, a), (_, b)) in model
        .named_tensors()
        .iter()
        .zip(loaded.named_tensors().iter())
    {
        assert_eq!(max_abs_diff(a, b), 0.0, "{name}");
    }
    // Same seed, same model.
    let (twin, _) = LlavaModel::fresh(cfg, Default::default(), DType::F32, &Device::Cpu).unwrap();
    let (a, b) = (&model.named_tensors()[0].1, &twin.named_tensors()[0].1);
    assert_eq!(max_abs_diff(a, b), 0.0);
}
