//! The metric primitives against hand-computed values, following EasyEdit's definitions.

use candle_core::{Device, Tensor};
use mkedsl::eval::metrics::*;

/// Logits whose row `t` puts 1.0 on `best[t]` and 0.0 elsewhere.
fn logits_with_argmax(best: &[u32], vocab: usize) -> Vec<f32> {
    let mut logits = vec![0.0; best.len() * vocab];
    for (t, &b) in best.iter().enumerate() {
        logits[t * vocab + b as usize] = 1.0;
    }
    logits
}

fn tokens(correct: usize, total: usize) -> TokenCount {
    TokenCount { correct, total }
}

fn agree(matched: usize, total: usize) -> Agreement {
    Agreement { matched, total }
}

fn top1(ids: &[u32]) -> TopK {
    TopK {
        k: 1,
        ids: ids.to_vec(),
    }
}

#[test]
fn labels_mark_the_target_at_the_end() {
    assert_eq!(
        target_labels(6, &[7, 8]).unwrap(),
        vec![-100, -100, -100, -100, 7, 8]
    );
    assert_eq!(
        target_labels(2, &[7, 8]),
        Err(MetricError::TargetTooLong {
            target: 2,
            sequence: 2
        })
    );
    assert_eq!(target_labels(4, &[]), Err(MetricError::NoTargetTokens));
}

/// A model that answers X (token 30) where the edit target is Y (token 31): the input is
/// `<s> q1 q2 q3 Y` and the logits at position t predict token t + 1.
#[test]
fn a_model_answering_x_scores_zero_on_target_y_and_one_after_the_edit() {
    let vocab = 40;
    let input = [0u32, 20, 21, 22, 31];
    let labels = target_labels(input.len(), &[31]).unwrap();
    let pre = argmax_rows(&logits_with_argmax(&[20, 21, 22, 30, 1], vocab), vocab).unwrap();
    assert_eq!(teacher_forced(&pre, &labels).unwrap(), tokens(0, 1));
    let post = argmax_rows(&logits_with_argmax(&[20, 21, 22, 31, 1], vocab), vocab).unwrap();
    assert_eq!(
        teacher_forced(&post, &labels).unwrap().fraction(),
        Some(1.0)
    );
}

#[test]
fn multi_token_targets_score_the_fraction_of_right_tokens() {
    // "two large red circles" = [10, 11, 12, 13] after a 3-token prompt; "red" is predicted wrong.
    let labels = target_labels(7, &[10, 11, 12, 13]).unwrap();
    // predicted[t] is compared with labels[t + 1]: positions 2..=5 predict the target.
    let predicted = [5, 5, 10, 11, 99, 13, 0];
    let count = teacher_forced(&predicted, &labels).unwrap();
    assert_eq!(count, tokens(3, 4));
    assert_eq!(count.fraction(), Some(0.75));
    // The last position's prediction is never used.
    let mut other = predicted;
    other[6] = 13;
    assert_eq!(teacher_forced(&other, &labels).unwrap(), count);
}

#[test]
fn label_at_position_zero_is_skipped_like_easyedits_shift() {
    assert_eq!(
        teacher_forced(&[0, 6, 0], &[5, -100, 6]).unwrap(),
        tokens(1, 1)
    );
    assert_eq!(
        teacher_forced(&[0, 1], &[-100, -100]),
        Err(MetricError::NoTargetTokens)
    );
    assert!(matches!(
        teacher_forced(&[0, 1, 2], &[-100, 3]),
        Err(MetricError::LengthMismatch { .. })
    ));
}

#[test]
fn argmax_and_top_k_break_ties_to_the_lower_id_and_rank_nan_first() {
    let row = [0.1f32, 0.5, 0.3, 0.5];
    assert_eq!(argmax_rows(&row, 4).unwrap(), vec![1]);
    assert_eq!(top_k_rows(&row, 4, 2).unwrap().ids, vec![1, 3]);
    assert_eq!(top_k_rows(&row, 4, 3).unwrap().ids, vec![1, 3, 2]);
    assert_eq!(top_k_rows(&row, 4, 4).unwrap().ids, vec![1, 3, 2, 0]);
    assert_eq!(argmax_rows(&[0.1f32, f32::NAN, 9.0], 3).unwrap(), vec![1]);
    let two = [1.0f32, 0.0, 0.0, 0.0, 0.0, 2.0];
    assert_eq!(argmax_rows(&two, 3).unwrap(), vec![0, 2]);
    let top = top_k_rows(&two, 3, 2).unwrap();
    assert_eq!(top.positions(), 2);
    assert_eq!(top.row(1), Some(&[2u32, 0][..]));
    assert!(matches!(
        top_k_rows(&two, 3, 4),
        Err(MetricError::BadK { k: 4, vocab: 3 })
    ));
    assert!(matches!(
        top_k_rows(&two, 3, 0),
        Err(MetricError::BadK { k: 0, vocab: 3 })
    ));
    assert!(matches!(
        argmax_rows(&two, 4),
        Err(MetricError::RaggedLogits { .. })
    ));
}

