//! A test double of a vision-language model whose every output is known in advance, so the
//! evaluator's scores can be checked against hand computations.
//!
//! Words are tokens (split on whitespace). Inside a prompt the model echoes the current token;
//! after the last `ASSISTANT:` it says an answer word by word, then `</s>`: the answer a fact
//! function gives for the prompt's question words and image class, unless an installed
//! [`Override`] (the newest that matches) says otherwise. The answer does not depend on the
//! answer tokens already read, so under teacher forcing position `j` of the answer always
//! predicts the model's `j`-th answer word. An image's class is the red channel of its top-left
//! pixel. Logits are `10` for the predicted token and `-0.01 · id` elsewhere, so the top-k below
//! the prediction is the lowest ids in order.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use image::{DynamicImage, GenericImageView, RgbImage};
use mkedsl::data::{load_dataset, Dataset, ImageRoots, MmeditRecord, PromptTemplate};
use mkedsl::eval::{EditState, Editor, EvalCase, PreparedCase};
use mkedsl::model::{
    Adapters, Batch, Encoded, GenerateOptions, Generated, Hooks, Latents, LinearSite, ModelDims,
    ModelError, PadSide, Readout, TokenKind, VisionLanguageModel,
};

pub const PAD: u32 = 0;
pub const BOS: u32 = 1;
pub const EOS: u32 = 2;
pub const IMAGE: u32 = 3;
pub const UNK: u32 = 4;
const SPECIALS: [&str; 5] = ["<pad>", "<s>", "</s>", "<image>", "<unk>"];
/// Ten filler words after the specials keep every content word's id ≥ 15, so a top-10 below a
/// content-word prediction is always ids 0–8 (makes top-10 agreement easy to compute by hand).
const FILLERS: usize = 10;
/// Image tokens per `<image>`.
pub const IMAGE_TOKENS: usize = 2;

/// The unedited model's knowledge: (question words, image class) → answer words.
pub type Facts = Arc<dyn Fn(&[String], Option<u8>) -> Vec<String> + Send + Sync>;

/// An installed edit: when the prompt matches, answer `answer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    /// Matches prompts whose image has this class (any prompt if `None`).
    pub class: Option<u8>,
    /// Matches prompts with exactly these question words (any question if `None`).
    pub question: Option<Vec<String>>,
    pub answer: Vec<String>,
}

#[derive(Clone)]
pub struct WordModel {
    vocab: Vec<String>,
    ids: HashMap<String, u32>,
    facts: Facts,
    pub overrides: Vec<Override>,
    device: Device,
}

impl WordModel {
    /// A model whose vocabulary holds every whitespace-separated word of `corpus`.
    pub fn new(corpus: &[&str], facts: Facts) -> Self {
        let mut vocab: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        vocab.extend((0..FILLERS).map(|i| format!("filler{i}")));
        let mut words: Vec<String> = corpus
            .iter()
            .flat_map(|t| t.split_whitespace())
            .chain(["USER:", "ASSISTANT:"])
            .filter(|w| !SPECIALS.contains(w))
            .map(str::to_string)
            .collect();
        words.sort();
        words.dedup();
        vocab.extend(words);
        let ids = vocab
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        Self {
            vocab,
            ids,
            facts,
            overrides: Vec::new(),
            device: Device::Cpu,
        }
    }

    pub fn id(&self, word: &str) -> u32 {
        self.ids.get(word).copied().unwrap_or(UNK)
    }

    fn word(&self, id: u32) -> &str {
        self.vocab.get(id as usize).map_or("<unk>", String::as_str)
    }

    /// The answer ids (then EOS) for a question and image class.
    fn answer(&self, question: &[String], class: Option<u8>) -> Vec<u32> {
        let words = self
            .overrides
            .iter()
            .rev()
            .find(|o| {
                o.class.is_none_or(|c| Some(c) == class)
                    && o.question.as_ref().is_none_or(|q| q.as_slice() == question)
            })
            .map(|o| o.answer.clone())
            .unwrap_or_else(|| (self.facts)(question, class));
        let mut ids: Vec<u32> = words.iter().map(|w| self.id(w)).collect();
        ids.push(EOS);
        ids
    }

