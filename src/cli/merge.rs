//! `mkedsl merge PARTS… [--json OUT]`: the partial results of a sharded `mkedsl run` back into
//! the table and JSON report of the unsharded run.

use std::path::PathBuf;

use clap::Args;

use crate::exec::shard::merge_files;

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The parts: the `--json` files of `mkedsl run … --shard I/N`, one per shard, in any order.
    #[arg(required = true)]
    pub parts: Vec<PathBuf>,
    /// Write the merged report (the unsharded run's JSON) to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

pub fn run(args: MergeArgs) -> miette::Result<()> {
    let report = merge_files(&args.parts)?;
    if let Some(path) = &args.json {
        report.write_json(path)?;
    }
    print!("{}", report.table());
    println!();
    println!(
        "merged    {} parts, {} cases{}",
        args.parts.len(),
        report.cases,
        args.json.as_ref().map_or(String::new(), |p| format!(
            ", report written to {}",
            p.display()
        ))
    );
    Ok(())
}
