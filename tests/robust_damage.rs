//! Random damage to a copy of the tiny checkpoint and to MMEdit records ends in a clean
//! diagnostic or a correct load, never a panic (issue 12).
//!
//! Checkpoint damage: truncation of the weights, bit flips anywhere in them, NaN or ±∞ written
//! over a random weight, a tensor's shape edited in the header, a config field set to a hostile
//! value. Record damage: truncation, byte flips, a field replaced by a value of the wrong type,
//! an overlong string, a path leaving the image root. A load that succeeds must give finite
//! weights; an error must name the file (or the record) it is about.
//!
//! The default run tries 24 cases of each; `cargo test --test robust_damage -- --ignored` runs
//! 5,000 of each (the count is printed).

mod robust_common;

use std::path::Path;

use mkedsl::data::{load_dataset, ImageRoots};
use mkedsl::model::{Llava, LoadOptions};
use proptest::prelude::*;
use robust_common::{header, tensor_offset, tiny_copy};

/// One kind of damage to a checkpoint copy.
#[derive(Debug, Clone)]
enum Damage {
    Truncate(f64),
    FlipBit(f64, u8),
    NonFinite(f64, u8),
    Shape(f64, usize),
    Config(usize, u8),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        (0.0..1.0f64).prop_map(Damage::Truncate),
        (0.0..1.0f64, 0..8u8).prop_map(|(at, bit)| Damage::FlipBit(at, bit)),
        (0.0..1.0f64, 0..3u8).prop_map(|(at, kind)| Damage::NonFinite(at, kind)),
        (0.0..1.0f64, 0..5usize).prop_map(|(at, size)| Damage::Shape(at, size)),
        (0..CONFIG_FIELDS.len(), 0..6u8).prop_map(|(f, v)| Damage::Config(f, v)),
    ]
}

const CONFIG_FIELDS: [(&str, &str); 10] = [
    ("text_config", "num_hidden_layers"),
    ("text_config", "hidden_size"),
    ("text_config", "vocab_size"),
    ("text_config", "rms_norm_eps"),
    ("text_config", "max_position_embeddings"),
    ("text_config", "num_key_value_heads"),
    ("vision_config", "image_size"),
    ("vision_config", "num_hidden_layers"),
    ("vision_config", "layer_norm_eps"),
    ("", "image_token_index"),
];

fn hostile(kind: u8) -> serde_json::Value {
    match kind {
        0 => 0.into(),
        1 => (-1).into(),
        2 => 1_000_000_000u64.into(),
        3 => serde_json::json!("x"),
        4 => serde_json::Value::Null,
        _ => serde_json::json!(1e300),
    }
}

fn apply(model: &Path, d: &Damage) {
    let weights = model.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let pick = |at: f64, len: usize| ((at * len as f64) as usize).min(len.saturating_sub(1));
    match d {
        Damage::Truncate(at) => bytes.truncate(pick(*at, bytes.len())),
        Damage::FlipBit(at, bit) => {
            let i = pick(*at, bytes.len());
            bytes[i] ^= 1 << bit;
        }
        Damage::NonFinite(at, kind) => {
            let (_, json) = header(&bytes);
            let names: Vec<&String> = json
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "__metadata__")
                .collect();
            let name = names[pick(*at, names.len())];
            let value = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][*kind as usize];
            let o = tensor_offset(&bytes, name);
            bytes[o..o + 4].copy_from_slice(&value.to_le_bytes());
        }
        Damage::Shape(at, size) => {
            let (n, mut json) = header(&bytes);
            let names: Vec<String> = json
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "__metadata__")
                .cloned()
                .collect();
            let name = &names[pick(*at, names.len())];
            json[name]["shape"] = match size {
                0 => serde_json::json!([]),
                1 => serde_json::json!([1]),
                2 => serde_json::json!([3, 5]),
                3 => serde_json::json!([1_000_000_000, 1_000_000_000]),
                _ => serde_json::json!("shape"),
            };
            let mut head = serde_json::to_vec(&json).unwrap();
            while (8 + head.len()) % 8 != 0 {
                head.push(b' ');
            }
            let mut out = (head.len() as u64).to_le_bytes().to_vec();
            out.extend(head);
            out.extend(&bytes[8 + n..]);
            bytes = out;
        }
        Damage::Config(field, kind) => {
            let (section, key) = CONFIG_FIELDS[*field];
            robust_common::edit_config(model, |c| {
                let target = if section.is_empty() {
                    c
                } else {
                    &mut c[section]
                };
                target[key] = hostile(*kind);
            });
        }
    }
    std::fs::write(&weights, bytes).unwrap();
}

