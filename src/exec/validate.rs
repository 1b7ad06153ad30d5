//! What `mkedsl run` refuses before any tensor exists, named with the recipe line it comes from.
//!
//! Every operation the planner can emit runs as REFERENCE.md §9 says — all seventeen ops are
//! implemented — except two shapes the checker accepts but the executor cannot honour, which are
//! rejected here rather than skipped or approximated: `rank_align` over a `hidden(...)` of an
//! embedding or of several layers (ASAM reads one edit layer), and `remember` of a memory that no
//! `latent_icl` reads (it could have no effect).

use crate::diagnostics::{Diag, Diagnostics};
use crate::plan::{Plan, Step};
use crate::sema::{LossKind, Op, Origin};
use crate::source::{SourceId, SourceMap, Span};

/// Why a step cannot run in this version, if it cannot.
pub fn unsupported(step: &Step, plan: &Plan) -> Option<(String, String)> {
    match &step.op {
        Op::Remember { memory } => {
            let read = plan.steps.iter().any(|s| {
                matches!(&s.op, Op::LatentIcl { memory: m, .. } if m == memory)
            });
            (!read).then(|| {
                (
                    format!(
                        "`remember` adds the edit to memory {memory}, but no `latent_icl` reads that memory, so it would have no effect"
                    ),
                    "attach `latent_icl(..., memory: ...)` on the same memory, or drop `remember`".to_string(),
                )
            })
        }
        Op::Loss { terms } => terms.iter().find_map(|t| match &t.kind {
            LossKind::RankAlign { hidden, .. } => {
                let layers = hidden.stream.layers.as_ref().and_then(|l| l.count());
                if hidden.stream.layers.is_none() {
                    Some((
                        format!(
                            "`rank_align` over `hidden({})` is not executable in this version",
                            hidden.stream.path
                        ),
                        "read the hidden state inside a decoder layer, e.g. `hidden(layer(-1).output, at: last_prompt)`".into(),
                    ))
                } else if layers != Some(1) {
                    Some((
                        format!(
                            "`rank_align` over `hidden({})`, a stream of several layers, is not executable in this version",
                            hidden.stream.path
                        ),
                        "read the hidden state of one layer, e.g. `hidden(layer(-1).output, at: last_prompt)`".into(),
                    ))
                } else {
                    None
                }
            }
            _ => None,
        }),
        _ => None,
    }
}

/// Checks every step; all refusals are reported together.
pub fn validate(plan: &Plan, sources: &SourceMap) -> Result<(), Diagnostics> {
    let diags: Vec<Diag> = plan
        .steps
        .iter()
        .filter_map(|step| {
            let (message, help) = unsupported(step, plan)?;
            Some(
                at_origin(
                    sources,
                    &step.origin,
                    "mkedsl::exec::not_executable",
                    message,
                )
                .label(format!("step {} `{}`", step.id, step.op.name()))
                .help(help),
            )
        })
        .collect();
    match Diagnostics::from_vec(diags) {
        Some(d) => Err(d),
        None => Ok(()),
    }
}

/// A diagnostic pointing at the recipe line a step was written on (the whole line from its
/// column), or an unplaced one if the origin names no loaded source.
pub fn at_origin(
    sources: &SourceMap,
    origin: &Origin,
    code: &'static str,
    message: String,
) -> Diag {
    match span_of(sources, &origin.at) {
        Some(span) => Diag::error(code, message, span),
        None => Diag::unplaced(code, format!("{message} (at {})", origin.at)),
    }
}

/// The span of `file:line:column` to the end of that line.
fn span_of(sources: &SourceMap, at: &str) -> Option<Span> {
    let mut parts = at.rsplitn(3, ':');
    let column: usize = parts.next()?.parse().ok()?;
    let line: usize = parts.next()?.parse().ok()?;
    let name = parts.next()?;
    let id = (0u32..)
        .map(SourceId)
        .take_while(|id| sources.get(*id).is_some())
        .find(|id| sources.name(*id) == name)?;
    let text = sources.text(id);
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.checked_sub(1)?)
        .map(str::len)
        .sum();
    let line_text = text.get(line_start..)?.lines().next().unwrap_or("");
    let start = line_start
        + line_text
            .char_indices()
            .nth(column.saturating_sub(1))
            .map_or(0, |(i, _)| i);
    let end = line_start + line_text.len();
    Some(Span::new(id, start, end.max(start)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_map_back_to_the_recipe_line() {
        let mut sources = SourceMap::new();
        let id = sources.add("r.edit", "first line\n  let x = y(1)\nlast", false);
        let span = span_of(&sources, "r.edit:2:3").unwrap();
        assert_eq!(sources.slice(span), "let x = y(1)");
        assert_eq!(span.source, id);
        assert!(span_of(&sources, "other.edit:2:3").is_none());
        assert!(span_of(&sources, "r.edit:x:3").is_none());
    }
}
