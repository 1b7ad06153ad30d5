//! From what the unedited and the edited model produced on a case to the case's scores, and
//! from cases to the dataset's row of the table.
//!
//! Which positions locality scores — the headline `t_loc` / `m_loc`: top-1 agreement of the
//! edited with the unedited model at the positions that PREDICT the reference answer's tokens
//! (`loc_ans` after the `loc` prompt, `m_loc_a` after `m_loc_q` on the `m_loc` image),
//! teacher-forced. Those are the positions where an edit can change what the model says; prompt
//! and image-token positions barely move and would dilute the score towards 1. EasyEdit's
//! variant — every position, image tokens and prompt included, top-1 for text and top-10 for
//! image locality — is reported beside it as `locality_all_positions`, for comparison with
//! published numbers.

use serde::{Deserialize, Serialize};

use crate::eval::calibration::{FilterCase, PerturbCase};

use crate::eval::case::EvalCase;
use crate::eval::easyedit::EasyEditScores;
use crate::eval::error::{EvalError, Result};
use crate::eval::metrics::{
    aggregate, generation_matches, mean, top_k_agreement, LocalityPositions, MetricSet,
};
use crate::eval::probe::{CaseOutputs, Generations, LocalityTrace};

/// Rel, T-Gen and M-Gen: the scores that do not compare with another model (the pre-edit row).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EditScores {
    pub rel: f64,
    pub t_gen: f64,
    pub m_gen: f64,
}

/// T-Loc and M-Loc on their own (the every-position variant).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LocalityScores {
    pub t_loc: f64,
    pub m_loc: f64,
}

/// The unedited model's Rel / T-Gen / M-Gen under both scorers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PreEditScores {
    /// Teacher-forced token accuracy of the target.
    pub metrics: EditScores,
    /// Greedy generation equals the target.
    pub generation: EditScores,
}

/// One case's scores and what the models said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseRow {
    /// The record's index in the data file.
    pub index: usize,
    /// The group the case was edited in (its position in single mode).
    pub group: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    pub src: String,
    pub pred: String,
    pub alt: String,
    /// Token-level scores (headline locality: answer positions, top-1).
    pub metrics: MetricSet,
    /// Exact-match scores, 0 or 1.
    pub generation: MetricSet,
    /// EasyEdit's every-position locality (top-1 text, top-10 image).
    pub locality_all_positions: LocalityScores,
    pub pre_edit: PreEditScores,
    /// The edited model's greedy generations.
    pub generated: Generations,
    /// The unedited model's greedy generations.
    pub pre_generated: Generations,
    /// The same scores under EasyEdit's names, `pre` and `post` ([`crate::eval::easyedit`]).
    #[serde(default)]
    pub easyedit: EasyEditScores,
    /// What each knowledge space's filter did on this case (methods with one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub knowledge: Vec<FilterCase>,
    /// The mask window and noise σ each `perturb` resolved to on this case.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub perturbations: Vec<PerturbCase>,
}

/// The dataset's scores: means over cases of each case's scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub metrics: MetricSet,
    pub generation: MetricSet,
    pub locality_all_positions: LocalityScores,
    pub pre_edit: PreEditScores,
}

