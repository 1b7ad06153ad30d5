//! `mkedsl train`: trains the embedded tiny LLaVA on the procedural world (see
//! [`crate::train`]); progress lines go to stdout.

use std::path::PathBuf;

use crate::train::{train, AdamWConfig, LrSchedule, ModelSpec, PretrainOptions, TrainOptions};
use crate::world::{Family, FamilyMix};

/// Train a small LLaVA-architecture model from scratch on the embedded world.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Folder for the trained model (Hugging Face layout) and training.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the initial weights and the batch order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seed of the world to learn.
    #[arg(long, default_value_t = 0)]
    pub world_seed: u64,
    /// Optimiser steps.
    #[arg(long, default_value_t = 3000)]
    pub steps: usize,
    /// Conversations per step.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Most questions about one picture in a training conversation (1: single-turn).
    #[arg(long, default_value_t = 5)]
    pub max_turns: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Linear warmup steps.
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    /// Final learning rate as a fraction of the peak (cosine decay).
    #[arg(long, default_value_t = 0.05)]
    pub lr_floor: f64,
    /// AdamW decoupled weight decay (matrices only).
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Global gradient-norm clip (0 disables).
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// Relative sampling weight of a family, `name=weight` (repeatable; others weigh 1).
    #[arg(long = "family-weight", value_parser = parse_weight)]
    pub family_weights: Vec<(Family, u32)>,
    /// Held-out evaluation every N steps (0: only at the end).
    #[arg(long, default_value_t = 500)]
    pub eval_every: usize,
    /// Held-out questions per family in each evaluation.
    #[arg(long, default_value_t = 32)]
    pub eval_per_family: usize,
    /// Resumable checkpoint every N steps (0: never).
    #[arg(long, default_value_t = 250)]
    pub checkpoint_every: usize,
    /// Log the mean loss every N steps.
    #[arg(long, default_value_t = 25)]
    pub log_every: usize,
    /// Stage-1 vision pretraining steps before the conversation training (0 skips it).
    #[arg(long, default_value_t = 0)]
    pub vision_steps: usize,
    /// Pictures per stage-1 step.
    #[arg(long, default_value_t = 64)]
    pub vision_batch: usize,
    /// Keep the vision tower fixed after stage 1 (as LLaVA keeps CLIP fixed).
    #[arg(long)]
    pub freeze_vision: bool,
    /// Continue from the checkpoint in --out if there is one.
    #[arg(long)]
    pub resume: bool,
    /// Model shape: `embedded` (the shipped model) or `tiny` (for smoke tests).
    #[arg(long, default_value = "embedded", value_parser = ["embedded", "tiny"])]
    pub spec: String,
    /// Override the decoder width.
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Override the number of decoder layers.
    #[arg(long)]
    pub layers: Option<usize>,
    /// Override the decoder MLP width.
    #[arg(long)]
    pub intermediate: Option<usize>,
    /// Override the vision tower width.
    #[arg(long)]
    pub vision_hidden: Option<usize>,
    /// Override the number of vision layers (features are taken from the second-to-last).
    #[arg(long)]
    pub vision_layers: Option<usize>,
    /// Override the vision MLP width.
    #[arg(long)]
    pub vision_intermediate: Option<usize>,
}

fn parse_weight(text: &str) -> Result<(Family, u32), String> {
    let (name, weight) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not name=weight"))?;
    let family = Family::from_name(name.trim()).ok_or_else(|| {
        let names: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
        format!("unknown family `{name}`; families: {}", names.join(", "))
    })?;
    let weight = weight
        .trim()
        .parse()
        .map_err(|_| format!("`{weight}` is not a whole number"))?;
    Ok((family, weight))
}

/// Runs `mkedsl train`.
pub fn run(args: TrainArgs) -> miette::Result<()> {
    let base = if args.spec == "tiny" {
        ModelSpec::tiny()
    } else {
        ModelSpec::embedded()
    };
    let spec = ModelSpec {
        hidden: args.hidden.unwrap_or(base.hidden),
        layers: args.layers.unwrap_or(base.layers),
        intermediate: args.intermediate.unwrap_or(base.intermediate),
        vision_hidden: args.vision_hidden.unwrap_or(base.vision_hidden),
        vision_layers: args.vision_layers.unwrap_or(base.vision_layers),
        vision_intermediate: args.vision_intermediate.unwrap_or(base.vision_intermediate),
        ..base
    };
    let mix = args
        .family_weights
        .iter()
        .fold(FamilyMix::uniform(), |mix, &(f, w)| mix.with_weight(f, w));
    let options = TrainOptions {
        out: args.out,
        seed: args.seed,
        world_seed: args.world_seed,
        spec,
        steps: args.steps,
        batch: args.batch,
        max_turns: args.max_turns,
        schedule: LrSchedule {
            peak: args.lr,
            warmup: args.warmup,
            total: args.steps,
            floor: args.lr_floor,
        },
        optimizer: AdamWConfig {
            weight_decay: args.weight_decay,
            clip_norm: (args.clip > 0.0).then_some(args.clip),
            ..AdamWConfig::default()
        },
        mix,
        eval_every: args.eval_every,
        eval_per_family: args.eval_per_family,
        checkpoint_every: args.checkpoint_every,
        log_every: args.log_every,
        pretrain: (args.vision_steps > 0).then_some(PretrainOptions {
            steps: args.vision_steps,
            batch: args.vision_batch,
            schedule: LrSchedule {
                peak: args.lr,
                warmup: 50.min(args.vision_steps / 10 + 1),
                total: args.vision_steps,
                floor: args.lr_floor,
            },
        }),
        freeze_vision: args.freeze_vision,
        resume: args.resume,
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let summary = train(&options, &mut |line| println!("{line}"))?;
    println!(
        "saved {} ({} parameters, {} steps, {:.0} s)",
        options.out.display(),
        summary.parameters,
        summary.steps,
        summary.wall_seconds
    );
    print!("{}", summary.knowledge.table());
    Ok(())
}
