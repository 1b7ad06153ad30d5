//! Generates one test per corpus file (`tests/bad_recipes`, the shipped and the ablation
//! recipes), so that one failing file does not hide the rest and a new file is a new test with
//! nothing to register. A build script rather than a test-only macro crate: the macro crates that
//! do this change `syn`'s features, and with them every dependency built by `cargo build` would
//! be built a second time by `cargo test`.
//!
//! For each corpus it writes `$OUT_DIR/corpus_<name>.rs`, one `<name>_case!(<name>_<stem>,
//! "path");` per file; a test file defines the `<name>_case!` macro and includes the file.

use std::fs;
use std::path::Path;

const CORPORA: &[(&str, &str)] = &[
    ("bad_recipes", "tests/bad_recipes"),
    ("bad_recipes_bound", "tests/bad_recipes/bound"),
    ("recipes", "recipes"),
    ("ablations", "recipes/ablations"),
];

fn main() {
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let root = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    for (name, dir) in CORPORA {
        println!("cargo:rerun-if-changed={dir}");
        let mut files: Vec<String> = fs::read_dir(Path::new(&root).join(dir))
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|f| f.ends_with(".edit"))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        let mut text = String::new();
        for file in files {
            let stem = file.trim_end_matches(".edit");
            let ident: String = stem
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect();
            text.push_str(&format!(
                "{name}_case!({name}_{ident}, \"{dir}/{file}\");\n"
            ));
        }
        let path = Path::new(&out).join(format!("corpus_{name}.rs"));
        if fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            fs::write(&path, text).expect("write the generated corpus tests");
        }
    }
}
