//! The executor's numerics inside one edit, through its library API on the tiny fixture: ELoRA's
//! Eq. 8 leaves the model's function unchanged and training moves only `B`, inside the knowledge
//! space; LPEdit's updates stay in the null space and scale by 1/(1+λ); single editing restores
//! the model between cases; `--out` artefacts reproduce the edited model.

mod common;
mod exec_common;

use std::path::Path;

use candle_core::{DType, Tensor};
use common::max_abs_diff;
use exec_common::*;
use mkedsl::eval::{EditState, PreparedCase, Setup, SetupRequest};
use mkedsl::exec::cache::Cache;
use mkedsl::exec::executor::Log;
use mkedsl::exec::input::EditInput;
use mkedsl::exec::output;
use mkedsl::exec::preserve::PreserveSource;
use mkedsl::exec::values::Values;
use mkedsl::exec::{run, Executor};
use mkedsl::model::{
    Hooks, LinearSite, Llava, LlavaConfig, Proj, Readout, ResidualPoint, VisionLanguageModel,
};
use mkedsl::plan::PlanOptions;
use mkedsl::sema::NodeId;

struct Bench {
    _dir: tempfile::TempDir,
    setup: Setup,
    exec: Executor,
}

fn bench(text: &str, cases: usize) -> Bench {
    bench_with(text, cases, PlanOptions::default())
}

fn bench_with(text: &str, cases: usize, options: PlanOptions) -> Bench {
    let dir = tempfile::tempdir().expect("temp dir");
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), cases);
    let path = recipe(dir.path(), "r.edit", text);
    let dims = LlavaConfig::from_path(&model).expect("config").dims();
    let compiled = mkedsl::compile(&path, Some(&dims), options)
        .unwrap_or_else(|f| panic!("{}", f.render_plain()));
    let setup = Setup::load(&SetupRequest {
        model: Some(model.clone()),
        data: Some(data),
        ..SetupRequest::default()
    })
    .expect("setup");
    let exec = Executor::new(
        compiled.plan,
        setup.template.template.clone(),
        PreserveSource::resolve(&model, None, None),
        Cache::disabled(),
        Log::quiet(),
    );
    Bench {
        _dir: dir,
        setup,
        exec,
    }
}

impl Bench {
    fn edit(&mut self, state: &mut EditState, case: usize) -> (EditInput, Values) {
        let prepared = PreparedCase::load(&self.setup.cases[case]).expect("images");
        let input = EditInput::new(state, &prepared).expect("input");
        let values = self
            .exec
            .edit(state, &input)
            .unwrap_or_else(|e| panic!("{:?}", miette::Report::new(e)));
        (input, values)
    }
}

/// The id of the plan's first step running `op` (tests name steps by what they do, not by id).
fn step_of(plan: &mkedsl::plan::Plan, op: &str) -> NodeId {
    plan.steps
        .iter()
        .find(|s| s.op.name() == op)
        .unwrap_or_else(|| panic!("the plan has no `{op}` step"))
        .id
}

fn logits(state: &EditState<Llava>, input: &EditInput) -> Tensor {
    state
        .model
        .forward(
            &input.latents,
            &mut Hooks::new(),
            &state.adapters,
            &Readout::All,
        )
        .expect("forward")
}

/// `m (I − P)`: what of each row of `m` lies outside the subspace.
fn outside(m: &Tensor, space: &mkedsl::linalg::Subspace) -> f64 {
    let m = m.to_dtype(DType::F64).unwrap();
    let inside = space
        .project_rows(&m.to_dtype(space.basis().dtype()).unwrap())
        .unwrap();
    max_abs_diff(&m, &inside.to_dtype(DType::F64).unwrap())
}

const UP1: LinearSite = LinearSite {
    layer: 1,
    proj: Proj::Up,
};
const DOWN1: LinearSite = LinearSite {
    layer: 1,
    proj: Proj::Down,
};

