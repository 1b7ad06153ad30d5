//! `mkedsl check` and `mkedsl plan` as a user runs them: exit codes, the summary line, JSON.

mod common;

use common::mkedsl;

#[test]
fn check_prints_one_summary_line() {
    let (code, out, _) = mkedsl(&["check", "recipes/elora.edit"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("ok: recipe \"ELoRA\" (recipes/elora.edit): 12 steps"),
        "{out}"
    );
    assert!(out.contains("no model bound"), "{out}");

    // --model takes a checkpoint folder or its config.json.
    for model in ["tests/fixtures/lang", "tests/fixtures/lang/config.json"] {
        let (code, out, _) = mkedsl(&["check", "recipes/unike.edit", "--model", model]);
        assert_eq!(code, 0);
        assert!(
            out.contains("bound to llava (6 layers, hidden 128)"),
            "{out}"
        );
    }
}

#[test]
fn check_fails_with_diagnostics_and_a_non_zero_exit() {
    let (code, out, err) = mkedsl(&["check", "tests/bad_recipes/arg_symbol_typo.edit"]);
    assert_ne!(code, 0);
    assert!(out.is_empty());
    assert!(err.contains("mkedsl::arg::symbol"), "{err}");
    assert!(
        err.contains("tests/bad_recipes/arg_symbol_typo.edit:3:54"),
        "{err}"
    );
    assert!(err.contains("did you mean `kaiming`?"), "{err}");

    let (code, _, err) = mkedsl(&[
        "check",
        "tests/bad_recipes/bound/dim_lora_rank_too_large.edit",
        "--model",
        "tests/fixtures/lang",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("LoRA rank 200 exceeds 128"), "{err}");

    let (code, _, err) = mkedsl(&["check", "recipes/does_not_exist.edit"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("cannot read `recipes/does_not_exist.edit`"),
        "{err}"
    );

    let (code, _, err) = mkedsl(&[
        "check",
        "recipes/elora.edit",
        "--model",
        "tests/fixtures/no_such_model",
    ]);
    assert_ne!(code, 0);
    assert!(err.contains("mkedsl::model::config_io"), "{err}");
}

#[test]
fn plan_prints_numbered_lines_or_json() {
    let (code, out, _) = mkedsl(&[
        "plan",
        "recipes/lpedit.edit",
        "--model",
        "tests/fixtures/lang",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("01)prepare"), "{out}");
    assert!(
        out.contains("--#0 covariance layers(3..6).mlp.down_proj.input"),
        "{out}"
    );
    assert!(out.contains("----loss nll(target)"), "{out}");
    assert!(
        out.contains("----project update layers(3..6).mlp.down_proj.weight onto #1 scale"),
        "{out}"
    );

    let (code, out, _) = mkedsl(&["plan", "recipes/elora.edit", "--json", "--device", "cuda"]);
    assert_eq!(code, 0);
    let plan: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    assert_eq!(plan["device"], "cuda");
    assert_eq!(plan["steps"][0]["op"]["op"], "covariance");
    assert_eq!(
        plan["steps"][1]["device"], "cpu",
        "eigendecompositions run on the CPU"
    );

    let (code, _, err) = mkedsl(&["plan", "recipes/elora.edit", "--device", "tpu"]);
    assert_ne!(code, 0);
    assert!(err.contains("tpu"), "{err}");
}

/// `plan --model` sizes a train step's optimiser state and the activations above its frozen
/// prefix. FT-L of the last down_proj on the 6-layer fixture (hidden 128, MLP 344) trains
/// 128 × 344 = 44,032 values; Adam keeps each with a gradient and two moments, 4 × 4 bytes =
/// 704,512 B = 688.0 KiB. ELoRA trains B of two rank-32 adapters at layer 1 with SGD:
/// 344 × 32 + 128 × 32 = 15,104 values × 2 copies × 4 bytes = 120,832 B = 118.0 KiB.
#[test]
fn plan_estimates_optimiser_state_and_activations_above_the_prefix() {
    let line = training_line("recipes/ft_l.edit");
    assert!(line.contains("from layer 5"), "{line}");
    assert!(
        line.contains(
            "688.0 KiB for 44032 trained values, each with a gradient and Adam's two moments"
        ),
        "{line}"
    );
    let line = training_line("recipes/elora.edit");
    assert!(
        line.contains("118.0 KiB for 15104 trained values, each with a gradient (f32)"),
        "{line}"
    );
}

/// The `training` line of `mkedsl plan RECIPE --model tests/fixtures/lang`.
fn training_line(recipe: &str) -> String {
    let (code, stdout, stderr) = mkedsl(&["plan", recipe, "--model", "tests/fixtures/lang"]);
    assert_eq!(code, 0, "{stderr}");
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with("training"))
        .unwrap_or_else(|| panic!("{stdout}"))
        .to_string()
}

/// Issue 16: a recipe in calibrated units checks against the embedded model, and the plan shows
/// what its window share resolves to on that model (and stays a share without one).
#[test]
fn calibrated_units_check_and_plan_with_their_resolution() {
    let recipe = "recipes/ablations/elora_calibrated.edit";
    let (code, out, err) = mkedsl(&["check", recipe, "--model", "examples/model"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("bound to llava"), "{out}");
    let (code, out, _) = mkedsl(&["plan", recipe, "--model", "examples/model"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("mask_vision(window 2 of 36 tokens (share 0.0417))"),
        "{out}"
    );
    assert!(
        out.contains("noise_text(sigma 0.5 × RMS of the text embeddings)"),
        "{out}"
    );
    assert!(out.contains("(chance_corrected similarity)"), "{out}");
    let (code, out, _) = mkedsl(&["plan", recipe]);
    assert_eq!(code, 0);
    assert!(out.contains("mask_vision(share: 0.0417)"), "{out}");
    // A `--set` of the share changes the resolved window.
    let (code, out, _) = mkedsl(&[
        "plan",
        recipe,
        "--model",
        "examples/model",
        "--set",
        "window_share=0.67",
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("window 24 of 36 tokens (share 0.67)"), "{out}");
}
