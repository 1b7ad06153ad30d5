//! Data drawn from the model's own pools: preserved knowledge and hallucination triplets.

use super::Builtin;
use crate::diagnostics::Diag;
use crate::sema::args::{Accept, Args, Dflt, Formal};
use crate::sema::checker::Checker;
use crate::sema::program::DataSpec;
use crate::sema::types::Ty;
use crate::sema::value::Value;

pub(super) const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "preserve",
        summary: "preserved-knowledge samples: text QA, image QA and captions (never edit cases)",
        params: &[
            Formal {
                name: "text",
                accept: Accept::Ty(Ty::Int),
                default: Dflt::Int(0),
            },
            Formal {
                name: "vqa",
                accept: Accept::Ty(Ty::Int),
                default: Dflt::Int(0),
            },
            Formal {
                name: "caption",
                accept: Accept::Ty(Ty::Int),
                default: Dflt::Int(0),
            },
        ],
        returns: Ty::Data,
        reads_edit: false,
        attaches: false,
        run: preserve,
    },
    Builtin {
        name: "hallucinations",
        summary: "UniKE's (question, true answer, hallucinated answer) triplets",
        params: &[Formal {
            name: "count",
            accept: Accept::Ty(Ty::Int),
            default: Dflt::Required,
        }],
        returns: Ty::Triplets,
        reads_edit: false,
        attaches: false,
        run: hallucinations,
    },
];

fn preserve(c: &mut Checker<'_>, args: &Args) -> Value {
    let why = "a sample count is between 0 and the data available (ELoRA: 2,048 text)";
    let max = super::MAX_PRESERVE;
    let text = c.count_in(args, "text", 0, max, why);
    let vqa = c.count_in(args, "vqa", 0, max, why);
    let caption = c.count_in(args, "caption", 0, max, why);
    let (Some(text), Some(vqa), Some(caption)) = (text, vqa, caption) else {
        return Value::Poison;
    };
    if text + vqa + caption == 0 {
        return c.error(
            Diag::error(
                "mkedsl::range::empty_data",
                "`preserve` selects no sample",
                args.call,
            )
            .label("all counts are zero")
            .help("ELoRA preserves 2,048 text QA, 512 image QA and 512 captions"),
        );
    }
    Value::Data(DataSpec::Preserve { text, vqa, caption })
}

fn hallucinations(c: &mut Checker<'_>, args: &Args) -> Value {
    match c.at_least(args, "count", 1, "UniKE collects more than 15K triplets") {
        Some(count) => Value::Triplets(DataSpec::Hallucinations { count }),
        None => Value::Poison,
    }
}
