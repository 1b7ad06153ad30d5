//! Why a shard cannot run or parts cannot be merged, as miette diagnostics naming the part file
//! and its shard.

use std::path::PathBuf;

/// Errors of `mkedsl run --shard` and `mkedsl merge`.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ShardError {
    /// A part file cannot be read or is not a part.
    #[error("cannot read the part `{}`: {reason}", path.display())]
    #[diagnostic(
        code(mkedsl::shard::part),
        help("pass the JSON files written by `mkedsl run … --shard I/N --json PART`")
    )]
    Read { path: PathBuf, reason: String },

    /// Writing a shard's part failed.
    #[error("cannot write the part `{}`: {reason}", path.display())]
    #[diagnostic(
        code(mkedsl::shard::write),
        help("check that the folder is writable and the disk is not full")
    )]
    Write { path: PathBuf, reason: String },

    /// Two parts come from runs that differ in something that changes the numbers.
    #[error("{b} and {a} come from different runs: {what} {values}")]
    #[diagnostic(
        code(mkedsl::shard::mismatch),
        help("merge only the parts of one sharded run: the same recipe file, model, data, --limit, --seed, --mode/--k, device and N")
    )]
    Mismatch {
        what: &'static str,
        /// The parts, as "`PATH` (shard I/N)".
        a: String,
        b: String,
        /// "B_VALUE vs A_VALUE".
        values: String,
    },

    /// The same shard was given twice.
    #[error("shard {shard} is given twice: `{}` and `{}`", a.display(), b.display())]
    #[diagnostic(code(mkedsl::shard::duplicated), help("pass each shard's part once"))]
    Duplicated {
        shard: String,
        a: PathBuf,
        b: PathBuf,
    },

    /// A shard's part is absent.
    #[error("shard {missing} is missing: the parts given are shard{} {given}", if given.contains(',') { "s" } else { "" })]
    #[diagnostic(code(mkedsl::shard::missing))]
    Missing {
        missing: String,
        given: String,
        #[help]
        help: String,
    },

    /// A part's rows are not the cases its shard was given.
    #[error("`{}` (shard {shard}) {reason}", path.display())]
    #[diagnostic(
        code(mkedsl::shard::rows),
        help("the part was altered or cut short: rerun that shard")
    )]
    Rows {
        path: PathBuf,
        shard: String,
        reason: String,
    },

    /// A shard that would edit nothing.
    #[error("shard {shard} has no case: the run's {cases} case(s) make {groups} group(s) for {count} shards")]
    #[diagnostic(
        code(mkedsl::shard::empty),
        help("use at most as many shards as groups (cases in single editing, sequences of K in sequential editing)")
    )]
    Empty {
        shard: String,
        cases: usize,
        groups: usize,
        count: usize,
    },

    /// Hashing the recipe or data file for the part's identity failed.
    #[error("cannot read `{}` to identify the run: {reason}", path.display())]
    #[diagnostic(
        code(mkedsl::shard::identity),
        help("check that the file exists and is readable")
    )]
    Identity { path: PathBuf, reason: String },
}
