//! Every shipped recipe checks and plans, with and without a bound model; the bound plans are
//! snapshotted as the numbered lines `mkedsl plan` prints, and the plans keep their invariants.

use std::path::{Path, PathBuf};

use mkedsl::model::config::{LlavaConfig, ModelDims};
use mkedsl::plan::{Device, Plan, PlanOptions, Stage};
use mkedsl::sema::ops;
use mkedsl::sema::{Op, ProjectKind};

fn fixture_dims() -> ModelDims {
    LlavaConfig::from_path(Path::new("tests/fixtures/lang"))
        .expect("fixture config")
        .dims()
}

fn recipes() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir("recipes")
        .expect("recipes folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().map(|x| x == "edit").unwrap_or(false))
        .collect();
    files.sort();
    files
}

fn plan_of(path: &Path, dims: Option<&ModelDims>, device: Device) -> Plan {
    let options = PlanOptions {
        device,
        ..PlanOptions::default()
    };
    match mkedsl::compile(path, dims, options) {
        Ok(compiled) => compiled.plan,
        Err(failed) => panic!(
            "{} does not check:\n{}",
            path.display(),
            failed.render_plain()
        ),
    }
}

const SHIPPED: &[&str] = &[
    "asam",
    "elora",
    "elora_asam",
    "ft_l",
    "lora",
    "lora_null",
    "lpedit",
    "unike",
];

#[test]
fn every_required_recipe_is_shipped() {
    let names: Vec<String> = recipes()
        .iter()
        .filter_map(|p| p.file_stem().and_then(|s| s.to_str()).map(str::to_string))
        .collect();
    for name in SHIPPED {
        assert!(
            names.iter().any(|n| n == name),
            "recipes/{name}.edit is missing"
        );
    }
}

/// The plan as `mkedsl plan` prints it, with each cache digest replaced by `‹digest›`: the
/// digests hash the key's wording and are pinned separately ([`cache_keys_are_stable`]).
fn display_without_digests(plan: &Plan) -> String {
    let text = plan.display();
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(at) = rest.find("· cache ") {
        let (head, tail) = rest.split_at(at + "· cache ".len());
        out.push_str(head);
        out.push_str("‹digest›");
        rest = tail.trim_start_matches(|c: char| c.is_ascii_hexdigit());
    }
    out.push_str(rest);
    out
}

fn name_of(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("recipe")
        .to_string()
}

/// One test per shipped recipe: the bound plan as printed, its invariants, and the same steps
/// without a model.
#[rstest::rstest]
fn shipped_recipe_plans(#[files("recipes/*.edit")] path: PathBuf) {
    let path = path
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(&path)
        .to_path_buf();
    let bound = plan_of(&path, Some(&fixture_dims()), Device::Cpu);
    insta::assert_snapshot!(
        format!("plan_{}", name_of(&path)),
        display_without_digests(&bound)
    );
    assert_well_formed(&plan_of(&path, Some(&fixture_dims()), Device::Cuda), &path);
    let unbound = plan_of(&path, None, Device::Cpu);
    assert_eq!(bound.steps.len(), unbound.steps.len());
    assert!(unbound.model.is_none());
    // Shapes that depend on the model are unknown without one.
    for step in &unbound.steps {
        if matches!(
            step.op,
            Op::Covariance(_) | Op::NullSpace(_) | Op::IncontextMemory(_)
        ) {
            assert_eq!(step.output.as_ref().and_then(|o| o.shape.clone()), None);
        }
    }
}

/// One test per ablation recipe (`recipes/ablations/`): it checks, plans and keeps the
/// invariants; its bound plan is snapshotted like the shipped ones.
#[rstest::rstest]
fn ablation_recipe_plans(#[files("recipes/ablations/*.edit")] path: PathBuf) {
    let path = path
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(&path)
        .to_path_buf();
    let bound = plan_of(&path, Some(&fixture_dims()), Device::Cpu);
    insta::assert_snapshot!(
        format!("plan_ablation_{}", name_of(&path)),
        display_without_digests(&bound)
    );
    assert_well_formed(&plan_of(&path, Some(&fixture_dims()), Device::Cuda), &path);
    assert_eq!(
        plan_of(&path, None, Device::Cpu).steps.len(),
        bound.steps.len()
    );
}

/// The JSON form is the executor's input; pin one complete plan (digests blanked).
#[test]
fn lpedit_plan_as_json() {
    let plan = plan_of(
        Path::new("recipes/lpedit.edit"),
        Some(&fixture_dims()),
        Device::Cuda,
    );
    let mut json = serde_json::to_value(&plan).expect("plan as JSON");
    if let Some(steps) = json.get_mut("steps").and_then(|s| s.as_array_mut()) {
        for step in steps {
            if let Some(digest) = step.pointer_mut("/cache/digest") {
                *digest = serde_json::Value::String("‹digest›".into());
            }
        }
    }
    insta::assert_json_snapshot!("plan_lpedit_json", json);
}

