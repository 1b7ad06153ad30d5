//! The MMEdit data layer: writing the world's datasets with an answer function, reading them back,
//! and reading EasyEdit-shaped files with their error cases.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mkedsl::data::{
    load_dataset, read_image, write_dataset, DataError, ImageRoots, MmeditRecord, FIELDS,
};
use mkedsl::world::{Ask, CaseKind, EditCase, World};

fn cases(kind: CaseKind, n: usize) -> Vec<EditCase> {
    World::new(0).edit_cases(kind, n, 0).expect("cases plan")
}

/// An answer function that checks it is asked each case's `src` about its image, in order, and
/// answers with `pick(case)`.
fn scripted<'a>(
    cases: &'a [EditCase],
    pick: impl Fn(&EditCase) -> String + 'a,
) -> impl FnMut(&str, &image::RgbImage) -> Result<String, mkedsl::data::AnswerError> + 'a {
    let mut next = 0;
    move |question, image| {
        let case = cases.get(next).ok_or("asked too often")?;
        next += 1;
        assert_eq!(question, case.src);
        assert_eq!(image, &case.image.render());
        Ok(pick(case))
    }
}

fn all_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("list") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).expect("inside").to_path_buf();
                out.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    out
}

#[test]
fn a_written_evqa_dataset_loads_back_with_its_images() {
    let cases = cases(CaseKind::Evqa, 14);
    let dir = tempfile::tempdir().expect("temp dir");
    let written = write_dataset(
        CaseKind::Evqa,
        &cases,
        dir.path(),
        scripted(&cases, |c| c.truth.clone()),
    )
    .expect("writes");
    assert_eq!(written.json, dir.path().join("evqa.json"));
    assert_eq!((written.cases, written.images), (14, 42));
    assert_eq!((written.wrong_pred, written.corrective), (0, 0));
    // 48×48 PNGs with block grain stay small.
    assert!(
        written.bytes < 14 * 3 * 2_000 + 20_000,
        "{} bytes",
        written.bytes
    );

    let data = load_dataset(&written.json, &ImageRoots::beside(&written.json)).expect("loads");
    assert_eq!(data.cases.len(), 14);
    assert!(data.dropped.is_empty());
    assert_eq!(
        data.summary(),
        format!("14 cases from {}", written.json.display())
    );
    for (loaded, case) in data.cases.iter().zip(&cases) {
        let r = &loaded.record;
        assert_eq!(r.src, case.src);
        assert_eq!(r.pred, case.truth);
        assert_eq!(r.alt, case.alternatives[0]);
        assert_ne!(r.alt, r.pred);
        assert_eq!(r.rephrase, case.rephrase);
        assert_eq!((&r.loc, &r.loc_ans), (&case.loc, &case.loc_ans));
        assert_eq!((&r.m_loc_q, &r.m_loc_a), (&case.m_loc_q, &case.m_loc_a));
        assert_eq!(r.family.as_deref(), Some(case.family.name()));
        assert!(r.image.starts_with("images/evqa/"));
        assert_eq!(
            read_image(&loaded.image).expect("image"),
            case.image.render()
        );
        assert_eq!(
            read_image(&loaded.image_rephrase).expect("rephrase image"),
            case.image_rephrase.render()
        );
        assert_eq!(
            read_image(&loaded.m_loc).expect("m_loc image"),
            case.m_loc.render()
        );
    }
}

