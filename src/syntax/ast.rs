//! The syntax tree: what the recipe says, with a span on every node and no meaning attached yet.

use serde::Serialize;

use crate::source::{SourceId, Span};

/// One parsed file: a recipe or a stdlib module.
#[derive(Debug, Clone, Serialize)]
pub struct Module {
    pub source: SourceId,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, Serialize)]
pub enum Item {
    Header(Header),
    Use(UseDecl),
    Param(ParamDecl),
    Fn(FnDef),
    Stmt(Stmt),
}

/// `recipe "Name" { key: value, ... }`
#[derive(Debug, Clone, Serialize)]
pub struct Header {
    pub name: String,
    pub name_span: Span,
    pub fields: Vec<Field>,
    pub span: Span,
}

/// `key: value` in a recipe header.
#[derive(Debug, Clone, Serialize)]
pub struct Field {
    pub key: Ident,
    pub value: Expr,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

/// `param lr = 1.5e-3`: a named literal of the recipe, which `--set lr=VALUE` replaces.
#[derive(Debug, Clone, Serialize)]
pub struct ParamDecl {
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

/// `NAME=VALUE` from the command line's `--set`, parsed in a source of its own so diagnostics
/// can point into it.
#[derive(Debug, Clone, Serialize)]
pub struct SetArg {
    pub name: Ident,
    pub value: Expr,
}

/// `use std.lora`
#[derive(Debug, Clone, Serialize)]
pub struct UseDecl {
    pub path: Vec<Ident>,
    pub span: Span,
}

/// `fn name(p: Type, q: Type = default) -> Type { ... }`
#[derive(Debug, Clone, Serialize)]
pub struct FnDef {
    pub name: Ident,
    /// The `##` lines above the function, without the `##`.
    pub doc: Vec<String>,
    pub params: Vec<FnParam>,
    pub ret: Option<TypeExpr>,
    pub body: Block,
    pub span: Span,
}

#[derive(Debug, Clone, Serialize)]
pub struct FnParam {
    pub name: Ident,
    pub ty: TypeExpr,
    pub default: Option<Expr>,
    pub span: Span,
}

/// `Space`, `List<Stream>`
#[derive(Debug, Clone, Serialize)]
pub struct TypeExpr {
    pub name: Ident,
    pub arg: Option<Box<TypeExpr>>,
    pub span: Span,
}

#[derive(Debug, Clone, Serialize)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

#[derive(Debug, Clone, Serialize)]
pub struct Stmt {
    pub kind: StmtKind,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::IntoStaticStr)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ProjectKind {
    /// The gradient, before the optimiser sees it.
    Grad,
    /// The optimiser's step, before it is applied.
    Update,
}

#[derive(Debug, Clone, Serialize)]
pub enum StmtKind {
    Let {
        name: Ident,
        ty: Option<TypeExpr>,
        value: Expr,
    },
    Freeze(Expr),
    PerEdit(Block),
    Train {
        target: Expr,
        steps: Expr,
        optimizer: Expr,
        body: Block,
    },
    Loss(Expr),
    Project {
        kind: ProjectKind,
        kind_span: Span,
        param: Expr,
        space: Expr,
        scale: Option<Expr>,
    },
    Evaluate(Expr),
    Expr(Expr),
}

impl StmtKind {
    /// The expressions written in this statement itself, in source order; a nested block's
    /// statements are reached through [`StmtKind::block`]. Every pass that walks statements
    /// (call collection, parameter substitution, scope checks) visits them through these two,
    /// so a new statement form is added here and nowhere else.
    pub fn exprs(&self) -> Vec<&Expr> {
        match self {
            StmtKind::Let { value, .. } => vec![value],
            StmtKind::Freeze(e) | StmtKind::Loss(e) | StmtKind::Evaluate(e) | StmtKind::Expr(e) => {
                vec![e]
            }
            StmtKind::PerEdit(_) => Vec::new(),
            StmtKind::Train {
                target,
                steps,
                optimizer,
                ..
            } => vec![target, steps, optimizer],
            StmtKind::Project {
                param,
                space,
                scale,
                ..
            } => [Some(param), Some(space), scale.as_ref()]
                .into_iter()
                .flatten()
                .collect(),
        }
    }

    /// [`StmtKind::exprs`], mutably.
    pub fn exprs_mut(&mut self) -> Vec<&mut Expr> {
        match self {
            StmtKind::Let { value, .. } => vec![value],
            StmtKind::Freeze(e) | StmtKind::Loss(e) | StmtKind::Evaluate(e) | StmtKind::Expr(e) => {
                vec![e]
            }
            StmtKind::PerEdit(_) => Vec::new(),
            StmtKind::Train {
                target,
                steps,
                optimizer,
                ..
            } => vec![target, steps, optimizer],
            StmtKind::Project {
                param,
                space,
                scale,
                ..
            } => [Some(param), Some(space), scale.as_mut()]
                .into_iter()
                .flatten()
                .collect(),
        }
    }

    /// The block nested in this statement (`per edit`, a train body).
    pub fn block(&self) -> Option<&Block> {
        match self {
            StmtKind::PerEdit(b) | StmtKind::Train { body: b, .. } => Some(b),
            _ => None,
        }
    }

    /// [`StmtKind::block`], mutably.
    pub fn block_mut(&mut self) -> Option<&mut Block> {
        match self {
            StmtKind::PerEdit(b) | StmtKind::Train { body: b, .. } => Some(b),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

impl Expr {
    /// This expression and every expression inside it, depth first. Iterative rather than
    /// recursive, so a long operator chain cannot exhaust the stack of a checking pass.
    pub fn walk(&self) -> impl Iterator<Item = &Expr> {
        let mut todo = vec![self];
        std::iter::from_fn(move || {
            let e = todo.pop()?;
            match &e.kind {
                ExprKind::Call { args, .. } => todo.extend(args.iter().map(|a| &a.value)),
                ExprKind::List(items) => todo.extend(items.iter()),
                ExprKind::Member { base, .. } | ExprKind::Neg(base) => todo.push(base),
                ExprKind::Binary { lhs, rhs, .. } => {
                    todo.push(lhs);
                    todo.push(rhs);
                }
                _ => {}
            }
            Some(e)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    /// `a..b`, `-4..`, `..3`: Python-style, negative bounds count from the end.
    Range {
        start: Option<i64>,
        end: Option<i64>,
    },
    Ident(String),
    List(Vec<Expr>),
    Call {
        callee: Ident,
        args: Vec<Arg>,
    },
    Member {
        base: Box<Expr>,
        name: Ident,
    },
    Neg(Box<Expr>),
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
}

/// A call argument: positional (`name` is `None`) or named.
#[derive(Debug, Clone, Serialize)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
    pub span: Span,
}
