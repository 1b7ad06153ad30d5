//! Adapters: LoRA (ELoRA, LoRA-Null), UniKE's extra FFN neurons and latent in-context editing.

use super::Builtin;
use crate::diagnostics::Diag;
use crate::sema::args::{Accept, Args, Dflt, Formal};
use crate::sema::checker::{AdapterKind, Checker, NodeInfo};
use crate::sema::ops;
use crate::sema::program::{AdapterParam, Alpha, LoraInit, Op, Param, ParamOwner, Regulation};
use crate::sema::site::{ComponentKind, ComponentSite, StreamPoint};
use crate::sema::types::Ty;
use crate::sema::value::Value;

pub(super) const BUILTINS: &[Builtin] = &[
    Builtin {
        name: "lora",
        summary: "a LoRA adapter W + (alpha/rank)·BA on a projection",
        params: &[
            Formal { name: "site", accept: Accept::Ty(Ty::Linear), default: Dflt::Required },
            Formal { name: "rank", accept: Accept::Ty(Ty::Int), default: Dflt::Required },
            Formal { name: "alpha", accept: Accept::Ty(Ty::Float), default: Dflt::SameAs("rank") },
            Formal { name: "init", accept: Accept::SymbolsOr(&["kaiming"], Ty::Init), default: Dflt::Symbol("kaiming") },
        ],
        returns: Ty::Adapter,
        reads_edit: false,
        attaches: true,
        run: lora,
    },
    Builtin {
        name: "null_space_svd",
        summary: "LoRA init from the top-r SVD of W projected on a space, then W ← W − (alpha/rank)·BA (ELoRA Eq. 8)",
        params: &[Formal { name: "space", accept: Accept::Ty(Ty::Space), default: Dflt::Required }],
        returns: Ty::Init,
        reads_edit: false,
        attaches: false,
        run: null_space_svd,
    },
    Builtin {
        name: "extra_neurons",
        summary: "UniKE's extra key-value pairs in the MLP (Eq. 3), optionally regulated by ζ (Eq. 6)",
        params: &[
            Formal { name: "site", accept: Accept::Either(Ty::Component, Ty::Layer), default: Dflt::Required },
            Formal { name: "count", accept: Accept::Ty(Ty::Int), default: Dflt::Required },
            Formal { name: "regulate", accept: Accept::Ty(Ty::Direction), default: Dflt::Optional },
            Formal { name: "beta", accept: Accept::Ty(Ty::Float), default: Dflt::Optional },
        ],
        returns: Ty::Adapter,
        reads_edit: false,
        attaches: true,
        run: extra_neurons,
    },
    Builtin {
        name: "latent_icl",
        summary: "UniKE's latent in-context editing: top-k memory retrieval shifts the attention output (Eq. 2, 7)",
        params: &[
            Formal { name: "site", accept: Accept::Ty(Ty::Stream), default: Dflt::Required },
            Formal { name: "memory", accept: Accept::Ty(Ty::Memory), default: Dflt::Required },
            Formal { name: "top_k", accept: Accept::Ty(Ty::Int), default: Dflt::Required },
            Formal { name: "alpha", accept: Accept::Either(Ty::Float, Ty::Gate), default: Dflt::Required },
        ],
        returns: Ty::Adapter,
        reads_edit: false,
        attaches: true,
        run: latent_icl,
    },
    Builtin {
        name: "semantic_gate",
        summary: "α from the semantic encoder: similarity of retrieved knowledge and input (UniKE Eq. 7)",
        params: &[Formal { name: "encoders", accept: Accept::Ty(Ty::Encoders), default: Dflt::Required }],
        returns: Ty::Gate,
        reads_edit: false,
        attaches: false,
        run: semantic_gate,
    },
];

