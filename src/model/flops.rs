//! Matmul arithmetic counted as it runs, so `mkedsl bench` can set each phase's rate against the
//! machine's measured matmul rate.
//!
//! What is counted: every matmul of the model — decoder and vision linears, adapters, attention
//! scores and mixing — as `2·m·k·n` floating-point operations per product, at the call that
//! builds it. A product whose operand takes part in autograd also counts the matmuls its
//! backward pass runs (one per such operand, the same size), because every graph built with such
//! operands in a training step is differentiated. Not counted: elementwise work (norms,
//! activations, softmax, rotary embeddings) and linear algebra outside the model (covariances,
//! SVDs of `prepare`). The counter is per thread: tensor ops are issued from the calling thread
//! (their kernels may fan out), so concurrent tests do not mix their counts.

use std::cell::Cell;

use candle_core::Tensor;

thread_local! {
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

/// Floating-point operations counted on this thread so far.
pub fn count() -> u64 {
    COUNT.with(Cell::get)
}

/// Adds `n` operations.
pub fn add(n: u64) {
    COUNT.with(|c| c.set(c.get().saturating_add(n)));
}

/// Counts `lhs · rhs` for operands of shapes `(…, m, k)` and `(…, k, n)` (leading axes
/// broadcast), forward plus one backward product per operand that takes part in autograd.
pub fn matmul(lhs: &Tensor, rhs: &Tensor) {
    let (l, r) = (lhs.dims(), rhs.dims());
    if l.len() < 2 || r.len() < 2 {
        return;
    }
    let (m, k) = (l[l.len() - 2], l[l.len() - 1]);
    let n = r[r.len() - 1];
    let batch = l[..l.len() - 2]
        .iter()
        .product::<usize>()
        .max(r[..r.len() - 2].iter().product::<usize>());
    let passes = 1 + u64::from(lhs.track_op()) + u64::from(rhs.track_op());
    add(passes * 2 * (batch * m * k * n) as u64);
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    #[test]
    fn counts_forward_and_the_backward_products_of_trained_operands() {
        let dev = Device::Cpu;
        let a = Tensor::zeros((2, 3, 4), DType::F32, &dev).unwrap();
        let b = Tensor::zeros((2, 4, 5), DType::F32, &dev).unwrap();
        let before = count();
        matmul(&a, &b);
        assert_eq!(count() - before, 2 * 2 * 3 * 4 * 5);
        let w = Var::zeros((4, 5), DType::F32, &dev).unwrap();
        let before = count();
        matmul(&a, w.as_tensor());
        assert_eq!(count() - before, 2 * 2 * 2 * 3 * 4 * 5);
    }
}
