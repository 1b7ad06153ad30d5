//! Projected image features kept by image content, so that an evaluation runs the vision tower
//! once per distinct image instead of once per prompt that shows it.
//!
//! Why this is sound: an image's features depend only on its preprocessed pixels and on the
//! vision tower's and projector's weights. Edits never reach those weights — every site a recipe
//! can name is in the decoder (`embed.vision` is the decoder's input, after the projector), weight
//! replacement is for decoder linears only, and adapters and hooks act in the decoder pass — but
//! the cache does not rely on that: it remembers which weight tensors (by candle tensor id) its
//! features came from and empties itself when the model shows it others (a different model, a
//! vision tower rebuilt from a `VarMap`). Keys are the SHA-256 of the pixel values, so two files
//! holding the same picture share one entry and a changed file never hits a stale one.

use std::collections::HashMap;

use candle_core::{DType, Tensor, TensorId};
use sha2::{Digest, Sha256};

use crate::model::error::Result;

/// Features of images already seen, `(image_tokens, hidden)` each, keyed by pixel content.
#[derive(Debug, Clone, Default)]
pub struct FeatureCache {
    /// The vision and projector tensors the cached features were computed with.
    weights: Vec<TensorId>,
    features: HashMap<[u8; 32], Tensor>,
    /// Images whose features came from the cache.
    pub hits: usize,
    /// Images that went through the vision tower.
    pub misses: usize,
}

impl FeatureCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Distinct images held.
    pub fn len(&self) -> usize {
        self.features.len()
    }

    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// Features of every image of `pixels` `(N, C, H, W)`, `(N, tokens, hidden)`, computing
    /// with `compute` (one call, on the images not held yet, each distinct image once) only
    /// what the cache does not hold. `weights` identifies the tensors `compute` uses.
    pub fn features(
        &mut self,
        weights: Vec<TensorId>,
        pixels: &Tensor,
        compute: impl FnOnce(&Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        if weights != self.weights {
            self.features.clear();
            self.weights = weights;
        }
        let n = pixels.dim(0)?;
        let mut keys = Vec::with_capacity(n);
        let mut missing: Vec<usize> = Vec::new();
        for i in 0..n {
            let key = content_key(&pixels.narrow(0, i, 1)?)?;
            let pending = missing.iter().any(|&j| keys[j] == key);
            if !self.features.contains_key(&key) && !pending {
                missing.push(i);
            }
            keys.push(key);
        }
        if !missing.is_empty() {
            let index: Vec<u32> = missing.iter().map(|&i| i as u32).collect();
            let index = Tensor::from_vec(index, missing.len(), pixels.device())?;
            let computed = compute(&pixels.index_select(&index, 0)?.contiguous()?)?;
            for (row, &i) in missing.iter().enumerate() {
                self.features.insert(keys[i], computed.get(row)?);
            }
        }
        self.misses += missing.len();
        self.hits += n - missing.len();
        let rows = keys
            .iter()
            .map(|k| {
                self.features.get(k).cloned().ok_or_else(|| {
                    crate::model::error::ModelError::Tensor(candle_core::Error::Msg(
                        "an image's features were neither cached nor computed".into(),
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::stack(&rows, 0)?)
    }
}

/// SHA-256 of one image's pixel values (as f32, with its shape).
fn content_key(image: &Tensor) -> Result<[u8; 32]> {
    let values = image
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut h = Sha256::new();
    for d in image.dims() {
        h.update((*d as u64).to_le_bytes());
    }
    for v in values {
        h.update(v.to_le_bytes());
    }
    Ok(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn each_distinct_image_is_computed_once_and_a_new_model_empties_the_cache() {
        let dev = Device::Cpu;
        let a = Tensor::full(1f32, (1, 3, 2, 2), &dev).unwrap();
        let b = Tensor::full(2f32, (1, 3, 2, 2), &dev).unwrap();
        let pixels = Tensor::cat(&[&a, &b, &a], 0).unwrap();
        // "Features": the per-image pixel sum, two tokens of width one.
        let calls = std::cell::Cell::new(0);
        let compute = |p: &Tensor| -> Result<Tensor> {
            calls.set(calls.get() + p.dim(0)?);
            let s = p.flatten_from(1)?.sum_keepdim(1)?;
            Ok(Tensor::stack(&[&s, &s], 1)?)
        };
        let w = Tensor::zeros(1, DType::F32, &dev).unwrap();
        let mut cache = FeatureCache::new();
        let f = cache.features(vec![w.id()], &pixels, compute).unwrap();
        assert_eq!(f.dims(), &[3, 2, 1]);
        let sums: Vec<f32> = f.flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!(sums, vec![12.0, 12.0, 24.0, 24.0, 12.0, 12.0]);
        assert_eq!(
            (calls.get(), cache.misses, cache.hits, cache.len()),
            (2, 2, 1, 2)
        );
        let again = cache.features(vec![w.id()], &pixels, compute).unwrap();
        assert_eq!(again.flatten_all().unwrap().to_vec1::<f32>().unwrap(), sums);
        assert_eq!((calls.get(), cache.hits), (2, 4));
        let other = Tensor::zeros(1, DType::F32, &dev).unwrap();
        cache.features(vec![other.id()], &pixels, compute).unwrap();
        assert_eq!(calls.get(), 4, "new weights recompute");
    }
}
