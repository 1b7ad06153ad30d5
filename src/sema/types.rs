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

/// The types a recipe may name in `let x: T` and in function signatures, with their names: the
/// one table annotations are read from, types are printed with and messages list (`List` takes
/// an element type, `List<T>`).
const NAMED: &[(&str, Option<Ty>)] = &[
    ("Int", Some(Ty::Int)),
    ("Float", Some(Ty::Float)),
    ("Bool", Some(Ty::Bool)),
    ("Str", Some(Ty::Str)),
    ("Symbol", Some(Ty::Symbol)),
    ("Range", Some(Ty::Range)),
    ("List", None),
    ("Layer", Some(Ty::Layer)),
    ("Component", Some(Ty::Component)),
    ("Linear", Some(Ty::Linear)),
    ("Stream", Some(Ty::Stream)),
    ("Param", Some(Ty::Param)),
    ("Adapter", Some(Ty::Adapter)),
    ("Data", Some(Ty::Data)),
    ("Triplets", Some(Ty::Triplets)),
    ("Variants", Some(Ty::Variants)),
    ("Perturbation", Some(Ty::Perturbation)),
    ("Covariance", Some(Ty::Covariance)),
    ("Space", Some(Ty::Space)),
    ("Init", Some(Ty::Init)),
    ("Memory", Some(Ty::Memory)),
    ("Encoders", Some(Ty::Encoders)),
    ("Direction", Some(Ty::Direction)),
    ("Gate", Some(Ty::Gate)),
    ("Hidden", Some(Ty::Hidden)),
    ("Loss", Some(Ty::Loss)),
    ("Optimizer", Some(Ty::Optimizer)),
    ("Target", Some(Ty::Target)),
    ("Unit", Some(Ty::Unit)),
];

/// Every type name a recipe may write, in the order messages list them.
pub fn type_names() -> impl Iterator<Item = &'static str> {
    NAMED.iter().map(|(name, _)| *name)
}

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
        let name = expr.name.name.as_str();
        if name == "List" {
            return match &expr.arg {
                Some(arg) => Ok(Ty::List(Box::new(Ty::from_expr(arg)?))),
                None => Err("List".into()),
            };
        }
        let base = (NAMED.iter())
            .find_map(|(n, ty)| (*n == name).then(|| ty.clone()).flatten())
            .ok_or_else(|| name.to_string())?;
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
            Ty::List(inner) => return write!(f, "List<{inner}>"),
            Ty::Embed => "the `embed` namespace",
            Ty::Any => "any type",
            named => (NAMED.iter())
                .find(|(_, ty)| ty.as_ref() == Some(named))
                .map_or("?", |(name, _)| *name),
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{SourceId, Span};
    use crate::syntax::ast::Ident;

    fn annotation(name: &str, arg: Option<TypeExpr>) -> TypeExpr {
        let span = Span {
            source: SourceId(0),
            start: 0,
            end: name.len(),
        };
        TypeExpr {
            name: Ident {
                name: name.into(),
                span,
            },
            arg: arg.map(Box::new),
            span,
        }
    }

    #[test]
    fn every_type_name_reads_and_prints_as_itself() {
        for name in type_names().filter(|n| *n != "List") {
            let ty = Ty::from_expr(&annotation(name, None)).expect(name);
            assert_eq!(ty.to_string(), name);
        }
        let list = Ty::from_expr(&annotation("List", Some(annotation("Space", None))));
        assert_eq!(list.expect("List<Space>").to_string(), "List<Space>");
        assert_eq!(Ty::from_expr(&annotation("List", None)), Err("List".into()));
        assert_eq!(
            Ty::from_expr(&annotation("Spcae", None)),
            Err("Spcae".into())
        );
        assert_eq!(type_names().count(), 29);
    }
}
