//! Sums over a tensor's values in f64, read in place where the tensor is a contiguous CPU f32 one.
//!
//! A train step checks every trained tensor after its update (a finite update, a bounded
//! distance from the start). Through tensor ops each check converted the tensor to f64, squared
//! it and summed, three allocations of the tensor's size per check: on LoRA's four factors that
//! was 23 % of an edit's time (perf, `recipes/lora.edit`). Read in place, a check is one pass.

use candle_core::{CpuStorage, DType, Storage, Tensor};

use crate::exec::error::Result;

/// `f` over the values of a contiguous CPU f32 tensor, read in place; `None` for any other.
fn in_place<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Option<R> {
    let (storage, layout) = t.storage_and_layout();
    match (&*storage, layout.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(v)), Some((start, end))) => Some(f(&v[start..end])),
        _ => None,
    }
}

/// `Σ x` in f64.
pub fn sum(t: &Tensor) -> Result<f64> {
    if let Some(s) = in_place(t, |v| v.iter().map(|&x| f64::from(x)).sum()) {
        return Ok(s);
    }
    Ok(t.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?)
}

/// `‖a − b‖` (Frobenius) in f64, for tensors of one shape.
pub fn distance(a: &Tensor, b: &Tensor) -> Result<f64> {
    if a.shape() == b.shape() {
        let squares = in_place(a, |xa| {
            in_place(b, |xb| {
                xa.iter()
                    .zip(xb)
                    .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
                    .sum::<f64>()
            })
        });
        if let Some(Some(s)) = squares {
            return Ok(s.sqrt());
        }
    }
    let d = (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?;
    Ok(d.sqr()?.sum_all()?.sqrt()?.to_scalar::<f64>()?)
}

/// `‖a‖` (Frobenius) in f64.
pub fn norm(t: &Tensor) -> Result<f64> {
    if let Some(s) = in_place(t, |v| v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>()) {
        return Ok(s.sqrt());
    }
    Ok(t.to_dtype(DType::F64)?
        .sqr()?
        .sum_all()?
        .sqrt()?
        .to_scalar::<f64>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn in_place_sums_equal_the_f64_tensor_ops() {
        let dev = Device::Cpu;
        let a = Tensor::new(&[[3f32, -4.0], [1.5, 0.25]], &dev).unwrap();
        let b = Tensor::new(&[[1f32, 2.0], [-0.5, 0.25]], &dev).unwrap();
        // (2² + 6² + 2² + 0²)^½ = 44^½; Σa = 0.75; ‖a‖ = (9 + 16 + 2.25 + 0.0625)^½.
        assert!((distance(&a, &b).unwrap() - 44f64.sqrt()).abs() < 1e-12);
        assert!((sum(&a).unwrap() - 0.75).abs() < 1e-12);
        assert!((norm(&a).unwrap() - 27.3125f64.sqrt()).abs() < 1e-12);
        // A transposed view and f64 go through the tensor ops, with the same results.
        let (at, bt) = (a.t().unwrap(), b.t().unwrap());
        assert!(!at.is_contiguous());
        assert!((distance(&at, &bt).unwrap() - 44f64.sqrt()).abs() < 1e-12);
        let a64 = a.to_dtype(DType::F64).unwrap();
        assert!(
            (distance(&a64, &b.to_dtype(DType::F64).unwrap()).unwrap() - 44f64.sqrt()).abs()
                < 1e-12
        );
        let inf = Tensor::new(&[f32::INFINITY, 1.0], &dev).unwrap();
        assert!(!sum(&inf).unwrap().is_finite());
    }
}
