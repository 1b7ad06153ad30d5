//! Pure metric primitives for scoring knowledge edits, computed exactly as EasyEdit computes them
//! (`easyeditor/evaluate/multimodal_evaluate.py` and the multimodal editor's locality code).
//!
//! - **Rel / T-Gen / M-Gen** share one scorer, teacher-forced token accuracy, applied to
//!   (image, src), (image, rephrase) and (image_rephrase, src). The input is `prompt + " " + target`;
//!   [`target_labels`] marks the target's tokens at the end of the sequence and leaves every other
//!   position at -100; [`teacher_forced`] counts `argmax(logits[t-1]) == label[t]` over the target
//!   tokens. A case's score is that fraction; the dataset's score is the mean over cases
//!   ([`aggregate`]), as EasyEdit's summaries average per-case `rewrite_acc`.
//! - **T-Loc / M-Loc** compare the post-edit with the pre-edit model, not with `loc_ans`. Both
//!   logit sequences are right-aligned to their common length and the top-k token ids of each
//!   scored position are compared element-wise, rank by rank (k = 1 for text, k = 10 for image
//!   locality) — [`top_k_agreement`]. EasyEdit scores every position of `prompt + " " + answer`,
//!   image-token and prompt positions included ([`LocalityPositions::All`]);
//!   [`LocalityPositions::Answer`] scores only the positions that predict the answer's tokens,
//!   which is stricter because prompt positions rarely change. The evaluator states which it used.
//! - **Generation** scores: exact match of a greedy generation with the target after
//!   [`normalize_generation`] (cut at `</s>`, trim, lowercase, single spaces), and exact-match
//!   agreement of post- with pre-edit generations for locality.
//!
//! Ties in argmax and top-k go to the lower token id; NaN ranks above every number, as in torch.

use std::cmp::Ordering;

use serde::Serialize;

/// The label of positions that are not scored (PyTorch's cross-entropy ignore index).
pub const IGNORE_INDEX: i64 = -100;

/// Misuse of a metric primitive (shapes that do not fit together).
#[derive(Debug, Clone, PartialEq, thiserror::Error, miette::Diagnostic)]
pub enum MetricError {
    #[error("{what}: {left} does not match {right}")]
    #[diagnostic(
        code(mkedsl::metrics::length),
        help("pass logits and labels of the same sequence")
    )]
    LengthMismatch {
        what: &'static str,
        left: usize,
        right: usize,
    },
    #[error("a target of {target} tokens does not fit after a prompt in a sequence of {sequence}")]
    #[diagnostic(
        code(mkedsl::metrics::target_length),
        help("the sequence must hold at least one prompt token before the target")
    )]
    TargetTooLong { target: usize, sequence: usize },
    #[error("no target token to score")]
    #[diagnostic(
        code(mkedsl::metrics::no_target),
        help("a case needs a non-empty target after its first position")
    )]
    NoTargetTokens,
    #[error("logits of {len} values cannot be rows of a vocabulary of {vocab}")]
    #[diagnostic(
        code(mkedsl::metrics::ragged),
        help("logits are row-major [positions × vocabulary]")
    )]
    RaggedLogits { len: usize, vocab: usize },
    #[error("top-{k} is undefined for a vocabulary of {vocab}")]
    #[diagnostic(code(mkedsl::metrics::top_k), help("use 1 ≤ k ≤ vocabulary size"))]
    BadK { k: usize, vocab: usize },
    #[error("cannot aggregate zero cases")]
    #[diagnostic(code(mkedsl::metrics::empty), help("score at least one case"))]
    NoCases,
    #[error("logits tensor: {0}")]
    #[diagnostic(
        code(mkedsl::metrics::tensor),
        help("pass logits of shape [positions, vocab] or [1, positions, vocab]")
    )]
    Tensor(String),
}

