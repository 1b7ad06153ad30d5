//! Values the checker computes while it walks a recipe.
//!
//! The checker evaluates everything that can be known before any tensor exists: numbers, sites,
//! data specifications, losses as weighted sums. What only the executor can compute (a space, an
//! adapter, a set of variants) is a [`Value::Node`]: a reference to the program node that will
//! produce it.

use super::program::{
    Alpha, DataSpec, HiddenSpec, LoraInit, LossTerm, NodeId, Optimizer, Param, Perturbation,
};
use super::site::{ComponentSite, Layers, LinearSite, Stream};
use super::types::Ty;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    /// An enum member (`random`, `detached`, `rel`), checked by whoever receives it.
    Symbol(String),
    Range {
        start: Option<i64>,
        end: Option<i64>,
    },
    List(Vec<Value>),
    Layer(Layers),
    Component(ComponentSite),
    Linear(LinearSite),
    Stream(Stream),
    Embed,
    Param(Param),
    /// A runtime result: `ty` is one of Covariance, Space, Adapter, Variants, Memory, Encoders,
    /// Direction.
    Node {
        id: NodeId,
        ty: Ty,
    },
    Data(DataSpec),
    Triplets(DataSpec),
    Perturbation(Perturbation),
    Init(LoraInit),
    Gate(Alpha),
    Hidden(HiddenSpec),
    Loss(Vec<LossTerm>),
    Optimizer(Optimizer),
    Target,
    Unit,
    /// The result of an expression that already produced a diagnostic.
    Poison,
}

impl Value {
    pub fn ty(&self) -> Ty {
        match self {
            Value::Int(_) => Ty::Int,
            Value::Float(_) => Ty::Float,
            Value::Bool(_) => Ty::Bool,
            Value::Str(_) => Ty::Str,
            Value::Symbol(_) => Ty::Symbol,
            Value::Range { .. } => Ty::Range,
            Value::List(items) => {
                let mut elem = Ty::Any;
                for item in items {
                    let t = item.ty();
                    if elem == Ty::Any || (elem == Ty::Int && t == Ty::Float) {
                        elem = t;
                    } else if elem == Ty::Adapter && t == Ty::Param {
                        elem = Ty::Param;
                    }
                }
                Ty::List(Box::new(elem))
            }
            Value::Layer(_) => Ty::Layer,
            Value::Component(_) => Ty::Component,
            Value::Linear(_) => Ty::Linear,
            Value::Stream(_) => Ty::Stream,
            Value::Embed => Ty::Embed,
            Value::Param(_) => Ty::Param,
            Value::Node { ty, .. } => ty.clone(),
            Value::Data(_) => Ty::Data,
            Value::Triplets(_) => Ty::Triplets,
            Value::Perturbation(_) => Ty::Perturbation,
            Value::Init(_) => Ty::Init,
            Value::Gate(_) => Ty::Gate,
            Value::Hidden(_) => Ty::Hidden,
            Value::Loss(_) => Ty::Loss,
            Value::Optimizer(_) => Ty::Optimizer,
            Value::Target => Ty::Target,
            Value::Unit => Ty::Unit,
            Value::Poison => Ty::Any,
        }
    }

    pub fn is_poison(&self) -> bool {
        match self {
            Value::Poison => true,
            Value::List(items) => items.iter().any(Value::is_poison),
            _ => false,
        }
    }

    /// The node this value refers to, if it is a runtime result.
    pub fn node(&self) -> Option<NodeId> {
        match self {
            Value::Node { id, .. } => Some(*id),
            _ => None,
        }
    }
}
