//! AdamW with decoupled weight decay, global-norm gradient clipping and a savable state.
//!
//! candle-nn has an AdamW, but its moments are private: a checkpoint could not hold them, and a
//! resumed run would restart Adam's estimates from zero (a large, destabilising first update).
//! Decay applies only to matrices (weights and embeddings), not to norm scales and biases, as
//! in most transformer training recipes.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use super::error::{Result, TrainError};

/// Hyper-parameters of [`AdamW`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Gradients are scaled down so their global L2 norm is at most this.
    pub clip_norm: Option<f64>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-8,
            weight_decay: 0.01,
            clip_norm: Some(1.0),
        }
    }
}

struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
    decay: bool,
}

/// What one optimiser step saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Parameters that received no gradient this step (e.g. vision layers past the feature layer).
    pub skipped: usize,
}

/// The optimiser over every variable of a `VarMap`, in name order.
pub struct AdamW {
    slots: Vec<Slot>,
    steps: usize,
    config: AdamWConfig,
}

const STEP_KEY: &str = "adamw.steps";

/// Every variable of `varmap` with its name.
pub fn named_vars(varmap: &VarMap) -> Result<Vec<(String, Var)>> {
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| candle_core::Error::Msg("the VarMap lock is poisoned".into()))?;
    Ok(vars.iter().map(|(n, v)| (n.clone(), v.clone())).collect())
}

impl AdamW {
    pub fn new(varmap: &VarMap, config: AdamWConfig) -> Result<Self> {
        Self::over(named_vars(varmap)?, config)
    }

