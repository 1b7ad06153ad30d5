//! Behaviour of the checker and the planner that the snapshot corpora do not pin down:
//! hoisting, caching, layer resolution, function hygiene, the stdlib and the reference.

use std::path::Path;

use mkedsl::model::config::{LlavaConfig, ModelDims};
use mkedsl::plan::{Plan, PlanOptions, Stage};
use mkedsl::sema::ops;
use mkedsl::sema::{self, Library, Mode, Op};
use mkedsl::source::SourceMap;

fn dims() -> ModelDims {
    LlavaConfig::from_path(Path::new("tests/fixtures/lang/config.json"))
        .expect("fixture")
        .dims()
}

fn plan(text: &str, dims: Option<&ModelDims>) -> Plan {
    match mkedsl::compile_text("t.edit", text, dims, PlanOptions::default()) {
        Ok(c) => c.plan,
        Err(f) => panic!("does not check:\n{}", f.render_plain()),
    }
}

fn errors(text: &str, dims: Option<&ModelDims>) -> String {
    match mkedsl::compile_text("t.edit", text, dims, PlanOptions::default()) {
        Ok(_) => panic!("should not check:\n{text}"),
        Err(f) => f.render_plain(),
    }
}

const HEADER: &str = "recipe \"T\" { paper: \"test\" }\n";

#[test]
fn edit_independent_work_is_hoisted_out_of_the_loop() {
    let p = plan(
        &format!(
            "{HEADER}let w = layer(1).mlp.down_proj
per edit {{
  let keep = null_space(covariance(w.input, over: preserve(text: 8)), below: 0.02)
  let ab = lora(w, rank: 4, init: null_space_svd(keep))
  let v = perturb([noise_text(sigma: 0.01)], count: 8)
  let know = knowledge_space(ab.B.input, variants: v, top: 2, keep_above: 0.05, rank: 2)
  train ab.B for 3 steps with sgd(lr: 0.1) {{
    loss nll(target)
    project grad ab.B onto know
  }}
  let after = covariance(w.input, over: preserve(vqa: 8))
}}"
        ),
        None,
    );
    let stage_of = |name: &str| -> Vec<(Stage, bool)> {
        p.steps
            .iter()
            .filter(|s| s.op.name() == name)
            .map(|s| (s.stage, s.hoisted))
            .collect()
    };
    // Covariance and null space depend on nothing per edit: hoisted, in written order.
    assert_eq!(stage_of("null_space"), vec![(Stage::Prepare, true)]);
    // An adapter written in `per edit` is attached per edit (sequential edits each get one).
    assert_eq!(stage_of("lora"), vec![(Stage::PerEdit, false)]);
    // The perturbed variants read the edit case; the knowledge space reads them.
    assert_eq!(stage_of("perturb"), vec![(Stage::PerEdit, false)]);
    assert_eq!(stage_of("knowledge_space"), vec![(Stage::PerEdit, false)]);
    // A covariance written after training reads the trained model: it stays per edit.
    assert_eq!(
        stage_of("covariance"),
        vec![(Stage::Prepare, true), (Stage::PerEdit, false)]
    );
    let lora_at = p
        .steps
        .iter()
        .position(|s| s.op.name() == "lora")
        .unwrap_or(0);
    let null_at = p
        .steps
        .iter()
        .position(|s| s.op.name() == "null_space")
        .unwrap_or(usize::MAX);
    assert!(null_at < lora_at);
}

#[test]
fn only_statistics_of_the_unedited_model_are_cached() {
    let p = plan(
        &format!(
            "{HEADER}let m = incontext_memory(hallucinations(count: 50), at: layers(-2..).input)
let enc = contrastive_encoders(m, hidden: 8, depth: 1, lr: 1e-3, steps: 5)
let before = covariance(layer(0).mlp.act, over: preserve(text: 4))
let icl = latent_icl(layers(-2..).attn.output, memory: m, top_k: 3, alpha: semantic_gate(enc))
let after = covariance(layer(0).mlp.act, over: preserve(text: 4))
let ab = lora(layer(0).mlp.down_proj, rank: 4)
let inside = covariance(ab.B.input, over: preserve(text: 4))
"
        ),
        Some(&dims()),
    );
    let cached: Vec<(String, bool)> = p
        .steps
        .iter()
        .map(|s| (s.op.name().to_string(), s.cache.is_some()))
        .collect();
    assert_eq!(
        cached,
        vec![
            ("incontext_memory".to_string(), true),
            ("contrastive_encoders".to_string(), true),
            ("covariance".to_string(), true),
            ("latent_icl".to_string(), false),
            ("covariance".to_string(), false),
            ("lora".to_string(), false),
            ("covariance".to_string(), false),
        ]
    );
    // Same computation, same key; the key names the resolved site, the data and the seed.
    let key = p
        .steps
        .get(2)
        .and_then(|s| s.cache.clone())
        .map(|k| k.recipe)
        .unwrap_or_default();
    assert_eq!(
        key,
        "covariance(stream: layer(0).mlp.act; over: preserve(text: 4); seed: 0)"
    );
}