#[test]
fn the_record_keeps_easyedits_field_order() {
    let cases = cases(CaseKind::Eic, 2);
    let dir = tempfile::tempdir().expect("temp dir");
    let written = write_dataset(
        CaseKind::Eic,
        &cases,
        dir.path(),
        scripted(&cases, |c| c.truth.clone()),
    )
    .expect("writes");
    let text = std::fs::read_to_string(&written.json).expect("read");
    let value: serde_json::Value = serde_json::from_str(&text).expect("json");
    let first = value[0].as_object().expect("object");
    let keys: Vec<&str> = first.keys().map(String::as_str).collect();
    let mut expected: Vec<&str> = FIELDS.to_vec();
    expected.push("family");
    // serde_json's map is sorted unless preserve_order is on; compare the text order instead.
    let positions: Vec<usize> = expected
        .iter()
        .map(|k| text.find(&format!("\"{k}\"")).expect("key present"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    assert_eq!(keys.len(), 12);
    assert_eq!(first["src"].as_str(), Some(cases[0].src.as_str()));
}

#[test]
fn alt_skips_the_models_answer_and_falls_back_to_the_truth_for_binary_questions() {
    let all = cases(CaseKind::Evqa, 40);
    // A model that always answers the first counterfactual: alt becomes the second.
    let dir = tempfile::tempdir().expect("temp dir");
    let wrong: Vec<EditCase> = all
        .iter()
        .filter(|c| c.alternatives.len() > 1)
        .take(5)
        .cloned()
        .collect();
    let written = write_dataset(
        CaseKind::Evqa,
        &wrong,
        dir.path(),
        scripted(&wrong, |c| c.alternatives[0].to_uppercase()),
    )
    .expect("writes");
    assert_eq!(written.wrong_pred, 5);
    let data = load_dataset(&written.json, &ImageRoots::beside(&written.json)).expect("loads");
    for (loaded, case) in data.cases.iter().zip(&wrong) {
        assert_eq!(loaded.record.alt, case.alternatives[1]);
    }

    // A size question answered with the only other size: the edit target is the truth.
    let size: Vec<EditCase> = all
        .iter()
        .filter(|c| c.ask == Ask::Size)
        .take(1)
        .cloned()
        .collect();
    assert_eq!(size.len(), 1);
    let dir = tempfile::tempdir().expect("temp dir");
    let written = write_dataset(
        CaseKind::Evqa,
        &size,
        dir.path(),
        scripted(&size, |c| c.alternatives[0].clone()),
    )
    .expect("writes");
    assert_eq!(written.corrective, 1);
    let data = load_dataset(&written.json, &ImageRoots::beside(&written.json)).expect("loads");
    assert_eq!(data.cases[0].record.alt, size[0].truth);
}

#[test]
fn answer_failures_and_empty_answers_are_errors() {
    let cases = cases(CaseKind::Eic, 3);
    let dir = tempfile::tempdir().expect("temp dir");
    let err = write_dataset(CaseKind::Eic, &cases, dir.path(), |_, _| {
        Err("model exploded".into())
    })
    .expect_err("fails");
    assert!(matches!(err, DataError::Answer { case: 0, .. }), "{err}");
    let err = write_dataset(CaseKind::Eic, &cases, dir.path(), |_, _| Ok("  ".into()))
        .expect_err("fails");
    assert!(
        matches!(err, DataError::EmptyAnswer { case: 0, .. }),
        "{err}"
    );
    assert!(!dir.path().join("eic.json").exists());
}

#[test]
fn writing_is_byte_reproducible() {
    let cases = cases(CaseKind::Evqa, 6);
    let a = tempfile::tempdir().expect("temp dir");
    let b = tempfile::tempdir().expect("temp dir");
    for dir in [&a, &b] {
        write_dataset(
            CaseKind::Evqa,
            &cases,
            dir.path(),
            scripted(&cases, |c| c.truth.clone()),
        )
        .expect("writes");
    }
    let files_a = all_files(a.path());
    assert_eq!(files_a.len(), 6 * 3 + 1);
    assert_eq!(files_a, all_files(b.path()));
}

// ---- EasyEdit-shaped files ----

fn record(i: usize) -> serde_json::Value {
    serde_json::json!({
        "src": format!("What is shown {i}?"),
        "pred": "a dog",
        "rephrase": "What can be seen?",
        "alt": "a cat",
        "image": format!("val2014/COCO_val2014_{i:012}.png"),
        "image_rephrase": format!("val2014_image_rephrase/{i}.png"),
        "loc": "nq question: who wrote hamlet",
        "loc_ans": "Shakespeare",
        "m_loc": "val2014/COCO_val2014_000000000099.png",
        "m_loc_q": "What sport is this?",
        "m_loc_a": "tennis",
        "port_new": [{"Q&A": {"Question": "q", "Answer": "a"}}]
    })
}

/// A file laid out like MMEdit's E-VQA: COCO images under one root, rephrase images under another.
struct EasyEditLayout {
    dir: tempfile::TempDir,
}

impl EasyEditLayout {
    fn new(records: &[serde_json::Value]) -> EasyEditLayout {
        let dir = tempfile::tempdir().expect("temp dir");
        let png = mkedsl::data::files::png_bytes(&image::RgbImage::new(2, 2)).expect("png");
        let coco = dir.path().join("coco");
        let rephrase = dir.path().join("rephrase");
        for i in 0..4 {
            let a = coco.join(format!("val2014/COCO_val2014_{i:012}.png"));
            let b = rephrase.join(format!("val2014_image_rephrase/{i}.png"));
            for p in [a, b] {
                std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                std::fs::write(p, &png).expect("write");
            }
        }
        let m_loc = coco.join("val2014/COCO_val2014_000000000099.png");
        std::fs::write(m_loc, &png).expect("write");
        let layout = EasyEditLayout { dir };
        layout.write_json(&serde_json::to_string(records).expect("json"));
        layout
    }

    fn write_json(&self, text: &str) {
        std::fs::write(self.json(), text).expect("write json");
    }

    fn json(&self) -> PathBuf {
        self.dir.path().join("vqa_eval.json")
    }

    fn roots(&self) -> ImageRoots {
        ImageRoots {
            image: self.dir.path().join("coco"),
            rephrase: self.dir.path().join("rephrase"),
        }
    }

    fn load(&self) -> Result<mkedsl::data::Dataset, DataError> {
        load_dataset(&self.json(), &self.roots())
    }

    /// A rendered diagnostic with the temporary folder replaced by `[TMP]` (wide, so the
    /// length of the temporary path never changes where lines wrap).
    fn render(&self, err: &DataError) -> String {
        let mut out = String::new();
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
            .with_width(1000)
            .render_report(&mut out, err)
            .expect("renders");
        out.replace(&self.dir.path().display().to_string(), "[TMP]")
    }
}

#[test]
fn easyedit_files_resolve_two_image_roots_and_drop_empty_alts_only() {
    let mut records: Vec<serde_json::Value> = (0..4).map(record).collect();
    records[1]["alt"] = "".into();
    // EasyEdit keeps a record whose other fields are empty.
    records[3]["loc_ans"] = "   ".into();
    let layout = EasyEditLayout::new(&records);
    let data = layout.load().expect("loads");
    assert_eq!(
        data.cases.iter().map(|c| c.index).collect::<Vec<_>>(),
        vec![0, 2, 3]
    );
    assert_eq!(data.dropped.len(), 1);
    assert_eq!(data.dropped[0].index, 1);
    assert_eq!(data.dropped[0].empty_fields, vec!["alt"]);
    assert!(
        data.summary()
            .ends_with("(of 4 records; skipped 1 with an empty alt)"),
        "{}",
        data.summary()
    );
    let case = &data.cases[1];
    assert_eq!(
        case.image,
        layout
            .dir
            .path()
            .join("coco/val2014/COCO_val2014_000000000002.png")
    );
    assert_eq!(
        case.image_rephrase,
        layout
            .dir
            .path()
            .join("rephrase/val2014_image_rephrase/2.png")
    );
    assert_eq!(case.record.family, None);
    let expected: MmeditRecord = serde_json::from_value(record(2)).expect("record");
    assert_eq!(case.record, expected);
}

#[test]
fn malformed_json_points_at_the_error() {
    let layout = EasyEditLayout::new(&[]);
    layout.write_json("[\n  {\"src\": \"a\",\n   \"pred\" \"b\"}\n]\n");
    let err = layout.load().expect_err("bad json");
    assert!(matches!(err, DataError::Json { .. }));
    insta::assert_snapshot!(layout.render(&err));
}

#[test]
fn a_missing_field_names_the_record_and_field() {
    let mut records: Vec<serde_json::Value> = (0..3).map(record).collect();
    records[2]
        .as_object_mut()
        .expect("object")
        .remove("m_loc_q");
    let layout = EasyEditLayout::new(&records);
    let err = layout.load().expect_err("missing field");
    insta::assert_snapshot!(layout.render(&err));
}

#[test]
fn a_non_string_field_or_non_object_record_is_malformed() {
    let mut records: Vec<serde_json::Value> = (0..2).map(record).collect();
    records[1]["pred"] = serde_json::json!(["a", "b"]);
    let layout = EasyEditLayout::new(&records);
    match layout.load() {
        Err(DataError::Record { index, reason, .. }) => {
            assert_eq!(index, 1);
            assert_eq!(reason, "field `pred` should be a string, found an array");
        }
        other => panic!("expected a record error, got {other:?}"),
    }
    layout.write_json("[3]");
    assert!(matches!(
        layout.load(),
        Err(DataError::Record { index: 0, .. })
    ));
    layout.write_json("{\"src\": \"a\"}");
    assert!(matches!(layout.load(), Err(DataError::NotAnArray { .. })));
}

#[test]
fn a_missing_image_names_the_record_field_and_path() {
    let mut records: Vec<serde_json::Value> = (0..2).map(record).collect();
    records[1]["image_rephrase"] = "val2014_image_rephrase/404.png".into();
    let layout = EasyEditLayout::new(&records);
    let err = layout.load().expect_err("missing image");
    insta::assert_snapshot!(layout.render(&err));
    // The rephrase root is the one that was searched.
    match err {
        DataError::MissingImage {
            index,
            field,
            image,
            ..
        } => {
            assert_eq!((index, field), (1, "image_rephrase"));
            assert!(image.starts_with(layout.roots().rephrase));
        }
        other => panic!("expected a missing image, got {other:?}"),
    }
}

#[test]
fn unreadable_files_are_errors_not_panics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nope.json");
    assert!(matches!(
        load_dataset(&missing, &ImageRoots::beside(&missing)),
        Err(DataError::Read { .. })
    ));
    let not_png = dir.path().join("x.png");
    std::fs::write(&not_png, b"not an image").expect("write");
    assert!(matches!(read_image(&not_png), Err(DataError::Image { .. })));
}
