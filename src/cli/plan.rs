//! `mkedsl plan FILE [--model DIR] [--json] [--device cpu|cuda]`: print the execution plan.

use std::path::PathBuf;

use crate::plan::{Device, PlanOptions};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The recipe (`.edit` file).
    pub file: PathBuf,
    /// A checkpoint folder (or its config.json): resolves layers and fills in shapes.
    /// `ORG/NAME[@REVISION]` names a snapshot in the Hugging Face cache (offline).
    #[arg(long, value_parser = crate::model::hub::model_arg)]
    pub model: Option<PathBuf>,
    /// Print the plan as JSON (the executor's input) instead of numbered lines.
    #[arg(long)]
    pub json: bool,
    /// The device the plan targets.
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
}

pub fn run(args: PlanArgs) -> miette::Result<()> {
    let dims = super::check::load_dims(args.model.as_ref())?;
    let device = match args.device {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda => Device::Cuda,
    };
    let compiled = crate::compile(&args.file, dims.as_ref(), PlanOptions { device })
        .map_err(|f| f.into_report())?;
    if args.json {
        let text = serde_json::to_string_pretty(&compiled.plan).map_err(|e| {
            miette::miette!(
                code = "mkedsl::plan::json",
                "cannot serialise the plan: {e}"
            )
        })?;
        println!("{text}");
    } else {
        print!("{}", compiled.plan.display());
        if let (Some(model), Some(dims)) = (&args.model, &dims) {
            let config = crate::model::LlavaConfig::from_path(model)?;
            let weights = crate::model::tensors::weight_bytes(&config);
            let estimate = crate::plan::estimate(&compiled.plan, dims, weights);
            println!();
            print!(
                "{}",
                estimate.display(&compiled.plan, crate::plan::estimate::machine_memory())
            );
        }
    }
    Ok(())
}
