//! Image preprocessing against Hugging Face's CLIPImageProcessor.
//!
//! tests/fixtures/preprocess/expected.json was written by make_expected.py beside it (Pillow +
//! transformers), from the PNGs in the same folder.

use std::path::Path;

use mkedsl::model::preprocess::{load_image, ImageProcessor};

fn fixtures() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/preprocess"
    ))
}

#[test]
fn pixels_match_hugging_face_for_every_config_and_image() {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut checked = 0;
    for (config_name, case) in expected.as_object().unwrap() {
        let processor =
            ImageProcessor::from_json(&case["config"].to_string(), config_name).unwrap();
        for (image_name, want) in case["images"].as_object().unwrap() {
            let image = load_image(&fixtures().join(image_name)).unwrap();
            let got = processor.preprocess(&image).unwrap();
            let shape: Vec<usize> = want["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap() as usize)
                .collect();
            assert_eq!(got.dims(), shape.as_slice(), "{config_name}/{image_name}");
            let got = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let want: Vec<f64> = want["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let max_diff = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (f64::from(*g) - w).abs())
                .fold(0.0, f64::max);
            assert!(
                max_diff < 1e-6,
                "{config_name}/{image_name}: max abs diff {max_diff}"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}

#[test]
fn unreadable_image_names_the_file() {
    let err = load_image(&fixtures().join("expected.json")).unwrap_err();
    assert!(err.to_string().contains("expected.json"), "{err}");
    let err = load_image(&fixtures().join("missing.png")).unwrap_err();
    assert!(err.to_string().contains("missing.png"), "{err}");
}
