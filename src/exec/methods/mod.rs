//! Method-specific execution, one place per paper, so the general executor reads without them.
//! Each file adds the `Executor` methods its ops dispatch to (`run_step` names them), and the
//! numerics only that paper uses.
//!
//! - [`elora`]: the perturbed variants of the edit case and the knowledge space (Alg. 1).
//! - [`asam`]: LAR's adversarial latents (Eq. 4-5); RCSL itself is a loss (`exec/losses.rs`).
//! - [`unike`]: the in-context memory, contrastive encoders, ζ, extra neurons and `remember`;
//!   the latent ICL read runs inside the decoder (`model::memory`).
//!
//! LPEdit, LoRA-Null and FT-L need no file here: they are written with general primitives
//! (covariance, null space, `project update`, `lora`) in `stdlib/`.

pub mod asam;
pub mod elora;
pub mod unike;
