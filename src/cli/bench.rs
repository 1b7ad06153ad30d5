//! `mkedsl bench [RECIPES…] [--cases N]`: recipes side by side on the same cases — seconds per
//! edit by phase and peak memory.

use std::path::PathBuf;

use clap::Args;

use crate::eval::{default_path, SetupRequest, DEFAULT_DATA, DEFAULT_MODEL};
use crate::exec::bench::{bench, table, BenchRequest};
use crate::exec::CacheChoice;
use crate::model::device::DeviceKind;
use crate::model::Precision;

/// The recipes benchmarked when none is named: every method `mkedsl run` executes.
pub const DEFAULT_RECIPES: [&str; 6] = [
    "recipes/ft_l.edit",
    "recipes/lora.edit",
    "recipes/lora_null.edit",
    "recipes/lpedit.edit",
    "recipes/elora.edit",
    "recipes/asam.edit",
];

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Recipes to compare [default: ft_l, lora, lora_null, lpedit, elora, asam from recipes/].
    pub recipes: Vec<PathBuf>,
    /// Cases each recipe edits (the first N of the dataset).
    #[arg(long, default_value_t = 8)]
    pub cases: usize,
    /// Checkpoint folder [default: examples/model].
    /// `ORG/NAME[@REVISION]` names a snapshot in the Hugging Face cache (offline).
    #[arg(long, value_parser = crate::model::hub::model_arg)]
    pub model: Option<PathBuf>,
    /// MMEdit JSON file [default: examples/data/evqa.json].
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[command(flatten)]
    pub images: super::inputs::ImageArgs,
    /// Device to run on: cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceKind,
    /// Precision of the frozen weights: f32, bf16 or f16 (half the memory). Trained tensors,
    /// optimiser state, logits and linear algebra stay f32.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Precision,
    /// Use the prepare cache (default: off, so `prepare` measures the computation).
    #[arg(long)]
    pub cache: bool,
    /// Also write the rows as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write an HTML report (tables, time per phase and memory plots, provenance) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// CPU threads for tensor kernels [default: $RAYON_NUM_THREADS, else 1 — fastest for the
    /// embedded model's small matrices; raise it for large checkpoints].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Value for a `param` in every recipe (repeat the flag): `--set lr=3e-3`. Checked like the
    /// literal it replaces.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

pub fn run(args: BenchArgs) -> miette::Result<()> {
    if args.cases == 0 {
        return Err(miette::miette!(
            help = "edit at least one case",
            "--cases must be at least 1"
        ));
    }
    crate::exec::run::set_cpu_threads(args.threads)?;
    let recipes = if args.recipes.is_empty() {
        DEFAULT_RECIPES
            .iter()
            .map(|r| default_path(r, "a shipped recipe"))
            .collect::<Result<Vec<_>, _>>()?
    } else {
        args.recipes
    };
    let model = match args.model {
        Some(m) => m,
        None => default_path(DEFAULT_MODEL, "the embedded model")?,
    };
    let data = match args.data {
        Some(d) => d,
        None => default_path(DEFAULT_DATA, "the embedded dataset")?,
    };
    let request = BenchRequest {
        recipes,
        setup: args.images.apply(SetupRequest {
            model: Some(model.clone()),
            data: Some(data.clone()),
            limit: Some(args.cases),
            device: args.device,
            dtype: args.dtype,
            ..SetupRequest::default()
        }),
        overrides: crate::sema::Overrides::new(args.set),
        cache: if args.cache {
            CacheChoice::Default
        } else {
            CacheChoice::Off
        },
        verbose: true,
    };
    let rows = bench(&request)?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let header = format!(
        "bench     model {} · data {} · {} cases each · device {} · dtype {} · {cores} cores, {} CPU thread(s) for tensor kernels · cache {}",
        model.display(),
        data.display(),
        args.cases,
        args.device,
        args.dtype,
        crate::exec::run::cpu_threads().unwrap_or(cores),
        if args.cache { "on" } else { "off" }
    );
    print!("{}", table(&rows, &header));
    if let Some(page) = &args.report {
        let extra = vec![
            ("model".to_string(), model.display().to_string()),
            ("data".to_string(), data.display().to_string()),
            ("device".to_string(), args.device.to_string()),
            ("dtype".to_string(), args.dtype.to_string()),
            (
                "threads".to_string(),
                format!(
                    "{} of {cores} cores",
                    crate::exec::run::cpu_threads().unwrap_or(cores)
                ),
            ),
            (
                "prepare cache".to_string(),
                if args.cache { "on" } else { "off" }.to_string(),
            ),
        ];
        super::report::write_for(&rows, args.json.as_deref(), extra, page)?;
    }
    if let Some(path) = args.json {
        let mut text = serde_json::to_string_pretty(&rows)
            .map_err(|e| miette::miette!("cannot serialise the rows: {e}"))?;
        text.push('\n');
        crate::data::files::write_atomic(&path, text.as_bytes())
            .map_err(|e| miette::miette!("cannot write `{}`: {e}", path.display()))?;
    }
    Ok(())
}