#[test]
fn tensor_helpers_agree_with_slices() {
    let values: Vec<f32> = (0..24).map(|i| ((i * 7) % 11) as f32).collect();
    let t3 = Tensor::from_vec(values.clone(), (1, 4, 6), &Device::Cpu).unwrap();
    let t2 = Tensor::from_vec(values.clone(), (4, 6), &Device::Cpu).unwrap();
    let expected = argmax_rows(&values, 6).unwrap();
    assert_eq!(argmax_tensor(&t3).unwrap(), expected);
    assert_eq!(argmax_tensor(&t2).unwrap(), expected);
    assert_eq!(
        top_k_tensor(&t3, 3).unwrap(),
        top_k_rows(&values, 6, 3).unwrap()
    );
    let bad = Tensor::zeros((2, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(argmax_tensor(&bad), Err(MetricError::Tensor(_))));
}

#[test]
fn text_locality_is_top1_agreement_over_all_positions() {
    let pre = top1(&[5, 6, 7, 8]);
    let post = top1(&[5, 6, 9, 8]);
    let all = top_k_agreement(&pre, &post, LocalityPositions::All).unwrap();
    assert_eq!(all, agree(3, 4));
    assert_eq!(all.fraction(), Some(0.75));
    // Only the answer's positions: with a 2-token answer, positions 1 and 2 predict it.
    let answer = top_k_agreement(&pre, &post, LocalityPositions::Answer { answer_len: 2 }).unwrap();
    assert_eq!(answer, agree(1, 2));
}

#[test]
fn locality_right_aligns_sequences_of_different_length() {
    // The post-edit sequence has one extra leading position; EasyEdit keeps the last min(len).
    let pre = top1(&[5, 6, 7, 8]);
    let post = top1(&[1, 5, 6, 7, 8]);
    assert_eq!(
        top_k_agreement(&pre, &post, LocalityPositions::All).unwrap(),
        agree(4, 4)
    );
    assert_eq!(
        top_k_agreement(&post, &pre, LocalityPositions::Answer { answer_len: 1 }).unwrap(),
        agree(1, 1)
    );
}

#[test]
fn image_locality_compares_top_k_rank_by_rank_not_as_sets() {
    // Same set of three ids with two ranks swapped: 1 of 3 slots agree.
    let pre = TopK {
        k: 3,
        ids: vec![1, 2, 3],
    };
    let post = TopK {
        k: 3,
        ids: vec![2, 1, 3],
    };
    assert_eq!(
        top_k_agreement(&pre, &post, LocalityPositions::All).unwrap(),
        agree(1, 3)
    );
    // Top-10 from logits: an edit that lifts the 11th-best id above the 10th changes one slot.
    let vocab = 12;
    let pre_logits: Vec<f32> = (0..vocab).map(|i| (vocab - i) as f32).collect();
    let mut post_logits = pre_logits.clone();
    post_logits.swap(9, 10);
    assert_eq!(
        top_k_agreement(
            &top_k_rows(&pre_logits, vocab, 10).unwrap(),
            &top_k_rows(&post_logits, vocab, 10).unwrap(),
            LocalityPositions::All,
        )
        .unwrap(),
        agree(9, 10)
    );
    assert!(matches!(
        top_k_agreement(&pre, &top1(&[1]), LocalityPositions::All),
        Err(MetricError::LengthMismatch { .. })
    ));
    assert!(matches!(
        top_k_agreement(&pre, &post, LocalityPositions::Answer { answer_len: 1 }),
        Err(MetricError::TargetTooLong { .. })
    ));
}

#[test]
fn generations_are_normalised_before_exact_match() {
    assert_eq!(
        normalize_generation("  Two  Red\tcircles</s> junk"),
        "two red circles"
    );
    assert_eq!(normalize_generation("</s>"), "");
    assert!(generation_matches(" Forest</s>", "forest"));
    assert!(!generation_matches("forests", "forest"));
    assert!(!generation_matches("forest fire", "forest"));
}

#[test]
fn aggregation_averages_per_case_fractions_like_easyedit() {
    // Rel: case A 1/2, case B 1/1 → EasyEdit's mean of per-case scores is 0.75 (not pooled 2/3).
    let a = MetricSet::from_counts(
        tokens(1, 2),
        tokens(0, 2),
        tokens(2, 2),
        agree(1, 1),
        agree(7, 10),
    )
    .unwrap();
    let b = MetricSet::from_counts(
        tokens(1, 1),
        tokens(1, 1),
        tokens(0, 1),
        agree(0, 1),
        agree(10, 10),
    )
    .unwrap();
    assert_eq!(
        aggregate(&[a, b]).unwrap(),
        MetricSet {
            rel: 0.75,
            t_gen: 0.5,
            m_gen: 0.5,
            t_loc: 0.5,
            m_loc: 0.85
        }
    );
    assert_eq!(
        MetricSet::from_counts(
            tokens(0, 0),
            tokens(1, 1),
            tokens(1, 1),
            agree(1, 1),
            agree(1, 1)
        ),
        Err(MetricError::NoTargetTokens)
    );
    let g = aggregate(&[
        MetricSet::from_matches(true, false, true, true, false),
        MetricSet::from_matches(true, true, false, true, false),
    ])
    .unwrap();
    assert_eq!(
        (g.rel, g.t_gen, g.m_gen, g.t_loc, g.m_loc),
        (1.0, 0.5, 0.5, 1.0, 0.0)
    );
    assert_eq!(aggregate(&[]), Err(MetricError::NoCases));
    assert_eq!(mean(&[0.25, 0.75]), Some(0.5));
    assert_eq!(mean(&[]), None);
    // Pooled counts remain available for anyone who wants them.
    assert_eq!(tokens(1, 2) + tokens(1, 1), tokens(2, 3));
}
