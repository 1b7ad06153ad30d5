//! Hostile inputs end in a clean diagnostic (exit 1, the file, tensor, field or recipe line
//! named, no panic), never in an abort, a hang or a silently wrong number (issue 12): closed
//! pipes, prompts beyond the context, huge counts, catastrophic tokenizer patterns, config
//! sizes the weights do not back, non-finite weights, non-positive norm epsilons, words outside
//! the vocabulary, image paths leaving their root, control bytes in recipe names, flags of 0.

mod robust_common;

use std::process::{Command, Stdio};

use robust_common::*;

const PROMPT: &str = "USER: what color is the circle? ASSISTANT:";

fn infer(model: &std::path::Path, extra: &[&str]) -> std::process::Output {
    mkedsl(
        &[
            &["infer", "--model", s(model), "--prompt", PROMPT][..],
            extra,
        ]
        .concat(),
    )
}

#[test]
fn a_reader_that_closes_early_ends_the_program_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mkedsl"))
        .args(["infer", "--model", s(&tiny()), "--prompt", PROMPT, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The reader goes away before the answer is printed (loading takes a while).
    drop(child.stdout.take().expect("stdout"));
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
    assert!(stderr.is_empty(), "quietly: {stderr}");
    // SIGPIPE ended the process at its first write, as it ends `cat`.
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(13), "{:?}", out.status);
    }
}

#[test]
fn prompts_beyond_the_models_context_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_copy(dir.path(), "short");
    edit_config(&model, |c| {
        c["text_config"]["max_position_embeddings"] = 4.into();
    });
    let out = infer(&model, &[]);
    fails_cleanly(&out, &["max_position_embeddings", "4"]);
    // A prompt far longer than any context is refused before it is tokenised (a command line
    // holds at most 128 KiB; the data loader bounds longer fields, see below).
    let huge = "red ".repeat(30_000);
    let out = mkedsl(&["infer", "--model", s(&tiny()), "--prompt", &huge]);
    fails_cleanly(&out, &["120000 bytes", "context of 256"]);
}

#[test]
fn generation_stops_at_the_end_of_the_context() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_copy(dir.path(), "short");
    let prompt_len = {
        let out = infer(&tiny(), &["--json", "--max-new-tokens", "1"]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json["input_ids"].as_array().unwrap().len()
    };
    edit_config(&model, |c| {
        c["text_config"]["max_position_embeddings"] = (prompt_len + 2).into();
        c["text_config"]["eos_token_id"] = 1000.into();
    });
    let out = infer(&model, &["--json", "--max-new-tokens", "20"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["generated_ids"].as_array().unwrap().len(), 3);
}

#[test]
fn counts_that_would_exhaust_memory_or_never_end_are_refused_by_check() {
    let dir = tempfile::tempdir().unwrap();
    for (name, body, needle) in [
        (
            "perturb",
            "let v = perturb([noise_text(sigma: 0.01)], count: 1000000000)",
            "`count` must be ≤ 65536",
        ),
        (
            "preserve",
            "use std.spaces\nlet k = preserved_null_space(layer(0).mlp.up_proj.input, over: preserve(text: 1000000000), below: 0.1)",
            "`text` must be ≤ 100000",
        ),
        (
            "steps",
            "let w = layer(0).mlp.down_proj.weight\nper edit { train w for 1000000000 steps with sgd(lr: 0.1) { loss nll(target) } }",
            "at most 100000 steps",
        ),
    ] {
        let text = if name == "perturb" {
            format!("recipe \"R\" {{ paper: \"test\" }}\nper edit {{\n  {body}\n}}\n")
        } else {
            format!("recipe \"R\" {{ paper: \"test\" }}\n{body}\n")
        };
        let r = recipe(dir.path(), &format!("{name}.edit"), &text);
        let out = mkedsl(&["check", s(&r)]);
        fails_cleanly(&out, &[needle, &format!("{name}.edit:")]);
    }
}

#[test]
fn a_catastrophic_tokenizer_pattern_is_a_diagnostic_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_copy(dir.path(), "regex");
    let path = model.join("tokenizer.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    json["pre_tokenizer"] = serde_json::json!({
        "type": "Split",
        "pattern": {"Regex": "(a|aa)+$"},
        "behavior": "Isolated",
        "invert": false
    });
    std::fs::write(&path, json.to_string()).unwrap();
    // Oniguruma gives up after its retry limit and the binding panics: caught, named.
    let prompt = format!("{}!", "a".repeat(40));
    let out = mkedsl(&["infer", "--model", s(&model), "--prompt", &prompt]);
    fails_cleanly(&out, &["tokenizer.json", "retry-limit-in-match"]);
}

#[test]
fn config_sizes_are_compared_with_the_weights_before_anything_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_copy(dir.path(), "huge");
    edit_config(&model, |c| {
        c["text_config"]["num_hidden_layers"] = 1_000_000_000.into();
    });
    let started = std::time::Instant::now();
    fails_cleanly(&infer(&model, &[]), &["num_hidden_layers", "1000000000"]);
    assert!(started.elapsed().as_secs() < 20);
    // Within the accepted range but not what the weights hold: the missing layer is named.
    edit_config(&model, |c| {
        c["text_config"]["num_hidden_layers"] = 3.into();
    });
    fails_cleanly(
        &infer(&model, &[]),
        &["language_model.model.layers.2.input_layernorm.weight"],
    );
}

