//! Differentiable building blocks: every function here has a gradient with respect to every
//! tensor input that can carry one (see notes/candle-0.11.md for the fused candle ops that
//! silently drop gradients, and why none of them appear here).

pub mod activation;
pub mod frozen;
pub mod linear;
pub mod mlp;
pub mod norm;
pub mod rotary;