    /// The next token after `prefix` of (id, image class) tokens.
    fn predict(&self, prefix: &[(u32, Option<u8>)]) -> u32 {
        let assistant = self.id("ASSISTANT:");
        let Some(&(current, _)) = prefix.last() else {
            return EOS;
        };
        let Some(a) = prefix.iter().rposition(|&(id, _)| id == assistant) else {
            return current;
        };
        let user = self.id("USER:");
        let question: Vec<String> = prefix[..a]
            .iter()
            .filter(|(id, class)| class.is_none() && ![BOS, IMAGE, user].contains(id))
            .map(|&(id, _)| self.word(id).to_string())
            .collect();
        let class = prefix[..a].iter().rev().find_map(|&(_, c)| c);
        let answer = self.answer(&question, class);
        answer.get(prefix.len() - 1 - a).copied().unwrap_or(EOS)
    }

    fn logits_row(&self, predicted: u32) -> Vec<f32> {
        (0..self.vocab.len())
            .map(|v| {
                if v as u32 == predicted {
                    10.0
                } else {
                    -0.01 * v as f32
                }
            })
            .collect()
    }
}

/// The class the double reads from an image.
pub fn class_of(image: &DynamicImage) -> u8 {
    image.get_pixel(0, 0).0[0]
}

fn prompt_error(reason: String) -> ModelError {
    ModelError::Prompt {
        reason,
        help: "test double".into(),
    }
}

