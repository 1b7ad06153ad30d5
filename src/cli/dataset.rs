//! `mkedsl dataset --model DIR --out DIR`: writes the embedded MMEdit datasets (`evqa.json`,
//! `eic.json` and their images) with the model's real greedy answers as `pred`.

use std::path::PathBuf;

use crate::model::{DeviceKind, Llava, LoadOptions, Precision};
use crate::train::{write_world_datasets, DatasetPlan};
use crate::world::World;

/// Write E-VQA and E-IC style edit datasets of the world, `pred` answered by a model.
#[derive(Debug, clap::Args)]
pub struct DatasetArgs {
    /// Checkpoint folder whose greedy answers become `pred`.
    #[arg(long, value_parser = crate::model::hub::model_arg)]
    pub model: PathBuf,
    /// Folder for evqa.json, eic.json and images/.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the case planning.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seed of the world the model was trained on.
    #[arg(long, default_value_t = 0)]
    pub world_seed: u64,
    /// Number of E-VQA cases.
    #[arg(long, default_value_t = 300)]
    pub evqa: usize,
    /// Number of E-IC cases.
    #[arg(long, default_value_t = 150)]
    pub eic: usize,
    /// Device to run on: cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceKind,
    /// Precision of the frozen weights: f32, bf16 or f16 (half the memory). Trained tensors,
    /// optimiser state, logits and linear algebra stay f32.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: Precision,
}

/// Runs `mkedsl dataset`.
pub fn run(args: DatasetArgs) -> miette::Result<()> {
    let llava = Llava::load(&args.model, &LoadOptions::on(args.device, args.dtype)?)?;
    let world = World::new(args.world_seed);
    let plan = DatasetPlan {
        evqa: args.evqa,
        eic: args.eic,
        seed: args.seed,
    };
    for written in write_world_datasets(&llava, &world, &args.out, &plan)? {
        println!(
            "{}: {} cases, {} images, {} bytes; pred ≠ truth in {} cases, {} corrective targets",
            written.json.display(),
            written.cases,
            written.images,
            written.bytes,
            written.wrong_pred,
            written.corrective
        );
    }
    Ok(())
}
