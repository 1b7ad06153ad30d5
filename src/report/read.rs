//! Reading results files, tolerantly: the JSON that `run --json`, `compare --json`,
//! `bench --json` and a sweep write, turned into the few numbers a report shows.
//!
//! Every field is optional here: a file from an older or newer mkedsl, with fields added or
//! missing, still gives a report of what it holds. A score may be a plain number or carry a
//! confidence interval, spelled `{"mean": m, "lo": a, "hi": b}` or `{"mean": m, "ci": [a, b]}`;
//! an interval may also sit beside the scores, as `"ci": {"metrics": {"rel": [a, b], …}}`.

use serde_json::Value;

/// The five scores of the papers' tables: JSON key and column title.
pub const METRICS: [(&str, &str); 5] = [
    ("rel", "Rel"),
    ("t_gen", "T-Gen"),
    ("m_gen", "M-Gen"),
    ("t_loc", "T-Loc"),
    ("m_loc", "M-Loc"),
];

/// A score (a fraction in [0, 1]) and its confidence interval when the input has one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub mean: f64,
    pub ci: Option<(f64, f64)>,
}

/// One score per entry of [`METRICS`]; `None` where the input has none.
pub type Scores = [Option<Score>; 5];

/// One recipe's result on one dataset: a `run` report, or one cell of a `compare`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// Index of the input file it came from.
    pub input: usize,
    pub recipe: String,
    pub recipe_file: Option<String>,
    pub data: String,
    pub mode: Option<String>,
    pub k: Option<u64>,
    pub cases: Option<u64>,
    pub token: Scores,
    pub exact: Scores,
    /// EasyEdit's all-positions locality (T-Loc and M-Loc only).
    pub easyedit: Scores,
    /// The unedited model (Rel, T-Gen, M-Gen only).
    pub pre_token: Scores,
    pub pre_exact: Scores,
    pub per_case: Vec<CaseRow>,
    pub timing: Vec<(String, f64)>,
    /// What the report says about where it came from: (field, value).
    pub provenance: Vec<(String, String)>,
}

/// One edit case's token-level scores.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseRow {
    pub index: Option<u64>,
    pub group: Option<u64>,
    pub src: String,
    pub alt: String,
    pub token: [Option<f64>; 5],
}

/// One row of `bench --json`.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRow {
    pub recipe: String,
    pub cases: Option<u64>,
    pub prepare_s: Option<f64>,
    pub spaces_s: Option<f64>,
    pub optimise_s: Option<f64>,
    pub evaluate_s: Option<f64>,
    pub total_s: Option<f64>,
    pub peak_mib: Option<f64>,
    pub rel: Option<f64>,
}

impl BenchRow {
    /// Seconds per edit: spaces + optimisation + prepare amortised over the cases (as `bench`).
    pub fn edit_s(&self) -> f64 {
        self.spaces_s.unwrap_or(0.0)
            + self.optimise_s.unwrap_or(0.0)
            + self.prepare_s.unwrap_or(0.0) / self.cases.unwrap_or(1).max(1) as f64
    }
}

/// One point of a sweep: the parameter values it set and its scores.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepPoint {
    pub set: Vec<(String, Value)>,
    pub seed: Option<u64>,
    pub token: Scores,
}

/// A sweep file (layout in the README, section "Reports").
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub recipe: String,
    pub parameters: Vec<String>,
    pub points: Vec<SweepPoint>,
}

/// What one input holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    /// `run --json` (one result) or `compare --json` (one per cell).
    Runs(Vec<RunResult>),
    Bench(Vec<BenchRow>),
    Sweep(Sweep),
}

impl Content {
    /// What kind of file this was, in words.
    pub fn kind(&self) -> &'static str {
        match self {
            Content::Runs(r) if r.len() == 1 => "run",
            Content::Runs(_) => "compare",
            Content::Bench(_) => "bench",
            Content::Sweep(_) => "sweep",
        }
    }
}

