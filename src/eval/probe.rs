//! What a model does on a group of cases' evaluation prompts, computed in padded batches.
//!
//! Per case there are five teacher-forced sequences — `src`+`alt` (Rel), `rephrase`+`alt`
//! (T-Gen), `src`+`alt` on `image_rephrase` (M-Gen), `loc`+`loc_ans` (T-Loc), `m_loc_q`+`m_loc_a`
//! on `m_loc` (M-Loc) — and the same five prompts without their answers for greedy generation.
//! The sequences of every case of a group share padded forward passes (right padding, logits
//! read only at the positions a score needs). The same code observes the unedited model (cached
//! once) and the edited one, so the two are read identically.
//!
//! Greedy generation stops at a stop token or after the answer's token count plus one (never
//! past `max_new_tokens`): the exact-match scores compare a generation with an answer of that
//! length, and one more token shows whether the model would have gone on.
//!
//! [`observe`] does the same work as [`observe_plain`], the reference path, in less time and
//! gives the same outputs (`tests/eval_fast.rs`):
//! - image features come from a [`FeatureCache`]: the vision tower runs once per distinct image
//!   of the evaluation, not once per prompt showing it;
//! - greedy tokens are first read off the teacher-forced pass: its logits at the prompt's last
//!   position are the generation's first step, and as long as the greedy token equals the
//!   sequence's next token, the next position's logits are the next step (causal attention sees
//!   the same prefix). A generation that follows the answer to its end (or stops on the way) needs
//!   no decoding; only those that leave it are decoded, batched, with the KV cache.

use candle_core::DType;
use image::DynamicImage;
use serde::Serialize;

use crate::eval::case::{scored_text, PreparedCase};
use crate::eval::error::{EvalError, Result};
use crate::eval::metrics::{
    argmax_rows, target_labels, teacher_forced, top_k_rows, MetricError, TokenCount, TopK,
};
use crate::model::generate::argmax;
use crate::model::{
    Adapters, Encoded, FeatureCache, GenerateOptions, Hooks, PadSide, Readout, VisionLanguageModel,
};

/// The top-k width EasyEdit compares for text (`loc`) locality.
pub const TEXT_LOCALITY_K: usize = 1;
/// The top-k width EasyEdit compares for image (`m_loc`) locality.
pub const IMAGE_LOCALITY_K: usize = 10;

/// Upper bound on the logit rows one forward call materialises (rows × vocabulary floats), so
/// every-position locality of a 32k-vocabulary model stays within a few hundred MB.
const MAX_LOGIT_ROWS: usize = 2048;

/// How observations are batched and how long generations may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeOptions {
    /// Sequences per forward pass (and prompts per generation batch).
    pub batch_size: usize,
    /// Most tokens a greedy generation may produce (it stops earlier at EOS, and after the
    /// answer's length plus one).
    pub max_new_tokens: usize,
}

/// How [`observe_with`] computes: [`Path::Plain`] is the reference the fast path is tested
/// against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Every prompt's images through the vision tower; every generation decoded.
    Plain,
    /// Image features from the cache; greedy tokens read off the teacher-forced pass where it
    /// determines them.
    Fast,
}

/// The locality record of one sequence: top-k ids at every position, for comparison with the
/// other side of the edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalityTrace {
    /// Top-k ids at every position of `prompt + " " + answer`, `k` per position.
    pub top_k: TopK,
    /// Tokens of the reference answer (`loc_ans` / `m_loc_a`) at the end of the sequence.
    pub answer_len: usize,
}

/// Greedy generations of the five prompts of a case, decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Generations {
    pub rel: String,
    pub t_gen: String,
    pub m_gen: String,
    pub t_loc: String,
    pub m_loc: String,
}

/// Everything a model produced on one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOutputs {
    pub rel: TokenCount,
    pub t_gen: TokenCount,
    pub m_gen: TokenCount,
    pub loc: LocalityTrace,
    pub m_loc: LocalityTrace,
    pub generated: Generations,
}