#[test]
fn elora_keeps_the_function_at_init_and_trains_b_inside_the_knowledge_space() {
    let mut b = bench(ELORA, 2);
    let original = EditState::new(b.setup.model.clone());
    let mut state = original.clone();
    b.exec.prepare(&mut state).expect("prepare");
    // Eq. 8 with W ← W − BA: the weight moved, the function did not.
    let w0 = original.model.linear_weight(UP1).unwrap();
    let w1 = state.model.linear_weight(UP1).unwrap();
    assert!(
        max_abs_diff(&w0, &w1) > 1e-4,
        "W was not moved into the adapter"
    );
    let lora = state.adapters.loras(UP1)[0].clone();
    let ba = (lora.b.matmul(&lora.a).unwrap() * lora.scaling).unwrap();
    assert!(max_abs_diff(&(w1.clone() + ba).unwrap(), &w0) < 1e-5);
    let prepared_case = PreparedCase::load(&b.setup.cases[0]).unwrap();
    let probe = EditInput::new(&state, &prepared_case).unwrap();
    assert!(max_abs_diff(&logits(&original, &probe), &logits(&state, &probe)) < 1e-4);
    // A lies in the null space of the preserved inputs.
    let keep = b
        .exec
        .prepared
        .space(step_of(&b.exec.plan, "null_space"))
        .unwrap()
        .get(Some(1))
        .unwrap()
        .clone();
    assert!(outside(&lora.a, &keep) < 1e-4);

    let prepared = state.clone();
    let (_, values) = b.edit(&mut state, 0);
    let after = state.adapters.loras(UP1)[0].clone();
    // A frozen, W untouched, B moved — and only inside the knowledge space (SGD on projected
    // gradients: ΔB = −lr Σ g P, so ΔB (I − P) = 0).
    assert_eq!(max_abs_diff(&after.a, &lora.a), 0.0);
    assert_eq!(
        max_abs_diff(&state.model.linear_weight(UP1).unwrap(), &w1),
        0.0
    );
    let delta_b = (after.b.clone() - &lora.b).unwrap();
    assert!(max_abs_diff(&after.b, &lora.b) > 1e-4, "B did not train");
    let know = values
        .space(step_of(&b.exec.plan, "knowledge_space"))
        .unwrap()
        .get(Some(1))
        .unwrap()
        .clone();
    assert_eq!(know.rank(), 3);
    assert!(
        outside(&delta_b, &know) < 1e-5,
        "ΔB left the knowledge space"
    );
    // The snapshot taken before the edit still holds the prepared B (no in-place writes).
    let kept = prepared.adapters.loras(UP1)[0].clone();
    assert_eq!(max_abs_diff(&kept.b, &lora.b), 0.0);
}

const LPEDIT_SGD: &str = r#"
recipe "LPEdit sgd" { mode: single, seed: 0 }
use std.spaces
let tuned = layer(1).mlp.down_proj
let keep = preserved_null_space(tuned.input, over: preserve(text: 16, vqa: 8, caption: 8), below: 0.5)
per edit {
  train tuned.weight for 1 steps with sgd(lr: 0.1) {
    loss nll(target)
    project update tuned.weight onto keep scale: SCALE
  }
}
"#;

#[test]
fn lpedit_updates_stay_in_the_null_space_and_scale_by_one_over_one_plus_lambda() {
    // Adam, 20 steps (the LPEDIT recipe): every row of ΔW lies in the null space.
    let mut b = bench(LPEDIT, 1);
    let mut state = EditState::new(b.setup.model.clone());
    b.exec.prepare(&mut state).unwrap();
    let before = state.model.linear_weight(DOWN1).unwrap();
    b.edit(&mut state, 0);
    let delta = (state.model.linear_weight(DOWN1).unwrap() - &before).unwrap();
    let keep = b
        .exec
        .prepared
        .space(step_of(&b.exec.plan, "null_space"))
        .unwrap()
        .get(Some(1))
        .unwrap()
        .clone();
    assert!(
        max_abs_diff(&delta, &delta.zeros_like().unwrap()) > 1e-5,
        "no update"
    );
    assert!(outside(&delta, &keep) < 1e-5, "ΔW left the null space");

    // One SGD step: the update with scale 1/(1+λ) is exactly 1/(1+λ) times the one with scale 1.
    let delta_with = |scale: &str| {
        let mut b = bench(&LPEDIT_SGD.replace("SCALE", scale), 1);
        let mut state = EditState::new(b.setup.model.clone());
        b.exec.prepare(&mut state).unwrap();
        let before = state.model.linear_weight(DOWN1).unwrap();
        b.edit(&mut state, 0);
        (state.model.linear_weight(DOWN1).unwrap() - before).unwrap()
    };
    let full = delta_with("1");
    let scaled = delta_with("1 / (1 + 0.5)");
    assert!(max_abs_diff(&full, &full.zeros_like().unwrap()) > 1e-6);
    assert!(max_abs_diff(&(full * (1.0 / 1.5)).unwrap(), &scaled) < 1e-7);
}

