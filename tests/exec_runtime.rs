//! The runtime additions the executor relies on: `LlavaModel::forward_through(…, l)` stops after layer `l` and
//! returns exactly what a full pass holds at `layer(l).output`; `LlavaModel::capture` stops where its hooks'
//! sites end and captures what a full pass shows them; `LlavaModel::residual` and `forward_from` start a pass
//! where a frozen prefix ends (a layer's input, or past its attention) with the full pass's values.

mod common;
mod exec_common;

use common::max_abs_diff;
use exec_common::tiny;
use mkedsl::model::site::{LayerPoint, Site};
use mkedsl::model::{
    Adapters, Hooks, Latents, Llava, LoadOptions, PadSide, Readout, VisionLanguageModel,
};

/// The tiny model and the latents of two prompts of different lengths (right-padded).
fn two_prompts() -> (Llava, Latents) {
    let llava = Llava::load(&tiny(), &LoadOptions::default()).expect("loads");
    let a = llava
        .encode("USER: what color is the circle? ASSISTANT: red", &[])
        .unwrap();
    let b = llava
        .encode("USER: how many shapes? ASSISTANT:", &[])
        .unwrap();
    let batch = llava.batch(&[a, b], PadSide::Right).unwrap();
    let latents = llava.embed(&batch).unwrap();
    (llava, latents)
}

#[test]
fn through_stops_after_a_layer_with_the_full_pass_values() {
    let (llava, latents) = two_prompts();
    let site = Site::Layer(0, LayerPoint::Output);
    let mut full = Hooks::new();
    full.capture(site);
    llava
        .forward(&latents, &mut full, &Adapters::new(), &Readout::Hidden)
        .unwrap();
    let mut early = Hooks::new();
    early.capture(site);
    let out = llava
        .model
        .forward_through(&latents, &mut early, &Adapters::new(), 0)
        .unwrap();
    assert_eq!(max_abs_diff(&out, full.captured(&site)[0]), 0.0);
    assert_eq!(early.captured(&site).len(), 1);
    // Layer 1 never ran.
    let mut later = Hooks::new();
    later.capture(Site::Layer(1, LayerPoint::Input));
    llava
        .model
        .forward_through(&latents, &mut later, &Adapters::new(), 0)
        .unwrap();
    assert!(later
        .captured(&Site::Layer(1, LayerPoint::Input))
        .is_empty());
    assert!(llava
        .model
        .forward_through(&latents, &mut Hooks::new(), &Adapters::new(), 2)
        .is_err());
}

/// `LlavaModel::capture` runs only as far as its hooks need: reading layer 1's up and down
/// projection inputs, it ends at layer 1's activation and skips that layer's down projection
/// (one `128 × 344` product per token fewer), and the captured values are the full pass's.
#[test]
fn capture_stops_at_the_activation_with_the_full_pass_values() {
    use mkedsl::model::site::{LinearSite, Proj};
    let llava = Llava::load(&tiny(), &LoadOptions::default()).expect("loads");
    let a = llava
        .encode("USER: what color is the circle? ASSISTANT: red", &[])
        .unwrap();
    let batch = llava.batch(&[a], PadSide::Right).unwrap();
    let latents = llava.embed(&batch).unwrap();
    let sites = [
        Site::proj_input(LinearSite::new(1, Proj::Up)),
        Site::proj_input(LinearSite::new(1, Proj::Down)),
        Site::Layer(0, LayerPoint::Output),
    ];
    let hooks_for = || {
        let mut hooks = Hooks::new();
        for s in sites {
            hooks.capture(s);
        }
        hooks
    };
    let mut full = hooks_for();
    llava
        .model
        .forward_through(&latents, &mut full, &Adapters::new(), 1)
        .unwrap();
    let mut early = hooks_for();
    let before = mkedsl::model::flops::count();
    llava
        .model
        .capture(&latents, &mut early, &Adapters::new())
        .unwrap();
    let early_flops = mkedsl::model::flops::count() - before;
    let before = mkedsl::model::flops::count();
    llava
        .model
        .forward_through(&latents, &mut hooks_for(), &Adapters::new(), 1)
        .unwrap();
    let full_flops = mkedsl::model::flops::count() - before;
    for s in sites {
        let (f, e) = (full.captured(&s), early.captured(&s));
        assert_eq!((f.len(), e.len()), (1, 1), "{s}");
        assert_eq!(max_abs_diff(f[0], e[0]), 0.0, "{s}");
    }
    let tokens = latents.layout.seq() as u64;
    let dims = llava.model.dims();
    let down = 2 * tokens * (dims.hidden * dims.intermediate) as u64;
    assert_eq!(full_flops - early_flops, down);
    // A site after the activation makes the pass run the whole layer.
    let mut later = hooks_for();
    later.capture(Site::Layer(1, LayerPoint::MlpOutput));
    let before = mkedsl::model::flops::count();
    llava
        .model
        .capture(&latents, &mut later, &Adapters::new())
        .unwrap();
    assert_eq!(mkedsl::model::flops::count() - before, full_flops);
    assert_eq!(
        later.captured(&Site::Layer(1, LayerPoint::MlpOutput)).len(),
        1
    );
}

