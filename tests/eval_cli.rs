//! `mkedsl eval` and `mkedsl infer --question` end to end on the tiny checkpoint, through the
//! built binary, on a small world dataset written with the data layer's writer.

use std::path::{Path, PathBuf};
use std::process::Command;

use mkedsl::data::{write_dataset, LLAVA_15_TEMPLATE};
use mkedsl::world::{CaseKind, World};

fn tiny() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tiny-llava"
    ))
}

fn mkedsl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mkedsl"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run mkedsl")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Writes `n` E-VQA cases of the world into `dir` (pred = "red": the writer needs some answer).
fn dataset(dir: &Path, n: usize) -> PathBuf {
    let cases = World::new(3)
        .edit_cases(CaseKind::Evqa, n, 0)
        .expect("plan");
    write_dataset(CaseKind::Evqa, &cases, dir, |_, _| Ok("red".into()))
        .expect("writes")
        .json
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn eval_prints_the_baseline_table_and_writes_the_json_report() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dataset(dir.path(), 4);
    let json = dir.path().join("out/report.json");
    let model = tiny();
    let out = mkedsl(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--limit",
        "3",
        "--max-new-tokens",
        "4",
        "--json",
        s(&json),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).expect("utf-8");
    for needle in [
        "recipe    pre-edit (unedited model) · editor identity",
        &format!("model     {}", model.display()),
        &format!(
            "data      {} (3 cases; first 3 of 4 records considered)",
            data.display()
        ),
        "run       mode single · seed none · device cpu",
        "template  \"USER: <image>\\n{question} ASSISTANT:\" (LLaVA-1.5 default)",
        "pre-edit   token",
        "post-edit  token",
    ] {
        assert!(table.contains(needle), "{needle:?} missing from\n{table}");
    }

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report written"))
            .expect("json");
    assert_eq!(report["cases"], 3);
    assert_eq!(report["mode"], "single");
    assert_eq!(report["seed"], serde_json::Value::Null);
    assert_eq!(report["device"], "cpu");
    assert_eq!(report["per_case"].as_array().map(Vec::len), Some(3));
    // The identity editor changes nothing: locality is exactly 1 and post = pre on Rel/Gen.
    for scorer in ["metrics", "generation"] {
        for key in ["t_loc", "m_loc"] {
            assert_eq!(report[scorer][key], 1.0, "{scorer}.{key}");
        }
        for key in ["rel", "t_gen", "m_gen"] {
            let post = report[scorer][key].as_f64().expect("number");
            assert!((0.0..=1.0).contains(&post), "{scorer}.{key} = {post}");
            assert_eq!(report["pre_edit"][scorer][key], post, "{scorer}.{key}");
        }
    }
    for key in ["t_loc", "m_loc"] {
        assert_eq!(report["locality_all_positions"][key], 1.0);
    }
}

#[test]
fn sequential_mode_reports_its_groups() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dataset(dir.path(), 3);
    let json = dir.path().join("seq.json");
    let out = mkedsl(&[
        "eval",
        "--model",
        s(&tiny()),
        "--data",
        s(&data),
        "--mode",
        "sequential",
        "--k",
        "2",
        "--max-new-tokens",
        "2",
        "--json",
        s(&json),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        table.contains("mode sequential, K = 2 (2 groups, the last of 1)"),
        "{table}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("written")).expect("json");
    assert_eq!(
        (report["mode"].clone(), report["k"].clone()),
        ("sequential".into(), 2.into())
    );
    let groups: Vec<u64> = report["per_case"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["group"].as_u64().expect("group"))
        .collect();
    assert_eq!(groups, vec![0, 0, 1]);
}

#[test]
fn eval_rejects_bad_inputs_with_diagnostics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dataset(dir.path(), 1);
    let model = tiny();

    let out = mkedsl(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        "/nonexistent/evqa.json",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/evqa.json"),
        "{}",
        stderr(&out)
    );

    let out = mkedsl(&["eval", "--model", "/nonexistent/ckpt", "--data", s(&data)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("/nonexistent/ckpt"),
        "{}",
        stderr(&out)
    );

    let out = mkedsl(&["eval", "--model", s(&model), "--data", s(&data), "--k", "2"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--mode sequential"),
        "{}",
        stderr(&out)
    );

    let out = mkedsl(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--limit",
        "0",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--limit must be positive"),
        "{}",
        stderr(&out)
    );

    // A model folder whose chat template mkedsl cannot interpret is refused, not guessed.
    let odd = dir.path().join("odd-model");
    std::fs::create_dir(&odd).expect("mkdir");
    for entry in std::fs::read_dir(&model).expect("fixture") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), odd.join(entry.file_name())).expect("copy");
    }
    std::fs::write(odd.join("chat_template.jinja"), "<|im_start|>{{ m }}").expect("write");
    let out = mkedsl(&["eval", "--model", s(&odd), "--data", s(&data)]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("prompt_template.txt"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn infer_question_applies_the_evaluators_template() {
    let model = tiny();
    let image = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/preprocess/wide.png"
    ));
    let question = "what color is the circle?";
    let run = |extra: &[&str]| {
        let out = mkedsl(
            &[
                &[
                    "infer",
                    "--model",
                    s(&model),
                    "--max-new-tokens",
                    "3",
                    "--json",
                ][..],
                extra,
            ]
            .concat(),
        );
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    let with_image = run(&["--image", s(&image), "--question", question]);
    let formatted = LLAVA_15_TEMPLATE.replace("{question}", question);
    assert_eq!(with_image["prompt"], formatted.as_str());
    let verbatim = run(&["--image", s(&image), "--prompt", &formatted]);
    assert_eq!(with_image["input_ids"], verbatim["input_ids"]);
    assert_eq!(with_image["answer"], verbatim["answer"]);

    let text_only = run(&["--question", question]);
    assert_eq!(
        text_only["prompt"],
        format!("USER: {question} ASSISTANT:").as_str()
    );

    let out = mkedsl(&["infer", "--model", s(&model)]);
    assert!(!out.status.success(), "a prompt or a question is required");
    let out = mkedsl(&[
        "infer",
        "--model",
        s(&model),
        "--prompt",
        "a",
        "--question",
        "b",
    ]);
    assert!(
        !out.status.success(),
        "--prompt and --question exclude each other"
    );
}