/// What a sequence's logits are reduced to.
#[derive(Debug, Clone, Copy)]
enum Reduce {
    /// Teacher-forced accuracy of the trailing answer tokens.
    Target,
    /// Top-k ids at every position.
    Locality { k: usize },
}

/// One teacher-forced sequence and its generation prompt.
struct Sequence {
    encoded: Encoded,
    /// The answer's token ids (tokenised alone, as EasyEdit tokenises the target).
    answer: Vec<u32>,
    reduce: Reduce,
    case: usize,
    probe: &'static str,
    /// The prompt without its answer, for greedy generation.
    prompt: Encoded,
    /// Most tokens its generation may produce.
    budget: usize,
    /// Read the greedy tokens off this sequence's logits where they determine them (the fast
    /// path, when the sequence begins with the prompt's tokens).
    speculate: bool,
}

impl Sequence {
    /// The positions whose logits the reduction reads: the `answer.len()` positions predicting
    /// the answer, or every position.
    fn positions(&self) -> std::ops::Range<usize> {
        let len = self.encoded.len();
        match self.reduce {
            Reduce::Target => len - self.answer.len() - 1..len - 1,
            Reduce::Locality { .. } => 0..len,
        }
    }

    /// The positions whose logits are computed: the scored ones and, when speculating, those
    /// from the prompt's last token to the end (the greedy steps the sequence determines).
    fn read(&self) -> std::ops::Range<usize> {
        let scored = self.positions();
        if !self.speculate {
            return scored;
        }
        scored.start.min(self.prompt.len() - 1)..self.encoded.len()
    }

    /// The greedy generation these logit rows (positions [`Self::read`]) determine, if they do:
    /// step `i` reads the position after `prompt + g₀ … gᵢ₋₁`, which is a position of this
    /// sequence while every `g` so far equals the sequence's own tokens.
    fn greedy(&self, rows: &[f32], vocab: usize, stop: &[u32]) -> Option<Vec<u32>> {
        let start = self.read().start;
        let ids = &self.encoded.input_ids;
        let mut out = Vec::new();
        let mut pos = self.prompt.len() - 1;
        while out.len() < self.budget {
            let row = rows.get((pos - start) * vocab..(pos - start + 1) * vocab)?;
            // Scores refuse non-finite logits only where they read them; a generation step
            // that meets one is left to the decoder, which treats it as the plain path does.
            if row.iter().any(|v| !v.is_finite()) {
                return None;
            }
            let id = argmax(row);
            if stop.contains(&id) {
                return Some(out);
            }
            out.push(id);
            pos += 1;
            if out.len() < self.budget && ids.get(pos) != Some(&id) {
                return None;
            }
        }
        Some(out)
    }
}

/// What a sequence reduced to.
enum Reduced {
    Target(TokenCount),
    Locality(LocalityTrace),
}

/// Runs every evaluation prompt of `cases` through `model` with `adapters`, reusing `features`
/// across calls (the fast path).
pub fn observe<M: VisionLanguageModel>(
    model: &M,
    adapters: &Adapters,
    cases: &[PreparedCase],
    opts: &ProbeOptions,
    features: &mut FeatureCache,
) -> Result<Vec<CaseOutputs>> {
    observe_with(model, adapters, cases, opts, Path::Fast, features)
}

/// [`observe`] on the reference path: no cached features, every generation decoded.
pub fn observe_plain<M: VisionLanguageModel>(
    model: &M,
    adapters: &Adapters,
    cases: &[PreparedCase],
    opts: &ProbeOptions,
) -> Result<Vec<CaseOutputs>> {
    observe_with(
        model,
        adapters,
        cases,
        opts,
        Path::Plain,
        &mut FeatureCache::new(),
    )
}

