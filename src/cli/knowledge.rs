//! `mkedsl knowledge --model DIR`: how much of the embedded world a checkpoint knows — greedy
//! exact match on held-out questions, one row per question family.

use std::path::PathBuf;

use miette::IntoDiagnostic;

use crate::data::files::write_atomic;
use crate::model::{DeviceKind, Llava, LoadOptions, Precision};
use crate::train::measure_knowledge;
use crate::world::World;

/// Measure a model's held-out accuracy on every question family of the world.
#[derive(Debug, clap::Args)]
pub struct KnowledgeArgs {
    /// Checkpoint folder (Hugging Face layout) trained on the world.
    #[arg(long, value_parser = crate::model::hub::model_arg)]
    pub model: PathBuf,
    /// Held-out questions per family.
    #[arg(long, default_value_t = 200)]
    pub per_family: usize,
    /// Seed of the held-out sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seed of the world the model was trained on.
    #[arg(long, default_value_t = 0)]
    pub world_seed: u64,
    /// Also write the report (with the first misses of each family) as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Device to run on: cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceKind,
    /// Precision of the frozen weights: f32, bf16 or f16 (half the memory). Trained tensors,
    /// optimiser state, logits and linear algebra stay f32.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Precision,
}

/// Runs `mkedsl knowledge`.
pub fn run(args: KnowledgeArgs) -> miette::Result<()> {
    let llava = Llava::load(&args.model, &LoadOptions::on(args.device, args.dtype)?)?;
    let world = World::new(args.world_seed);
    let report = measure_knowledge(&llava, &world, args.per_family, args.seed)?;
    println!(
        "{}: held-out greedy exact match, {} questions per family (world {}, seed {})",
        args.model.display(),
        args.per_family,
        args.world_seed,
        args.seed
    );
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let mut text = serde_json::to_string_pretty(&report).into_diagnostic()?;
        text.push('\n');
        write_atomic(path, text.as_bytes())
            .map_err(|e| miette::miette!("cannot write `{}`: {e}", path.display()))?;
    }
    Ok(())
}
