//! Variants of the edit case: ELoRA's perturbations and ASAM's adversarial latents.

use super::Builtin;
use crate::diagnostics::Diag;
use crate::sema::args::{Accept, Args, Dflt, Formal};
use crate::sema::checker::{Checker, NodeInfo};
use crate::sema::ops;
use crate::sema::program::{AdvInit, Apply, BudgetScale, Norm, Op, Perturbation};
use crate::sema::site::StreamPoint;
use crate::sema::types::Ty;
use crate::sema::value::Value;
use crate::source::Span;
use strum::VariantNames;

pub(super) const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "perturb",
        summary: "`count` perturbed copies of the edit case's input (ELoRA Alg. 1 line 12)",
        params: &[
            Formal {
                name: "kinds",
                accept: Accept::ListOf(Ty::Perturbation),
                default: Dflt::Required,
            },
            Formal {
                name: "count",
                accept: Accept::Ty(Ty::Int),
                default: Dflt::Required,
            },
            Formal {
                name: "apply",
                accept: Accept::Symbols(Apply::VARIANTS),
                default: Dflt::Symbol("all"),
            },
        ],
        returns: Ty::Variants,
        reads_edit: true,
        attaches: false,
        run: perturb,
    },
    Builtin {
        name: "mask_vision",
        summary: "zero a random window of consecutive image tokens, `window` tokens or a `share` of the image (ELoRA Appendix C.2)",
        params: &[
            Formal {
                name: "window",
                accept: Accept::Ty(Ty::Int),
                default: Dflt::Optional,
            },
            Formal {
                name: "share",
                accept: Accept::Ty(Ty::Float),
                default: Dflt::Optional,
            },
        ],
        returns: Ty::Perturbation,
        reads_edit: false,
        attaches: false,
        run: mask_vision,
    },
    Builtin {
        name: "noise_text",
        summary: "add Gaussian noise to the text token embeddings, σ absolute or `relative` to their RMS (ELoRA §3.4)",
        params: &[
            Formal {
                name: "sigma",
                accept: Accept::Ty(Ty::Float),
                default: Dflt::Optional,
            },
            Formal {
                name: "relative",
                accept: Accept::Ty(Ty::Float),
                default: Dflt::Optional,
            },
        ],
        returns: Ty::Perturbation,
        reads_edit: false,
        attaches: false,
        run: noise_text,
    },
    Builtin {
        name: "adversarial",
        summary: "ASAM's LAR: adversarial latent variants by projected gradient ascent (Eq. 4-5)",
        params: &[
            Formal {
                name: "latents",
                accept: Accept::ListOf(Ty::Stream),
                default: Dflt::Required,
            },
            Formal {
                name: "budget",
                accept: Accept::Ty(Ty::Float),
                default: Dflt::Required,
            },
            Formal {
                name: "count",
                accept: Accept::Ty(Ty::Int),
                default: Dflt::Required,
            },
            Formal {
                name: "steps",
                accept: Accept::Ty(Ty::Int),
                default: Dflt::Int(1),
            },
            Formal {
                name: "init",
                accept: Accept::Symbols(AdvInit::VARIANTS),
                default: Dflt::Symbol("random"),
            },
            Formal {
                name: "norm",
                accept: Accept::Symbols(Norm::VARIANTS),
                default: Dflt::Symbol("l2"),
            },
            Formal {
                name: "scale",
                accept: Accept::Symbols(BudgetScale::VARIANTS),
                default: Dflt::Symbol("absolute"),
            },
        ],
        returns: Ty::Variants,
        reads_edit: true,
        attaches: false,
        run: adversarial,
    },
];

