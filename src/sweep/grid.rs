//! The grid of a sweep: `--set lr=1e-3,3e-3 --set rank=8,16` and `--seeds N` → the runs.
//!
//! Runs are numbered point-major: run `i` is grid point `i / seeds` with the `(i % seeds)`-th
//! seed, and points vary the last `--set` fastest (the order of nested loops written in the
//! order of the flags). A Slurm array task `--task i` runs exactly run `i`.

use serde::{Deserialize, Serialize};

use super::SweepError;
use crate::sema::Overrides;

/// One swept parameter and its values, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Axis {
    pub name: String,
    pub values: Vec<String>,
}

/// The parameter axes and the seeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grid {
    pub axes: Vec<Axis>,
    pub seeds: Vec<u64>,
}

/// One run of the sweep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub task: usize,
    pub point: usize,
    /// `(name, value)` per axis.
    pub set: Vec<(String, String)>,
    pub seed: u64,
}

impl Run {
    /// The `--set NAME=VALUE` texts of this run.
    pub fn overrides(&self) -> Overrides {
        Overrides::new(self.set.iter().map(|(n, v)| format!("{n}={v}")).collect())
    }

    /// `lr=1e-3 rank=8 seed 1`, for progress lines.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.set.iter().map(|(n, v)| format!("{n}={v}")).collect();
        parts.push(format!("seed {}", self.seed));
        parts.join(" ")
    }
}

/// Splits `NAME=V1,V2,…` into the name and its values. Commas inside quotes or brackets do not
/// split (`--set tag="a,b"`).
pub fn parse_axis(text: &str) -> Result<Axis, SweepError> {
    let bad = |reason: &str| SweepError::Set {
        text: text.to_string(),
        reason: reason.to_string(),
    };
    let (name, values) = text.split_once('=').ok_or_else(|| bad("there is no `=`"))?;
    let name = name.trim();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(bad("the part before `=` is not a parameter name"));
    }
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut escaped, mut start) = (0i32, false, false, 0usize);
    for (i, c) in values.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '(' | '[' if !quoted => depth += 1,
            ')' | ']' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(values[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(values[start..].trim().to_string());
    if out.iter().any(String::is_empty) {
        return Err(bad("a value is empty"));
    }
    for (i, v) in out.iter().enumerate() {
        if out[..i].contains(v) {
            return Err(bad(&format!("`{v}` is listed twice")));
        }
    }
    Ok(Axis {
        name: name.to_string(),
        values: out,
    })
}

impl Grid {
    /// The grid of `--set` texts and seeds; a parameter may be swept by one `--set` only.
    pub fn new(sets: &[String], seeds: Vec<u64>) -> Result<Grid, SweepError> {
        let mut axes: Vec<Axis> = Vec::new();
        for text in sets {
            let axis = parse_axis(text)?;
            if axes.iter().any(|a| a.name == axis.name) {
                return Err(SweepError::Set {
                    text: text.clone(),
                    reason: format!(
                        "`{}` is swept by another --set too; list all its values in one: `--set {}=A,B`",
                        axis.name, axis.name
                    ),
                });
            }
            axes.push(axis);
        }
        Ok(Grid { axes, seeds })
    }

    /// Grid points (parameter combinations).
    pub fn points(&self) -> usize {
        self.axes.iter().map(|a| a.values.len()).product()
    }

    /// Runs: points × seeds.
    pub fn runs(&self) -> usize {
        self.points() * self.seeds.len()
    }

    /// Run `task` (see the module docs for the numbering).
    pub fn run(&self, task: usize) -> Option<Run> {
        if task >= self.runs() {
            return None;
        }
        let seeds = self.seeds.len();
        let point = task / seeds;
        let mut rest = point;
        let mut set = vec![(String::new(), String::new()); self.axes.len()];
        for (i, axis) in self.axes.iter().enumerate().rev() {
            let n = axis.values.len();
            set[i] = (axis.name.clone(), axis.values[rest % n].clone());
            rest /= n;
        }
        Some(Run {
            task,
            point,
            set,
            seed: self.seeds[task % seeds],
        })
    }

    pub fn all(&self) -> impl Iterator<Item = Run> + '_ {
        (0..self.runs()).filter_map(|t| self.run(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_split_on_commas_outside_quotes_and_brackets() {
        let a = parse_axis("lr=1e-3, 3e-3 ,1e-2").unwrap();
        assert_eq!(a.name, "lr");
        assert_eq!(a.values, ["1e-3", "3e-3", "1e-2"]);
        let a = parse_axis(r#"tag="a,b","c\",d""#).unwrap();
        assert_eq!(a.values, [r#""a,b""#, r#""c\",d""#]);
        assert!(parse_axis("lr").is_err());
        assert!(parse_axis("lr=1,,2").is_err());
        assert!(parse_axis("lr=1,1").is_err());
        assert!(parse_axis("l r=1").is_err());
    }

    #[test]
    fn runs_are_point_major_with_the_last_axis_fastest() {
        let g = Grid::new(&["lr=1,3,10".into(), "rank=8,16".into()], vec![5, 6]).unwrap();
        assert_eq!((g.points(), g.runs()), (6, 12));
        let r = g.run(0).unwrap();
        assert_eq!(r.describe(), "lr=1 rank=8 seed 5");
        assert_eq!(g.run(1).unwrap().describe(), "lr=1 rank=8 seed 6");
        assert_eq!(g.run(2).unwrap().describe(), "lr=1 rank=16 seed 5");
        assert_eq!(g.run(11).unwrap().describe(), "lr=10 rank=16 seed 6");
        assert_eq!(g.run(11).unwrap().point, 5);
        assert!(g.run(12).is_none());
        assert_eq!(
            g.run(3).unwrap().overrides(),
            Overrides::new(vec!["lr=1".into(), "rank=16".into()])
        );
        assert!(Grid::new(&["lr=1".into(), "lr=2".into()], vec![0]).is_err());
    }

    #[test]
    fn no_axis_is_one_point() {
        let g = Grid::new(&[], vec![0, 1, 2]).unwrap();
        assert_eq!((g.points(), g.runs()), (1, 3));
        assert!(g.run(2).unwrap().set.is_empty());
    }
}
