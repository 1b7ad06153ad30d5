//! Where `preserve(text:, vqa:, caption:)` samples come from — never from the edit cases.
//!
//! - The embedded model (a folder whose `training.json` records the `world_seed` it learned):
//!   the world's preserve pool ([`crate::world::World::preserve_pool`]), drawn from facts no edit
//!   case or locality probe uses, reproducible from the recipe's seed.
//! - Any other checkpoint: MMEdit-format files given on the command line. `--preserve FILE`
//!   supplies text samples (each record's `loc` question with `loc_ans`, NQ in real MMEdit files)
//!   and VQA samples (`image` with `src` and the model's own answer `pred`: a training split
//!   stands for what the model knows); `--preserve-captions FILE` supplies caption samples (E-IC
//!   records: `image`, `src`, `pred`). The edit data file itself is refused.
//!
//! A sample is the sequence the model would see when answering: the prompt template applied to
//! the question, then `" " + answer` — the same construction the evaluator scores.

use std::path::{Path, PathBuf};

use image::DynamicImage;
use sha2::{Digest, Sha256};

use crate::data::{load_dataset, ImageRoots, LoadedCase, PromptTemplate};
use crate::eval::scored_text;
use crate::exec::error::{ExecError, Result};
use crate::exec::rng;
use crate::model::preprocess::load_image;
use crate::world::{PoolSizes, World};

/// The run record the trainer writes beside the embedded model.
pub const TRAINING_FILE: &str = "training.json";

/// One preserved-knowledge sequence.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Prompt (template applied) + " " + answer.
    pub text: String,
    pub image: Option<DynamicImage>,
}

/// How many samples of each kind a recipe asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub text: usize,
    pub vqa: usize,
    pub caption: usize,
}

/// Where preserved knowledge is drawn from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreserveSource {
    /// The embedded world the model was trained on.
    World { world_seed: u64 },
    /// MMEdit files given on the command line.
    Files {
        qa: Option<PathBuf>,
        captions: Option<PathBuf>,
    },
    /// Neither: a recipe that asks for preserved samples cannot run.
    Unavailable { model_dir: PathBuf },
}

impl PreserveSource {
    /// Files given on the command line win; otherwise the embedded world if the model folder
    /// records one; otherwise nothing.
    pub fn resolve(
        model_dir: &Path,
        qa: Option<PathBuf>,
        captions: Option<PathBuf>,
    ) -> PreserveSource {
        if qa.is_some() || captions.is_some() {
            return PreserveSource::Files { qa, captions };
        }
        match world_seed(model_dir) {
            Some(world_seed) => PreserveSource::World { world_seed },
            None => PreserveSource::Unavailable {
                model_dir: model_dir.to_path_buf(),
            },
        }
    }

    /// What the samples depend on besides the recipe, for cache keys: the world seed, or the
    /// SHA-256 of the preserve files' bytes (the images they name are not hashed).
    pub fn identity(&self) -> String {
        match self {
            PreserveSource::World { world_seed } => format!("world(seed: {world_seed})"),
            PreserveSource::Files { qa, captions } => {
                let hash = |p: &Option<PathBuf>| match p {
                    Some(p) => match std::fs::read(p) {
                        Ok(bytes) => hex(&Sha256::digest(&bytes)),
                        Err(_) => format!("unreadable {}", p.display()),
                    },
                    None => "none".into(),
                };
                format!("files(qa: {}; captions: {})", hash(qa), hash(captions))
            }
            PreserveSource::Unavailable { .. } => "none".into(),
        }
    }

    /// A one-line description for the run header.
    pub fn describe(&self) -> String {
        match self {
            PreserveSource::World { world_seed } => {
                format!("the embedded world's preserve pool (world seed {world_seed})")
            }
            PreserveSource::Files { qa, captions } => {
                let show = |p: &Option<PathBuf>| {
                    p.as_ref()
                        .map_or("none".to_string(), |p| format!("`{}`", p.display()))
                };
                format!(
                    "--preserve {} · --preserve-captions {}",
                    show(qa),
                    show(captions)
                )
            }
            PreserveSource::Unavailable { .. } => "none".into(),
        }
    }

    /// Fails (before any tensor exists) when `counts` cannot be drawn, or when a preserve file is
    /// the edit data itself.
    pub fn check(&self, counts: Counts, data_file: &Path) -> Result<()> {
        match self {
            PreserveSource::World { .. } => Ok(()),
            PreserveSource::Unavailable { model_dir } => Err(ExecError::Preserve {
                reason: format!(
                    "the recipe asks for preserved-knowledge samples, but `{}` is not the embedded model and no preserve file was given",
                    model_dir.display()
                ),
                help: "pass --preserve FILE (an MMEdit file of samples the model knows: its `loc`/`loc_ans` give text, `image`/`src`/`pred` give VQA) and, for caption samples, --preserve-captions FILE".into(),
            }),
            PreserveSource::Files { qa, captions } => {
                for file in [qa, captions].into_iter().flatten() {
                    if same_file(file, data_file) {
                        return Err(ExecError::Preserve {
                            reason: format!(
                                "the preserve file `{}` is the edit data: preserved knowledge must never be the edit cases",
                                file.display()
                            ),
                            help: "pass a different split (e.g. MMEdit's training split) as --preserve".into(),
                        });
                    }
                }
                let available = |file: &Option<PathBuf>, flag: &str, kind: &str, want: usize| {
                    if want == 0 {
                        return Ok(());
                    }
                    let Some(file) = file else {
                        return Err(ExecError::Preserve {
                            reason: format!("the recipe asks for {want} {kind} samples but no {flag} file was given"),
                            help: format!("pass {flag} FILE, or lower the recipe's `{kind}:` count to 0"),
                        });
                    };
                    let n = load(file)?.len();
                    if n < want {
                        return Err(ExecError::Preserve {
                            reason: format!(
                                "the recipe asks for {want} {kind} samples but `{}` holds {n} usable records",
                                file.display()
                            ),
                            help: format!("lower the recipe's `{kind}:` count to at most {n}, or pass a larger file"),
                        });
                    }
                    Ok(())
                };
                available(qa, "--preserve", "text", counts.text)?;
                available(qa, "--preserve", "vqa", counts.vqa)?;
                available(captions, "--preserve-captions", "caption", counts.caption)
            }
        }
    }

