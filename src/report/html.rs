//! The report page: one HTML document with its style sheet and every plot inline, no script and
//! no reference to anything outside the file.
//!
//! Sections appear only when an input holds something for them: inputs and their provenance
//! (always), edit results (run and compare), sequential editing, sweeps, benchmarks, and the
//! per-case rows.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::plots::{self, Bars, Line};
use super::read::{BenchRow, Content, RunResult, Score, Scores, Sweep, METRICS};

/// One input file, read.
#[derive(Debug, Clone)]
pub struct Input {
    /// The path as given.
    pub name: String,
    pub sha256: String,
    pub bytes: usize,
    pub content: Content,
    /// Provenance the command that wrote the file knew but the file does not hold (for
    /// `--report`: model, data and device of a bench).
    pub extra: Vec<(String, String)>,
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}h3{font-size:1.05em}
table{border-collapse:collapse;margin:1em 0;font-size:.85em}.wide{overflow-x:auto;max-width:100%}dd{overflow-wrap:anywhere}th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}th{background:#f4f4f4}
figure.plot{margin:1.2em 0;border:1px solid #eee;padding:.5em;display:inline-block}figcaption{font-size:.9em;color:#444;max-width:760px}
.legend span{display:inline-block;margin-right:1.2em;font-size:.9em}.legend i{display:inline-block;width:.9em;height:.9em;margin-right:.35em;vertical-align:-.1em}
.meta,.note{color:#555;font-size:.9em}code{background:#f4f4f4;padding:0 .2em}dl{margin:0}dt{font-weight:600;display:inline}dd{display:inline;margin:0 .8em 0 .2em}";

/// The whole page.
pub fn page(inputs: &[Input], version: &str) -> Result<String, String> {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>mkedsl report</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n<h1>mkedsl report</h1>\n<p class=\"meta\">{} input file(s) · made by mkedsl {} · scores in percent</p>\n",
        inputs.len(),
        esc(version)
    );
    provenance(&mut out, inputs);
    let runs: Vec<&RunResult> = inputs
        .iter()
        .flat_map(|i| match &i.content {
            Content::Runs(r) => r.iter().collect(),
            _ => Vec::new(),
        })
        .collect();
    if !runs.is_empty() {
        results(&mut out, &runs)?;
        sequential(&mut out, &runs)?;
    }
    for (n, input) in inputs.iter().enumerate() {
        if let Content::Sweep(s) = &input.content {
            sweep(&mut out, n, input, s)?;
        }
    }
    for (n, input) in inputs.iter().enumerate() {
        if let Content::Bench(rows) = &input.content {
            bench(&mut out, n, input, rows)?;
        }
    }
    if runs.iter().any(|r| !r.per_case.is_empty()) {
        cases(&mut out, &runs, inputs);
    }
    out.push_str("</body>\n</html>\n");
    // Wide tables scroll inside their box instead of widening the page.
    Ok(out
        .replace("<table>", "<div class=\"wide\"><table>")
        .replace("</table>", "</table></div>"))
}

/// HTML-escapes text.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn pct(v: f64) -> String {
    format!("{:.1}", 100.0 * v)
}

/// A score cell: the mean in percent, and its interval when there is one.
fn score_cell(s: Option<Score>) -> String {
    match s {
        None => "<td class=\"n\">–</td>".into(),
        Some(Score { mean, ci: None }) => format!("<td class=\"n\">{}</td>", pct(mean)),
        Some(Score {
            mean,
            ci: Some((lo, hi)),
        }) => {
            format!(
                "<td class=\"n\">{} <small>[{}, {}]</small></td>",
                pct(mean),
                pct(lo),
                pct(hi)
            )
        }
    }
}

fn secs(v: Option<f64>) -> String {
    v.map_or("<td class=\"n\">–</td>".into(), |s| {
        format!("<td class=\"n\">{s:.3}</td>")
    })
}

/// One plot: the SVG, its caption and a legend of its series.
fn figure(out: &mut String, svg: &str, caption: &str, legend: &[String]) {
    out.push_str("<figure class=\"plot\">\n");
    out.push_str(svg.trim());
    out.push('\n');
    if !legend.is_empty() {
        out.push_str("<div class=\"legend\">");
        for (i, name) in legend.iter().enumerate() {
            let (r, g, b) = plots::PALETTE[i % plots::PALETTE.len()];
            let _ = write!(
                out,
                "<span><i style=\"background:rgb({r},{g},{b})\"></i>{}</span>",
                esc(name)
            );
        }
        out.push_str("</div>\n");
    }
    let _ = writeln!(out, "<figcaption>{caption}</figcaption>\n</figure>");
}

fn input_ref(n: usize) -> String {
    format!("<a href=\"#input-{}\">#{}</a>", n + 1, n + 1)
}

// ---- sections --------------------------------------------------------------------------------

fn provenance(out: &mut String, inputs: &[Input]) {
    out.push_str("<h2 id=\"inputs\">Inputs</h2>\n<table>\n<tr><th>#</th><th>file</th><th>kind</th><th>sha256</th><th>bytes</th><th>provenance</th></tr>\n");
    for (n, input) in inputs.iter().enumerate() {
        let mut fields: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut add = |k: &str, v: &str| {
            if !order.iter().any(|o| o == k) {
                order.push(k.to_string());
            }
            let values = fields.entry(k.to_string()).or_default();
            if !values.iter().any(|x| x == v) {
                values.push(v.to_string());
            }
        };
        match &input.content {
            Content::Runs(runs) => {
                for r in runs {
                    for (k, v) in &r.provenance {
                        add(k, v);
                    }
                }
            }
            Content::Bench(rows) => {
                for r in rows {
                    add("recipe", &r.recipe);
                    if let Some(c) = r.cases {
                        add("cases", &c.to_string());
                    }
                }
            }
            Content::Sweep(s) => {
                add("recipe", &s.recipe);
                add("parameters", &s.parameters.join(", "));
                add("points", &s.points.len().to_string());
            }
        }
        for (k, v) in &input.extra {
            add(k, v);
        }
        let _ = write!(
            out,
            "<tr id=\"input-{}\"><td>{}</td><td><code>{}</code></td><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td><td><dl>",
            n + 1,
            n + 1,
            esc(&input.name),
            input.content.kind(),
            esc(input.sha256.get(..16).unwrap_or(&input.sha256)),
            input.bytes
        );
        for k in &order {
            let _ = write!(
                out,
                "<dt>{}</dt><dd>{}</dd>",
                esc(k),
                esc(&fields[k].join(", "))
            );
        }
        if !order.iter().any(|k| k == "version") {
            out.push_str("<dt>version</dt><dd>not recorded</dd>");
        }
        out.push_str("</dl></td></tr>\n");
    }
    out.push_str("</table>\n");
}

/// The results table (every run and compare cell) and, per dataset, grouped bars.
fn results(out: &mut String, runs: &[&RunResult]) -> Result<(), String> {
    out.push_str("<h2 id=\"results\">Edit results</h2>\n<p class=\"note\">Token-level scores (teacher-forced accuracy; locality: agreement with the unedited model) and exact match of the greedy generation, in percent; <small>[lo, hi]</small> is a confidence interval where the input has one. EasyEdit loc: agreement at every position.</p>\n<table>\n<tr><th rowspan=\"2\">data</th><th rowspan=\"2\">recipe</th><th rowspan=\"2\">input</th><th rowspan=\"2\">cases</th><th rowspan=\"2\">mode</th><th colspan=\"5\">token</th><th colspan=\"5\">exact match</th><th colspan=\"2\">EasyEdit loc</th></tr>\n<tr>");
    for _ in 0..2 {
        for (_, title) in METRICS {
            let _ = write!(out, "<th>{title}</th>");
        }
    }
    out.push_str("<th>T-Loc</th><th>M-Loc</th></tr>\n");
    let datasets = distinct(runs.iter().map(|r| r.data.clone()));
    for data in &datasets {
        let here: Vec<&&RunResult> = runs.iter().filter(|r| &r.data == data).collect();
        if let Some(first) = here
            .iter()
            .find(|r| r.pre_token.iter().any(Option::is_some))
        {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>pre-edit</td><td>{}</td><td></td><td></td>",
                esc(data),
                input_ref(first.input)
            );
            for s in first.pre_token.iter().chain(first.pre_exact.iter()) {
                out.push_str(&score_cell(*s));
            }
            out.push_str("<td class=\"n\">–</td><td class=\"n\">–</td></tr>\n");
        }
        for r in &here {
            let mode = match (&r.mode, r.k) {
                (Some(m), Some(k)) => format!("{m}, K = {k}"),
                (Some(m), None) => m.clone(),
                _ => String::new(),
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}</td>",
                esc(data),
                esc(&r.recipe),
                input_ref(r.input),
                r.cases.map_or(String::new(), |c| c.to_string()),
                esc(&mode)
            );
            for s in r.token.iter().chain(r.exact.iter()) {
                out.push_str(&score_cell(*s));
            }
            out.push_str(&score_cell(r.easyedit[3]));
            out.push_str(&score_cell(r.easyedit[4]));
            out.push_str("</tr>\n");
        }
    }
    out.push_str("</table>\n");
    let categories: Vec<&str> = METRICS.iter().map(|(_, t)| *t).collect();
    for data in &datasets {
        let here: Vec<&&RunResult> = runs.iter().filter(|r| &r.data == data).collect();
        let mut series = Vec::new();
        if let Some(first) = here
            .iter()
            .find(|r| r.pre_token.iter().any(Option::is_some))
        {
            series.push(Bars {
                name: "pre-edit".into(),
                values: first.pre_token.to_vec(),
            });
        }
        let labels = run_labels(&here);
        for (r, name) in here.iter().zip(labels) {
            series.push(Bars {
                name,
                values: r.token.to_vec(),
            });
        }
        let svg = plots::grouped_bars(&categories, &series, "score (%)")?;
        let legend: Vec<String> = series.iter().map(|s| s.name.clone()).collect();
        figure(
            out,
            &svg,
            &format!("Token-level scores per metric and method on <code>{}</code> (whiskers: confidence intervals where the input has them).", esc(data)),
            &legend,
        );
    }
    Ok(())
}

