//! No input may make the front end panic: random token soups and mutations of the shipped recipes
//! (deleted, duplicated, swapped and inserted tokens and bytes, bytes that break UTF-8, multi-byte
//! characters in awkward places) go through parse + check + plan, and every diagnostic is
//! rendered. Seeded, so a failure reproduces; a few hundred cases by default, thousands with
//! `cargo test --test lang_fuzz -- --ignored` (`MKEDSL_FUZZ_CASES`, `MKEDSL_FUZZ_SEED`).

use std::path::Path;

use mkedsl::model::config::{LlavaConfig, ModelDims};
use mkedsl::plan::PlanOptions;
use mkedsl::source::SourceMap;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Pieces of recipe text a mutation can insert.
const TOKENS: &[&str] = &[
    "recipe",
    "\"R\"",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ",",
    ":",
    ".",
    "..",
    "=",
    "+",
    "-",
    "*",
    "/",
    "#",
    "##",
    "\"",
    "\\",
    "\n",
    " ",
    "let",
    "fn",
    "use",
    "std.lora",
    "per",
    "edit",
    "train",
    "for",
    "steps",
    "with",
    "loss",
    "project",
    "grad",
    "update",
    "onto",
    "scale",
    "freeze",
    "evaluate",
    "target",
    "embed",
    "vision",
    "layer(1)",
    "layers(-4..)",
    "mlp",
    "attn",
    "down_proj",
    "input",
    "weight",
    "lora",
    "null_space",
    "covariance",
    "preserve",
    "knowledge_space",
    "perturb",
    "adversarial",
    "rank_align",
    "hidden",
    "nll",
    "sgd(lr: 0.1)",
    "adam",
    "0",
    "-1",
    "1e-3",
    "1.",
    "99999999999999999999",
    "1e999",
    "9223372036854775807",
    "-9223372036854775808",
    "layer(9223372036854775807)",
    "layers(-9223372036854775808..)",
    "1e300 *",
    "0.0",
    "/ 0",
    "é",
    "🦀",
    "\u{200b}",
    "\u{0}",
    "rank:",
    "init: random",
    "per edit {",
    "train ab for 3 steps with sgd(lr: 1) {",
    "loss nll(target)",
    "-> Adapter",
    "x",
    "ab.B",
];

fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in ["recipes", "stdlib"] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
            paths.sort();
            for p in paths {
                if let Ok(bytes) = std::fs::read(&p) {
                    out.push(bytes);
                }
            }
        }
    }
    assert!(out.len() >= 8, "the shipped recipes are the fuzzer's seeds");
    out
}

fn dims() -> ModelDims {
    LlavaConfig::from_path(Path::new("tests/fixtures/lang/config.json"))
        .expect("fixture")
        .dims()
}

#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: u16, len: u8 },
    Duplicate { at: u16, len: u8 },
    Swap { a: u16, b: u16, len: u8 },
    Insert { at: u16, token: usize },
    Byte { at: u16, byte: u8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<u16>(), 1u8..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<u16>(), 1u8..40).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        (any::<u16>(), any::<u16>(), 1u8..20).prop_map(|(a, b, len)| Mutation::Swap { a, b, len }),
        (any::<u16>(), 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        (any::<u16>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Byte { at, byte }),
    ]
}

/// A position anywhere in `len` bytes — deliberately ignoring character boundaries.
fn pos(frac: u16, len: usize) -> usize {
    (frac as usize * len) / (u16::MAX as usize + 1)
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let n = bytes.len();
    match *m {
        Mutation::Delete { at, len } => {
            let start = pos(at, n);
            let end = (start + len as usize).min(n);
            bytes.drain(start..end);
        }
        Mutation::Duplicate { at, len } => {
            let start = pos(at, n);
            let end = (start + len as usize).min(n);
            let piece: Vec<u8> = bytes[start..end].to_vec();
            bytes.splice(end..end, piece);
        }
        Mutation::Swap { a, b, len } => {
            let (x, y) = (pos(a, n), pos(b, n));
            let (x, y) = (x.min(y), x.max(y));
            let len = (len as usize).min(y - x).min(n - y);
            for i in 0..len {
                bytes.swap(x + i, y + i);
            }
        }
        Mutation::Insert { at, token } => {
            let start = pos(at, n);
            let text = TOKENS
                .get(token)
                .copied()
                .unwrap_or("x")
                .as_bytes()
                .to_vec();
            bytes.splice(start..start, text);
        }
        Mutation::Byte { at, byte } => {
            if n > 0 {
                let i = pos(at, n);
                bytes[i] = byte;
            }
        }
    }
}

