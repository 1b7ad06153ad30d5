//! Seeded randomness of a run: LoRA initialisation, perturbation windows and noise, adversarial
//! starts, preserve-set sampling.
//!
//! Every draw comes from a named stream of the recipe's seed ([`stream`]), so adding a new use of
//! randomness never shifts an existing one, and a case's perturbations depend on the seed and the
//! case, not on how many cases ran before it. The generator is the world's SplitMix64, whose
//! output does not change with the `rand` crate's version.

use crate::world::rng::WorldRng;

/// A generator with the continuous draws the executor needs.
#[derive(Debug, Clone)]
pub struct Rng(WorldRng);

/// The independent stream `(seed, label, index)`.
pub fn stream(seed: u64, label: &str, index: u64) -> Rng {
    Rng(WorldRng::derive(seed, label, index))
}

impl Rng {
    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform(); // (0, 1]: the logarithm stays finite
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Uniform integer in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0.below(n)
    }

    /// Fisher–Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        self.0.shuffle(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_reproducible_and_roughly_standard() {
        let a: Vec<f64> = {
            let mut r = stream(7, "noise", 3);
            (0..5).map(|_| r.normal()).collect()
        };
        let mut r = stream(7, "noise", 3);
        assert_eq!(a, (0..5).map(|_| r.normal()).collect::<Vec<_>>());
        let mut r = stream(7, "noise", 4);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| r.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03, "{mean}");
        assert!((var - 1.0).abs() < 0.05, "{var}");
        let u: Vec<f64> = (0..1000).map(|_| r.uniform()).collect();
        assert!(u.iter().all(|&x| (0.0..1.0).contains(&x)));
    }
}