fn perturb(c: &mut Checker<'_>, args: &Args) -> Value {
    let Value::List(items) = args.value("kinds") else {
        return Value::Poison;
    };
    let kinds: Vec<Perturbation> = items
        .iter()
        .filter_map(|v| match v {
            Value::Perturbation(p) => Some(*p),
            _ => None,
        })
        .collect();
    if kinds.is_empty() {
        return c.error(
            Diag::error(
                "mkedsl::range::empty_list",
                "`perturb` needs at least one kind of perturbation",
                args.span("kinds"),
            )
            .label("empty list")
            .help("e.g. [mask_vision(window: 24), noise_text(sigma: 0.01)]"),
        );
    }
    let Some(count) = c.count_in(
        args,
        "count",
        1,
        super::MAX_VARIANTS,
        "at least one variant (ELoRA: 511)",
    ) else {
        return Value::Poison;
    };
    let Some(apply) = args.choice::<Apply>("apply") else {
        return Value::Poison;
    };
    let id = c.add_node(
        Op::Perturb(ops::Perturb {
            kinds,
            count,
            apply,
        }),
        NodeInfo::Variants,
        Some(vec![count]),
        args.call,
    );
    Value::Node {
        id,
        ty: Ty::Variants,
    }
}

fn mask_vision(c: &mut Checker<'_>, args: &Args) -> Value {
    let how = "`window:` counts image tokens; `share:` is a fraction of the image (ELoRA: 24 of 576 = 0.0417)";
    match one_of(c, args, "mask_vision", ["window", "share"], how) {
        Some("window") => mask_window(c, args),
        Some(_) => mask_share(c, args),
        None => Value::Poison,
    }
}

fn mask_window(c: &mut Checker<'_>, args: &Args) -> Value {
    let Some(window) = c.at_least(
        args,
        "window",
        1,
        "mask at least one image token (ELoRA: 24)",
    ) else {
        return Value::Poison;
    };
    let tokens = c.dims.map(|d| d.vision_tokens);
    if !c.not_above(
        window,
        tokens,
        args.span("window"),
        "mask window",
        format!("an image is {} tokens in this model", tokens.unwrap_or(0)),
    ) {
        return Value::Poison;
    }
    Value::Perturbation(Perturbation::MaskVision { window })
}

/// `share` in (0, 1]: a share of 0 masks nothing and one above 1 more than the image.
fn mask_share(c: &mut Checker<'_>, args: &Args) -> Value {
    let Some((share, span)) = args.float("share") else {
        return Value::Poison;
    };
    if !(share > 0.0 && share <= 1.0) {
        return c.error(
            Diag::error(
                "mkedsl::range::interval",
                format!("`share` must lie in (0, 1], not {share}"),
                span,
            )
            .label("out of range")
            .help("a share of the image's tokens: ELoRA masks 24 of 576 = 0.0417"),
        );
    }
    let tokens = c.dims.map(|d| d.vision_tokens);
    Value::Perturbation(Perturbation::MaskVisionShare { share, tokens })
}

fn noise_text(c: &mut Checker<'_>, args: &Args) -> Value {
    let how = "`sigma:` is σ in embedding units; `relative:` is σ / RMS of the text embeddings";
    let kind = match one_of(c, args, "noise_text", ["sigma", "relative"], how) {
        Some("sigma") => c
            .positive(args, "sigma", "noise needs a positive scale (ELoRA: 0.01)")
            .map(|sigma| Perturbation::NoiseText { sigma }),
        Some(_) => c
            .positive(
                args,
                "relative",
                "noise needs a positive scale, a multiple of the text embeddings' RMS",
            )
            .map(|relative| Perturbation::NoiseTextRelative { relative }),
        None => None,
    };
    kind.map_or(Value::Poison, Value::Perturbation)
}

/// Exactly one of two optional arguments that say the same thing in different units: the name
/// given, or `None` after reporting both or neither.
fn one_of(
    c: &mut Checker<'_>,
    args: &Args,
    callee: &str,
    [a, b]: [&'static str; 2],
    how: &str,
) -> Option<&'static str> {
    match (args.has(a), args.has(b)) {
        (true, false) => Some(a),
        (false, true) => Some(b),
        (true, true) => {
            let second: Span = args.span(b);
            c.diags.push(
                Diag::error(
                    "mkedsl::arg::exclusive",
                    format!("give `{a}` or `{b}`, not both"),
                    second,
                )
                .label("second way to say the same thing")
                .note(args.span(a), "first way")
                .help(how.to_string()),
            );
            None
        }
        (false, false) => {
            c.diags.push(
                Diag::error(
                    "mkedsl::arg::missing",
                    format!("`{callee}` needs `{a}` or `{b}`"),
                    args.call,
                )
                .label(format!("neither `{a}` nor `{b}`"))
                .help(how.to_string()),
            );
            None
        }
    }
}

