//! The learning-rate schedule: linear warmup, then cosine decay to a floor.
//!
//! Warmup keeps Adam's first, badly estimated steps small while the second-moment estimates
//! settle; the cosine tail lets the last few hundred steps polish rare facts without the large
//! updates that would knock well-learned ones loose.

use serde::{Deserialize, Serialize};

/// Linear warmup from 0 to `peak` over `warmup` steps, then cosine decay to `peak · floor` at
/// step `total`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    pub peak: f64,
    pub warmup: usize,
    pub total: usize,
    /// Final learning rate as a fraction of the peak.
    pub floor: f64,
}

impl LrSchedule {
    /// The learning rate of step `step` (0-based).
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * (step + 1) as f64 / self.warmup as f64;
        }
        let span = self.total.saturating_sub(self.warmup).max(1);
        let progress = ((step - self.warmup) as f64 / span as f64).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        self.peak * (self.floor + (1.0 - self.floor) * cosine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_linearly_then_decays_by_cosine_to_the_floor() {
        let s = LrSchedule {
            peak: 1e-3,
            warmup: 10,
            total: 110,
            floor: 0.1,
        };
        assert!((s.at(0) - 1e-4).abs() < 1e-15);
        assert!((s.at(4) - 5e-4).abs() < 1e-15);
        assert!((s.at(10) - 1e-3).abs() < 1e-15);
        // Halfway through the decay the cosine term is 1/2: 0.1 + 0.9 / 2 = 0.55 of the peak.
        assert!((s.at(60) - 0.55e-3).abs() < 1e-12);
        assert!((s.at(110) - 1e-4).abs() < 1e-15);
        assert!((s.at(500) - 1e-4).abs() < 1e-15);
        assert!(s.at(30) > s.at(31));
    }
}
