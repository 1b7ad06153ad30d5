//! Which steps share their forward passes: decided here, once, so the executor only follows it.
//!
//! Every member of a group lists the whole group (itself included); the first member the executor
//! reaches computes all members not yet computed.
//!
//! - Covariances in `prepare` over the same preserve set, each cached (so each sees the unedited
//!   model), accumulate in one pass over the samples. At run time the pass leaves out members
//!   whose result was loaded from the cache.
//! - Knowledge spaces over the same variants, in one stage (and one train body), run the clean
//!   sequence and the variants through the model once; a step that changes the state in between
//!   ends the group, since later spaces must see the changed model.

use super::types::{Stage, Step, StepId};
use crate::sema::ops;
use crate::sema::Op;

pub(super) fn share_passes(steps: &mut [Step]) {
    let mut grouped: Vec<StepId> = Vec::new();
    for i in 0..steps.len() {
        if grouped.contains(&steps[i].id) {
            continue;
        }
        let lead = &steps[i];
        let mut members = vec![lead.id];
        match &lead.op {
            Op::Covariance(ops::Covariance { over, .. })
                if lead.stage == Stage::Prepare && lead.cache.is_some() =>
            {
                for s in &steps[i + 1..] {
                    if let Op::Covariance(ops::Covariance { over: o, .. }) = &s.op {
                        if o == over && s.stage == Stage::Prepare && s.cache.is_some() {
                            members.push(s.id);
                        }
                    }
                }
            }
            Op::KnowledgeSpace(ops::KnowledgeSpace { variants, .. }) => {
                for s in steps[i + 1..]
                    .iter()
                    .filter(|s| s.stage == lead.stage && s.parent == lead.parent)
                {
                    match &s.op {
                        Op::KnowledgeSpace(ops::KnowledgeSpace { variants: v, .. })
                            if v == variants =>
                        {
                            members.push(s.id)
                        }
                        op if op.changes_state() => break,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        if members.len() < 2 {
            continue;
        }
        grouped.extend(members.iter().copied());
        for s in steps.iter_mut().filter(|s| members.contains(&s.id)) {
            s.shares_pass = members.clone();
        }
    }
}
