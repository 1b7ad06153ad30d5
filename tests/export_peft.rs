//! PEFT export: `run --out DIR --format peft` and `infer --adapter DIR`.
//!
//! - The committed adapter (`tests/fixtures/peft/adapter`, ELoRA's edit of case 0 of
//!   examples/data/evqa.json as mkedsl exported it) applied by `mkedsl infer --adapter` gives the
//!   next-token logits that PEFT + transformers computed for it (`make_expected.py`, run once:
//!   CI has no PyTorch), on a text prompt and on the edit's own question and image.
//! - An export written by `run --format peft` holds, per projection, exactly the edit's change
//!   `Σ sᵢBᵢAᵢ + ΔW` (ELoRA: a LoRA plus the base change `−B₀A₀`, as one rank-2r LoRA).
//! - Edits a plain LLaVA cannot hold (extra FFN neurons) are refused, saying why.

mod exec_common;

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use exec_common::{dataset, embedded_model, mkedsl, recipe, s, ELORA};
use mkedsl::model::site::LinearSite;

fn fixture() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/peft"))
}

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn infer_with_the_adapter_gives_pefts_logits() {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture().join("expected.json")).expect("expected.json"),
    )
    .expect("json");
    let model = repo("examples/model");
    let adapter = fixture().join("adapter");
    for row in expected["prompts"].as_array().expect("prompts") {
        let floats = |v: &serde_json::Value| -> Vec<f64> {
            v.as_array()
                .expect("array")
                .iter()
                .map(|x| x.as_f64().expect("number"))
                .collect()
        };
        let mut args = vec![
            "infer".to_string(),
            "--model".into(),
            s(&model).into(),
            "--prompt".into(),
            row["prompt"].as_str().expect("prompt").into(),
            "--max-new-tokens".into(),
            "1".into(),
            "--json".into(),
        ];
        if let Some(image) = row["image"].as_str() {
            args.extend(["--image".into(), s(&repo(image)).into()]);
        }
        for (with_adapter, key) in [(false, "base_logits"), (true, "peft_logits")] {
            let mut args = args.clone();
            if with_adapter {
                args.extend(["--adapter".into(), s(&adapter).into()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = mkedsl(&args);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let got: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
            assert_eq!(got["input_ids"], row["input_ids"], "{}", row["name"]);
            // transformers' AutoProcessor loads examples/model and makes the same ids.
            assert_eq!(
                got["input_ids"], row["processor_input_ids"],
                "{}",
                row["name"]
            );
            let diff = max_diff(&floats(&got["next_token_logits"]), &floats(&row[key]));
            // Measured: 4e-6 (f32 on both sides, different summation orders).
            assert!(diff < 1e-3, "{} {key}: max |Δlogit| = {diff}", row["name"]);
        }
        // The edit moved the edit prompt's logits by far more than the tolerance.
        let moved = max_diff(&floats(&row["base_logits"]), &floats(&row["peft_logits"]));
        if row["name"] == "edit" {
            assert!(moved > 1.0, "{moved}");
        }
    }
}

/// `Σ sᵢ Bᵢ Aᵢ` per site.
fn sum_by_site(loras: &[(LinearSite, mkedsl::model::Lora)]) -> Vec<(LinearSite, Tensor)> {
    let mut out: Vec<(LinearSite, Tensor)> = Vec::new();
    for (site, l) in loras {
        let d = (l.b.to_dtype(DType::F64).unwrap())
            .matmul(&l.a.to_dtype(DType::F64).unwrap())
            .and_then(|m| m * l.scaling)
            .expect("product");
        match out.iter_mut().find(|(s, _)| s == site) {
            Some((_, t)) => *t = (&*t + d).expect("sum"),
            None => out.push((*site, d)),
        }
    }
    out
}

#[test]
fn run_format_peft_writes_the_edits_exact_change() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), 1);
    let r = recipe(dir.path(), "elora.edit", ELORA);
    let out_dir = dir.path().join("out");
    let out = mkedsl(&[
        "run",
        s(&r),
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--limit",
        "1",
        "--max-new-tokens",
        "2",
        "--no-cache",
        "--out",
        s(&out_dir),
        "--format",
        "peft,merged",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let case = out_dir.join("case-00000");
    let config: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(case.join("adapter_config.json")).expect("config"),
    )
    .expect("json");
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["use_rslora"], false);
    assert_eq!(
        config["target_modules"],
        serde_json::json!(["model.language_model.layers.1.mlp.up_proj"])
    );
    // ELoRA's rank-4 LoRA plus its rank-4 base change: rank 8, scaling carried as alpha / r.
    let module = "model.language_model.layers.1.mlp.up_proj";
    assert_eq!(config["rank_pattern"][module], 8);

    let (artefact, _) = mkedsl::exec::output::read(&case, &Device::Cpu).expect("artefact");
    assert!(!artefact.deltas.is_empty(), "ELoRA changes the base weight");
    let mut want = sum_by_site(&artefact.loras);
    for (site, d) in &artefact.deltas {
        let d = d.to_dtype(DType::F64).expect("f64");
        match want.iter_mut().find(|(s, _)| s == site) {
            Some((_, t)) => *t = (&*t + d).expect("sum"),
            None => want.push((*site, d)),
        }
    }
    let adapter =
        mkedsl::export::read_adapter(&case, &Device::Cpu, DType::F32).expect("reads back");
    let got = sum_by_site(&adapter);
    assert_eq!(got.len(), want.len());
    for ((ws, w), (gs, g)) in want.iter().zip(&got) {
        assert_eq!(ws, gs);
        let scale = w
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        let err = (w - g)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!(err <= 1e-5 * scale.max(1e-3), "{ws}: {err} of {scale}");
    }

    // infer --adapter loads what was written.
    let infer = mkedsl(&[
        "infer",
        "--model",
        s(&model),
        "--adapter",
        s(&case),
        "--prompt",
        "USER: hello ASSISTANT:",
        "--max-new-tokens",
        "1",
    ]);
    assert!(
        infer.status.success(),
        "{}",
        String::from_utf8_lossy(&infer.stderr)
    );
}