    /// The optimiser over the given named variables (kept in name order).
    pub fn over(mut named: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = named
            .into_iter()
            .map(|(name, var)| {
                let m = var.zeros_like()?;
                let v = var.zeros_like()?;
                let decay = var.rank() >= 2;
                Ok(Slot {
                    name,
                    var,
                    m,
                    v,
                    decay,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            slots,
            steps: 0,
            config,
        })
    }

    /// Optimiser steps taken so far (Adam's bias correction depends on it).
    pub fn steps(&self) -> usize {
        self.steps
    }

    /// Applies one update with learning rate `lr`.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> Result<StepStats> {
        let c = self.config;
        let mut sq = 0f64;
        let mut skipped = 0;
        for slot in &self.slots {
            match grads.get(slot.var.as_tensor()) {
                Some(g) => {
                    sq += g
                        .sqr()?
                        .sum_all()?
                        .to_dtype(DType::F64)?
                        .to_scalar::<f64>()?
                }
                None => skipped += 1,
            }
        }
        let grad_norm = sq.sqrt();
        let scale = match c.clip_norm {
            Some(max) if grad_norm > max => max / (grad_norm + 1e-12),
            _ => 1.0,
        };
        self.steps += 1;
        let t = self.steps as i32;
        let correct1 = 1.0 - c.beta1.powi(t);
        let correct2 = 1.0 - c.beta2.powi(t);
        for slot in &mut self.slots {
            let Some(g) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            let g = (g.detach() * scale)?;
            slot.m = ((&slot.m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
            slot.v = ((&slot.v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let m_hat = (&slot.m / correct1)?;
            let v_hat = (&slot.v / correct2)?;
            let update = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
            let theta = slot.var.as_tensor().detach();
            let theta = if slot.decay {
                (theta * (1.0 - lr * c.weight_decay))?
            } else {
                theta
            };
            slot.var.set(&(theta - (update * lr)?)?)?;
        }
        Ok(StepStats { grad_norm, skipped })
    }

    /// Saves the moments and the step count as a safetensors file (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let fail = |reason: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        for slot in &self.slots {
            tensors.insert(format!("m.{}", slot.name), slot.m.clone());
            tensors.insert(format!("v.{}", slot.name), slot.v.clone());
        }
        tensors.insert(
            STEP_KEY.into(),
            Tensor::new(&[self.steps as u32], &Device::Cpu)?,
        );
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| fail(e.to_string()))?;
        candle_core::safetensors::save(&tensors, tmp.path()).map_err(|e| fail(e.to_string()))?;
        tmp.persist(path).map_err(|e| fail(e.to_string()))?;
        Ok(())
    }

    /// Restores moments and step count saved by [`AdamW::save`] for the same variables.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let fail = |reason: String| TrainError::Checkpoint {
            path: path.to_path_buf(),
            reason,
        };
        let device = self
            .slots
            .first()
            .map(|s| s.var.device().clone())
            .unwrap_or(Device::Cpu);
        let mut tensors =
            candle_core::safetensors::load(path, &device).map_err(|e| fail(e.to_string()))?;
        let steps = tensors
            .remove(STEP_KEY)
            .ok_or_else(|| fail(format!("no `{STEP_KEY}` entry")))?
            .to_vec1::<u32>()?;
        for slot in &mut self.slots {
            for (key, dest) in [("m", &mut slot.m), ("v", &mut slot.v)] {
                let name = format!("{key}.{}", slot.name);
                let t = tensors
                    .remove(&name)
                    .ok_or_else(|| fail(format!("no moment `{name}`")))?;
                if t.shape() != slot.var.shape() {
                    return Err(fail(format!(
                        "moment `{name}` has shape {:?}, the parameter {:?}",
                        t.dims(),
                        slot.var.dims()
                    )));
                }
                *dest = t.to_dtype(slot.var.dtype())?;
            }
        }
        self.steps = steps.first().copied().unwrap_or(0) as usize;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_var(value: &[f64]) -> (VarMap, Var) {
        let varmap = VarMap::new();
        let var = Var::from_tensor(&Tensor::new(value, &Device::Cpu).unwrap()).unwrap();
        varmap
            .data()
            .lock()
            .unwrap()
            .insert("w".into(), var.clone());
        (varmap, var)
    }

    #[test]
    fn two_steps_match_the_adam_formulas() {
        // A rank-1 tensor: no decay. Loss = 3·w₀ − 0.5·w₁, constant gradient (3, −0.5).
        let (varmap, var) = one_var(&[1.0, 2.0]);
        let config = AdamWConfig {
            clip_norm: None,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(&varmap, config).unwrap();
        let coef = Tensor::new(&[3.0f64, -0.5], &Device::Cpu).unwrap();
        for _ in 0..2 {
            let loss = (var.as_tensor() * &coef).unwrap().sum_all().unwrap();
            let grads = loss.backward().unwrap();
            let stats = opt.step(&grads, 0.1).unwrap();
            assert!((stats.grad_norm - (9.25f64).sqrt()).abs() < 1e-12);
        }
        // With a constant gradient g, m̂ = g and v̂ = g² at every step: each update is
        // lr · g / (|g| + eps) ≈ lr · sign(g).
        let w = var.as_tensor().to_vec1::<f64>().unwrap();
        let step = |g: f64| 0.1 * g / (g.abs() + 1e-8);
        assert!((w[0] - (1.0 - 2.0 * step(3.0))).abs() < 1e-12, "{w:?}");
        assert!((w[1] - (2.0 - 2.0 * step(-0.5))).abs() < 1e-12, "{w:?}");
        assert_eq!(opt.steps(), 2);
    }

    #[test]
    fn clipping_scales_the_gradient_and_decay_shrinks_matrices() {
        let varmap = VarMap::new();
        let var = Var::from_tensor(&Tensor::new(&[[2.0f64]], &Device::Cpu).unwrap()).unwrap();
        varmap
            .data()
            .lock()
            .unwrap()
            .insert("m".into(), var.clone());
        let config = AdamWConfig {
            weight_decay: 0.5,
            clip_norm: Some(1.0),
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(&varmap, config).unwrap();
        let loss = (var.as_tensor() * 10.0).unwrap().sum_all().unwrap();
        let stats = opt.step(&loss.backward().unwrap(), 0.1).unwrap();
        assert!((stats.grad_norm - 10.0).abs() < 1e-12);
        // Clipped g = 1: m̂ = 1, v̂ = 1 → update 1/(1+eps). θ = 2·(1 − 0.1·0.5) − 0.1·update.
        let w = var.as_tensor().to_vec2::<f64>().unwrap()[0][0];
        assert!((w - (2.0 * 0.95 - 0.1 / (1.0 + 1e-8))).abs() < 1e-12, "{w}");
    }

    #[test]
    fn state_round_trips_through_a_file() {
        let (varmap, var) = one_var(&[1.0, -1.0]);
        let mut opt = AdamW::new(&varmap, AdamWConfig::default()).unwrap();
        let loss = var.as_tensor().sqr().unwrap().sum_all().unwrap();
        opt.step(&loss.backward().unwrap(), 0.01).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optimizer.safetensors");
        opt.save(&path).unwrap();

        let mut restored = AdamW::new(&varmap, AdamWConfig::default()).unwrap();
        restored.load(&path).unwrap();
        assert_eq!(restored.steps(), 1);
        let m = |o: &AdamW| o.slots[0].m.to_vec1::<f64>().unwrap();
        assert_eq!(m(&restored), m(&opt));
        let (other, _) = one_var(&[1.0, 2.0, 3.0]);
        let mut wrong = AdamW::new(&other, AdamWConfig::default()).unwrap();
        assert!(matches!(
            wrong.load(&path),
            Err(TrainError::Checkpoint { .. })
        ));
    }
}
