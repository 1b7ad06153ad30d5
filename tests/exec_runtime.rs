//! The runtime addition the executor relies on: `LlavaModel::forward_through(…, l)` stops after layer `l` and
//! returns exactly what a full pass holds at `layer(l).output`.

mod exec_common;

use candle_core::DType;
use exec_common::tiny;
use mkedsl::model::site::{LayerPoint, Site};
use mkedsl::model::{Adapters, Hooks, Llava, LoadOptions, PadSide, Readout, VisionLanguageModel};

#[test]
fn through_stops_after_a_layer_with_the_full_pass_values() {
    let llava = Llava::load(&tiny(), &LoadOptions::default()).expect("loads");
    let a = llava
        .encode("USER: what color is the circle? ASSISTANT: red", &[])
        .unwrap();
    let b = llava
        .encode("USER: how many shapes? ASSISTANT:", &[])
        .unwrap();
    let batch = llava.batch(&[a, b], PadSide::Right).unwrap();
    let latents = llava.embed(&batch).unwrap();
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
    let captured = full.captured(&site)[0].clone();
    let diff = (out.to_dtype(DType::F64).unwrap() - captured.to_dtype(DType::F64).unwrap())
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap();
    assert_eq!(diff, 0.0);
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
