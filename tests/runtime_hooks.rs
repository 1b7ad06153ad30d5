//! Sites, hooks, adapters, batching and generation on the tiny checkpoint.

mod common;

use candle_core::{DType, Device, Tensor, D};
use common::*;
use mkedsl::model::{
    Adapters, Encoded, GenerateOptions, Hooks, Latents, LayerPoint, LinearSite, Llava, Lora,
    ModelError, PadSide, Proj, Readout, Shift, Site, VisionLanguageModel,
};

const TIGHT: f64 = 1e-5;

fn latents_of(llava: &Llava, prompts: &[Encoded], side: PadSide) -> Latents {
    let batch = llava.batch(prompts, side).unwrap();
    llava.embed(&batch).unwrap()
}

fn prompts(llava: &Llava) -> Vec<Encoded> {
    vec![
        llava.encode(PROMPT, &[image()]).unwrap(),
        llava
            .encode("what is the capital of france ?", &[])
            .unwrap(),
        llava
            .encode(
                "USER: <image> describe this picture . ASSISTANT:",
                &[other_image()],
            )
            .unwrap(),
    ]
}

fn run(
    llava: &Llava,
    latents: &Latents,
    hooks: &mut Hooks,
    adapters: &Adapters,
    readout: &Readout,
) -> Tensor {
    llava.forward(latents, hooks, adapters, readout).unwrap()
}

fn linear(x: &Tensor, w: &Tensor) -> Tensor {
    x.broadcast_matmul(&w.t().unwrap()).unwrap()
}

