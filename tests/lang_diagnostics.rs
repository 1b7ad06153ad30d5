//! The malformed-recipe corpus: every file under `tests/bad_recipes/` (checked without a model)
//! and `tests/bad_recipes/bound/` (checked against the fixture config) must fail with clean
//! diagnostics — a span, a label, a help line — and its fully rendered report is snapshotted.

use std::path::{Path, PathBuf};

use mkedsl::model::config::{LlavaConfig, ModelDims};
use mkedsl::plan::PlanOptions;

fn fixture_dims() -> ModelDims {
    LlavaConfig::from_path(Path::new("tests/fixtures/lang/config.json"))
        .expect("fixture config")
        .dims()
}

fn corpus(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("corpus folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().map(|x| x == "edit").unwrap_or(false))
        .collect();
    files.sort();
    files
}

/// The corpus file as the snapshots and messages name it (relative to the crate root).
fn relative(path: &Path) -> PathBuf {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .to_path_buf()
}

fn check_case(path: &Path, dims: Option<&ModelDims>) {
    let path = relative(path);
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("case")
        .to_string();
    let failed = match mkedsl::compile(&path, dims, PlanOptions::default()) {
        Ok(_) => panic!("{} should not check", path.display()),
        Err(failed) => failed,
    };
    for diag in failed.diagnostics.iter() {
        assert!(
            diag.help.is_some(),
            "{name}: `{}` has no help line",
            diag.message
        );
        if diag.code != "mkedsl::too_many_errors" {
            assert!(
                diag.span.is_some(),
                "{name}: `{}` has no span",
                diag.message
            );
            assert!(
                diag.label.is_some(),
                "{name}: `{}` has no label",
                diag.message
            );
        }
    }
    let rendered = failed.render_plain();
    assert!(
        rendered.contains(&format!("[{}:", path.display())),
        "{name}: no file:line:col\n{rendered}"
    );
    insta::assert_snapshot!(format!("diag_{name}"), rendered);
}

/// One test per file of `tests/bad_recipes/`, checked without a model.
#[rstest::rstest]
fn malformed_recipe_without_a_model(#[files("tests/bad_recipes/*.edit")] path: PathBuf) {
    check_case(&path, None);
}

/// One test per file of `tests/bad_recipes/bound/`, checked against the fixture config.
#[rstest::rstest]
fn malformed_recipe_against_the_fixture_model(
    #[files("tests/bad_recipes/bound/*.edit")] path: PathBuf,
) {
    check_case(&path, Some(&fixture_dims()));
}

/// The bound cases are about dimensions: without a model most of them are fine.
#[test]
fn dimension_errors_need_the_model() {
    let unbound_ok = corpus("tests/bad_recipes/bound")
        .iter()
        .filter(|p| mkedsl::compile(p, None, PlanOptions::default()).is_ok())
        .count();
    assert!(
        unbound_ok >= 6,
        "only {unbound_ok} bound cases pass without a model"
    );
}
