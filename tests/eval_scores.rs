//! The evaluator's scores against hand computations, with a test-double model whose every output
//! is known (see `eval_double`), and the single/sequential schedules.
//!
//! The two cases (`eval_double::two_cases`), LLaVA-1.5 prompts, the double answering colour
//! questions by image class (10 → "red square", 20 → "blue circle", 30 → "green star"):
//!
//! | case | image | image_rephrase | m_loc | alt         | the unedited model says |
//! |------|-------|----------------|-------|-------------|-------------------------|
//! | 0    | 10    | 10             | 30    | blue square | red square              |
//! | 1    | 20    | 30 (!)         | 10    | red circle  | blue circle             |
//!
//! Unedited: the target's first token is wrong and its second right (the double's second answer
//! word is "square" / "circle" whatever it read), so Rel = T-Gen = 1/2 for both cases; M-Gen is
//! 1/2 for case 0 and 0 for case 1 (its image_rephrase is a class-30 image: "green star").

mod eval_double;

use eval_double::*;
use mkedsl::eval::{evaluate, EditMode, EditState, EvalOptions, Evaluation, Identity};

fn run<E: mkedsl::eval::Editor<WordModel>>(
    editor: &mut E,
    mode: EditMode,
    state: &mut EditState<WordModel>,
) -> Evaluation {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = eval_cases(dir.path());
    let opts = EvalOptions {
        mode,
        ..EvalOptions::default()
    };
    evaluate(state, editor, &cases, &opts).expect("evaluates")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

macro_rules! assert_scores {
    ($set:expr, [$rel:expr, $t_gen:expr, $m_gen:expr, $t_loc:expr, $m_loc:expr]) => {{
        let s = $set;
        let want = [$rel, $t_gen, $m_gen, $t_loc, $m_loc];
        let got = [s.rel, s.t_gen, s.m_gen, s.t_loc, s.m_loc];
        assert!(
            got.iter().zip(&want).all(|(g, w)| close(*g, *w)),
            "got {got:?}, want {want:?}"
        );
    }};
}

#[test]
fn the_pre_edit_row_is_the_unedited_models_target_accuracy() {
    let mut state = EditState::new(word_model());
    let e = run(&mut Identity, EditMode::Single, &mut state);
    let pre = e.summary.pre_edit;
    assert!(close(pre.metrics.rel, 0.5) && close(pre.metrics.t_gen, 0.5));
    assert!(close(pre.metrics.m_gen, 0.25), "{pre:?}");
    assert_eq!(
        (
            pre.generation.rel,
            pre.generation.t_gen,
            pre.generation.m_gen
        ),
        (0.0, 0.0, 0.0)
    );
    // Nothing edited: post = pre, locality perfect under every scorer.
    assert_scores!(e.summary.metrics, [0.5, 0.5, 0.25, 1.0, 1.0]);
    assert_scores!(e.summary.generation, [0.0, 0.0, 0.0, 1.0, 1.0]);
    assert_eq!(e.summary.locality_all_positions.t_loc, 1.0);
    assert_eq!(e.summary.locality_all_positions.m_loc, 1.0);
    let row = &e.cases[1];
    assert_eq!(row.pre_generated.rel, "blue circle");
    assert_eq!(row.pre_generated.m_gen, "green star");
    assert_eq!(row.pre_generated.t_loc, "paris");
    assert_eq!(row.pre_generated.m_loc, "red square");
}

#[test]
fn single_editing_scores_each_edit_alone_and_restores_the_model() {
    let mut editor = ClassEditor::default();
    let mut state = EditState::new(word_model());
    let e = run(&mut editor, EditMode::Single, &mut state);
    // Every edit found the model unedited (EasyEdit #659), and nothing is left afterwards.
    assert_eq!(editor.held, vec![0, 0]);
    assert_eq!(editor.prepared, 2);
    assert!(state.model.overrides.is_empty());

    // Case 0: the class-10 edit reaches src, rephrase and the class-10 rephrase image;
    // its m_loc (class 30) and loc are untouched.
    assert_scores!(e.cases[0].metrics, [1.0, 1.0, 1.0, 1.0, 1.0]);
    assert_scores!(e.cases[0].generation, [1.0, 1.0, 1.0, 1.0, 1.0]);
    // Case 1: its image_rephrase is class 30, so M-Gen stays 0 ("green star" vs "red circle":
    // neither token). Its m_loc is class 10 — edited by case 0, but that edit was undone.
    assert_scores!(e.cases[1].metrics, [1.0, 1.0, 0.0, 1.0, 1.0]);
    assert_scores!(e.cases[1].generation, [1.0, 1.0, 0.0, 1.0, 1.0]);
    assert_eq!(e.cases[1].generated.m_gen, "green star");

    assert_scores!(e.summary.metrics, [1.0, 1.0, 0.5, 1.0, 1.0]);
    assert_scores!(e.summary.generation, [1.0, 1.0, 0.5, 1.0, 1.0]);
    assert!(close(e.summary.pre_edit.metrics.m_gen, 0.25));
    assert_eq!(e.groups, 2);
    assert_eq!(
        e.cases.iter().map(|r| r.group).collect::<Vec<_>>(),
        vec![0, 1]
    );
}

#[test]
fn sequential_editing_scores_after_the_kth_edit_against_the_original_model() {
    let mut editor = ClassEditor::default();
    let mut state = EditState::new(word_model());
    let e = run(&mut editor, EditMode::Sequential { k: 2 }, &mut state);
    // The second edit found the first in place; the group was undone afterwards.
    assert_eq!(editor.held, vec![0, 1]);
    assert!(state.model.overrides.is_empty());
    assert_eq!(e.groups, 1);

    assert_scores!(e.cases[0].metrics, [1.0, 1.0, 1.0, 1.0, 1.0]);
    // Case 1's m_loc image is class 10, which case 0's edit (still in place) now answers with
    // "blue square". Compared with the ORIGINAL model (EasyEdit #643) on `m_loc_a` = "red
    // square": the position predicting "red" disagrees (blue), the one predicting "square"
    // agrees → 1/2; the generations differ → 0. Against a model re-read after the first edit
    // this would wrongly be 1.
    assert_scores!(e.cases[1].metrics, [1.0, 1.0, 0.0, 1.0, 0.5]);
    assert_scores!(e.cases[1].generation, [1.0, 1.0, 0.0, 1.0, 0.0]);
    assert_eq!(e.cases[1].generated.m_loc, "blue square");
    assert_eq!(e.cases[1].pre_generated.m_loc, "red square");
    // EasyEdit's every-position top-10: `<s> USER: <image> <image> what colour is it ASSISTANT:
    // red square` has 11 positions; only the one after ASSISTANT: changed its top-1, and its
    // top-10 below the prediction is ids 0–8 on both sides → 9 of 10 → (10·10 + 9) / 110.
    assert!(close(
        e.cases[1].locality_all_positions.m_loc,
        109.0 / 110.0
    ));
    assert_eq!(e.cases[1].locality_all_positions.t_loc, 1.0);

    assert_scores!(e.summary.metrics, [1.0, 1.0, 0.5, 1.0, 0.75]);
    assert_scores!(e.summary.generation, [1.0, 1.0, 0.5, 1.0, 0.5]);
    assert!(close(
        e.summary.locality_all_positions.m_loc,
        (1.0 + 109.0 / 110.0) / 2.0
    ));
}

#[test]
fn sequential_groups_restore_between_groups() {
    let mut editor = ClassEditor::default();
    let mut state = EditState::new(word_model());
    let e = run(&mut editor, EditMode::Sequential { k: 1 }, &mut state);
    assert_eq!(editor.held, vec![0, 0]);
    // K = 1 is single editing.
    let mut single = ClassEditor::default();
    let s = run(
        &mut single,
        EditMode::Single,
        &mut EditState::new(word_model()),
    );
    assert_eq!(e.summary, s.summary);
}

#[test]
fn a_question_keyed_edit_misses_the_rephrase_and_damages_image_locality() {
    // Case 0 alone. The edit answers "blue square" to "what colour is it" on any image.
    let mut state = EditState::new(word_model());
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = eval_cases(dir.path());
    let e = evaluate(
        &mut state,
        &mut QuestionEditor,
        &cases[..1],
        &EvalOptions::default(),
    )
    .expect("evaluates");
    // Rel 1; the rephrase "which colour is shown" is not edited → the unedited 1/2; M-Gen asks
    // src → 1. T-Loc untouched. M-Loc asks the same question about the class-30 image: the model
    // now says "blue square" where it said "green star" → both answer positions disagree → 0.
    assert_scores!(e.cases[0].metrics, [1.0, 0.5, 1.0, 1.0, 0.0]);
    assert_scores!(e.cases[0].generation, [1.0, 0.0, 1.0, 1.0, 0.0]);
    assert!(state.model.overrides.is_empty());
}

#[test]
fn editor_errors_name_the_editor_and_case_and_still_restore() {
    struct Failing;
    impl mkedsl::eval::Editor<WordModel> for Failing {
        fn name(&self) -> &str {
            "failing"
        }
        fn edit(
            &mut self,
            state: &mut EditState<WordModel>,
            case: &mkedsl::eval::PreparedCase,
        ) -> miette::Result<()> {
            state.model.overrides.push(Override {
                class: None,
                question: None,
                answer: words("broken"),
            });
            Err(miette::miette!("diverged on {}", case.target()))
        }
    }
    let mut state = EditState::new(word_model());
    let dir = tempfile::tempdir().expect("temp dir");
    let cases = eval_cases(dir.path());
    let err =
        evaluate(&mut state, &mut Failing, &cases, &EvalOptions::default()).expect_err("fails");
    assert_eq!(err.to_string(), "editor `failing` failed on case 0");
    let cause = format!("{:?}", miette::Report::new(err));
    assert!(cause.contains("diverged on blue square"), "{cause}");
    assert!(state.model.overrides.is_empty());
}
