//! Every null space's dimension and leak (the share of preserved energy inside it), end to end on
//! the embedded model: printed by `mkedsl run`, recorded in its JSON report, consistent with the
//! cut (an energy budget bounds the leak), and shown by `mkedsl plan` once the cache holds it.

use std::process::Command;

const RECIPE: &str = "tests/fixtures/leak/cuts.edit";

/// `mkedsl ARGS` with the prepare cache in `cache`: `(exit code, stdout, stderr)`.
fn mkedsl(cache: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mkedsl"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("MKEDSL_CACHE", cache)
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn run_prints_and_records_each_null_spaces_leak_and_plan_shows_it_once_cached() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let plan = ["plan", RECIPE, "--model", "examples/model"];

    let (code, before, err) = mkedsl(&cache, &plan);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        before
            .matches("printed by `mkedsl run` (not in the cache yet)")
            .count(),
        2,
        "{before}"
    );

    let json = dir.path().join("run.json");
    let json_arg = json.to_str().unwrap();
    let (code, out, err) = mkedsl(&cache, &["run", RECIPE, "--limit", "1", "--json", json_arg]);
    assert_eq!(code, 0, "{err}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let spaces = report["null_spaces"].as_array().expect("null_spaces");
    // layers 3, 4, 5 (18.. of 32 on 6 layers) and layer 1 (7 of 32).
    let layers: Vec<u64> = spaces
        .iter()
        .map(|s| s["layer"].as_u64().unwrap())
        .collect();
    assert_eq!(layers, [3, 4, 5, 1], "{spaces:?}");
    for s in spaces {
        let (dims, width, leak) = (
            s["dims"].as_u64().unwrap(),
            s["width"].as_u64().unwrap(),
            s["leak"].as_f64().unwrap(),
        );
        assert!(dims >= 1 && dims <= width, "{s}");
        assert!((0.0..=1.0).contains(&leak), "{s}");
        match s["cut"].as_str().unwrap() {
            "energy: 0.01" => {
                assert_eq!(width, 344);
                assert!(leak <= 0.01, "the energy budget bounds the leak: {s}");
            }
            "relative_below: 0.001" => assert_eq!(width, 128),
            other => panic!("unexpected cut {other}"),
        }
        let line = format!(
            "layer {} mlp.{}: {dims} of {width} dims, preserved energy inside",
            s["layer"],
            if width == 344 {
                "down_proj.input"
            } else {
                "up_proj.input"
            }
        );
        assert!(out.contains(&line), "{line} not in\n{out}");
    }

    // The plan reads the run's entries: the same numbers, marked cached.
    let (code, after, err) = mkedsl(&cache, &plan);
    assert_eq!(code, 0, "{err}");
    let cached: Vec<&str> = after.lines().filter(|l| l.ends_with("· cached")).collect();
    assert_eq!(cached.len(), 4, "{after}");
    for line in out.lines().filter(|l| l.starts_with("null space ")) {
        assert!(
            after.contains(&format!("{line} · cached")),
            "{line} not in\n{after}"
        );
    }
}
