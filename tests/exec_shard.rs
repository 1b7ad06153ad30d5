//! `mkedsl run --shard I/N` + `mkedsl merge`: the merge of 1, 2 and 3 shards equals the unsharded
//! run exactly (per-case rows and means) on the embedded model, sequential shards keep whole
//! sequences, and parts that do not make one run are refused with a diagnostic naming the shard.

mod exec_common;

use std::path::{Path, PathBuf};

use exec_common::*;
use mkedsl::eval::{EvalReport, ProbeOptions, SetupRequest};
use mkedsl::exec::shard::{merge_files, Shard};
use mkedsl::exec::{run, CacheChoice, RunRequest};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn render(report: &miette::Report, dir: &Path) -> String {
    let mut out = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .with_width(1000)
        .render_report(&mut out, report.as_ref())
        .unwrap();
    out.replace(&dir.display().to_string(), "DIR")
}

/// The report as JSON without `timing` (wall-clock seconds, the only field a merge cannot
/// reproduce: it sums the shards' times).
fn comparable(report: &EvalReport) -> serde_json::Value {
    let mut v = serde_json::to_value(report).unwrap();
    v.as_object_mut().unwrap().remove("timing");
    v
}

/// Runs `req` as shard `i` of `n` for every `i`, writing `dir/NAME-i.json`; returns the parts.
fn shards(req: &RunRequest, dir: &Path, name: &str, n: usize) -> Vec<PathBuf> {
    (0..n)
        .map(|index| {
            let path = dir.join(format!("{name}-{index}.json"));
            let outcome = run(&RunRequest {
                shard: Some(Shard { index, count: n }),
                json: Some(path.clone()),
                ..req.clone()
            })
            .unwrap_or_else(|e| panic!("shard {index}/{n}: {e:?}"));
            outcome.write_json(&path).expect("part written");
            let part = outcome.part.expect("a shard reports its part");
            assert_eq!((part.index, part.count), (index, n));
            assert_eq!(outcome.report.cases, part.cases.len());
            path
        })
        .collect()
}

fn assert_merge_equals(parts: &[PathBuf], whole: &EvalReport, unsharded_json: &Path) {
    let merged = merge_files(parts).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(merged.per_case, whole.per_case, "{} parts", parts.len());
    assert_eq!(
        comparable(&merged),
        comparable(whole),
        "{} parts",
        parts.len()
    );
    assert_eq!(merged.table(), whole.table());
    // The file written is the unsharded run's, but for the timing.
    let out = unsharded_json.with_file_name(format!("merged-{}.json", parts.len()));
    merged.write_json(&out).unwrap();
    let read = |p: &Path| -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("timing");
        v
    };
    assert_eq!(read(&out), read(unsharded_json));
}

#[test]
fn merging_1_2_and_3_shards_equals_the_unsharded_run_on_the_embedded_model() {
    let dir = tempfile::tempdir().unwrap();
    // ELoRA: a cached preserve covariance and null space, and random perturbations per case.
    let req = RunRequest {
        setup: SetupRequest {
            model: Some(root().join("examples/model")),
            data: Some(root().join("examples/data/evqa.json")),
            limit: Some(3),
            ..SetupRequest::default()
        },
        cache: CacheChoice::Dir(dir.path().join("cache")),
        probe: ProbeOptions {
            batch_size: 16,
            max_new_tokens: 8,
        },
        ..RunRequest::new(root().join("recipes/elora.edit"))
    };
    let unsharded_json = dir.path().join("unsharded.json");
    let whole = run(&RunRequest {
        json: Some(unsharded_json.clone()),
        ..req.clone()
    })
    .expect("unsharded run");
    whole.write_json(&unsharded_json).expect("written");
    let whole = whole.report;
    assert_eq!(whole.cases, 3);
    // The knowledge filters' means are part of what a merge must reproduce.
    assert_eq!(whole.knowledge.len(), 2);
    assert!(whole.per_case.iter().all(|r| r.knowledge.len() == 2));
    for n in 1..=3 {
        let parts = shards(&req, dir.path(), &format!("of{n}"), n);
        assert_merge_equals(&parts, &whole, &unsharded_json);
        // The order the parts are given in does not matter.
        let reversed: Vec<PathBuf> = parts.iter().rev().cloned().collect();
        assert_eq!(
            merge_files(&reversed).unwrap().per_case,
            whole.per_case,
            "{n} parts reversed"
        );
    }
    // A part alone is an ordinary report of its cases, with the run's group numbers.
    let part: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("of3-2.json")).unwrap()).unwrap();
    assert_eq!(part["shard"]["cases"], serde_json::json!([2]));
    assert_eq!(part["per_case"][0]["group"], 2);
    assert_eq!(part["shard"]["run_cases"], 3);
}