#[test]
fn zero_and_runaway_flags_are_refused() {
    fails_cleanly(
        &infer(&tiny(), &["--max-new-tokens", "0"]),
        &["--max-new-tokens must be positive"],
    );
    for threads in ["0", "100000"] {
        let out = mkedsl(&["run", "recipes/ft_l.edit", "--threads", threads]);
        fails_cleanly(&out, &["--threads"]);
    }
}

#[test]
fn non_finite_weights_are_refused_at_load_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in [("nan", f32::NAN), ("inf", f32::INFINITY)] {
        let model = tiny_copy(dir.path(), name);
        poke_f32(
            &model,
            "language_model.model.layers.1.mlp.up_proj.weight",
            7,
            value,
        );
        fails_cleanly(
            &infer(&model, &[]),
            &[
                "language_model.model.layers.1.mlp.up_proj.weight",
                "NaN or infinite",
            ],
        );
    }
}

#[test]
fn outputs_that_overflow_are_never_scored_as_agreement() {
    // Finite weights whose forward pass overflows f32: the final norm scaled to 3e38.
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_copy(dir.path(), "overflow");
    fill_f32(&model, "language_model.model.norm.weight", 3e38);
    fails_cleanly(&infer(&model, &[]), &["not finite"]);
    let data = dir.path().join("data");
    write_small_dataset(&data, "red");
    let out = mkedsl(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&data.join("evqa.json")),
    ]);
    let stderr = fails_cleanly(&out, &["not finite"]);
    assert!(String::from_utf8_lossy(&out.stdout).is_empty(), "{stderr}");
}

#[test]
fn non_positive_norm_epsilons_are_refused_in_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_copy(dir.path(), "eps");
    edit_config(&model, |c| {
        c["text_config"]["rms_norm_eps"] = (-1).into();
    });
    fails_cleanly(&infer(&model, &[]), &["rms_norm_eps", "config.json"]);
}

/// An MMEdit file with one record, its images copied beside it, the answer `alt`.
fn write_small_dataset(dir: &std::path::Path, alt: &str) {
    write_dataset_with(dir, alt, "img.png");
}

fn write_dataset_with(dir: &std::path::Path, alt: &str, image: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let png = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/preprocess/wide.png"
    );
    std::fs::copy(png, dir.join("img.png")).unwrap();
    let record = serde_json::json!([{
        "src": "what color is the circle?", "pred": "red", "rephrase": "which color is the circle?",
        "alt": alt, "image": image, "image_rephrase": "img.png", "loc": "what is red?",
        "loc_ans": "red", "m_loc": "img.png", "m_loc_q": "what color is the square?", "m_loc_a": "red"
    }]);
    std::fs::write(dir.join("evqa.json"), record.to_string()).unwrap();
}

#[test]
fn answer_words_outside_the_vocabulary_are_named_in_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_small_dataset(&data, "red zebraquux");
    let out = mkedsl(&[
        "eval",
        "--model",
        s(&tiny()),
        "--data",
        s(&data.join("evqa.json")),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: case 0: `alt` (\"red zebraquux\") holds the word `zebraquux`"),
        "{stderr}"
    );
    assert!(!stderr.contains("`red`"), "known words pass: {stderr}");
}

#[test]
fn image_paths_stay_inside_their_root_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_dataset_with(&data, "red", "../outside.png");
    std::fs::copy(data.join("img.png"), dir.path().join("outside.png")).unwrap();
    let json = data.join("evqa.json");
    let model = tiny();
    let base = ["eval", "--model", s(&model), "--data", s(&json)];
    fails_cleanly(
        &mkedsl(&base),
        &[
            "../outside.png",
            "outside the image root",
            "--images-anywhere",
        ],
    );
    let out = mkedsl(&[&base[..], &["--images-anywhere"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn fields_too_long_for_any_context_are_refused_by_record_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_small_dataset(&data, &"red ".repeat(1_250_000));
    let out = mkedsl(&[
        "eval",
        "--model",
        s(&tiny()),
        "--data",
        s(&data.join("evqa.json")),
    ]);
    fails_cleanly(&out, &["record 0", "`alt`", "5000000 bytes"]);
}

#[test]
fn control_bytes_in_a_recipe_name_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe(
        dir.path(),
        "ctl.edit",
        "recipe \"evil\\u{1b}[2J\\u{7}\" { paper: \"test\" }\nlet w = layer(0).mlp.down_proj.weight\nper edit { train w for 1 steps with sgd(lr: 0.1) { loss nll(target) } }\n",
    );
    let raw = std::fs::read_to_string(&r).unwrap();
    // The recipe may also hold the raw bytes.
    std::fs::write(
        &r,
        raw.replace("\\u{1b}", "\u{1b}").replace("\\u{7}", "\u{7}"),
    )
    .unwrap();
    let out = mkedsl(&["check", s(&r)]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains('\u{1b}') && !stdout.contains('\u{7}'),
        "{stdout:?}"
    );
    assert!(stdout.contains("evil\\u{1b}[2J\\u{7}"), "{stdout}");
}
