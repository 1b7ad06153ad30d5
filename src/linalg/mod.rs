//! The linear algebra the editing methods need, on candle tensors taken from the model.
//!
//! A separate room from the model runtime: nothing here knows about layers or hooks. candle has no
//! eigensolver or SVD, so [`eigh`], [`svd`] and [`singular_values`] hand the tensor's CPU buffer to
//! faer and return tensors in the input's dtype and device. On top of them:
//!
//! - [`CovarianceAccumulator`] folds batches of activations into `XᵀX` without keeping them;
//! - [`null_space`] and [`principal_subspace`] turn a covariance into a [`Subspace`]
//!   (ELoRA §3.3–3.4, LPEdit §3.2), whose [`Subspace::project_rows`] constrains a weight update or
//!   a gradient, and [`projector_similarity`] compares two subspaces (ELoRA Eq. 9, sign-free);
//! - [`differentiable_singular_values`] is a candle op with a backward pass, for ASAM's RCSL loss.
//!
//! Precision follows the dtype: f64 input is decomposed in f64, everything else in f32.
//! Non-finite input is an [`Error`], never a panic.

mod covariance;
mod decompose;
mod dense;
mod error;
mod singular_value_op;
mod subspace;

pub use covariance::CovarianceAccumulator;
pub use decompose::{eigh, singular_values, svd, Eigh, Svd};
pub use error::{Error, Result};
pub use singular_value_op::differentiable_singular_values;
pub use subspace::{
    basis_similarity, null_indices, null_space, null_space_spectrum, principal_bases,
    principal_subspace, projector_similarity, NullSpaceRule, NullSpaceStats, Subspace,
};
