//! mkedsl: a declarative language and interpreter for knowledge editing of multimodal LLMs.
//!
//! A recipe (`.edit` file) goes through one module per stage, each with one entry point:
//!
//! ```no_run
//! use mkedsl::{plan, sema, source::SourceMap, syntax};
//! # fn main() -> miette::Result<()> {
//! let mut sources = SourceMap::new();
//! let file = sources.load("recipes/elora.edit".as_ref()).map_err(|d| d.into_report(&sources))?;
//!
//! // 1. text → syntax tree with spans                       (grammar/mkedsl.pest)
//! let tree = syntax::parse(&sources, file).map_err(|d| d.into_report(&sources))?;
//!
//! // 2. syntax tree → checked program: names, types, ranges, stdlib inlined, and — given a
//! //    model's config.json — layers and dimensions bound
//! let dims = mkedsl::model::config::LlavaConfig::from_path("tests/fixtures/lang".as_ref())?.dims();
//! let program = sema::check(&tree, &mut sources, Some(&dims)).map_err(|d| d.into_report(&sources))?;
//!
//! // 3. checked program → plan: stages, hoisting, cache keys, devices, shapes
//! let plan = plan::plan(&program, &plan::PlanOptions::default());
//! print!("{}", plan.display());
//! # Ok(()) }
//! ```
//!
//! [`compile`] chains the three for one file. Errors at every stage are
//! [`diagnostics::Diagnostics`]: data with spans, rendered by miette in one place.

pub mod ablate;
pub mod cli;
pub mod data;
pub mod diagnostics;
pub mod eval;
pub mod exec;
pub mod export;
pub mod fmt;
pub mod linalg;
pub mod model;
pub mod plan;
pub mod report;
pub mod sema;
pub mod source;
pub mod sweep;
pub mod syntax;
pub mod train;
pub mod world;

use std::path::Path;

use diagnostics::Diagnostics;
use model::config::ModelDims;
use source::{SourceId, SourceMap};

/// A recipe after the front end: its sources, the checked program and the plan.
#[derive(Debug)]
pub struct Compiled {
    pub sources: SourceMap,
    pub program: sema::Program,
    pub plan: plan::Plan,
    /// The recipe's `param`s as bound (declared literals or `--set` values).
    pub params: Vec<sema::BoundParam>,
}

/// Why the front end stopped, with the sources needed to show where.
#[derive(Debug)]
pub struct Failed {
    pub sources: SourceMap,
    pub diagnostics: Diagnostics,
}

impl Failed {
    pub fn into_report(self) -> miette::Report {
        self.diagnostics.into_report(&self.sources)
    }

    /// Every diagnostic as plain text (no colour, fixed width).
    pub fn render_plain(&self) -> String {
        self.diagnostics.render_plain(&self.sources)
    }
}

/// Reads, parses, checks (against `model` if given) and plans a recipe file.
pub fn compile(
    path: &Path,
    model: Option<&ModelDims>,
    options: plan::PlanOptions,
) -> Result<Compiled, Failed> {
    compile_with(path, model, options, &sema::Overrides::default())
}

/// [`compile`] with the recipe's parameters overridden (`--set NAME=VALUE`).
pub fn compile_with(
    path: &Path,
    model: Option<&ModelDims>,
    options: plan::PlanOptions,
    overrides: &sema::Overrides,
) -> Result<Compiled, Failed> {
    let mut sources = SourceMap::new();
    match sources.load(path) {
        Ok(id) => compile_source(sources, id, model, options, overrides),
        Err(diagnostics) => Err(Failed {
            sources,
            diagnostics,
        }),
    }
}

/// [`compile`] for a recipe given as text (tests, fuzzing, editors).
pub fn compile_text(
    name: &str,
    text: &str,
    model: Option<&ModelDims>,
    options: plan::PlanOptions,
) -> Result<Compiled, Failed> {
    let mut sources = SourceMap::new();
    let id = sources.add(name, text, false);
    compile_source(sources, id, model, options, &sema::Overrides::default())
}

fn compile_source(
    mut sources: SourceMap,
    id: SourceId,
    model: Option<&ModelDims>,
    options: plan::PlanOptions,
    overrides: &sema::Overrides,
) -> Result<Compiled, Failed> {
    let tree = match syntax::parse(&sources, id) {
        Ok(tree) => tree,
        Err(diagnostics) => {
            return Err(Failed {
                sources,
                diagnostics,
            })
        }
    };
    let library = sema::Library::std();
    let (program, params) = match sema::check_bound(&tree, &mut sources, model, &library, overrides)
    {
        Ok(bound) => bound,
        Err(diagnostics) => {
            return Err(Failed {
                sources,
                diagnostics,
            })
        }
    };
    let plan = plan::plan(&program, &options);
    Ok(Compiled {
        sources,
        program,
        plan,
        params,
    })
}
