//! Inputs of an evaluation from command-line paths — model, template, dataset, cases — with the
//! embedded defaults, and `mkedsl eval`'s entry point (the unedited model's scores).

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::data::{load_dataset_with, Dataset, FieldTemplates, ImageRoots, LoadRules};
use crate::eval::case::EvalCase;
use crate::eval::editor::{EditState, Identity};
use crate::eval::error::{EvalError, Result};
use crate::eval::probe::ProbeOptions;
use crate::eval::report::{DataFileInfo, EvalReport, RunInfo};
use crate::eval::runner::{evaluate, EditMode, EvalOptions};
use crate::eval::template::{resolve_template, ResolvedTemplate};
use crate::model::{DeviceKind, Llava, LoadOptions, Precision};

/// The embedded model, relative to the repository root.
pub const DEFAULT_MODEL: &str = "examples/model";
/// The embedded E-VQA-style dataset, relative to the repository root.
pub const DEFAULT_DATA: &str = "examples/data/evqa.json";

/// Where a default input is: `rel` under the current folder, else under the source checkout this
/// binary was built from (so `mkedsl` works from any folder of a clone).
pub fn default_path(rel: &str, what: &'static str) -> Result<PathBuf> {
    let tried = [
        PathBuf::from(rel),
        Path::new(env!("CARGO_MANIFEST_DIR")).join(rel),
    ];
    tried
        .iter()
        .find(|p| p.exists())
        .cloned()
        .ok_or_else(|| EvalError::MissingDefault {
            what,
            tried: tried.to_vec(),
            help: format!(
                "the repository ships it under `{rel}`; run from a checkout that has it, or pass the path explicitly (--model DIR, --data FILE)"
            ),
        })
}

/// What to load.
#[derive(Debug, Clone, Default)]
pub struct SetupRequest {
    /// Checkpoint folder; `None` = [`DEFAULT_MODEL`].
    pub model: Option<PathBuf>,
    /// MMEdit JSON file; `None` = [`DEFAULT_DATA`].
    pub data: Option<PathBuf>,
    /// Root of `image` and `m_loc` paths; `None` = the data file's folder.
    pub image_root: Option<PathBuf>,
    /// Root of `image_rephrase` paths; `None` = the image root.
    pub rephrase_root: Option<PathBuf>,
    /// Consider only the first `limit` records of each file, before records are skipped:
    /// EasyEdit's `size` (`annotation[:size]`).
    pub limit: Option<usize>,
    pub device: DeviceKind,
    /// Precision of the frozen weights (`--dtype`).
    pub dtype: Precision,
    /// Allow image paths that leave the image roots (`--images-anywhere`).
    pub images_anywhere: bool,
    /// More MMEdit files after `data` (`--data` repeated): their cases follow `data`'s, or
    /// alternate with them under `interleave`. The image roots apply to every file.
    pub extra_data: Vec<PathBuf>,
    /// Take the files' cases in turn (first of each file, then second, …) instead of one file
    /// after another: cross-task sequences that mix E-VQA and E-IC edits in every group.
    pub interleave: bool,
    /// A record with a missing image is an error, not skipped (`--strict`).
    pub strict: bool,
    /// The template of each formatted field (`--field-template`).
    pub fields: FieldTemplates,
}

/// A loaded model with its template, and the cases to evaluate.
#[derive(Debug, Clone)]
pub struct Setup {
    pub model_dir: PathBuf,
    pub model: Llava,
    pub template: ResolvedTemplate,
    /// The first data file.
    pub dataset: Dataset,
    /// The other data files, in the order given.
    pub extra: Vec<Dataset>,
    pub fields: FieldTemplates,
    pub cases: Vec<EvalCase>,
    pub device: DeviceKind,
    pub dtype: Precision,
}

