//! The evaluator on the real runtime (the tiny random LLaVA checkpoint): batching does not change
//! a score, and editors that replace weights and add adapters are undone after every case, back
//! to the state `prepare` left.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use mkedsl::data::write_dataset;
use mkedsl::eval::{
    evaluate, EditMode, EditState, Editor, EvalOptions, Evaluation, Identity, PreparedCase,
    ProbeOptions, Setup, SetupRequest,
};
use mkedsl::model::{LinearSite, Llava, Lora, Proj, VisionLanguageModel};
use mkedsl::world::{CaseKind, World};

fn setup(dir: &Path, n: usize) -> Setup {
    let cases = World::new(5)
        .edit_cases(CaseKind::Evqa, n, 1)
        .expect("plan");
    let data = write_dataset(CaseKind::Evqa, &cases, dir, |_, _| Ok("red".into()))
        .expect("writes")
        .json;
    Setup::load(&SetupRequest {
        model: Some(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tiny-llava"
        ))),
        data: Some(data),
        ..SetupRequest::default()
    })
    .expect("setup loads")
}

fn opts(mode: EditMode, batch_size: usize) -> EvalOptions {
    EvalOptions {
        mode,
        probe: ProbeOptions {
            batch_size,
            max_new_tokens: 6,
        },
        ..EvalOptions::default()
    }
}

const DOWN0: LinearSite = LinearSite {
    layer: 0,
    proj: Proj::Down,
};
const Q1: LinearSite = LinearSite {
    layer: 1,
    proj: Proj::Q,
};

fn weight(state: &EditState<Llava>, site: LinearSite) -> Vec<f32> {
    state
        .model
        .linear_weight(site)
        .and_then(|w| Ok(w.flatten_all()?.to_vec1::<f32>()?))
        .expect("weight")
}

#[test]
fn scores_do_not_depend_on_the_batch_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    let setup = setup(dir.path(), 4);
    let run = |mode, batch| -> Evaluation {
        let mut state = EditState::new(setup.model.clone());
        evaluate(&mut state, &mut Identity, &setup.cases, &opts(mode, batch)).expect("evaluates")
    };
    let one = run(EditMode::Single, 1);
    let many = run(EditMode::Single, 7);
    let seq = run(EditMode::Sequential { k: 3 }, 5);
    assert_eq!(one.cases, many.cases);
    assert_eq!(one.summary, many.summary);
    assert_eq!(one.summary, seq.summary);
    // The tiny random model says something, and identity locality is exact.
    assert!(one.cases.iter().any(|r| !r.generated.rel.is_empty()));
    assert_eq!(one.summary.metrics.t_loc, 1.0);
    assert_eq!(one.summary.locality_all_positions.m_loc, 1.0);
}

/// ELoRA-shaped: `prepare` moves part of a weight into an adapter (W ← W − D, ΔW = D), which
/// leaves the function unchanged; every edit then replaces another weight and adds a LoRA.
struct Invasive {
    prepared_weight: Option<Vec<f32>>,
}

impl Editor for Invasive {
    fn name(&self) -> &str {
        "invasive"
    }

    fn prepare(
        &mut self,
        state: &mut EditState,
        _cases: &[mkedsl::eval::EvalCase],
    ) -> miette::Result<()> {
        let w = state.model.linear_weight(DOWN0)?;
        let d = (w.ones_like().map_err(mkedsl::model::ModelError::from)? * 0.01)
            .map_err(mkedsl::model::ModelError::from)?;
        let moved = (&w - &d).map_err(mkedsl::model::ModelError::from)?;
        state.model.replace_linear_weight(DOWN0, moved)?;
        state.adapters.delta(DOWN0, d);
        self.prepared_weight = Some(weight(state, DOWN0));
        Ok(())
    }

    fn edit(&mut self, state: &mut EditState, _case: &PreparedCase) -> miette::Result<()> {
        // Every edit must start from the prepared state.
        assert_eq!(Some(weight(state, DOWN0)), self.prepared_weight);
        let err = |e: candle_core::Error| mkedsl::model::ModelError::from(e);
        let q = state.model.linear_weight(Q1)?;
        state
            .model
            .replace_linear_weight(Q1, (q * -3.0).map_err(err)?)?;
        let v0 = LinearSite {
            layer: 0,
            proj: Proj::V,
        };
        let (inp, out) = v0.in_out(&state.model.dims());
        let a = Tensor::ones((2, inp), DType::F32, &Device::Cpu).map_err(err)?;
        let b = Tensor::ones((out, 2), DType::F32, &Device::Cpu).map_err(err)?;
        state.adapters.lora(v0, Lora { a, b, scaling: 0.5 });
        Ok(())
    }
}

#[test]
fn weight_replacements_and_adapters_are_undone_back_to_the_prepared_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let setup = setup(dir.path(), 3);
    let mut state = EditState::new(setup.model.clone());
    let original_q1 = weight(&state, Q1);
    let mut editor = Invasive {
        prepared_weight: None,
    };
    for mode in [EditMode::Single, EditMode::Sequential { k: 2 }] {
        let mut fresh = EditState::new(setup.model.clone());
        let e =
            evaluate(&mut fresh, &mut editor, &setup.cases, &opts(mode, 16)).expect("evaluates");
        // The edits changed the model's outputs …
        assert!(
            e.cases
                .iter()
                .any(|r| r.locality_all_positions.m_loc < 1.0 || r.metrics.t_loc < 1.0),
            "{mode:?}: the edit had no effect"
        );
        // … and afterwards only prepare's work remains.
        assert_eq!(weight(&fresh, Q1), original_q1);
        assert_eq!(Some(weight(&fresh, DOWN0)), editor.prepared_weight);
        assert!(!fresh.adapters.is_empty(), "prepare's delta stays");
        state = fresh;
    }

    // Scoring the restored state against the original model: prepare's move is (numerically)
    // invisible, so the pre-edit row of a new evaluation equals the original one.
    let mut original = EditState::new(setup.model.clone());
    let baseline = evaluate(
        &mut original,
        &mut Identity,
        &setup.cases,
        &opts(EditMode::Single, 16),
    )
    .expect("baseline");
    let again = evaluate(
        &mut state,
        &mut Identity,
        &setup.cases,
        &opts(EditMode::Single, 16),
    )
    .expect("again");
    assert_eq!(baseline.summary.pre_edit, again.summary.pre_edit);
    assert_eq!(
        baseline
            .cases
            .iter()
            .map(|r| &r.pre_generated)
            .collect::<Vec<_>>(),
        again
            .cases
            .iter()
            .map(|r| &r.pre_generated)
            .collect::<Vec<_>>()
    );
}
