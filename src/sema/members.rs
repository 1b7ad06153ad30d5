//! Member access: `layer(1).mlp.down_proj.input`, `embed.vision`, `ab.B`, `ab.B.input`.

use super::checker::{AdapterKind, Checker, NodeInfo};
use super::program::{AdapterParam, Param, ParamOwner};
use super::site::{ComponentKind, ComponentSite, Proj, StreamPoint};
use super::types::Ty;
use super::value::Value;
use crate::diagnostics::{did_you_mean, Diag};
use crate::source::Span;
use crate::syntax::ast::Ident;

impl Checker<'_> {
    pub(super) fn member(&mut self, base: Value, name: &Ident, span: Span) -> Value {
        let member = name.name.as_str();
        let (found, available): (Option<Value>, Vec<&str>) = match &base {
            Value::Poison => return Value::Poison,
            Value::Layer(layers) => {
                let v = match member {
                    "attn" => Some(Value::Component(ComponentSite {
                        layers: layers.clone(),
                        kind: ComponentKind::Attn,
                    })),
                    "mlp" => Some(Value::Component(ComponentSite {
                        layers: layers.clone(),
                        kind: ComponentKind::Mlp,
                    })),
                    "input" => Some(Value::Stream(self.stream(
                        StreamPoint::LayerInput,
                        Some(layers.clone()),
                        format!("{layers}.input"),
                    ))),
                    "output" => Some(Value::Stream(self.stream(
                        StreamPoint::LayerOutput,
                        Some(layers.clone()),
                        format!("{layers}.output"),
                    ))),
                    _ => None,
                };
                (v, vec!["attn", "mlp", "input", "output"])
            }
            Value::Component(c) => {
                let projs: &[Proj] = c.kind.projections();
                let streams: &[(&str, StreamPoint)] = match c.kind {
                    ComponentKind::Attn => &[
                        ("input", StreamPoint::AttnInput),
                        ("output", StreamPoint::AttnOutput),
                    ],
                    ComponentKind::Mlp => &[
                        ("input", StreamPoint::MlpInput),
                        ("act", StreamPoint::MlpAct),
                        ("output", StreamPoint::MlpOutput),
                    ],
                };
                let v = if let Some(p) = projs.iter().find(|p| p.name() == member) {
                    Some(Value::Linear(self.linear(c.layers.clone(), *p)))
                } else {
                    streams
                        .iter()
                        .find(|(n, _)| *n == member)
                        .map(|(n, point)| {
                            Value::Stream(self.stream(
                                *point,
                                Some(c.layers.clone()),
                                format!("{c}.{n}"),
                            ))
                        })
                };
                let mut names: Vec<&str> = projs.iter().map(|p| p.name()).collect();
                names.extend(streams.iter().map(|(n, _)| *n));
                (v, names)
            }
            Value::Linear(site) => {
                let v = match member {
                    "input" => Some(Value::Stream(self.stream(
                        StreamPoint::LinearInput { proj: site.proj },
                        Some(site.layers.clone()),
                        format!("{site}.input"),
                    ))),
                    "output" => Some(Value::Stream(self.stream(
                        StreamPoint::LinearOutput { proj: site.proj },
                        Some(site.layers.clone()),
                        format!("{site}.output"),
                    ))),
                    "weight" => Some(Value::Param(Param {
                        path: format!("{site}.weight"),
                        owner: ParamOwner::Weight { site: site.clone() },
                        input: Some(self.stream(
                            StreamPoint::LinearInput { proj: site.proj },
                            Some(site.layers.clone()),
                            format!("{site}.input"),
                        )),
                        shape: match (site.dout, site.din) {
                            (Some(o), Some(i)) => Some(vec![o, i]),
                            _ => None,
                        },
                    })),
                    _ => None,
                };
                (v, vec!["input", "output", "weight"])
            }
            Value::Embed => {
                let v = match member {
                    "vision" => Some(Value::Stream(self.stream(
                        StreamPoint::EmbedVision,
                        None,
                        "embed.vision".into(),
                    ))),
                    "text" => Some(Value::Stream(self.stream(
                        StreamPoint::EmbedText,
                        None,
                        "embed.text".into(),
                    ))),
                    _ => None,
                };
                (v, vec!["vision", "text"])
            }
            Value::Node {
                id,
                ty: Ty::Adapter,
            } => {
                let (kind, params) = match self.node_info(*id) {
                    Some(NodeInfo::Adapter { kind, params }) => (kind.clone(), params.clone()),
                    _ => return Value::Poison,
                };
                let names: Vec<&str> = params
                    .iter()
                    .filter_map(|p| match p.owner {
                        ParamOwner::Adapter { name, .. } => Some(name.name()),
                        _ => None,
                    })
                    .collect();
                let v = params
                    .iter()
                    .find(|p| matches!(p.owner, ParamOwner::Adapter { name, .. } if name.name() == member))
                    .cloned()
                    .map(Value::Param);
                if v.is_none() && matches!(kind, AdapterKind::LatentIcl { .. }) {
                    return self.error(
                        Diag::error(
                            "mkedsl::member::unknown",
                            format!("a latent_icl adapter has no member `{member}`"),
                            name.span,
                        )
                        .label("no members")
                        .help("latent_icl has no trainable tensors"),
                    );
                }
                (v, names)
            }
            Value::Param(p) => {
                let v = match member {
                    "input" => p.input.clone().map(Value::Stream),
                    _ => None,
                };
                let v = match (v, member, &p.owner) {
                    (
                        None,
                        "input",
                        ParamOwner::Adapter {
                            name: AdapterParam::KeyBias | AdapterParam::ZetaMap,
                            ..
                        },
                    ) => {
                        return self.error(
                            Diag::error(
                                "mkedsl::member::no_input",
                                format!("`{}` multiplies no activation", p.path),
                                span,
                            )
                            .label("has no `.input`")
                            .help("only weight matrices have an input stream"),
                        );
                    }
                    (v, _, _) => v,
                };
                (v, vec!["input"])
            }
            other => {
                let ty = other.ty();
                return self.error(
                    Diag::error("mkedsl::member::none", format!("{} has no members", ty.a()), name.span)
                        .label(format!("`.{member}` on {}", ty.a()))
                        .help("members exist on sites (`layer(1).mlp`), `embed`, adapters and their parameters"),
                );
            }
        };
        match found {
            Some(v) => v,
            None => {
                let on = describe(&base);
                let mut diag = Diag::error(
                    "mkedsl::member::unknown",
                    format!("{on} has no member `{member}`"),
                    name.span,
                )
                .label("unknown member");
                diag = match did_you_mean(member, available.iter().copied()) {
                    Some(best) => diag.help(format!("did you mean `{best}`?")),
                    None => diag.help(format!(
                        "its members are {}",
                        available
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                };
                self.error(diag)
            }
        }
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Layer(l) => format!("`{l}`"),
        Value::Component(c) => format!("`{c}`"),
        Value::Linear(l) => format!("`{l}`"),
        Value::Embed => "`embed`".into(),
        Value::Param(p) => format!("`{}`", p.path),
        Value::Node { id, .. } => format!("adapter {id}"),
        other => other.ty().a(),
    }
}
