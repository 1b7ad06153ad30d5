//! `mkedsl bench`: recipes side by side in one process, on the same model, data and cases —
//! seconds per edit split into the method's phases, and peak memory.
//!
//! Phases: prepare (once; statistics, spaces, adapter initialisation — the cache is off unless
//! asked for, so this is the real cost), per-edit space construction (variants, knowledge
//! spaces), optimisation (the `train` steps), evaluation (the evaluator's pre-edit and post-edit
//! observations, per case). Peak memory is the process's peak resident set (`VmHWM` of
//! `/proc/self/status`), reset before each recipe through `/proc/self/clear_refs` where Linux
//! allows it; elsewhere the column says it is not available.
//!
//! Arithmetic rate: each phase's matmul operations ([`crate::model::flops`], counted as they run;
//! evaluation is the run's count minus the method's phases) per second, as a fraction of this
//! machine's one-thread f32 matmul rate, measured once per bench ([`matmul_rate`]): how far the
//! phase is from the physical limit of its arithmetic.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::eval::SetupRequest;
use crate::exec::run::{run, CacheChoice, RunRequest};

/// What to benchmark.
#[derive(Debug, Clone)]
pub struct BenchRequest {
    pub recipes: Vec<PathBuf>,
    pub setup: SetupRequest,
    /// `--set NAME=VALUE` for every recipe.
    pub overrides: crate::sema::Overrides,
    pub cache: CacheChoice,
    /// Print progress on stderr.
    pub verbose: bool,
}

/// One recipe's measurements.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BenchRow {
    pub recipe: String,
    pub cases: usize,
    pub prepare_s: f64,
    /// Per edit.
    pub spaces_s: f64,
    pub optimise_s: f64,
    pub evaluate_s: f64,
    /// Whole run, wall clock.
    pub total_s: f64,
    /// Peak resident memory in MiB, when the platform reports it.
    pub peak_mib: Option<f64>,
    pub rel: f64,
    /// Matmul GFLOP of each phase, on the same basis as its seconds (prepare once, the others
    /// per edit).
    pub prepare_gflop: f64,
    pub spaces_gflop: f64,
    pub optimise_gflop: f64,
    pub evaluate_gflop: f64,
    /// The machine's one-thread f32 matmul rate the phases are read against, GFLOP/s.
    pub matmul_gflops: f64,
}

impl BenchRow {
    /// Seconds one edit costs: its spaces and optimisation (prepare amortised over the cases).
    pub fn edit_s(&self) -> f64 {
        self.spaces_s + self.optimise_s + self.prepare_s / self.cases.max(1) as f64
    }

    /// Arithmetic rates of prepare, spaces, optimisation and evaluation as fractions of
    /// [`Self::matmul_gflops`]; `None` for a phase that took no measurable time.
    pub fn rates(&self) -> [Option<f64>; 4] {
        let rate = |gflop: f64, s: f64| {
            (s > 1e-6 && self.matmul_gflops > 0.0).then(|| gflop / s / self.matmul_gflops)
        };
        [
            rate(self.prepare_gflop, self.prepare_s),
            rate(self.spaces_gflop, self.spaces_s),
            rate(self.optimise_gflop, self.optimise_s),
            rate(self.evaluate_gflop, self.evaluate_s),
        ]
    }
}

/// Side of the square f32 matmul [`matmul_rate`] times.
pub const RATE_SIZE: usize = 512;

