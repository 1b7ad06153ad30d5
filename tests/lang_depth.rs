//! Sites written as a position in a paper's model (`layer(7, of: 32)`), resolved against the
//! bound model's depth: the published LLaVA-1.5-7B config keeps the paper's layers and widths,
//! the embedded 6-layer model gets the same relative depth, and `mkedsl plan` shows both readings.

mod common;

use common::mkedsl;

const RECIPE: &str = "tests/fixtures/depth/paper_layers.edit";

/// `mkedsl plan RECIPE --model DIR`, without the memory estimate (it names this machine's memory).
fn plan_lines(model: &str) -> String {
    let (code, out, err) = mkedsl(&["plan", RECIPE, "--model", model]);
    assert_eq!(code, 0, "{err}");
    out.split("\n\n").next().unwrap_or_default().to_string()
}

#[test]
fn the_published_7b_config_keeps_the_papers_layers_and_widths() {
    let plan = plan_lines("tests/fixtures/llava-7b-config");
    assert!(
        plan.contains("32 layers, hidden 4096, intermediate 11008"),
        "{plan}"
    );
    assert!(
        plan.contains("depth layer(7, of: 32): layer 7 of 32 → layer 7 of 32"),
        "{plan}"
    );
    assert!(
        plan.contains(
            "lora layer(7).mlp.up_proj rank 8 alpha 8 init kaiming · A [8×4096], B [11008×8]"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("covariance layers(18..32).mlp.down_proj.input"),
        "{plan}"
    );
    insta::assert_snapshot!(plan);
}

#[test]
fn the_embedded_model_gets_the_same_relative_depth() {
    let plan = plan_lines("examples/model");
    assert!(
        plan.contains("6 layers, hidden 128, intermediate 344"),
        "{plan}"
    );
    // 7·6/32 = 1.31 → 1; 18·6/32 = 3.375 → 3.
    assert!(
        plan.contains("depth layer(7, of: 32): layer 7 of 32 → layer 1 of 6"),
        "{plan}"
    );
    assert!(
        plan.contains("depth layers(18.., of: 32): layers 18–31 of 32 → layers 3–5 of 6"),
        "{plan}"
    );
    assert!(
        plan.contains(
            "lora layer(1).mlp.up_proj rank 8 alpha 8 init kaiming · A [8×128], B [344×8]"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("covariance layers(3..6).mlp.down_proj.input"),
        "{plan}"
    );
    insta::assert_snapshot!(plan);
}

#[test]
fn without_a_model_the_paper_reading_is_shown_unresolved() {
    let (code, out, err) = mkedsl(&["plan", RECIPE]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("depth layer(7, of: 32): layer 7 of 32 → unresolved (no model bound)"),
        "{out}"
    );
    assert!(out.contains("lora layer(7, of: 32).mlp.up_proj"), "{out}");
    let (code, out, err) = mkedsl(&["check", RECIPE]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ok: "), "{out}");
}

#[test]
fn the_plan_json_records_both_readings() {
    let (code, out, err) = mkedsl(&["plan", RECIPE, "--model", "examples/model", "--json"]);
    assert_eq!(code, 0, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["depths"][0]["paper"], "layer 7 of 32");
    assert_eq!(plan["depths"][0]["model"], "layer 1 of 6");
    assert_eq!(plan["depths"][1]["model"], "layers 3–5 of 6");
}
