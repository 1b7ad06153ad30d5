//! UniKE's latent key-value memory inside the decoder (src/model/memory.rs) on the tiny
//! checkpoint: with no knowledge mixed in it is an exact no-op, α mixes linearly and
//! monotonically toward `h_know`, and `h_know` is the layer's own attention over the memory,
//! checked against values computed from captured pieces and the layer's weights.

mod common;

use candle_core::{DType, Device, Tensor, D};
use common::*;
use mkedsl::model::{
    Adapters, Hooks, LatentMemory, Latents, LayerPoint, LinearSite, Llava, MemoryGate, PadSide,
    Proj, Readout, Site, VisionLanguageModel,
};

const LAYER: usize = 1;

fn latents(llava: &Llava) -> Latents {
    let encoded = llava.encode(PROMPT, &[image()]).unwrap();
    let batch = llava
        .batch(std::slice::from_ref(&encoded), PadSide::Right)
        .unwrap();
    llava.embed(&batch).unwrap()
}

/// Layer `LAYER`'s input and attention output on the prompt, `(T, d)` each, under `adapters`.
fn layer_states(llava: &Llava, adapters: &Adapters) -> (Tensor, Tensor, Tensor) {
    let mut hooks = Hooks::new();
    let input = Site::Layer(LAYER, LayerPoint::Input);
    let output = Site::Layer(LAYER, LayerPoint::AttnOutput);
    hooks.capture(input).capture(output);
    let logits = llava
        .forward(&latents(llava), &mut hooks, adapters, &Readout::All)
        .unwrap();
    let x = hooks.captured(&input)[0].get(0).unwrap();
    let y = hooks.captured(&output)[0].get(0).unwrap();
    (x, y, logits)
}

/// A memory of `n` states taken from the prompt's own layer input (rows `0..n`), so that they
/// live at the residual stream's scale.
fn memory(llava: &Llava, n: usize, top_k: usize, gate: MemoryGate) -> LatentMemory {
    let (x, _, _) = layer_states(llava, &Adapters::new());
    let d = x.dim(1).unwrap();
    let sem = x.narrow(0, 0, n).unwrap();
    let pos = x.narrow(0, 3, n).unwrap();
    let centre = Tensor::zeros(d, DType::F32, &Device::Cpu).unwrap();
    LatentMemory::new(&sem, pos, centre, top_k, gate).unwrap()
}

fn with_memory(m: LatentMemory) -> Adapters {
    let mut a = Adapters::new();
    a.memory(LAYER, m);
    a
}

#[test]
fn no_knowledge_mixed_in_leaves_the_logits_bit_for_bit() {
    let llava = load(DType::F32);
    let (_, _, plain) = layer_states(&llava, &Adapters::new());
    let (_, _, inert) = layer_states(
        &llava,
        &with_memory(memory(&llava, 6, 3, MemoryGate::Fixed(0.0))),
    );
    assert_eq!(max_abs_diff(&plain, &inert), 0.0);
    let (_, _, moved) = layer_states(
        &llava,
        &with_memory(memory(&llava, 6, 3, MemoryGate::Fixed(0.5))),
    );
    assert!(
        max_abs_diff(&plain, &moved) > 1e-3,
        "α = 0.5 must change something"
    );
}

#[test]
fn alpha_mixes_linearly_and_monotonically_toward_h_know() {
    let llava = load(DType::F32);
    let at = |a: f64| {
        layer_states(
            &llava,
            &with_memory(memory(&llava, 6, 3, MemoryGate::Fixed(a))),
        )
        .1
    };
    let (y0, y1) = (at(0.0), at(1.0));
    let mut last = 0.0;
    for a in [0.25, 0.5, 0.75] {
        let y = at(a);
        let want = ((&y0 * (1.0 - a)).unwrap() + (&y1 * a).unwrap()).unwrap();
        assert!(max_abs_diff(&y, &want) < 1e-5, "α = {a}");
        let moved = max_abs_diff(&y, &y0);
        assert!(moved > last, "larger α, more h_know");
        last = moved;
    }
}

#[test]
fn h_know_is_the_layers_own_attention_over_one_retrieved_state() {
    // With a single entry the attention weight is 1, so at α = 1 every token's attention output
    // is o_proj(v_proj(norm(h_pos))), the value heads repeated for the query heads they serve.
    let llava = load(DType::F32);
    let m = memory(&llava, 1, 1, MemoryGate::Fixed(1.0));
    let (_, y, _) = layer_states(&llava, &with_memory(m));
    // norm(h_pos) and v_proj(norm(h_pos)) are the prompt's own AttnInput / v_proj output at row 3.
    let mut hooks = Hooks::new();
    let v_site = Site::proj_output(LinearSite::new(LAYER, Proj::V));
    hooks.capture(v_site);
    llava
        .forward(
            &latents(&llava),
            &mut hooks,
            &Adapters::new(),
            &Readout::All,
        )
        .unwrap();
    let v = hooks.captured(&v_site)[0].get(0).unwrap().get(3).unwrap();
    let cfg = llava.config().text_config.clone();
    let (heads, kv) = (cfg.num_attention_heads, cfg.kv_heads());
    let hd = v.dim(0).unwrap() / kv;
    let repeated = v
        .reshape((kv, 1, hd))
        .unwrap()
        .broadcast_as((kv, heads / kv, hd))
        .unwrap()
        .reshape(heads * hd)
        .unwrap();
    let o = llava
        .linear_weight(LinearSite::new(LAYER, Proj::O))
        .unwrap();
    let want = repeated
        .unsqueeze(0)
        .unwrap()
        .matmul(&o.t().unwrap())
        .unwrap();
    let want = want.broadcast_as(y.dims()).unwrap();
    assert!(
        max_abs_diff(&y, &want) < 1e-4,
        "{}",
        max_abs_diff(&y, &want)
    );
    // And the tokens' outputs are all equal (no position enters the memory read).
    let spread = (y.max(0).unwrap() - y.min(0).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max(D::Minus1);
    assert!(spread.unwrap().to_scalar::<f32>().unwrap() < 1e-4);
}

#[test]
fn adapters_check_refuses_a_memory_of_the_wrong_width() {
    let llava = load(DType::F32);
    let d = llava.dims().hidden;
    let states = Tensor::zeros((4, d + 1), DType::F32, &Device::Cpu).unwrap();
    let centre = Tensor::zeros(d + 1, DType::F32, &Device::Cpu).unwrap();
    let m = LatentMemory::new(&states, states.clone(), centre, 2, MemoryGate::Fixed(0.5)).unwrap();
    let err = with_memory(m).check(&llava.dims(), DType::F32).unwrap_err();
    assert!(err.to_string().contains("does not fit"), "{err}");
}
