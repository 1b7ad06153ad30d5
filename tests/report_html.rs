//! `mkedsl report`: the HTML page's structure for each kind of results file (one SVG per plot,
//! every input named with its digest, nothing fetched from anywhere), and `--report` end to end.
//!
//! The inputs under tests/fixtures/report/ were written by this mkedsl on the embedded model
//! (`tests/fixtures/report/make.sh` rewrites them).

mod common;

use common::mkedsl;

const FIXTURES: &str = "tests/fixtures/report";

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

/// The page of `inputs`, through the command line.
fn page(inputs: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("report.html");
    let mut args = vec!["report".to_string()];
    args.extend(inputs.iter().map(|i| fixture(i)));
    args.extend(["--out".into(), out.display().to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, stdout, err) = mkedsl(&args);
    assert_eq!(code, 0, "{stdout}{err}");
    std::fs::read_to_string(&out).expect("the report was written")
}

fn sha256(path: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(std::fs::read(path).expect("read"));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The structure every page has, and its number of plots.
fn check_structure(html: &str, inputs: &[&str], plots: usize) {
    assert!(html.starts_with("<!DOCTYPE html>"), "not an HTML document");
    assert!(html.trim_end().ends_with("</html>"));
    let figures: Vec<&str> = html.split("<figure class=\"plot\">").skip(1).collect();
    assert_eq!(figures.len(), plots, "plots for {inputs:?}");
    assert_eq!(html.matches("<svg").count(), plots, "one SVG per plot");
    for f in &figures {
        let body = f.split("</figure>").next().unwrap();
        assert_eq!(body.matches("<svg").count(), 1, "one SVG in each figure");
        assert_eq!(body.matches("</svg>").count(), 1);
        assert!(
            body.contains("<rect") || body.contains("<polyline"),
            "an empty plot"
        );
        assert!(body.contains("<figcaption>"), "a plot without caption");
    }
    for input in inputs {
        let path = fixture(input);
        assert!(
            html.contains(&format!("<code>{path}</code>")),
            "{path} is not named"
        );
        assert!(html.contains(&sha256(&path)[..16]), "{path}: no digest");
    }
    for outside in ["://", "<script", "<link", " src=", "url(", "@import"] {
        assert!(
            !html.contains(outside),
            "the page refers outside itself: `{outside}`"
        );
    }
}

#[test]
fn a_run_gives_its_table_provenance_and_one_bar_chart() {
    let html = page(&["run.json"]);
    check_structure(&html, &["run.json"], 1);
    for field in [
        "<dt>model</dt>",
        "<dt>data</dt>",
        "<dt>seed</dt>",
        "<dt>device</dt>",
        "<dt>recipe</dt>",
        "<dt>mode</dt>",
    ] {
        assert!(html.contains(field), "provenance lacks {field}");
    }
    assert!(html.contains("<td>pre-edit</td>"), "no pre-edit row");
    assert!(html.contains("Per-case scores"));
}

#[test]
fn a_sequential_run_adds_scores_by_position_in_the_sequence() {
    let html = page(&["sequential.json"]);
    check_structure(&html, &["sequential.json"], 2);
    assert!(html.contains("Sequential editing"));
    assert!(html.contains("position in the edit sequence"));
}

#[test]
fn a_comparison_gives_grouped_bars_per_dataset() {
    let html = page(&["compare.json"]);
    check_structure(&html, &["compare.json"], 2);
    assert!(html.contains("evqa.json") && html.contains("eic.json"));
    assert!(html.contains("FT-L") && html.contains("LoRA"));
}

#[test]
fn a_bench_gives_time_per_phase_and_memory() {
    let html = page(&["bench.json"]);
    check_structure(&html, &["bench.json"], 2);
    assert!(html.contains("seconds per edit"));
}

#[test]
fn a_sweep_gives_a_line_per_metric_over_the_parameter() {
    let html = page(&["sweep.json"]);
    check_structure(&html, &["sweep.json"], 1);
    assert!(html.contains("Sweep: FT-L"));
    assert!(html.contains("lr (log scale)"));
}

#[test]
fn every_kind_at_once() {
    let all = [
        "run.json",
        "sequential.json",
        "compare.json",
        "bench.json",
        "sweep.json",
    ];
    let html = page(&all);
    // bars per dataset (evqa, eic) + sequence positions + sweep + bench time and memory
    check_structure(&html, &all, 2 + 1 + 1 + 2);
}

#[test]
fn intervals_are_shown_where_the_input_has_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut run: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("run.json")).unwrap()).unwrap();
    run["metrics"]["rel"] = serde_json::json!({"mean": 0.5, "lo": 0.25, "hi": 0.75});
    let input = dir.path().join("ci.json");
    std::fs::write(&input, serde_json::to_string(&run).unwrap()).unwrap();
    let out = dir.path().join("r.html");
    let (code, _, err) = mkedsl(&[
        "report",
        &input.display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(code, 0, "{err}");
    let html = std::fs::read_to_string(out).unwrap();
    assert!(
        html.contains("50.0 <small>[25.0, 75.0]</small>"),
        "no interval in the table"
    );
}

#[test]
fn inputs_that_are_not_results_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("r.html");
    let out = out.display().to_string();
    let (code, _, err) = mkedsl(&["report", "Cargo.toml", "--out", &out]);
    assert_ne!(code, 0);
    assert!(
        err.contains("is not a results file") && err.contains("not JSON"),
        "{err}"
    );
    let (code, _, err) = mkedsl(&["report", "examples/model/config.json", "--out", &out]);
    assert_ne!(code, 0);
    assert!(
        err.contains("is not a results file") && err.contains("(with `points`)"),
        "{err}"
    );
    let (code, _, err) = mkedsl(&["report", "no/such.json", "--out", &out]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot read"), "{err}");
    assert!(
        !std::path::Path::new(&out).exists(),
        "a failed report wrote a page"
    );
}

#[test]
fn run_report_flag_writes_the_page_of_the_run_it_just_made() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("run.json").display().to_string();
    let html = dir.path().join("run.html").display().to_string();
    let (code, out, err) = mkedsl(&[
        "run",
        "recipes/ft_l.edit",
        "--limit",
        "2",
        "--no-cache",
        "--json",
        &json,
        "--report",
        &html,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let page = std::fs::read_to_string(&html).expect("the page");
    assert_eq!(page.matches("<svg").count(), 1);
    assert!(
        page.contains(&format!("<code>{json}</code>")),
        "the page does not name the JSON"
    );
    assert!(
        page.contains(&sha256(&json)[..16]),
        "the digest is not that of the JSON written"
    );
    assert!(
        page.contains("<dt>command</dt>") && page.contains("--report"),
        "no command line"
    );
    assert!(page.contains("FT-L"));
}
