//! The one rule that picks every arm's learning rate, so that the arms of an ablation edit
//! equally reliably and differ only in the component under test.
//!
//! The rule is the one the README's results use: **the smallest value on a ×3 grid (…, 0.3, 1,
//! 3, 10, 30, … times an anchor) at which Rel reaches the target on the tuning cases**. The
//! anchor is the arm's declared default (the paper's value or the shipped recipe's choice, which
//! lies on the paper's grid). The smallest passing value is the one that disturbs the model
//! least, so no arm is handed extra damage to its locality.
//!
//! The search walks the grid from the anchor: down while the value still passes, up while it
//! fails. That finds the smallest passing value in few runs when Rel grows with the rate, which
//! is what a step size does over a fixed number of single edits until it diverges. In
//! sequential editing Rel can fall as the rate grows (large steps overwrite earlier edits of the
//! sequence); when the walk up meets a divergence or a falling Rel, the search also walks down
//! from the anchor while Rel improves. Where Rel has several peaks that walk can stop at a
//! local one, so when it finds no passing value the search scans the whole grid within
//! [`MAX_STEPS`] of the anchor, smallest first, up to the smallest value that diverged: the
//! first value that passes is the smallest passing one. Only when none passes is the arm
//! unmatched, at the most reliable value. The trace in the output shows every value tried.

use serde::{Deserialize, Serialize};

/// Grid steps the search may walk from the anchor in either direction (a factor of 10⁴ up or
/// down at most).
pub const MAX_STEPS: i32 = 8;

/// The grid value `k` steps from `anchor`: `anchor · 10^⌊k/2⌋ · (3 if k is odd)`, so
/// k = −2, −1, 0, 1, 2 gives 0.1, 0.3, 1, 3, 10 times the anchor.
pub fn grid_value(anchor: f64, k: i32) -> f64 {
    let decade = 10f64.powi(k.div_euclid(2));
    let third = if k.rem_euclid(2) == 1 { 3.0 } else { 1.0 };
    anchor * decade * third
}

/// What one tuning value gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// The lowest Rel over the tuning files.
    Rel(f64),
    /// The optimisation ran away (mkedsl stops an edit that moves a weight by more than 100× its
    /// norm): the value fails, and larger values are not tried.
    Diverged,
}

/// One value tried.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub value: f64,
    /// The lowest Rel over the tuning files (0 when diverged).
    pub rel: f64,
    #[serde(default)]
    pub diverged: bool,
}

/// The rule's outcome for one arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub value: f64,
    /// Whether the chosen value reached the target; if none did within [`MAX_STEPS`], the value
    /// with the highest tuning Rel is chosen and the arm is marked unmatched.
    pub matched: bool,
    /// Every value tried, in the order tried.
    pub trials: Vec<Trial>,
}

#[derive(Clone, Copy, PartialEq)]
enum Verdict {
    Pass,
    Fail,
    Diverged,
}

