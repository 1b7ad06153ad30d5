//! `mkedsl check FILE [--model DIR]`: parse and check a recipe, touching no tensor.

use std::path::PathBuf;

use crate::model::config::{LlavaConfig, ModelDims};
use crate::plan::{PlanOptions, Stage};

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The recipe (`.edit` file).
    pub file: PathBuf,
    /// A checkpoint folder (or its config.json) to check dimensions against.
    /// `ORG/NAME[@REVISION]` names a snapshot in the Hugging Face cache (offline).
    #[arg(long, value_parser = crate::model::hub::model_arg)]
    pub model: Option<PathBuf>,
    /// Value for a recipe `param` (repeat the flag): `--set lr=3e-3`. Checked like the literal
    /// it replaces.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub set: Vec<String>,
}

/// Reads a model's dimensions for `--model`.
pub(crate) fn load_dims(model: Option<&PathBuf>) -> miette::Result<Option<ModelDims>> {
    match model {
        Some(path) => Ok(Some(LlavaConfig::from_path(path)?.dims())),
        None => Ok(None),
    }
}

pub fn run(args: CheckArgs) -> miette::Result<()> {
    let dims = load_dims(args.model.as_ref())?;
    let overrides = crate::sema::Overrides::new(args.set);
    let compiled = crate::compile_with(
        &args.file,
        dims.as_ref(),
        PlanOptions::default(),
        &overrides,
    )
    .map_err(|f| f.into_report())?;
    let plan = &compiled.plan;
    let count = |stage| plan.stage(stage).count();
    let bound = match (&plan.model, &args.model) {
        (Some(m), Some(path)) => {
            format!(
                "bound to {} ({} layers, hidden {}) from {}",
                m.family,
                m.num_layers,
                m.hidden,
                path.display()
            )
        }
        _ => "no model bound".to_string(),
    };
    println!(
        "ok: recipe \"{}\" ({}): {} steps ({} prepare, {} per edit, {} per step); {bound}",
        plan.recipe.name,
        plan.source,
        plan.steps.len(),
        count(Stage::Prepare),
        count(Stage::PerEdit),
        count(Stage::PerStep),
    );
    Ok(())
}