/// Runs every evaluation prompt of `cases` on `path`.
pub fn observe_with<M: VisionLanguageModel>(
    model: &M,
    adapters: &Adapters,
    cases: &[PreparedCase],
    opts: &ProbeOptions,
    path: Path,
    features: &mut FeatureCache,
) -> Result<Vec<CaseOutputs>> {
    let mut sequences = Vec::with_capacity(cases.len() * 5);
    for case in cases {
        sequences.extend(case_sequences(model, case, opts, path)?);
    }
    let stop: Vec<u32> = model.eos_token_id().into_iter().collect();
    let mut features = (path == Path::Fast).then_some(features);
    let (reduced, mut greedy) =
        run_sequences(model, adapters, &sequences, opts, &stop, &mut features)?;
    let pending: Vec<usize> = (0..sequences.len())
        .filter(|&i| greedy.get(i).is_some_and(Option::is_none))
        .collect();
    let decoded = generate(
        model,
        adapters,
        &pending.iter().map(|&i| &sequences[i]).collect::<Vec<_>>(),
        opts,
        &stop,
        &mut features,
    )?;
    for (i, ids) in pending.into_iter().zip(decoded) {
        greedy[i] = Some(ids);
    }
    let generated = greedy
        .into_iter()
        .map(|ids| {
            model
                .decode(&ids.unwrap_or_default())
                .map_err(EvalError::from)
        })
        .collect::<Result<Vec<String>>>()?;
    if reduced.len() != 5 * cases.len() || generated.len() != 5 * cases.len() {
        return Err(EvalError::Internal {
            reason: format!(
                "{} cases gave {} scored sequences and {} generations",
                cases.len(),
                reduced.len(),
                generated.len()
            ),
        });
    }
    let mut reduced = reduced.into_iter();
    let mut generated = generated.into_iter();
    let mut out = Vec::with_capacity(cases.len());
    for _ in cases {
        let mut text = || generated.next().unwrap_or_default();
        let generated = Generations {
            rel: text(),
            t_gen: text(),
            m_gen: text(),
            t_loc: text(),
            m_loc: text(),
        };
        let mut next = || reduced.next();
        let (
            Some(Reduced::Target(rel)),
            Some(Reduced::Target(t_gen)),
            Some(Reduced::Target(m_gen)),
        ) = (next(), next(), next())
        else {
            return Err(order_error());
        };
        let (Some(Reduced::Locality(loc)), Some(Reduced::Locality(m_loc))) = (next(), next())
        else {
            return Err(order_error());
        };
        out.push(CaseOutputs {
            rel,
            t_gen,
            m_gen,
            loc,
            m_loc,
            generated,
        });
    }
    Ok(out)
}

fn order_error() -> EvalError {
    EvalError::Internal {
        reason: "scored sequences came back out of order".into(),
    }
}

/// The five teacher-forced sequences of a case, in the order rel, t_gen, m_gen, t_loc, m_loc.
fn case_sequences<M: VisionLanguageModel>(
    model: &M,
    case: &PreparedCase,
    opts: &ProbeOptions,
    path: Path,
) -> Result<Vec<Sequence>> {
    let p = &case.case.prompts;
    let r = &case.case.record;
    let target = Reduce::Target;
    let text_loc = Reduce::Locality { k: TEXT_LOCALITY_K };
    let image_loc = Reduce::Locality {
        k: IMAGE_LOCALITY_K,
    };
    let specs = [
        Probe::new("rel", &p.src, Some(&case.image), "alt", &r.alt, target),
        Probe::new(
            "t_gen",
            &p.rephrase,
            Some(&case.image),
            "alt",
            &r.alt,
            target,
        ),
        Probe::new(
            "m_gen",
            &p.src,
            Some(&case.image_rephrase),
            "alt",
            &r.alt,
            target,
        ),
        Probe::new("t_loc", &p.loc, None, "loc_ans", &r.loc_ans, text_loc),
        Probe::new(
            "m_loc",
            &p.m_loc,
            Some(&case.m_loc),
            "m_loc_a",
            &r.m_loc_a,
            image_loc,
        ),
    ];
    specs
        .iter()
        .map(|probe| probe.sequence(model, case.case.index, opts, path))
        .collect()
}