impl Setup {
    /// Loads the model (in the requested precision, on the requested device), its prompt template and the dataset.
    /// The dataset is read first: a wrong data path fails before the model is loaded.
    pub fn load(req: &SetupRequest) -> Result<Setup> {
        let data = match &req.data {
            Some(p) => p.clone(),
            None => default_path(DEFAULT_DATA, "the embedded dataset")?,
        };
        let model_dir = match &req.model {
            Some(p) => p.clone(),
            None => default_path(DEFAULT_MODEL, "the embedded model")?,
        };
        let rules = LoadRules {
            size: req.limit,
            strict: req.strict,
            anywhere: req.images_anywhere,
        };
        let load = |data: &Path| {
            let mut roots = ImageRoots::beside(data);
            if let Some(root) = &req.image_root {
                roots.image = root.clone();
                roots.rephrase = root.clone();
            }
            if let Some(root) = &req.rephrase_root {
                roots.rephrase = root.clone();
            }
            load_dataset_with(data, &roots, &rules)
        };
        let dataset = load(&data)?;
        let extra = req
            .extra_data
            .iter()
            .map(|p| load(p))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let template = resolve_template(&model_dir)?;
        let fields = req.fields.resolve(&template.template);
        let mut offset = 0;
        let mut per_file = Vec::new();
        for d in std::iter::once(&dataset).chain(&extra) {
            per_file.push(EvalCase::from_fields(d, &fields, offset));
            offset += d.records;
        }
        let cases = if req.interleave {
            interleave(per_file)
        } else {
            per_file.into_iter().flatten().collect()
        };
        if cases.is_empty() {
            return Err(EvalError::NoCases {
                data: std::iter::once(&data)
                    .chain(&req.extra_data)
                    .map(|p| format!("`{}`", p.display()))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let model = Llava::load(&model_dir, &LoadOptions::on(req.device, req.dtype)?)?;
        Ok(Setup {
            model_dir,
            model,
            template,
            dataset,
            extra,
            fields: req.fields,
            cases,
            device: req.device,
            dtype: req.dtype,
        })
    }

    /// Every data file of the run, the first one first.
    pub fn datasets(&self) -> impl Iterator<Item = &Dataset> {
        std::iter::once(&self.dataset).chain(&self.extra)
    }

    /// One warning per answer word the model's tokenizer cannot spell (it becomes `<unk>`), by
    /// case, field and word, for the answers that are scored and edited towards (`alt`,
    /// `loc_ans`, `m_loc_a`). Stated policy: such answers are still scored, as the tokenizer
    /// spells them, and the user is told which words those are.
    pub fn unknown_words(&self) -> Result<Vec<String>> {
        use crate::model::VisionLanguageModel;
        let Some(unk) = self.model.unk_token_id() else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for case in &self.cases {
            for field in ["alt", "loc_ans", "m_loc_a"] {
                let text = case.record.field(field).unwrap_or_default();
                for word in text.split_whitespace() {
                    if word.contains("<unk>") {
                        continue;
                    }
                    if self.model.tokenize(word)?.contains(&unk) {
                        out.push(format!(
                            "warning: case {}: `{field}` ({text:?}) holds the word `{word}`, which is outside the model's vocabulary: it is scored as <unk>",
                            case.index
                        ));
                    }
                }
            }
        }
        Ok(out)
    }

    /// The provenance of a run on this setup.
    pub fn run_info(&self, recipe: &str, seed: Option<u64>) -> RunInfo {
        RunInfo {
            recipe: recipe.to_string(),
            model: self.model_dir.display().to_string(),
            data: self
                .datasets()
                .map(|d| d.path.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            seed,
            device: self.device.to_string(),
            template: self.template.clone(),
            dropped: self.datasets().map(|d| d.dropped.len()).sum(),
            data_files: self.datasets().map(DataFileInfo::of).collect(),
            field_templates: self.fields,
        }
    }
}

/// Cases of several files taken in turn: the first of each file, then the second, …
fn interleave(files: Vec<Vec<EvalCase>>) -> Vec<EvalCase> {
    let mut iters: Vec<_> = files.into_iter().map(Vec::into_iter).collect();
    let mut out = Vec::new();
    loop {
        let before = out.len();
        out.extend(iters.iter_mut().filter_map(Iterator::next));
        if out.len() == before {
            return out;
        }
    }
}

/// A terminal progress bar for evaluations (drawn on stderr, hidden when it is not a terminal).
pub fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>24} [{bar:30}] {pos}/{len} cases · {elapsed}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// `mkedsl eval`'s options.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    pub setup: SetupRequest,
    pub mode: EditMode,
    pub probe: ProbeOptions,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// The recipe name `mkedsl eval` reports.
pub const BASELINE_RECIPE: &str = "pre-edit (unedited model)";

/// Scores the unedited model through the evaluator with the identity editor: the pre-edit row of
/// the papers' tables (post-edit locality is 1 by construction).
pub fn run_eval(req: &EvalRequest) -> Result<EvalReport> {
    let setup = Setup::load(&req.setup)?;
    if req.progress {
        for warning in setup.unknown_words()? {
            eprintln!("{warning}");
        }
    }
    let info = setup.run_info(BASELINE_RECIPE, None);
    let opts = EvalOptions {
        mode: req.mode,
        probe: req.probe,
        progress: if req.progress {
            progress_bar()
        } else {
            ProgressBar::hidden()
        },
    };
    let mut state = EditState::new(setup.model);
    let evaluation = evaluate(&mut state, &mut Identity, &setup.cases, &opts)?;
    Ok(EvalReport::new(info, evaluation))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_default_names_every_place_it_looked() {
        let err =
            default_path("examples/no-such-model", "the embedded model").expect_err("missing");
        let EvalError::MissingDefault { what, tried, help } = &err else {
            panic!("{err}")
        };
        assert_eq!(*what, "the embedded model");
        assert_eq!(tried.len(), 2);
        assert!(tried.iter().all(|p| p.ends_with("examples/no-such-model")));
        assert!(help.contains("--model DIR"), "{help}");
        let found = default_path("Cargo.toml", "the manifest").expect("found via the checkout");
        assert!(found.ends_with("Cargo.toml"));
    }
}
