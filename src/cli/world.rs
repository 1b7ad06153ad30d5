//! `mkedsl world --seed S --out DIR`: writes the embedded world (facts, phrasings, tokenizer and a
//! sample gallery) reproducibly; see [`crate::world::export`] for the folder layout.

use std::path::PathBuf;

use crate::world::{export_world, ExportOptions, World};

/// Write the procedural world's facts, tokenizer and sample images to a folder.
#[derive(Debug, clap::Args)]
pub struct WorldArgs {
    /// Seed of the world; the same seed always writes byte-identical files.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder to write into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Sample examples per question family and split in the gallery.
    #[arg(long, default_value_t = 4)]
    pub samples: usize,
}

/// Runs `mkedsl world`.
pub fn run(args: WorldArgs) -> miette::Result<()> {
    let world = World::new(args.seed);
    let options = ExportOptions {
        samples_per_family: args.samples,
        ..ExportOptions::default()
    };
    let summary = export_world(&world, &args.out, &options)?;
    println!(
        "world {} → {}: {} files ({} bytes), vocabulary {} tokens, {} samples",
        args.seed,
        summary.out.display(),
        summary.files,
        summary.bytes,
        summary.vocab_size,
        summary.samples
    );
    Ok(())
}