impl VisionLanguageModel for WordModel {
    fn dims(&self) -> ModelDims {
        ModelDims {
            family: "word-double".into(),
            num_layers: 1,
            hidden: 2,
            intermediate: 2,
            heads: 1,
            kv_heads: 1,
            head_dim: 2,
            vocab: self.vocab.len(),
            vision_tokens: IMAGE_TOKENS,
            vision_hidden: 1,
        }
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn dtype(&self) -> DType {
        DType::F32
    }

    fn encode(
        &self,
        prompt: &str,
        images: &[DynamicImage],
    ) -> mkedsl::model::error::Result<Encoded> {
        let mut input_ids = vec![BOS];
        let mut image_positions = Vec::new();
        for word in prompt.split_whitespace() {
            if word == "<image>" {
                image_positions.extend(input_ids.len()..input_ids.len() + IMAGE_TOKENS);
                input_ids.extend([IMAGE; IMAGE_TOKENS]);
            } else {
                input_ids.push(self.id(word));
            }
        }
        if image_positions.len() != IMAGE_TOKENS * images.len() {
            return Err(prompt_error(format!(
                "{} image tokens for {} images",
                image_positions.len(),
                images.len()
            )));
        }
        let pixel_values = if images.is_empty() {
            None
        } else {
            let classes: Vec<f32> = images.iter().map(|i| f32::from(class_of(i))).collect();
            Some(Tensor::from_vec(
                classes,
                (images.len(), 1, 1, 1),
                &Device::Cpu,
            )?)
        };
        Ok(Encoded {
            input_ids,
            image_positions,
            pixel_values,
        })
    }

    fn tokenize(&self, text: &str) -> mkedsl::model::error::Result<Vec<u32>> {
        Ok(text.split_whitespace().map(|w| self.id(w)).collect())
    }

    fn decode(&self, ids: &[u32]) -> mkedsl::model::error::Result<String> {
        Ok(ids
            .iter()
            .filter(|&&i| i as usize >= SPECIALS.len())
            .map(|&i| self.word(i))
            .collect::<Vec<_>>()
            .join(" "))
    }

    fn eos_token_id(&self) -> Option<u32> {
        Some(EOS)
    }

    fn batch(&self, prompts: &[Encoded], side: PadSide) -> mkedsl::model::error::Result<Batch> {
        Batch::new(prompts, side, PAD, &self.device)
    }

    /// Channel 0: the token id; channel 1: the image class at image-token positions, else -1.
    fn embed(&self, batch: &Batch) -> mkedsl::model::error::Result<Latents> {
        let ids = batch.input_ids.to_vec2::<u32>()?;
        let classes: Vec<f32> = match &batch.pixel_values {
            Some(p) => p.flatten_all()?.to_vec1::<f32>()?,
            None => vec![],
        };
        let layout = batch.layout.clone();
        let seq = layout.seq();
        let mut visual = 0usize;
        let mut values = Vec::with_capacity(ids.len() * seq * 2);
        for (b, row) in ids.iter().enumerate() {
            for (t, &id) in row.iter().enumerate() {
                let class = if layout.kinds()[b * seq + t] == TokenKind::Visual {
                    let c = classes.get(visual / IMAGE_TOKENS).copied().unwrap_or(-1.0);
                    visual += 1;
                    c
                } else {
                    -1.0
                };
                values.extend([id as f32, class]);
            }
        }
        let embeds = Tensor::from_vec(values, (ids.len(), seq, 2), &self.device)?;
        Ok(Latents { embeds, layout })
    }

    fn forward(
        &self,
        latents: &Latents,
        _hooks: &mut Hooks,
        _adapters: &Adapters,
        readout: &Readout,
    ) -> mkedsl::model::error::Result<Tensor> {
        let layout = &latents.layout;
        let (b, t, vocab) = (layout.batch(), layout.seq(), self.vocab.len());
        let embeds = latents.embeds.to_vec3::<f32>()?;
        // Logits of every (row, column); padding gets zeros.
        let mut rows = vec![vec![0f32; vocab]; b * t];
        for (row, tokens) in embeds.iter().enumerate() {
            let mut prefix = Vec::new();
            for (col, e) in tokens.iter().enumerate() {
                if !layout.is_valid(row, col) {
                    continue;
                }
                let class = (e[1] >= 0.0).then_some(e[1] as u8);
                prefix.push((e[0] as u32, class));
                rows[row * t + col] = self.logits_row(self.predict(&prefix));
            }
        }
        let pick = |index: Vec<usize>| -> mkedsl::model::error::Result<Tensor> {
            let n = index.len();
            let flat: Vec<f32> = index.into_iter().flat_map(|i| rows[i].clone()).collect();
            Ok(Tensor::from_vec(flat, (n, vocab), &self.device)?)
        };
        match readout {
            Readout::All => Ok(pick((0..b * t).collect())?.reshape((b, t, vocab))?),
            Readout::Last => pick(
                layout
                    .last_index()
                    .into_iter()
                    .map(|i| i.unwrap_or(0) as usize)
                    .collect(),
            ),
            Readout::Positions(p) => {
                if let Some(bad) = p.iter().find(|&&(r, c)| !layout.is_valid(r, c)) {
                    return Err(prompt_error(format!("position {bad:?} is padding")));
                }
                pick(p.iter().map(|&(r, c)| r * t + c).collect())
            }
            Readout::Hidden => Err(prompt_error("the double has no hidden states".into())),
        }
    }

    fn generate(
        &self,
        prompts: &[Encoded],
        hooks: &mut Hooks,
        adapters: &Adapters,
        opts: &GenerateOptions,
    ) -> mkedsl::model::error::Result<Generated> {
        let mut rows: Vec<Encoded> = prompts.to_vec();
        let mut tokens = vec![Vec::new(); prompts.len()];
        let mut stopped = vec![false; prompts.len()];
        let mut prompt_logits = None;
        for _ in 0..opts.max_new_tokens {
            let batch = self.batch(&rows, PadSide::Left)?;
            let latents = self.embed(&batch)?;
            let logits = self.forward(&latents, hooks, adapters, &Readout::Last)?;
            let next: Vec<u32> = logits.argmax(1)?.to_vec1::<u32>()?;
            prompt_logits.get_or_insert(logits);
            for (r, &id) in next.iter().enumerate() {
                if stopped[r] {
                    continue;
                }
                if opts.stop_tokens.contains(&id) {
                    stopped[r] = true;
                } else {
                    tokens[r].push(id);
                    rows[r].extend(&[id]);
                }
            }
            if stopped.iter().all(|&s| s) {
                break;
            }
        }
        let prompt_logits = match prompt_logits {
            Some(l) => l,
            None => Tensor::zeros((prompts.len(), self.vocab.len()), DType::F32, &self.device)?,
        };
        Ok(Generated {
            tokens,
            stopped,
            prompt_logits,
        })
    }

    fn linear_weight(&self, site: LinearSite) -> mkedsl::model::error::Result<Tensor> {
        Err(ModelError::Site {
            site: site.to_string(),
            reason: "the test double has no linear layers".into(),
        })
    }

    fn replace_linear_weight(
        &mut self,
        site: LinearSite,
        _weight: Tensor,
    ) -> mkedsl::model::error::Result<Tensor> {
        self.linear_weight(site)
    }
}

/// An editor that makes every prompt about the edit image's class answer the target (an edit
/// that generalises over phrasings and over images of the same class).
#[derive(Debug, Default)]
pub struct ClassEditor {
    /// How many edits the model already held at each `edit` call.
    pub held: Vec<usize>,
    pub prepared: usize,
}

impl Editor<WordModel> for ClassEditor {
    fn name(&self) -> &str {
        "class-override"
    }