fn lora(c: &mut Checker<'_>, args: &Args) -> Value {
    let Value::Linear(site) = args.value("site") else {
        return Value::Poison;
    };
    let Some(rank) = c.at_least(
        args,
        "rank",
        1,
        "a LoRA adapter has rank ≥ 1 (the papers use 16 to 128)",
    ) else {
        return Value::Poison;
    };
    let limit = match (site.din, site.dout) {
        (Some(i), Some(o)) => Some(i.min(o)),
        _ => None,
    };
    if !c.not_above(
        rank,
        limit,
        args.span("rank"),
        "LoRA rank",
        format!(
            "`{site}` is {}×{}; BA has rank at most min(dout, din)",
            site.dout.unwrap_or(0),
            site.din.unwrap_or(0)
        ),
    ) {
        return Value::Poison;
    }
    let Some(alpha) = c.positive(
        args,
        "alpha",
        "LoRA scales BA by alpha/rank; alpha is positive (LoRA baseline: 32)",
    ) else {
        return Value::Poison;
    };
    let input = c.stream(
        StreamPoint::LinearInput { proj: site.proj },
        Some(site.layers.clone()),
        format!("{site}.input"),
    );
    let init = match args.value("init") {
        Value::Symbol(_) => LoraInit::Kaiming,
        Value::Init(LoraInit::NullSpaceSvd { space }) => {
            let (stream, space_rank) = match c.node_info(space) {
                Some(NodeInfo::Space { stream, rank }) => (stream.clone(), *rank),
                _ => return Value::Poison,
            };
            if !c.space_fits_input(
                &stream,
                &input,
                args.span("init"),
                &format!("{site}.weight"),
            ) {
                return Value::Poison;
            }
            if !c.not_above(
                rank,
                space_rank,
                args.span("rank"),
                "LoRA rank",
                "W·P has rank at most the space's rank, so the extra LoRA components would be zero"
                    .to_string(),
            ) {
                return Value::Poison;
            }
            LoraInit::NullSpaceSvd { space }
        }
        _ => return Value::Poison,
    };
    let id = c.next_id();
    let mid = {
        let mut s = c.stream(
            StreamPoint::LoraMid { adapter: id },
            Some(site.layers.clone()),
            format!("{site}.lora.B.input"),
        );
        s.width = Some(rank);
        s
    };
    let params = vec![
        Param {
            path: format!("{id}.A"),
            owner: ParamOwner::Adapter {
                adapter: id,
                name: AdapterParam::A,
            },
            input: Some(input),
            shape: site.din.map(|d| vec![rank, d]),
        },
        Param {
            path: format!("{id}.B"),
            owner: ParamOwner::Adapter {
                adapter: id,
                name: AdapterParam::B,
            },
            input: Some(mid),
            shape: site.dout.map(|d| vec![d, rank]),
        },
    ];
    let got = c.add_node(
        Op::Lora(ops::Lora {
            site,
            rank,
            alpha,
            init,
            params: params.clone(),
        }),
        NodeInfo::Adapter {
            kind: AdapterKind::Lora { rank },
            params,
        },
        None,
        args.call,
    );
    Value::Node {
        id: got,
        ty: Ty::Adapter,
    }
}

fn null_space_svd(c: &mut Checker<'_>, args: &Args) -> Value {
    match c.node_arg(args, "space") {
        Some(space) => Value::Init(LoraInit::NullSpaceSvd { space }),
        None => Value::Poison,
    }
}

