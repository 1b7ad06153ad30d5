//! Scaling a run out over a cluster's scheduler: `mkedsl run … --shard I/N` edits one block of
//! the run's groups and writes its partial results; `mkedsl merge` puts the parts back together
//! into exactly the unsharded run's report.
//!
//! ```text
//! mkedsl run R --shard 0/3 --json p0.json ┐  each: the same prepare (shared through the
//! mkedsl run R --shard 1/3 --json p1.json ├─ on-disk cache under a lock, computed once),
//! mkedsl run R --shard 2/3 --json p2.json ┘  its own cases, a report + `shard` object
//! mkedsl merge p0.json p1.json p2.json --json all.json   checks, concatenates, re-averages
//! ```
//!
//! Exactness rests on three properties of a run: the prepare stage does not depend on which
//! cases follow it; every random draw of an edit comes from a stream named by the case
//! ([`crate::exec::rng`]); and scores do not depend on how prompts are batched. Files: `spec`
//! (`I/N` and the split), `part` (the partial report), `merge`, `error`.

pub mod error;
pub mod merge;
pub mod part;
pub mod spec;

pub use error::ShardError;
pub use merge::{merge, merge_files};
pub use part::{file_hash, write_part, Part, PartFile, PartInfo, PART_FORMAT};
pub use spec::{Selection, Shard};
