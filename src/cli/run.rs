//! `mkedsl run FILE`: check, plan and execute a recipe over an MMEdit dataset, then print the
//! metric table with the pre-edit row.

use std::path::PathBuf;

use clap::Args;

use super::eval::ModeArg;
use super::inputs::EditDataArgs;
use crate::exec::run::DEFAULT_LIMIT;
use crate::exec::shard::Shard;
use crate::exec::{run as run_recipe, CacheChoice, RunRequest};
use crate::sema::Op;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The recipe (`.edit` file).
    pub file: PathBuf,
    #[command(flatten)]
    pub inputs: EditDataArgs,
    /// Consider only the first N records of each data file, before records with an empty `alt`
    /// or a missing image are skipped (EasyEdit's `size`) [default: 24, so the default run
    /// stays short].
    #[arg(long, conflicts_with = "all")]
    pub limit: Option<usize>,
    /// Edit and score every case of the dataset.
    #[arg(long)]
    pub all: bool,
    /// Editing schedule [default: the recipe's `mode`].
    #[arg(long, value_enum)]
    pub mode: Option<ModeArg>,
    /// Edits per group in sequential mode [default: the recipe's `sequential_k`, else 10].
    #[arg(long)]
    pub k: Option<usize>,
    /// Seed of every random draw [default: the recipe's `seed`].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Value for a recipe `param` (repeat the flag): `--set lr=3e-3`. Checked like the literal
    /// it replaces.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Also write the full report (scores, per-case rows) as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write an HTML report (tables, plots, provenance) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Edit only shard I of N (counting from 0) and write its partial results to --json, for
    /// `mkedsl merge`: a fixed block of the cases in single editing, of whole sequences of K in
    /// sequential editing. Concurrent shards share the prepare cache.
    #[arg(long, value_name = "I/N", requires = "json")]
    pub shard: Option<Shard>,
    /// Write each case's (or sequential group's) edit — LoRA tensors and weight deltas as
    /// safetensors, with a JSON saying where they apply — under this folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Formats of the --out artefacts, besides mkedsl's own (`edit.json` + `edit.safetensors`):
    /// `peft` adds a PEFT LoRA adapter (`adapter_config.json` + `adapter_model.safetensors`)
    /// that `PeftModel.from_pretrained` loads onto transformers' `LlavaForConditionalGeneration`;
    /// `merged` adds `merged/`, a complete checkpoint of the edited model transformers loads
    /// unchanged. Comma-separated or repeated.
    #[arg(long, value_enum, value_delimiter = ',', requires = "out")]
    pub format: Vec<OutFormat>,
    /// Neither read nor write the cache of prepare results.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
    /// Cache folder [default: $MKEDSL_CACHE, else .mkedsl-cache/ beside the model folder].
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// MMEdit file of preserved knowledge for a model other than the embedded one (`loc`/`loc_ans`
    /// give text samples, `image`/`src`/`pred` give VQA samples); never the edit data.
    #[arg(long)]
    pub preserve: Option<PathBuf>,
    /// MMEdit E-IC file of preserved caption samples (`image`/`src`/`pred`).
    #[arg(long)]
    pub preserve_captions: Option<PathBuf>,
    /// CPU threads for tensor kernels [default: $RAYON_NUM_THREADS, else 1 — fastest for the
    /// embedded model's small matrices; raise it for large checkpoints].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Memory the run may use (e.g. `64G`) [default: the machine's]: a recipe whose estimated
    /// peak (`mkedsl plan FILE --model DIR` prints it) is larger is refused before loading.
    #[arg(long, value_parser = parse_size)]
    pub max_memory: Option<u64>,
}

/// Refuses, before any tensor work, a `--format` that cannot hold what the recipe edits: extra
/// FFN neurons widen the MLP, which neither a LoRA adapter nor a plain LLaVA's weights express.
/// A recipe that does not compile is left to `run`, which reports it in full.
fn refuse_what_formats_cannot_hold(
    request: &RunRequest,
    formats: &[OutFormat],
) -> miette::Result<()> {
    let plain: Vec<&str> = (formats.iter())
        .filter_map(|f| match f {
            OutFormat::Peft => Some("peft"),
            OutFormat::Merged => Some("merged"),
            OutFormat::Mkedsl => None,
        })
        .collect();
    if plain.is_empty() {
        return Ok(());
    }
    let options = crate::plan::PlanOptions::default();
    let Ok(compiled) = crate::compile_with(&request.recipe, None, options, &request.overrides)
    else {
        return Ok(());
    };
    let Some(step) = (compiled.plan.steps.iter()).find(|s| matches!(s.op, Op::ExtraNeurons(_)))
    else {
        return Ok(());
    };
    Err(crate::exec::ExecError::Option {
        reason: format!(
            "--format {} cannot hold this recipe's edit: `extra_neurons` ({}) adds FFN neurons, which widen the MLP; no LoRA adapter and no weight of a plain LLaVA expresses them",
            plain.join(","),
            step.origin.at
        ),
        help: "drop --format peft/merged for this recipe; mkedsl's own --out artefact (edit.json + edit.safetensors) keeps the neurons".into(),
    }
    .into())
}

