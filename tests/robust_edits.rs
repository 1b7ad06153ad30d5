//! What an edit does is watched, not only its loss (issue 12): a diverging optimisation is
//! stopped naming the step and what to lower; a damaged cache entry is reported by path and
//! recomputed; a plan that cannot fit memory is refused up front with its recipe line.

mod exec_common;
mod robust_common;

use exec_common::*;
use mkedsl::exec::run;

fn render(e: &miette::Report) -> String {
    let mut out = String::new();
    miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor())
        .with_width(200)
        .render_report(&mut out, e.as_ref())
        .unwrap();
    out
}

#[test]
fn a_divergence_the_loss_does_not_show_is_stopped_naming_the_step() {
    for optimiser in ["sgd(lr: 1e4)", "sgd(lr: 1e9)", "adam(lr: 1e9)"] {
        let dir = tempfile::tempdir().unwrap();
        let model = embedded_model(dir.path());
        let data = dataset(dir.path(), 1);
        let text = FT_L.replace("adam(lr: 0.01)", optimiser);
        let r = recipe(dir.path(), "ft.edit", &text);
        let err = run(&request(dir.path(), r, model, data, 1)).expect_err(optimiser);
        let shown = render(&err);
        assert!(shown.contains("ft.edit:5"), "{optimiser}: {shown}");
        assert!(
            shown.contains("the size of the weight it edits")
                || shown.contains("not finite")
                || shown.contains("is inf")
                || shown.contains("is NaN"),
            "{optimiser}: {shown}"
        );
        assert!(
            shown.contains("lower the learning rate"),
            "{optimiser}: {shown}"
        );
    }
}

#[test]
fn a_working_edit_is_not_taken_for_a_divergence() {
    let dir = tempfile::tempdir().unwrap();
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), 1);
    for (name, text) in [("ft.edit", FT_L), ("lora.edit", LORA)] {
        let r = recipe(dir.path(), name, text);
        run(&request(dir.path(), r, model.clone(), data.clone(), 1)).expect(name);
    }
}

#[test]
fn a_cache_entry_with_changed_content_is_reported_by_path_and_recomputed() {
    let dir = tempfile::tempdir().unwrap();
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), 1);
    let r = recipe(dir.path(), "lora_null.edit", LORA_NULL);
    let req = request(dir.path(), r, model, data, 1);
    let first = run(&req).expect("first run");
    // Scale every float of every entry by 1000: same format, wrong content.
    let mut damaged = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("cache")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "safetensors") {
            let bytes = std::fs::read(&path).unwrap();
            let (n, _) = robust_common::header(&bytes);
            let mut out = bytes[..8 + n].to_vec();
            for chunk in bytes[8 + n..].chunks(8) {
                match chunk.try_into() {
                    Ok(b) => out.extend((f64::from_le_bytes(b) * 1000.0).to_le_bytes()),
                    Err(_) => out.extend(chunk),
                }
            }
            std::fs::write(&path, out).unwrap();
            damaged.push(path);
        }
    }
    assert!(!damaged.is_empty());
    let second = run(&req).expect("second run");
    for path in &damaged {
        assert!(
            second
                .notes
                .iter()
                .any(|n| n.contains(&path.display().to_string()) && n.contains("recomputing")),
            "{:?}",
            second.notes
        );
    }
    assert_eq!(first.report.metrics, second.report.metrics);
    // The recomputed entries are whole again: a third run reuses them without a word.
    let third = run(&req).expect("third run");
    assert!(
        third.notes.iter().all(|n| !n.contains("damaged")),
        "{:?}",
        third.notes
    );
    assert!(third.notes.iter().any(|n| n.contains("reusing cached")));
}

#[test]
fn a_plan_that_cannot_fit_memory_is_refused_with_its_line_and_estimate() {
    let dir = tempfile::tempdir().unwrap();
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), 1);
    let text = ELORA.replace("count: 12", "count: 60000");
    let r = recipe(dir.path(), "big.edit", &text);
    let mut req = request(dir.path(), r.clone(), model.clone(), data.clone(), 1);
    req.max_memory = Some(64 << 20);
    let started = std::time::Instant::now();
    let err = run(&req).expect_err("refused");
    let shown = render(&err);
    assert!(shown.contains("big.edit:9"), "{shown}");
    assert!(
        shown.contains("perturb") && shown.contains("60000 variants"),
        "{shown}"
    );
    assert!(
        shown.contains("64.0 MiB is available") && shown.contains("--max-memory"),
        "{shown}"
    );
    assert!(
        started.elapsed().as_secs() < 10,
        "refused before loading anything"
    );
    // `plan --model` prints the same estimate.
    let out = robust_common::mkedsl(&[
        "plan",
        robust_common::s(&r),
        "--model",
        robust_common::s(&model),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("estimate (sequences of"), "{stdout}");
    assert!(
        stdout.contains("peak step") && stdout.contains("`perturb` (60000 variants"),
        "{stdout}"
    );
    assert!(
        stdout.contains("forward/backward passes per edit"),
        "{stdout}"
    );
}
