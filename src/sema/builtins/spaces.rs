//! Statistics of activations and the subspaces cut from them (ELoRA §3.3-3.4, LPEdit §3.2).

use super::Builtin;
use crate::diagnostics::Diag;
use crate::sema::args::{Accept, Args, Dflt, Formal};
use crate::sema::checker::{Checker, NodeInfo};
use crate::sema::ops;
use crate::sema::program::{Cut, DataSpec, Op, Similarity};
use crate::sema::types::Ty;
use crate::sema::value::Value;
use strum::VariantNames;

pub(super) const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "covariance",
        summary: "uncentred covariance XᵀX/N of a stream over preserved samples (cached per model)",
        params: &[
            Formal { name: "stream", accept: Accept::Ty(Ty::Stream), default: Dflt::Required },
            Formal { name: "over", accept: Accept::Ty(Ty::Data), default: Dflt::Required },
        ],
        returns: Ty::Covariance,
        reads_edit: false,
        attaches: false,
        run: covariance,
    },
    Builtin {
        name: "null_space",
        summary: "the eigenvectors of a covariance with small eigenvalues: below a threshold, below a fraction of the largest, within an energy budget, or the `rank` smallest",
        params: &[
            Formal { name: "covariance", accept: Accept::Ty(Ty::Covariance), default: Dflt::Required },
            Formal { name: "below", accept: Accept::Ty(Ty::Float), default: Dflt::Optional },
            Formal { name: "rank", accept: Accept::Ty(Ty::Int), default: Dflt::Optional },
            Formal { name: "relative_below", accept: Accept::Ty(Ty::Float), default: Dflt::Optional },
            Formal { name: "energy", accept: Accept::Ty(Ty::Float), default: Dflt::Optional },
        ],
        returns: Ty::Space,
        reads_edit: false,
        attaches: false,
        run: null_space,
    },
    Builtin {
        name: "top_space",
        summary: "the `rank` eigenvectors of a covariance with the largest eigenvalues",
        params: &[
            Formal { name: "covariance", accept: Accept::Ty(Ty::Covariance), default: Dflt::Required },
            Formal { name: "rank", accept: Accept::Ty(Ty::Int), default: Dflt::Required },
        ],
        returns: Ty::Space,
        reads_edit: false,
        attaches: false,
        run: top_space,
    },
    Builtin {
        name: "knowledge_space",
        summary: "ELoRA's knowledge space from the states of perturbed variants (Alg. 1 lines 11-23)",
        params: &[
            Formal { name: "stream", accept: Accept::Ty(Ty::Stream), default: Dflt::Required },
            Formal { name: "variants", accept: Accept::Ty(Ty::Variants), default: Dflt::Required },
            Formal { name: "top", accept: Accept::Ty(Ty::Int), default: Dflt::Required },
            Formal { name: "keep_above", accept: Accept::Ty(Ty::Float), default: Dflt::Required },
            Formal { name: "rank", accept: Accept::Ty(Ty::Int), default: Dflt::Required },
            Formal { name: "similarity", accept: Accept::Symbols(Similarity::VARIANTS), default: Dflt::Symbol("literal") },
        ],
        returns: Ty::Space,
        reads_edit: false,
        attaches: false,
        run: knowledge_space,
    },
];

fn covariance(c: &mut Checker<'_>, args: &Args) -> Value {
    let (Value::Stream(stream), Value::Data(over)) = (args.value("stream"), args.value("over"))
    else {
        return Value::Poison;
    };
    let over: DataSpec = over;
    let shape = stream.width.map(|w| vec![w, w]);
    let id = c.add_node(
        Op::Covariance(ops::Covariance {
            stream: stream.clone(),
            over,
        }),
        NodeInfo::Covariance { stream },
        shape,
        args.call,
    );
    Value::Node {
        id,
        ty: Ty::Covariance,
    }
}

fn covariance_stream(c: &Checker<'_>, args: &Args) -> Option<crate::sema::site::Stream> {
    let id = c.node_arg(args, "covariance")?;
    match c.node_info(id) {
        Some(NodeInfo::Covariance { stream }) => Some(stream.clone()),
        _ => None,
    }
}

fn null_space(c: &mut Checker<'_>, args: &Args) -> Value {
    let Some(covariance) = c.node_arg(args, "covariance") else {
        return Value::Poison;
    };
    let Some(stream) = covariance_stream(c, args) else {
        return Value::Poison;
    };
    let Some(cut) = cut(c, args, &stream) else {
        return Value::Poison;
    };
    let rank = match cut {
        Cut::Rank(r) => Some(r),
        Cut::Below(_) | Cut::RelativeBelow(_) | Cut::Energy(_) => None,
    };
    let shape = stream.width.map(|w| vec![w, w]);
    let id = c.add_node(
        Op::NullSpace(ops::NullSpace {
            covariance,
            cut,
            rank,
        }),
        NodeInfo::Space { stream, rank },
        shape,
        args.call,
    );
    Value::Node { id, ty: Ty::Space }
}

/// The ways to cut a null space, one of which a call gives.
const CUTS: [&str; 4] = ["below", "relative_below", "energy", "rank"];

