//! `mkedsl infer` end to end on the tiny checkpoint, through the built binary.

mod common;

use std::process::Command;

use candle_core::DType;
use common::*;
use mkedsl::model::{Adapters, Hooks, PadSide, Readout, VisionLanguageModel};

fn mkedsl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mkedsl"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run mkedsl")
}

#[test]
fn json_output_matches_the_library_and_plain_output_is_the_answer() {
    let model = tiny();
    let image = image_path();
    let base = [
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--image",
        image.to_str().unwrap(),
        "--prompt",
        PROMPT,
    ];
    let out = mkedsl(&[&base[..], &["--max-new-tokens", "5", "--json"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    let llava = load(DType::F32);
    let encoded = llava.encode(PROMPT, &[common::image()]).unwrap();
    let ids: Vec<u64> = json["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(
        ids,
        encoded
            .input_ids
            .iter()
            .map(|&i| u64::from(i))
            .collect::<Vec<_>>()
    );
    assert_eq!(ids.iter().filter(|&&i| i == 63).count(), 16);

    let batch = llava.batch(&[encoded], PadSide::Right).unwrap();
    let latents = llava.embed(&batch).unwrap();
    let logits = llava
        .forward(
            &latents,
            &mut Hooks::new(),
            &Adapters::new(),
            &Readout::Last,
        )
        .unwrap();
    let logits = logits.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let printed: Vec<f64> = json["next_token_logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(printed.len(), 64);
    let diff = printed
        .iter()
        .zip(&logits)
        .map(|(a, b)| (a - f64::from(*b)).abs())
        .fold(0.0, f64::max);
    assert!(diff < 1e-5, "{diff}");

    let generated: Vec<u32> = json["generated_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let argmax =
        (0..logits.len()).fold(0, |best, i| if logits[i] > logits[best] { i } else { best }) as u32;
    match generated.first() {
        Some(&first) => assert_eq!(first, argmax),
        None => assert!(json["stopped_at_eos"].as_bool().unwrap() && argmax == 2),
    }
    assert!(generated.len() <= 5);
    assert_eq!(
        json["answer"].as_str().unwrap(),
        llava.decode(&generated).unwrap()
    );

    let plain = mkedsl(&[&base[..], &["--max-new-tokens", "5"]].concat());
    assert!(plain.status.success());
    assert_eq!(
        String::from_utf8(plain.stdout)
            .unwrap()
            .trim_end_matches('\n'),
        json["answer"].as_str().unwrap()
    );
}

#[test]
fn errors_exit_non_zero_with_a_diagnostic() {
    let out = mkedsl(&["infer", "--model", "/nonexistent/ckpt", "--prompt", "hi"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/ckpt") && stderr.contains("checkpoint folder"),
        "{stderr}"
    );

    let model = tiny();
    let out = mkedsl(&[
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        PROMPT,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("<image>") && stderr.contains("0 image"),
        "{stderr}"
    );

    let out = mkedsl(&[
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "hi",
        "--device",
        "tpu",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected `cpu` or `cuda`"));
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_without_the_feature_says_how_to_get_it() {
    let model = tiny();
    let out = mkedsl(&[
        "infer",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "hi",
        "--device",
        "cuda",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--features cuda"));
}
