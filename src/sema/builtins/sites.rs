//! `layer(i)` and `layers(a..b)`: where in the decoder; with `of: N`, a position in a model of
//! `N` layers (a paper's "layer 7 of 32"), resolved against the bound model's depth.

use super::Builtin;
use crate::diagnostics::Diag;
use crate::sema::args::{Accept, Args, Dflt, Formal};
use crate::sema::checker::Checker;
use crate::sema::site::Layers;
use crate::sema::types::Ty;
use crate::sema::value::Value;
use crate::source::Span;

/// `of:` — the depth of the model a layer index was published for.
const OF: Formal<'static> = Formal {
    name: "of",
    accept: Accept::Ty(Ty::Int),
    default: Dflt::Optional,
};

pub(super) const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "layer",
        summary: "one decoder layer; negative indices count from the end; `of: N` reads the index in an N-layer model (round(i·L/N) of this model's L)",
        params: &[
            Formal {
                name: "index",
                accept: Accept::Ty(Ty::Int),
                default: Dflt::Required,
            },
            OF,
        ],
        returns: Ty::Layer,
        reads_edit: false,
        attaches: false,
        run: layer,
    },
    Builtin {
        name: "layers",
        summary: "several consecutive decoder layers, `a..b` Python-style; `of: N` reads both ends in an N-layer model",
        params: &[
            Formal {
                name: "range",
                accept: Accept::Ty(Ty::Range),
                default: Dflt::Required,
            },
            OF,
        ],
        returns: Ty::Layer,
        reads_edit: false,
        attaches: false,
        run: layers,
    },
];

fn layer(c: &mut Checker<'_>, args: &Args) -> Value {
    let Some((index, span)) = args.int("index") else {
        return Value::Poison;
    };
    let mut layers = Layers::one(index);
    if args.has("of") {
        let Some(of) = depth(c, args) else {
            return Value::Poison;
        };
        if !in_depth(c, "layer", index, 0, of - 1, of, span) {
            return Value::Poison;
        }
        layers = layers.of_depth(of);
    }
    match c.bind_layers(layers, args.call) {
        Some(l) => Value::Layer(l),
        None => Value::Poison,
    }
}

fn layers(c: &mut Checker<'_>, args: &Args) -> Value {
    let Value::Range { start, end } = args.value("range") else {
        return Value::Poison;
    };
    let mut layers = Layers::range(start, end);
    if args.has("of") {
        let Some(of) = depth(c, args) else {
            return Value::Poison;
        };
        let span = args.span("range");
        let start = start.unwrap_or(0);
        if !in_depth(c, "range start", start, 0, of - 1, of, span)
            || !end.is_none_or(|e| in_depth(c, "range end", e, start + 1, of, of, span))
        {
            return Value::Poison;
        }
        layers = layers.of_depth(of);
    }
    match c.bind_layers(layers, args.call) {
        Some(l) => Value::Layer(l),
        None => Value::Poison,
    }
}

/// The `of:` argument: a model has at least one layer.
fn depth(c: &mut Checker<'_>, args: &Args) -> Option<i64> {
    c.at_least(
        args,
        "of",
        1,
        "`of:` is the layer count of the model the index was published for (LLaVA-1.5-7B: 32)",
    )
    .map(|n| n as i64)
}

/// A layer bound written against a depth of `of` must lie in `lo..=hi`: positions in a paper's
/// model count from 0 and have no from-the-end form; a range end follows its start.
fn in_depth(
    c: &mut Checker<'_>,
    what: &str,
    i: i64,
    lo: i64,
    hi: i64,
    of: i64,
    span: Span,
) -> bool {
    if (lo..=hi).contains(&i) {
        return true;
    }
    let help = if what == "range end" {
        format!("a range end comes after its start and is at most the layer count {of}")
    } else {
        format!("with `of: {of}` positions count 0..={} from the input; negative indices name this model's layers (drop `of:`)", of - 1)
    };
    c.diags.push(
        Diag::error(
            "mkedsl::range::depth",
            format!("{what} {i} is not a position in the {of}-layer model `of:` names"),
            span,
        )
        .label(format!("must lie in {lo}..={hi}"))
        .help(help),
    );
    false
}
