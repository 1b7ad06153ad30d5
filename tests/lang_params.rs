//! Recipe parameters: `param NAME = LITERAL` reads like the literal written in place (same plan),
//! `--set NAME=VALUE` replaces it and is checked like that literal, and every misuse — an unknown
//! name, a value of another kind, a value out of range, a computed value — ends in a diagnostic
//! whose rendered form is snapshotted.

mod common;

use std::path::Path;

use mkedsl::model::config::{LlavaConfig, ModelDims};
use mkedsl::plan::{Plan, PlanOptions};
use mkedsl::sema::Overrides;

const FIXTURE: &str = "tests/fixtures/params/lora.edit";

fn dims() -> ModelDims {
    LlavaConfig::from_path(Path::new("tests/fixtures/lang/config.json"))
        .expect("fixture config")
        .dims()
}

fn compile(path: &str, sets: &[&str]) -> Result<mkedsl::Compiled, mkedsl::Failed> {
    let dims = dims();
    mkedsl::compile_with(
        Path::new(path),
        Some(&dims),
        PlanOptions::default(),
        &Overrides::new(sets.iter().map(|s| s.to_string()).collect()),
    )
}

fn plan(path: &str, sets: &[&str]) -> Plan {
    match compile(path, sets) {
        Ok(c) => c.plan,
        Err(f) => panic!("{path} {sets:?} should check:\n{}", f.render_plain()),
    }
}

fn failure(sets: &[&str]) -> String {
    match compile(FIXTURE, sets) {
        Ok(_) => panic!("{sets:?} should be refused"),
        Err(f) => {
            for d in f.diagnostics.iter() {
                assert!(
                    d.span.is_some() && d.label.is_some() && d.help.is_some(),
                    "{d:?}"
                );
            }
            f.render_plain()
        }
    }
}

fn text_plan(text: &str) -> Result<Plan, String> {
    mkedsl::compile_text("t.edit", text, Some(&dims()), PlanOptions::default())
        .map(|c| c.plan)
        .map_err(|f| f.render_plain())
}

const HEAD: &str = "recipe \"T\" { paper: \"t\" }\n";

#[test]
fn a_parameter_reads_exactly_like_its_literal() {
    let literal = text_plan(&format!(
        "{HEAD}let ab = lora(layer(1).mlp.down_proj, rank: 8)\nper edit {{\n  train [ab.A, ab.B] for 70 steps with adam(lr: 1.5e-3) {{ loss nll(target) }}\n}}\n"
    ))
    .unwrap();
    let param = text_plan(&format!(
        "{HEAD}param r = 8\nparam lr = 1.5e-3\nlet ab = lora(layer(1).mlp.down_proj, rank: r)\nper edit {{\n  train [ab.A, ab.B] for 70 steps with adam(lr: lr) {{ loss nll(target) }}\n}}\n"
    ))
    .unwrap();
    let ops = |p: &Plan| p.steps.iter().map(|s| s.op.clone()).collect::<Vec<_>>();
    assert_eq!(ops(&literal), ops(&param));
    assert_eq!(
        format!("{}", literal.display()),
        format!("{}", param.display())
    );
}

#[test]
fn set_replaces_the_value_and_plan_reports_it() {
    let default = compile(FIXTURE, &[]).unwrap();
    let set = compile(FIXTURE, &["rank=4", "lr=3e-3", "seed=7", "init=kaiming"]).unwrap();
    assert_ne!(default.plan.steps, set.plan.steps);
    let shown = set.plan.display().to_string();
    assert!(shown.contains("rank 4"), "{shown}");
    assert!(shown.contains("lr: 0.003"), "{shown}");
    assert_eq!(
        set.program.recipe.seed, 7,
        "a header field takes a parameter too"
    );
    let lines = mkedsl::cli::plan::params_display(&set.params);
    assert_eq!(
        lines,
        "param lr = 3e-3  (--set; default 1.5e-3)\nparam rank = 4  (--set; default 8)\nparam steps = 70\nparam init = kaiming  (--set; default kaiming)\nparam seed = 7  (--set; default 0)\n"
    );
    // An Int may stand for a Float.
    assert!(compile(FIXTURE, &["lr=1"]).is_ok());
    // The shipped recipes' parameters: the defaults are the literals they replaced.
    let lora = plan("recipes/lora.edit", &["rank=8"]);
    assert!(lora.display().to_string().contains("rank 8 alpha 32"));
}

