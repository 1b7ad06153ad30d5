//! Nothing computed is lost and nothing is destroyed (issue 12): the table comes before any
//! file, a report that cannot be written is kept elsewhere, only regular files are replaced
//! (links are written through, devices written in place), a case's artefact is replaced as one
//! folder, and temporaries of killed runs are cleaned.

mod exec_common;
mod robust_common;

use std::path::Path;

use robust_common::{fails_cleanly, mkedsl, s};

/// An E-VQA dataset of the fixture's world and the fixture dressed as the embedded model.
fn inputs(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    (
        exec_common::embedded_model(dir),
        exec_common::dataset(dir, 1),
    )
}

fn eval_args<'a>(model: &'a Path, data: &'a Path) -> Vec<&'a str> {
    vec![
        "eval",
        "--model",
        s(model),
        "--data",
        s(data),
        "--limit",
        "1",
        "--max-new-tokens",
        "2",
    ]
}

#[test]
fn a_json_path_that_is_a_folder_is_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = inputs(dir.path());
    let mut args = eval_args(&model, &data);
    args.extend(["--json", s(dir.path())]);
    fails_cleanly(&mkedsl(&args), &["--json", "is a folder"]);
    let r = exec_common::recipe(dir.path(), "ft.edit", exec_common::FT_L);
    let out_dir = dir.path().join("out");
    let out = mkedsl(&[
        "run",
        s(&r),
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--out",
        s(&out_dir),
        "--json",
        s(&out_dir),
    ]);
    fails_cleanly(&out, &["--json and --out both name"]);
}

#[test]
fn a_report_that_cannot_be_written_keeps_the_results_and_devices_are_not_replaced() {
    let full = Path::new("/dev/full");
    if !full.exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = inputs(dir.path());
    let mut args = eval_args(&model, &data);
    args.extend(["--json", "/dev/full"]);
    let out = mkedsl(&args);
    let stderr = fails_cleanly(&out, &["/dev/full", "saved to"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("pre-edit"),
        "the table comes first: {stdout}\n{stderr}"
    );
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(full)
        .unwrap()
        .file_type()
        .is_char_device());
    // The kept report is the full report.
    let kept = stderr
        .split('`')
        .find(|p| p.contains("mkedsl-report-"))
        .expect("kept path named");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(kept).unwrap()).unwrap();
    assert!(json.get("cases").is_some(), "{json}");
    std::fs::remove_file(kept).unwrap();
}

#[cfg(unix)]
#[test]
fn a_link_is_written_through_and_stale_temporaries_are_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = inputs(dir.path());
    let target = dir.path().join("reports").join("real.json");
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    std::fs::write(&target, "old").unwrap();
    let link = dir.path().join("link.json");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    // A temporary a killed run (a process id no system hands out) left beside the target.
    let stale = target
        .parent()
        .unwrap()
        .join(".mkedsl-tmp-4000000000-abc123");
    std::fs::write(&stale, "half").unwrap();
    let mut args = eval_args(&model, &data);
    args.extend(["--json", s(&link)]);
    let out = mkedsl(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
    assert!(json.get("cases").is_some());
    assert!(!stale.exists(), "the stale temporary was removed");
}

#[test]
fn artefacts_are_replaced_as_one_folder_and_a_failed_write_keeps_the_scores() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = inputs(dir.path());
    let r = exec_common::recipe(dir.path(), "lora.edit", exec_common::LORA);
    let out_dir = dir.path().join("out");
    let args = [
        "run",
        s(&r),
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--limit",
        "1",
        "--max-new-tokens",
        "2",
        "--no-cache",
        "--out",
        s(&out_dir),
    ];
    // A folder a killed run was staging.
    std::fs::create_dir_all(out_dir.join(".mkedsl-tmp-4000000000-xyz")).unwrap();
    for _ in 0..2 {
        let out = mkedsl(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let names: Vec<String> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["case-00000"], "only the artefact remains");
        let mut files: Vec<String> = std::fs::read_dir(out_dir.join("case-00000"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        assert_eq!(files, ["edit.json", "edit.safetensors"]);
    }
    // The case's folder cannot be written (a file is in its place): the run still scores every
    // case, prints the table, then fails saying what was not written.
    std::fs::remove_dir_all(out_dir.join("case-00000")).unwrap();
    std::fs::write(out_dir.join("case-00000"), "in the way").unwrap();
    let out = mkedsl(&args);
    let stderr = fails_cleanly(&out, &["case-00000", "--out"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("post-edit"), "{stdout}\n{stderr}");
}
