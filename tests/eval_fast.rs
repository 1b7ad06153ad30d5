//! The fast evaluation path — image features computed once per distinct image, greedy tokens
//! read off the teacher-forced pass where it determines them — gives exactly the plain path's
//! scores, generations and per-case rows, on the embedded model with E-VQA and E-IC cases, for
//! the unedited model and for edits that change what it says; and it does less arithmetic.

use std::path::PathBuf;

use mkedsl::eval::{
    evaluate_with, observe, EditMode, EditState, Editor, EvalOptions, Evaluation, Identity,
    ObservePath, PreparedCase, ProbeOptions, Setup, SetupRequest,
};
use mkedsl::model::{flops, FeatureCache, LinearSite, Llava, Proj, VisionLanguageModel};

fn setup(data: &str, cases: usize) -> Setup {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Setup::load(&SetupRequest {
        model: Some(root.join("examples/model")),
        data: Some(root.join(data)),
        limit: Some(cases),
        ..SetupRequest::default()
    })
    .expect("the embedded model and data load")
}

/// Scales one decoder MLP's output weight per case: the edited model answers differently (some
/// greedy generations leave the answer, so they are decoded), and edits accumulate in
/// sequential mode.
struct Scale;

impl Editor<Llava> for Scale {
    fn name(&self) -> &str {
        "scale"
    }

    fn edit(&mut self, state: &mut EditState<Llava>, case: &PreparedCase) -> miette::Result<()> {
        let site = LinearSite {
            layer: case.case.index % state.model.dims().num_layers,
            proj: Proj::Down,
        };
        let w = state.model.linear_weight(site)?;
        let scaled = (w * -8.0).map_err(|e| miette::miette!("{e}"))?;
        state.model.replace_linear_weight(site, scaled)?;
        Ok(())
    }
}

fn run(
    setup: &Setup,
    editor: &mut dyn Editor<Llava>,
    mode: EditMode,
    path: ObservePath,
) -> (Evaluation, u64) {
    let opts = EvalOptions {
        mode,
        probe: ProbeOptions {
            batch_size: 4,
            max_new_tokens: 16,
        },
        ..EvalOptions::default()
    };
    let mut state = EditState::new(setup.model.clone());
    let before = flops::count();
    let evaluation =
        evaluate_with(&mut state, editor, &setup.cases, &opts, path).expect("evaluates");
    (evaluation, flops::count() - before)
}

#[test]
fn the_fast_path_equals_the_plain_path_and_counts_less_arithmetic() {
    for data in ["examples/data/evqa.json", "examples/data/eic.json"] {
        let setup = setup(data, 5);
        for mode in [EditMode::Single, EditMode::Sequential { k: 2 }] {
            for name in ["identity", "scale"] {
                let make = || -> Box<dyn Editor<Llava>> {
                    match name {
                        "identity" => Box::new(Identity),
                        _ => Box::new(Scale),
                    }
                };
                let (plain, plain_flops) = run(&setup, &mut *make(), mode, ObservePath::Plain);
                let (fast, fast_flops) = run(&setup, &mut *make(), mode, ObservePath::Fast);
                assert_eq!(plain.cases, fast.cases, "{data}, {mode}, {name}");
                assert_eq!(plain.summary, fast.summary, "{data}, {mode}, {name}");
                assert!(
                    fast_flops < plain_flops,
                    "{data}, {mode}, {name}: fast {fast_flops} vs plain {plain_flops} flops"
                );
                if name == "scale" {
                    // The edit changed what the model says: the comparison covered decoding.
                    assert!(
                        fast.cases.iter().any(|r| r.generated != r.pre_generated),
                        "{data}, {mode}: the scaled model says what the original says"
                    );
                }
            }
        }
    }
}

#[test]
fn the_vision_tower_runs_once_per_distinct_image() {
    let setup = setup("examples/data/evqa.json", 3);
    let prepared: Vec<PreparedCase> = setup
        .cases
        .iter()
        .map(|c| PreparedCase::load(c).expect("images decode"))
        .collect();
    let opts = ProbeOptions {
        batch_size: 16,
        max_new_tokens: 16,
    };
    let mut features = FeatureCache::new();
    let adapters = mkedsl::model::Adapters::new();
    let first =
        observe(&setup.model, &adapters, &prepared, &opts, &mut features).expect("observes");
    let distinct = setup
        .cases
        .iter()
        .flat_map(|c| [&c.image, &c.image_rephrase, &c.m_loc])
        .map(|p| std::fs::read(p).expect("image file"))
        .collect::<std::collections::HashSet<_>>()
        .len();
    assert_eq!(features.misses, distinct);
    assert_eq!(features.len(), distinct);
    let again =
        observe(&setup.model, &adapters, &prepared, &opts, &mut features).expect("observes");
    assert_eq!(first, again);
    assert_eq!(
        features.misses, distinct,
        "the second observation computes no image"
    );
    assert!(features.hits > 0);
}
