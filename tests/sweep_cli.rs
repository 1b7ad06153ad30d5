//! `mkedsl sweep` end to end on the embedded model: a 2-value × 2-seed grid of FT-L's `lr` on two
//! cases; the point at the recipe's own value scores exactly what `mkedsl run` scores; the array
//! tasks merged give the same file as the one process; bad grids are refused before any run.

mod common;

use std::path::Path;

use common::mkedsl;
use serde_json::Value;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("file")).expect("json")
}

const GRID: [&str; 10] = [
    "sweep",
    "recipes/ft_l.edit",
    "--set",
    "lr=5e-4,1.5e-3",
    "--seeds",
    "2",
    "--limit",
    "2",
    "--no-cache",
    "--out",
];

/// (task, set, seed, metrics) of every point: what must agree between two ways of running.
fn scores(file: &Value) -> Vec<(u64, Value, u64, Value)> {
    file["points"]
        .as_array()
        .expect("points")
        .iter()
        .map(|p| {
            (
                p["task"].as_u64().unwrap(),
                p["set"].clone(),
                p["seed"].as_u64().unwrap(),
                p["report"]["metrics"].clone(),
            )
        })
        .collect()
}

#[test]
fn a_two_by_two_sweep_runs_merges_and_matches_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let whole = dir.path().join("whole");
    let page = dir.path().join("sweep.html");
    let mut args: Vec<&str> = GRID.to_vec();
    args.extend([s(&whole), "--report", s(&page)]);
    let (code, stdout, stderr) = mkedsl(&args);
    assert_eq!(code, 0, "{stderr}");
    // One row per grid point, the values as written, intervals over the two seeds.
    assert!(stdout.contains("| lr | seeds | Rel |"), "{stdout}");
    assert!(stdout.contains("| 5e-4 | 2 |"), "{stdout}");
    assert!(stdout.contains("| 1.5e-3 | 2 |"), "{stdout}");
    assert!(stdout.contains("[95 % bootstrap interval]"), "{stdout}");
    let table = std::fs::read_to_string(whole.join("sweep.md")).expect("sweep.md");
    assert!(
        stdout.starts_with(&table),
        "the file holds the printed table"
    );

    let file = read(&whole.join("sweep.json"));
    assert_eq!(file["format"], "mkedsl-sweep/1");
    assert_eq!(file["parameters"], serde_json::json!(["lr"]));
    assert_eq!(file["runs"], 4);
    let points = scores(&file);
    assert_eq!(points.len(), 4);
    assert_eq!(
        points.iter().map(|p| p.2).collect::<Vec<_>>(),
        [0, 1, 0, 1],
        "seeds S, S+1 from the recipe's seed 0"
    );
    assert_eq!(points[0].1["lr"], 5e-4);
    assert_eq!(points[3].1["lr"], 1.5e-3);
    for p in file["points"].as_array().unwrap() {
        assert!(p["time_s"].as_f64().unwrap() > 0.0);
    }
    // The summary's mean is the mean of the points' scores.
    let summary = &file["summary"][1]["metrics"]["rel"];
    let mean = (points[2].3["rel"].as_f64().unwrap() + points[3].3["rel"].as_f64().unwrap()) / 2.0;
    assert!((summary["mean"].as_f64().unwrap() - mean).abs() < 1e-12);
    assert!(summary["lo"].as_f64().unwrap() <= mean && mean <= summary["hi"].as_f64().unwrap());
    // A lower learning rate edits less: the sweep measures what it varies.
    let rel = |i: usize| {
        file["summary"][i]["metrics"]["rel"]["mean"]
            .as_f64()
            .unwrap()
    };
    assert!(
        rel(0) < rel(1),
        "Rel at 5e-4 {} vs 1.5e-3 {}",
        rel(0),
        rel(1)
    );

    // The recipe's own value (1.5e-3), seed 0, is exactly `mkedsl run`.
    let run_json = dir.path().join("run.json");
    let (code, _, stderr) = mkedsl(&[
        "run",
        "recipes/ft_l.edit",
        "--limit",
        "2",
        "--no-cache",
        "--json",
        s(&run_json),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(read(&run_json)["metrics"], points[2].3);

    // The HTML report names the sweep and draws it.
    let html = std::fs::read_to_string(&page).expect("report");
    assert!(html.contains("Sweep: FT-L"));
    assert!(html.contains("<svg"));

    // Array tasks, merged, give the same points and summary.
    let parts = dir.path().join("parts");
    let mut files = Vec::new();
    for task in 0..4 {
        let t = task.to_string();
        let mut args: Vec<&str> = GRID.to_vec();
        args.extend([s(&parts), "--task", &t]);
        let (code, _, stderr) = mkedsl(&args);
        assert_eq!(code, 0, "{stderr}");
        files.push(parts.join(format!("task-{task}.json")));
    }
    let merged = dir.path().join("merged");
    let mut args = vec!["sweep", "--out", s(&merged), "--merge"];
    files.iter().rev().for_each(|f| args.push(s(f)));
    let (code, _, stderr) = mkedsl(&args);
    assert_eq!(code, 0, "{stderr}");
    let merged = read(&merged.join("sweep.json"));
    assert_eq!(scores(&merged), points);
    assert_eq!(merged["summary"].as_array().unwrap().len(), 2);
    for (a, b) in merged["summary"]
        .as_array()
        .unwrap()
        .iter()
        .zip(file["summary"].as_array().unwrap())
    {
        assert_eq!(a["metrics"], b["metrics"]);
    }

    // A missing or duplicated part is refused, naming the runs or files.
    let (code, _, stderr) = mkedsl(&[
        "sweep",
        "--out",
        s(dir.path()),
        "--merge",
        s(&files[0]),
        s(&files[2]),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("lack run(s) 1, 3"), "{stderr}");
    let (code, _, stderr) = mkedsl(&[
        "sweep",
        "--out",
        s(dir.path()),
        "--merge",
        s(&files[0]),
        s(&files[0]),
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("run 0 is") && stderr.contains("also in"),
        "{stderr}"
    );
}

#[test]
fn count_and_bad_grids_are_answered_before_any_run() {
    let (code, stdout, stderr) = mkedsl(&[
        "sweep",
        "recipes/lora.edit",
        "--set",
        "lr=5e-4,1.5e-3,4.5e-3",
        "--set",
        "rank=8,16",
        "--seeds",
        "3",
        "--count",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), "18");

    // A bad value anywhere in the grid: refused with the value's own diagnostic.
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = mkedsl(&[
        "sweep",
        "recipes/ft_l.edit",
        "--set",
        "lr=1e-3,-1",
        "--out",
        s(dir.path()),
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("grid point --set lr=-1 does not check"),
        "{stderr}"
    );
    assert!(stderr.contains("must be > 0"), "{stderr}");
    assert!(!stderr.contains("sweep: run"), "nothing ran: {stderr}");

    for (set, expected) in [
        ("lrr=1e-3", "did you mean `lr`?"),
        ("lr=1e-3,1e-3", "listed twice"),
        ("lr", "there is no `=`"),
    ] {
        let (code, _, stderr) = mkedsl(&["sweep", "recipes/ft_l.edit", "--set", set, "--count"]);
        assert_ne!(code, 0, "{set}");
        assert!(stderr.contains(expected), "{set}: {stderr}");
    }
    let (code, _, stderr) = mkedsl(&[
        "sweep",
        "recipes/ft_l.edit",
        "--set",
        "lr=1e-3",
        "--task",
        "5",
        "--out",
        s(dir.path()),
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("--task 5 is not a run of this sweep"),
        "{stderr}"
    );
    let (code, _, stderr) = mkedsl(&["sweep", "recipes/ft_l.edit", "--seeds", "0", "--count"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("--seeds must be at least 1"), "{stderr}");
}

/// The grid of the sequential test, and the flags that make its runs sequential.
const SMALL_GRID: [&str; 7] = [
    "sweep",
    "recipes/ft_l.edit",
    "--set",
    "lr=1.5e-3,1.5e-2",
    "--limit",
    "4",
    "--no-cache",
];
const IN_PAIRS: [&str; 4] = ["--mode", "sequential", "--k", "2"];

/// A sequential sweep: every run edits in groups of K and the file and table say so; its point
/// at the recipe's own value is `mkedsl run` in the same mode, and a part of another mode does
/// not merge with it.
#[test]
fn a_sequential_sweep_edits_in_groups_and_matches_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sweep = |extra: &[&str]| {
        let mut args = SMALL_GRID.to_vec();
        args.extend(extra);
        mkedsl(&args)
    };
    let out = dir.path().join("seq");
    let (code, stdout, stderr) = sweep(&[&IN_PAIRS[..], &["--out", s(&out)]].concat());
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("4 cases · sequential editing, K = 2"),
        "{stdout}"
    );
    let file = read(&out.join("sweep.json"));
    assert_eq!(file["mode"], "sequential");
    assert_eq!(file["k"], 2);
    let points = scores(&file);
    assert_eq!(points.len(), 2);

    let run_json = dir.path().join("run.json");
    let mut args = vec!["run", "recipes/ft_l.edit", "--limit", "4", "--no-cache"];
    args.extend(IN_PAIRS);
    args.extend(["--json", s(&run_json)]);
    let (code, _, stderr) = mkedsl(&args);
    assert_eq!(code, 0, "{stderr}");
    let run = read(&run_json);
    assert_eq!(run["mode"], "sequential");
    assert_eq!(run["metrics"], points[0].3);

    // The same grid edited case by case is another sweep: its part does not merge.
    let single = dir.path().join("single");
    let (code, _, stderr) = sweep(&["--task", "1", "--out", s(&single)]);
    assert_eq!(code, 0, "{stderr}");
    let seq_part = dir.path().join("seqpart");
    let (code, _, stderr) =
        sweep(&[&IN_PAIRS[..], &["--task", "0", "--out", s(&seq_part)]].concat());
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = mkedsl(&[
        "sweep",
        "--out",
        s(dir.path()),
        "--merge",
        s(&seq_part.join("task-0.json")),
        s(&single.join("task-1.json")),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("editing mode differs"), "{stderr}");
}