/// Reads one results file's JSON; `input` is its index among the report's inputs. `Err` says
/// why the value is not a results file.
pub fn content(value: &Value, input: usize) -> Result<Content, String> {
    match value {
        Value::Array(items) => {
            let first = items.first().ok_or("an empty list holds no results")?;
            if first.get("report").is_some() {
                cells(items, input).map(Content::Runs)
            } else if first.get("prepare_s").is_some() || first.get("optimise_s").is_some() {
                Ok(Content::Bench(items.iter().map(bench_row).collect()))
            } else {
                Err("a list, but neither `compare` cells (with `report`) nor `bench` rows (with `prepare_s`)".into())
            }
        }
        Value::Object(map) => {
            if map
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| f.starts_with("mkedsl-sweep"))
                || map.get("points").is_some_and(Value::is_array)
            {
                sweep(value).map(Content::Sweep)
            } else if let Some(Value::Array(items)) = map.get("cells") {
                cells(items, input).map(Content::Runs)
            } else if map.get("metrics").is_some() {
                Ok(Content::Runs(vec![run(value, None, input)]))
            } else {
                Err("an object, but neither a `run` report (with `metrics`) nor a sweep (with `points`)".into())
            }
        }
        _ => Err("not a JSON object or list".into()),
    }
}

fn cells(items: &[Value], input: usize) -> Result<Vec<RunResult>, String> {
    items
        .iter()
        .enumerate()
        .map(|(i, cell)| {
            let report = cell
                .get("report")
                .ok_or_else(|| format!("cell {i} has no `report`"))?;
            Ok(run(report, Some(cell), input))
        })
        .collect()
}

fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn number(v: Option<&Value>) -> Option<f64> {
    v?.as_f64()
}

/// A score from a number or an object with a mean and an interval.
pub fn score(v: &Value) -> Option<Score> {
    match v {
        Value::Number(n) => n.as_f64().map(|mean| Score { mean, ci: None }),
        Value::Object(map) => {
            let mean = number(map.get("mean").or_else(|| map.get("value")))?;
            Some(Score {
                mean,
                ci: interval(map.get("ci"))
                    .or_else(|| Some((number(map.get("lo"))?, number(map.get("hi"))?))),
            })
        }
        _ => None,
    }
}

/// `[lo, hi]` or `{"lo": …, "hi": …}`.
fn interval(v: Option<&Value>) -> Option<(f64, f64)> {
    match v? {
        Value::Array(pair) if pair.len() == 2 => Some((pair[0].as_f64()?, pair[1].as_f64()?)),
        Value::Object(map) => Some((number(map.get("lo"))?, number(map.get("hi"))?)),
        _ => None,
    }
}

/// The five scores of `report[group]`, with intervals from `report["ci"][group]` where the
/// scores carry none.
fn scores(report: &Value, group: &[&str]) -> Scores {
    let mut at = Some(report);
    let mut ci = report.get("ci");
    for g in group {
        at = at.and_then(|v| v.get(g));
        ci = ci.and_then(|v| v.get(g));
    }
    METRICS.map(|(key, _)| {
        let mut s = score(at?.get(key)?)?;
        if s.ci.is_none() {
            s.ci = interval(ci.and_then(|c| c.get(key)));
        }
        Some(s)
    })
}