/// Projecting one layer of a weight trained at several: only that layer's updates are
/// projected (sema resolves the projection to the trained tensor's layers).
#[test]
fn a_projection_of_one_layer_of_a_trained_weight_acts_on_that_layer_only() {
    let recipe = r#"
recipe "partial" { mode: single, seed: 0 }
use std.spaces
let keep = preserved_null_space(layer(1).mlp.down_proj.input, over: preserve(text: 16), below: 0.5)
per edit {
  train layers(0..2).mlp.down_proj.weight for 1 steps with sgd(lr: 0.1) {
    loss nll(target)
    project update layer(1).mlp.down_proj.weight onto keep
  }
}
"#;
    let mut b = bench(recipe, 1);
    let mut state = EditState::new(b.setup.model.clone());
    b.exec.prepare(&mut state).unwrap();
    let down = |layer| LinearSite {
        layer,
        proj: Proj::Down,
    };
    let before: Vec<Tensor> = (0..2)
        .map(|l| state.model.linear_weight(down(l)).unwrap())
        .collect();
    b.edit(&mut state, 0);
    let keep = b
        .exec
        .prepared
        .space(step_of(&b.exec.plan, "null_space"))
        .unwrap()
        .get(Some(1))
        .unwrap()
        .clone();
    let delta = |l: usize| (state.model.linear_weight(down(l)).unwrap() - &before[l]).unwrap();
    let (d0, d1) = (delta(0), delta(1));
    assert!(
        max_abs_diff(&d1, &d1.zeros_like().unwrap()) > 1e-6,
        "layer 1 did not move"
    );
    assert!(
        outside(&d1, &keep) < 1e-6,
        "layer 1's update left the space"
    );
    // Layer 0 is trained but not projected: its update is not confined to that space.
    assert!(outside(&d0, &keep) > 1e-4, "layer 0's update was projected");
}

#[test]
fn single_mode_restores_the_model_between_cases() {
    // Case 1 scored after case 0 was edited and undone must score as when edited alone. FT-L is
    // deterministic (no random draw), so the two runs must agree exactly.
    let dir = tempfile::tempdir().unwrap();
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), 2);
    let r = recipe(dir.path(), "ft.edit", FT_L);
    let both = run(&request(
        dir.path(),
        r.clone(),
        model.clone(),
        data.clone(),
        2,
    ))
    .unwrap();
    // A dataset holding only the second case.
    let text = std::fs::read_to_string(&data).unwrap();
    let records: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let alone = data.with_file_name("second.json");
    std::fs::write(&alone, serde_json::to_string(&records[1..]).unwrap()).unwrap();
    let one = run(&request(dir.path(), r, model, alone, 1)).unwrap();
    let (a, b) = (&both.report.per_case[1], &one.report.per_case[0]);
    assert_eq!(a.metrics, b.metrics);
    assert_eq!(a.generated, b.generated);
    assert_eq!(a.locality_all_positions, b.locality_all_positions);
}