    fn prepare(
        &mut self,
        state: &mut EditState<WordModel>,
        cases: &[EvalCase],
    ) -> miette::Result<()> {
        self.prepared += cases.len();
        assert!(state.model.overrides.is_empty());
        Ok(())
    }

    fn edit(
        &mut self,
        state: &mut EditState<WordModel>,
        case: &PreparedCase,
    ) -> miette::Result<()> {
        self.held.push(state.model.overrides.len());
        state.model.overrides.push(Override {
            class: Some(class_of(&case.image)),
            question: None,
            answer: words(case.target()),
        });
        Ok(())
    }
}

/// An editor that makes the edit question (whatever the image) answer the target: it misses
/// rephrased questions and hits any image asked the same question.
#[derive(Debug, Default)]
pub struct QuestionEditor;

impl Editor<WordModel> for QuestionEditor {
    fn name(&self) -> &str {
        "question-override"
    }

    fn edit(
        &mut self,
        state: &mut EditState<WordModel>,
        case: &PreparedCase,
    ) -> miette::Result<()> {
        state.model.overrides.push(Override {
            class: None,
            question: Some(words(&case.case.record.src)),
            answer: words(case.target()),
        });
        Ok(())
    }
}

pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// Colour questions are answered by image class; "capital" questions say "paris".
pub fn world_facts() -> Facts {
    Arc::new(|question: &[String], class: Option<u8>| {
        let answer = if question.iter().any(|w| w == "capital") {
            "paris"
        } else if question.iter().any(|w| w == "colour") {
            match class {
                Some(10) => "red square",
                Some(20) => "blue circle",
                Some(30) => "green star",
                _ => "unknown",
            }
        } else {
            "unknown"
        };
        words(answer)
    })
}

/// A solid 4×4 image whose class (red channel) is `class`.
pub fn write_image(dir: &Path, name: &str, class: u8) -> String {
    let image = RgbImage::from_pixel(4, 4, image::Rgb([class, 0, 0]));
    image.save(dir.join(name)).expect("save png");
    name.to_string()
}

/// One case: (image class, image_rephrase class, m_loc class, alt, pred, m_loc_a).
pub struct Spec {
    pub image: u8,
    pub image_rephrase: u8,
    pub m_loc: u8,
    pub alt: &'static str,
    pub pred: &'static str,
    pub m_loc_a: &'static str,
}

/// The two cases every hand computation in the tests uses.
pub fn two_cases() -> Vec<Spec> {
    vec![
        Spec {
            image: 10,
            image_rephrase: 10,
            m_loc: 30,
            alt: "blue square",
            pred: "red square",
            m_loc_a: "green star",
        },
        Spec {
            image: 20,
            image_rephrase: 30,
            m_loc: 10,
            alt: "red circle",
            pred: "blue circle",
            m_loc_a: "red square",
        },
    ]
}

/// Writes the cases as an MMEdit file with images into `dir` and loads them.
pub fn write_cases(dir: &Path, specs: &[Spec]) -> (PathBuf, Dataset) {
    let records: Vec<MmeditRecord> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| MmeditRecord {
            src: "what colour is it".into(),
            pred: s.pred.into(),
            rephrase: "which colour is shown".into(),
            alt: s.alt.into(),
            image: write_image(dir, &format!("{i}.png"), s.image),
            image_rephrase: write_image(dir, &format!("{i}_rephrase.png"), s.image_rephrase),
            loc: "capital of france".into(),
            loc_ans: "paris".into(),
            m_loc: write_image(dir, &format!("{i}_mloc.png"), s.m_loc),
            m_loc_q: "what colour is it".into(),
            m_loc_a: s.m_loc_a.into(),
            family: Some("colour".into()),
        })
        .collect();
    let path = dir.join("cases.json");
    std::fs::write(&path, serde_json::to_string_pretty(&records).expect("json")).expect("write");
    let dataset = load_dataset(&path, &ImageRoots::beside(&path)).expect("loads");
    (path, dataset)
}

/// The double with the vocabulary of [`two_cases`] and [`world_facts`].
pub fn word_model() -> WordModel {
    WordModel::new(
        &[
            "what colour is it which colour is shown capital of france paris",
            "red square blue circle green star unknown",
        ],
        world_facts(),
    )
}

/// The cases of [`two_cases`], written into `dir`, with LLaVA-1.5 prompts.
pub fn eval_cases(dir: &Path) -> Vec<EvalCase> {
    let (_, dataset) = write_cases(dir, &two_cases());
    EvalCase::from_dataset(&dataset, &PromptTemplate::llava15(), None)
}
