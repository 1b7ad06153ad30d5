//! `mkedsl world` end to end: the binary writes the documented layout, reproducibly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn mkedsl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_mkedsl"))
        .args(args)
        .output()
        .expect("runs mkedsl")
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
fn same_seed_writes_byte_identical_folders() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let c = tmp.path().join("c");
    for (dir, seed) in [(&a, "7"), (&b, "7"), (&c, "8")] {
        let out = mkedsl(&[
            "world",
            "--seed",
            seed,
            "--out",
            dir.to_str().expect("utf-8 path"),
            "--samples",
            "2",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("vocabulary"), "{stdout}");
    }
    let files_a = all_files(&a);
    assert_eq!(files_a, all_files(&b));
    for expected in [
        "world.json",
        "tokenizer.json",
        "samples/train.json",
        "samples/held_out.json",
        "samples/images/train/0000.png",
        "samples/images/held_out/0000.png",
    ] {
        assert!(files_a.contains_key(Path::new(expected)), "{expected}");
    }
    // 9 families × 2 samples × 2 splits, text facts without images.
    let pngs = files_a
        .keys()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .count();
    assert_eq!(pngs, 8 * 2 * 2);
    let files_c = all_files(&c);
    assert_ne!(
        files_a.get(Path::new("world.json")),
        files_c.get(Path::new("world.json"))
    );

    let world: serde_json::Value =
        serde_json::from_slice(&files_a[Path::new("world.json")]).expect("world.json");
    assert_eq!(world["seed"], 7);
    assert_eq!(world["image_size"], 48);
    assert_eq!(world["creatures"].as_array().map(Vec::len), Some(32));
    assert_eq!(world["families"].as_array().map(Vec::len), Some(9));
    let samples: serde_json::Value =
        serde_json::from_slice(&files_a[Path::new("samples/held_out.json")]).expect("samples");
    assert_eq!(samples.as_array().map(Vec::len), Some(18));
}

#[test]
fn an_unwritable_output_is_a_diagnostic_not_a_panic() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let file = tmp.path().join("occupied");
    std::fs::write(&file, b"x").expect("write");
    let out = mkedsl(&["world", "--out", file.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("mkedsl::world::write"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
