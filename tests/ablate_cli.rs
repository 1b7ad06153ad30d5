//! `mkedsl ablate` end to end on the embedded model: two arms, two seeds, two cases; the tuning
//! rule's choice is the smallest passing value of its trace; the control's scores at its chosen
//! rate are exactly what `mkedsl run` scores; differences are paired by case (by sequence when
//! edits accumulate); bad requests are refused before any run; `examples/claims.sh` checks
//! every ablation it would run.

mod common;

use std::path::Path;

use common::mkedsl;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
use serde_json::Value;

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("file")).expect("json")
}

#[test]
fn two_arms_are_tuned_run_over_seeds_and_compared_by_case() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("abl");
    let (code, stdout, stderr) = mkedsl(&[
        "ablate",
        "recipes/ft_l.edit",
        "recipes/ablations/lpedit_no_projection.edit",
        "--data",
        "examples/data/evqa.json",
        "--limit",
        "2",
        "--seeds",
        "2",
        "--tuning-data",
        "examples/data/tuning/evqa.json",
        "--tuning-limit",
        "2",
        "--no-cache",
        "--out",
        s(&out),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("| data | arm | lr (tuning Rel) | Rel |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| evqa.json | FT-L (control) |"),
        "{stdout}"
    );
    assert!(stdout.contains("Arm − control"), "{stdout}");
    assert!(stdout.contains("seeds 0, 1"), "{stdout}");
    let table = std::fs::read_to_string(out.join("ablation.md")).expect("ablation.md");
    assert!(
        stdout.starts_with(&table),
        "the file holds the printed table"
    );

    let file = read(&out.join("ablation.json"));
    assert_eq!(file["format"], "mkedsl-ablation/1");
    assert_eq!(file["seeds"], serde_json::json!([0, 1]));
    assert_eq!(file["mode"], "single");
    let arms = file["arms"].as_array().expect("arms");
    assert_eq!(arms.len(), 2);

    // The rule: the chosen value passed, and every smaller value tried failed.
    for arm in arms {
        let choice = &arm["choice"];
        let chosen = choice["value"].as_f64().unwrap();
        assert_eq!(choice["matched"], true, "{arm}");
        let trials = choice["trials"].as_array().unwrap();
        let rel_of = |v: f64| {
            trials
                .iter()
                .find(|t| (t["value"].as_f64().unwrap() - v).abs() < 1e-12 * v)
                .map(|t| t["rel"].as_f64().unwrap())
        };
        assert!(rel_of(chosen).unwrap() >= 0.9, "{arm}");
        for t in trials {
            let v = t["value"].as_f64().unwrap();
            if v < chosen * (1.0 - 1e-9) {
                assert!(t["rel"].as_f64().unwrap() < 0.9, "{arm}");
            }
        }
    }

    // The control at its chosen rate, seed 0, is what `mkedsl run` scores.
    let chosen = arms[0]["choice"]["value"].as_f64().unwrap();
    let json = dir.path().join("run.json");
    let (code, _, stderr) = mkedsl(&[
        "run",
        "recipes/ft_l.edit",
        "--data",
        "examples/data/evqa.json",
        "--limit",
        "2",
        "--seed",
        "0",
        "--set",
        &format!("lr={chosen:e}"),
        "--no-cache",
        "--json",
        s(&json),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let run = read(&json);
    let cells = file["cells"].as_array().unwrap();
    let control = &cells[0];
    assert_eq!(control["arm"], 0);
    for (c, row) in run["per_case"].as_array().unwrap().iter().enumerate() {
        let seed0 = &control["per_case"][c][0];
        assert_eq!(
            seed0[0].as_f64().unwrap(),
            row["metrics"]["rel"].as_f64().unwrap()
        );
        assert_eq!(
            seed0[4].as_f64().unwrap(),
            row["metrics"]["m_loc"].as_f64().unwrap()
        );
    }

    // The difference is the mean over cases of the seed-averaged per-case differences.
    let arm = &cells[1];
    assert!(control.get("delta").is_none());
    let mean_over = |cell: &Value, m: usize| -> Vec<f64> {
        cell["per_case"]
            .as_array()
            .unwrap()
            .iter()
            .map(|seeds| {
                let seeds = seeds.as_array().unwrap();
                seeds.iter().map(|s| s[m].as_f64().unwrap()).sum::<f64>() / seeds.len() as f64
            })
            .collect()
    };
    for (m, key) in ["rel", "t_gen", "m_gen", "t_loc", "m_loc", "m_loc_all"]
        .iter()
        .enumerate()
    {
        let (a, c) = (mean_over(arm, m), mean_over(control, m));
        let expected = a.iter().zip(&c).map(|(x, y)| x - y).sum::<f64>() / a.len() as f64;
        let got = arm["delta"][key]["mean"].as_f64().unwrap();
        assert!((got - expected).abs() < 1e-12, "{key}: {got} vs {expected}");
        let (lo, hi) = (
            arm["delta"][key]["lo"].as_f64().unwrap(),
            arm["delta"][key]["hi"].as_f64().unwrap(),
        );
        assert!(
            lo <= got + 1e-12 && got <= hi + 1e-12,
            "{key}: {lo} {got} {hi}"
        );
    }

    // Re-read with the other arm as the control: no run, the same scores, the control's cell
    // now carries the opposite difference and the table marks the new control.
    let versus = dir.path().join("versus");
    let (code, stdout, stderr) = mkedsl(&[
        "ablate",
        "--from",
        s(&out.join("ablation.json")),
        "--control",
        "lpedit_no_projection.edit",
        "--out",
        s(&versus),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("ablate: "), "nothing ran: {stderr}");
    assert!(stdout.contains("| evqa.json | FT-L |"), "{stdout}");
    assert!(
        stdout.contains("| evqa.json | LPEdit without projection (control) |"),
        "{stdout}"
    );
    let reread = read(&versus.join("ablation.json"));
    assert_eq!(reread["control"], 1);
    let cells2 = reread["cells"].as_array().unwrap();
    assert!(cells2[1].get("delta").is_none());
    for key in ["rel", "m_loc", "m_loc_all"] {
        assert_eq!(cells2[0]["scores"][key], control["scores"][key]);
        let there = arm["delta"][key]["mean"].as_f64().unwrap();
        let back = cells2[0]["delta"][key]["mean"].as_f64().unwrap();
        assert!((there + back).abs() < 1e-12, "{key}: {there} vs {back}");
    }
    let (code, _, stderr) = mkedsl(&[
        "ablate",
        "--from",
        s(&out.join("ablation.json")),
        "--control",
        "recipes/nope.edit",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("is not an arm of"), "{stderr}");
}

#[test]
fn settings_reach_the_arms_that_declare_them_and_files_interleave_into_one_sequence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("abl");
    // Cross-task (UniKE §4.4): one E-VQA and one E-IC case edited in one sequential group.
    let data = [
        "--data",
        "examples/data/evqa.json",
        "--data",
        "examples/data/eic.json",
        "--interleave",
        "--mode",
        "sequential",
        "--k",
        "2",
        "--limit",
        "1",
        "--no-cache",
    ];
    let mut args = vec![
        "ablate",
        "recipes/ft_l.edit",
        "recipes/lora.edit",
        "--no-tune",
        "--set",
        "rank=4",
        "--seeds",
        "1",
        "--out",
        s(&out),
    ];
    args.extend(data);
    let (code, stdout, stderr) = mkedsl(&args);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("`--set rank=4` on LoRA."), "{stdout}");
    assert!(stdout.contains("one cross-task sequence"), "{stdout}");
    assert!(
        stdout.contains("| evqa.json + eic.json | LoRA |"),
        "{stdout}"
    );

    let file = read(&out.join("ablation.json"));
    assert_eq!(file["interleaved"], true);
    assert_eq!(file["mode"], "sequential");
    let arms = file["arms"].as_array().expect("arms");
    assert!(arms[0].get("sets").is_none(), "FT-L declares no rank");
    assert_eq!(arms[1]["sets"], serde_json::json!(["rank=4"]));
    let cells = file["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 2, "one cell per arm: both files in one unit");
    assert_eq!(cells[1]["cases"], 2);
    // The two cases are one sequence scored after the same two edits: the interval resamples
    // sequences, and one sequence gives none.
    let interval = file["interval"].as_str().unwrap();
    assert!(
        interval.contains("over sequences of up to 2 edits (1 in evqa.json + eic.json;"),
        "{interval}"
    );
    assert!(cells[1]["delta"]["rel"].get("lo").is_none(), "{}", cells[1]);
    assert!(cells[1]["scores"]["rel"].get("lo").is_none());

    // The LoRA arm is exactly `mkedsl run` at that setting on the same interleaved sequence.
    let json = dir.path().join("run.json");
    let mut args = vec![
        "run",
        "recipes/lora.edit",
        "--set",
        "rank=4",
        "--seed",
        "0",
        "--json",
        s(&json),
    ];
    args.extend(data);
    let (code, _, stderr) = mkedsl(&args);
    assert_eq!(code, 0, "{stderr}");
    let run = read(&json);
    let rows = run["per_case"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (c, row) in rows.iter().enumerate() {
        for (m, key) in ["rel", "t_gen", "m_gen", "t_loc", "m_loc"]
            .iter()
            .enumerate()
        {
            assert_eq!(
                cells[1]["per_case"][c][0][m].as_f64().unwrap(),
                row["metrics"][key].as_f64().unwrap(),
                "case {c} {key}"
            );
        }
    }
}

#[test]
fn bad_ablations_are_refused_before_any_run() {
    let (code, _, stderr) = mkedsl(&["ablate", "recipes/ft_l.edit"]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("required") || stderr.contains("2"),
        "{stderr}"
    );

    // LoRA-Null declares no `lr` parameter.
    let (code, _, stderr) = mkedsl(&["ablate", "recipes/ft_l.edit", "recipes/lora_null.edit"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("declares no `param lr`"), "{stderr}");
    assert!(
        !stderr.contains("ablate: tuning"),
        "refused before any run: {stderr}"
    );

    let (code, _, stderr) = mkedsl(&[
        "ablate",
        "recipes/ft_l.edit",
        "recipes/lora.edit",
        "--target-rel",
        "90",
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("--target-rel must lie in (0, 1]"),
        "{stderr}"
    );

    let (code, _, stderr) = mkedsl(&["ablate", "recipes/ft_l.edit", "recipes/nope.edit"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("nope.edit"), "{stderr}");

    // A setting no arm declares, one that fixes the tuned parameter, a lone interleaved file.
    let (code, _, stderr) = mkedsl(&[
        "ablate",
        "recipes/ft_l.edit",
        "recipes/lora.edit",
        "--no-tune",
        "--set",
        "nope=1",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("no arm declares `param nope`"), "{stderr}");
    let (code, _, stderr) = mkedsl(&[
        "ablate",
        "recipes/ft_l.edit",
        "recipes/lora.edit",
        "--set",
        "lr=1e-3",
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("fixes the parameter the tuning rule"),
        "{stderr}"
    );
    let (code, _, stderr) = mkedsl(&[
        "ablate",
        "recipes/ft_l.edit",
        "recipes/lora.edit",
        "--data",
        "examples/data/evqa.json",
        "--interleave",
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("only 1 was given"), "{stderr}");
    // A missing tuning file, found by the check before any run.
    let (code, _, stderr) = mkedsl(&[
        "ablate",
        "recipes/ft_l.edit",
        "recipes/lora.edit",
        "--tuning-data",
        "examples/data/tuning/nope.json",
        "--check",
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("no data file at `examples/data/tuning/nope.json`"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("ablate: "),
        "refused before any run: {stderr}"
    );
}

/// `examples/claims.sh`, the one command behind the README's claims section, in its check mode:
/// every ablation it names checks (arms with their settings against the model, files present)
/// without a run; a request every ablation refuses fails the script and names the failures.
#[test]
fn the_claims_script_checks_every_ablation_it_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = |out: &Path, seeds: &str| {
        std::process::Command::new("bash")
            .args(["examples/claims.sh", s(out), "60", seeds, "2"])
            .env("CHECK", "1")
            .env("MKEDSL", env!("CARGO_BIN_EXE_mkedsl"))
            .env("NO_COLOR", "1")
            .output()
            .expect("bash runs")
    };
    let out = dir.path().join("claims");
    let done = script(&out, "3");
    assert!(done.status.success(), "{done:?}");
    let times = std::fs::read_to_string(out.join("times.txt")).expect("times.txt");
    let names: Vec<&str> = times.lines().filter_map(|l| l.split(':').next()).collect();
    for name in [
        "elora",
        "unike",
        "elora_sequential_k10",
        "asam_relative",
        "lpedit",
        "lpedit_sequential_k10",
        "lpedit_sequential_k50",
        "elora_filter",
        "elora_sequential_k50",
        "elora_cross_task_k10",
        "asam",
        "all",
    ] {
        assert!(names.contains(&name), "{name} missing: {times}");
    }
    assert!(!times.contains("FAILED"), "{times}");
    let log = std::fs::read_to_string(out.join("lpedit_sequential_k50.log")).expect("log");
    assert!(
        log.contains("ablation checks: 3 arms, 9 runs (arms × data × seeds) after tuning"),
        "{log}"
    );
    assert!(
        !out.join("elora").join("ablation.json").exists(),
        "nothing ran"
    );

    let bad = dir.path().join("bad");
    let failed = script(&bad, "0");
    assert!(!failed.status.success());
    let times = std::fs::read_to_string(bad.join("times.txt")).expect("times.txt");
    assert_eq!(times.matches("FAILED").count(), 11, "{times}");
    let log = std::fs::read_to_string(bad.join("asam.log")).expect("log");
    assert!(log.contains("--seeds must be at least 1"), "{log}");
}