/// The one cut a `null_space` call gives, checked; `None` when it gives none, several, or a bad
/// value (reported). `below` is absolute, so it means different things on models with different
/// activation scales (LPEdit's 0.02, ELoRA's 1e-2); `relative_below` and `energy` are fractions
/// of the covariance's own spectrum and transfer.
fn cut(c: &mut Checker<'_>, args: &Args, stream: &crate::sema::site::Stream) -> Option<Cut> {
    let given: Vec<&str> = CUTS.into_iter().filter(|n| args.has(n)).collect();
    let fraction = "a fraction of the spectrum lies in (0, 1): try 1e-3";
    match given.as_slice() {
        ["below"] => c
            .positive(
                args,
                "below",
                "the null space keeps eigenvalues below a positive threshold (LPEdit: 0.02)",
            )
            .map(Cut::Below),
        ["relative_below"] => c
            .positive(args, "relative_below", fraction)
            .and_then(|_| c.within(args, "relative_below", 0.0, 1.0, true, fraction))
            .map(Cut::RelativeBelow),
        ["energy"] => c
            .positive(args, "energy", fraction)
            .and_then(|_| c.within(args, "energy", 0.0, 1.0, true, fraction))
            .map(Cut::Energy),
        // `rank`, the one left.
        [_] => {
            let rank = c.at_least(args, "rank", 1, "a space has at least one dimension")?;
            let why = format!("`{stream}` has only that many dimensions");
            c.not_above(
                rank,
                stream.width,
                args.span("rank"),
                "null-space rank",
                why,
            )
            .then_some(Cut::Rank(rank))
        }
        [] => {
            c.error(
                Diag::error(
                    "mkedsl::arg::missing",
                    "`null_space` needs `below`, `relative_below`, `energy` or `rank`",
                    args.call,
                )
                .label("how small is small?")
                .help("add `relative_below: 1e-3` (of the largest eigenvalue), `energy: 1e-2` (of the trace), `below: 1e-2` (absolute) or `rank: N`"),
            );
            None
        }
        [first, second, ..] => {
            c.error(
                Diag::error(
                    "mkedsl::arg::exclusive",
                    format!("give one way to cut the null space, not both `{first}` and `{second}`"),
                    args.span(second),
                )
                .label("second way to cut the space")
                .note(args.span(first), "first way")
                .help("`below:` an eigenvalue threshold; `relative_below:` a fraction of the largest; `energy:` a share of the trace; `rank:` the n smallest"),
            );
            None
        }
    }
}

fn top_space(c: &mut Checker<'_>, args: &Args) -> Value {
    let Some(covariance) = c.node_arg(args, "covariance") else {
        return Value::Poison;
    };
    let Some(stream) = covariance_stream(c, args) else {
        return Value::Poison;
    };
    let Some(rank) = c.at_least(args, "rank", 1, "a space has at least one dimension") else {
        return Value::Poison;
    };
    if !c.not_above(
        rank,
        stream.width,
        args.span("rank"),
        "space rank",
        format!("`{stream}` has only that many dimensions"),
    ) {
        return Value::Poison;
    }
    let shape = stream.width.map(|w| vec![w, w]);
    let id = c.add_node(
        Op::TopSpace(ops::TopSpace { covariance, rank }),
        NodeInfo::Space {
            stream,
            rank: Some(rank),
        },
        shape,
        args.call,
    );
    Value::Node { id, ty: Ty::Space }
}

fn knowledge_space(c: &mut Checker<'_>, args: &Args) -> Value {
    let Value::Stream(stream) = args.value("stream") else {
        return Value::Poison;
    };
    let Some(variants) = c.node_arg(args, "variants") else {
        return Value::Poison;
    };
    let top = c.at_least(
        args,
        "top",
        1,
        "the principal subspace compared between variants has ≥ 1 dimension",
    );
    let keep = c.within(
        args,
        "keep_above",
        0.0,
        1.0,
        false,
        "the similarity is at most 1 (literal: tr(P_b P_0)/top ≥ 0; chance-corrected: 0 = chance); ELoRA uses 0.05",
    );
    let rank = c.at_least(
        args,
        "rank",
        1,
        "the knowledge space has at least one dimension",
    );
    let similarity = args.choice::<Similarity>("similarity");
    let (Some(top), Some(keep_above), Some(rank), Some(similarity)) = (top, keep, rank, similarity)
    else {
        return Value::Poison;
    };
    let why = |what: &str| format!("{what} cannot exceed the width of `{stream}`");
    let ok_top = c.not_above(
        top,
        stream.width,
        args.span("top"),
        "`top`",
        why("the compared subspace"),
    );
    let ok_rank = c.not_above(
        rank,
        stream.width,
        args.span("rank"),
        "`rank`",
        why("the knowledge space"),
    );
    if !(ok_top && ok_rank) {
        return Value::Poison;
    }
    if similarity == Similarity::ChanceCorrected && Some(top) == stream.width {
        return c.error(
            Diag::error(
                "mkedsl::dim::no_chance_level",
                format!("`top: {top}` spans all of `{stream}`, so every variant scores chance"),
                args.span("top"),
            )
            .label(format!("the whole {top}-wide stream"))
            .help("chance-corrected similarity needs `top` below the stream's width; lower `top` or use `similarity: literal`"),
        );
    }
    let shape = stream.width.map(|w| vec![w, w]);
    let id = c.add_node(
        Op::KnowledgeSpace(ops::KnowledgeSpace {
            stream: stream.clone(),
            variants,
            top,
            keep_above,
            rank,
            similarity,
        }),
        NodeInfo::Space {
            stream,
            rank: Some(rank),
        },
        shape,
        args.call,
    );
    Value::Node { id, ty: Ty::Space }
}
