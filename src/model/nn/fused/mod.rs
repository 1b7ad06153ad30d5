//! The elementwise work between the model's products as single CPU f32 passes, each with its own
//! backward.
//!
//! Composed from candle's primitives, Llama's `silu(gate) · up` is 2 passes forward and 9
//! backward, RMSNorm 6 and ~14, softmax 5 and ~10. Each pass allocates its output, and each
//! backward node also zero-fills and adds into a gradient buffer. On the embedded model, whose
//! products are small, that churn was most of a LoRA step (perf: SiLU alone was a fifth of the
//! training time). Fused, each is one pass forward and one backward.
//!
//! They apply to contiguous CPU f32 tensors, which is what the model computes in on the CPU
//! (half precision is widened to f32 around norms and softmax); anything else — CUDA, f64 in the
//! finite-difference tests, a strided view — takes the composed path, which every fused op is
//! tested against.

pub mod rms_norm;
pub mod rope;
pub mod silu_gate;
pub mod simd;
pub mod softmax;

use candle_core::{CpuStorage, DType, Layout, Result, Storage, Tensor};

/// Whether the fused kernels take these operands: all contiguous CPU f32.
fn applies(operands: &[&Tensor]) -> bool {
    operands
        .iter()
        .all(|t| t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous())
}

/// A CPU storage's values as the one contiguous f32 slice the layout covers.
fn values<'a>(op: &str, storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((start, end))) => Ok(&v[start..end]),
        _ => candle_core::bail!("{op}: the fused kernel takes contiguous f32 input"),
    }
}

/// `f` over the values of CPU f32 tensors (each made contiguous first), for a backward pass:
/// gradients arrive in whatever layout the op after this one left them.
fn with_values<R, const N: usize>(
    op: &str,
    tensors: [&Tensor; N],
    f: impl FnOnce([&[f32]; N]) -> R,
) -> Result<R> {
    let tensors = tensors
        .iter()
        .map(|t| t.contiguous())
        .collect::<Result<Vec<_>>>()?;
    let guards: Vec<_> = tensors.iter().map(|t| t.storage_and_layout()).collect();
    let slices = guards
        .iter()
        .map(|(storage, layout)| match &**storage {
            Storage::Cpu(cpu) => values(op, cpu, layout),
            _ => candle_core::bail!("{op}: the fused kernel runs on the CPU"),
        })
        .collect::<Result<Vec<_>>>()?;
    match <[&[f32]; N]>::try_from(slices) {
        Ok(slices) => Ok(f(slices)),
        Err(_) => candle_core::bail!("{op}: expected {N} operands"),
    }
}

/// A gradient computed outside autograd, shaped like `like`.
fn gradient(values: Vec<f32>, like: &Tensor) -> Result<Tensor> {
    Tensor::from_vec(values, like.shape(), like.device())
}