#[test]
fn out_artefacts_reproduce_the_edited_model() {
    let mut b = bench(ELORA, 1);
    let original = EditState::new(b.setup.model.clone());
    let mut state = original.clone();
    b.exec.prepare(&mut state).unwrap();
    let (input, _) = b.edit(&mut state, 0);
    let artefact = output::capture(&state, &original).unwrap();
    assert_eq!(artefact.loras.len(), 1);
    assert_eq!(artefact.deltas.len(), 1, "W ← W − BA is a weight delta");
    let dir = tempfile::tempdir().unwrap();
    let provenance = output::Provenance {
        recipe: "ELoRA tiny".into(),
        recipe_file: "r.edit".into(),
        model: "tiny".into(),
        model_hash: "h".into(),
        mode: "single".into(),
        cases: vec![0],
    };
    let json = output::write(&dir.path().join("case-00000"), &artefact, &provenance).unwrap();
    assert!(json.is_file());
    let (back, prov) =
        output::read(&dir.path().join("case-00000"), &candle_core::Device::Cpu).unwrap();
    assert_eq!(prov, provenance);
    let mut applied = original.clone();
    output::apply(&back, &mut applied).unwrap();
    let edited = logits(&state, &input);
    assert!(max_abs_diff(&logits(&applied, &input), &edited) < 1e-4);
    assert!(
        max_abs_diff(&logits(&original, &input), &edited) > 1e-3,
        "the edit changed nothing"
    );
}

#[test]
fn run_writes_one_artefact_per_case_or_group() {
    let dir = tempfile::tempdir().unwrap();
    let model = embedded_model(dir.path());
    let data = dataset(dir.path(), 3);
    let r = recipe(dir.path(), "lora.edit", LORA);
    let out_dir = dir.path().join("edits");
    let mut req = request(dir.path(), r.clone(), model.clone(), data.clone(), 3);
    req.out = Some(out_dir.clone());
    let outcome = run(&req).unwrap();
    assert_eq!(outcome.artefacts.len(), 3);
    for (i, case) in outcome.report.per_case.iter().enumerate() {
        let folder = out_dir.join(format!("case-{:05}", case.index));
        let (artefact, prov) = output::read(&folder, &candle_core::Device::Cpu).unwrap();
        assert_eq!(prov.cases, vec![case.index], "artefact {i}");
        assert_eq!(artefact.loras.len(), 2);
        assert!(artefact.deltas.is_empty(), "plain LoRA leaves W alone");
    }
    let mut req = request(dir.path(), r, model, data, 3);
    let seq_dir = dir.path().join("seq");
    req.out = Some(seq_dir.clone());
    req.sequential = Some(true);
    req.k = Some(2);
    let outcome = run(&req).unwrap();
    assert_eq!(outcome.artefacts.len(), 2);
    let (_, first) = output::read(&seq_dir.join("group-0000"), &candle_core::Device::Cpu).unwrap();
    let (_, last) = output::read(&seq_dir.join("group-0001"), &candle_core::Device::Cpu).unwrap();
    assert_eq!((first.cases.len(), last.cases.len()), (2, 1));
    assert!(Path::new(&seq_dir)
        .join("group-0001/edit.safetensors")
        .is_file());
}