/// This machine's one-thread f32 matmul rate in GFLOP/s: the best of repeated `RATE_SIZE`³
/// products of the kernel the model's matmuls run on (`model::nn::gemm`, faer's), after two
/// warm-up products, for at least 0.3 s. Kernels run
/// on one thread while it measures (`RAYON_NUM_THREADS=1`, restored after); call it before
/// other threads issue tensor work.
pub fn matmul_rate() -> miette::Result<f64> {
    use crate::model::nn::gemm::product;
    use candle_core::{Device, Tensor};
    let saved = std::env::var("RAYON_NUM_THREADS").ok();
    std::env::set_var("RAYON_NUM_THREADS", "1");
    let measured = (|| -> candle_core::Result<f64> {
        let n = RATE_SIZE;
        let a = Tensor::rand(-1f32, 1f32, (n, n), &Device::Cpu)?;
        let b = Tensor::rand(-1f32, 1f32, (n, n), &Device::Cpu)?;
        for _ in 0..2 {
            product(&a, &b)?;
        }
        let started = std::time::Instant::now();
        let mut best = f64::INFINITY;
        let mut reps = 0;
        while reps < 5 || started.elapsed().as_secs_f64() < 0.3 {
            let t = std::time::Instant::now();
            product(&a, &b)?;
            best = best.min(t.elapsed().as_secs_f64());
            reps += 1;
        }
        Ok(2.0 * (n * n * n) as f64 / best.max(1e-9) / 1e9)
    })();
    match saved {
        Some(v) => std::env::set_var("RAYON_NUM_THREADS", v),
        None => std::env::remove_var("RAYON_NUM_THREADS"),
    }
    measured.map_err(|e| miette::miette!("cannot time the reference matmul: {e}"))
}

/// Resets the peak-RSS counter (Linux); false where unsupported. First hands the heap's free
/// memory back to the OS: the process keeps up to 256 MiB of freed tensor memory for reuse
/// (`cli::keep_freed_tensor_memory`), which would otherwise count in the next recipe's peak.
fn reset_peak() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free heap pages to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The peak resident set since the last reset, in MiB.
fn peak_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Runs every recipe on the same cases, one after the other.
pub fn bench(req: &BenchRequest) -> miette::Result<Vec<BenchRow>> {
    let limit = matmul_rate()?;
    let mut rows = Vec::new();
    for recipe in &req.recipes {
        if req.verbose {
            eprintln!("bench: {}", recipe.display());
        }
        let resettable = reset_peak();
        let flops = crate::model::flops::count();
        let outcome = run(&RunRequest {
            setup: req.setup.clone(),
            overrides: req.overrides.clone(),
            cache: req.cache.clone(),
            verbose: req.verbose,
            ..RunRequest::new(recipe.clone())
        })?;
        let t = &outcome.report.timing;
        let p = &outcome.phases;
        let n = p.edits.max(1) as f64;
        let run_flops = crate::model::flops::count() - flops;
        let evaluate_flops =
            run_flops.saturating_sub(p.prepare_flops + p.spaces_flops + p.optimise_flops);
        let giga = |f: u64| f as f64 / 1e9;
        rows.push(BenchRow {
            recipe: format!("{} ({})", outcome.plan.recipe.name, recipe.display()),
            cases: outcome.report.cases,
            prepare_s: p.prepare_s,
            spaces_s: p.spaces_s / n,
            optimise_s: p.optimise_s / n,
            evaluate_s: (t.pre_edit_s + t.score_s) / n,
            total_s: t.total_s,
            peak_mib: if resettable { peak_mib() } else { None },
            rel: outcome.report.metrics.rel,
            prepare_gflop: giga(p.prepare_flops),
            spaces_gflop: giga(p.spaces_flops) / n,
            optimise_gflop: giga(p.optimise_flops) / n,
            evaluate_gflop: giga(evaluate_flops) / n,
            matmul_gflops: limit,
        });
    }
    Ok(rows)
}

