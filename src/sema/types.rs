//! The types a recipe's values can have, and how type annotations are read.

use std::fmt;

use crate::syntax::ast::TypeExpr;

/// A value's type. `Int` widens to `Float`; `Any` stands for "already reported" and matches
/// everything, so one mistake does not cascade into many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ty {
    Int,
    Float,
    Bool,
    Str,
    Symbol,
    Range,
    List(Box<Ty>),
    Layer,
    Component,
    Linear,
    Stream,
    Param,
    Adapter,
    Data,
    Triplets,
    Variants,
    Perturbation,
    Covariance,
    Space,
    Init,
    Memory,
    Encoders,
    Direction,
    Gate,
    Hidden,
    Loss,
    Optimizer,
    Target,
    Unit,
    /// `embed`, the namespace of `embed.vision` and `embed.text`.
    Embed,
    Any,
}

/// The names a recipe may write in `let x: T` and in function signatures.
pub const TYPE_NAMES: &[&str] = &[
    "Int",
    "Float",
    "Bool",
    "Str",
    "Symbol",
    "Range",
    "List",
    "Layer",
    "Component",
    "Linear",
    "Stream",
    "Param",
    "Adapter",
    "Data",
    "Triplets",
    "Variants",
    "Perturbation",
    "Covariance",
    "Space",
    "Init",
    "Memory",
    "Encoders",
    "Direction",
    "Gate",
    "Hidden",
    "Loss",
    "Optimizer",
    "Target",
    "Unit",
];

impl Ty {
    /// Whether a value of type `self` may be used where `expected` is wanted.
    pub fn fits(&self, expected: &Ty) -> bool {
        match (self, expected) {
            (Ty::Any, _) | (_, Ty::Any) => true,
            (Ty::Int, Ty::Float) => true,
            (Ty::List(a), Ty::List(b)) => a.fits(b),
            (a, b) => a == b,
        }
    }

    /// Reads a type annotation; `Err` carries the unknown name.
    pub fn from_expr(expr: &TypeExpr) -> Result<Ty, String> {
        let base = match expr.name.name.as_str() {
            "Int" => Ty::Int,
            "Float" => Ty::Float,
            "Bool" => Ty::Bool,
            "Str" => Ty::Str,
            "Symbol" => Ty::Symbol,
            "Range" => Ty::Range,
            "List" => {
                return match &expr.arg {
                    Some(arg) => Ok(Ty::List(Box::new(Ty::from_expr(arg)?))),
                    None => Err("List".into()),
                }
            }
            "Layer" => Ty::Layer,
            "Component" => Ty::Component,
            "Linear" => Ty::Linear,
            "Stream" => Ty::Stream,
            "Param" => Ty::Param,
            "Adapter" => Ty::Adapter,
            "Data" => Ty::Data,
            "Triplets" => Ty::Triplets,
            "Variants" => Ty::Variants,
            "Perturbation" => Ty::Perturbation,
            "Covariance" => Ty::Covariance,
            "Space" => Ty::Space,
            "Init" => Ty::Init,
            "Memory" => Ty::Memory,
            "Encoders" => Ty::Encoders,
            "Direction" => Ty::Direction,
            "Gate" => Ty::Gate,
            "Hidden" => Ty::Hidden,
            "Loss" => Ty::Loss,
            "Optimizer" => Ty::Optimizer,
            "Target" => Ty::Target,
            "Unit" => Ty::Unit,
            other => return Err(other.to_string()),
        };
        if expr.arg.is_some() {
            return Err(format!("{}<…>", expr.name.name));
        }
        Ok(base)
    }
}

impl Ty {
    /// The type with its indefinite article: "an Int", "a Space".
    pub fn a(&self) -> String {
        let name = self.to_string();
        let vowel = name
            .chars()
            .next()
            .map(|c| "AEIOU".contains(c))
            .unwrap_or(false);
        format!("{} {name}", if vowel { "an" } else { "a" })
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Ty::Int => "Int",
            Ty::Float => "Float",
            Ty::Bool => "Bool",
            Ty::Str => "Str",
            Ty::Symbol => "Symbol",
            Ty::Range => "Range",
            Ty::List(inner) => return write!(f, "List<{inner}>"),
            Ty::Layer => "Layer",
            Ty::Component => "Component",
            Ty::Linear => "Linear",
            Ty::Stream => "Stream",
            Ty::Param => "Param",
            Ty::Adapter => "Adapter",
            Ty::Data => "Data",
            Ty::Triplets => "Triplets",
            Ty::Variants => "Variants",
            Ty::Perturbation => "Perturbation",
            Ty::Covariance => "Covariance",
            Ty::Space => "Space",
            Ty::Init => "Init",
            Ty::Memory => "Memory",
            Ty::Encoders => "Encoders",
            Ty::Direction => "Direction",
            Ty::Gate => "Gate",
            Ty::Hidden => "Hidden",
            Ty::Loss => "Loss",
            Ty::Optimizer => "Optimizer",
            Ty::Target => "Target",
            Ty::Unit => "Unit",
            Ty::Embed => "the `embed` namespace",
            Ty::Any => "any type",
        };
        f.write_str(name)
    }
}
