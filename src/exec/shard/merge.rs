//! `mkedsl merge PARTS…`: the parts of one sharded run back into the report the unsharded run
//! writes.
//!
//! Before anything is merged the parts must agree on everything that changes the numbers (recipe,
//! model and data hashes, seed, mode, K, device, generation length, template, shard count, run
//! size), every shard must be present once, and each part's rows must be exactly the cases its
//! shard was given. Then the rows are concatenated in shard order — the unsharded run's order —
//! and every mean is recomputed from them with the evaluator's own [`summarize`], so the merged
//! report equals the unsharded one field for field. Only `timing` differs: it is the sum over the
//! shards (compute spent, not wall-clock time).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::eval::score::summarize;
use crate::eval::{EditMode, EvalReport, Evaluation, RunInfo, Timing};
use crate::exec::cache::short;
use crate::exec::shard::error::ShardError;
use crate::exec::shard::part::Part;
use crate::exec::shard::spec::Shard;

/// Reads, checks and merges part files.
pub fn merge_files(paths: &[PathBuf]) -> miette::Result<EvalReport> {
    let parts = paths
        .iter()
        .map(|p| Part::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    merge(parts)
}

/// Checks and merges parts already read.
pub fn merge(mut parts: Vec<Part>) -> miette::Result<EvalReport> {
    let Some(first) = parts.first() else {
        return Err(miette::miette!(
            help = "pass the part files written by `mkedsl run … --shard I/N --json PART`",
            "no part to merge"
        ));
    };
    for part in &parts[1..] {
        same_run(first, part)?;
    }
    parts.sort_by_key(|p| p.info.index);
    for pair in parts.windows(2) {
        if pair[0].info.index == pair[1].info.index {
            return Err(ShardError::Duplicated {
                shard: pair[0].info.shard().to_string(),
                a: pair[0].path.clone(),
                b: pair[1].path.clone(),
            }
            .into());
        }
    }
    let count = parts[0].info.count;
    let given: Vec<usize> = parts.iter().map(|p| p.info.index).collect();
    if let Some(missing) = (0..count).find(|i| !given.contains(i)) {
        let absent: Vec<String> = (0..count)
            .filter(|i| !given.contains(i))
            .map(|i| Shard { index: i, count }.to_string())
            .collect();
        return Err(ShardError::Missing {
            missing: Shard {
                index: missing,
                count,
            }
            .to_string(),
            given: given
                .iter()
                .map(|&i| Shard { index: i, count }.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            help: format!(
                "pass the part of every shard 0/{count} … {}/{count}; rerun the absent one{} ({}) with `mkedsl run … --shard I/{count} --json PART`",
                count - 1,
                if absent.len() == 1 { "" } else { "s" },
                absent.join(", ")
            ),
        }
        .into());
    }
    let mut owner: BTreeMap<usize, &Part> = BTreeMap::new();
    for part in &parts {
        check_rows(part)?;
        for &case in &part.info.cases {
            if let Some(other) = owner.insert(case, part) {
                return Err(ShardError::Rows {
                    path: part.path.clone(),
                    shard: part.info.shard().to_string(),
                    reason: format!(
                        "holds case {case}, which shard {} (`{}`) holds too",
                        other.info.shard(),
                        other.path.display()
                    ),
                }
                .into());
            }
        }
    }
    let first = &parts[0];
    if owner.len() != first.info.run_cases {
        return Err(ShardError::Rows {
            path: first.path.clone(),
            shard: first.info.shard().to_string(),
            reason: format!(
                "and the other parts hold {} cases, but the run has {}",
                owner.len(),
                first.info.run_cases
            ),
        }
        .into());
    }

    let rows: Vec<_> = parts
        .iter()
        .flat_map(|p| p.file.per_case.iter().cloned())
        .collect();
    let summary = summarize(&rows)?;
    let mut timing = Timing::default();
    for p in &parts {
        let t = &p.file.timing;
        timing.pre_edit_s += t.pre_edit_s;
        timing.prepare_s += t.prepare_s;
        timing.edit_s += t.edit_s;
        timing.score_s += t.score_s;
        timing.total_s += t.total_s;
    }
    let f = &first.file;
    let mode = match f.k {
        Some(k) => EditMode::Sequential { k },
        None => EditMode::Single,
    };
    let info = RunInfo {
        recipe: f.recipe.clone(),
        model: f.model.clone(),
        data: f.data.clone(),
        seed: f.seed,
        device: f.device.clone(),
        template: f.template.clone(),
        dropped: f.dropped,
        data_files: f.data_files.clone(),
        field_templates: f.field_templates,
    };
    let evaluation = Evaluation {
        editor: f.editor.clone(),
        mode,
        groups: parts.iter().map(|p| p.file.groups).sum(),
        summary,
        cases: rows,
        timing,
    };
    let mut report = EvalReport::new(info, evaluation);
    report.null_spaces = f.null_spaces.clone();
    Ok(report)
}

/// Refuses `b` unless it is a part of the same run as `a`.
fn same_run(a: &Part, b: &Part) -> Result<(), ShardError> {
    let (ai, bi, af, bf) = (&a.info, &b.info, &a.file, &b.file);
    let opt = |v: Option<u64>| v.map_or("none".to_string(), |v| v.to_string());
    let optk = |v: Option<usize>| v.map_or("none".to_string(), |v| v.to_string());
    let checks: [(&'static str, String, String); 13] = [
        (
            "recipe",
            short(&ai.recipe_hash).into(),
            short(&bi.recipe_hash).into(),
        ),
        (
            "model",
            short(&ai.model_hash).into(),
            short(&bi.model_hash).into(),
        ),
        (
            "data",
            short(&ai.data_hash).into(),
            short(&bi.data_hash).into(),
        ),
        ("seed", opt(af.seed), opt(bf.seed)),
        ("mode", af.mode.clone(), bf.mode.clone()),
        ("K", optk(af.k), optk(bf.k)),
        ("device", af.device.clone(), bf.device.clone()),
        ("dtype", ai.dtype.clone(), bi.dtype.clone()),
        ("shard count", ai.count.to_string(), bi.count.to_string()),
        (
            "run cases",
            ai.run_cases.to_string(),
            bi.run_cases.to_string(),
        ),
        (
            "max new tokens",
            ai.max_new_tokens.to_string(),
            bi.max_new_tokens.to_string(),
        ),
        (
            "template",
            format!("{:?}", af.template.template.as_str()),
            format!("{:?}", bf.template.template.as_str()),
        ),
        ("mkedsl version", ai.mkedsl.clone(), bi.mkedsl.clone()),
    ];
    for (what, av, bv) in checks {
        if av != bv {
            let what = match what {
                "recipe" => "recipe file hash",
                "model" => "model hash",
                "data" => "data file hash",
                other => other,
            };
            let named = |p: &Part| format!("`{}` (shard {})", p.path.display(), p.info.shard());
            return Err(ShardError::Mismatch {
                what,
                a: named(a),
                b: named(b),
                values: format!("{bv} vs {av}"),
            });
        }
    }
    Ok(())
}

/// Refuses a part whose rows are not exactly its shard's cases, in order.
fn check_rows(part: &Part) -> Result<(), ShardError> {
    let fail = |reason: String| ShardError::Rows {
        path: part.path.clone(),
        shard: part.info.shard().to_string(),
        reason,
    };
    let rows: Vec<usize> = part.file.per_case.iter().map(|r| r.index).collect();
    let expected = &part.info.cases;
    for (n, &case) in rows.iter().enumerate() {
        if rows[..n].contains(&case) {
            return Err(fail(format!("holds the row of case {case} twice")));
        }
        if !expected.contains(&case) {
            return Err(fail(format!(
                "holds a row of case {case}, which is not one of its shard's cases"
            )));
        }
    }
    if let Some(case) = expected.iter().find(|c| !rows.contains(c)) {
        return Err(fail(format!("lacks the row of case {case}")));
    }
    if rows != *expected {
        return Err(fail("holds its rows out of data order".into()));
    }
    Ok(())
}