fn check_checkpoint(d: &Damage) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_copy(dir.path(), "m");
    apply(&model, d);
    match Llava::load(&model, &LoadOptions::default()) {
        Ok(llava) => {
            // A flip in the data that leaves every weight finite is a different, valid model.
            prop_assert!(llava.model.check_finite(&model).is_ok());
        }
        Err(e) => {
            let shown = format!("{e}");
            prop_assert!(
                shown.contains(&model.display().to_string()) || shown.contains("config.json"),
                "{d:?}: {shown}"
            );
            prop_assert!(!shown.contains("internal"), "{d:?}: {shown}");
        }
    }
    Ok(())
}

/// One kind of damage to an MMEdit file.
#[derive(Debug, Clone)]
enum RecordDamage {
    Truncate(f64),
    FlipByte(f64, u8),
    WrongType(usize, u8),
    Long(usize),
    Outside(u8),
}

fn record_damage() -> impl Strategy<Value = RecordDamage> {
    prop_oneof![
        (0.0..1.0f64).prop_map(RecordDamage::Truncate),
        (0.0..1.0f64, any::<u8>()).prop_map(|(at, b)| RecordDamage::FlipByte(at, b)),
        (0..11usize, 0..4u8).prop_map(|(f, k)| RecordDamage::WrongType(f, k)),
        (0..11usize).prop_map(RecordDamage::Long),
        (0..3u8).prop_map(RecordDamage::Outside),
    ]
}

fn check_records(d: &RecordDamage) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let png = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/preprocess/wide.png"
    );
    std::fs::copy(png, dir.path().join("img.png")).unwrap();
    let mut record = serde_json::json!({
        "src": "what color is the circle?", "pred": "red", "rephrase": "which color?",
        "alt": "blue", "image": "img.png", "image_rephrase": "img.png", "loc": "what is red?",
        "loc_ans": "red", "m_loc": "img.png", "m_loc_q": "what color?", "m_loc_a": "red"
    });
    let fields = mkedsl::data::FIELDS;
    match d {
        RecordDamage::WrongType(f, k) => {
            record[fields[*f]] = match k {
                0 => serde_json::json!(7),
                1 => serde_json::Value::Null,
                2 => serde_json::json!(["a"]),
                _ => serde_json::json!({"a": 1}),
            }
        }
        RecordDamage::Long(f) => record[fields[*f]] = "x".repeat(100_000).into(),
        RecordDamage::Outside(k) => {
            record["image"] = ["../img.png", "/etc/hostname", "a/../../img.png"][*k as usize].into()
        }
        _ => {}
    }
    let mut bytes = serde_json::to_vec(&serde_json::json!([record])).unwrap();
    match d {
        RecordDamage::Truncate(at) => bytes.truncate((at * bytes.len() as f64) as usize),
        RecordDamage::FlipByte(at, b) => {
            let i = ((at * bytes.len() as f64) as usize).min(bytes.len() - 1);
            bytes[i] = *b;
        }
        _ => {}
    }
    let path = dir.path().join("data.json");
    std::fs::write(&path, &bytes).unwrap();
    match load_dataset(&path, &ImageRoots::beside(&path)) {
        Ok(data) => {
            // Whatever loads keeps its images inside the folder.
            for c in &data.cases {
                prop_assert!(c.image.starts_with(dir.path()), "{d:?}: {:?}", c.image);
            }
        }
        Err(e) => {
            let shown = format!("{e}");
            prop_assert!(shown.contains("data.json"), "{d:?}: {shown}");
        }
    }
    Ok(())
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config(24))]

    #[test]
    fn damaged_checkpoints_load_correctly_or_fail_cleanly(d in damage()) {
        check_checkpoint(&d)?;
    }

    #[test]
    fn damaged_records_load_or_fail_naming_the_file(d in record_damage()) {
        check_records(&d)?;
    }
}

/// The long run: 5,000 damaged checkpoints and 5,000 damaged record files.
#[test]
#[ignore]
fn long_run_of_random_damage() {
    const CASES: u32 = 5000;
    let mut runner = proptest::test_runner::TestRunner::new(config(CASES));
    runner
        .run(&damage(), |d| check_checkpoint(&d))
        .expect("checkpoint damage");
    let mut runner = proptest::test_runner::TestRunner::new(config(CASES));
    runner
        .run(&record_damage(), |d| check_records(&d))
        .expect("record damage");
    println!("damage cases: {CASES} checkpoints, {CASES} record files, all clean");
}