/// Applies the rule: `rel_at(value)` runs the arm on the tuning cases at `value`.
pub fn choose<E>(
    anchor: f64,
    target: f64,
    mut rel_at: impl FnMut(f64) -> Result<Outcome, E>,
) -> Result<Choice, E> {
    let mut trials = Vec::new();
    let mut try_at = |k: i32, trials: &mut Vec<Trial>| -> Result<(Verdict, f64), E> {
        let value = grid_value(anchor, k);
        let (rel, verdict) = match rel_at(value)? {
            Outcome::Rel(rel) if rel >= target => (rel, Verdict::Pass),
            Outcome::Rel(rel) => (rel, Verdict::Fail),
            Outcome::Diverged => (0.0, Verdict::Diverged),
        };
        trials.push(Trial {
            value,
            rel,
            diverged: verdict == Verdict::Diverged,
        });
        Ok((verdict, rel))
    };
    let matched = |k: i32, trials: Vec<Trial>| Choice {
        value: grid_value(anchor, k),
        matched: true,
        trials,
    };
    let mut k = 0;
    let (mut verdict, mut rel) = try_at(0, &mut trials)?;
    // From a diverging anchor, step down to the first value that does not diverge.
    while verdict == Verdict::Diverged && k > -MAX_STEPS {
        k -= 1;
        (verdict, rel) = try_at(k, &mut trials)?;
    }
    // Whether more rate stopped helping (a divergence, or Rel falling as the rate grows, as it
    // does in sequential editing when large steps overwrite earlier edits): then a smaller
    // rate may pass, and the walk continues below.
    let mut look_below = k < 0;
    if verdict == Verdict::Fail && k == 0 {
        let (mut up, mut previous) = (0, rel);
        while up < MAX_STEPS {
            up += 1;
            match try_at(up, &mut trials)? {
                (Verdict::Pass, _) => return Ok(matched(up, trials)),
                (Verdict::Fail, r) if r >= previous => previous = r,
                _ => {
                    look_below = true;
                    break;
                }
            }
        }
    }
    let mut passed = verdict == Verdict::Pass;
    if look_below && !passed {
        // Down from the lowest value tried that did not diverge, while Rel improves.
        let mut previous = rel;
        while k > -MAX_STEPS {
            match try_at(k - 1, &mut trials)? {
                (Verdict::Fail, r) if r > previous => previous = r,
                (Verdict::Pass, _) => {
                    passed = true;
                    k -= 1;
                    break;
                }
                _ => break,
            }
            k -= 1;
        }
    }
    if passed {
        // From the value that passed, down to the smallest that still passes.
        while k > -MAX_STEPS && try_at(k - 1, &mut trials)?.0 == Verdict::Pass {
            k -= 1;
        }
        return Ok(matched(k, trials));
    }
    // The walk found no passing value, but Rel may have another peak it did not reach: every
    // grid value not yet tried, smallest first, below the smallest that diverged.
    let diverged_from = trials
        .iter()
        .filter(|t| t.diverged)
        .map(|t| t.value)
        .fold(f64::INFINITY, f64::min);
    for k in -MAX_STEPS..=MAX_STEPS {
        let value = grid_value(anchor, k);
        if value >= diverged_from {
            break;
        }
        if trials.iter().any(|t| t.value == value) {
            continue;
        }
        match try_at(k, &mut trials)?.0 {
            Verdict::Pass => return Ok(matched(k, trials)),
            Verdict::Diverged => break,
            Verdict::Fail => {}
        }
    }
    // Nothing reached the target: the most reliable value that did not diverge, the smaller on
    // a tie (the smallest value tried if every one diverged).
    let best = trials
        .iter()
        .filter(|t| !t.diverged)
        .max_by(|a, b| a.rel.total_cmp(&b.rel).then(b.value.total_cmp(&a.value)))
        .or_else(|| trials.iter().min_by(|a, b| a.value.total_cmp(&b.value)))
        .map_or(anchor, |t| t.value);
    Ok(Choice {
        value: best,
        matched: false,
        trials,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn the_grid_is_one_three_ten_around_the_anchor() {
        let values: Vec<f64> = (-3..=3).map(|k| grid_value(5e-4, k)).collect();
        let expected = [1.5e-5, 5e-5, 1.5e-4, 5e-4, 1.5e-3, 5e-3, 1.5e-2];
        for (v, e) in values.iter().zip(expected) {
            assert!(close(*v, e), "{values:?}");
        }
    }

    /// Rel as a step function of the rate: reaches the target from `threshold` on.
    fn step(threshold: f64) -> impl FnMut(f64) -> Result<Outcome, Infallible> {
        move |v| {
            Ok(Outcome::Rel(if v >= threshold * (1.0 - 1e-9) {
                0.95
            } else {
                0.5
            }))
        }
    }

    #[test]
    fn a_passing_anchor_walks_down_to_the_smallest_passing_value() {
        let c = choose(1.0, 0.9, step(0.03)).unwrap();
        assert!(c.matched);
        assert!(close(c.value, 0.03), "{c:?}");
        // 1 passes, then 0.3, 0.1, 0.03 pass and 0.01 fails.
        assert_eq!(c.trials.len(), 5);
    }

    #[test]
    fn a_failing_anchor_walks_up_to_the_first_passing_value() {
        let c = choose(0.01, 0.9, step(10.0)).unwrap();
        assert!(c.matched);
        assert!(close(c.value, 10.0), "{c:?}");
        assert!(close(c.trials.last().unwrap().value, 10.0));
        assert!(c.trials.iter().all(|t| t.value <= 10.0 + 1e-9));
    }

    #[test]
    fn an_unreachable_target_takes_the_most_reliable_value_and_says_so() {
        let mut rel = |v: f64| -> Result<Outcome, Infallible> {
            Ok(Outcome::Rel(if v > 0.5 { 0.7 } else { 0.2 }))
        };
        let c = choose(0.1, 0.9, &mut rel).unwrap();
        assert!(!c.matched);
        // 0.1, 0.3 fail at 0.2; 1.0 is the first (smallest) value reaching 0.7. The walk goes
        // up to the last step, then the scan tries every value below the anchor.
        assert!(close(c.value, 1.0), "{c:?}");
        assert_eq!(c.trials.len(), 2 * MAX_STEPS as usize + 1);
    }

    #[test]
    fn divergence_fails_a_value_and_stops_the_walk_up() {
        // Rel grows with the rate but everything from 1.0 on diverges; 0.3 reaches only 0.8.
        let mut rel = |v: f64| -> Result<Outcome, Infallible> {
            Ok(if v >= 1.0 - 1e-9 {
                Outcome::Diverged
            } else {
                Outcome::Rel(if v > 0.2 { 0.8 } else { 0.1 })
            })
        };
        let from_below = choose(0.1, 0.9, &mut rel).unwrap();
        assert!(!from_below.matched);
        assert!(close(from_below.value, 0.3), "{from_below:?}");
        assert_eq!(
            from_below.trials.len(),
            4 + MAX_STEPS as usize - 1,
            "0.1, 0.3, then 1.0 diverges; below the anchor 0.03 is no better and the walk stops; \
             the scan tries the other values below 0.03 (none above: 1.0 diverged)"
        );
        assert!(from_below.trials.iter().all(|t| t.value <= 1.0 + 1e-9));
        // Anchored at 3 the grid is …, 0.3, 0.9, 3: 3 diverges, 0.9 fails, 0.3 is no better;
        // of the two equally reliable values the smaller is chosen.
        let from_above = choose(3.0, 0.9, &mut rel).unwrap();
        assert!(!from_above.matched);
        assert!(close(from_above.value, 0.3), "{from_above:?}");
        assert_eq!(from_above.trials[..3].len(), 3);
        assert!(from_above.trials[3..].iter().all(|t| t.value < 0.3));
        // A diverging anchor steps down to the first value that passes, then keeps walking.
        let mut fine_below = |v: f64| -> Result<Outcome, Infallible> {
            Ok(if v > 0.5 {
                Outcome::Diverged
            } else {
                Outcome::Rel(0.95)
            })
        };
        let c = choose(1.0, 0.9, &mut fine_below).unwrap();
        assert!(c.matched);
        assert!(close(c.value, grid_value(1.0, -MAX_STEPS)), "{c:?}");
    }

    #[test]
    fn when_more_rate_hurts_the_search_walks_below_the_anchor() {
        // Sequential editing: Rel peaks at small rates and falls as the rate grows.
        let mut rel = |v: f64| -> Result<Outcome, Infallible> {
            Ok(Outcome::Rel(match v {
                v if v < 0.002 => 0.5,
                v if v < 0.011 => 0.95,
                v if v < 0.031 => 0.7,
                v if v < 0.11 => 0.6,
                _ => 0.4,
            }))
        };
        let c = choose(0.1, 0.9, &mut rel).unwrap();
        assert!(c.matched, "{c:?}");
        // 0.1 fails, 0.3 is worse, so below: 0.03 better, 0.01 and 0.003 pass, 0.001 fails.
        assert!(close(c.value, 0.003), "{c:?}");
        let tried: Vec<f64> = c.trials.iter().map(|t| t.value).collect();
        assert_eq!(tried.len(), 6, "{tried:?}");
        // A Rel that only grows never sends the search below a failing anchor.
        let c = choose(0.01, 0.9, step(10.0)).unwrap();
        assert!(c.trials.iter().all(|t| t.value >= 0.01 - 1e-12), "{c:?}");
    }

    #[test]
    fn a_passing_peak_the_walk_cannot_reach_is_found_by_the_scan() {
        // Sequential editing with two peaks (LPEdit without its projection, K = 10): small
        // steps keep every edit, mid-sized ones are worse than the anchor's, large ones worse
        // still. The walk stops at the anchor's local peak; the scan finds 1e-3.
        let mut rel = |v: f64| -> Result<Outcome, Infallible> {
            Ok(Outcome::Rel(match v {
                v if v < 5e-4 => 0.3,
                v if v < 2e-3 => 1.0,
                v if v < 0.05 => 0.5,
                v if v < 0.2 => 0.69,
                _ => 0.4,
            }))
        };
        let c = choose(0.1, 0.9, &mut rel).unwrap();
        assert!(c.matched, "{c:?}");
        assert!(close(c.value, 1e-3), "{c:?}");
        // The walk: 0.1, 0.3 (worse), 0.03 (worse); the scan from 1e-5: 1e-5, 3e-5, 1e-4,
        // 3e-4 fail, 1e-3 passes.
        let tried: Vec<f64> = c.trials.iter().map(|t| t.value).collect();
        assert_eq!(tried.len(), 8, "{tried:?}");
    }
}
