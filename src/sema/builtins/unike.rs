//! UniKE's in-context memory, its contrastively trained encoders and the truthfulness direction.

use super::Builtin;
use crate::diagnostics::Diag;
use crate::sema::args::{Accept, Args, Dflt, Formal};
use crate::sema::checker::{Checker, NodeInfo};
use crate::sema::ops;
use crate::sema::program::{DataSpec, Op};
use crate::sema::site::StreamPoint;
use crate::sema::types::Ty;
use crate::sema::value::Value;

pub(super) const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "incontext_memory",
        summary:
            "hidden states (h_sem, h_pos, h_neg) of hallucination triplets at a stream (UniKE §3.3)",
        params: &[
            Formal {
                name: "triplets",
                accept: Accept::Ty(Ty::Triplets),
                default: Dflt::Required,
            },
            Formal {
                name: "at",
                accept: Accept::Ty(Ty::Stream),
                default: Dflt::Required,
            },
        ],
        returns: Ty::Memory,
        reads_edit: false,
        attaches: false,
        run: incontext_memory,
    },
    Builtin {
        name: "contrastive_encoders",
        summary:
            "truthfulness and semantic encoders trained contrastively on a memory (UniKE Eq. 4-5)",
        params: &[
            Formal {
                name: "memory",
                accept: Accept::Ty(Ty::Memory),
                default: Dflt::Required,
            },
            Formal {
                name: "hidden",
                accept: Accept::Ty(Ty::Int),
                default: Dflt::Required,
            },
            Formal {
                name: "depth",
                accept: Accept::Ty(Ty::Int),
                default: Dflt::Required,
            },
            Formal {
                name: "lr",
                accept: Accept::Ty(Ty::Float),
                default: Dflt::Required,
            },
            Formal {
                name: "steps",
                accept: Accept::Ty(Ty::Int),
                default: Dflt::Required,
            },
            Formal {
                name: "batch",
                accept: Accept::Ty(Ty::Int),
                default: Dflt::Int(64),
            },
        ],
        returns: Ty::Encoders,
        reads_edit: false,
        attaches: false,
        run: contrastive_encoders,
    },
    Builtin {
        name: "truth_direction",
        summary: "ζ: mean truthful minus mean hallucinated encoding (UniKE §3.3)",
        params: &[Formal {
            name: "encoders",
            accept: Accept::Ty(Ty::Encoders),
            default: Dflt::Required,
        }],
        returns: Ty::Direction,
        reads_edit: false,
        attaches: false,
        run: truth_direction,
    },
    Builtin {
        name: "remember",
        summary: "add the edit case (question with its target answer) to a memory",
        params: &[Formal {
            name: "memory",
            accept: Accept::Ty(Ty::Memory),
            default: Dflt::Required,
        }],
        returns: Ty::Unit,
        reads_edit: true,
        attaches: false,
        run: remember,
    },
];

fn incontext_memory(c: &mut Checker<'_>, args: &Args) -> Value {
    let (Value::Triplets(triplets), Value::Stream(at)) = (args.value("triplets"), args.value("at"))
    else {
        return Value::Poison;
    };
    let triplets: DataSpec = triplets;
    let residual = matches!(
        at.point.canonical(),
        StreamPoint::LayerInput
            | StreamPoint::LayerOutput
            | StreamPoint::AttnInput
            | StreamPoint::MlpInput
    );
    if !residual {
        return c.error(
            Diag::error(
                "mkedsl::site::memory_stream",
                format!("a memory stores hidden states of a layer, not `{at}`"),
                args.span("at"),
            )
            .label("not a layer's hidden state")
            .help("use `LAYERS.input` (UniKE retrieves with the pre-attention hidden state)"),
        );
    }
    let count = match triplets {
        DataSpec::Hallucinations { count } => count,
        DataSpec::Preserve { .. } => 0,
    };
    let shape = at.width.map(|w| vec![count, w]);
    let id = c.add_node(
        Op::IncontextMemory(ops::IncontextMemory {
            triplets,
            at: at.clone(),
        }),
        NodeInfo::Memory { at, entries: count },
        shape,
        args.call,
    );
    Value::Node { id, ty: Ty::Memory }
}

fn contrastive_encoders(c: &mut Checker<'_>, args: &Args) -> Value {
    let Some(memory) = c.node_arg(args, "memory") else {
        return Value::Poison;
    };
    let hidden = c.at_least(
        args,
        "hidden",
        1,
        "encoders map to a space of at least one dimension",
    );
    let depth = c.at_least(args, "depth", 1, "an encoder has at least one MLP layer");
    let lr = c.positive(args, "lr", "a learning rate is positive (UniKE: Adam 1e-4)");
    let steps = c.at_least(args, "steps", 1, "train for at least one step");
    let batch = c.at_least(
        args,
        "batch",
        2,
        "a contrastive batch needs at least two triplets",
    );
    let (Some(hidden), Some(depth), Some(lr), Some(steps), Some(batch)) =
        (hidden, depth, lr, steps, batch)
    else {
        return Value::Poison;
    };
    let width = match c.node_info(memory) {
        Some(NodeInfo::Memory { at, .. }) => at.width,
        _ => None,
    };
    let id = c.add_node(
        Op::ContrastiveEncoders(ops::ContrastiveEncoders {
            memory,
            hidden,
            depth,
            lr,
            steps,
            batch,
        }),
        NodeInfo::Encoders { memory, hidden },
        width.map(|w| vec![w, hidden]),
        args.call,
    );
    Value::Node {
        id,
        ty: Ty::Encoders,
    }
}

fn truth_direction(c: &mut Checker<'_>, args: &Args) -> Value {
    let Some(encoders) = c.node_arg(args, "encoders") else {
        return Value::Poison;
    };
    let (hidden, memory) = match c.node_info(encoders) {
        Some(NodeInfo::Encoders { hidden, memory }) => (*hidden, *memory),
        _ => return Value::Poison,
    };
    let layers = match c.node_info(memory) {
        Some(NodeInfo::Memory { at, .. }) => at.layers.clone(),
        _ => None,
    };
    let id = c.add_node(
        Op::TruthDirection(ops::TruthDirection { encoders }),
        NodeInfo::Direction {
            width: hidden,
            layers,
        },
        Some(vec![hidden]),
        args.call,
    );
    Value::Node {
        id,
        ty: Ty::Direction,
    }
}

fn remember(c: &mut Checker<'_>, args: &Args) -> Value {
    let Some(memory) = c.node_arg(args, "memory") else {
        return Value::Poison;
    };
    c.remembered.push((memory, args.call));
    c.add_node(
        Op::Remember(ops::Remember { memory }),
        NodeInfo::Effect,
        None,
        args.call,
    );
    Value::Unit
}
