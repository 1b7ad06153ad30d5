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
    /// Precision of the frozen weights the estimate assumes (with --model): f32, bf16 or f16.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: crate::model::Precision,
    /// Value for a recipe `param` (repeat the flag): `--set lr=3e-3`. Checked like the literal
    /// it replaces.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

/// The bound parameters, one line each, above the plan: `param lr = 3e-3  (--set; default 1.5e-3)`.
pub fn params_display(params: &[crate::sema::BoundParam]) -> String {
    let mut out = String::new();
    for p in params {
        if p.set {
            out.push_str(&format!(
                "param {} = {}  (--set; default {})\n",
                p.name, p.value, p.default
            ));
        } else {
            out.push_str(&format!("param {} = {}\n", p.name, p.value));
        }
    }
    out
}

pub fn run(args: PlanArgs) -> miette::Result<()> {
    let dims = super::check::load_dims(args.model.as_ref())?;
    let device = match args.device {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda => Device::Cuda,
    };
    let overrides = crate::sema::Overrides::new(args.set);
    let compiled = crate::compile_with(
        &args.file,
        dims.as_ref(),
        PlanOptions {
            device,
            ..PlanOptions::default()
        },
        &overrides,
    )
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
        print!("{}", params_display(&compiled.params));
        print!("{}", compiled.plan.display());
        let model_dir = args.model.as_deref().filter(|_| dims.is_some());
        let leaks = crate::exec::leak::plan_lines(&compiled.plan, model_dir);
        if !leaks.is_empty() {
            println!();
            for line in leaks {
                println!("{line}");
            }
        }
        if let (Some(model), Some(dims)) = (&args.model, &dims) {
            let config = crate::model::LlavaConfig::from_path(model)?;
            let weights = crate::model::tensors::weight_bytes(&config, args.dtype);
            let estimate = crate::plan::estimate(&compiled.plan, dims, weights, args.dtype);
            println!();
            print!(
                "{}",
                estimate.display(&compiled.plan, crate::plan::estimate::machine_memory())
            );
        }
    }
    Ok(())
}