/// Names for runs on one dataset; a recipe that appears twice gets its input's number.
fn run_labels(runs: &[&&RunResult]) -> Vec<String> {
    runs.iter()
        .map(|r| {
            let twice = runs.iter().filter(|o| o.recipe == r.recipe).count() > 1;
            if twice {
                let k = r.k.map_or(String::new(), |k| format!(", K = {k}"));
                format!("{} (#{}{k})", r.recipe, r.input + 1)
            } else {
                r.recipe.clone()
            }
        })
        .collect()
}

/// Sequential runs: each score by position in the edit sequence, and over K when several runs
/// of one recipe on one dataset differ in K.
fn sequential(out: &mut String, runs: &[&RunResult]) -> Result<(), String> {
    let seq: Vec<&&RunResult> = runs
        .iter()
        .filter(|r| r.mode.as_deref() == Some("sequential"))
        .collect();
    if seq.is_empty() {
        return Ok(());
    }
    out.push_str("<h2 id=\"sequential\">Sequential editing</h2>\n<p class=\"note\">In sequential mode K edits accumulate in one model and all K are scored after the last; position 1 was edited first, so K − 1 edits came after it.</p>\n");
    let names: Vec<String> = METRICS.iter().map(|(_, t)| t.to_string()).collect();
    for r in &seq {
        let mut by_position: BTreeMap<usize, Vec<[Option<f64>; 5]>> = BTreeMap::new();
        let mut position = 0;
        let mut group = None;
        for case in &r.per_case {
            if case.group != group {
                group = case.group;
                position = 0;
            }
            position += 1;
            by_position.entry(position).or_default().push(case.token);
        }
        if by_position.len() < 2 {
            continue;
        }
        let lines: Vec<Line> = (0..5)
            .map(|m| Line {
                name: names[m].clone(),
                points: by_position
                    .iter()
                    .filter_map(|(p, rows)| {
                        let vals: Vec<f64> = rows.iter().filter_map(|row| row[m]).collect();
                        (!vals.is_empty()).then(|| (*p as f64, mean(&vals), None))
                    })
                    .collect(),
            })
            .collect();
        let svg = plots::lines(
            &lines,
            "position in the edit sequence",
            "score (%)",
            false,
            true,
        )?;
        figure(
            out,
            &svg,
            &format!(
                "{} on <code>{}</code>, K = {} (input {}): mean score of the cases at each position of their sequence, over {} sequence(s).",
                esc(&r.recipe),
                esc(&r.data),
                r.k.map_or("?".into(), |k| k.to_string()),
                input_ref(r.input),
                by_position.values().next().map_or(0, Vec::len)
            ),
            &names,
        );
    }
    let keys = distinct(seq.iter().map(|r| (r.recipe.clone(), r.data.clone())));
    for (recipe, data) in keys {
        let mut over_k: Vec<(u64, Scores)> = seq
            .iter()
            .filter(|r| r.recipe == recipe && r.data == data)
            .filter_map(|r| Some((r.k?, r.token)))
            .collect();
        over_k.sort_by_key(|(k, _)| *k);
        over_k.dedup_by_key(|(k, _)| *k);
        if over_k.len() < 2 {
            continue;
        }
        let lines: Vec<Line> = (0..5)
            .map(|m| Line {
                name: names[m].clone(),
                points: over_k
                    .iter()
                    .filter_map(|(k, s)| s[m].map(|s| (*k as f64, s.mean, s.ci)))
                    .collect(),
            })
            .collect();
        let svg = plots::lines(&lines, "edits per sequence (K)", "score (%)", false, true)?;
        figure(
            out,
            &svg,
            &format!(
                "{} on <code>{}</code>: scores over the sequence length K.",
                esc(&recipe),
                esc(&data)
            ),
            &names,
        );
    }
    Ok(())
}