/// `LlavaModel::residual` past a layer's attention and `LlavaModel::forward_from` give the
/// full pass's logits; hooks in the feed-forward half see the full pass's values (the block
/// input included), hooks the prefix already ran are refused.
#[test]
fn a_pass_from_past_an_attention_gives_the_full_pass_values() {
    use mkedsl::model::{Hook, ResidualPoint};
    let (llava, latents) = two_prompts();
    let adapters = Adapters::new();
    let mlp_input = Site::Layer(1, LayerPoint::MlpInput);
    // A closure at the FFN input that reads the block input: the same in both passes.
    let reads_block_input = || {
        Hook::Map(Box::new(|view: &mkedsl::model::SiteView| {
            let input = view.block_input.expect("a block input");
            view.value.broadcast_add(&(input.mean_keepdim(2)? * 1e-3)?)
        }))
    };
    let mut full = Hooks::new();
    full.push(mlp_input, reads_block_input()).capture(mlp_input);
    let expected = llava
        .forward(&latents, &mut full, &adapters, &Readout::All)
        .unwrap();
    for point in [
        ResidualPoint {
            layer: 1,
            past_attention: true,
        },
        ResidualPoint {
            layer: 1,
            past_attention: false,
        },
        ResidualPoint {
            layer: 0,
            past_attention: true,
        },
    ] {
        let residual = llava.model.residual(&latents, &adapters, point).unwrap();
        assert_eq!(residual.block_input.is_some(), point.past_attention);
        let mut hooks = Hooks::new();
        hooks
            .push(mlp_input, reads_block_input())
            .capture(mlp_input);
        let out = llava
            .model
            .forward_from(
                &residual,
                &latents.layout,
                &mut hooks,
                &adapters,
                &Readout::All,
            )
            .unwrap();
        assert_eq!(max_abs_diff(&out, &expected), 0.0, "{point}");
        let seen = hooks.captured(&mlp_input)[0];
        assert_eq!(max_abs_diff(seen, full.captured(&mlp_input)[0]), 0.0);
    }
    // Past layer 1's attention, a hook on its attention (or before) never fires: refused.
    let past = ResidualPoint {
        layer: 1,
        past_attention: true,
    };
    let residual = llava.model.residual(&latents, &adapters, past).unwrap();
    for site in [
        Site::Layer(1, LayerPoint::AttnOutput),
        Site::Layer(1, LayerPoint::Input),
        Site::Layer(0, LayerPoint::MlpAct),
    ] {
        let mut hooks = Hooks::new();
        hooks.capture(site);
        let refused = llava.model.forward_from(
            &residual,
            &latents.layout,
            &mut hooks,
            &adapters,
            &Readout::Hidden,
        );
        assert!(refused.is_err(), "{site}");
    }
    // Nothing precedes the embeddings.
    assert!(llava
        .model
        .residual(&latents, &adapters, ResidualPoint::EMBEDDINGS)
        .is_err());
}

