//! Shards as separate processes started at the same moment, as a Slurm job array starts them:
//! they share one prepare cache (the entries are computed by one of them, loaded by the others,
//! and left whole), and `mkedsl merge` prints the unsharded run's table and writes its report.

mod exec_common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use exec_common::*;

fn mkedsl(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mkedsl"));
    c.current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("MKEDSL_CACHE");
    c
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The metric table: stdout up to the first blank line after the legend.
fn table(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout);
    let end = text.find("top-10 (M-Loc).\n").expect("the table's legend") + 16;
    text[..end].to_string()
}

fn without_timing(path: &Path) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("timing");
    // `run --json` records its provenance (with its own wall-clock phases); a merge has none.
    v.as_object_mut().unwrap().remove("provenance");
    v
}

#[test]
fn concurrent_shards_compute_the_prepare_cache_once_and_merge_to_the_unsharded_run() {
    let dir = tempfile::tempdir().unwrap();
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), 3);
    let r = recipe(
        dir.path(),
        "elora.edit",
        &ELORA.replace("30 steps", "5 steps"),
    );
    let cache = dir.path().join("cache");
    let common = |c: &mut Command| {
        c.args(["run", s(&r), "--model", s(&model), "--data", s(&data)])
            .args(["--limit", "3", "--max-new-tokens", "4"]);
    };
    let n = 3;
    let children: Vec<_> = (0..n)
        .map(|i| {
            let mut c = mkedsl(dir.path());
            common(&mut c);
            c.args(["--cache-dir", s(&cache), "--shard", &format!("{i}/{n}")])
                .args(["--json", &format!("part-{i}.json")])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a shard")
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("shard ends"))
        .collect();
    let stderr: Vec<String> = outputs
        .iter()
        .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
        .collect();
    for (o, e) in outputs.iter().zip(&stderr) {
        assert!(o.status.success(), "{e}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("shard     "), "{out}");
    }
    // One shard computed the null space, the other two waited for it and loaded it.
    let computed = stderr
        .iter()
        .filter(|e| e.contains("computed null space"))
        .count();
    let reused = stderr
        .iter()
        .filter(|e| e.contains("reusing cached null space"))
        .count();
    assert_eq!((computed, reused), (1, n - 1), "{stderr:#?}");
    // The cache holds whole entries (a JSON beside each tensor file), one lock, no temp files.
    let mut names: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let count = |ext: &str| names.iter().filter(|n| n.ends_with(ext)).count();
    assert_eq!(count(".lock"), 1, "{names:?}");
    assert!(count(".json") >= 1, "{names:?}");
    assert_eq!(count(".json"), count(".safetensors"), "{names:?}");
    assert_eq!(names.len(), 2 * count(".json") + 1, "{names:?}");

    // The unsharded run, computing everything afresh.
    let mut c = mkedsl(dir.path());
    common(&mut c);
    let whole = c
        .args(["--no-cache", "--json", "whole.json"])
        .output()
        .unwrap();
    assert!(
        whole.status.success(),
        "{}",
        String::from_utf8_lossy(&whole.stderr)
    );
    let merged = mkedsl(dir.path())
        .args(["merge", "part-2.json", "part-0.json", "part-1.json"])
        .args(["--json", "merged.json"])
        .output()
        .unwrap();
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    assert_eq!(table(&merged), table(&whole));
    assert_eq!(
        without_timing(&dir.path().join("merged.json")),
        without_timing(&dir.path().join("whole.json"))
    );
    let stdout = String::from_utf8_lossy(&merged.stdout);
    assert!(
        stdout.contains("merged    3 parts, 3 cases, report written to merged.json"),
        "{stdout}"
    );

    // A missing part fails with a diagnostic and a non-zero exit; --shard needs --json.
    let refused = mkedsl(dir.path())
        .args(["merge", "part-0.json", "part-2.json"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("shard 1/3 is missing"), "{stderr}");
    let mut c = mkedsl(dir.path());
    common(&mut c);
    let refused = c.args(["--shard", "0/2"]).output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--json"), "{stderr}");
    let mut c = mkedsl(dir.path());
    common(&mut c);
    let refused = c
        .args(["--shard", "2/2", "--json", "x.json"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("the last is 1/2"), "{stderr}");
}
