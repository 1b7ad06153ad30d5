//! The on-disk cache of prepare results: a second run reuses every entry, says so, and gives
//! the same scores; `--no-cache` writes nothing; a damaged entry is recomputed.

mod exec_common;

use exec_common::*;
use mkedsl::exec::{run, CacheChoice};

#[test]
fn a_second_run_reuses_the_prepare_results_and_scores_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), 2);
    let r = recipe(dir.path(), "elora.edit", ELORA);
    let req = request(dir.path(), r, model, data, 2);
    let first = run(&req).unwrap();
    assert!(
        first
            .notes
            .iter()
            .any(|n| n.starts_with("computed null space")),
        "{:?}",
        first.notes
    );
    assert!(!first.notes.iter().any(|n| n.starts_with("reusing")));
    let second = run(&req).unwrap();
    let reused: Vec<&String> = second
        .notes
        .iter()
        .filter(|n| n.starts_with("reusing cached"))
        .collect();
    // The null space and the Eq. 8 initialisation come from the cache; the covariance is not
    // even loaded (nothing needs it).
    assert_eq!(reused.len(), 2, "{:?}", second.notes);
    assert!(reused[0].contains("null space") && reused[0].contains("(key "));
    assert!(reused[1].contains("LoRA initialisation"));
    assert!(!second.notes.iter().any(|n| n.starts_with("computed")));
    assert_eq!(first.report.metrics, second.report.metrics);
    assert_eq!(first.report.per_case, second.report.per_case);
    // Beside the entries: the lock file of the prepare stage (concurrent runs, `--shard`).
    let entries = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() != Some("lock".as_ref()))
        .count();
    assert_eq!(
        entries,
        2 * 3,
        "covariance, null space, LoRA init: tensors + JSON each"
    );
}

#[test]
fn no_cache_neither_reads_nor_writes_and_damaged_entries_are_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), 1);
    let r = recipe(dir.path(), "lpedit.edit", LPEDIT);
    let mut req = request(dir.path(), r, model, data, 1);
    req.cache = CacheChoice::Off;
    let off = run(&req).unwrap();
    assert!(off.notes.is_empty(), "{:?}", off.notes);
    assert!(!dir.path().join("cache").exists());
    assert!(off.summary().contains("off (--no-cache)"));

    req.cache = CacheChoice::Dir(dir.path().join("cache"));
    let first = run(&req).unwrap();
    assert_eq!(first.report.per_case, off.report.per_case);
    // Damage every tensor file: the entries are recomputed, not trusted.
    for entry in std::fs::read_dir(dir.path().join("cache")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            std::fs::write(&path, b"not a safetensors file").unwrap();
        }
    }
    let again = run(&req).unwrap();
    assert!(
        again
            .notes
            .iter()
            .all(|n| n.starts_with("computed") || n.starts_with("cache entry")),
        "{:?}",
        again.notes
    );
    // Each damaged entry is named by its path and said to be recomputed.
    assert!(
        again
            .notes
            .iter()
            .any(|n| n.contains(".safetensors is damaged") && n.ends_with("recomputing it")),
        "{:?}",
        again.notes
    );
    assert_eq!(again.report.per_case, first.report.per_case);
}
