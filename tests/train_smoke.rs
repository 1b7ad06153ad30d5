//! The trainer end to end on a tiny model: the loss falls, the saved model loads back with the
//! same logits, and a run resumed from a checkpoint continues exactly where it stopped.

use candle_core::Tensor;
use image::DynamicImage;
use mkedsl::data::prompt::PromptTemplate;
use mkedsl::model::{Adapters, Hooks, Llava, LoadOptions, PadSide, Readout, VisionLanguageModel};
use mkedsl::train::checkpoint::{load_checkpoint, save_checkpoint, TrainState};
use mkedsl::train::{
    batch_loss, step_conversations, step_examples, train, AdamW, AdamWConfig, LrSchedule,
    ModelSpec, TrainOptions,
};
use mkedsl::world::{train_tokenizer, World};

mod common;

fn tiny_options(out: std::path::PathBuf, steps: usize) -> TrainOptions {
    TrainOptions {
        spec: ModelSpec::tiny(),
        batch: 8,
        schedule: LrSchedule {
            peak: 1e-2,
            warmup: 2,
            total: steps,
            floor: 0.1,
        },
        eval_every: 0,
        eval_per_family: 2,
        checkpoint_every: 0,
        log_every: 5,
        ..TrainOptions::embedded(out, steps)
    }
}

#[test]
fn a_few_steps_lower_the_loss_and_the_saved_model_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("model");
    let mut lines = Vec::new();
    let summary = train(&tiny_options(out.clone(), 30), &mut |l| {
        lines.push(l.to_string())
    })
    .unwrap();
    assert_eq!(summary.steps, 30);
    let first = summary.history.first().unwrap().loss;
    let last = summary.history.last().unwrap().loss;
    assert!(last < 0.8 * first, "loss {first} → {last}");
    assert!(
        lines.iter().any(|l| l.starts_with("step     30/30")),
        "{lines:?}"
    );
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "preprocessor_config.json",
        "processor_config.json",
        "chat_template.jinja",
        "training.json",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    assert!(
        !out.join("checkpoint").exists(),
        "checkpoints are removed after a finished run"
    );
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("training.json")).unwrap()).unwrap();
    assert_eq!(record["steps"], 30);
    assert_eq!(
        record["knowledge"]["families"].as_array().map(Vec::len),
        Some(9)
    );

    // The saved checkpoint loads through the ordinary loader and computes what the trained
    // model computed (same greedy answer, same logits).
    let loaded = Llava::load(&out, &LoadOptions::default()).unwrap();
    let again = Llava::load(&out, &LoadOptions::default()).unwrap();
    let world = World::new(0);
    let example = &world.held_out(mkedsl::world::Family::Colour, 1, 0)[0];
    let image = DynamicImage::ImageRgb8(example.image.unwrap().render());
    let prompt = PromptTemplate::llava15().prompt(&example.question, true);
    let logits = |m: &Llava| -> Vec<f32> {
        let enc = m.encode(&prompt, std::slice::from_ref(&image)).unwrap();
        let batch = m.batch(&[enc], PadSide::Right).unwrap();
        let lat = m.embed(&batch).unwrap();
        m.forward(&lat, &mut Hooks::new(), &Adapters::new(), &Readout::Last)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    assert_eq!(logits(&loaded), logits(&again));
    assert_eq!(loaded.config().image_tokens(), 9);
}

