//! `mkedsl run` through the built binary: the table and the run summary on stdout, cache reuse
//! announced on stderr, the JSON report, and a non-zero exit with a diagnostic on failure.

mod exec_common;

use exec_common::*;

#[test]
fn run_prints_the_table_and_a_second_run_says_it_reuses_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), 2);
    let r = recipe(dir.path(), "elora.edit", ELORA);
    let json = dir.path().join("report.json");
    let args = [
        "run",
        s(&r),
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--limit",
        "2",
        "--max-new-tokens",
        "4",
        "--json",
        s(&json),
    ];
    let first = mkedsl(&args);
    let stdout = String::from_utf8_lossy(&first.stdout);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert!(first.status.success(), "{stderr}");
    assert!(
        stdout.contains("post-edit  token") && stdout.contains("pre-edit   token"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mode single · seed 0 · device cpu"),
        "{stdout}"
    );
    assert!(
        stdout.contains("time      prepare") && stdout.contains("knowledge space `know`: kept "),
        "{stdout}"
    );
    assert!(stderr.contains("computed null space"), "{stderr}");
    // The default cache folder sits beside the model folder.
    assert!(dir.path().join(".mkedsl-cache").is_dir());
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["cases"], 2);
    // The knowledge filter's counts are in the report, as means and per case.
    assert_eq!(report["knowledge"][0]["space"], "know");
    assert_eq!(report["knowledge"][0]["variants"], 12);
    let kept = report["per_case"][0]["knowledge"][0]["kept"]
        .as_u64()
        .unwrap();
    assert!(kept <= 12);

    let second = mkedsl(&args);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(second.status.success(), "{stderr}");
    assert!(stderr.contains("reusing cached null space"), "{stderr}");
    assert!(stderr.contains("(key "), "{stderr}");
    // Same scores: the table lines agree.
    let rows = |o: &std::process::Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains("token") || l.contains("exact match"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(&first), rows(&second));
}

#[test]
fn a_failing_run_exits_non_zero_with_a_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), 1);
    let absurd = diverging_ft_l();
    let r = recipe(dir.path(), "diverge.edit", &absurd);
    let out = mkedsl(&[
        "run",
        s(&r),
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--limit",
        "1",
        "--no-cache",
    ]);
    // Diagnostics wrap at the terminal width: compare with the line art and breaks removed.
    let stderr = String::from_utf8_lossy(&out.stderr)
        .replace(['│', '×'], " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(!out.status.success());
    assert!(stderr.contains("optimisation step 1 of 20"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let missing = mkedsl(&[
        "run",
        s(&r),
        "--model",
        s(&dir.path().join("nope")),
        "--data",
        s(&data),
    ]);
    assert!(!missing.status.success());
}

#[test]
fn bench_times_recipes_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), 2);
    let ft = recipe(dir.path(), "ft.edit", FT_L);
    let elora = recipe(dir.path(), "elora.edit", ELORA);
    let json = dir.path().join("bench.json");
    let out = mkedsl(&[
        "bench",
        s(&ft),
        s(&elora),
        "--cases",
        "2",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--json",
        s(&json),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("× first") && stdout.contains("FT-L tiny") && stdout.contains("ELoRA tiny"),
        "{stdout}"
    );
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r["cases"], 2);
        assert!(r["optimise_s"].as_f64().unwrap() > 0.0);
        // Every row is read against the same measured matmul rate; training and evaluation
        // run model matmuls.
        assert_eq!(r["matmul_gflops"], rows[0]["matmul_gflops"]);
        assert!(r["matmul_gflops"].as_f64().unwrap() > 0.0);
        assert!(r["optimise_gflop"].as_f64().unwrap() > 0.0);
        assert!(r["evaluate_gflop"].as_f64().unwrap() > 0.0);
    }
    assert!(stdout.contains("arithmetic rate"), "{stdout}");
    // FT-L prepares nothing; ELoRA's prepare runs the model over its statistics data.
    assert_eq!(rows[0]["prepare_gflop"].as_f64(), Some(0.0));
    assert!(rows[1]["prepare_gflop"].as_f64().unwrap() > 0.0);
    // ELoRA has a prepare stage and builds spaces per edit; FT-L has neither.
    assert!(rows[1]["prepare_s"].as_f64().unwrap() > rows[0]["prepare_s"].as_f64().unwrap());
    assert!(rows[1]["spaces_s"].as_f64().unwrap() > 0.0);
    assert!(
        !dir.path().join(".mkedsl-cache").exists(),
        "bench runs without the cache by default"
    );
}

#[test]
fn compare_prints_one_markdown_table_for_recipes_and_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), 2);
    let ft = recipe(dir.path(), "ft.edit", FT_L);
    let lora = recipe(dir.path(), "lora.edit", LORA);
    let out = mkedsl(&[
        "compare",
        s(&ft),
        s(&lora),
        "--data",
        s(&data),
        "--model",
        s(&model),
        "--limit",
        "2",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("| evqa.json"))
        .collect();
    assert_eq!(rows.len(), 3, "{stdout}");
    assert!(rows[0].contains("| pre-edit |") && rows[1].contains("| FT-L tiny |"));
    assert!(rows[2].contains("| LoRA tiny | 100.0 |"), "{stdout}");
    assert!(
        stdout.contains("cases: 2 evqa.json") && stdout.contains("seed 0"),
        "{stdout}"
    );
}
