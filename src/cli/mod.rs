//! The `mkedsl` command line: one file per subcommand, each a thin shell over a library entry point.

use clap::{Parser, Subcommand};

/// mkedsl — write a knowledge-editing method as a recipe, check it, plan it, run it.
#[derive(Debug, Parser)]
#[command(name = "mkedsl", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {}

/// Parses the arguments and runs the chosen subcommand.
pub fn main() -> miette::Result<()> {
    let cli = Cli::parse();
    match cli.command {}
}
