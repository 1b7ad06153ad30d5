//! The canonical layout: walks the syntax tree, writes each construct in one fixed spelling, and
//! puts every comment back beside the node it was written next to.
//!
//! Layout rules (the whole style guide):
//! - two spaces per block level; one statement per line; at most one blank line in a row, kept
//!   where the author left one, never at the start of a block;
//! - a recipe header with fields has one `key: value,` per line;
//! - a call, list or function signature that does not fit in [`WIDTH`] columns (or has a comment
//!   inside it) puts one argument per line, with a trailing comma; everything else stays on one
//!   line, with single spaces around binary operators and after `,` and `:`;
//! - literals keep their spelling (`1e-2` stays `1e-2`); redundant parentheses go, needed ones
//!   (by precedence) are written;
//! - an own-line comment stays on its own line above the next node, at that node's indentation;
//!   a trailing comment stays at the end of its line, and trailing comments on consecutive lines
//!   are aligned two columns after the longest line of code.

use crate::fmt::comments::Comment;
use crate::source::Span;
use crate::syntax::ast::{
    Block, Expr, ExprKind, FnDef, FnParam, Header, Item, Module, ParamDecl, Stmt, StmtKind,
    TypeExpr, UseDecl,
};

/// The column a line of code should not pass.
pub const WIDTH: usize = 100;
const INDENT: &str = "  ";

/// One output line: code (indentation included) and, perhaps, a trailing comment.
struct Line {
    code: String,
    comment: Option<String>,
}

/// Writes `module` (parsed from `src`, whose comments are `comments`) in the canonical layout.
pub fn print(module: &Module, src: &str, comments: Vec<Comment>) -> String {
    let mut p = Printer {
        src,
        comments,
        next: 0,
        lines: Vec::new(),
        cur: String::new(),
        indent: 0,
        last_end: 0,
        fresh: true,
    };
    for item in &module.items {
        match item {
            Item::Header(h) => p.header(h),
            Item::Use(u) => p.use_decl(u),
            Item::Param(d) => p.param_decl(d),
            Item::Fn(f) => p.fn_def(f),
            Item::Stmt(s) => p.stmt(s),
        }
    }
    p.leading(src.len());
    p.finish()
}

struct Printer<'a> {
    src: &'a str,
    comments: Vec<Comment>,
    /// The first comment not yet written.
    next: usize,
    lines: Vec<Line>,
    /// The line being built (empty: none started).
    cur: String,
    indent: usize,
    /// Source offset up to which everything has been written (for blank-line detection).
    last_end: usize,
    /// At the start of the file or of a block: no blank line goes here.
    fresh: bool,
}