/// Runs the whole front end on `bytes`; any panic fails the test.
fn front_end(bytes: &[u8], dims: Option<&ModelDims>) {
    // Raw bytes: invalid UTF-8 must be a diagnostic.
    let mut sources = SourceMap::new();
    if let Err(d) = sources.add_bytes("fuzz.edit".into(), bytes) {
        let _ = d.render_plain(&sources);
    }
    let text = String::from_utf8_lossy(bytes);
    match mkedsl::compile_text("fuzz.edit", &text, dims, PlanOptions::default()) {
        Ok(compiled) => {
            let _ = compiled.plan.display();
            let _ = serde_json::to_string(&compiled.plan);
        }
        Err(failed) => {
            let rendered = failed.render_plain();
            assert!(!rendered.is_empty());
            let _ = failed.into_report();
        }
    }
}

fn run_mutations(cases: u32, seed: u8) {
    let seeds = seeds();
    let dims = dims();
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    );
    let strategy = (
        0..seeds.len(),
        proptest::collection::vec(mutation(), 1..8),
        any::<bool>(),
    );
    let result = runner.run(&strategy, |(which, mutations, bound)| {
        let mut bytes = seeds[which].clone();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        front_end(&bytes, if bound { Some(&dims) } else { None });
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn run_soups(cases: u32, seed: u8) {
    let dims = dims();
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(
        config,
        TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]),
    );
    let strategy = (
        proptest::collection::vec(0..TOKENS.len(), 0..80),
        any::<bool>(),
    );
    let result = runner.run(&strategy, |(tokens, bound)| {
        let mut text = String::from("recipe \"soup\" { paper: \"x\" }\n");
        for t in tokens {
            text.push_str(TOKENS.get(t).copied().unwrap_or(""));
            text.push(' ');
        }
        front_end(text.as_bytes(), if bound { Some(&dims) } else { None });
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn mutated_recipes_never_panic() {
    run_mutations(300, 1);
}

#[test]
fn token_soups_never_panic() {
    run_soups(300, 2);
}

#[test]
fn pathological_inputs_never_panic() {
    let dims = dims();
    let cases: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"(".repeat(100_000),
        b"-".repeat(10_000),
        format!("recipe \"x\" {{}}\nlet a = 1{}", " + 1".repeat(1000)).into_bytes(),
        format!("recipe \"x\" {{}}\nlet a = layer(1){}", ".mlp".repeat(100)).into_bytes(),
        "recipe \"🦀\" { paper: \"é\" }\nlet é = 1\n"
            .as_bytes()
            .to_vec(),
        b"recipe \"x\" { paper: \"\xff\" }".to_vec(),
        "\"".repeat(3).into_bytes(),
        b"\\".to_vec(),
        b"recipe \"x\" {}\nlet s = \"a\\".to_vec(),
        "#".repeat(10).into_bytes(),
        b"recipe \"x\" {}\nlet l = layer(9223372036854775807)\nlet m = layers(-9223372036854775808..9223372036854775807)\n".to_vec(),
        b"recipe \"x\" {}\nper edit { train layer(1).mlp.up_proj.weight for 1 steps with sgd(lr: 1) { loss 1e300 * (1e300 * nll(target)) } }\n".to_vec(),
        format!("recipe \"x\" {{}}\n{}", "let x = [".repeat(40)).into_bytes(),
    ];
    for bytes in cases {
        front_end(&bytes, None);
        front_end(&bytes, Some(&dims));
    }
}

#[test]
#[ignore = "long fuzzing run: cargo test --test lang_fuzz -- --ignored"]
fn many_mutations_never_panic() {
    // MKEDSL_FUZZ_CASES and MKEDSL_FUZZ_SEED widen the search.
    let cases = std::env::var("MKEDSL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let seed = std::env::var("MKEDSL_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    run_mutations(cases, seed);
    run_soups(cases, seed.wrapping_add(1));
}
