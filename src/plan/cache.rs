//! Which prepare steps are cached on disk, and under what key.
//!
//! Statistics of the unedited model over fixed data (covariances, in-context memories) and what is
//! computed from them alone (spaces, encoders, a LoRA's Eq. 8 initialisation) are worth keeping
//! between runs; ζ (`truth_direction`) is a mean of two encodings, cheaper to recompute than to
//! read. A
//! step's key spells out the operation, its resolved arguments, the data set, the seed and the
//! keys of its inputs; the executor adds the model's hash. A model-reading step is only cached if
//! it sees the unedited model: not after an adapter that changes the model's function
//! (`latent_icl`), and not at a stream inside an adapter.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::schedule::Scheduled;
use super::types::{CacheKey, Stage};
use crate::sema::site::{LinearSite, StreamPoint};
use crate::sema::{Cut, LoraInit, NodeId, Op};

pub(super) fn cache_keys(steps: &[Scheduled], seed: u64) -> HashMap<NodeId, CacheKey> {
    let mut keys: HashMap<NodeId, CacheKey> = HashMap::new();
    let mut function_changed = false;
    let mut loras: Vec<LinearSite> = Vec::new();
    for s in steps.iter().filter(|s| s.stage == Stage::Prepare) {
        let key_of = |id: &NodeId| keys.get(id).map(|k| k.recipe.clone());
        let entry = match &s.node.op {
            Op::Covariance { stream, over } if !function_changed && !inside_adapter(stream.point) => {
                Some(("covariance", format!("covariance(stream: {}; over: {over}; seed: {seed})", stream.path)))
            }
            Op::NullSpace { covariance, cut, .. } => key_of(covariance).map(|k| match cut {
                Cut::Below(x) => ("space", format!("null_space({k}; below: {x:?})")),
                Cut::Rank(r) => ("space", format!("null_space({k}; rank: {r})")),
            }),
            Op::TopSpace { covariance, rank } => key_of(covariance).map(|k| ("space", format!("top_space({k}; rank: {rank})"))),
            Op::IncontextMemory { triplets, at } if !function_changed && !inside_adapter(at.point) => {
                Some(("memory", format!("incontext_memory(at: {}; triplets: {triplets}; seed: {seed})", at.path)))
            }
            Op::ContrastiveEncoders { memory, hidden, depth, lr, steps, batch } => key_of(memory).map(|k| {
                ("encoders", format!(
                    "contrastive_encoders({k}; hidden: {hidden}; depth: {depth}; lr: {lr:?}; steps: {steps}; batch: {batch}; centred, semantic to state width, temperature 0.1; seed: {seed})"
                ))
            }),
            // Eq. 8 reads `W`: only while no earlier LoRA at the same projection has moved it.
            Op::Lora { site, rank, init: LoraInit::NullSpaceSvd { space }, .. }
                if !loras.iter().any(|other: &LinearSite| other.proj == site.proj && other.layers.overlaps(&site.layers)) =>
            {
                key_of(space).map(|k| ("lora_init", format!("lora_init(site: {site}; rank: {rank}; init: null_space_svd({k}))")))
            }
            _ => None,
        };
        if let Op::Lora { site, .. } = &s.node.op {
            loras.push(site.clone());
        }
        if matches!(s.node.op, Op::LatentIcl { .. }) {
            function_changed = true;
        }
        if let Some((kind, recipe)) = entry {
            let digest: String = Sha256::digest(recipe.as_bytes())
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect();
            keys.insert(
                s.node.id,
                CacheKey {
                    kind,
                    recipe,
                    digest,
                },
            );
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
