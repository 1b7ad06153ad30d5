//! Finite-difference checks (f64) of every gradient path the editing methods use: LoRA A and B,
//! extra FFN neurons, additive shifts (tensor and closure), weight deltas, input latents at
//! visual and text positions, a perturbation hook, and the weights of a model trained from
//! scratch (vision tower included). Frozen base weights must receive no gradient at all.

mod common;

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use common::*;
use mkedsl::model::{
    Activation, Adapters, ExtraNeurons, FreshInit, Hooks, Latents, LayerPoint, LinearSite, Llava,
    LlavaModel, Lora, PadSide, Proj, Readout, Shift, Site, VisionLanguageModel,
};
use rand::SeedableRng;

const STEP: f64 = 1e-5;

fn random(shape: &[usize], std: f64, seed: u64) -> Tensor {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let n = shape.iter().product();
    let v = mkedsl::model::init::normal_samples(&mut rng, n, std);
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn var(shape: &[usize], std: f64, seed: u64) -> Var {
    Var::from_tensor(&random(shape, std, seed)).unwrap()
}

struct Setup {
    llava: Llava,
    latents: Latents,
    targets: Tensor,
}

fn setup() -> Setup {
    let llava = load(DType::F64);
    let encoded = llava.encode(PROMPT, &[image()]).unwrap();
    let targets = Tensor::new(&encoded.input_ids[1..], &Device::Cpu).unwrap();
    let batch = llava.batch(&[encoded], PadSide::Right).unwrap();
    let latents = llava.embed(&batch).unwrap();
    Setup {
        llava,
        latents,
        targets,
    }
}

/// Mean next-token cross-entropy over the prompt.
fn nll(s: &Setup, latents: &Latents, hooks: &mut Hooks, adapters: &Adapters) -> Tensor {
    let logits = s
        .llava
        .forward(latents, hooks, adapters, &Readout::All)
        .unwrap()
        .squeeze(0)
        .unwrap();
    let t = logits.dim(0).unwrap();
    candle_nn::loss::cross_entropy(&logits.narrow(0, 0, t - 1).unwrap(), &s.targets).unwrap()
}

/// Compares the autograd gradient of `loss` with respect to `v` against central differences on
/// up to `samples` elements spread over the tensor; returns (max abs error, max |gradient|).
fn fd_check(name: &str, v: &Var, loss: &dyn Fn() -> Tensor, samples: usize) -> (f64, f64) {
    let grads = loss().backward().unwrap();
    let analytic = grads
        .get(v.as_tensor())
        .unwrap_or_else(|| panic!("{name}: no gradient"))
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap();
    let base = v.as_tensor().detach().copy().unwrap();
    let shape = base.dims().to_vec();
    let flat = base.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let n = flat.len();
    let picks: Vec<usize> = if n <= samples {
        (0..n).collect()
    } else {
        (0..samples).map(|i| (i * 7919 + 13) % n).collect()
    };
    let mut max_err = 0f64;
    let mut max_grad = 0f64;
    for idx in picks {
        let eval = |delta: f64| {
            let mut moved = flat.clone();
            moved[idx] += delta;
            v.set(&Tensor::from_vec(moved, shape.as_slice(), &Device::Cpu).unwrap())
                .unwrap();
            loss().to_scalar::<f64>().unwrap()
        };
        let fd = (eval(STEP) - eval(-STEP)) / (2.0 * STEP);
        max_err = max_err.max((fd - analytic[idx]).abs());
        max_grad = max_grad.max(analytic[idx].abs());
    }
    v.set(&base).unwrap();
    eprintln!("{name:<40} max |fd − autograd| {max_err:.2e}   (max |grad| {max_grad:.2e})");
    assert!(
        max_grad > 1e-6,
        "{name}: gradient is zero everywhere sampled — the check would be vacuous"
    );
    assert!(
        max_err < 1e-6 * max_grad.max(1.0),
        "{name}: finite differences disagree by {max_err}"
    );
    (max_err, max_grad)
}

#[test]
fn lora_a_and_b() {
    let s = setup();
    let site = LinearSite::new(1, Proj::Down);
    let a = var(&[2, 64], 0.3, 1);
    let b = var(&[32, 2], 0.3, 2);
    let loss = || {
        let mut adapters = Adapters::new();
        adapters.lora(
            site,
            Lora {
                a: a.as_tensor().clone(),
                b: b.as_tensor().clone(),
                scaling: 2.0,
            },
        );
        nll(&s, &s.latents, &mut Hooks::new(), &adapters)
    };
    fd_check("LoRA A (layer(1).mlp.down_proj)", &a, &loss, 24);
    fd_check("LoRA B (layer(1).mlp.down_proj)", &b, &loss, 24);

    // A frozen (a plain tensor), B trainable: A gets no gradient, no base weight does either.
    let frozen_a = random(&[2, 32], 0.3, 3);
    let q_b = var(&[32, 2], 0.3, 4);
    let qsite = LinearSite::new(0, Proj::Q);
    let loss = || {
        let mut adapters = Adapters::new();
        adapters.lora(
            qsite,
            Lora {
                a: frozen_a.clone(),
                b: q_b.as_tensor().clone(),
                scaling: 1.0,
            },
        );
        nll(&s, &s.latents, &mut Hooks::new(), &adapters)
    };
    fd_check("LoRA B (layer(0).attn.q_proj, A frozen)", &q_b, &loss, 24);
    let grads = loss().backward().unwrap();
    assert!(
        grads.get(&frozen_a).is_none(),
        "a frozen LoRA A must not get a gradient"
    );
    for (name, t) in s.llava.model.named_tensors() {
        assert!(
            grads.get(&t).is_none(),
            "frozen base weight {name} got a gradient"
        );
    }
}

#[test]
fn extra_neurons_keys_bias_values() {
    let s = setup();
    let keys = var(&[3, 32], 0.3, 5);
    let bias = var(&[3], 0.3, 6);
    let values = var(&[3, 32], 0.3, 7);
    let loss = || {
        let mut adapters = Adapters::new();
        adapters.neurons(
            0,
            ExtraNeurons {
                keys: keys.as_tensor().clone(),
                bias: Some(bias.as_tensor().clone()),
                values: values.as_tensor().clone(),
                act: Activation::Silu,
                regulation: None,
            },
        );
        nll(&s, &s.latents, &mut Hooks::new(), &adapters)
    };
    fd_check("extra neurons keys (layer 0)", &keys, &loss, 24);
    fd_check("extra neurons bias (layer 0)", &bias, &loss, 24);
    fd_check("extra neurons values (layer 0)", &values, &loss, 24);
}

#[test]
fn shifts_tensor_and_closure_from_the_block_input() {
    let s = setup();
    let shift = var(&[32], 0.3, 8);
    let loss = || {
        let mut adapters = Adapters::new();
        adapters.shift(
            Site::layer(0, LayerPoint::AttnOutput),
            Shift::Tensor(shift.as_tensor().clone()),
        );
        nll(&s, &s.latents, &mut Hooks::new(), &adapters)
    };
    fd_check("shift tensor (layer(0).attn.output)", &shift, &loss, 32);

    // UniKE-style: the shift is computed from the pre-attention hidden state.
    let m = var(&[32, 32], 0.1, 9);
    let loss = || {
        let mt = m.as_tensor().clone();
        let f: mkedsl::model::adapters::ShiftFn = Arc::new(move |view| {
            let h = view.block_input.expect("block input inside a layer");
            h.broadcast_matmul(&mt)?.tanh()
        });
        let mut adapters = Adapters::new();
        adapters.shift(Site::layer(1, LayerPoint::AttnOutput), Shift::Fn(f));
        nll(&s, &s.latents, &mut Hooks::new(), &adapters)
    };
    fd_check("shift closure weight (layer(1).attn.output)", &m, &loss, 32);
}

#[test]
fn weight_delta() {
    let s = setup();
    let delta = var(&[64, 32], 0.05, 10);
    let site = LinearSite::new(1, Proj::Gate);
    let loss = || {
        let mut adapters = Adapters::new();
        adapters.delta(site, delta.as_tensor().clone());
        nll(&s, &s.latents, &mut Hooks::new(), &adapters)
    };
    fd_check("weight delta (layer(1).mlp.gate_proj)", &delta, &loss, 32);
}

#[test]
fn input_latents_visual_and_text_and_a_perturbation_hook() {
    let s = setup();
    let x = Var::from_tensor(&s.latents.embeds).unwrap();
    let latents = s.latents.with_embeds(x.as_tensor().clone());
    let loss = || nll(&s, &latents, &mut Hooks::new(), &Adapters::new());
    let grads = loss().backward().unwrap();
    let g = grads.get(x.as_tensor()).unwrap();
    let visual = s.latents.layout.visual_index();
    let text = s.latents.layout.text_index();
    // Check a visual row and a text row element by element through a narrow view of the Var.
    let d = 32;
    let flat_g = g.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    let base = x.as_tensor().detach().copy().unwrap();
    let flat = base.flatten_all().unwrap().to_vec1::<f64>().unwrap();
    for (kind, row) in [("visual", visual[5] as usize), ("text", text[3] as usize)] {
        let mut max_err = 0f64;
        let mut max_grad = 0f64;
        for col in (0..d).step_by(3) {
            let idx = row * d + col;
            let eval = |delta: f64| {
                let mut moved = flat.clone();
                moved[idx] += delta;
                x.set(&Tensor::from_vec(moved, base.dims(), &Device::Cpu).unwrap())
                    .unwrap();
                loss().to_scalar::<f64>().unwrap()
            };
            let fd = (eval(STEP) - eval(-STEP)) / (2.0 * STEP);
            max_err = max_err.max((fd - flat_g[idx]).abs());
            max_grad = max_grad.max(flat_g[idx].abs());
        }
        x.set(&base).unwrap();
        eprintln!(
            "{:<40} max |fd − autograd| {max_err:.2e}   (max |grad| {max_grad:.2e})",
            format!("input latents ({kind} row)")
        );
        assert!(
            max_grad > 1e-6 && max_err < 1e-6 * max_grad.max(1.0),
            "{kind}: {max_err}"
        );
    }

    // ASAM's latent perturbation: δ added at embed.vision by a hook.
    let nv = visual.len();
    let delta = var(&[nv, d], 0.01, 11);
    let loss = || {
        let mut hooks = Hooks::new();
        hooks.add(Site::EmbedVision, delta.as_tensor().clone());
        nll(&s, &s.latents, &mut hooks, &Adapters::new())
    };
    fd_check("perturbation δ at embed.vision", &delta, &loss, 32);
    let text_delta = var(&[text.len(), d], 0.01, 12);
    let loss = || {
        let mut hooks = Hooks::new();
        hooks.add(Site::EmbedText, text_delta.as_tensor().clone());
        nll(&s, &s.latents, &mut hooks, &Adapters::new())
    };
    fd_check("perturbation δ at embed.text", &text_delta, &loss, 32);
}

#[test]
fn model_built_from_a_varmap_trains_every_weight_the_output_depends_on() {
    let fixture = load(DType::F32);
    let (model, varmap) = LlavaModel::fresh(
        fixture.config().clone(),
        FreshInit { seed: 7, std: 0.2 },
        DType::F64,
        &Device::Cpu,
    )
    .unwrap();
    let llava = Llava {
        model,
        processor: fixture.processor,
    };
    let encoded = llava.encode(PROMPT, &[image()]).unwrap();
    let targets = Tensor::new(&encoded.input_ids[1..], &Device::Cpu).unwrap();
    let batch = llava.batch(&[encoded], PadSide::Right).unwrap();
    let s = Setup {
        latents: llava.embed(&batch).unwrap(),
        targets,
        llava,
    };
    // Re-embed on every call: the embedding table and the vision tower are trained too.
    let loss = || {
        let latents = s.llava.embed(&batch).unwrap();
        nll(&s, &latents, &mut Hooks::new(), &Adapters::new())
    };
    let grads = loss().backward().unwrap();
    let vars = varmap.data().lock().unwrap().clone();
    // HF hidden_states index of vision_feature_layer -2 in a 3-layer tower is 2: encoder layer
    // 2 and post_layernorm do not influence the output (as in Hugging Face's LLaVA).
    let unused = |name: &str| name.contains("encoder.layers.2.") || name.contains("post_layernorm");
    for (name, v) in &vars {
        assert_eq!(grads.get(v.as_tensor()).is_some(), !unused(name), "{name}");
    }
    for name in [
        "vision_tower.vision_model.embeddings.patch_embedding.weight",
        "vision_tower.vision_model.encoder.layers.0.layer_norm1.weight",
        "multi_modal_projector.linear_1.bias",
        "language_model.model.embed_tokens.weight",
        "language_model.model.layers.1.self_attn.k_proj.weight",
        "language_model.lm_head.weight",
    ] {
        fd_check(&format!("fresh {name}"), &vars[name], &loss, 12);
    }
}
