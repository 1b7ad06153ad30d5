//! Which prepare steps are cached on disk, and under what key.
//!
//! Statistics of the unedited model over fixed data (covariances, in-context memories) and what is
//! computed from them alone (spaces, encoders, directions) are worth keeping between runs. A
//! step's key spells out the operation, its resolved arguments, the data set, the seed and the
//! keys of its inputs; the executor adds the model's hash. A model-reading step is only cached if
//! it sees the unedited model: not after an adapter that changes the model's function
//! (`latent_icl`), and not at a stream inside an adapter.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::schedule::Scheduled;
use super::types::{CacheKey, Stage};
use crate::sema::site::StreamPoint;
use crate::sema::{Cut, NodeId, Op};

pub(super) fn cache_keys(steps: &[Scheduled], seed: u64) -> HashMap<NodeId, CacheKey> {
    let mut keys: HashMap<NodeId, CacheKey> = HashMap::new();
    let mut function_changed = false;
    for s in steps.iter().filter(|s| s.stage == Stage::Prepare) {
        let key_of = |id: &NodeId| keys.get(id).map(|k| k.recipe.clone());
        let recipe = match &s.node.op {
            Op::Covariance { stream, over } if !function_changed && !inside_adapter(stream.point) => {
                Some(format!("covariance(stream: {}; over: {over}; seed: {seed})", stream.path))
            }
            Op::NullSpace { covariance, cut, .. } => key_of(covariance).map(|k| match cut {
                Cut::Below(x) => format!("null_space({k}; below: {x:?})"),
                Cut::Rank(r) => format!("null_space({k}; rank: {r})"),
            }),
            Op::TopSpace { covariance, rank } => key_of(covariance).map(|k| format!("top_space({k}; rank: {rank})")),
            Op::IncontextMemory { triplets, at } if !function_changed && !inside_adapter(at.point) => {
                Some(format!("incontext_memory(at: {}; triplets: {triplets}; seed: {seed})", at.path))
            }
            Op::ContrastiveEncoders { memory, hidden, depth, lr, steps, batch } => key_of(memory).map(|k| {
                format!(
                    "contrastive_encoders({k}; hidden: {hidden}; depth: {depth}; lr: {lr:?}; steps: {steps}; batch: {batch}; centred, semantic to state width, temperature 0.1; seed: {seed})"
                )
            }),
            Op::TruthDirection { encoders } => key_of(encoders).map(|k| format!("truth_direction({k})")),
            _ => None,
        };
        if matches!(s.node.op, Op::LatentIcl { .. }) {
            function_changed = true;
        }
        if let Some(recipe) = recipe {
            let digest: String = Sha256::digest(recipe.as_bytes())
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect();
            keys.insert(s.node.id, CacheKey { recipe, digest });
        }
    }
    keys
}

fn inside_adapter(point: StreamPoint) -> bool {
    matches!(
        point,
        StreamPoint::LoraMid { .. } | StreamPoint::ExtraAct { .. }
    )
}
