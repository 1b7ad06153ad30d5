//! Variants of the edit case's input: ELoRA's perturbations (Alg. 1 lines 5-10) and ASAM's
//! adversarial latents (LAR, Eq. 4-5).

use serde::Serialize;

use super::OpSpec;
use crate::sema::program::{share_window, AdvInit, Apply, BudgetScale, NodeId, Norm, Perturbation};
use crate::sema::site::Stream;
use crate::sema::Symbol;

/// `count` perturbed copies of the edit case's input. Shape `[count]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Perturb {
    pub kinds: Vec<Perturbation>,
    pub count: usize,
    pub apply: Apply,
}

impl OpSpec for Perturb {
    fn name(&self) -> &'static str {
        "perturb"
    }
    fn refs_mut(&mut self) -> Vec<&mut NodeId> {
        Vec::new()
    }
    fn reads_edit(&self) -> bool {
        true
    }
    fn output(&self) -> Option<&'static str> {
        Some("variants")
    }
    fn describe(&self) -> String {
        let kinds: Vec<String> = self.kinds.iter().map(describe_kind).collect();
        let (count, apply) = (self.count, self.apply.name());
        format!("perturb [{}] count {count} apply {apply}", kinds.join(", "))
    }
}

/// One perturbation as the plan shows it; a share of the image with the window it resolves to
/// when the model is known (`mask_vision(window 2 of 36 tokens (share 0.0417))`).
fn describe_kind(kind: &Perturbation) -> String {
    match *kind {
        Perturbation::MaskVision { window } => format!("mask_vision(window: {window})"),
        Perturbation::MaskVisionShare {
            share,
            tokens: Some(n),
        } => format!(
            "mask_vision(window {} of {n} tokens (share {share}))",
            share_window(share, n)
        ),
        Perturbation::MaskVisionShare {
            share,
            tokens: None,
        } => {
            format!("mask_vision(share: {share})")
        }
        Perturbation::NoiseText { sigma } => format!("noise_text(sigma: {sigma})"),
        Perturbation::NoiseTextRelative { relative } => {
            format!("noise_text(sigma {relative} × RMS of the text embeddings)")
        }
    }
}

/// ASAM LAR (Eq. 4-5): `count` variants `z + δ`, `‖δ‖ ≤ budget`, of the edit case's latents,
/// each by `steps` steps of projected gradient ascent on the NLL of the target (step size
/// `budget / steps`, direction the gradient normalised in `norm`). Shape `[count]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Adversarial {
    pub latents: Vec<Stream>,
    pub budget: f64,
    pub count: usize,
    pub steps: usize,
    pub init: AdvInit,
    pub norm: Norm,
    /// What ε is measured against: one ball, each token's, or the clean latent's norm.
    pub scale: BudgetScale,
}

impl OpSpec for Adversarial {
    fn name(&self) -> &'static str {
        "adversarial"
    }
    fn refs_mut(&mut self) -> Vec<&mut NodeId> {
        Vec::new()
    }
    fn reads_edit(&self) -> bool {
        true
    }
    fn reads_model(&self) -> bool {
        true
    }
    fn output(&self) -> Option<&'static str> {
        Some("variants")
    }
    fn describe(&self) -> String {
        let latents: Vec<String> = self.latents.iter().map(|l| l.path.clone()).collect();
        let (budget, count, steps) = (self.budget, self.count, self.steps);
        let (init, norm) = (self.init.name(), self.norm.name());
        // The default scale is left out, so plans of recipes written before it read the same.
        let scale = match self.scale {
            BudgetScale::Absolute => String::new(),
            other => format!(" scale {}", other.name()),
        };
        format!(
            "adversarial [{}] budget {budget} count {count} steps {steps} init {init} norm {norm}{scale}",
            latents.join(", ")
        )
    }
}
