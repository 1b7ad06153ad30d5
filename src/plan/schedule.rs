//! Stages, hoisting and the final order of steps.
//!
//! A node written at the top level runs once (`prepare`); one written in `per edit` runs once per
//! edit case; one in a train body runs every step. Hoisting moves a `per edit` node to `prepare`
//! when running it once gives the same result as running it per edit:
//! - it does not read the edit case, and none of its inputs stays per edit;
//! - if it only computes (no model read, no state change), that is enough;
//! - if it reads the model, no per-edit state change (training, freezing, attaching) may come
//!   before it in the block, or it would see a different model;
//! - if it changes state, every node before it in the block must have been hoisted too, so the
//!   order of state changes is kept;
//! - it does not attach an adapter: one written in `per edit` is attached per edit (in
//!   sequential editing each edit adds its own).

use std::collections::{HashMap, HashSet};

use super::types::Stage;
use crate::sema::{Block, Node, NodeId};

/// A node with its stage and whether it was hoisted, in execution order, renumbered from 0.
pub(super) struct Scheduled {
    pub node: Node,
    pub stage: Stage,
    pub hoisted: bool,
    pub parent: Option<NodeId>,
}

pub(super) fn schedule(nodes: &[Node]) -> Vec<Scheduled> {
    let mut kept: HashSet<NodeId> = HashSet::new();
    let mut any_kept = false;
    let mut state_kept = false;
    let mut staged: Vec<Scheduled> = Vec::with_capacity(nodes.len());
    for node in nodes {
        let (stage, hoisted, parent) = match node.block {
            Block::Run => (Stage::Prepare, false, None),
            Block::Step { train } => {
                kept.insert(node.id);
                (Stage::PerStep, false, Some(train))
            }
            Block::Edit => {
                let op = &node.op;
                let per_edit_input = op.inputs().iter().any(|i| kept.contains(i));
                let reads_model = op.reads_model();
                let changes = op.changes_state();
                let pure = !reads_model && !changes;
                let order_ok = pure || (changes && !any_kept) || (!changes && !state_kept);
                if !op.reads_edit() && !op.attaches() && !per_edit_input && order_ok {
                    (Stage::Prepare, true, None)
                } else {
                    kept.insert(node.id);
                    any_kept = true;
                    state_kept |= changes;
                    (Stage::PerEdit, false, None)
                }
            }
        };
        staged.push(Scheduled {
            node: node.clone(),
            stage,
            hoisted,
            parent,
        });
    }
    // Prepare first (top level, then hoisted, both in written order), then the edit loop.
    let (mut ordered, rest): (Vec<Scheduled>, Vec<Scheduled>) =
        staged.into_iter().partition(|s| s.stage == Stage::Prepare);
    ordered.extend(rest);
    let renumber: HashMap<NodeId, NodeId> = ordered
        .iter()
        .enumerate()
        .map(|(i, s)| (s.node.id, NodeId(u32::try_from(i).unwrap_or(u32::MAX))))
        .collect();
    for s in &mut ordered {
        s.node.id = renumber.get(&s.node.id).copied().unwrap_or(s.node.id);
        for r in s.node.op.refs_mut() {
            *r = renumber.get(r).copied().unwrap_or(*r);
        }
        s.parent = s.parent.map(|p| renumber.get(&p).copied().unwrap_or(p));
        if let Block::Step { train } = &mut s.node.block {
            *train = renumber.get(train).copied().unwrap_or(*train);
        }
    }
    ordered
}
