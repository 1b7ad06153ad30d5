//! `mkedsl compare [RECIPES…] [--data FILE…]`: every recipe on every dataset, one Markdown table
//! (token-level and exact-match scores, with the pre-edit row) — the README's results table.

use std::path::PathBuf;

use clap::Args;

use crate::eval::{default_path, SetupRequest, DEFAULT_MODEL};
use crate::exec::compare::{compare, file_name, markdown, CompareRequest};
use crate::exec::run::DEFAULT_LIMIT;
use crate::exec::CacheChoice;
use crate::model::device::DeviceKind;
use crate::model::Precision;

/// Recipes compared when none is named: the baselines, the two null-space methods, UniKE.
pub const DEFAULT_RECIPES: [&str; 6] = [
    "recipes/ft_l.edit",
    "recipes/lora.edit",
    "recipes/lora_null.edit",
    "recipes/lpedit.edit",
    "recipes/elora.edit",
    "recipes/unike.edit",
];

/// Datasets compared when none is named.
pub const DEFAULT_DATASETS: [&str; 2] = ["examples/data/evqa.json", "examples/data/eic.json"];

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Recipes to run [default: ft_l, lora, lora_null, lpedit, elora, unike from recipes/].
    pub recipes: Vec<PathBuf>,
    /// MMEdit files to run them on (repeat the flag) [default: examples/data/evqa.json and eic.json].
    #[arg(long)]
    pub data: Vec<PathBuf>,
    #[command(flatten)]
    pub images: super::inputs::ImageArgs,
    /// Checkpoint folder [default: examples/model].
    /// `ORG/NAME[@REVISION]` names a snapshot in the Hugging Face cache (offline).
    #[arg(long, value_parser = crate::model::hub::model_arg)]
    pub model: Option<PathBuf>,
    /// Records considered per dataset (the first N, as EasyEdit's `size`) [default: 24].
    #[arg(long, conflicts_with = "all")]
    pub limit: Option<usize>,
    /// Every case of each dataset.
    #[arg(long)]
    pub all: bool,
    /// Seed of every random draw [default: each recipe's `seed`].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Value for a recipe `param` in every recipe (repeat the flag): `--set lr=3e-3`. Checked like the literal
    /// it replaces.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
    /// Device to run on: cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceKind,
    /// Precision of the frozen weights: f32, bf16 or f16 (half the memory). Trained tensors,
    /// optimiser state, logits and linear algebra stay f32.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Precision,
    /// Also write every report (scores, per-case rows) as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write an HTML report (tables, grouped bars, provenance) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// CPU threads for tensor kernels [default: $RAYON_NUM_THREADS, else 1 — fastest for the
    /// embedded model's small matrices; raise it for large checkpoints].
    #[arg(long)]
    pub threads: Option<usize>,
}

pub fn run(args: CompareArgs) -> miette::Result<()> {
    if args.limit == Some(0) {
        return Err(miette::miette!(
            help = "edit at least one case",
            "--limit must be at least 1"
        ));
    }
    crate::exec::run::set_cpu_threads(args.threads)?;
    let defaults = |list: &[&str], what: &'static str| {
        list.iter()
            .map(|p| default_path(p, what))
            .collect::<Result<Vec<_>, _>>()
    };
    let recipes = if args.recipes.is_empty() {
        defaults(&DEFAULT_RECIPES, "a shipped recipe")?
    } else {
        args.recipes
    };
    let datasets = if args.data.is_empty() {
        defaults(&DEFAULT_DATASETS, "an embedded dataset")?
    } else {
        args.data
    };
    let model = match args.model {
        Some(m) => m,
        None => default_path(DEFAULT_MODEL, "the embedded model")?,
    };
    let limit = if args.all {
        None
    } else {
        Some(args.limit.unwrap_or(DEFAULT_LIMIT))
    };
    let mut cells = compare(&CompareRequest {
        recipes,
        datasets,
        setup: args.images.apply(SetupRequest {
            model: Some(model.clone()),
            limit,
            device: args.device,
            dtype: args.dtype,
            ..SetupRequest::default()
        }),
        seed: args.seed,
        overrides: crate::sema::Overrides::new(args.set),
        cache: CacheChoice::Default,
        verbose: true,
    })?;
    let seeds: Vec<String> = {
        let mut s: Vec<String> = cells
            .iter()
            .map(|c| c.report.seed.map_or("none".into(), |s| s.to_string()))
            .collect();
        s.sort();
        s.dedup();
        s
    };
    let cases: Vec<String> = {
        let mut c: Vec<String> = cells
            .iter()
            .map(|c| format!("{} {}", c.report.cases, file_name(&c.data)))
            .collect();
        c.dedup();
        c
    };
    println!(
        "model {} · cases: {} · seed {} · device {} · dtype {} · mode: each recipe's (single)",
        model.display(),
        cases.join(", "),
        seeds.join("/"),
        args.device,
        args.dtype
    );
    println!();
    print!("{}", markdown(&cells));
    if let Some(page) = &args.report {
        super::report::write_for(&cells, args.json.as_deref(), Vec::new(), page)?;
    }
    if let Some(path) = args.json {
        for cell in &mut cells {
            let recipe = PathBuf::from(&cell.recipe_file);
            cell.report.provenance = Some(super::provenance::provenance(
                &cell.report,
                Some(&recipe),
                &model,
                None,
                args.dtype,
            )?);
        }
        let mut text = serde_json::to_string_pretty(&cells)
            .map_err(|e| miette::miette!("cannot serialise the reports: {e}"))?;
        text.push('\n');
        crate::data::files::write_atomic(&path, text.as_bytes())
            .map_err(|e| miette::miette!("cannot write `{}`: {e}", path.display()))?;
    }
    Ok(())
}