#[test]
fn what_a_plain_llava_cannot_hold_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let err = mkedsl::export::write_adapter(dir.path(), "m", &[], &[], 2).expect_err("neurons");
    let text = err.to_string();
    assert!(text.contains("extra FFN neurons"), "{text}");
    assert!(!dir.path().join("adapter_config.json").exists());
    let merged = dir.path().join("merged");
    let err = mkedsl::export::write_merged(&repo("examples/model"), &merged, &[], &[], 1)
        .expect_err("neurons");
    assert!(format!("{err:?}").contains("widen the MLP"), "{err:?}");
    assert!(!merged.exists());
    // An adapter mkedsl would misapply is refused, not guessed.
    std::fs::write(
        dir.path().join("adapter_config.json"),
        r#"{"peft_type": "LORA", "use_dora": true, "r": 8, "lora_alpha": 16}"#,
    )
    .expect("write");
    let err = mkedsl::export::read_adapter(dir.path(), &Device::Cpu, DType::F32).expect_err("dora");
    assert!(err.to_string().contains("DoRA"), "{err}");
}

/// `--format peft` / `merged` of a recipe that adds extra neurons is refused before any tensor
/// work (no artefact folder is made), with the recipe line and why.
#[test]
fn a_format_that_cannot_hold_the_edit_is_refused_before_the_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = recipe(
        dir.path(),
        "neurons.edit",
        r#"
recipe "neurons" { mode: single, seed: 0 }
per edit {
  let neurons = extra_neurons(layer(-1).mlp, count: 4)
  train neurons for 2 steps with adam(lr: 1e-3) {
    loss nll(target)
  }
}
"#,
    );
    let out = dir.path().join("out");
    for format in ["peft", "merged"] {
        let run = mkedsl(&[
            "run",
            s(&path),
            "--model",
            s(&repo("examples/model")),
            "--out",
            s(&out),
            "--format",
            format,
        ]);
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success());
        assert!(err.contains("widen the MLP"), "{format}: {err}");
        assert!(err.contains("neurons.edit:4"), "{format}: {err}");
        assert!(!out.exists(), "{format}: an artefact folder was made");
    }
}