fn run(report: &Value, cell: Option<&Value>, input: usize) -> RunResult {
    let field = |key: &str| text(cell.and_then(|c| c.get(key)).or_else(|| report.get(key)));
    let recipe = field("recipe").unwrap_or_else(|| "(unnamed recipe)".into());
    let mut provenance = Vec::new();
    for key in [
        "recipe",
        "recipe_file",
        "editor",
        "model",
        "model_hash",
        "data",
        "seed",
        "device",
        "mode",
        "k",
        "groups",
        "cases",
        "dropped",
        "version",
    ] {
        if let Some(v) = field(key) {
            provenance.push((key.to_string(), v));
        }
    }
    if let Some(t) = report
        .get("template")
        .and_then(|t| t.get("template"))
        .and_then(Value::as_str)
    {
        provenance.push(("template".into(), format!("{t:?}")));
    }
    let per_case = report
        .get("per_case")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .map(|r| CaseRow {
                    index: r.get("index").and_then(Value::as_u64),
                    group: r.get("group").and_then(Value::as_u64),
                    src: text(r.get("src")).unwrap_or_default(),
                    alt: text(r.get("alt")).unwrap_or_default(),
                    token: METRICS.map(|(k, _)| {
                        r.get("metrics")
                            .and_then(|m| score(m.get(k)?))
                            .map(|s| s.mean)
                    }),
                })
                .collect()
        })
        .unwrap_or_default();
    let timing = report
        .get("timing")
        .and_then(Value::as_object)
        .map(|t| {
            t.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    RunResult {
        input,
        recipe,
        recipe_file: field("recipe_file"),
        data: field("data").unwrap_or_else(|| "(unnamed data)".into()),
        mode: field("mode"),
        k: report.get("k").and_then(Value::as_u64),
        cases: report.get("cases").and_then(Value::as_u64),
        token: scores(report, &["metrics"]),
        exact: scores(report, &["generation"]),
        easyedit: scores(report, &["locality_all_positions"]),
        pre_token: scores(report, &["pre_edit", "metrics"]),
        pre_exact: scores(report, &["pre_edit", "generation"]),
        per_case,
        timing,
        provenance,
    }
}

fn bench_row(row: &Value) -> BenchRow {
    let n = |k: &str| number(row.get(k));
    BenchRow {
        recipe: text(row.get("recipe")).unwrap_or_else(|| "(unnamed recipe)".into()),
        cases: row.get("cases").and_then(Value::as_u64),
        prepare_s: n("prepare_s"),
        spaces_s: n("spaces_s"),
        optimise_s: n("optimise_s"),
        evaluate_s: n("evaluate_s"),
        total_s: n("total_s"),
        peak_mib: n("peak_mib"),
        rel: row.get("rel").and_then(score).map(|s| s.mean),
    }
}

fn sweep(value: &Value) -> Result<Sweep, String> {
    let points = value
        .get("points")
        .and_then(Value::as_array)
        .ok_or("a sweep needs a `points` list")?;
    let mut parameters: Vec<String> = value
        .get("parameters")
        .and_then(Value::as_array)
        .map(|p| {
            p.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let set: Vec<(String, Value)> = p
            .get("set")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("sweep point {i} has no `set` object"))?
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, _) in &set {
            if !parameters.contains(k) {
                parameters.push(k.clone());
            }
        }
        let report = p.get("report").unwrap_or(p);
        out.push(SweepPoint {
            set,
            seed: p
                .get("seed")
                .or_else(|| report.get("seed"))
                .and_then(Value::as_u64),
            token: scores(report, &["metrics"]),
        });
    }
    Ok(Sweep {
        recipe: text(value.get("recipe")).unwrap_or_else(|| "(unnamed recipe)".into()),
        parameters,
        points: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scores_read_plain_numbers_and_intervals_in_three_spellings() {
        let report = json!({
            "recipe": "R", "data": "d.json",
            "metrics": {"rel": 0.5, "t_gen": {"mean": 0.25, "lo": 0.2, "hi": 0.3},
                        "m_gen": {"mean": 0.75, "ci": [0.7, 0.8]}, "t_loc": 1.0},
            "ci": {"metrics": {"rel": [0.4, 0.6]}}
        });
        let Content::Runs(runs) = content(&report, 0).unwrap() else {
            panic!()
        };
        let t = runs[0].token;
        assert_eq!(
            t[0],
            Some(Score {
                mean: 0.5,
                ci: Some((0.4, 0.6))
            })
        );
        assert_eq!(
            t[1],
            Some(Score {
                mean: 0.25,
                ci: Some((0.2, 0.3))
            })
        );
        assert_eq!(
            t[2],
            Some(Score {
                mean: 0.75,
                ci: Some((0.7, 0.8))
            })
        );
        assert_eq!(
            t[3],
            Some(Score {
                mean: 1.0,
                ci: None
            })
        );
        assert_eq!(t[4], None);
    }

    #[test]
    fn kinds_are_told_apart_and_unknown_shapes_refused() {
        assert_eq!(
            content(&json!([{"recipe": "a", "prepare_s": 1.0}]), 0)
                .unwrap()
                .kind(),
            "bench"
        );
        assert_eq!(
            content(
                &json!({"points": [{"set": {"lr": 1}, "metrics": {"rel": 1}}]}),
                0
            )
            .unwrap()
            .kind(),
            "sweep"
        );
        assert!(content(&json!({"hello": 1}), 0).is_err());
        assert!(content(&json!([]), 0).is_err());
        assert!(content(&json!([{"report": {"metrics": {}}}, {"x": 1}]), 0).is_err());
    }
}