#[test]
fn a_resumed_run_continues_exactly() {
    let world = World::new(0);
    let dir = tempfile::tempdir().unwrap();
    let options = tiny_options(dir.path().to_path_buf(), 6);
    let template = PromptTemplate::llava15();
    let fresh = || {
        ModelSpec::tiny()
            .fresh(train_tokenizer(&world).unwrap(), 7)
            .unwrap()
    };
    let run = |llava: &Llava, opt: &mut AdamW, steps: std::ops::Range<usize>| {
        for step in steps {
            let batch = batch_loss(
                llava,
                &template,
                &step_conversations(&world, &options, step),
            )
            .unwrap();
            opt.step(&batch.loss.backward().unwrap(), 1e-2).unwrap();
        }
    };
    let weights = |llava: &Llava| -> Vec<f32> {
        let all: Vec<Tensor> = llava
            .model
            .named_tensors()
            .into_iter()
            .map(|(_, t)| t.flatten_all().unwrap())
            .collect();
        Tensor::cat(&all, 0).unwrap().to_vec1().unwrap()
    };

    let (llava, varmap) = fresh();
    let mut opt = AdamW::new(&varmap, AdamWConfig::default()).unwrap();
    run(&llava, &mut opt, 0..3);
    let state = TrainState {
        step: 3,
        ..TrainState::default()
    };
    save_checkpoint(dir.path(), &llava, &opt, &state).unwrap();
    run(&llava, &mut opt, 3..5);

    let (resumed, mut resumed_map) = fresh();
    let mut resumed_opt = AdamW::new(&resumed_map, AdamWConfig::default()).unwrap();
    let loaded = load_checkpoint(dir.path(), &mut resumed_map, &mut resumed_opt)
        .unwrap()
        .unwrap();
    assert_eq!(loaded.step, 3);
    assert_eq!(resumed_opt.steps(), 3);
    run(&resumed, &mut resumed_opt, 3..5);
    assert_eq!(weights(&resumed), weights(&llava));
}

#[test]
fn step_batches_are_reproducible_and_differ_between_steps() {
    let world = World::new(0);
    let options = tiny_options("unused".into(), 10);
    assert_eq!(
        step_examples(&world, &options, 4),
        step_examples(&world, &options, 4)
    );
    assert_ne!(
        step_examples(&world, &options, 4),
        step_examples(&world, &options, 5)
    );
    assert_eq!(step_examples(&world, &options, 0).len(), 8);
}

#[test]
fn nonsense_options_are_diagnostics() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = tiny_options(dir.path().to_path_buf(), 0);
    assert!(train(&options, &mut |_| {}).is_err());
    options.steps = 3;
    options.schedule.peak = -1.0;
    let err = train(&options, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("learning rate"), "{err}");
}

/// The largest absolute difference between same-named tensors whose name starts with `prefix`.
fn max_change(a: &Llava, b: &Llava, prefix: &str) -> f64 {
    let before: std::collections::HashMap<String, Tensor> =
        a.model.named_tensors().into_iter().collect();
    let changes: Vec<f64> = b
        .model
        .named_tensors()
        .into_iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(name, t)| common::max_abs_diff(&t, &before[&name]))
        .collect();
    assert!(!changes.is_empty(), "no tensor under {prefix}");
    changes.into_iter().fold(0.0, f64::max)
}

/// Stage 1 (`--vision-steps`) trains the vision tower; `--freeze-vision` leaves it as stage 1
/// left it while the projector and decoder learn.
#[test]
fn vision_pretraining_trains_the_tower_and_freezing_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let fresh = |seed| {
        let tok = train_tokenizer(&World::new(0)).unwrap();
        ModelSpec::tiny().fresh(tok, seed).unwrap().0
    };
    let run = |name: &str, pretrain: bool| {
        let out = dir.path().join(name);
        let mut options = tiny_options(out.clone(), 4);
        options.freeze_vision = true;
        options.pretrain = pretrain.then_some(mkedsl::train::PretrainOptions {
            steps: 4,
            batch: 8,
            schedule: LrSchedule {
                peak: 1e-2,
                warmup: 1,
                total: 4,
                floor: 0.1,
            },
        });
        let summary = train(&options, &mut |_| {}).unwrap();
        (summary, Llava::load(&out, &LoadOptions::default()).unwrap())
    };
    let initial = fresh(tiny_options(dir.path().into(), 4).seed);

    let (summary, frozen) = run("frozen", false);
    assert!(summary.vision.is_none());
    assert_eq!(max_change(&initial, &frozen, "vision_tower."), 0.0);
    assert!(max_change(&initial, &frozen, "multi_modal_projector.") > 0.0);

    let (summary, pretrained) = run("pretrained", true);
    let vision = summary.vision.expect("stage 1 ran");
    assert_eq!(vision.steps, 4);
    assert_eq!(
        vision.accuracy.len(),
        mkedsl::train::pretrain::ATTRIBUTES.len()
    );
    assert!(vision.accuracy.iter().all(|(_, a)| (0.0..=1.0).contains(a)));
    assert!(max_change(&initial, &pretrained, "vision_tower.") > 0.0);
}