/// Labels for `prompt + " " + target` of `seq_len` tokens: the target's ids right-aligned at the
/// end, [`IGNORE_INDEX`] everywhere else.
pub fn target_labels(seq_len: usize, target: &[u32]) -> Result<Vec<i64>, MetricError> {
    if target.is_empty() {
        return Err(MetricError::NoTargetTokens);
    }
    if target.len() >= seq_len {
        return Err(MetricError::TargetTooLong {
            target: target.len(),
            sequence: seq_len,
        });
    }
    let mut labels = vec![IGNORE_INDEX; seq_len - target.len()];
    labels.extend(target.iter().map(|&t| i64::from(t)));
    Ok(labels)
}

/// Correct and scored target tokens of one case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TokenCount {
    pub correct: usize,
    pub total: usize,
}

impl TokenCount {
    /// `correct / total`, or `None` when nothing was scored.
    pub fn fraction(self) -> Option<f64> {
        (self.total > 0).then(|| self.correct as f64 / self.total as f64)
    }
}

impl std::ops::Add for TokenCount {
    type Output = TokenCount;
    fn add(self, other: TokenCount) -> TokenCount {
        TokenCount {
            correct: self.correct + other.correct,
            total: self.total + other.total,
        }
    }
}

/// Teacher-forced token accuracy. `predicted[t]` is the argmax of the logits at position `t`
/// (which predict token `t + 1`); a label at `t` is scored against `predicted[t - 1]`. The label
/// at position 0 has no prediction and is skipped, as EasyEdit's shift drops it.
pub fn teacher_forced(predicted: &[u32], labels: &[i64]) -> Result<TokenCount, MetricError> {
    if predicted.len() != labels.len() {
        return Err(MetricError::LengthMismatch {
            what: "predicted positions vs labels",
            left: predicted.len(),
            right: labels.len(),
        });
    }
    let mut count = TokenCount::default();
    for (prediction, &label) in predicted.iter().zip(labels.iter().skip(1)) {
        if label != IGNORE_INDEX {
            count.total += 1;
            if i64::from(*prediction) == label {
                count.correct += 1;
            }
        }
    }
    if count.total == 0 {
        return Err(MetricError::NoTargetTokens);
    }
    Ok(count)
}

/// Orders (id, logit) pairs best first: larger logit, NaN above all, lower id on ties.
fn best_first(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    let key = |v: f32| if v.is_nan() { f32::INFINITY } else { v };
    key(b.1).total_cmp(&key(a.1)).then(a.0.cmp(&b.0))
}

fn check_rows(logits: &[f32], vocab: usize) -> Result<usize, MetricError> {
    if vocab == 0 || !logits.len().is_multiple_of(vocab) {
        return Err(MetricError::RaggedLogits {
            len: logits.len(),
            vocab,
        });
    }
    Ok(logits.len() / vocab)
}

/// The argmax of every row of row-major `[positions × vocab]` logits.
pub fn argmax_rows(logits: &[f32], vocab: usize) -> Result<Vec<u32>, MetricError> {
    check_rows(logits, vocab)?;
    Ok(logits
        .chunks_exact(vocab)
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(i, &v)| (i as u32, v))
                .min_by(best_first)
                .map_or(0, |(i, _)| i)
        })
        .collect())
}

/// The top-k token ids of each position, best first, row-major `[positions × k]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopK {
    pub k: usize,
    pub ids: Vec<u32>,
}

impl TopK {
    /// Number of positions.
    pub fn positions(&self) -> usize {
        self.ids.len().checked_div(self.k).unwrap_or(0)
    }

    /// The ids of one position, best first.
    pub fn row(&self, position: usize) -> Option<&[u32]> {
        self.ids.chunks_exact(self.k.max(1)).nth(position)
    }

    /// The best `k` ids of each position (all of them if `k` exceeds this top-k's width): the
    /// top-1 of an image-locality top-10, for instance.
    pub fn head(&self, k: usize) -> TopK {
        let k = k.min(self.k);
        TopK {
            k,
            ids: self
                .ids
                .chunks_exact(self.k.max(1))
                .flat_map(|row| row.iter().take(k).copied())
                .collect(),
        }
    }
}

