//! Each shipped method's recipe shape, run end to end on the tiny LLaVA fixture with a few world
//! cases: the edit takes (Rel rises from the pre-edit score, to 1 where the target is learnable
//! in the steps given) and every score is a fraction.

mod exec_common;

use exec_common::*;
use mkedsl::eval::EvalReport;
use mkedsl::exec::{run, RunOutcome};

fn run_recipe(name: &str, text: &str, cases: usize) -> (tempfile::TempDir, RunOutcome) {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), cases);
    let r = recipe(dir.path(), name, text);
    let outcome = run(&request(dir.path(), r, model, data, cases))
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    (dir, outcome)
}

fn assert_sane(r: &EvalReport) {
    let m = &r.metrics;
    let g = &r.generation;
    for v in [
        m.rel,
        m.t_gen,
        m.m_gen,
        m.t_loc,
        m.m_loc,
        g.rel,
        g.t_gen,
        g.m_gen,
        g.t_loc,
        g.m_loc,
        r.pre_edit.metrics.rel,
        r.locality_all_positions.t_loc,
        r.locality_all_positions.m_loc,
    ] {
        assert!((0.0..=1.0).contains(&v), "score {v} outside [0, 1]");
    }
    assert!(
        m.rel > r.pre_edit.metrics.rel,
        "the edit did not take: Rel {} after, {} before",
        m.rel,
        r.pre_edit.metrics.rel
    );
}

#[test]
fn ft_l_learns_the_targets() {
    let (_d, out) = run_recipe("ft_l.edit", FT_L, 3);
    assert_sane(&out.report);
    assert_eq!(out.report.metrics.rel, 1.0);
    assert_eq!(out.phases.edits, 3);
}

#[test]
fn lora_learns_the_targets() {
    let (_d, out) = run_recipe("lora.edit", LORA, 3);
    assert_sane(&out.report);
    assert_eq!(out.report.metrics.rel, 1.0);
}

#[test]
fn lora_null_edits_within_its_null_space() {
    let (_d, out) = run_recipe("lora_null.edit", LORA_NULL, 3);
    assert_sane(&out.report);
}

#[test]
fn lpedit_learns_the_targets_with_projected_updates() {
    let (_d, out) = run_recipe("lpedit.edit", LPEDIT, 3);
    assert_sane(&out.report);
    assert_eq!(out.report.metrics.rel, 1.0);
}

#[test]
fn elora_edits_and_reports_its_knowledge_filter() {
    let (_d, out) = run_recipe("elora.edit", ELORA, 3);
    assert_sane(&out.report);
    let [(_, k)] = out.knowledge.as_slice() else {
        panic!("one knowledge-space step expected: {:?}", out.knowledge)
    };
    assert_eq!(k.cases, 3);
    assert_eq!(k.stats.variants, 3 * 12);
    assert!(k.stats.kept > 0 && k.stats.kept <= k.stats.variants);
    assert!(out.summary().contains("variants kept per case"));
}

#[test]
fn asam_runs_adversarial_latents_alignment_and_kl() {
    let (_d, out) = run_recipe("asam.edit", ASAM, 2);
    assert_sane(&out.report);
    assert_eq!(out.report.metrics.rel, 1.0);
}

#[test]
fn sequential_mode_accumulates_edits_in_groups() {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), 4);
    let r = recipe(dir.path(), "ft.edit", FT_L);
    let mut req = request(dir.path(), r, model, data, 4);
    req.sequential = Some(true);
    req.k = Some(2);
    let out = run(&req).expect("runs");
    assert_eq!(out.report.mode, "sequential");
    assert_eq!((out.report.k, out.report.groups), (Some(2), 2));
    assert!((0.0..=1.0).contains(&out.report.metrics.rel));
}

#[test]
fn unike_runs_memory_encoders_gated_icl_and_regulated_neurons() {
    let (_d, out) = run_recipe("unike.edit", UNIKE, 3);
    assert_sane(&out.report);
    assert!(
        out.report.metrics.rel >= 2.0 / 3.0,
        "{:?}",
        out.report.metrics
    );
}
