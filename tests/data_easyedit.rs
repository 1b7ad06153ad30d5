//! EasyEdit data parity, on a small file laid out exactly like MMEdit's: COCO-style
//! `val2014/COCO_val2014_….jpg` paths under one root, the generated rephrase images under a
//! separate root, a record with an empty `alt` (EasyEdit skips it), a record with other empty
//! fields (EasyEdit keeps it), and a record whose image the archive lacks. Checked through the
//! loader (`size` = `--limit` counts raw records) and end to end through `mkedsl eval`, `run`,
//! `compare` and `bench`, plus several `--data` files in one run.

mod exec_common;

use std::path::{Path, PathBuf};

use exec_common::{dataset, embedded_model, mkedsl, recipe, s, tiny, FT_L};
use mkedsl::data::{
    load_dataset_with, DataError, FieldTemplateArg, FieldTemplates, ImageRoots, LoadRules,
};
use mkedsl::eval::EvalCase;

fn coco(i: usize) -> String {
    format!("val2014/COCO_val2014_{i:012}.jpg")
}

/// Six records in MMEdit's E-VQA layout:
/// 0 ordinary · 1 empty `alt` · 2 empty `pred` and `rephrase` (kept, as in E-IC files) ·
/// 3 `image_rephrase` missing from the archive · 4, 5 ordinary.
struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    fn new() -> Layout {
        let dir = tempfile::tempdir().expect("temp dir");
        // COCO's images are JPEG, MMEdit's rephrase images PNG.
        let image = |shade: u8, format: image::ImageFormat| {
            let img = image::RgbImage::from_fn(48, 48, |x, y| {
                image::Rgb([shade, (x * 5) as u8, (y * 5) as u8])
            });
            let mut bytes = std::io::Cursor::new(Vec::new());
            image::DynamicImage::ImageRgb8(img)
                .write_to(&mut bytes, format)
                .expect("encode");
            bytes.into_inner()
        };
        let (jpeg, png) = (image::ImageFormat::Jpeg, image::ImageFormat::Png);
        let write = |path: PathBuf, bytes: &[u8]| {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, bytes).expect("write");
        };
        for i in 0..6 {
            write(
                dir.path().join("coco").join(coco(i)),
                &image(40 * i as u8, jpeg),
            );
            if i != 3 {
                write(
                    dir.path()
                        .join("rephrase")
                        .join(format!("val2014_image_rephrase/{i}.png")),
                    &image(40 * i as u8 + 10, png),
                );
            }
        }
        write(dir.path().join("coco").join(coco(99)), &image(200, jpeg));
        let records: Vec<serde_json::Value> = (0..6)
            .map(|i| {
                serde_json::json!({
                    "src": "What colour is the square?",
                    "pred": "red",
                    "rephrase": "Which colour does the square have?",
                    "alt": "blue",
                    "image": coco(i),
                    "image_rephrase": format!("val2014_image_rephrase/{i}.png"),
                    "loc": "nq question: who wrote hamlet",
                    "loc_ans": "shakespeare",
                    "m_loc": coco(99),
                    "m_loc_q": "What sport is this?",
                    "m_loc_a": "tennis"
                })
            })
            .collect();
        let mut records = records;
        records[1]["alt"] = "".into();
        records[2]["pred"] = "".into();
        records[2]["rephrase"] = "".into();
        std::fs::write(
            dir.path().join("vqa_eval.json"),
            serde_json::to_string_pretty(&records).expect("json"),
        )
        .expect("write json");
        Layout { dir }
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

    fn root_args(&self) -> Vec<String> {
        vec![
            "--image-root".into(),
            self.roots().image.display().to_string(),
            "--rephrase-root".into(),
            self.roots().rephrase.display().to_string(),
        ]
    }
}