fn extra_neurons(c: &mut Checker<'_>, args: &Args) -> Value {
    let site = match args.value("site") {
        Value::Component(ComponentSite {
            kind: ComponentKind::Mlp,
            layers,
        }) => ComponentSite {
            kind: ComponentKind::Mlp,
            layers,
        },
        Value::Layer(layers) => ComponentSite {
            kind: ComponentKind::Mlp,
            layers,
        },
        Value::Component(other) => {
            return c.error(
                Diag::error(
                    "mkedsl::site::not_mlp",
                    format!("extra neurons live in an MLP, not in `{other}`"),
                    args.span("site"),
                )
                .label("attention has no key-value memory of this kind")
                .help("use `.mlp` (UniKE adds key-value pairs to the FFN)"),
            )
        }
        _ => return Value::Poison,
    };
    let Some(count) = c.at_least(
        args,
        "count",
        1,
        "add at least one key-value pair (UniKE: 10)",
    ) else {
        return Value::Poison;
    };
    let regulate = match (
        args.get("regulate").map(|b| b.value.clone()),
        args.has("beta"),
    ) {
        (Some(Value::Node { id, .. }), true) => {
            let Some(beta) = c.positive(
                args,
                "beta",
                "β scales ζ′ added to the extra values (Eq. 6)",
            ) else {
                return Value::Poison;
            };
            if let Some(NodeInfo::Direction {
                layers: Some(dl), ..
            }) = c.node_info(id).cloned()
            {
                if !site.layers.within(&dl) {
                    return c.error(
                        Diag::error(
                            "mkedsl::site::direction_layers",
                            format!("ζ is computed at {dl} but the extra neurons sit at {}", site.layers),
                            args.span("regulate"),
                        )
                        .label("direction from other layers")
                        .help("build the memory (and its encoders) at the layers that get extra neurons"),
                    );
                }
            }
            Some(Regulation {
                direction: id,
                beta,
            })
        }
        (Some(Value::Node { .. }), false) => {
            return c.error(
                Diag::error(
                    "mkedsl::arg::missing",
                    "`regulate` needs `beta`, the weight of ζ′",
                    args.span("regulate"),
                )
                .label("regulated without a weight")
                .help("add `beta: ...` (Eq. 6: W_V^extra + β·ζ′)"),
            )
        }
        (Some(_), _) => return Value::Poison,
        (None, true) => {
            return c.error(
                Diag::error(
                    "mkedsl::arg::unused",
                    "`beta` only takes effect with `regulate`",
                    args.span("beta"),
                )
                .label("nothing to scale")
                .help("add `regulate: truth_direction(ENCODERS)` or remove `beta`"),
            )
        }
        (None, false) => None,
    };
    let direction_width = regulate.and_then(|r| match c.node_info(r.direction) {
        Some(NodeInfo::Direction { width, .. }) => Some(*width),
        _ => None,
    });
    let id = c.next_id();
    let hidden = c.dims.map(|d| d.hidden);
    let input = c.stream(
        StreamPoint::MlpInput,
        Some(site.layers.clone()),
        format!("{site}.input"),
    );
    let mut act = c.stream(
        StreamPoint::ExtraAct { adapter: id },
        Some(site.layers.clone()),
        format!("{site}.extra.act"),
    );
    act.width = Some(count);
    let mut params = vec![
        Param {
            path: format!("{id}.keys"),
            owner: ParamOwner::Adapter {
                adapter: id,
                name: AdapterParam::Keys,
            },
            input: Some(input),
            shape: hidden.map(|h| vec![count, h]),
        },
        Param {
            path: format!("{id}.key_bias"),
            owner: ParamOwner::Adapter {
                adapter: id,
                name: AdapterParam::KeyBias,
            },
            input: None,
            shape: Some(vec![count]),
        },
        Param {
            path: format!("{id}.values"),
            owner: ParamOwner::Adapter {
                adapter: id,
                name: AdapterParam::Values,
            },
            input: Some(act),
            shape: hidden.map(|h| vec![h, count]),
        },
    ];
    if regulate.is_some() {
        params.push(Param {
            path: format!("{id}.zeta_map"),
            owner: ParamOwner::Adapter {
                adapter: id,
                name: AdapterParam::ZetaMap,
            },
            input: None,
            shape: match (hidden, direction_width) {
                (Some(h), Some(w)) => Some(vec![h, w]),
                _ => None,
            },
        });
    }
    let got = c.add_node(
        Op::ExtraNeurons(ops::ExtraNeurons {
            site,
            count,
            regulate,
            params: params.clone(),
        }),
        NodeInfo::Adapter {
            kind: AdapterKind::ExtraNeurons,
            params,
        },
        None,
        args.call,
    );
    Value::Node {
        id: got,
        ty: Ty::Adapter,
    }
}

