//! `--shard I/N`: which contiguous block of a run's groups one process edits.
//!
//! A run's cases fall into groups — one case each in single editing, K consecutive cases in
//! sequential editing — and a shard takes whole groups, so no sequence is ever cut. Shard `I` of
//! `N` (counting from 0, as Slurm's `SLURM_ARRAY_TASK_ID` does with `--array=0-(N-1)`) takes
//! groups `⌊I·G/N⌋ .. ⌊(I+1)·G/N⌋` of the run's `G`: contiguous blocks whose sizes differ by at
//! most one, in data order, so concatenating the shards in order gives the unsharded run's order.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Shard `index` of `count`, counting from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

/// The part of a run a shard edits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// Positions (in the run's list of cases) of the shard's cases.
    pub cases: Range<usize>,
    /// The run's group numbers the shard edits.
    pub groups: Range<usize>,
}

impl Shard {
    /// The shard's block of a run of `cases` cases edited `group_size` at a time (1 in single
    /// editing, K in sequential editing; the last group may be shorter).
    pub fn select(self, cases: usize, group_size: usize) -> Selection {
        let k = group_size.max(1);
        let total = cases.div_ceil(k);
        let start = self.index * total / self.count;
        let end = (self.index + 1) * total / self.count;
        Selection {
            cases: (start * k).min(cases)..(end * k).min(cases),
            groups: start..end,
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Shard {
    type Err = String;

    /// `I/N` with `0 ≤ I < N`.
    fn from_str(s: &str) -> Result<Shard, String> {
        let usage = "write it as I/N, e.g. 0/4 … 3/4 for four shards (I counts from 0)";
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("`{s}` is not I/N: {usage}"))?;
        let parse = |v: &str, what: &str| {
            v.trim()
                .parse::<usize>()
                .map_err(|_| format!("{what} `{v}` is not a whole number: {usage}"))
        };
        let (index, count) = (parse(i, "I")?, parse(n, "N")?);
        if count == 0 {
            return Err(format!("N must be at least 1: {usage}"));
        }
        if index >= count {
            return Err(format!(
                "I = {index} is not below N = {count}: shards count from 0, the last is {}/{count}",
                count - 1
            ));
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: usize, count: usize) -> Shard {
        Shard { index, count }
    }

    #[test]
    fn shards_tile_the_groups_in_order_without_cutting_a_sequence() {
        for cases in 1..30usize {
            for k in [1, 2, 3, 10] {
                let groups = cases.div_ceil(k);
                for count in 1..=groups {
                    let parts: Vec<Selection> = (0..count)
                        .map(|i| shard(i, count).select(cases, k))
                        .collect();
                    let mut next = 0;
                    let mut group = 0;
                    for p in &parts {
                        assert_eq!(p.cases.start, next, "{cases} cases, k {k}, {count} shards");
                        assert_eq!(p.groups.start, group);
                        assert!(!p.cases.is_empty(), "no empty shard while N ≤ groups");
                        // Whole groups only: a shard starts at a group boundary.
                        assert_eq!(p.cases.start % k, 0);
                        let sizes = p.groups.len();
                        assert!(sizes == groups / count || sizes == groups / count + 1);
                        next = p.cases.end;
                        group = p.groups.end;
                    }
                    assert_eq!((next, group), (cases, groups));
                }
            }
        }
        // More shards than groups: the extra shards are empty.
        assert!(shard(0, 3).select(2, 1).cases.is_empty());
    }

    #[test]
    fn shard_specs_parse_and_refuse_with_a_reason() {
        assert_eq!("2/5".parse::<Shard>().unwrap(), shard(2, 5));
        assert_eq!(shard(2, 5).to_string(), "2/5");
        assert!("5/5"
            .parse::<Shard>()
            .unwrap_err()
            .contains("the last is 4/5"));
        assert!("1/0".parse::<Shard>().unwrap_err().contains("at least 1"));
        assert!("3".parse::<Shard>().unwrap_err().contains("not I/N"));
        assert!("a/2".parse::<Shard>().unwrap_err().contains("whole number"));
    }
}
