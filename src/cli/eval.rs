//! `mkedsl eval`: the unedited model's scores on an MMEdit dataset (the papers' pre-edit row).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::eval::{run_eval, EditMode, EvalRequest};

use super::inputs::EditDataArgs;

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
    #[command(flatten)]
    pub inputs: EditDataArgs,
    /// Consider only the first N records of each data file, before records with an empty `alt`
    /// or a missing image are skipped (EasyEdit's `size`).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Also write the full report (scores, per-case rows) as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Editing schedule.
    #[arg(long, value_enum, default_value_t = ModeArg::Single)]
    pub mode: ModeArg,
    /// Edits per group in sequential mode [default: 10].
    #[arg(long)]
    pub k: Option<usize>,
}

pub fn run(args: EvalArgs) -> miette::Result<()> {
    let mode = EditMode::from_flags(args.mode == ModeArg::Sequential, args.k)?;
    let (setup, probe) = args.inputs.into_request(args.limit)?;
    if let Some(path) = &args.json {
        crate::exec::run::check_output_file(path, "--json")?;
    }
    let dtype = setup.dtype;
    let mut report = run_eval(&EvalRequest {
        setup,
        mode,
        probe,
        progress: true,
    })?;
    if args.json.is_some() {
        let model = PathBuf::from(&report.model);
        report.provenance = Some(super::provenance::provenance(
            &report, None, &model, None, dtype,
        )?);
    }
    // The table first: a report that then cannot be written loses nothing.
    print!("{}", report.table());
    if let Some(path) = &args.json {
        report.write_json_or_keep(path)?;
    }
    Ok(())
}