#[test]
fn unike_edit_state_is_adapter_data_restored_exactly_and_accumulated_sequentially() {
    // The fixture recipe edits layers(-2..): its memory and neurons sit in the last two layers.
    let mut b = bench(UNIKE, 2);
    let mut state = EditState::new(b.setup.model.clone());
    b.exec.prepare(&mut state).unwrap();
    let prepared = state.snapshot();
    let probe = {
        let case = PreparedCase::load(&b.setup.cases[1]).expect("images");
        EditInput::new(&state, &case).expect("input")
    };
    let before = logits(&state, &probe);
    let last = state.model.dims().num_layers - 1;
    let entries = |s: &EditState| s.adapters.memories_at(last)[0].entries();
    let neuron_sets = |s: &EditState| s.adapters.neurons_at(last).len();
    assert_eq!((entries(&state), neuron_sets(&state)), (48, 0));
    b.edit(&mut state, 0);
    // The edit joined the memory and brought its own regulated neurons, trained.
    assert_eq!((entries(&state), neuron_sets(&state)), (49, 1));
    let n = &state.adapters.neurons_at(last)[0];
    let reg = n.regulation.as_ref().expect("regulated by ζ");
    assert!(
        max_abs_diff(&reg.map, &reg.map.zeros_like().unwrap()) > 0.0,
        "W_ζ trained"
    );
    assert!(
        max_abs_diff(&n.values, &n.values.zeros_like().unwrap()) > 0.0,
        "V trained"
    );
    let shift = (n.effective_values().unwrap() - &n.values).unwrap();
    let want = (reg.map.matmul(&reg.zeta.unsqueeze(1).unwrap()).unwrap() * reg.beta)
        .unwrap()
        .squeeze(1)
        .unwrap();
    assert!(
        max_abs_diff(&shift.get(0).unwrap(), &want) < 1e-6,
        "V + β·W_ζ ζ"
    );
    assert!(
        max_abs_diff(&logits(&state, &probe), &before) > 0.0,
        "the edit changed the model"
    );
    // Sequential: the next edit builds on this one, with pairs of its own.
    let mut seq = state.clone();
    b.edit(&mut seq, 1);
    assert_eq!((entries(&seq), neuron_sets(&seq)), (50, 2));
    // Single: restoring returns the memory, the neurons and the logits exactly.
    state.restore(&prepared);
    assert_eq!((entries(&state), neuron_sets(&state)), (48, 0));
    assert_eq!(
        max_abs_diff(&logits(&state, &probe), &before),
        0.0,
        "bit for bit"
    );
}

#[test]
fn adversarial_variants_stay_in_the_budget_ball_and_raise_the_target_loss() {
    use mkedsl::exec::losses::per_row_nll;
    use mkedsl::exec::methods::asam::{adversarial, Search};
    use mkedsl::exec::rng;
    use mkedsl::model::batch::TokenKind;
    use mkedsl::sema::site::{Stream, StreamPoint};
    use mkedsl::sema::{AdvInit, BudgetScale, Norm};
    let b = bench(FT_L, 1);
    let state = EditState::new(b.setup.model.clone());
    let prepared = PreparedCase::load(&b.setup.cases[0]).unwrap();
    let edit = EditInput::new(&state, &prepared).unwrap();
    let stream = |point| Stream {
        path: "embed".into(),
        point,
        layers: None,
        width: None,
    };
    let latents = [
        stream(StreamPoint::EmbedVision),
        stream(StreamPoint::EmbedText),
    ];
    let eps = 0.5;
    let nll = |embeds: &Tensor, rows: usize| -> f64 {
        let logits = state
            .model
            .forward(
                &mkedsl::model::Latents {
                    embeds: embeds.clone(),
                    layout: edit.layout(rows),
                },
                &mut Hooks::new(),
                &state.adapters,
                &Readout::Positions(edit.target_readout(rows)),
            )
            .unwrap();
        per_row_nll(&logits, &edit.target, rows)
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    };
    let clean = nll(&edit.latents.embeds, 1);
    // ‖z‖₂ of the clean joint latent: every input column (image and prompt text).
    let z_norm: f64 = {
        let clean = edit.latents.embeds.to_vec3::<f32>().unwrap();
        (edit.input_columns())
            .flat_map(|c| clean[0][c].iter().map(|x| f64::from(*x).powi(2)))
            .sum::<f64>()
            .sqrt()
    };
    for (norm, scale) in [
        (Norm::L2, BudgetScale::Absolute),
        (Norm::Linf, BudgetScale::Absolute),
        (Norm::L2, BudgetScale::PerToken),
        (Norm::L2, BudgetScale::Relative),
    ] {
        let search = Search {
            budget: if scale == BudgetScale::Relative {
                0.01
            } else {
                eps
            },
            count: 3,
            steps: 2,
            init: AdvInit::Zero,
            norm,
            scale,
        };
        let v = adversarial(&edit, &latents, search, &state, &mut rng::stream(0, "t", 0)).unwrap();
        let delta = (v.latents.clone() - edit.repeated(3).unwrap()).unwrap();
        let rows = delta.to_vec3::<f32>().unwrap();
        for row in &rows {
            // Only input columns move; the target's tokens stay as they are.
            for (c, col) in row.iter().enumerate() {
                if !edit.input_columns().contains(&c) {
                    assert!(col.iter().all(|x| *x == 0.0), "target column {c} moved");
                }
            }
            let flat: Vec<f64> = row.iter().flatten().map(|x| f64::from(*x)).collect();
            let l2 = |xs: &[f64]| xs.iter().map(|x| x * x).sum::<f64>().sqrt();
            match (norm, scale) {
                (Norm::L2, BudgetScale::Absolute) => assert!(l2(&flat) <= eps + 1e-4),
                (Norm::L2, BudgetScale::PerToken) => {
                    for col in row {
                        let col: Vec<f64> = col.iter().map(|x| f64::from(*x)).collect();
                        assert!(l2(&col) <= eps + 1e-4, "a token's δ left its ball");
                    }
                    assert!(
                        l2(&flat) > eps,
                        "per-token balls allow more than one ε overall"
                    );
                }
                (Norm::L2, BudgetScale::Relative) => {
                    assert!(l2(&flat) <= 0.01 * z_norm * (1.0 + 1e-4) + 1e-6)
                }
                _ => assert!(flat.iter().all(|x| x.abs() <= eps + 1e-6)),
            }
            assert!(flat.iter().any(|x| *x != 0.0));
        }
        // Both streams were perturbed.
        let kinds = edit.kinds();
        let moved = |k: TokenKind| {
            (0..edit.len()).any(|c| kinds[c] == k && rows[0][c].iter().any(|x| *x != 0.0))
        };
        assert!(moved(TokenKind::Visual) && moved(TokenKind::Text));
        assert!(
            nll(&v.latents, 3) > clean,
            "{norm:?} {scale:?}: ascent did not raise the loss"
        );
    }
}

