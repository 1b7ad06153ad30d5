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
    let [k] = out.report.knowledge.as_slice() else {
        panic!("one knowledge space expected: {:?}", out.report.knowledge)
    };
    assert_eq!((k.space.as_str(), k.cases, k.variants), ("know", 3, 12));
    assert!(k.kept > 0.0 && k.kept <= 12.0);
    // Every case reports its own filter, and the means are theirs.
    let rows: Vec<_> = out.report.per_case.iter().map(|r| &r.knowledge).collect();
    assert_eq!(rows.len(), 3);
    for r in &rows {
        let [c] = r.as_slice() else { panic!("{r:?}") };
        assert!(c.kept <= c.variants && c.variants == 12);
        assert!((c.kept_fraction - c.kept as f64 / 12.0).abs() < 1e-12);
        assert!((-1.0..=1.0).contains(&c.mean_similarity));
    }
    let mean_kept = rows.iter().map(|r| r[0].kept as f64).sum::<f64>() / 3.0;
    assert!((k.kept - mean_kept).abs() < 1e-12);
    assert!((k.kept_fraction - mean_kept / 12.0).abs() < 1e-12);
    let summary = out.summary();
    assert!(
        summary.contains("knowledge space `know`: kept ")
            && summary.contains("(literal, keep above 0.05)"),
        "{summary}"
    );
    // The resolved perturbation scales: the window as written, σ as written.
    let [p] = out.report.perturbations.as_slice() else {
        panic!("{:?}", out.report.perturbations)
    };
    assert_eq!((p.mask_window, p.noise_sigma), (Some(4.0), Some(0.01)));
}

#[test]
fn elora_in_calibrated_units_resolves_share_relative_noise_and_chance_correction() {
    let text = ELORA
        .replace("mask_vision(window: 4)", "mask_vision(share: 0.2)")
        .replace("noise_text(sigma: 0.01)", "noise_text(relative: 0.5)")
        .replace(
            "keep_above: 0.05, rank: 3)",
            "keep_above: 0.05, rank: 3, similarity: chance_corrected)",
        );
    let (_d, out) = run_recipe("elora_calibrated.edit", &text, 2);
    assert_sane(&out.report);
    let [k] = out.report.knowledge.as_slice() else {
        panic!("{:?}", out.report.knowledge)
    };
    assert_eq!(k.similarity, "chance_corrected");
    for row in &out.report.per_case {
        let [p] = row.perturbations.as_slice() else {
            panic!("{:?}", row.perturbations)
        };
        // 0.2 of the fixture's 16 image tokens rounds to 3.
        assert_eq!((p.mask_window, p.image_tokens), (Some(3), Some(16)));
        let sigma = p.noise_sigma.expect("a resolved σ");
        assert!(sigma > 0.0 && sigma.is_finite());
        assert!(row.knowledge[0].kept <= row.knowledge[0].variants);
    }
    assert!(out.summary().contains("mask window 3 of 16 image tokens"));
}

#[test]
fn asam_scales_its_budget_per_token_and_relative() {
    for scale in ["per_token", "relative"] {
        let text = ASAM.replace(
            "let adv = lar(budget: 1e-2, count: 3)",
            &format!("let adv = adversarial([embed.vision, embed.text], budget: 1e-2, count: 3, scale: {scale})"),
        );
        let (_d, out) = run_recipe("asam_scaled.edit", &text, 1);
        assert!((0.0..=1.0).contains(&out.report.metrics.rel), "{scale}");
    }
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