fn adversarial(c: &mut Checker<'_>, args: &Args) -> Value {
    let Value::List(items) = args.value("latents") else {
        return Value::Poison;
    };
    let mut latents = Vec::new();
    for item in items {
        let Value::Stream(s) = item else {
            return Value::Poison;
        };
        if !matches!(s.point, StreamPoint::EmbedVision | StreamPoint::EmbedText) {
            return c.error(
                Diag::error(
                    "mkedsl::site::not_embed",
                    format!("LAR perturbs input embeddings, not `{s}`"),
                    args.span("latents"),
                )
                .label("not an embedding stream")
                .help("use `[embed.vision, embed.text]` (ASAM's joint latent z = [e_v, e_t])"),
            );
        }
        if latents
            .iter()
            .any(|l: &crate::sema::site::Stream| l.point == s.point)
        {
            return c.error(
                Diag::error(
                    "mkedsl::arg::duplicate",
                    format!("`{s}` is listed twice"),
                    args.span("latents"),
                )
                .label("duplicate latent")
                .help("list each embedding once"),
            );
        }
        latents.push(s);
    }
    if latents.is_empty() {
        return c.error(
            Diag::error(
                "mkedsl::range::empty_list",
                "`adversarial` needs at least one latent",
                args.span("latents"),
            )
            .label("empty list")
            .help("use `[embed.vision, embed.text]`"),
        );
    }
    let budget = c.positive(
        args,
        "budget",
        "ε bounds ‖δ‖ and must be positive (ASAM: 1e-3)",
    );
    let count = c.count_in(
        args,
        "count",
        1,
        super::MAX_VARIANTS,
        "at least one variant (ASAM: n = 4)",
    );
    // `steps: 0` keeps the random starts: variants of the same budget without the ascent, the
    // control that separates LAR's search from mere noise (ASAM Table 4).
    let steps = c.at_least(
        args,
        "steps",
        0,
        "ascent steps, 0 for random points of the ball (ASAM: a single step)",
    );
    let (Some(budget), Some(count), Some(steps)) = (budget, count, steps) else {
        return Value::Poison;
    };
    let (Some(init), Some(norm), Some(scale)) = (
        args.choice::<AdvInit>("init"),
        args.choice::<Norm>("norm"),
        args.choice::<BudgetScale>("scale"),
    ) else {
        return Value::Poison;
    };
    if steps == 0 && init == AdvInit::Zero {
        return c.error(
            Diag::error(
                "mkedsl::arg::degenerate",
                "`steps: 0` from `init: zero` leaves every variant equal to the clean input",
                args.span("steps"),
            )
            .label("no ascent from no offset")
            .help("use `init: random` for random points of the ball, or at least one step"),
        );
    }
    if norm == Norm::Linf && scale == BudgetScale::PerToken {
        return c.error(
            Diag::error(
                "mkedsl::arg::redundant",
                "`scale: per_token` bounds nothing more under `norm: linf`",
                args.span("scale"),
            )
            .label("every coordinate is already bounded alone")
            .help("under linf, per-token and absolute balls are the same: use `scale: absolute`"),
        );
    }
    let id = c.add_node(
        Op::Adversarial(ops::Adversarial {
            latents,
            budget,
            count,
            steps,
            init,
            norm,
            scale,
        }),
        NodeInfo::Variants,
        Some(vec![count]),
        args.call,
    );
    Value::Node {
        id,
        ty: Ty::Variants,
    }
}