    /// The samples, text first, then VQA, then captions; the choice is seeded by `seed`.
    pub fn samples(
        &self,
        counts: Counts,
        seed: u64,
        template: &PromptTemplate,
    ) -> Result<Vec<Sample>> {
        match self {
            PreserveSource::World { world_seed } => {
                let pool = World::new(*world_seed).preserve_pool(
                    PoolSizes {
                        text: counts.text,
                        vqa: counts.vqa,
                        caption: counts.caption,
                    },
                    seed,
                );
                Ok(pool
                    .text
                    .iter()
                    .chain(&pool.vqa)
                    .chain(&pool.caption)
                    .map(|e| Sample {
                        text: scored_text(
                            &template.prompt(&e.question, e.image.is_some()),
                            &e.answer,
                        ),
                        image: e.image.map(|v| DynamicImage::ImageRgb8(v.render())),
                    })
                    .collect())
            }
            PreserveSource::Files { qa, captions } => {
                let mut out = Vec::new();
                if counts.text + counts.vqa > 0 {
                    let file = qa.as_ref().ok_or_else(|| missing("--preserve"))?;
                    let cases = load(file)?;
                    for case in choose(&cases, counts.text, seed, "text") {
                        let r = &case.record;
                        out.push(Sample {
                            text: scored_text(&template.prompt(&r.loc, false), &r.loc_ans),
                            image: None,
                        });
                    }
                    for case in choose(&cases, counts.vqa, seed, "vqa") {
                        out.push(image_sample(case, template)?);
                    }
                }
                if counts.caption > 0 {
                    let file = captions
                        .as_ref()
                        .ok_or_else(|| missing("--preserve-captions"))?;
                    let cases = load(file)?;
                    for case in choose(&cases, counts.caption, seed, "caption") {
                        out.push(image_sample(case, template)?);
                    }
                }
                Ok(out)
            }
            PreserveSource::Unavailable { .. } => Err(missing("--preserve")),
        }
    }
}

fn missing(flag: &str) -> ExecError {
    ExecError::Preserve {
        reason: format!("no {flag} file to draw preserved samples from"),
        help: format!("pass {flag} FILE"),
    }
}

fn image_sample(case: &LoadedCase, template: &PromptTemplate) -> Result<Sample> {
    let r = &case.record;
    let image = load_image(&case.image)?;
    Ok(Sample {
        text: scored_text(&template.prompt(&r.src, true), &r.pred),
        image: Some(image),
    })
}

fn load(file: &Path) -> Result<Vec<LoadedCase>> {
    let dataset =
        load_dataset(file, &ImageRoots::beside(file)).map_err(|e| ExecError::Preserve {
            reason: format!("cannot read the preserve file `{}`: {e}", file.display()),
            help: "a preserve file is an MMEdit JSON file with its images beside it".into(),
        })?;
    Ok(dataset.cases)
}

/// `n` distinct records chosen by a seeded shuffle (each kind its own stream).
fn choose<'a>(cases: &'a [LoadedCase], n: usize, seed: u64, kind: &str) -> Vec<&'a LoadedCase> {
    let mut order: Vec<usize> = (0..cases.len()).collect();
    rng::stream(seed, &format!("preserve-{kind}"), 0).shuffle(&mut order);
    order
        .into_iter()
        .take(n)
        .filter_map(|i| cases.get(i))
        .collect()
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// The world seed recorded in a model folder's `training.json` (`options.world_seed`).
pub fn world_seed(model_dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(model_dir.join(TRAINING_FILE)).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("options")?.get("world_seed")?.as_u64()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_model_is_recognised_by_its_training_record() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            PreserveSource::resolve(dir.path(), None, None),
            PreserveSource::Unavailable {
                model_dir: dir.path().to_path_buf()
            }
        );
        std::fs::write(
            dir.path().join(TRAINING_FILE),
            r#"{"options": {"world_seed": 4, "seed": 0}}"#,
        )
        .unwrap();
        let source = PreserveSource::resolve(dir.path(), None, None);
        assert_eq!(source, PreserveSource::World { world_seed: 4 });
        let counts = Counts {
            text: 3,
            vqa: 2,
            caption: 1,
        };
        let samples = source
            .samples(counts, 0, &PromptTemplate::llava15())
            .unwrap();
        assert_eq!(samples.len(), 6);
        assert!(samples[..3].iter().all(|s| s.image.is_none()));
        assert!(samples[3..].iter().all(|s| s.image.is_some()));
        assert!(
            samples[3].text.starts_with("USER: <image>\n"),
            "{}",
            samples[3].text
        );
        // A file given on the command line wins.
        let file = dir.path().join("p.json");
        assert!(matches!(
            PreserveSource::resolve(dir.path(), Some(file.clone()), None),
            PreserveSource::Files { .. }
        ));
        // Without a source, asking for samples is an error before any tensor work.
        let none = PreserveSource::Unavailable {
            model_dir: dir.path().into(),
        };
        assert!(none.check(counts, &file).is_err());
    }
}
