//! The `mkedsl` command line: one file per subcommand, each a thin shell over a library entry point.

use clap::{Parser, Subcommand};

pub mod dataset;
pub mod infer;
pub mod knowledge;
pub mod train;
pub mod world;

/// mkedsl — write a knowledge-editing method as a recipe, check it, plan it, run it.
#[derive(Debug, Parser)]
#[command(name = "mkedsl", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the embedded procedural world (facts, tokenizer, sample images) to a folder.
    World(world::WorldArgs),
    /// Run a model checkpoint on one prompt (and image) and print the greedy answer.
    Infer(infer::InferArgs),
    /// Train the embedded tiny LLaVA on the procedural world.
    Train(train::TrainArgs),
    /// Measure a model's held-out accuracy on every question family of the world.
    Knowledge(knowledge::KnowledgeArgs),
    /// Write the world's E-VQA / E-IC datasets with a model's answers as `pred`.
    Dataset(dataset::DatasetArgs),
}

/// Parses the arguments and runs the chosen subcommand.
pub fn main() -> miette::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::World(args) => world::run(args),
        Command::Infer(args) => infer::run(args),
        Command::Train(args) => train::run(args),
        Command::Knowledge(args) => knowledge::run(args),
        Command::Dataset(args) => dataset::run(args),
    }
}
