//! `mkedsl fmt` on everything that ships: each recipe and stdlib module is at its fixed point,
//! a messed-up copy formats back to it, and formatting never changes a checked program (the plan
//! of every recipe, also with a reformatted standard library, is the same, source positions aside).

mod common;

use common::mkedsl;
use std::path::{Path, PathBuf};

use mkedsl::plan::{plan, PlanOptions};
use mkedsl::sema::{self, Library};
use mkedsl::source::SourceMap;
use mkedsl::syntax;

fn edit_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect(dir)
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "edit"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .edit file in {dir}");
    files
}

fn shipped() -> Vec<PathBuf> {
    let mut all = edit_files("recipes");
    all.extend(edit_files("stdlib"));
    all
}

fn format(name: &str, text: &str) -> String {
    mkedsl::fmt::format_text(name, text).unwrap_or_else(|f| panic!("{name}: {}", f.render_plain()))
}

/// The same program laid out badly: tabs and deep indentation, spaces before commas and inside
/// brackets, runs of blank lines. Comments and strings are left alone.
fn mess_up(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let (code, comment) = match line.find('#') {
            Some(i) => line.split_at(i),
            None => (line, ""),
        };
        let code = if code.contains('"') {
            code.trim_start().to_string()
        } else {
            code.trim_start()
                .replace(", ", " ,   ")
                .replace('(', "(  ")
                .replace(": ", " :")
                .replace('[', "[ ")
        };
        out.push_str("\t  ");
        out.push_str(&code);
        out.push_str(comment);
        out.push('\n');
        if line.trim().is_empty() {
            out.push_str("\n\n");
        }
    }
    out
}

/// A plan as JSON, without the `file:line:column` of each step's origin (formatting moves text).
fn plan_shape(recipe: &Path, library: &Library, text: &str) -> serde_json::Value {
    let mut sources = SourceMap::new();
    let id = sources.add(recipe.display().to_string(), text, false);
    let tree =
        syntax::parse(&sources, id).unwrap_or_else(|d| panic!("{}", d.render_plain(&sources)));
    let program = sema::check_with(&tree, &mut sources, None, library)
        .unwrap_or_else(|d| panic!("{}", d.render_plain(&sources)));
    let mut value =
        serde_json::to_value(plan(&program, &PlanOptions::default())).expect("plan JSON");
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Object(origin)) = map.get_mut("origin") {
                    origin.remove("at");
                }
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut value);
    value
}

#[test]
fn every_shipped_file_is_at_its_fixed_point_and_a_messy_copy_formats_back() {
    for file in shipped() {
        let name = file.display().to_string();
        let text = std::fs::read_to_string(&file).expect("read");
        assert_eq!(
            format(&name, &text),
            text,
            "{name} is not formatted: run `mkedsl fmt {name}`"
        );
        let messy = mess_up(&text);
        assert_ne!(messy, text);
        assert_eq!(
            format(&name, &messy),
            text,
            "{name}: the messy copy does not format back"
        );
    }
}

#[test]
fn formatting_keeps_every_comment_in_order() {
    for file in shipped() {
        let text = std::fs::read_to_string(&file).expect("read");
        let messy = mess_up(&text);
        let out = format(&file.display().to_string(), &messy);
        let comments = |s: &str| -> Vec<String> {
            mkedsl::fmt::comments::scan(s)
                .iter()
                .map(|c| c.text(s).to_string())
                .collect()
        };
        assert_eq!(comments(&out), comments(&messy), "{}", file.display());
        assert!(
            !comments(&text).is_empty() || file.starts_with("stdlib"),
            "{}",
            file.display()
        );
    }
}

#[test]
fn formatting_never_changes_a_plan_of_any_recipe_or_with_any_stdlib_module() {
    let std = Library::std();
    let reformatted = Library {
        modules: std
            .modules
            .iter()
            .map(|(name, text)| (name.clone(), format(name, &mess_up(text))))
            .collect(),
    };
    let messy_std = Library {
        modules: std
            .modules
            .iter()
            .map(|(n, t)| (n.clone(), mess_up(t)))
            .collect(),
    };
    for recipe in edit_files("recipes") {
        let text = std::fs::read_to_string(&recipe).expect("read");
        let messy = mess_up(&text);
        let formatted = format(&recipe.display().to_string(), &messy);
        let original = plan_shape(&recipe, &std, &text);
        assert_eq!(
            plan_shape(&recipe, &std, &messy),
            original,
            "{}: messy",
            recipe.display()
        );
        assert_eq!(
            plan_shape(&recipe, &std, &formatted),
            original,
            "{}",
            recipe.display()
        );
        assert_eq!(
            plan_shape(&recipe, &messy_std, &text),
            original,
            "{}: messy stdlib",
            recipe.display()
        );
        assert_eq!(
            plan_shape(&recipe, &reformatted, &text),
            original,
            "{}: reformatted stdlib",
            recipe.display()
        );
    }
}

#[test]
fn fmt_check_passes_on_the_shipped_folders() {
    let (code, out, err) = mkedsl(&["fmt", "--check", "recipes", "stdlib"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.is_empty(), "{out}");
}

#[test]
fn fmt_check_names_an_unformatted_file_and_fmt_rewrites_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("r.edit");
    let original = std::fs::read_to_string("recipes/lora.edit").expect("read");
    std::fs::write(&file, mess_up(&original)).expect("write");
    let path = file.display().to_string();

    let (code, out, err) = mkedsl(&["fmt", "--check", &path]);
    assert_ne!(code, 0);
    assert!(out.contains(&format!("would reformat {path}")), "{out}");
    assert!(err.contains("1 of 1 file(s) are not formatted"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        mess_up(&original),
        "--check changed the file"
    );

    let (code, out, _) = mkedsl(&["fmt", &path]);
    assert_eq!(code, 0);
    assert!(out.contains(&format!("formatted {path}")), "{out}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), original);
    let (code, out, _) = mkedsl(&["fmt", "--check", &path]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn fmt_refuses_a_file_that_does_not_parse_and_leaves_it_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.edit");
    std::fs::write(&file, "let x = lora(a, rank = 4)\n").expect("write");
    let (code, _, err) = mkedsl(&["fmt", &file.display().to_string()]);
    assert_ne!(code, 0);
    assert!(err.contains("unexpected `=`"), "{err}");
    assert!(err.contains("could not be formatted"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "let x = lora(a, rank = 4)\n"
    );
    let (code, _, err) = mkedsl(&["fmt", "no/such/dir"]);
    assert_ne!(code, 0);
    assert!(err.contains("does not exist"), "{err}");
}
