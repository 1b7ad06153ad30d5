//! Every shipped recipe, run as shipped on the embedded model and `examples/data/evqa.json`:
//! the edit takes (Rel after the edit beats the pre-edit Rel) and every score is a fraction.
//! These are the files a user runs; the tiny-fixture tests in `exec_recipes.rs` cover the
//! executor's paths, these cover the recipes' hyperparameters on the model they were tuned for.

use std::path::PathBuf;

use mkedsl::eval::{EvalReport, ProbeOptions, SetupRequest};
use mkedsl::exec::{run, CacheChoice, RunOutcome, RunRequest};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_shipped(recipe: &str, data: &str, cases: usize) -> RunOutcome {
    let cache = tempfile::tempdir().expect("temp dir");
    let request = RunRequest {
        setup: SetupRequest {
            model: Some(root().join("examples/model")),
            data: Some(root().join("examples/data").join(data)),
            limit: Some(cases),
            ..SetupRequest::default()
        },
        cache: CacheChoice::Dir(cache.path().to_path_buf()),
        probe: ProbeOptions {
            batch_size: 16,
            max_new_tokens: 8,
        },
        ..RunRequest::new(root().join("recipes").join(recipe))
    };
    run(&request).unwrap_or_else(|e| panic!("{recipe}: {e:?}"))
}

fn assert_edit_took(recipe: &str, r: &EvalReport) {
    let (m, g) = (&r.metrics, &r.generation);
    for v in [
        m.rel, m.t_gen, m.m_gen, m.t_loc, m.m_loc, g.rel, g.t_gen, g.m_gen, g.t_loc, g.m_loc,
    ] {
        assert!(
            (0.0..=1.0).contains(&v),
            "{recipe}: score {v} outside [0, 1]"
        );
    }
    assert!(
        m.rel > r.pre_edit.metrics.rel && m.rel >= 0.5,
        "{recipe}: the edit did not take: Rel {} after, {} before",
        m.rel,
        r.pre_edit.metrics.rel
    );
}

macro_rules! shipped {
    ($($(#[$attr:meta])* $name:ident: $file:literal, $data:literal;)*) => {$(
        #[test]
        $(#[$attr])*
        fn $name() {
            let out = run_shipped($file, $data, CASES);
            assert_eq!(out.report.cases, CASES);
            assert_edit_took($file, &out.report);
        }
    )*};
}

/// Cases per recipe: enough that one stubborn case cannot decide the test alone.
const CASES: usize = 4;

shipped! {
    ft_l_on_evqa: "ft_l.edit", "evqa.json";
    lora_on_evqa: "lora.edit", "evqa.json";
    lora_null_on_evqa: "lora_null.edit", "evqa.json";
    lpedit_on_evqa: "lpedit.edit", "evqa.json";
    elora_on_evqa: "elora.edit", "evqa.json";
    elora_on_eic: "elora.edit", "eic.json";
    /// Prepares its memory (2,000 triplets) and encoders from scratch, about a minute.
    unike_on_evqa: "unike.edit", "evqa.json";
    /// About a minute: LAR regenerates adversaries and a KL batch at every step.
    #[ignore]
    asam_on_evqa: "asam.edit", "evqa.json";
    /// About a minute, as ASAM.
    #[ignore]
    elora_asam_on_evqa: "elora_asam.edit", "evqa.json";
}