impl Printer<'_> {
    // ---- lines and comments -------------------------------------------------------------------

    fn write(&mut self, text: &str) {
        if self.cur.is_empty() {
            self.cur = INDENT.repeat(self.indent);
        }
        self.cur.push_str(text);
    }

    /// The column the next character would be written at.
    fn column(&self) -> usize {
        if self.cur.is_empty() {
            INDENT.len() * self.indent
        } else {
            width(&self.cur)
        }
    }

    /// Ends the current line, which ends at source offset `at`; a comment that follows `at` on
    /// the same source line (past nothing but spaces, commas and opening brackets) goes with it.
    fn end_line(&mut self, at: usize) {
        let mut comment = None;
        if let Some(c) = self.comments.get(self.next) {
            let between = self.src.get(at..c.start).unwrap_or("x");
            if c.start >= at
                && between
                    .chars()
                    .all(|ch| matches!(ch, ' ' | '\t' | ',' | '{' | '(' | '['))
            {
                comment = Some(c.text(self.src).to_string());
                self.last_end = self.last_end.max(c.end);
                self.next += 1;
            }
        }
        self.push_line(comment);
        self.last_end = self.last_end.max(at);
    }

    fn push_line(&mut self, comment: Option<String>) {
        let code = std::mem::take(&mut self.cur);
        self.lines.push(Line { code, comment });
        self.fresh = false;
    }

    /// Writes, each on its own line, every comment that starts before `pos`.
    fn leading(&mut self, pos: usize) {
        while let Some(c) = self.comments.get(self.next).cloned() {
            if c.start >= pos {
                break;
            }
            if !self.cur.is_empty() {
                self.push_line(None);
            }
            self.blank_before(c.start);
            self.write(c.text(self.src));
            self.push_line(None);
            self.last_end = self.last_end.max(c.end);
            self.next += 1;
        }
    }

    /// A blank line, if the author left one between what was written last and `pos`.
    fn blank_before(&mut self, pos: usize) {
        if self.fresh || pos <= self.last_end {
            return;
        }
        let gap = &self.src[self.last_end..pos];
        let segments: Vec<&str> = gap.split('\n').collect();
        let blank = segments.len() > 2
            && segments[1..segments.len() - 1]
                .iter()
                .any(|s| s.trim().is_empty());
        if blank {
            self.lines.push(Line {
                code: String::new(),
                comment: None,
            });
        }
    }

    /// Before a node that starts a line at `pos`: its leading comments and blank line.
    fn node_start(&mut self, pos: usize) {
        self.leading(pos);
        self.blank_before(pos);
        self.fresh = false;
    }

    fn has_comment(&self, span: Span) -> bool {
        self.comments[self.next..]
            .iter()
            .any(|c| c.start > span.start && c.start < span.end)
    }

    /// The lines, trailing comments aligned within each run of consecutive commented lines.
    fn finish(mut self) -> String {
        while self
            .lines
            .last()
            .is_some_and(|l| l.code.trim().is_empty() && l.comment.is_none())
        {
            self.lines.pop();
        }
        let mut out = String::new();
        let mut i = 0;
        while i < self.lines.len() {
            let mut j = i;
            while j < self.lines.len() && self.lines[j].comment.is_some() {
                j += 1;
            }
            if j == i {
                out.push_str(self.lines[i].code.trim_end());
                out.push('\n');
                i += 1;
                continue;
            }
            let column = self.lines[i..j]
                .iter()
                .map(|l| width(l.code.trim_end()))
                .max()
                .unwrap_or(0)
                + 2;
            for line in &self.lines[i..j] {
                let code = line.code.trim_end();
                out.push_str(code);
                out.push_str(&" ".repeat(column - width(code)));
                out.push_str(line.comment.as_deref().unwrap_or(""));
                out.push('\n');
            }
            i = j;
        }
        out
    }

    // ---- items --------------------------------------------------------------------------------

    fn header(&mut self, h: &Header) {
        self.node_start(h.span.start);
        let name = self.literal(h.name_span);
        self.write(&format!("recipe {name}"));
        if h.fields.is_empty() {
            self.write(" {}");
            self.end_line(h.span.end);
            return;
        }
        self.write(" {");
        self.end_line(h.name_span.end);
        self.indent += 1;
        self.fresh = true;
        for f in &h.fields {
            self.node_start(f.key.span.start);
            self.write(&format!("{}: ", f.key.name));
            self.expr(&f.value, 1);
            self.write(",");
            self.end_line(f.value.span.end);
        }
        self.close(h.span.end);
    }

    /// Comments before the closing `}` at `end - 1`, then the `}` itself.
    fn close(&mut self, end: usize) {
        self.leading(end.saturating_sub(1));
        self.indent -= 1;
        self.write("}");
        self.end_line(end);
    }

    fn use_decl(&mut self, u: &UseDecl) {
        self.node_start(u.span.start);
        let path: Vec<&str> = u.path.iter().map(|i| i.name.as_str()).collect();
        self.write(&format!("use {}", path.join(".")));
        self.end_line(u.span.end);
    }

    fn param_decl(&mut self, d: &ParamDecl) {
        self.node_start(d.span.start);
        self.write(&format!("param {} = ", d.name.name));
        self.expr(&d.value, 0);
        self.end_line(d.span.end);
    }

    fn fn_def(&mut self, f: &FnDef) {
        self.node_start(f.span.start);
        for line in &f.doc {
            self.write(&if line.is_empty() {
                "##".to_string()
            } else {
                format!("## {line}")
            });
            self.push_line(None);
        }
        let params: Vec<String> = f.params.iter().map(|p| self.param(p)).collect();
        let ret = f
            .ret
            .as_ref()
            .map_or(String::new(), |t| format!(" -> {}", type_expr(t)));
        let flat = format!("fn {}({}){ret}", f.name.name, params.join(", "));
        let signature = Span::new(f.span.source, f.name.span.start, f.body.span.start);
        let fits = self.column() + width(&flat) + 2 <= WIDTH && !self.has_comment(signature);
        if fits || f.params.is_empty() {
            self.write(&flat);
            self.block(&f.body);
            return;
        }
        self.write(&format!("fn {}(", f.name.name));
        self.end_line(f.name.span.end + 1);
        self.indent += 1;
        self.fresh = true;
        for (p, text) in f.params.iter().zip(&params) {
            self.node_start(p.span.start);
            self.write(text);
            self.write(",");
            self.end_line(p.span.end);
        }
        self.leading(f.ret.as_ref().map_or(f.body.span.start, |t| t.span.start));
        self.indent -= 1;
        self.write(&format!("){ret}"));
        self.block(&f.body);
    }

    fn param(&self, p: &FnParam) -> String {
        let mut text = format!("{}: {}", p.name.name, type_expr(&p.ty));
        if let Some(d) = &p.default {
            text.push_str(" = ");
            text.push_str(&self.flat(d));
        }
        text
    }

    /// ` { statements }` after whatever opened the block.
    fn block(&mut self, b: &Block) {
        if b.stmts.is_empty() && !self.has_comment(b.span) {
            self.write(" {}");
            self.end_line(b.span.end);
            return;
        }
        self.write(" {");
        self.end_line(b.span.start + 1);
        self.indent += 1;
        self.fresh = true;
        for s in &b.stmts {
            self.stmt(s);
        }
        self.close(b.span.end);
    }

    // ---- statements ---------------------------------------------------------------------------

    fn stmt(&mut self, s: &Stmt) {
        self.node_start(s.span.start);
        match &s.kind {
            StmtKind::Let { name, ty, value } => {
                self.write(&format!("let {}", name.name));
                if let Some(t) = ty {
                    self.write(&format!(": {}", type_expr(t)));
                }
                self.write(" = ");
                self.expr(value, 0);
            }
            StmtKind::Freeze(e) => self.keyword_expr("freeze", e),
            StmtKind::Loss(e) => self.keyword_expr("loss", e),
            StmtKind::Evaluate(e) => self.keyword_expr("evaluate", e),
            StmtKind::Expr(e) => self.expr(e, 0),
            StmtKind::PerEdit(b) => {
                self.write("per edit");
                self.block(b);
                return;
            }
            StmtKind::Train {
                target,
                steps,
                optimizer,
                body,
            } => {
                let (steps_text, opt_text) = (self.flat(steps), self.flat(optimizer));
                self.write("train ");
                let rest = width(&steps_text) + width(&opt_text) + " for  steps with  {".len();
                self.expr(target, rest);
                self.write(&format!(" for {steps_text} steps with "));
                self.expr(optimizer, 2);
                self.block(body);
                return;
            }
            StmtKind::Project {
                kind,
                param,
                space,
                scale,
                ..
            } => {
                let kind: &str = (*kind).into();
                self.write(&format!("project {kind} "));
                self.write(&self.flat(param));
                self.write(" onto ");
                let scale_text = scale
                    .as_ref()
                    .map(|s| format!(" scale: {}", self.flat(s)))
                    .unwrap_or_default();
                self.expr(space, width(&scale_text));
                if let Some(s) = scale {
                    self.write(" scale: ");
                    self.expr(s, 0);
                }
            }
        }
        self.end_line(s.span.end);
    }

    fn keyword_expr(&mut self, keyword: &str, e: &Expr) {
        self.write(keyword);
        self.write(" ");
        self.expr(e, 0);
    }

    // ---- expressions --------------------------------------------------------------------------

    /// Writes `e` at the current column, followed by `suffix` columns of other text on its
    /// line: on one line if it fits and holds no comment, else (a call or list) one argument
    /// per line.
    fn expr(&mut self, e: &Expr, suffix: usize) {
        let flat = self.flat(e);
        let breakable = match &e.kind {
            ExprKind::Call { args, .. } => !args.is_empty(),
            ExprKind::List(items) => !items.is_empty(),
            _ => false,
        };
        let too_wide = self.column() + width(&flat) + suffix > WIDTH;
        if !breakable || !(too_wide || self.has_comment(e.span)) {
            self.write(&flat);
            return;
        }
        let (open_at, close) = match &e.kind {
            ExprKind::Call { callee, .. } => {
                self.write(&format!("{}(", callee.name));
                (callee.span.end + 1, ")")
            }
            _ => {
                self.write("[");
                (self.open_bracket(e.span, '['), "]")
            }
        };
        self.end_line(open_at);
        self.indent += 1;
        self.fresh = true;
        match &e.kind {
            ExprKind::Call { args, .. } => {
                for a in args {
                    self.node_start(a.span.start);
                    if let Some(n) = &a.name {
                        self.write(&format!("{}: ", n.name));
                    }
                    self.expr(&a.value, 1);
                    self.write(",");
                    self.end_line(a.span.end);
                }
            }
            ExprKind::List(items) => {
                for item in items {
                    self.node_start(item.span.start);
                    self.expr(item, 1);
                    self.write(",");
                    self.end_line(item.span.end);
                }
            }
            _ => {}
        }
        self.leading(e.span.end.saturating_sub(1));
        self.indent -= 1;
        self.write(close);
    }

    /// The offset just past the first `open` bracket of `span`.
    fn open_bracket(&self, span: Span, open: char) -> usize {
        self.src[span.start..span.end]
            .find(open)
            .map_or(span.start, |i| span.start + i + 1)
    }

    /// `e` on one line.
    fn flat(&self, e: &Expr) -> String {
        match &e.kind {
            ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Str(_) | ExprKind::Range { .. } => {
                self.literal(e.span)
            }
            ExprKind::Bool(b) => b.to_string(),
            ExprKind::Ident(name) => name.clone(),
            ExprKind::List(items) => {
                let items: Vec<String> = items.iter().map(|i| self.flat(i)).collect();
                format!("[{}]", items.join(", "))
            }
            ExprKind::Call { callee, args } => {
                let args: Vec<String> = args
                    .iter()
                    .map(|a| match &a.name {
                        Some(n) => format!("{}: {}", n.name, self.flat(&a.value)),
                        None => self.flat(&a.value),
                    })
                    .collect();
                format!("{}({})", callee.name, args.join(", "))
            }
            ExprKind::Member { base, name } => {
                // `(1).x` must keep its parentheses: `1.x` is a malformed number.
                let base = match base.kind {
                    ExprKind::Int(_) | ExprKind::Float(_) => format!("({})", self.flat(base)),
                    _ => self.operand(base, ATOM),
                };
                format!("{base}.{}", name.name)
            }
            ExprKind::Neg(x) => format!("-{}", self.operand(x, NEG)),
            ExprKind::Binary { op, lhs, rhs } => {
                let p = precedence(e);
                format!(
                    "{} {} {}",
                    self.operand(lhs, p),
                    op.symbol(),
                    self.operand(rhs, p + 1)
                )
            }
        }
    }

    /// `e` as an operand that binds at least as tightly as `min`, in parentheses if it does not.
    fn operand(&self, e: &Expr, min: u8) -> String {
        if precedence(e) < min {
            format!("({})", self.flat(e))
        } else {
            self.flat(e)
        }
    }

    /// A literal as written, without the parentheses a paren expression's span includes.
    fn literal(&self, span: Span) -> String {
        self.src[span.start..span.end]
            .trim_matches(|c: char| c == '(' || c == ')' || c.is_whitespace())
            .to_string()
    }
}

const SUM: u8 = 1;
const NEG: u8 = 3;
const ATOM: u8 = 4;

/// How tightly an expression binds: sums, products, negation, then everything else.
fn precedence(e: &Expr) -> u8 {
    use crate::syntax::ast::BinOp;
    match &e.kind {
        ExprKind::Binary {
            op: BinOp::Add | BinOp::Sub,
            ..
        } => SUM,
        ExprKind::Binary { .. } => SUM + 1,
        ExprKind::Neg(_) => NEG,
        _ => ATOM,
    }
}

fn type_expr(t: &TypeExpr) -> String {
    match &t.arg {
        Some(arg) => format!("{}<{}>", t.name.name, type_expr(arg)),
        None => t.name.name.clone(),
    }
}

/// Columns a string takes (characters, not bytes).
fn width(s: &str) -> usize {
    s.chars().count()
}
