//! `layer(i)` and `layers(a..b)`: where in the decoder.

use super::Builtin;
use crate::sema::args::{Accept, Args, Dflt, Formal};
use crate::sema::checker::Checker;
use crate::sema::site::Layers;
use crate::sema::types::Ty;
use crate::sema::value::Value;

pub(super) const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "layer",
        summary: "one decoder layer; negative indices count from the end",
        params: &[Formal {
            name: "index",
            accept: Accept::Ty(Ty::Int),
            default: Dflt::Required,
        }],
        returns: Ty::Layer,
        reads_edit: false,
        attaches: false,
        run: layer,
    },
    Builtin {
        name: "layers",
        summary: "several consecutive decoder layers, `a..b` Python-style",
        params: &[Formal {
            name: "range",
            accept: Accept::Ty(Ty::Range),
            default: Dflt::Required,
        }],
        returns: Ty::Layer,
        reads_edit: false,
        attaches: false,
        run: layers,
    },
];

fn layer(c: &mut Checker<'_>, args: &Args) -> Value {
    let Some((index, _)) = args.int("index") else {
        return Value::Poison;
    };
    match c.bind_layers(Layers::one(index), args.call) {
        Some(l) => Value::Layer(l),
        None => Value::Poison,
    }
}

fn layers(c: &mut Checker<'_>, args: &Args) -> Value {
    let Value::Range { start, end } = args.value("range") else {
        return Value::Poison;
    };
    match c.bind_layers(Layers::range(start, end), args.call) {
        Some(l) => Value::Layer(l),
        None => Value::Poison,
    }
}
