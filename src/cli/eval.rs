//! `mkedsl eval`: the unedited model's scores on an MMEdit dataset (the papers' pre-edit row).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::eval::{run_eval, EditMode, EvalRequest, ProbeOptions, SetupRequest};
use crate::model::device::DeviceKind;

/// Editing schedule on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Restore the model after every case.
    Single,
    /// K edits accumulate, then those K cases are scored.
    Sequential,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Checkpoint folder in Hugging Face layout [default: examples/model].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// MMEdit JSON file (E-VQA / E-IC schema) [default: examples/data/evqa.json].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Root of the `image` and `m_loc` paths [default: the data file's folder].
    #[arg(long)]
    pub image_root: Option<PathBuf>,
    /// Root of the `image_rephrase` paths [default: the image root].
    #[arg(long)]
    pub rephrase_root: Option<PathBuf>,
    /// Evaluate only the first N cases.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Also write the full report (scores, per-case rows) as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Device to run on: cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceKind,
    /// Editing schedule.
    #[arg(long, value_enum, default_value_t = ModeArg::Single)]
    pub mode: ModeArg,
    /// Edits per group in sequential mode [default: 10].
    #[arg(long)]
    pub k: Option<usize>,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Most tokens a greedy generation may produce.
    #[arg(long, default_value_t = 16)]
    pub max_new_tokens: usize,
}

pub fn run(args: EvalArgs) -> miette::Result<()> {
    let mode = EditMode::from_flags(args.mode == ModeArg::Sequential, args.k)?;
    if args.batch_size == 0 || args.max_new_tokens == 0 {
        return Err(miette::miette!(
            help = "both must be at least 1",
            "--batch-size and --max-new-tokens must be positive"
        ));
    }
    let report = run_eval(&EvalRequest {
        setup: SetupRequest {
            model: args.model,
            data: args.data,
            image_root: args.image_root,
            rephrase_root: args.rephrase_root,
            limit: args.limit,
            device: args.device,
        },
        mode,
        probe: ProbeOptions {
            batch_size: args.batch_size,
            max_new_tokens: args.max_new_tokens,
        },
        progress: true,
    })?;
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    print!("{}", report.table());
    Ok(())
}