/// The top-k ids of every row of row-major `[positions × vocab]` logits.
pub fn top_k_rows(logits: &[f32], vocab: usize, k: usize) -> Result<TopK, MetricError> {
    check_rows(logits, vocab)?;
    if k == 0 || k > vocab {
        return Err(MetricError::BadK { k, vocab });
    }
    let mut ids = Vec::with_capacity(logits.len() / vocab * k);
    let mut scratch: Vec<(u32, f32)> = Vec::with_capacity(vocab);
    for row in logits.chunks_exact(vocab) {
        scratch.clear();
        scratch.extend(row.iter().enumerate().map(|(i, &v)| (i as u32, v)));
        if k < vocab {
            scratch.select_nth_unstable_by(k - 1, best_first);
        }
        let head = scratch.get_mut(..k).unwrap_or_default();
        head.sort_by(best_first);
        ids.extend(head.iter().map(|(i, _)| *i));
    }
    Ok(TopK { k, ids })
}

/// Row-major f32 logits and the vocabulary size from a `[positions, vocab]` or
/// `[1, positions, vocab]` tensor on any device and dtype.
fn tensor_rows(logits: &candle_core::Tensor) -> Result<(Vec<f32>, usize), MetricError> {
    let err = |e: candle_core::Error| MetricError::Tensor(e.to_string());
    let vocab = match logits.dims() {
        [_, v] | [1, _, v] => *v,
        dims => {
            return Err(MetricError::Tensor(format!(
                "expected [positions, vocab] or [1, positions, vocab], found {dims:?}"
            )))
        }
    };
    let values = logits
        .to_dtype(candle_core::DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(err)?;
    Ok((values, vocab))
}

/// [`argmax_rows`] of a logits tensor.
pub fn argmax_tensor(logits: &candle_core::Tensor) -> Result<Vec<u32>, MetricError> {
    let (values, vocab) = tensor_rows(logits)?;
    argmax_rows(&values, vocab)
}

/// [`top_k_rows`] of a logits tensor.
pub fn top_k_tensor(logits: &candle_core::Tensor, k: usize) -> Result<TopK, MetricError> {
    let (values, vocab) = tensor_rows(logits)?;
    top_k_rows(&values, vocab, k)
}

/// Which positions locality compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "positions")]
pub enum LocalityPositions {
    /// Every position of the right-aligned sequences (EasyEdit).
    All,
    /// Only the positions predicting the last `answer_len` tokens (the answer of `loc` / `m_loc`).
    Answer { answer_len: usize },
}

/// Matching and compared (position, rank) slots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Agreement {
    pub matched: usize,
    pub total: usize,
}

impl Agreement {
    /// `matched / total`, or `None` when nothing was compared.
    pub fn fraction(self) -> Option<f64> {
        (self.total > 0).then(|| self.matched as f64 / self.total as f64)
    }
}

/// Locality agreement of post-edit with pre-edit top-k ids: right-align both to their common
/// length, keep the scored `positions`, and count rank-by-rank equal ids.
pub fn top_k_agreement(
    pre: &TopK,
    post: &TopK,
    positions: LocalityPositions,
) -> Result<Agreement, MetricError> {
    if pre.k != post.k {
        return Err(MetricError::LengthMismatch {
            what: "top-k of pre-edit vs post-edit",
            left: pre.k,
            right: post.k,
        });
    }
    let common = pre.positions().min(post.positions());
    let (start, end) = match positions {
        LocalityPositions::All => (0, common),
        LocalityPositions::Answer { answer_len } => {
            if answer_len == 0 {
                return Err(MetricError::NoTargetTokens);
            }
            if answer_len >= common {
                return Err(MetricError::TargetTooLong {
                    target: answer_len,
                    sequence: common,
                });
            }
            (common - answer_len - 1, common - 1)
        }
    };
    let pre_offset = pre.positions() - common;
    let post_offset = post.positions() - common;
    let mut agreement = Agreement::default();
    for p in start..end {
        let (Some(a), Some(b)) = (pre.row(pre_offset + p), post.row(post_offset + p)) else {
            continue;
        };
        agreement.total += a.len();
        agreement.matched += a.iter().zip(b).filter(|(x, y)| x == y).count();
    }
    if agreement.total == 0 {
        return Err(MetricError::NoTargetTokens);
    }
    Ok(agreement)
}