/// A case's row from the unedited (`pre`) and edited (`post`) outputs.
pub fn score_case(
    case: &EvalCase,
    group: usize,
    pre: &CaseOutputs,
    post: &CaseOutputs,
) -> Result<CaseRow> {
    let metric = |probe: &'static str| {
        move |source| EvalError::Metric {
            case: case.index,
            probe,
            source,
        }
    };
    let need = |probe: &'static str, v: Option<f64>| {
        v.ok_or(EvalError::Metric {
            case: case.index,
            probe,
            source: crate::eval::metrics::MetricError::NoTargetTokens,
        })
    };
    let answer_agreement = |probe, a: &LocalityTrace, b: &LocalityTrace| -> Result<f64> {
        let agreement = top_k_agreement(
            &a.top_k.head(1),
            &b.top_k.head(1),
            // An empty `loc_ans` / `m_loc_a` (EasyEdit keeps such records) tokenises to
            // nothing; its locality then reads the last position, the one predicting what
            // follows the prompt.
            LocalityPositions::Answer {
                answer_len: a.answer_len.max(1),
            },
        )
        .map_err(metric(probe))?;
        need(probe, agreement.fraction())
    };
    let all_agreement = |probe, a: &LocalityTrace, b: &LocalityTrace| -> Result<f64> {
        let agreement =
            top_k_agreement(&a.top_k, &b.top_k, LocalityPositions::All).map_err(metric(probe))?;
        need(probe, agreement.fraction())
    };
    let target = case.target();
    let gen = &post.generated;
    let pre_gen = &pre.generated;
    let matches = |a: &str, b: &str| if generation_matches(a, b) { 1.0 } else { 0.0 };
    let mut row = CaseRow {
        index: case.index,
        group,
        family: case.record.family.clone(),
        src: case.record.src.clone(),
        pred: case.record.pred.clone(),
        alt: target.to_string(),
        metrics: MetricSet {
            rel: need("rel", post.rel.fraction())?,
            t_gen: need("t_gen", post.t_gen.fraction())?,
            m_gen: need("m_gen", post.m_gen.fraction())?,
            t_loc: answer_agreement("t_loc", &pre.loc, &post.loc)?,
            m_loc: answer_agreement("m_loc", &pre.m_loc, &post.m_loc)?,
        },
        generation: MetricSet {
            rel: matches(&gen.rel, target),
            t_gen: matches(&gen.t_gen, target),
            m_gen: matches(&gen.m_gen, target),
            t_loc: matches(&gen.t_loc, &pre_gen.t_loc),
            m_loc: matches(&gen.m_loc, &pre_gen.m_loc),
        },
        locality_all_positions: LocalityScores {
            t_loc: all_agreement("t_loc", &pre.loc, &post.loc)?,
            m_loc: all_agreement("m_loc", &pre.m_loc, &post.m_loc)?,
        },
        pre_edit: PreEditScores {
            metrics: EditScores {
                rel: need("rel", pre.rel.fraction())?,
                t_gen: need("t_gen", pre.t_gen.fraction())?,
                m_gen: need("m_gen", pre.m_gen.fraction())?,
            },
            generation: EditScores {
                rel: matches(&pre_gen.rel, target),
                t_gen: matches(&pre_gen.t_gen, target),
                m_gen: matches(&pre_gen.m_gen, target),
            },
        },
        generated: post.generated.clone(),
        pre_generated: pre.generated.clone(),
        easyedit: EasyEditScores::default(),
        knowledge: Vec::new(),
        perturbations: Vec::new(),
    };
    row.easyedit = EasyEditScores::of(
        &row.metrics,
        &row.locality_all_positions,
        &row.pre_edit.metrics,
    );
    Ok(row)
}

/// The means over cases (each case weighs the same, as EasyEdit averages per-case accuracies).
pub fn summarize(rows: &[CaseRow]) -> Result<Summary> {
    let fail = |source| EvalError::Metric {
        case: 0,
        probe: "the summary",
        source,
    };
    let avg = |f: fn(&CaseRow) -> f64| {
        mean(&rows.iter().map(f).collect::<Vec<_>>())
            .ok_or_else(|| fail(crate::eval::metrics::MetricError::NoCases))
    };
    Ok(Summary {
        metrics: aggregate(&rows.iter().map(|r| r.metrics).collect::<Vec<_>>()).map_err(fail)?,
        generation: aggregate(&rows.iter().map(|r| r.generation).collect::<Vec<_>>())
            .map_err(fail)?,
        locality_all_positions: LocalityScores {
            t_loc: avg(|r| r.locality_all_positions.t_loc)?,
            m_loc: avg(|r| r.locality_all_positions.m_loc)?,
        },
        pre_edit: PreEditScores {
            metrics: EditScores {
                rel: avg(|r| r.pre_edit.metrics.rel)?,
                t_gen: avg(|r| r.pre_edit.metrics.t_gen)?,
                m_gen: avg(|r| r.pre_edit.metrics.m_gen)?,
            },
            generation: EditScores {
                rel: avg(|r| r.pre_edit.generation.rel)?,
                t_gen: avg(|r| r.pre_edit.generation.t_gen)?,
                m_gen: avg(|r| r.pre_edit.generation.m_gen)?,
            },
        },
    })
}