const FT_LAST_WITH_KL: &str = r#"
recipe "FT-L with KL" { mode: single, seed: 0 }
per edit {
  train layer(-1).mlp.down_proj.weight for 4 steps with adam(lr: 1e-3) {
    loss nll(target) + 0.5 * kl_to_original(over: preserve(text: 4, vqa: 4))
  }
}
"#;

const LORA_AT_1: &str = r#"
recipe "LoRA at 1" { mode: single, seed: 0 }
use std.lora
let down = plain_lora(layer(1).mlp.down_proj, rank: 4, alpha: 8)
per edit {
  train [down] for 4 steps with adam(lr: 1e-2) {
    loss nll(target)
  }
}
"#;

const ASAM_LAST: &str = r#"
recipe "ASAM-like" { mode: single, seed: 0 }
use std.asam
per edit {
  train layer(-1).mlp.down_proj.weight for 3 steps with adam(lr: 1e-3) {
    let adversaries = lar(budget: 1e-1, count: 2)
    loss with_alignment(
      nll(target) + kl_to_original(over: preserve(text: 2, vqa: 2)),
      layer(-1).output,
      adversaries,
      tau: 4,
      beta: 10,
    )
  }
}
"#;

const LORA_ON_ATTENTION_AND_FFN: &str = r#"
recipe "LoRA on q and down at 1" { mode: single, seed: 0 }
use std.lora
let q = plain_lora(layer(1).attn.q_proj, rank: 4, alpha: 8)
let down = plain_lora(layer(1).mlp.down_proj, rank: 4, alpha: 8)
per edit {
  train [q, down] for 4 steps with adam(lr: 1e-2) {
    loss nll(target)
  }
}
"#;