/// One scored prompt of a case, before encoding.
struct Probe<'a> {
    name: &'static str,
    prompt: &'a str,
    image: Option<&'a DynamicImage>,
    field: &'static str,
    answer: &'a str,
    reduce: Reduce,
}

impl<'a> Probe<'a> {
    fn new(
        name: &'static str,
        prompt: &'a str,
        image: Option<&'a DynamicImage>,
        field: &'static str,
        answer: &'a str,
        reduce: Reduce,
    ) -> Self {
        Self {
            name,
            prompt,
            image,
            field,
            answer,
            reduce,
        }
    }

    /// Encodes `prompt + " " + answer` and the prompt alone, and tokenises the answer alone.
    fn sequence<M: VisionLanguageModel>(
        &self,
        model: &M,
        case: usize,
        opts: &ProbeOptions,
        path: Path,
    ) -> Result<Sequence> {
        let images: Vec<DynamicImage> = self.image.into_iter().cloned().collect();
        let encoded = model.encode(&scored_text(self.prompt, self.answer), &images)?;
        let prompt = model.encode(self.prompt, &images)?;
        let ids = model.tokenize(self.answer.trim())?;
        let bad = |reason: String| EvalError::Target {
            case,
            field: self.field,
            text: self.answer.to_string(),
            reason,
        };
        if ids.is_empty() {
            return Err(bad("tokenises to no token".into()));
        }
        if ids.len() >= encoded.len() {
            return Err(bad(format!(
                "has {} tokens, leaving no prompt in a sequence of {}",
                ids.len(),
                encoded.len()
            )));
        }
        let speculate = path == Path::Fast
            && !prompt.is_empty()
            && encoded.input_ids.starts_with(&prompt.input_ids);
        Ok(Sequence {
            budget: opts.max_new_tokens.min(ids.len() + 1),
            encoded,
            answer: ids,
            reduce: self.reduce,
            case,
            probe: self.name,
            prompt,
            speculate,
        })
    }
}

/// Batches of consecutive sequences, at most `batch_size` long and `MAX_LOGIT_ROWS` rows.
fn batches(sequences: &[Sequence], batch_size: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut rows = 0;
    for (i, s) in sequences.iter().enumerate() {
        let n = s.read().len();
        let full = i - start >= batch_size.max(1) || rows + n > MAX_LOGIT_ROWS;
        if i > start && full {
            out.push(start..i);
            start = i;
            rows = 0;
        }
        rows += n;
    }
    if start < sequences.len() {
        out.push(start..sequences.len());
    }
    out
}

/// Input latents of `encoded` padded on `side`, image features from `features` when given.
fn latents<M: VisionLanguageModel>(
    model: &M,
    encoded: &[Encoded],
    side: PadSide,
    features: &mut Option<&mut FeatureCache>,
) -> Result<crate::model::Latents> {
    let batch = model.batch(encoded, side)?;
    Ok(match features {
        Some(cache) => model.embed_cached(&batch, cache)?,
        None => model.embed(&batch)?,
    })
}

/// A greedy generation's tokens, when the teacher-forced logits determine them.
type Greedy = Option<Vec<u32>>;