fn latent_icl(c: &mut Checker<'_>, args: &Args) -> Value {
    let Value::Stream(site) = args.value("site") else {
        return Value::Poison;
    };
    if site.point.canonical() != StreamPoint::AttnOutput {
        return c.error(
            Diag::error(
                "mkedsl::site::not_attn_output",
                format!("latent in-context editing shifts `attn.output`, not `{site}`"),
                args.span("site"),
            )
            .label("not an attention output")
            .help("pass `LAYERS.attn.output` (UniKE Eq. 2 shifts the self-attention output)"),
        );
    }
    let Some(memory) = c.node_arg(args, "memory") else {
        return Value::Poison;
    };
    let Some(NodeInfo::Memory { at, entries }) = c.node_info(memory).cloned() else {
        return Value::Poison;
    };
    if at.point.canonical() != StreamPoint::LayerInput {
        return c.error(
            Diag::error(
                "mkedsl::site::memory_stream",
                format!("latent in-context editing retrieves with the layer input, but this memory holds `{at}`"),
                args.span("memory"),
            )
            .label("memory of another stream")
            .help("build the memory at `LAYERS.input`: UniKE's keys and attended states are pre-attention hidden states (§3.2)"),
        );
    }
    if let (Some(ml), Some(layers)) = (at.layers.as_ref(), site.layers.as_ref()) {
        if !layers.within(ml) {
            return c.error(
                Diag::error(
                    "mkedsl::site::memory_layers",
                    format!("the memory holds states of {ml} but the shift is at {layers}"),
                    args.span("memory"),
                )
                .label("memory from other layers")
                .help("build the memory at the layers where the attention output is shifted"),
            );
        }
    }
    let Some(top_k) = c.at_least(
        args,
        "top_k",
        1,
        "retrieve at least one memory entry (UniKE: 40)",
    ) else {
        return Value::Poison;
    };
    if !c.not_above(
        top_k,
        Some(entries),
        args.span("top_k"),
        "top_k",
        format!("the memory starts with {entries} triplets; retrieve at most that many, or build it from more"),
    ) {
        return Value::Poison;
    }
    let alpha = match args.value("alpha") {
        Value::Gate(Alpha::SemanticGate { encoders }) => {
            if let Some(NodeInfo::Encoders {
                memory: trained_on, ..
            }) = c.node_info(encoders)
            {
                if *trained_on != memory {
                    return c.error(
                        Diag::error(
                            "mkedsl::arg::gate_memory",
                            "the gate's encoders were trained on another memory",
                            args.span("alpha"),
                        )
                        .label("encoders of a different memory")
                        .help("train the encoders on the memory this adapter retrieves from"),
                    );
                }
            }
            Alpha::SemanticGate { encoders }
        }
        Value::Float(_) | Value::Int(_) => {
            match c.within(
                args,
                "alpha",
                0.0,
                1.0,
                false,
                "α mixes the original and retrieved states: 0 ≤ α ≤ 1",
            ) {
                Some(value) => Alpha::Fixed { value },
                None => return Value::Poison,
            }
        }
        _ => return Value::Poison,
    };
    let layers = site.layers.clone();
    let id = c.add_node(
        Op::LatentIcl(ops::LatentIcl {
            site,
            memory,
            top_k,
            alpha,
        }),
        NodeInfo::Adapter {
            kind: AdapterKind::LatentIcl { layers },
            params: Vec::new(),
        },
        None,
        args.call,
    );
    Value::Node {
        id,
        ty: Ty::Adapter,
    }
}

fn semantic_gate(c: &mut Checker<'_>, args: &Args) -> Value {
    match c.node_arg(args, "encoders") {
        Some(encoders) => Value::Gate(Alpha::SemanticGate { encoders }),
        None => Value::Poison,
    }
}
