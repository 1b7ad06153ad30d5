//! The shipped datasets (examples/data): MMEdit files that load, large enough, mixed as
//! promised, with the shipped model's real greedy answer as `pred` and a target that differs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use mkedsl::data::prompt::PromptTemplate;
use mkedsl::data::{load_dataset, read_image, Dataset, ImageRoots};
use mkedsl::eval::metrics::normalize_generation;
use mkedsl::model::{Llava, LoadOptions};
use mkedsl::train::{greedy_answer, Question};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(name: &str) -> Dataset {
    let path = root().join("examples/data").join(name);
    load_dataset(&path, &ImageRoots::beside(&path)).expect("dataset loads")
}

fn families(data: &Dataset) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for case in &data.cases {
        *out.entry(case.record.family.clone().unwrap_or_default())
            .or_insert(0) += 1;
    }
    out
}

#[test]
fn both_datasets_load_complete_and_mixed() {
    let evqa = load("evqa.json");
    let eic = load("eic.json");
    assert!(evqa.cases.len() >= 300, "{}", evqa.summary());
    assert!(eic.cases.len() >= 150, "{}", eic.summary());
    assert!(evqa.dropped.is_empty() && eic.dropped.is_empty());
    let mix = families(&evqa);
    for family in [
        "colour",
        "shape",
        "count",
        "size",
        "position",
        "entity_name",
        "entity_fact",
    ] {
        assert!(mix.get(family).is_some_and(|&n| n >= 20), "{mix:?}");
    }
    assert_eq!(families(&eic).keys().collect::<Vec<_>>(), ["caption"]);
}

#[test]
fn targets_differ_from_the_models_answers() {
    for data in [load("evqa.json"), load("eic.json")] {
        for case in &data.cases {
            let r = &case.record;
            assert_ne!(
                normalize_generation(&r.alt),
                normalize_generation(&r.pred),
                "case {} of {}",
                case.index,
                data.path.display()
            );
        }
    }
}

#[test]
fn pred_is_the_shipped_models_greedy_answer() {
    let llava = Llava::load(&root().join("examples/model"), &LoadOptions::default())
        .expect("shipped model loads");
    let template = PromptTemplate::llava15();
    for data in [load("evqa.json"), load("eic.json")] {
        // A spread of cases across the file (every family of E-VQA appears in its first seven).
        let step = data.cases.len() / 5;
        let picks = (0..7).chain((1..5).map(|k| k * step));
        for i in picks {
            let case = &data.cases[i];
            let image = read_image(&case.image).expect("image");
            let question = Question {
                text: &case.record.src,
                image: Some(&image),
            };
            let answer = greedy_answer(&llava, &template, question).expect("answers");
            assert_eq!(
                answer,
                case.record.pred,
                "case {i} of {}",
                data.path.display()
            );
        }
    }
}