/// `--format` of `--out`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutFormat {
    Mkedsl,
    Peft,
    Merged,
}

fn parse_size(text: &str) -> Result<u64, String> {
    crate::plan::estimate::parse_bytes(text)
        .ok_or_else(|| format!("`{text}` is not a size; write e.g. 64G, 512M or a byte count"))
}

pub fn run(args: RunArgs) -> miette::Result<()> {
    crate::exec::run::set_cpu_threads(args.threads)?;
    let limit = if args.all {
        None
    } else {
        Some(args.limit.unwrap_or(DEFAULT_LIMIT))
    };
    let (setup, probe) = args.inputs.into_request(limit)?;
    let report = args.report;
    let request = RunRequest {
        setup,
        sequential: args.mode.map(|m| m == ModeArg::Sequential),
        k: args.k,
        seed: args.seed,
        overrides: crate::sema::Overrides::new(args.set),
        json: args.json,
        out: args.out,
        shard: args.shard,
        cache: CacheChoice::from_flags(args.no_cache, args.cache_dir),
        preserve: args.preserve,
        preserve_captions: args.preserve_captions,
        probe,
        verbose: true,
        max_memory: args.max_memory,
        ..RunRequest::new(args.file)
    };
    refuse_what_formats_cannot_hold(&request, &args.format)?;
    let mut outcome = run_recipe(&request)?;
    if request.json.is_some() {
        let model = PathBuf::from(&outcome.report.model);
        outcome.report.provenance = Some(super::provenance::provenance(
            &outcome.report,
            Some(&request.recipe),
            &model,
            Some(&outcome.phases),
            request.setup.dtype,
        )?);
    }
    if let Some(page) = &report {
        super::report::write_for(&outcome.report, request.json.as_deref(), Vec::new(), page)?;
    }
    print!("{}", outcome.report.table());
    println!();
    print!("{}", outcome.summary());
    if let Some(part) = &outcome.part {
        println!(
            "shard     {} of the run's {} cases: cases {}–{} (partial results; combine the parts with `mkedsl merge`)",
            part.shard(),
            part.run_cases,
            part.cases.first().copied().unwrap_or_default(),
            part.cases.last().copied().unwrap_or_default()
        );
    }
    if !outcome.artefacts.is_empty() {
        println!(
            "edits     {} artefact(s) written under {}",
            outcome.artefacts.len(),
            request
                .out
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string())
        );
    }
    // Files come after the table: a write that fails cannot take the scores with it.
    if let Some(path) = &request.json {
        outcome.write_json(path)?;
    }
    let base = outcome.report.model.clone();
    let dirs = outcome
        .artefacts
        .iter()
        .map(|m| m.parent().unwrap_or(std::path::Path::new(".")));
    if args.format.contains(&OutFormat::Peft) {
        for dir in dirs.clone() {
            crate::export::artefact_to_peft(dir, &base)?;
        }
        println!(
            "peft      {} PEFT LoRA adapter(s) written beside them (adapter_config.json, adapter_model.safetensors)",
            outcome.artefacts.len()
        );
    }
    if args.format.contains(&OutFormat::Merged) {
        for dir in dirs {
            crate::export::artefact_to_merged(dir, std::path::Path::new(&base))?;
        }
        println!(
            "merged    {} merged checkpoint(s) written beside them (merged/: config, safetensors, tokenizer, processor files)",
            outcome.artefacts.len()
        );
    }
    if let Some(failure) = outcome.output_failure {
        return Err(failure.wrap_err(format!(
            "--out: {} artefact(s) were written before this failure; the scores above cover every case",
            outcome.artefacts.len()
        )));
    }
    Ok(())
}