#[test]
fn captures_equal_manual_computations_from_public_pieces() {
    let llava = load(DType::F32);
    let encoded = llava.encode(PROMPT, &[image()]).unwrap();
    let latents = latents_of(&llava, std::slice::from_ref(&encoded), PadSide::Right);
    let mut hooks = Hooks::new();
    let points = [
        LayerPoint::Input,
        LayerPoint::AttnOutput,
        LayerPoint::MlpInput,
        LayerPoint::MlpAct,
        LayerPoint::MlpOutput,
        LayerPoint::Output,
        LayerPoint::ProjInput(Proj::Down),
    ];
    for p in points {
        hooks.capture(Site::layer(0, p));
    }
    hooks
        .capture(Site::layer(1, LayerPoint::Input))
        .capture(Site::EmbedVision)
        .capture(Site::EmbedText);
    run(
        &llava,
        &latents,
        &mut hooks,
        &Adapters::new(),
        &Readout::Last,
    );
    let got = |site: Site| hooks.captured(&site)[0].clone();
    let at = |p| got(Site::layer(0, p));
    let w = |p| llava.linear_weight(LinearSite::new(0, p)).unwrap();

    let mlp_in = at(LayerPoint::MlpInput);
    let act =
        (linear(&mlp_in, &w(Proj::Gate)).silu().unwrap() * linear(&mlp_in, &w(Proj::Up))).unwrap();
    assert!(max_abs_diff(&at(LayerPoint::MlpAct), &act) < TIGHT);
    assert_eq!(
        max_abs_diff(
            &at(LayerPoint::MlpAct),
            &at(LayerPoint::ProjInput(Proj::Down))
        ),
        0.0
    );
    assert!(max_abs_diff(&at(LayerPoint::MlpOutput), &linear(&act, &w(Proj::Down))) < TIGHT);
    let residual = ((at(LayerPoint::Input) + at(LayerPoint::AttnOutput)).unwrap()
        + at(LayerPoint::MlpOutput))
    .unwrap();
    assert!(max_abs_diff(&at(LayerPoint::Output), &residual) < TIGHT);
    assert_eq!(
        max_abs_diff(
            &got(Site::layer(1, LayerPoint::Input)),
            &at(LayerPoint::Output)
        ),
        0.0
    );
    assert_eq!(max_abs_diff(&at(LayerPoint::Input), &latents.embeds), 0.0);

    // embed.vision is the projected image features; embed.text the token embeddings, both as rows.
    let features = llava
        .model
        .image_features(&latents_pixels(&llava, &encoded))
        .unwrap()
        .squeeze(0)
        .unwrap();
    assert!(max_abs_diff(&got(Site::EmbedVision), &features) < TIGHT);
    let text_ids: Vec<u32> = encoded
        .input_ids
        .iter()
        .copied()
        .filter(|&i| i != llava.config().image_token_index)
        .collect();
    let ids = Tensor::new(text_ids.as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let text = llava.model.embed_tokens(&ids).unwrap().squeeze(0).unwrap();
    assert_eq!(max_abs_diff(&got(Site::EmbedText), &text), 0.0);
}

fn latents_pixels(llava: &Llava, encoded: &Encoded) -> Tensor {
    llava
        .batch(std::slice::from_ref(encoded), PadSide::Right)
        .unwrap()
        .pixel_values
        .unwrap()
}

#[test]
fn replace_add_and_map_change_logits_as_they_should() {
    let llava = load(DType::F32);
    let latents = latents_of(&llava, &prompts(&llava)[..1], PadSide::Right);
    let base = run(
        &llava,
        &latents,
        &mut Hooks::new(),
        &Adapters::new(),
        &Readout::All,
    );
    let (_, t, d) = latents.embeds.dims3().unwrap();

    // Zeroing the last block's output zeroes the final RMSNorm and hence every logit.
    let mut hooks = Hooks::new();
    hooks.replace(
        Site::layer(1, LayerPoint::Output),
        Tensor::zeros((1, t, d), DType::F32, &Device::Cpu).unwrap(),
    );
    let zeroed = run(
        &llava,
        &latents,
        &mut hooks,
        &Adapters::new(),
        &Readout::All,
    );
    assert_eq!(
        zeroed
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap(),
        0.0
    );

    // An added tensor changes logits, and equals the same shift attached as an adapter.
    let delta = Tensor::arange(0f32, d as f32, &Device::Cpu)
        .unwrap()
        .affine(0.05, -0.5)
        .unwrap();
    let site = Site::layer(0, LayerPoint::AttnOutput);
    let mut hooks = Hooks::new();
    hooks.add(site, delta.clone());
    let added = run(
        &llava,
        &latents,
        &mut hooks,
        &Adapters::new(),
        &Readout::All,
    );
    assert!(max_abs_diff(&added, &base) > 1e-2);
    let mut adapters = Adapters::new();
    adapters.shift(site, Shift::Tensor(delta.clone()));
    assert_eq!(
        max_abs_diff(
            &run(
                &llava,
                &latents,
                &mut Hooks::new(),
                &adapters,
                &Readout::All
            ),
            &added
        ),
        0.0
    );

    // A closure sees the block input; returning the value unchanged changes nothing.
    let mut seen = None;
    let mut hooks = Hooks::new();
    hooks.map(site, |view| {
        seen = view.block_input.map(|b| b.dims().to_vec());
        Ok(view.value.clone())
    });
    let same = run(
        &llava,
        &latents,
        &mut hooks,
        &Adapters::new(),
        &Readout::All,
    );
    drop(hooks);
    assert_eq!(max_abs_diff(&same, &base), 0.0);
    assert_eq!(seen, Some(vec![1, t, d]));

    // A wrongly shaped replacement is a diagnostic naming the site.
    let mut hooks = Hooks::new();
    hooks.replace(
        site,
        Tensor::zeros((1, t, d + 1), DType::F32, &Device::Cpu).unwrap(),
    );
    let err = llava
        .forward(&latents, &mut hooks, &Adapters::new(), &Readout::All)
        .unwrap_err();
    assert!(
        matches!(err, ModelError::Site { .. }) && err.to_string().contains("layer(0).attn.output"),
        "{err}"
    );
    let mut hooks = Hooks::new();
    hooks.capture(Site::layer(9, LayerPoint::Input));
    let err = llava
        .forward(&latents, &mut hooks, &Adapters::new(), &Readout::All)
        .unwrap_err();
    assert!(err.to_string().contains("layer(9).input"), "{err}");
}

#[test]
fn masking_a_window_of_visual_latents_by_hook_equals_editing_the_latents() {
    let llava = load(DType::F32);
    let latents = latents_of(&llava, &prompts(&llava)[..1], PadSide::Right);
    let mut hooks = Hooks::new();
    hooks.map(Site::EmbedVision, |view| {
        let (n, d) = view.value.dims2()?;
        let mut mask = vec![1f32; n];
        mask[4..8].fill(0.0);
        view.value.broadcast_mul(
            &Tensor::from_vec(mask, (n, 1), view.value.device())?.broadcast_as((n, d))?,
        )
    });
    let masked = run(
        &llava,
        &latents,
        &mut hooks,
        &Adapters::new(),
        &Readout::All,
    );
    let visual = latents.layout.visual_index();
    let mut embeds = latents
        .embeds
        .flatten_to(1)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for &i in &visual[4..8] {
        embeds[i as usize].fill(0.0);
    }
    let edited = Tensor::new(embeds, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let direct = run(
        &llava,
        &latents.with_embeds(edited),
        &mut Hooks::new(),
        &Adapters::new(),
        &Readout::All,
    );
    assert_eq!(max_abs_diff(&masked, &direct), 0.0);
}

#[test]
fn replacing_a_weight_by_w_minus_ba_plus_lora_ba_is_the_same_model_and_restores() {
    let mut llava = load(DType::F32);
    let latents = latents_of(&llava, &prompts(&llava)[..1], PadSide::Right);
    let base = run(
        &llava,
        &latents,
        &mut Hooks::new(),
        &Adapters::new(),
        &Readout::All,
    );
    let site = LinearSite::new(1, Proj::Down);
    let a = Tensor::randn(0f32, 0.3, (4, 64), &Device::Cpu).unwrap();
    let b = Tensor::randn(0f32, 0.3, (32, 4), &Device::Cpu).unwrap();
    let w = llava.linear_weight(site).unwrap();
    let old = llava
        .replace_linear_weight(site, (&w - b.matmul(&a).unwrap()).unwrap())
        .unwrap();
    let mut adapters = Adapters::new();
    adapters.lora(
        site,
        Lora {
            a: a.clone(),
            b: b.clone(),
            scaling: 1.0,
        },
    );
    let split = run(
        &llava,
        &latents,
        &mut Hooks::new(),
        &adapters,
        &Readout::All,
    );
    assert!(
        max_abs_diff(&split, &base) < TIGHT,
        "{}",
        max_abs_diff(&split, &base)
    );
    let without = run(
        &llava,
        &latents,
        &mut Hooks::new(),
        &Adapters::new(),
        &Readout::All,
    );
    assert!(max_abs_diff(&without, &base) > 1e-3);
    llava.replace_linear_weight(site, old).unwrap();
    assert_eq!(
        max_abs_diff(
            &run(
                &llava,
                &latents,
                &mut Hooks::new(),
                &Adapters::new(),
                &Readout::All
            ),
            &base
        ),
        0.0
    );

    // A weight delta is the replaced weight W + ΔW.
    let delta = Tensor::randn(0f32, 0.1, (32, 64), &Device::Cpu).unwrap();
    let mut adapters = Adapters::new();
    adapters.delta(site, delta.clone());
    let with_delta = run(
        &llava,
        &latents,
        &mut Hooks::new(),
        &adapters,
        &Readout::All,
    );
    llava
        .replace_linear_weight(site, (&w + &delta).unwrap())
        .unwrap();
    let replaced = run(
        &llava,
        &latents,
        &mut Hooks::new(),
        &Adapters::new(),
        &Readout::All,
    );
    assert!(max_abs_diff(&with_delta, &replaced) < TIGHT);

    let err = llava
        .replace_linear_weight(
            site,
            Tensor::zeros((64, 32), DType::F32, &Device::Cpu).unwrap(),
        )
        .unwrap_err();
    assert!(err.to_string().contains("layer(1).mlp.down_proj"), "{err}");
    let mut bad = Adapters::new();
    bad.lora(
        site,
        Lora {
            a: b,
            b: a,
            scaling: 1.0,
        },
    );
    let err = llava
        .forward(&latents, &mut Hooks::new(), &bad, &Readout::All)
        .unwrap_err();
    assert!(err.to_string().contains("LoRA"), "{err}");
}

#[test]
fn padded_batches_match_single_prompts_on_both_sides() {
    let llava = load(DType::F32);
    let ps = prompts(&llava);
    let singles: Vec<Tensor> = ps
        .iter()
        .map(|p| {
            let l = latents_of(&llava, std::slice::from_ref(p), PadSide::Right);
            run(
                &llava,
                &l,
                &mut Hooks::new(),
                &Adapters::new(),
                &Readout::All,
            )
            .squeeze(0)
            .unwrap()
        })
        .collect();
    for side in [PadSide::Right, PadSide::Left] {
        let latents = latents_of(&llava, &ps, side);
        let all = run(
            &llava,
            &latents,
            &mut Hooks::new(),
            &Adapters::new(),
            &Readout::All,
        );
        let t = latents.layout.seq();
        for (row, single) in singles.iter().enumerate() {
            let len = single.dim(0).unwrap();
            let start = if side == PadSide::Right { 0 } else { t - len };
            let got = all.get(row).unwrap().narrow(0, start, len).unwrap();
            let diff = max_abs_diff(&got, single);
            assert!(diff < TIGHT, "{side:?} row {row}: {diff}");
        }
        // Last and Positions read the same numbers as All.
        let last = run(
            &llava,
            &latents,
            &mut Hooks::new(),
            &Adapters::new(),
            &Readout::Last,
        );
        for (row, single) in singles.iter().enumerate() {
            let want = single.get(single.dim(0).unwrap() - 1).unwrap();
            assert!(max_abs_diff(&last.get(row).unwrap(), &want) < TIGHT);
        }
        let col = if side == PadSide::Right { 2 } else { t - 2 };
        let picked = run(
            &llava,
            &latents,
            &mut Hooks::new(),
            &Adapters::new(),
            &Readout::Positions(vec![(1, col)]),
        );
        assert!(
            max_abs_diff(
                &picked.squeeze(0).unwrap(),
                &all.get(1).unwrap().get(col).unwrap()
            ) < TIGHT
        );
    }
    let latents = latents_of(&llava, &ps, PadSide::Right);
    let err = llava
        .forward(
            &latents,
            &mut Hooks::new(),
            &Adapters::new(),
            &Readout::Positions(vec![(1, 30)]),
        )
        .unwrap_err();
    assert!(err.to_string().contains("padding"), "{err}");
}

/// Greedy decoding without a cache: the whole sequence re-run for every new token.
fn naive_greedy(llava: &Llava, prompt: &Encoded, steps: usize) -> Vec<u32> {
    let mut seq = prompt.clone();
    let mut out = Vec::new();
    for _ in 0..steps {
        let latents = latents_of(llava, std::slice::from_ref(&seq), PadSide::Right);
        let logits = run(
            llava,
            &latents,
            &mut Hooks::new(),
            &Adapters::new(),
            &Readout::Last,
        );
        let next = logits
            .argmax(D::Minus1)
            .unwrap()
            .squeeze(0)
            .unwrap()
            .to_scalar::<u32>()
            .unwrap();
        out.push(next);
        seq.extend(&[next]);
    }
    out
}

#[test]
fn cached_batched_generation_equals_naive_greedy() {
    let llava = load(DType::F32);
    let ps = prompts(&llava);
    let opts = GenerateOptions::new(6, vec![]);
    let mut hooks = Hooks::new();
    hooks.capture(Site::layer(1, LayerPoint::Output));
    let generated = llava
        .generate(&ps, &mut hooks, &Adapters::new(), &opts)
        .unwrap();
    // One capture for the prompt pass and one per further decoding step.
    assert_eq!(hooks.captured(&Site::layer(1, LayerPoint::Output)).len(), 6);
    for (row, p) in ps.iter().enumerate() {
        assert_eq!(
            generated.tokens[row],
            naive_greedy(&llava, p, 6),
            "row {row}"
        );
        assert!(!generated.stopped[row]);
    }
    let latents = latents_of(&llava, &ps, PadSide::Right);
    let last = run(
        &llava,
        &latents,
        &mut Hooks::new(),
        &Adapters::new(),
        &Readout::Last,
    );
    assert!(max_abs_diff(&generated.prompt_logits, &last) < TIGHT);

    // Stopping: make the first greedy token of row 0 a stop token.
    let first = generated.tokens[0][0];
    let opts = GenerateOptions::new(6, vec![first]);
    let stopped = llava
        .generate(&ps[..1], &mut Hooks::new(), &Adapters::new(), &opts)
        .unwrap();
    assert!(stopped.tokens[0].is_empty() && stopped.stopped[0]);

    // Adapters act during generation: a strong shift changes the continuation.
    let mut adapters = Adapters::new();
    let push = Tensor::randn(0f32, 3.0, 32, &Device::Cpu).unwrap();
    adapters.shift(Site::layer(1, LayerPoint::MlpOutput), Shift::Tensor(push));
    let edited = llava
        .generate(
            &ps[..1],
            &mut Hooks::new(),
            &adapters,
            &GenerateOptions::new(6, vec![]),
        )
        .unwrap();
    assert_ne!(edited.tokens[0], generated.tokens[0]);
}

#[test]
fn prompts_and_images_must_agree() {
    let llava = load(DType::F32);
    let err = llava.encode(PROMPT, &[]).unwrap_err();
    assert!(
        matches!(err, ModelError::Prompt { .. }) && err.to_string().contains("<image>"),
        "{err}"
    );
    let err = llava.encode("no image here", &[image()]).unwrap_err();
    assert!(err.to_string().contains("1 image"), "{err}");
    let two = llava
        .encode("<image> and <image>", &[image(), other_image()])
        .unwrap();
    assert_eq!(two.image_positions.len(), 32);
    assert_eq!(two.pixel_values.as_ref().unwrap().dims(), &[2, 3, 28, 28]);
    let latents = latents_of(&llava, &[two], PadSide::Right);
    assert_eq!(latents.layout.visual_index().len(), 32);
}

#[test]
fn observing_accumulates_a_covariance_over_real_tokens_only() {
    let llava = load(DType::F32);
    let ps = prompts(&llava);
    let latents = latents_of(&llava, &ps, PadSide::Right);
    let site = Site::layer(1, LayerPoint::ProjInput(Proj::Down));
    let mut cov: Option<Tensor> = None;
    let mut rows = 0;
    let mut hooks = Hooks::new();
    hooks.observe(site, |view| {
        let x = view
            .layout
            .valid_rows(view.value)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?
            .detach();
        rows += x.dim(0)?;
        let xtx = x.t()?.matmul(&x)?;
        cov = Some(match cov.take() {
            Some(c) => (c + xtx)?,
            None => xtx,
        });
        Ok(())
    });
    hooks.capture(site);
    run(
        &llava,
        &latents,
        &mut hooks,
        &Adapters::new(),
        &Readout::Last,
    );
    let captured = hooks.captured(&site)[0].clone();
    drop(hooks);
    let real: usize = ps.iter().map(Encoded::len).sum();
    assert_eq!(rows, real);
    let x = latents.layout.valid_rows(&captured).unwrap();
    let expected = x.t().unwrap().matmul(&x).unwrap();
    let cov = cov.unwrap();
    assert_eq!(cov.dims(), &[64, 64]);
    assert_eq!(max_abs_diff(&cov, &expected), 0.0);

    // Adapter tensors in another dtype than the model are a diagnostic, not a candle error.
    let mut adapters = Adapters::new();
    adapters.delta(
        LinearSite::new(0, Proj::Up),
        Tensor::zeros((64, 32), DType::F64, &Device::Cpu).unwrap(),
    );
    let err = llava
        .forward(&latents, &mut Hooks::new(), &adapters, &Readout::Last)
        .unwrap_err();
    assert!(
        err.to_string().contains("F64") && err.to_string().contains("layer(0).mlp.up_proj"),
        "{err}"
    );
}