/// A cache key names the computation, not the recipe's wording: renaming variables, moving
/// comments and re-spelling a number leave every key (and its digest) unchanged; changing what
/// is computed changes it.
#[test]
fn cache_keys_are_stable() {
    let dims = fixture_dims();
    let dir = tempfile::tempdir().expect("temp dir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write recipe");
        p
    };
    let keys = |path: &Path| -> Vec<(String, String)> {
        plan_of(path, Some(&dims), Device::Cpu)
            .steps
            .iter()
            .filter_map(|s| {
                s.cache
                    .as_ref()
                    .map(|k| (k.recipe.clone(), k.digest.clone()))
            })
            .collect()
    };
    let original = write(
        "a.edit",
        "recipe \"A\" { seed: 3 }\nlet w = layer(1).mlp.down_proj\nlet keep = null_space(covariance(w.input, over: preserve(text: 16)), below: 0.5)\nper edit {\n  train w.weight for 2 steps with sgd(lr: 0.1) {\n    loss nll(target)\n    project grad w.weight onto keep\n  }\n}\n",
    );
    let reworded = write(
        "b.edit",
        "# the same computation, written differently\nrecipe \"B\" { seed: 3 }\nlet site = layer(1).mlp.down_proj\nlet cov = covariance(site.input, over: preserve(text: 16))\nlet space = null_space(cov, below: 5e-1)\nper edit {\n  train site.weight for 9 steps with adam(lr: 0.1) {\n    loss nll(target)\n    project grad site.weight onto space\n  }\n}\n",
    );
    let other_data = write(
        "c.edit",
        &std::fs::read_to_string(&original)
            .expect("read")
            .replace("text: 16", "text: 17"),
    );
    let a = keys(&original);
    assert_eq!(a.len(), 2, "covariance and null space are cached: {a:?}");
    assert_eq!(a, keys(&reworded));
    // The digest is the start of sha256(key), pinned so that a change of wording in the keys
    // themselves (which would orphan every user's cache) is a visible decision.
    insta::assert_debug_snapshot!("cache_keys", a);
    let c = keys(&other_data);
    assert!(a.iter().zip(&c).all(|(x, y)| x != y), "{a:?}\n{c:?}");
}

fn assert_well_formed(plan: &Plan, shown: &Path) {
    let shown = shown.display();
    for (i, step) in plan.steps.iter().enumerate() {
        assert_eq!(step.id.0 as usize, i, "{shown}: ids follow execution order");
        for input in &step.inputs {
            assert!(
                input.0 < step.id.0,
                "{shown}: step {} reads the later step {input}",
                step.id
            );
        }
        match step.stage {
            Stage::PerStep => {
                let parent = step.parent.expect("per-step steps have a parent");
                let train = plan.step(parent).expect("the parent exists");
                assert!(
                    matches!(&train.op, Op::Train(ops::Train { body, .. }) if body.contains(&step.id)),
                    "{shown}"
                );
            }
            _ => assert!(step.parent.is_none(), "{shown}"),
        }
        if step.cache.is_some() {
            assert_eq!(
                step.stage,
                Stage::Prepare,
                "{shown}: only prepare steps are cached"
            );
        }
        let on_cpu = matches!(step.op, Op::NullSpace(_) | Op::TopSpace(_));
        assert_eq!(
            step.device,
            if on_cpu { Device::Cpu } else { Device::Cuda },
            "{shown}"
        );
    }
    // Stages come in order: prepare, then the edit loop.
    let stages: Vec<Stage> = plan.steps.iter().map(|s| s.stage).collect();
    let first_edit = stages
        .iter()
        .position(|s| *s != Stage::Prepare)
        .unwrap_or(stages.len());
    assert!(
        stages[first_edit..].iter().all(|s| *s != Stage::Prepare),
        "{shown}: prepare steps after the loop"
    );
}

/// LPEdit's projection reaches the train step with the paper's 1/(1+λ), on the weight it trains.
#[test]
fn lpedit_projects_its_updates_with_the_papers_scale() {
    let lpedit = plan_of(
        Path::new("recipes/lpedit.edit"),
        Some(&fixture_dims()),
        Device::Cpu,
    );
    let projections = lpedit
        .steps
        .iter()
        .find_map(|s| match &s.op {
            Op::Train(ops::Train { projections, .. }) => Some(projections.clone()),
            _ => None,
        })
        .expect("a train step");
    assert_eq!(projections.len(), 1);
    assert_eq!(projections[0].kind, ProjectKind::Update);
    assert_eq!(projections[0].param, 0);
    assert_eq!(projections[0].layers, None);
    assert_eq!(projections[0].scale, 1.0 / 1.5);
}