#[test]
fn the_plan_command_prints_the_bound_values() {
    let (code, stdout, stderr) = common::mkedsl(&["plan", FIXTURE, "--set", "steps=5"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.starts_with(
            "param lr = 1.5e-3\nparam rank = 8\nparam steps = 5  (--set; default 70)\n"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("for 5 steps"), "{stdout}");
    let (code, _, stderr) = common::mkedsl(&["check", FIXTURE, "--set", "stpes=5"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("did you mean `steps`?"), "{stderr}");
}

#[test]
fn unknown_set_name() {
    insta::assert_snapshot!(failure(&["rnak=4"]));
}

#[test]
fn set_of_the_wrong_kind() {
    insta::assert_snapshot!(failure(&["rank=0.5"]));
    insta::assert_snapshot!("set_string_for_float", failure(&["lr=\"fast\""]));
}

#[test]
fn set_out_of_range_points_at_the_set_and_the_declaration() {
    insta::assert_snapshot!("set_negative_lr", failure(&["lr=-1e-3"]));
    insta::assert_snapshot!("set_zero_steps", failure(&["steps=0"]));
    insta::assert_snapshot!("set_bad_symbol", failure(&["init=gaussian"]));
}

#[test]
fn set_rank_above_the_model_is_a_dimension_error() {
    let text = failure(&["rank=1000"]);
    assert!(text.contains("--set"), "{text}");
    insta::assert_snapshot!("set_rank_too_large", text);
}

#[test]
fn a_value_checked_inside_a_function_names_the_set() {
    // LoRA's rank goes through std.lora's `plain_lora`: the error is where the function reads
    // it, and the call in the recipe and the `--set` are notes.
    let text = match compile("recipes/lora.edit", &["rank=1000"]) {
        Ok(_) => panic!("rank 1000 should be refused"),
        Err(f) => f.render_plain(),
    };
    assert!(text.contains("LoRA rank 1000 exceeds 128"), "{text}");
    assert!(text.contains("in this call of `plain_lora`"), "{text}");
    assert!(
        text.contains("`rank` comes from `--set rank=1000`"),
        "{text}"
    );
}

#[test]
fn set_syntax_and_repetition() {
    insta::assert_snapshot!("set_computed", failure(&["rank=2 * 4"]));
    insta::assert_snapshot!("set_twice", failure(&["rank=4", "rank=2"]));
    insta::assert_snapshot!("set_no_value", failure(&["rank="]));
}

#[test]
fn declarations_are_checked() {
    let cases = [
        (
            "param r = 8\nparam r = 4\nlet x = lora(layer(1).mlp.down_proj, rank: r)\n",
            "declared twice",
        ),
        (
            "param r = 2 * 4\nlet x = lora(layer(1).mlp.down_proj, rank: r)\n",
            "not a literal",
        ),
        ("param r = 8\n", "never used"),
        ("param r = 8\nlet r = 4\n", "already defined"),
        ("param layer = 8\n", "builtin function"),
        (
            "fn f() -> Int { r }\nparam r = 8\nlet x = f()\n",
            "unknown name `r`",
        ),
        ("per edit {\n  param r = 8\n}\n", "unexpected"),
    ];
    for (body, expected) in cases {
        let err = text_plan(&format!("{HEAD}{body}")).expect_err(body);
        assert!(err.contains(expected), "{body}: {err}");
    }
}

#[test]
fn param_is_a_keyword_and_formats_canonically() {
    let err = text_plan(&format!("{HEAD}let param = 1\n")).expect_err("keyword");
    assert!(err.contains("`param` is a keyword"), "{err}");
    let src = format!("{HEAD}param   lr=1e-3 # the rate\nper edit {{\n  train layer(5).mlp.down_proj.weight for 2 steps with sgd(lr: lr) {{ loss nll(target) }}\n}}\n");
    let once = mkedsl::fmt::format_text("t.edit", &src).expect("formats");
    assert!(once.contains("param lr = 1e-3  # the rate\n"), "{once}");
    let twice = mkedsl::fmt::format_text("t.edit", &once).expect("formats");
    assert_eq!(once, twice);
}
