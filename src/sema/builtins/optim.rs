//! Optimisers.

use super::Builtin;
use crate::sema::args::{Accept, Args, Dflt, Formal};
use crate::sema::checker::Checker;
use crate::sema::program::Optimizer;
use crate::sema::types::Ty;
use crate::sema::value::Value;

pub(super) const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "sgd",
        summary: "plain gradient descent: p ← p − lr·g",
        params: &[Formal {
            name: "lr",
            accept: Accept::Ty(Ty::Float),
            default: Dflt::Required,
        }],
        returns: Ty::Optimizer,
        reads_edit: false,
        attaches: false,
        run: sgd,
    },
    Builtin {
        name: "adam",
        summary: "Adam; weight_decay > 0 decays weights decoupled from the gradient (AdamW)",
        params: &[
            Formal {
                name: "lr",
                accept: Accept::Ty(Ty::Float),
                default: Dflt::Required,
            },
            Formal {
                name: "beta1",
                accept: Accept::Ty(Ty::Float),
                default: Dflt::Float(0.9),
            },
            Formal {
                name: "beta2",
                accept: Accept::Ty(Ty::Float),
                default: Dflt::Float(0.999),
            },
            Formal {
                name: "weight_decay",
                accept: Accept::Ty(Ty::Float),
                default: Dflt::Float(0.0),
            },
        ],
        returns: Ty::Optimizer,
        reads_edit: false,
        attaches: false,
        run: adam,
    },
];

fn sgd(c: &mut Checker<'_>, args: &Args) -> Value {
    match c.positive(args, "lr", "a learning rate is positive (ELoRA: 0.01)") {
        Some(lr) => Value::Optimizer(Optimizer::Sgd { lr }),
        None => Value::Poison,
    }
}

fn adam(c: &mut Checker<'_>, args: &Args) -> Value {
    let lr = c.positive(
        args,
        "lr",
        "a learning rate is positive (UniKE's encoders: 1e-4)",
    );
    let beta1 = c.within(
        args,
        "beta1",
        0.0,
        1.0,
        true,
        "Adam's moment decay lies in [0, 1); the default is 0.9",
    );
    let beta2 = c.within(
        args,
        "beta2",
        0.0,
        1.0,
        true,
        "Adam's moment decay lies in [0, 1); the default is 0.999",
    );
    let wd = c.within(
        args,
        "weight_decay",
        0.0,
        f64::MAX,
        false,
        "weight decay is ≥ 0",
    );
    match (lr, beta1, beta2, wd) {
        (Some(lr), Some(beta1), Some(beta2), Some(weight_decay)) => {
            Value::Optimizer(Optimizer::Adam {
                lr,
                beta1,
                beta2,
                weight_decay,
            })
        }
        _ => Value::Poison,
    }
}
