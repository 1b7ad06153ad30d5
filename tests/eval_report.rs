//! The report: its JSON schema (written atomically) and the table's rendering, on the test
//! double's hand-computed sequential run (see eval_scores.rs for the numbers).

mod eval_double;

use eval_double::*;
use mkedsl::eval::{
    evaluate, EditMode, EditState, EvalOptions, EvalReport, ResolvedTemplate, RunInfo,
};

fn report(mode: EditMode) -> EvalReport {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = eval_cases(dir.path());
    let mut state = EditState::new(word_model());
    let evaluation = evaluate(
        &mut state,
        &mut ClassEditor::default(),
        &cases,
        &EvalOptions {
            mode,
            ..EvalOptions::default()
        },
    )
    .expect("evaluates");
    EvalReport::new(
        RunInfo {
            recipe: "recipes/class.edit".into(),
            model: "double/word-model".into(),
            data: "double/cases.json".into(),
            seed: Some(7),
            device: "cpu".into(),
            template: ResolvedTemplate::llava15(),
            dropped: 1,
            data_files: Vec::new(),
            field_templates: Default::default(),
        },
        evaluation,
    )
}

#[test]
fn the_table_states_the_run_and_both_scorers() {
    insta::assert_snapshot!(report(EditMode::Sequential { k: 2 }).table());
    let single = report(EditMode::Single).table();
    assert!(
        single.contains("run       mode single · seed 7 · device cpu"),
        "{single}"
    );
}

#[test]
fn the_json_report_has_the_documented_schema() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("reports/run.json");
    let report = report(EditMode::Sequential { k: 2 });
    report.write_json(&path).expect("writes");
    // Atomic write: the folder holds the report and nothing else (no temporary file left).
    let entries: Vec<_> = std::fs::read_dir(dir.path().join("reports"))
        .expect("folder")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from("run.json")]);

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    for key in ["recipe", "model", "data", "device", "mode"] {
        assert!(json[key].is_string(), "{key}");
    }
    assert_eq!(json["seed"], 7);
    assert_eq!(json["cases"], 2);
    assert_eq!(json["k"], 2);
    let in_unit = |v: &serde_json::Value| v.as_f64().is_some_and(|x| (0.0..=1.0).contains(&x));
    for scorer in ["metrics", "generation"] {
        for key in ["rel", "t_gen", "m_gen", "t_loc", "m_loc"] {
            assert!(in_unit(&json[scorer][key]), "{scorer}.{key}");
        }
        for key in ["rel", "t_gen", "m_gen"] {
            assert!(
                in_unit(&json["pre_edit"][scorer][key]),
                "pre_edit.{scorer}.{key}"
            );
        }
    }
    assert_eq!(json["metrics"]["m_loc"], 0.75);
    assert_eq!(json["pre_edit"]["metrics"]["m_gen"], 0.25);
    assert_eq!(json["per_case"].as_array().map(Vec::len), Some(2));
    for t in ["pre_edit_s", "prepare_s", "edit_s", "score_s", "total_s"] {
        assert!(json["timing"][t].as_f64().is_some_and(|s| s >= 0.0), "{t}");
    }

    // Everything but the timings is deterministic: snapshot it.
    let mut stable = json.clone();
    if let Some(map) = stable.as_object_mut() {
        map.remove("timing");
    }
    insta::assert_json_snapshot!(stable);
}