fn sweep(out: &mut String, n: usize, input: &Input, s: &Sweep) -> Result<(), String> {
    let _ = write!(
        out,
        "<h2 id=\"sweep-{}\">Sweep: {} (input {})</h2>\n<table>\n<tr>",
        n + 1,
        esc(&s.recipe),
        input_ref(n)
    );
    for p in &s.parameters {
        let _ = write!(out, "<th>{}</th>", esc(p));
    }
    out.push_str("<th>seed</th>");
    for (_, t) in METRICS {
        let _ = write!(out, "<th>{t}</th>");
    }
    out.push_str("</tr>\n");
    for point in &s.points {
        out.push_str("<tr>");
        for p in &s.parameters {
            let v = point
                .set
                .iter()
                .find(|(k, _)| k == p)
                .map_or("–".into(), |(_, v)| value_text(v));
            let _ = write!(out, "<td class=\"n\">{}</td>", esc(&v));
        }
        let _ = write!(
            out,
            "<td class=\"n\">{}</td>",
            point.seed.map_or("–".into(), |s| s.to_string())
        );
        for sc in point.token {
            out.push_str(&score_cell(sc));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
    let names: Vec<String> = METRICS.iter().map(|(_, t)| t.to_string()).collect();
    for p in &s.parameters {
        // Every point's value of `p`, numeric ones only; marginal means over the rest.
        let mut by_value: BTreeMap<String, (f64, Vec<Scores>)> = BTreeMap::new();
        for point in &s.points {
            if let Some(x) = point
                .set
                .iter()
                .find(|(k, _)| k == p)
                .and_then(|(_, v)| v.as_f64())
            {
                by_value
                    .entry(format!("{x:e}"))
                    .or_insert((x, Vec::new()))
                    .1
                    .push(point.token);
            }
        }
        if by_value.len() < 2 {
            continue;
        }
        let mut values: Vec<(f64, Vec<Scores>)> = by_value.into_values().collect();
        values.sort_by(|a, b| a.0.total_cmp(&b.0));
        let log_x = values[0].0 > 0.0 && values[values.len() - 1].0 / values[0].0 >= 30.0;
        let lines: Vec<Line> = (0..5)
            .map(|m| Line {
                name: names[m].clone(),
                points: values
                    .iter()
                    .filter_map(|(x, scores)| {
                        let vals: Vec<f64> =
                            scores.iter().filter_map(|s| s[m].map(|s| s.mean)).collect();
                        if vals.is_empty() {
                            return None;
                        }
                        let spread = (vals.len() > 1).then(|| bounds(&vals));
                        let one_ci = if vals.len() == 1 {
                            scores.iter().find_map(|s| s[m]?.ci)
                        } else {
                            None
                        };
                        Some((*x, mean(&vals), spread.or(one_ci)))
                    })
                    .collect(),
            })
            .collect();
        let svg = plots::lines(
            &lines,
            &format!("{p}{}", if log_x { " (log scale)" } else { "" }),
            "score (%)",
            log_x,
            true,
        )?;
        figure(
            out,
            &svg,
            &format!(
                "{}: scores over <code>{}</code>, mean over the sweep's other settings and seeds (whiskers: their range, or the confidence interval of a single point). Input <code>{}</code>.",
                esc(&s.recipe),
                esc(p),
                esc(&input.name)
            ),
            &names,
        );
    }
    Ok(())
}

fn bench(out: &mut String, n: usize, input: &Input, rows: &[BenchRow]) -> Result<(), String> {
    let _ = write!(
        out,
        "<h2 id=\"bench-{}\">Benchmark (input {})</h2>\n<table>\n<tr><th>recipe</th><th>cases</th><th>prepare<br>s once</th><th>spaces<br>s/edit</th><th>optimise<br>s/edit</th><th>evaluate<br>s/case</th><th>edit<br>s/edit</th><th>total<br>s</th><th>peak<br>MiB</th><th>Rel<br>%</th></tr>\n",
        n + 1,
        input_ref(n)
    );
    for r in rows {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td class=\"n\">{}</td>{}{}{}{}<td class=\"n\">{:.3}</td>{}<td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&r.recipe),
            r.cases.map_or("–".into(), |c| c.to_string()),
            secs(r.prepare_s),
            secs(r.spaces_s),
            secs(r.optimise_s),
            secs(r.evaluate_s),
            r.edit_s(),
            secs(r.total_s),
            r.peak_mib.map_or("n/a".into(), |m| format!("{m:.0}")),
            r.rel.map_or("–".into(), pct)
        );
    }
    out.push_str("</table>\n");
    let labels: Vec<String> = rows.iter().map(|r| short_recipe(&r.recipe)).collect();
    let categories: Vec<&str> = labels.iter().map(String::as_str).collect();
    let layers = vec![
        (
            "prepare ÷ cases".to_string(),
            rows.iter()
                .map(|r| r.prepare_s.unwrap_or(0.0) / r.cases.unwrap_or(1).max(1) as f64)
                .collect(),
        ),
        (
            "spaces".to_string(),
            rows.iter().map(|r| r.spaces_s.unwrap_or(0.0)).collect(),
        ),
        (
            "optimise".to_string(),
            rows.iter().map(|r| r.optimise_s.unwrap_or(0.0)).collect(),
        ),
        (
            "evaluate".to_string(),
            rows.iter().map(|r| r.evaluate_s.unwrap_or(0.0)).collect(),
        ),
    ];
    let svg = plots::stacked_bars(&categories, &layers, "seconds per edit")?;
    let legend: Vec<String> = layers.iter().map(|(n, _)| n.clone()).collect();
    figure(
        out,
        &svg,
        &format!("Seconds per edit by phase: prepare amortised over the cases, knowledge spaces, optimisation, evaluation (input <code>{}</code>).", esc(&input.name)),
        &legend,
    );
    if rows.iter().any(|r| r.peak_mib.is_some()) {
        let layers = vec![(
            "peak resident memory".to_string(),
            rows.iter().map(|r| r.peak_mib.unwrap_or(0.0)).collect(),
        )];
        let svg = plots::stacked_bars(&categories, &layers, "MiB")?;
        figure(
            out,
            &svg,
            "Peak resident memory of the process during each recipe (VmHWM, reset between recipes; a missing bar: not reported).",
            &["peak MiB".to_string()],
        );
    }
    Ok(())
}

fn cases(out: &mut String, runs: &[&RunResult], inputs: &[Input]) {
    out.push_str("<h2 id=\"cases\">Per-case scores</h2>\n");
    for r in runs.iter().filter(|r| !r.per_case.is_empty()) {
        let _ = write!(
            out,
            "<details><summary>{} on <code>{}</code> — {} cases (input <code>{}</code>)</summary>\n<table>\n<tr><th>index</th><th>group</th><th>src</th><th>alt</th>",
            esc(&r.recipe),
            esc(&r.data),
            r.per_case.len(),
            esc(&inputs[r.input].name)
        );
        for (_, t) in METRICS {
            let _ = write!(out, "<th>{t}</th>");
        }
        out.push_str("</tr>\n");
        for c in &r.per_case {
            let _ = write!(
                out,
                "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td>",
                c.index.map_or("–".into(), |i| i.to_string()),
                c.group.map_or("–".into(), |g| g.to_string()),
                esc(&c.src),
                esc(&c.alt)
            );
            for v in c.token {
                out.push_str(&v.map_or("<td class=\"n\">–</td>".into(), |v| {
                    format!("<td class=\"n\">{}</td>", pct(v))
                }));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n</details>\n");
    }
}

// ---- helpers ---------------------------------------------------------------------------------

/// `Name (recipes/x.edit)` → `Name`, for axis labels.
fn short_recipe(label: &str) -> String {
    label.split(" (").next().unwrap_or(label).to_string()
}

fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn distinct<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len().max(1) as f64
}

fn bounds(xs: &[f64]) -> (f64, f64) {
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo, hi)
}
