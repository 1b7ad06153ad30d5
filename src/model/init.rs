//! A freshly initialised, fully trainable model (issue 4 trains one from scratch).
//!
//! Every tensor of the checkpoint layout becomes a `Var` in a `VarMap`, drawn from a seeded
//! generator (candle's CPU RNG cannot be seeded), so the same seed gives the same model on every
//! machine. Matrices and embeddings follow Hugging Face's `initializer_range` normal init,
//! normalisation scales start at one and biases at zero.

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};

use crate::model::config::LlavaConfig;
use crate::model::error::{ModelError, Result};
use crate::model::llava::LlavaModel;
use crate::model::tensors::{expected_tensors, Role};

/// How to draw a fresh model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FreshInit {
    pub seed: u64,
    /// Standard deviation of matrices and embeddings (Hugging Face's `initializer_range`).
    pub std: f64,
}

impl Default for FreshInit {
    fn default() -> Self {
        Self { seed: 0, std: 0.02 }
    }
}

/// `n` draws from N(0, std²) by Box–Muller over the seeded generator.
pub fn normal_samples(rng: &mut impl Rng, n: usize, std: f64) -> Vec<f64> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let theta = 2.0 * std::f64::consts::PI * u2;
        out.push(r * theta.cos());
        out.push(r * theta.sin());
    }
    out.truncate(n);
    out
}

impl LlavaModel {
    /// A model with fresh weights, all trainable, and the `VarMap` holding them (give its
    /// `all_vars()` to an optimiser).
    pub fn fresh(
        config: LlavaConfig,
        init: FreshInit,
        dtype: DType,
        device: &Device,
    ) -> Result<(Self, VarMap)> {
        let varmap = VarMap::new();
        let mut rng = rand::rngs::StdRng::seed_from_u64(init.seed);
        {
            let mut vars = varmap.data().lock().map_err(|_| {
                ModelError::Tensor(candle_core::Error::Msg(
                    "the VarMap lock is poisoned".into(),
                ))
            })?;
            for spec in expected_tensors(&config) {
                let n: usize = spec.shape.iter().product();
                let values = match spec.role {
                    Role::Weight => normal_samples(&mut rng, n, init.std),
                    Role::NormScale => vec![1.0; n],
                    Role::Bias => vec![0.0; n],
                };
                let t = Tensor::from_vec(values, spec.shape.as_slice(), device)?.to_dtype(dtype)?;
                vars.insert(spec.name, Var::from_tensor(&t)?);
            }
        }
        let vb = VarBuilder::from_varmap(&varmap, dtype, device);
        let model = Self::from_var_builder(config, vb)?;
        Ok((model, varmap))
    }
}