/// Teacher-forced forward passes over all sequences, each reduced right after its batch, with
/// the greedy generations the logits determine (`None`: to be decoded).
fn run_sequences<M: VisionLanguageModel>(
    model: &M,
    adapters: &Adapters,
    sequences: &[Sequence],
    opts: &ProbeOptions,
    stop: &[u32],
    features: &mut Option<&mut FeatureCache>,
) -> Result<(Vec<Reduced>, Vec<Greedy>)> {
    let vocab = model.dims().vocab;
    let mut out = Vec::with_capacity(sequences.len());
    let mut greedy = Vec::with_capacity(sequences.len());
    for range in batches(sequences, opts.batch_size) {
        let chunk = &sequences[range];
        let encoded: Vec<Encoded> = chunk.iter().map(|s| s.encoded.clone()).collect();
        let latents = latents(model, &encoded, PadSide::Right, features)?;
        let positions: Vec<(usize, usize)> = chunk
            .iter()
            .enumerate()
            .flat_map(|(row, s)| s.read().map(move |col| (row, col)))
            .collect();
        let logits = model.forward(
            &latents,
            &mut Hooks::new(),
            adapters,
            &Readout::Positions(positions),
        )?;
        let values = logits
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(crate::model::ModelError::from)?;
        let mut offset = 0;
        for s in chunk {
            let n = s.read().len() * vocab;
            let read = values.get(offset..offset + n).unwrap_or_default();
            offset += n;
            let skip = (s.positions().start - s.read().start) * vocab;
            let rows = read
                .get(skip..skip + s.positions().len() * vocab)
                .unwrap_or_default();
            // NaN logits give the same argmax before and after an edit: scored, they would
            // count as perfect locality. A model that produces them is reported instead.
            if let Some(bad) = rows.iter().find(|v| !v.is_finite()) {
                return Err(EvalError::NonFinite {
                    case: s.case,
                    probe: s.probe,
                    value: *bad,
                });
            }
            out.push(reduce(s, rows, vocab).map_err(|source| EvalError::Metric {
                case: s.case,
                probe: s.probe,
                source,
            })?);
            greedy.push(if s.speculate {
                s.greedy(read, vocab, stop)
            } else {
                None
            });
        }
    }
    Ok((out, greedy))
}

/// A sequence's logit rows reduced to its score material.
fn reduce(s: &Sequence, rows: &[f32], vocab: usize) -> std::result::Result<Reduced, MetricError> {
    let len = s.encoded.len();
    match s.reduce {
        Reduce::Target => {
            // `teacher_forced` reads predictions at the positions before each label; only the
            // answer-predicting ones were computed, the rest are never read.
            let argmax = argmax_rows(rows, vocab)?;
            if argmax.len() != s.answer.len() {
                return Err(MetricError::LengthMismatch {
                    what: "answer positions vs answer tokens",
                    left: argmax.len(),
                    right: s.answer.len(),
                });
            }
            let mut predicted = vec![0; len];
            predicted[s.positions()].copy_from_slice(&argmax);
            let labels = target_labels(len, &s.answer)?;
            Ok(Reduced::Target(teacher_forced(&predicted, &labels)?))
        }
        Reduce::Locality { k } => Ok(Reduced::Locality(LocalityTrace {
            top_k: top_k_rows(rows, vocab, k.min(vocab))?,
            answer_len: s.answer.len(),
        })),
    }
}

/// Greedy generations of the sequences' prompts, each within its budget, in batches.
fn generate<M: VisionLanguageModel>(
    model: &M,
    adapters: &Adapters,
    sequences: &[&Sequence],
    opts: &ProbeOptions,
    stop: &[u32],
    features: &mut Option<&mut FeatureCache>,
) -> Result<Vec<Vec<u32>>> {
    let mut out = Vec::with_capacity(sequences.len());
    for chunk in sequences.chunks(opts.batch_size.max(1)) {
        let prompts: Vec<Encoded> = chunk.iter().map(|s| s.prompt.clone()).collect();
        let mut gen = GenerateOptions::new(opts.max_new_tokens, stop.to_vec());
        gen.row_limits = chunk.iter().map(|s| s.budget).collect();
        let generated = match features {
            Some(cache) => {
                model.generate_cached(&prompts, cache, &mut Hooks::new(), adapters, &gen)?
            }
            None => model.generate(&prompts, &mut Hooks::new(), adapters, &gen)?,
        };
        out.extend(generated.tokens);
    }
    Ok(out)
}
