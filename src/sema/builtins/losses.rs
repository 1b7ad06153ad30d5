//! Losses and the hidden-state features they read.

use super::Builtin;
use crate::diagnostics::Diag;
use crate::sema::args::{Accept, Args, Dflt, Formal};
use crate::sema::checker::Checker;
use crate::sema::program::{Anchor, HiddenSpec, LossKind, LossTerm, Pool};
use crate::sema::types::Ty;
use crate::sema::value::Value;
use strum::VariantNames;

pub(super) const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "nll",
        summary: "teacher-forced NLL of the edit target (optionally averaged over variants)",
        params: &[
            Formal {
                name: "target",
                accept: Accept::Ty(Ty::Target),
                default: Dflt::Required,
            },
            Formal {
                name: "on",
                accept: Accept::Ty(Ty::Variants),
                default: Dflt::Optional,
            },
        ],
        returns: Ty::Loss,
        reads_edit: false,
        attaches: false,
        run: nll,
    },
    Builtin {
        name: "kl_to_original",
        summary: "KL divergence from the unedited model's predictions on preserved samples (L_loc)",
        params: &[Formal {
            name: "over",
            accept: Accept::Ty(Ty::Data),
            default: Dflt::Required,
        }],
        returns: Ty::Loss,
        reads_edit: false,
        attaches: false,
        run: kl_to_original,
    },
    Builtin {
        name: "rank_align",
        summary: "ASAM's RCSL: pull the hidden states of variants onto one axis (Eq. 10-11)",
        params: &[
            Formal {
                name: "hidden",
                accept: Accept::Ty(Ty::Hidden),
                default: Dflt::Required,
            },
            Formal {
                name: "over",
                accept: Accept::Ty(Ty::Variants),
                default: Dflt::Required,
            },
            Formal {
                name: "tau",
                accept: Accept::Ty(Ty::Float),
                default: Dflt::Required,
            },
            Formal {
                name: "anchor",
                accept: Accept::Symbols(Anchor::VARIANTS),
                default: Dflt::Symbol("detached"),
            },
        ],
        returns: Ty::Loss,
        reads_edit: false,
        attaches: false,
        run: rank_align,
    },
    Builtin {
        name: "hidden",
        summary: "a hidden-state feature read at a stream and pooled over positions",
        params: &[
            Formal {
                name: "stream",
                accept: Accept::Ty(Ty::Stream),
                default: Dflt::Required,
            },
            Formal {
                name: "at",
                accept: Accept::Symbols(Pool::VARIANTS),
                default: Dflt::Required,
            },
        ],
        returns: Ty::Hidden,
        reads_edit: false,
        attaches: false,
        run: hidden,
    },
];

fn term(kind: LossKind) -> Value {
    Value::Loss(vec![LossTerm { weight: 1.0, kind }])
}

fn nll(c: &mut Checker<'_>, args: &Args) -> Value {
    let on = if args.has("on") {
        match c.node_arg(args, "on") {
            Some(id) => Some(id),
            None => return Value::Poison,
        }
    } else {
        None
    };
    term(LossKind::Nll { on })
}

fn kl_to_original(_c: &mut Checker<'_>, args: &Args) -> Value {
    match args.value("over") {
        Value::Data(over) => term(LossKind::KlToOriginal { over }),
        _ => Value::Poison,
    }
}

fn rank_align(c: &mut Checker<'_>, args: &Args) -> Value {
    let Value::Hidden(hidden) = args.value("hidden") else {
        return Value::Poison;
    };
    let Some(over) = c.node_arg(args, "over") else {
        return Value::Poison;
    };
    // ASAM reads the hidden state of one edit layer; the executor pools one layer's stream.
    let layers = hidden.stream.layers.as_ref().map(|l| l.count());
    let refusal = match layers {
        None => Some(("an embedding, outside the decoder layers", "read the hidden state inside a decoder layer, e.g. `hidden(layer(-1).output, at: last_prompt)`")),
        Some(Some(n)) if n != 1 => Some(("a stream of several layers", "read the hidden state of one layer, e.g. `hidden(layer(-1).output, at: last_prompt)`")),
        _ => None,
    };
    if let Some((what, help)) = refusal {
        return c.error(
            Diag::error(
                "mkedsl::loss::rank_align_stream",
                format!(
                    "`rank_align` reads one decoder layer's hidden state, and `{}` is {what}",
                    hidden.stream.path
                ),
                args.span("hidden"),
            )
            .label("not one decoder layer")
            .help(help),
        );
    }
    let Some(tau) = c.positive(
        args,
        "tau",
        "the softmax temperature τ is positive (ASAM: 4)",
    ) else {
        return Value::Poison;
    };
    let Some(anchor) = args.choice::<Anchor>("anchor") else {
        return Value::Poison;
    };
    term(LossKind::RankAlign {
        hidden,
        over,
        tau,
        anchor,
    })
}

fn hidden(_c: &mut Checker<'_>, args: &Args) -> Value {
    let Value::Stream(stream) = args.value("stream") else {
        return Value::Poison;
    };
    let Some(at) = args.choice::<Pool>("at") else {
        return Value::Poison;
    };
    Value::Hidden(HiddenSpec { stream, at })
}