/// A generation as compared for exact match: everything before the first `</s>`, trimmed,
/// lowercased, with runs of whitespace collapsed to one space (decoders differ in spacing).
pub fn normalize_generation(text: &str) -> String {
    let before_eos = text.split("</s>").next().unwrap_or("");
    before_eos
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// Whether a greedy generation exactly matches the target (or, for locality, the pre-edit
/// generation) after [`normalize_generation`].
pub fn generation_matches(generated: &str, reference: &str) -> bool {
    normalize_generation(generated) == normalize_generation(reference)
}

/// The five scores of the papers' tables, each a fraction in [0, 1]: per case, or averaged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct MetricSet {
    pub rel: f64,
    pub t_gen: f64,
    pub m_gen: f64,
    pub t_loc: f64,
    pub m_loc: f64,
}

impl MetricSet {
    /// A case's token-level scores.
    pub fn from_counts(
        rel: TokenCount,
        t_gen: TokenCount,
        m_gen: TokenCount,
        t_loc: Agreement,
        m_loc: Agreement,
    ) -> Result<MetricSet, MetricError> {
        let need = |f: Option<f64>| f.ok_or(MetricError::NoTargetTokens);
        Ok(MetricSet {
            rel: need(rel.fraction())?,
            t_gen: need(t_gen.fraction())?,
            m_gen: need(m_gen.fraction())?,
            t_loc: need(t_loc.fraction())?,
            m_loc: need(m_loc.fraction())?,
        })
    }

    /// A case's exact-match scores (1 for a match, 0 otherwise).
    pub fn from_matches(
        rel: bool,
        t_gen: bool,
        m_gen: bool,
        t_loc: bool,
        m_loc: bool,
    ) -> MetricSet {
        let v = |b: bool| if b { 1.0 } else { 0.0 };
        MetricSet {
            rel: v(rel),
            t_gen: v(t_gen),
            m_gen: v(m_gen),
            t_loc: v(t_loc),
            m_loc: v(m_loc),
        }
    }
}

/// The mean of each score over cases.
pub fn aggregate(cases: &[MetricSet]) -> Result<MetricSet, MetricError> {
    let n = cases.len() as f64;
    if cases.is_empty() {
        return Err(MetricError::NoCases);
    }
    let mean = |f: fn(&MetricSet) -> f64| cases.iter().map(f).sum::<f64>() / n;
    Ok(MetricSet {
        rel: mean(|m| m.rel),
        t_gen: mean(|m| m.t_gen),
        m_gen: mean(|m| m.m_gen),
        t_loc: mean(|m| m.t_loc),
        m_loc: mean(|m| m.m_loc),
    })
}

/// The mean of per-case fractions (for partial rows such as the pre-edit Rel/T-Gen/M-Gen).
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_keeps_the_best_ranks_of_each_position() {
        let top = TopK {
            k: 3,
            ids: vec![5, 1, 2, 7, 0, 9],
        };
        assert_eq!(
            top.head(1),
            TopK {
                k: 1,
                ids: vec![5, 7]
            }
        );
        assert_eq!(top.head(2).row(1), Some(&[7, 0][..]));
        assert_eq!(top.head(9), top);
        assert_eq!(top.head(0).positions(), 0);
    }
}