#[test]
fn the_loader_keeps_what_easyedit_keeps_and_counts_what_it_skips() {
    let layout = Layout::new();
    let rules = LoadRules::default();
    let all = load_dataset_with(&layout.json(), &layout.roots(), &rules).expect("loads");
    assert_eq!(all.records, 6);
    assert_eq!(
        all.cases.iter().map(|c| c.index).collect::<Vec<_>>(),
        vec![0, 2, 4, 5]
    );
    assert_eq!(
        all.dropped.iter().map(|d| d.index).collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(all.missing.len(), 1);
    assert_eq!(
        (all.missing[0].index, all.missing[0].field),
        (3, "image_rephrase")
    );
    assert!(all.missing[0].image.starts_with(layout.roots().rephrase));
    assert_eq!(
        all.summary().replace(&layout.dir.path().display().to_string(), "[TMP]"),
        "4 cases from [TMP]/vqa_eval.json (of 6 records; skipped 1 with an empty alt, 1 with a missing image)"
    );

    // EasyEdit's `size` cuts the raw list before skipping: the first 4 records give 2 cases.
    let first4 = load_dataset_with(
        &layout.json(),
        &layout.roots(),
        &LoadRules {
            size: Some(4),
            ..rules
        },
    )
    .expect("loads");
    assert_eq!(first4.considered, 4);
    assert_eq!(
        first4.cases.iter().map(|c| c.index).collect::<Vec<_>>(),
        vec![0, 2]
    );

    // --strict: the missing image is an error naming record, field and path.
    let err = load_dataset_with(
        &layout.json(),
        &layout.roots(),
        &LoadRules {
            strict: true,
            ..rules
        },
    )
    .expect_err("strict");
    assert!(
        matches!(
            err,
            DataError::MissingImage {
                index: 3,
                field: "image_rephrase",
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn each_field_gets_its_own_template() {
    let layout = Layout::new();
    let data =
        load_dataset_with(&layout.json(), &layout.roots(), &LoadRules::default()).expect("loads");
    let chat = mkedsl::data::PromptTemplate::llava15();
    let vqa =
        FieldTemplates::from_args(&["easyedit-vqa".parse::<FieldTemplateArg>().expect("preset")]);
    let cases = EvalCase::from_fields(&data, &vqa.resolve(&chat), 0);
    let p = &cases[0].prompts;
    // EasyEdit's VQADataset: `Question: {} Short answer:` on src, rephrase and m_loc_q; loc raw.
    assert_eq!(
        p.src,
        "<image>\nQuestion: What colour is the square? Short answer:"
    );
    assert_eq!(
        p.rephrase,
        "<image>\nQuestion: Which colour does the square have? Short answer:"
    );
    assert_eq!(p.loc, "nq question: who wrote hamlet");
    assert_eq!(
        p.m_loc,
        "<image>\nQuestion: What sport is this? Short answer:"
    );
    // The kept record with an empty rephrase formats to an empty question, not a dropped case.
    assert_eq!(
        cases[1].prompts.rephrase,
        "<image>\nQuestion:  Short answer:"
    );
    // The default: the model's chat template everywhere.
    let cases = EvalCase::from_fields(&data, &FieldTemplates::default().resolve(&chat), 0);
    assert_eq!(
        cases[0].prompts.src,
        "USER: <image>\nWhat colour is the square? ASSISTANT:"
    );
    assert_eq!(
        cases[0].prompts.loc,
        "USER: nq question: who wrote hamlet ASSISTANT:"
    );
}

#[test]
fn eval_runs_easyedits_layout_unchanged_with_easyedits_case_count() {
    let layout = Layout::new();
    let json = layout.dir.path().join("report.json");
    let model = tiny();
    let mut args: Vec<String> = [
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&layout.json()),
        "--limit",
        "5",
        "--max-new-tokens",
        "2",
        "--field-template",
        "easyedit-vqa",
        "--json",
        s(&json),
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(layout.root_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = mkedsl(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("(3 cases; 1 record skipped for an empty alt; 1 record skipped for a missing image; first 5 of 6 records considered)"),
        "{stdout}"
    );
    assert!(stdout.contains("fields    easyedit-vqa"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("json");
    assert_eq!(report["cases"], 3);
    let file = &report["data_files"][0];
    assert_eq!(
        (
            &file["records"],
            &file["considered"],
            &file["cases"],
            &file["empty_alt"]
        ),
        (&6.into(), &5.into(), &3.into(), &1.into())
    );
    assert_eq!(file["missing_images"][0][0], 3);
    assert_eq!(file["missing_images"][0][1], "image_rephrase");
    let indices: Vec<u64> = report["per_case"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["index"].as_u64().expect("index"))
        .collect();
    assert_eq!(indices, vec![0, 2, 4]);
    assert_eq!(report["field_templates"]["src"], "easyedit-raw");
    assert_eq!(report["field_templates"]["loc"], "raw");

    // --strict turns the missing image into an error naming it, before the model loads.
    args_with(&args, "--strict", |out| {
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("image_rephrase"), "{err}");
        assert!(err.contains("val2014_image_rephrase/3.png"), "{err}");
    });
}

fn args_with(args: &[&str], extra: &str, check: impl Fn(&std::process::Output)) {
    let mut all = args.to_vec();
    all.push(extra);
    check(&mkedsl(&all));
}

#[test]
fn compare_and_bench_take_the_image_roots_and_strict() {
    let layout = Layout::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let r = recipe(dir.path(), "ft_l.edit", FT_L);
    let model = tiny();
    for command in [
        vec![
            "compare",
            s(&r),
            "--model",
            s(&model),
            "--data",
            s(&layout.json()),
            "--limit",
            "4",
        ],
        vec![
            "bench",
            s(&r),
            "--model",
            s(&model),
            "--data",
            s(&layout.json()),
            "--cases",
            "4",
        ],
    ] {
        let roots = layout.root_args();
        let mut args = command.clone();
        args.extend(roots.iter().map(String::as_str));
        args.push("--strict");
        let out = mkedsl(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        // The roots were used (the rephrase root is where the missing image was looked for),
        // and --strict made it an error.
        assert!(!out.status.success(), "{}: {err}", command[0]);
        assert!(
            err.contains("val2014_image_rephrase/3.png"),
            "{}: {err}",
            command[0]
        );
        assert!(err.contains("rephrase"), "{err}");
        // Without the roots nothing resolves beside the data file: every record is skipped.
        let out = mkedsl(&command);
        assert!(!out.status.success(), "{}", command[0]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no case to evaluate"), "{}: {err}", command[0]);
    }
}

#[test]
fn run_and_eval_take_several_data_files_as_one_sequence() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = embedded_model(dir.path());
    let evqa = dataset(dir.path(), 3);
    let eic = {
        let cases = mkedsl::world::World::new(exec_common::WORLD_SEED)
            .edit_cases(mkedsl::world::CaseKind::Eic, 3, 1)
            .expect("plan cases");
        mkedsl::data::write_dataset(
            mkedsl::world::CaseKind::Eic,
            &cases,
            &dir.path().join("eic"),
            |_, _| Ok("red".into()),
        )
        .expect("writes")
        .json
    };
    let json = dir.path().join("eval.json");
    let out = mkedsl(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&evqa),
        "--data",
        s(&eic),
        "--interleave",
        "--limit",
        "2",
        "--mode",
        "sequential",
        "--k",
        "4",
        "--max-new-tokens",
        "2",
        "--json",
        s(&json),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("json");
    // Two records of each file, alternating; the second file's records are numbered after
    // the first file's 3, so every case has its own index.
    let rows = report["per_case"].as_array().expect("rows");
    let indices: Vec<u64> = rows
        .iter()
        .map(|r| r["index"].as_u64().expect("index"))
        .collect();
    assert_eq!(indices, vec![0, 3, 1, 4]);
    let families: Vec<&str> = rows
        .iter()
        .map(|r| r["family"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(families[1], "caption");
    assert_ne!(families[0], "caption");
    assert_eq!(report["groups"], 1);
    assert_eq!(report["data_files"].as_array().expect("files").len(), 2);
    assert_eq!(
        report["provenance"]["recipe_sha256"],
        serde_json::Value::Null
    );

    // run: one FT-L edit sequence over both files.
    let r = recipe(dir.path(), "ft_l.edit", FT_L);
    let json = dir.path().join("run.json");
    let out = mkedsl(&[
        "run",
        s(&r),
        "--model",
        s(&model),
        "--data",
        s(&evqa),
        "--data",
        s(&eic),
        "--limit",
        "1",
        "--mode",
        "sequential",
        "--k",
        "2",
        "--max-new-tokens",
        "2",
        "--no-cache",
        "--json",
        s(&json),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("json");
    assert_eq!(report["cases"], 2);
    assert_eq!(report["groups"], 1);
    let indices: Vec<u64> = report["per_case"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["index"].as_u64().expect("index"))
        .collect();
    assert_eq!(indices, vec![0, 3]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(s(&eic)), "{stdout}");

    // Provenance: version, the recipe's and data files' SHA-256, the model hash, numeric
    // settings and per-phase times.
    let p = &report["provenance"];
    let sha = |path: &Path| {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(std::fs::read(path).expect("read"));
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(p["mkedsl_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(p["recipe_sha256"], sha(&r));
    assert_eq!(p["data_sha256"], serde_json::json!([sha(&evqa), sha(&eic)]));
    assert_eq!(p["model_sha256"].as_str().expect("hash").len(), 64);
    assert_eq!(p["dtype"], "f32");
    assert_eq!(p["device"], "cpu");
    assert_eq!(p["threads"], 1);
    assert_eq!(p["seed"], 0);
    let phases = &p["phases"];
    assert!(phases["total_s"].as_f64().expect("total") > 0.0);
    assert!(phases["optimise_s"].as_f64().expect("optimise") > 0.0);
    // Per case: pre and post under EasyEdit's names, equal to our scores.
    for row in report["per_case"].as_array().expect("rows") {
        let e = &row["easyedit"];
        assert_eq!(e["post"]["rewrite_acc"], row["metrics"]["rel"]);
        assert_eq!(e["pre"]["rewrite_acc"], row["pre_edit"]["metrics"]["rel"]);
        assert_eq!(
            e["post"]["multimodal_locality_acc"],
            row["locality_all_positions"]["m_loc"]
        );
    }
    assert_eq!(
        report["easyedit"]["post"]["rephrase_acc"],
        report["metrics"]["t_gen"]
    );

    // --interleave needs several files.
    let out = mkedsl(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&evqa),
        "--interleave",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--interleave"));
}