/// A readout of a few late positions runs the last layer's queries, attention output and FFN
/// on those columns only (`Pass::read_from`); the logits there and the gradient reaching the
/// input latents are the whole pass's, and a hook in the last layer keeps the whole pass.
#[test]
fn a_late_readout_gives_the_whole_pass_values_and_gradients() {
    use candle_core::Var;
    let (llava, latents) = two_prompts();
    let adapters = Adapters::new();
    let seq = latents.layout.seq();
    // Row 0's last three columns, row 1's last real token (it is shorter: right padding).
    let last1 = (0..seq)
        .rev()
        .find(|&c| latents.layout.is_valid(1, c))
        .unwrap();
    let positions = vec![(0, seq - 3), (0, seq - 1), (1, last1), (0, seq - 2)];
    let grads = |readout: &Readout, pick: bool| {
        let x = Var::from_tensor(&latents.embeds).unwrap();
        let input = mkedsl::model::Latents {
            embeds: x.as_tensor().clone(),
            layout: latents.layout.clone(),
        };
        let out = llava
            .model
            .forward(&input, &mut Hooks::new(), &adapters, readout)
            .unwrap();
        let logits = if pick {
            let (b, t, v) = out.dims3().unwrap();
            let flat = out.reshape((b * t, v)).unwrap();
            let index: Vec<u32> = positions.iter().map(|&(r, c)| (r * t + c) as u32).collect();
            let index = candle_core::Tensor::new(index.as_slice(), flat.device()).unwrap();
            flat.index_select(&index, 0).unwrap()
        } else {
            out
        };
        let weights = (logits.ones_like().unwrap().cumsum(1).unwrap() * 1e-2).unwrap();
        let loss = (&logits * &weights).unwrap().sum_all().unwrap();
        let g = loss.backward().unwrap().get(x.as_tensor()).unwrap().clone();
        (logits, g)
    };
    let (expected, expected_grad) = grads(&Readout::All, true);
    let (read, grad) = grads(&Readout::Positions(positions.clone()), false);
    assert!(max_abs_diff(&read, &expected) < 1e-5);
    assert!(max_abs_diff(&grad, &expected_grad) < 1e-5);
    // `Last` reads each row's last real token.
    let last = llava
        .model
        .forward(&latents, &mut Hooks::new(), &adapters, &Readout::Last)
        .unwrap();
    let all = llava
        .forward(&latents, &mut Hooks::new(), &adapters, &Readout::All)
        .unwrap();
    let row0 = all.get(0).unwrap().get(seq - 1).unwrap();
    let row1 = all.get(1).unwrap().get(last1).unwrap();
    assert!(max_abs_diff(&last.get(0).unwrap(), &row0) < 1e-5);
    assert!(max_abs_diff(&last.get(1).unwrap(), &row1) < 1e-5);
    // A hook in the last layer sees every token.
    let site = Site::Layer(llava.model.dims().num_layers - 1, LayerPoint::MlpInput);
    let mut hooks = Hooks::new();
    hooks.capture(site);
    llava
        .model
        .forward(
            &latents,
            &mut hooks,
            &adapters,
            &Readout::Positions(positions),
        )
        .unwrap();
    assert_eq!(hooks.captured(&site)[0].dim(1).unwrap(), seq);
}

/// `output_at` (a layer's output at one column, from the embeddings or from a residual) gives
/// what a capture at that layer's output shows at that column in the whole pass, and the same
/// gradient with respect to the input latents.
#[test]
fn a_layer_output_at_one_column_gives_the_whole_pass_values_and_gradients() {
    use candle_core::Var;
    use mkedsl::model::ResidualPoint;
    let (llava, latents) = two_prompts();
    let adapters = Adapters::new();
    // A column both rows hold (row 1 is shorter: right padding).
    let column = latents.layout.row_len(1) - 2;
    for layer in [0, 1] {
        let site = Site::Layer(layer, LayerPoint::Output);
        let read = |embeds: &candle_core::Tensor, cut: bool| {
            let input = mkedsl::model::Latents {
                embeds: embeds.clone(),
                layout: latents.layout.clone(),
            };
            if cut {
                return llava
                    .model
                    .output_at(&input, &adapters, layer, column)
                    .unwrap();
            }
            let mut hooks = Hooks::new();
            hooks.capture(site);
            llava
                .forward(&input, &mut hooks, &adapters, &Readout::Hidden)
                .unwrap();
            let captured = hooks.captured(&site)[0].clone();
            captured.narrow(1, column, 1).unwrap().squeeze(1).unwrap()
        };
        let with_grad = |cut: bool| {
            let x = Var::from_tensor(&latents.embeds).unwrap();
            let out = read(x.as_tensor(), cut);
            let weights = (out.ones_like().unwrap().cumsum(1).unwrap() * 1e-2).unwrap();
            let loss = (&out * &weights).unwrap().sum_all().unwrap();
            let g = loss.backward().unwrap().get(x.as_tensor()).unwrap().clone();
            (out, g)
        };
        let (expected, expected_grad) = with_grad(false);
        let (out, grad) = with_grad(true);
        assert_eq!(out.dims(), &[2, llava.model.dims().hidden]);
        assert!(max_abs_diff(&out, &expected) < 1e-5, "layer {layer}");
        assert!(max_abs_diff(&grad, &expected_grad) < 1e-5, "layer {layer}");
        // From a residual before the layer's output: the same values.
        let point = ResidualPoint {
            layer,
            past_attention: true,
        };
        let residual = llava.model.residual(&latents, &adapters, point).unwrap();
        let from = llava
            .model
            .output_at_from(&residual, &latents.layout, &adapters, layer, column)
            .unwrap();
        assert!(
            max_abs_diff(&from, &expected) < 1e-5,
            "layer {layer} from {point}"
        );
    }
    // A column outside the sequence, and a layer the residual has already passed, are refused.
    let seq = latents.layout.seq();
    assert!(llava.model.output_at(&latents, &adapters, 0, seq).is_err());
    let past = ResidualPoint {
        layer: 1,
        past_attention: false,
    };
    let residual = llava.model.residual(&latents, &adapters, past).unwrap();
    assert!(llava
        .model
        .output_at_from(&residual, &latents.layout, &adapters, 0, column)
        .is_err());
}
