//! The shipped model (examples/model) knows the world: ≥ 95% greedy exact match on held-out
//! questions of every family, and `mkedsl knowledge` reports it.

use std::path::PathBuf;
use std::process::Command;

use mkedsl::model::{Llava, LoadOptions};
use mkedsl::train::{measure_knowledge, KnowledgeReport};
use mkedsl::world::{Family, World};

fn model_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/model"))
}

fn check(report: &KnowledgeReport) {
    for f in &report.families {
        assert!(
            f.accuracy >= 0.95,
            "{} at {:.3}; misses {:?}\n{}",
            f.family.name(),
            f.accuracy,
            f.misses,
            report.table()
        );
    }
    assert_eq!(report.families.len(), Family::ALL.len());
}

#[test]
fn the_shipped_model_knows_every_family() {
    let llava = Llava::load(&model_dir(), &LoadOptions::default()).expect("shipped model loads");
    let report = measure_knowledge(&llava, &World::new(0), 20, 7).expect("measures");
    assert!(report.families.iter().all(|f| f.total == 20));
    check(&report);
}

/// The full-size check `mkedsl knowledge` runs by default (a minute on two cores).
#[test]
#[ignore]
fn the_shipped_model_knows_every_family_on_200_questions_each() {
    let llava = Llava::load(&model_dir(), &LoadOptions::default()).expect("shipped model loads");
    check(&measure_knowledge(&llava, &World::new(0), 200, 0).expect("measures"));
}

#[test]
fn the_knowledge_command_prints_a_table_and_writes_json() {
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("knowledge.json");
    let output = Command::new(env!("CARGO_BIN_EXE_mkedsl"))
        .args(["knowledge", "--model"])
        .arg(model_dir())
        .args(["--per-family", "3", "--seed", "5", "--json"])
        .arg(&json)
        .output()
        .expect("runs mkedsl");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for family in Family::ALL {
        assert!(stdout.contains(family.name()), "{stdout}");
    }
    assert!(
        stdout.contains("accuracy") && stdout.contains("all"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json written")).expect("json");
    assert_eq!(report["per_family"], 3);
    assert_eq!(report["families"].as_array().map(Vec::len), Some(9));
}

#[test]
fn the_knowledge_command_names_a_missing_model() {
    let output = Command::new(env!("CARGO_BIN_EXE_mkedsl"))
        .args(["knowledge", "--model", "/nonexistent/model"])
        .output()
        .expect("runs mkedsl");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/model"));
}

#[test]
fn the_training_record_documents_the_run() {
    let text = std::fs::read_to_string(model_dir().join("training.json")).expect("training.json");
    let record: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert!(record["command"]
        .as_str()
        .is_some_and(|c| c.contains("train")));
    assert!(record["wall_seconds"].as_f64().is_some_and(|s| s > 0.0));
    assert!(record["steps"].as_u64().is_some_and(|s| s > 0));
    assert_eq!(record["options"]["spec"]["hidden"], 128);
    assert_eq!(record["options"]["spec"]["layers"], 6);
    let families = record["knowledge"]["families"]
        .as_array()
        .expect("families");
    assert_eq!(families.len(), 9);
}