#[test]
fn negative_layers_resolve_against_the_model() {
    let p = plan(
        &format!("{HEADER}let n = extra_neurons(layer(-1).mlp, count: 2)\n"),
        Some(&dims()),
    );
    match &p.steps.first().map(|s| s.op.clone()) {
        Some(Op::ExtraNeurons(ops::ExtraNeurons { site, .. })) => {
            assert_eq!(site.layers.resolved, Some(vec![5]))
        }
        other => panic!("{other:?}"),
    }
    let unbound = plan(
        &format!("{HEADER}let n = extra_neurons(layer(-1).mlp, count: 2)\n"),
        None,
    );
    match &unbound.steps.first().map(|s| s.op.clone()) {
        Some(Op::ExtraNeurons(ops::ExtraNeurons { site, .. })) => {
            assert_eq!(site.layers.resolved, None)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn functions_are_hygienic_and_take_defaults() {
    let ok = plan(
        &format!(
            "{HEADER}fn adapter(site: Linear, rank: Int = 4) -> Adapter {{
  let inner = lora(site, rank: rank)
  inner
}}
let a = adapter(layer(1).mlp.up_proj)
let b = adapter(layer(2).mlp.up_proj, rank: 8)
"
        ),
        None,
    );
    let ranks: Vec<usize> = ok
        .steps
        .iter()
        .filter_map(|s| match s.op {
            Op::Lora(ops::Lora { rank, .. }) => Some(rank),
            _ => None,
        })
        .collect();
    assert_eq!(ranks, vec![4, 8]);
    let leak = errors(
        &format!("{HEADER}fn f() -> Int {{\n  let hidden_value = 1\n  hidden_value\n}}\nlet x = f()\nlet y = hidden_value\n"),
        None,
    );
    assert!(leak.contains("unknown name `hidden_value`"), "{leak}");
}

#[test]
fn sequential_mode_carries_its_sequence_length() {
    let p = plan(
        "recipe \"S\" { paper: \"unike\", mode: sequential, sequential_k: 10 }\n",
        None,
    );
    assert_eq!(p.recipe.mode, Mode::Sequential { k: 10 });
    assert!(p.steps.is_empty());
    assert_eq!(p.metrics.len(), 5, "evaluate defaults to all five metrics");
}

#[test]
fn every_stdlib_module_loads_cleanly() {
    for (name, _) in Library::std().modules {
        plan(&format!("{HEADER}use std.{name}\n"), None);
    }
}

#[test]
fn a_stdlib_module_cannot_have_a_header_or_statements() {
    let library = Library {
        modules: vec![(
            "broken".to_string(),
            "recipe \"X\" { paper: \"x\" }\nlet l = layer(1)\nfn ok() -> Int { 1 }\n".to_string(),
        )],
    };
    let mut sources = SourceMap::new();
    let id = sources.add("t.edit", format!("{HEADER}use std.broken\n"), false);
    let tree = mkedsl::syntax::parse(&sources, id).expect("parses");
    let err = sema::check_with(&tree, &mut sources, None, &library).expect_err("must fail");
    let text = err.render_plain(&sources);
    assert!(
        text.contains("a stdlib module cannot have a recipe header"),
        "{text}"
    );
    assert!(
        text.contains("a stdlib module only defines functions"),
        "{text}"
    );
    assert!(text.contains("[stdlib/broken.edit:1:1]"), "{text}");
}

#[test]
fn an_unknown_model_family_is_refused_at_the_first_site() {
    let mut d = dims();
    d.family = "mystery".into();
    let text = errors(&format!("{HEADER}let l = layer(1)\n"), Some(&d));
    assert!(
        text.contains("model family `mystery` has no site table"),
        "{text}"
    );
}

#[test]
fn deep_function_chains_and_nesting_end_in_a_diagnostic() {
    // Sixteen functions, each nesting its call in brackets: deeper than the checker allows.
    let mut src = HEADER.to_string();
    src.push_str("fn f0(x: Int) -> Int { x }\n");
    for i in 1..=16 {
        let open = "(".repeat(20);
        let close = ")".repeat(20);
        src.push_str(&format!(
            "fn f{i}(x: Int) -> Int {{ {open}f{}(x){close} }}\n",
            i - 1
        ));
    }
    src.push_str("let y = f16(1)\n");
    let text = errors(&src, None);
    assert!(
        text.contains("nest too deeply") || text.contains("more than 16 deep"),
        "{text}"
    );
}

#[test]
fn a_flood_of_errors_is_capped() {
    let mut src = HEADER.to_string();
    for i in 0..60 {
        src.push_str(&format!("let x{i} = nope{i}\n"));
    }
    let text = errors(&src, None);
    assert!(text.contains("20 more errors not shown"), "{text}");
}

#[test]
fn the_reference_documents_every_builtin_and_op() {
    let reference = std::fs::read_to_string("grammar/REFERENCE.md").expect("grammar/REFERENCE.md");
    for (signature, _) in sema::builtin_signatures() {
        let name = signature.split('(').next().unwrap_or_default();
        assert!(
            reference.contains(&format!("### `{name}`")),
            "REFERENCE.md has no section for `{name}`"
        );
        assert!(
            reference.contains(&signature),
            "REFERENCE.md does not show the signature `{signature}`"
        );
    }
    for op in [
        "covariance",
        "null_space",
        "top_space",
        "knowledge_space",
        "lora",
        "extra_neurons",
        "latent_icl",
        "freeze",
        "perturb",
        "adversarial",
        "incontext_memory",
        "contrastive_encoders",
        "truth_direction",
        "remember",
        "train",
    ] {
        assert!(
            reference.contains(&format!("| `{op}` |")),
            "REFERENCE.md's op table lacks `{op}`"
        );
    }
}

/// `project grad layer(2)…` inside `train layers(1..)…`: the projection is resolved to the
/// trained parameter and the layers of it that it names, so the executor applies it there only.
#[test]
fn a_projection_of_part_of_a_trained_weight_names_its_layers() {
    let p = plan(
        &format!(
            "{HEADER}let tuned = layers(1..).mlp.down_proj
let keep = null_space(covariance(layer(2).mlp.down_proj.input, over: preserve(text: 8)), below: 0.5)
let keep_all = null_space(covariance(tuned.input, over: preserve(text: 8)), below: 0.5)
per edit {{
  train [layer(0).mlp.up_proj.weight, tuned.weight] for 2 steps with sgd(lr: 0.1) {{
    loss nll(target)
    project grad layer(2).mlp.down_proj.weight onto keep
    project update tuned.weight onto keep_all scale: 0.5
  }}
}}
"
        ),
        Some(&dims()),
    );
    let projections = p
        .steps
        .iter()
        .find_map(|s| match &s.op {
            Op::Train(ops::Train { projections, .. }) => Some(projections.clone()),
            _ => None,
        })
        .expect("a train step");
    let resolved: Vec<(usize, Option<Vec<usize>>, f64)> = projections
        .iter()
        .map(|pr| (pr.param, pr.layers.clone(), pr.scale))
        .collect();
    assert_eq!(resolved, vec![(1, Some(vec![2]), 1.0), (1, None, 0.5)]);
    // A weight part that is not trained is still refused.
    let e = errors(
        &format!(
            "{HEADER}let keep = null_space(covariance(layer(0).mlp.down_proj.input, over: preserve(text: 8)), below: 0.5)
per edit {{
  train layers(1..).mlp.down_proj.weight for 2 steps with sgd(lr: 0.1) {{
    loss nll(target)
    project grad layer(0).mlp.down_proj.weight onto keep
  }}
}}
"
        ),
        Some(&dims()),
    );
    assert!(e.contains("is not trained by this train block"), "{e}");
}
