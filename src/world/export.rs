//! `mkedsl world`: writes a world's description, tokenizer and sample gallery to a folder.
//!
//! ```text
//! OUT/world.json                 seed, facts (creatures, countries, scenes with roles), phrasings
//! OUT/tokenizer.json             the trained word-level tokenizer
//! OUT/samples/train.json         examples of every family from the training split ...
//! OUT/samples/held_out.json      ... and from the held-out split
//! OUT/samples/images/{train,held_out}/NNNN.png
//! ```
//!
//! Every byte depends only on the seed and the options: two runs give identical folders. The
//! MMEdit datasets are not written here — their `pred` needs the trained model — but by
//! [`crate::data::write_dataset`] once a model exists.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::corpus::Split;
use super::error::WorldError;
use super::facts::{Country, Creature, SceneEntry, World};
use super::phrasing::{Ask, Family};
use super::render::IMAGE_SIZE;
use super::tokenizer::{save_tokenizer, train_tokenizer};
use crate::data::files::{png_bytes, write_atomic};
use crate::data::prompt::LLAVA_15_TEMPLATE;

/// What `mkedsl world` writes besides the facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportOptions {
    /// Sample examples per family and split in the gallery.
    pub samples_per_family: usize,
    /// Seed of the sample streams.
    pub sample_seed: u64,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            samples_per_family: 4,
            sample_seed: 0,
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    pub out: PathBuf,
    pub vocab_size: usize,
    pub samples: usize,
    pub files: usize,
    pub bytes: u64,
}

#[derive(Serialize)]
struct AskPhrasings {
    ask: Ask,
    train: Vec<String>,
    held_out: Vec<String>,
}

#[derive(Serialize)]
struct FamilyDescription {
    family: Family,
    has_image: bool,
    asks: Vec<AskPhrasings>,
}

#[derive(Serialize)]
struct WorldDescription<'w> {
    seed: u64,
    image_size: u32,
    prompt_template: &'static str,
    families: Vec<FamilyDescription>,
    creatures: &'w [Creature],
    countries: &'w [Country],
    scenes: &'w [SceneEntry],
}

#[derive(Serialize)]
struct Sample {
    family: Family,
    question: String,
    answer: String,
    image: Option<String>,
}

/// Writes the world into `out` (created if missing).
pub fn export_world(
    world: &World,
    out: &Path,
    options: &ExportOptions,
) -> Result<ExportSummary, WorldError> {
    let mut folder = Folder {
        root: out,
        files: 0,
        bytes: 0,
    };

    let description = WorldDescription {
        seed: world.seed,
        image_size: IMAGE_SIZE,
        prompt_template: LLAVA_15_TEMPLATE,
        families: Family::ALL
            .iter()
            .map(|&family| FamilyDescription {
                family,
                has_image: family.has_image(),
                asks: family
                    .asks()
                    .iter()
                    .map(|&ask| AskPhrasings {
                        ask,
                        train: phrasing_texts(ask, Split::Train),
                        held_out: phrasing_texts(ask, Split::HeldOut),
                    })
                    .collect(),
            })
            .collect(),
        creatures: &world.creatures,
        countries: &world.countries,
        scenes: &world.scenes,
    };
    folder.put(
        "world.json",
        &json_bytes(&description, &out.join("world.json"))?,
    )?;

    let tokenizer = train_tokenizer(world)?;
    let tokenizer_path = out.join("tokenizer.json");
    save_tokenizer(&tokenizer, &tokenizer_path)?;
    folder.files += 1;
    folder.bytes += std::fs::metadata(&tokenizer_path).map_or(0, |m| m.len());

    let mut samples = 0;
    for (split, name) in [(Split::Train, "train"), (Split::HeldOut, "held_out")] {
        let mut gallery = Vec::new();
        for family in Family::ALL {
            for e in world.examples(
                split,
                family,
                options.samples_per_family,
                options.sample_seed,
            ) {
                let image = match e.image {
                    Some(visual) => {
                        let rel = format!("images/{name}/{:04}.png", gallery.len());
                        let path = out.join("samples").join(&rel);
                        let png = png_bytes(&visual.render()).map_err(|err| WorldError::Write {
                            path,
                            reason: err.to_string(),
                        })?;
                        folder.put(&format!("samples/{rel}"), &png)?;
                        Some(rel)
                    }
                    None => None,
                };
                gallery.push(Sample {
                    family: e.family,
                    question: e.question,
                    answer: e.answer,
                    image,
                });
            }
        }
        samples += gallery.len();
        let rel = format!("samples/{name}.json");
        folder.put(&rel, &json_bytes(&gallery, &out.join(&rel))?)?;
    }

    Ok(ExportSummary {
        out: out.to_path_buf(),
        vocab_size: tokenizer.get_vocab_size(true),
        samples,
        files: folder.files,
        bytes: folder.bytes,
    })
}

/// The output folder, counting what is written into it.
struct Folder<'a> {
    root: &'a Path,
    files: usize,
    bytes: u64,
}

impl Folder<'_> {
    fn put(&mut self, rel: &str, data: &[u8]) -> Result<(), WorldError> {
        let path = self.root.join(rel);
        write_atomic(&path, data).map_err(|e| WorldError::Write {
            path,
            reason: e.to_string(),
        })?;
        self.files += 1;
        self.bytes += data.len() as u64;
        Ok(())
    }
}

/// The phrasings of `ask` in `split`, with `{}` where a text question names its subject.
fn phrasing_texts(ask: Ask, split: Split) -> Vec<String> {
    ask.phrasings(split)
        .into_iter()
        .map(|p| ask.question(p, "{}"))
        .collect()
}

fn json_bytes<T: Serialize>(value: &T, path: &Path) -> Result<Vec<u8>, WorldError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| WorldError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    Ok(text.into_bytes())
}