/// UniKE's neurons with the edit remembered at every step: the memory every memory layer reads
/// changes between steps, so nothing before the neurons is frozen.
const REMEMBER_IN_BODY: &str = r#"
recipe "remember in the body" { mode: single, seed: 0 }
use std.unike
let at = layers(-2..)
let memory = incontext_memory(hallucinations(count: 12), at: at.input)
let encoders = contrastive_encoders(memory, hidden: 8, depth: 2, lr: 1e-3, steps: 5, batch: 8)
let icl = gated_icl(at.attn.output, memory, top_k: 4, encoders: encoders)
per edit {
  let neurons = regulated_neurons(at, count: 3, encoders: encoders, beta: 0.1)
  train neurons for 2 steps with adam(lr: 1e-2) {
    remember(memory)
    loss nll(target)
  }
}
"#;

/// Trains with the plan's frozen prefix (what lies before the trained tensors runs once per
/// case) and without it; the edited models must agree.
fn edit_with_and_without_prefix(text: &str) -> (Option<ResidualPoint>, usize, f64) {
    let without = PlanOptions {
        reuse_frozen_prefix: false,
        ..PlanOptions::default()
    };
    let mut outcomes = Vec::new();
    let (mut first, mut layers) = (None, 0);
    for options in [PlanOptions::default(), without] {
        let mut b = bench_with(text, 1, options);
        let train = step_of(&b.exec.plan, "train");
        let prefix = b.exec.plan.step(train).unwrap().frozen_prefix;
        layers = b.exec.plan.model.as_ref().unwrap().num_layers;
        if options.reuse_frozen_prefix {
            first = prefix;
        } else {
            assert_eq!(prefix, None);
        }
        let mut state = EditState::new(b.setup.model.clone());
        b.exec.prepare(&mut state).unwrap();
        let (input, _) = b.edit(&mut state, 0);
        outcomes.push(logits(&state, &input));
    }
    (first, layers, max_abs_diff(&outcomes[0], &outcomes[1]))
}

#[test]
fn a_frozen_prefix_gives_the_same_edit_as_whole_passes() {
    let past_attention = |layer| {
        Some(ResidualPoint {
            layer,
            past_attention: true,
        })
    };
    // FT-L of the last layer, with a KL term over preserved samples: every layer below it and
    // the last layer's attention once.
    let (first, layers, diff) = edit_with_and_without_prefix(FT_LAST_WITH_KL);
    assert!(layers > 1);
    assert_eq!(first, past_attention(layers - 1));
    assert!(diff < 1e-5, "FT-L logits differ by {diff}");
    // A LoRA on layer 1's down projection: layer 0 and layer 1's attention once.
    let (first, _, diff) = edit_with_and_without_prefix(LORA_AT_1);
    assert_eq!(first, past_attention(1));
    assert!(diff < 1e-5, "LoRA logits differ by {diff}");
    // One more on layer 1's query projection: the steps run layer 1's attention again.
    let (first, _, diff) = edit_with_and_without_prefix(LORA_ON_ATTENTION_AND_FFN);
    let at_input = ResidualPoint {
        layer: 1,
        past_attention: false,
    };
    assert_eq!(first, Some(at_input));
    assert!(diff < 1e-5, "LoRA logits differ by {diff}");
    // ASAM on the last layer: the clean row and the preserved samples start from the prefix,
    // the adversarial variants (drawn in the body, perturbed at the input) run whole.
    let (first, layers, diff) = edit_with_and_without_prefix(ASAM_LAST);
    assert_eq!(first, past_attention(layers - 1));
    assert!(diff < 1e-5, "ASAM logits differ by {diff}");
    // UniKE on the last two layers (memory reads in their attention, neurons in their FFNs):
    // the first memory layer's attention, its retrieval and memory read included, once.
    let (first, layers, diff) = edit_with_and_without_prefix(UNIKE);
    assert_eq!(first, past_attention(layers - 2));
    assert!(diff < 1e-5, "UniKE logits differ by {diff}");
    // The same neurons with `remember` in the train body: no prefix.
    let b = bench_with(REMEMBER_IN_BODY, 1, PlanOptions::default());
    let train = step_of(&b.exec.plan, "train");
    assert_eq!(b.exec.plan.step(train).unwrap().frozen_prefix, None);
}