#[test]
fn sequential_shards_keep_whole_sequences_and_merge_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), 5);
    let r = recipe(dir.path(), "ft.edit", &FT_L.replace("20 steps", "5 steps"));
    let req = RunRequest {
        sequential: Some(true),
        k: Some(2),
        ..request(dir.path(), r, model, data, 5)
    };
    let unsharded_json = dir.path().join("unsharded.json");
    let whole = run(&RunRequest {
        json: Some(unsharded_json.clone()),
        out: Some(dir.path().join("edits")),
        ..req.clone()
    })
    .expect("unsharded run");
    whole.write_json(&unsharded_json).expect("written");
    let whole = whole.report;
    assert_eq!((whole.groups, whole.k), (3, Some(2)));
    let sharded = RunRequest {
        out: Some(dir.path().join("sharded-edits")),
        ..req.clone()
    };
    let parts = shards(&sharded, dir.path(), "seq", 2);
    // `--out` names each sequence's artefact by its group in the run, sharded or not.
    let folders = |d: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.path().join(d))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        folders("sharded-edits"),
        ["group-0000", "group-0001", "group-0002"]
    );
    assert_eq!(folders("sharded-edits"), folders("edits"));
    // 3 sequences over 2 shards: shard 0 edits sequence 0, shard 1 sequences 1 and 2.
    let groups = |p: &Path| -> Vec<u64> {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        v["per_case"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["group"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(groups(&parts[0]), [0, 0]);
    assert_eq!(groups(&parts[1]), [1, 1, 2]);
    assert_merge_equals(&parts, &whole, &unsharded_json);
    let parts = shards(&req, dir.path(), "seq3", 3);
    assert_merge_equals(&parts, &whole, &unsharded_json);
}

#[test]
fn parts_that_do_not_make_one_run_are_refused_naming_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), 3);
    let quick = FT_L.replace("20 steps", "2 steps");
    let a = recipe(dir.path(), "a.edit", &quick);
    let b = recipe(dir.path(), "b.edit", &quick.replace("lr: 0.01", "lr: 0.02"));
    let req_a = request(dir.path(), a, model.clone(), data.clone(), 3);
    let req_b = request(dir.path(), b, model, data, 3);
    let parts = shards(&req_a, dir.path(), "a", 3);
    let other = shards(&req_b, dir.path(), "b", 3);
    let refuse = |paths: &[&PathBuf]| -> String {
        let paths: Vec<PathBuf> = paths.iter().map(|p| (*p).clone()).collect();
        render(&merge_files(&paths).expect_err("refused"), dir.path())
    };
    let missing = refuse(&[&parts[0], &parts[2]]);
    insta::assert_snapshot!("missing_shard", missing);
    let duplicated = refuse(&[&parts[0], &parts[1], &parts[1], &parts[2]]);
    insta::assert_snapshot!("duplicated_shard", duplicated);
    let mixed = refuse(&[&parts[0], &other[1], &parts[2]]);
    insta::assert_snapshot!("two_recipes", mixed);

    // A part cut short (a row deleted by hand) names its shard and the case.
    let mut cut: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&parts[1]).unwrap()).unwrap();
    cut["per_case"].as_array_mut().unwrap().clear();
    let cut_path = dir.path().join("cut.json");
    std::fs::write(&cut_path, serde_json::to_vec(&cut).unwrap()).unwrap();
    let text = refuse(&[&parts[0], &cut_path, &parts[2]]);
    assert!(
        text.contains("`DIR/cut.json` (shard 1/3) lacks the row of case 1"),
        "{text}"
    );
    // An unsharded report is not a part.
    let whole = dir.path().join("whole.json");
    run(&RunRequest {
        json: Some(whole.clone()),
        ..req_a.clone()
    })
    .unwrap()
    .write_json(&whole)
    .unwrap();
    let text = refuse(&[&whole]);
    assert!(
        text.contains("it is the report of an unsharded run"),
        "{text}"
    );

    // More shards than cases: the empty shard is refused before editing.
    let err = run(&RunRequest {
        shard: Some(Shard { index: 0, count: 4 }),
        json: Some(dir.path().join("empty.json")),
        ..req_a
    })
    .expect_err("empty shard");
    insta::assert_snapshot!("empty_shard", render(&err, dir.path()));
}
