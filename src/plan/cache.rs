//! Which prepare steps are cached on disk, and under what key.
//!
//! Statistics of the unedited model over fixed data (covariances, in-context memories) and what is
//! computed from them alone (spaces, encoders, a LoRA's Eq. 8 initialisation) are worth keeping
//! between runs; ζ (`truth_direction`) is a mean of two encodings, cheaper to recompute than to
//! read. Each operation says what its key is made of ([`OpSpec::cache_identity`]: the operation,
//! its resolved arguments, the data set, the seed and the identities of its inputs); this pass
//! walks the prepare stage in order and tells each one what came before it, so a model-reading
//! step is only cached while it sees the unedited model: not after an adapter that changes the
//! model's function (`latent_icl`), not at a stream inside an adapter, and a LoRA's Eq. 8 only
//! while no earlier LoRA has moved its weight. The executor adds the model's hash.
//!
//! [`OpSpec::cache_identity`]: crate::sema::OpSpec::cache_identity

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::schedule::Scheduled;
use super::types::{CacheKey, Stage};
use crate::sema::ops::CacheContext;
use crate::sema::site::LinearSite;
use crate::sema::NodeId;

pub(super) fn cache_keys(steps: &[Scheduled], seed: u64) -> HashMap<NodeId, CacheKey> {
    let mut keys: HashMap<NodeId, CacheKey> = HashMap::new();
    let mut function_changed = false;
    let mut moved: Vec<LinearSite> = Vec::new();
    for s in steps.iter().filter(|s| s.stage == Stage::Prepare) {
        let op = s.node.op.spec();
        let identities = |id: NodeId| keys.get(&id).map(|k| k.recipe.clone());
        let cx = CacheContext {
            seed,
            function_changed,
            moved: &moved,
            identities: &identities,
        };
        let entry = op.cache_identity(&cx);
        moved.extend(op.wraps_linear().cloned());
        function_changed |= op.changes_function();
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
