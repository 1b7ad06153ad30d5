//! What `mkedsl run` refuses, and how: what no op can run is refused by `check` itself (so
//! before any tensor work) with the recipe line; preserve data that cannot be drawn and options that would be ignored
//! are errors; a diverging optimisation is a diagnostic naming the step and the case.

mod exec_common;

use exec_common::*;
use mkedsl::exec::{run, ExecError};
use mkedsl::model::LlavaConfig;
use mkedsl::plan::PlanOptions;

fn render(report: &miette::Report) -> String {
    let mut out = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .with_width(1000)
        .render_report(&mut out, report.as_ref())
        .unwrap();
    out
}

/// Two refusals: a `remember` nothing reads, and an alignment over a hidden state of two layers.
const REFUSED: &str = r#"
recipe "refused" { mode: single, seed: 0 }
let memory = incontext_memory(hallucinations(count: 8), at: layer(1).input)
let tuned = layer(1).mlp.down_proj.weight
per edit {
  remember(memory)
  train tuned for 5 steps with adam(lr: 1e-3) {
    let adv = adversarial([embed.text], budget: 0.01, count: 2)
    loss nll(target) + rank_align(hidden(layers(0..2).output, at: last), over: adv, tau: 4)
  }
}
"#;

#[test]
fn what_cannot_run_is_refused_by_check_with_the_recipe_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = recipe(dir.path(), "refused.edit", REFUSED);
    let dims = LlavaConfig::from_path(&tiny()).unwrap().dims();
    let failed = mkedsl::compile(&path, Some(&dims), PlanOptions::default())
        .expect_err("`check --model` refuses both");
    let text = failed
        .render_plain()
        .replace(&dir.path().display().to_string(), "DIR");
    assert!(text.contains("refused.edit:6:3"), "{text}");
    assert!(text.contains("refused.edit:9:"), "{text}");
    insta::assert_snapshot!(text);
    // Through `run`: refused the same way, though the model folder has no weights at all.
    let empty = dir.path().join("config-only");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::copy(tiny().join("config.json"), empty.join("config.json")).unwrap();
    let data = dataset(dir.path(), 1);
    let err = run(&request(dir.path(), path, empty, data, 1)).expect_err("refused");
    assert!(
        render(&err).contains("reads one decoder layer's hidden state"),
        "{}",
        render(&err)
    );
}

#[test]
fn a_diverging_edit_is_a_diagnostic_naming_the_step_and_the_case() {
    let dir = tempfile::tempdir().unwrap();
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), 1);
    let absurd = diverging_ft_l();
    let r = recipe(dir.path(), "diverge.edit", &absurd);
    let err = run(&request(dir.path(), r, model, data, 1)).expect_err("diverges");
    let text = render(&err);
    assert!(text.contains("failed on case 0"), "{text}");
    assert!(
        text.contains("step #0 `train`") && text.contains("diverge.edit:5:3"),
        "{text}"
    );
    assert!(text.contains("at optimisation step"), "{text}");
    assert!(text.contains("lower the learning rate"), "{text}");
}

#[test]
fn preserve_data_must_be_available_and_never_the_edit_cases() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), 2);
    let r = recipe(dir.path(), "lpedit.edit", LPEDIT);
    // The bare fixture records no world: a recipe needing preserved samples cannot run.
    let err =
        run(&request(dir.path(), r.clone(), tiny(), data.clone(), 1)).expect_err("no preserve");
    let text = render(&err);
    assert!(
        text.contains("not the embedded model") && text.contains("--preserve FILE"),
        "{text}"
    );
    // The edit data itself is refused as preserve data.
    let mut req = request(dir.path(), r.clone(), tiny(), data.clone(), 1);
    req.preserve = Some(data.clone());
    let text = render(&run(&req).expect_err("edit data as preserve data"));
    assert!(text.contains("must never be the edit cases"), "{text}");
    // Another MMEdit file works for text and VQA samples, but captions need their own file.
    let other = tempfile::tempdir().unwrap();
    let preserve = dataset(other.path(), 20);
    req.preserve = Some(preserve.clone());
    let text = render(&run(&req).expect_err("no captions file"));
    assert!(
        text.contains("caption samples") && text.contains("--preserve-captions"),
        "{text}"
    );
    req.preserve_captions = Some(preserve.clone());
    let ok = run(&req).expect("runs with preserve files");
    assert!(ok.preserve.contains("--preserve"));
    // A recipe that draws no preserved samples refuses the option instead of ignoring it.
    let ft = recipe(dir.path(), "ft.edit", FT_L);
    let mut req = request(dir.path(), ft, tiny(), data, 1);
    req.preserve = Some(preserve);
    let err = run(&req).expect_err("ignored option");
    assert!(err.downcast_ref::<ExecError>().is_some());
    assert!(render(&err).contains("draws no preserved samples"));
}

#[test]
fn mode_flags_that_would_be_ignored_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), 1);
    let r = recipe(dir.path(), "ft.edit", FT_L);
    let mut req = request(dir.path(), r, model, data, 1);
    req.k = Some(3);
    let text = render(&run(&req).expect_err("--k in single mode"));
    assert!(
        text.contains("--k applies to sequential editing only"),
        "{text}"
    );
}

#[test]
fn unike_needs_the_world_and_cannot_write_its_memory_as_an_artefact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), 1);
    let r = recipe(dir.path(), "unike.edit", UNIKE);
    let text = render(
        &run(&request(dir.path(), r.clone(), tiny(), data.clone(), 1)).expect_err("no world"),
    );
    assert!(
        text.contains("hallucination triplets") && text.contains("records no world"),
        "{text}"
    );
    let model = embedded_model(dir.path());
    let mut req = request(dir.path(), r, model, data, 1);
    req.out = Some(dir.path().join("out"));
    let text = render(&run(&req).expect_err("--out"));
    assert!(
        text.contains("--out cannot write this recipe's edit"),
        "{text}"
    );
}