/// The benchmark table: absolute seconds, and each recipe's cost per edit relative to the first.
pub fn table(rows: &[BenchRow], header: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{header}");
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<34}{:>9}{:>10}{:>10}{:>10}{:>10}{:>10}{:>9}{:>10}",
        "recipe", "prepare", "spaces", "optimise", "evaluate", "edit", "× first", "peak", "Rel"
    );
    let _ = writeln!(
        out,
        "{:<34}{:>9}{:>10}{:>10}{:>10}{:>10}{:>10}{:>9}{:>10}",
        "", "s once", "s/edit", "s/edit", "s/case", "s/edit", "", "MiB", "%"
    );
    let base = rows.first().map(BenchRow::edit_s).unwrap_or(1.0).max(1e-9);
    for r in rows {
        let name: String = r.recipe.chars().take(33).collect();
        let _ = writeln!(
            out,
            "{name:<34}{:>9.2}{:>10.3}{:>10.3}{:>10.3}{:>10.3}{:>10.2}{:>9}{:>10.1}",
            r.prepare_s,
            r.spaces_s,
            r.optimise_s,
            r.evaluate_s,
            r.edit_s(),
            r.edit_s() / base,
            r.peak_mib.map_or("n/a".to_string(), |m| format!("{m:.0}")),
            100.0 * r.rel
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "edit = spaces + optimisation + prepare / cases; × first = edit time relative to the first recipe;"
    );
    let _ = writeln!(
        out,
        "peak = the process's peak resident memory during that recipe (VmHWM, reset between recipes)."
    );
    let _ = writeln!(out);
    let limit = rows.first().map_or(0.0, |r| r.matmul_gflops);
    let _ = writeln!(
        out,
        "arithmetic rate: each phase's matmul GFLOP/s as % of this machine's one-thread f32 matmul rate ({limit:.1} GFLOP/s, {RATE_SIZE}³)"
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<34}{:>9}{:>10}{:>10}{:>10}{:>12}",
        "recipe", "prepare", "spaces", "optimise", "evaluate", "evaluate"
    );
    let _ = writeln!(
        out,
        "{:<34}{:>9}{:>10}{:>10}{:>10}{:>12}",
        "", "%", "%", "%", "%", "GFLOP/case"
    );
    for r in rows {
        let name: String = r.recipe.chars().take(33).collect();
        let cell = |rate: Option<f64>, width: usize| match rate {
            Some(f) => format!("{:>width$.2}", 100.0 * f),
            None => format!("{:>width$}", "–"),
        };
        let [prepare, spaces, optimise, evaluate] = r.rates();
        let _ = writeln!(
            out,
            "{name:<34}{}{}{}{}{:>12.4}",
            cell(prepare, 9),
            cell(spaces, 10),
            cell(optimise, 10),
            cell(evaluate, 10),
            r.evaluate_gflop
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "counted: model matmuls (linears, adapters, attention) as 2·m·k·n, backward products included where autograd runs them;"
    );
    let _ = writeln!(
        out,
        "not counted: elementwise work, linear algebra outside the model (covariances, SVDs); – = the phase took no time."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> BenchRow {
        BenchRow {
            recipe: "r (r.edit)".into(),
            cases: 2,
            prepare_s: 0.0,
            spaces_s: 0.5,
            optimise_s: 2.0,
            evaluate_s: 0.25,
            total_s: 6.0,
            peak_mib: None,
            rel: 1.0,
            prepare_gflop: 0.0,
            spaces_gflop: 1.0,
            optimise_gflop: 4.0,
            evaluate_gflop: 0.1,
            matmul_gflops: 8.0,
        }
    }

    #[test]
    fn rates_are_gflop_per_second_over_the_measured_limit() {
        let r = row();
        assert_eq!(r.rates(), [None, Some(0.25), Some(0.25), Some(0.05)]);
        let text = table(&[r], "header");
        assert!(text.contains("(8.0 GFLOP/s, 512³)"), "{text}");
        let line = text
            .lines()
            .filter(|l| l.starts_with("r (r.edit)"))
            .nth(1)
            .expect("a rate row");
        let cells: Vec<&str> = line["r (r.edit)".len()..].split_whitespace().collect();
        assert_eq!(cells, ["–", "25.00", "25.00", "5.00", "0.1000"]);
    }
}
