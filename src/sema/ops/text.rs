//! How arguments are spelled on a plan line, shared by the operations' `describe`.

use crate::sema::program::{Optimizer, Param};

/// `[344×344]`.
pub(crate) fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join("×"))
}

/// `[layer(1).mlp.down_proj.weight, #4.B]`.
pub(crate) fn params_text(params: &[Param]) -> String {
    let names: Vec<String> = params.iter().map(|p| p.path.clone()).collect();
    format!("[{}]", names.join(", "))
}

/// ` · A [8×344], B [128×8]` for the tensors whose shapes are known; empty otherwise.
pub(super) fn shapes_suffix(params: &[Param]) -> String {
    let shapes: Vec<String> = params
        .iter()
        .filter_map(|p| {
            let short = p.path.rsplit('.').next().unwrap_or(&p.path);
            p.shape
                .as_ref()
                .map(|s| format!("{short} {}", shape_text(s)))
        })
        .collect();
    if shapes.is_empty() {
        String::new()
    } else {
        format!(" · {}", shapes.join(", "))
    }
}

/// `sgd(lr: 0.01)`, `adam(lr: …, beta1: …, beta2: …, weight_decay: …)`.
pub(super) fn optimizer_text(o: &Optimizer) -> String {
    match o {
        Optimizer::Sgd { lr } => format!("sgd(lr: {lr})"),
        Optimizer::Adam {
            lr,
            beta1,
            beta2,
            weight_decay,
        } => {
            format!("adam(lr: {lr}, beta1: {beta1}, beta2: {beta2}, weight_decay: {weight_decay})")
        }
    }
}
