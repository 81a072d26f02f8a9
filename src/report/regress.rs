//! `vitssl report regress`: flags benchmarks that got slower beyond a threshold and beyond noise.
//!
//! The rule, for a benchmark in both the baseline B and the current results C, with medians
//! `m_B`, `m_C` and the bounds `[lo, hi]` of their confidence intervals (criterion's, or the
//! `lower_ns`/`upper_ns` columns of a result CSV):
//!
//! - **regressed** when `m_C > (1 + t) · m_B` *and* `lo_C > hi_B`: slower by more than the
//!   threshold `t`, and the two intervals do not overlap (the slowdown is beyond the measured
//!   noise);
//! - **improved** when `m_C < m_B / (1 + t)` and `hi_C < lo_B` (the mirror rule);
//! - **within noise** when `m_C > (1 + t) · m_B` but the intervals overlap: listed, not flagged;
//! - **unchanged** otherwise.
//!
//! Ids only in B are listed as missing, ids only in C as new; neither counts as a regression.
//! The command exits with 1 when anything regressed, 0 otherwise, and 2 when the inputs cannot
//! be read (so a script can tell "slower" from "broken").

use super::compare::fmt_interval;
use super::error::{ReportError, Result};
use super::read::{Measurement, Measurements, Source, load_all, natural_cmp};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `vitssl report regress`.
#[derive(Debug, clap::Args)]
pub struct RegressArgs {
    /// Baseline: a result directory or CSV, or a criterion baseline name with --criterion-dir.
    #[arg(long, value_name = "INPUT")]
    pub baseline: String,
    /// Current results, given like --baseline.
    #[arg(long, value_name = "INPUT")]
    pub current: String,
    /// Slowdown to tolerate: a percentage (5%) or a fraction in [0, 1] (0.05).
    #[arg(long, value_name = "T", default_value = "5%", value_parser = parse_threshold)]
    pub threshold: f64,
    /// Read --baseline and --current as criterion baseline names under this directory
    /// (e.g. target/criterion, where `cargo bench --bench '*' -- --save-baseline NAME` puts them).
    #[arg(long, value_name = "DIR")]
    pub criterion_dir: Option<PathBuf>,
}

/// Parses a threshold: `5%` or `0.05` (a bare number must lie in [0, 1]; a percentage must be
/// non-negative and finite).
pub fn parse_threshold(s: &str) -> Result<f64> {
    let bad = || ReportError::Threshold {
        value: s.to_string(),
    };
    let t = s.trim();
    let value = match t.strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map_err(|_| bad())? / 100.0,
        None => {
            let v = t.parse::<f64>().map_err(|_| bad())?;
            if v > 1.0 {
                return Err(bad());
            }
            v
        }
    };
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(bad())
    }
}

/// What happened to one benchmark between baseline and current.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Slower by more than the threshold, intervals disjoint.
    Regressed,
    /// Faster by more than the threshold, intervals disjoint.
    Improved,
    /// Slower by more than the threshold, but the intervals overlap.
    WithinNoise,
    /// Neither.
    Unchanged,
}

/// One benchmark present in both inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Benchmark id.
    pub id: String,
    /// Baseline measurement.
    pub baseline: Measurement,
    /// Current measurement.
    pub current: Measurement,
    /// `median(current) / median(baseline)`.
    pub ratio: f64,
    /// The verdict under the module's rule.
    pub verdict: Verdict,
}

/// Applies the module's rule to one benchmark with threshold `t` (a fraction).
pub fn verdict(baseline: &Measurement, current: &Measurement, t: f64) -> Verdict {
    let slower = current.median_ns > (1.0 + t) * baseline.median_ns;
    let faster = current.median_ns * (1.0 + t) < baseline.median_ns;
    if slower && current.lower_ns > baseline.upper_ns {
        Verdict::Regressed
    } else if slower {
        Verdict::WithinNoise
    } else if faster && current.upper_ns < baseline.lower_ns {
        Verdict::Improved
    } else {
        Verdict::Unchanged
    }
}

/// The outcome of a regression check.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Label of the baseline.
    pub baseline: String,
    /// Label of the current results.
    pub current: String,
    /// The threshold, as a fraction.
    pub threshold: f64,
    /// Benchmarks in both inputs, in natural id order.
    pub changes: Vec<Change>,
    /// Ids in the baseline only.
    pub missing: Vec<String>,
    /// Ids in the current results only.
    pub new: Vec<String>,
}

/// Compares `current` with `baseline` under threshold `t` (a fraction).
pub fn check(baseline: &Measurements, current: &Measurements, t: f64) -> Report {
    let mut changes = Vec::new();
    let mut missing = Vec::new();
    for (id, b) in &baseline.by_id {
        match current.by_id.get(id) {
            Some(c) => changes.push(Change {
                id: id.clone(),
                baseline: b.clone(),
                current: c.clone(),
                ratio: c.median_ns / b.median_ns,
                verdict: verdict(b, c, t),
            }),
            None => missing.push(id.clone()),
        }
    }
    let mut new: Vec<String> = current
        .by_id
        .keys()
        .filter(|id| !baseline.by_id.contains_key(*id))
        .cloned()
        .collect();
    changes.sort_by(|a, b| natural_cmp(&a.id, &b.id));
    missing.sort_by(|a, b| natural_cmp(a, b));
    new.sort_by(|a, b| natural_cmp(a, b));
    Report {
        baseline: baseline.label.clone(),
        current: current.label.clone(),
        threshold: t,
        changes,
        missing,
        new,
    }
}

impl Report {
    /// The changes with verdict `v`.
    pub fn with(&self, v: Verdict) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(move |c| c.verdict == v)
    }

    /// Whether any benchmark regressed.
    pub fn regressed(&self) -> bool {
        self.with(Verdict::Regressed).next().is_some()
    }

    /// The report as markdown: a summary, then a table per verdict other than unchanged, then
    /// the missing and new ids.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let pct = self.threshold * 100.0;
        let count = |v| self.with(v).count();
        let _ = writeln!(
            s,
            "# Regression check: {} against {}\n",
            self.current, self.baseline
        );
        let _ = writeln!(
            s,
            "Rule: flagged when median(current) > (1 + {pct}%) × median(baseline) and the lower \
             confidence bound of current is above the upper bound of baseline (the intervals do \
             not overlap).\n"
        );
        let _ = writeln!(
            s,
            "{} compared: {} regressed, {} improved, {} slower but within noise, {} unchanged; \
             {} missing from current, {} new.\n",
            self.changes.len(),
            count(Verdict::Regressed),
            count(Verdict::Improved),
            count(Verdict::WithinNoise),
            count(Verdict::Unchanged),
            self.missing.len(),
            self.new.len()
        );
        let sections = [
            (Verdict::Regressed, "Regressions"),
            (Verdict::Improved, "Improvements"),
            (
                Verdict::WithinNoise,
                "Slower than the threshold but within noise (not flagged)",
            ),
        ];
        let ci = |m: &Measurement| fmt_interval(m.median_ns, m.lower_ns, m.upper_ns);
        for (v, heading) in sections {
            if count(v) == 0 {
                continue;
            }
            let _ = writeln!(s, "## {heading}\n");
            let _ = writeln!(
                s,
                "| id | baseline median [CI] | current median [CI] | change |\n|---|--:|--:|--:|"
            );
            for c in self.with(v) {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {:+.1}% (×{:.2}) |",
                    c.id,
                    ci(&c.baseline),
                    ci(&c.current),
                    (c.ratio - 1.0) * 100.0,
                    c.ratio
                );
            }
            s.push('\n');
        }
        for (ids, heading) in [
            (&self.missing, "Missing from current (in the baseline only)"),
            (&self.new, "New in current (not in the baseline)"),
        ] {
            if ids.is_empty() {
                continue;
            }
            let _ = writeln!(s, "## {heading}\n");
            for id in ids {
                let _ = writeln!(s, "- {id}");
            }
            s.push('\n');
        }
        s
    }
}

fn regress(args: &RegressArgs) -> anyhow::Result<Report> {
    let dir = args.criterion_dir.as_deref();
    let sources = [
        Source::new(&args.baseline, dir),
        Source::new(&args.current, dir),
    ];
    let [b, c]: [Measurements; 2] = load_all(&sources)?
        .try_into()
        .map_err(|_| anyhow::anyhow!("expected two inputs"))?;
    Ok(check(&b, &c, args.threshold))
}

/// Runs `vitssl report regress`: exit 1 when anything regressed, 0 when not, 2 on bad input.
pub fn run(args: RegressArgs) -> anyhow::Result<ExitCode> {
    match regress(&args) {
        Ok(report) => {
            print!("{}", report.to_markdown());
            Ok(if report.regressed() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Err(e) => {
            // Reported here rather than in main so that bad input exits with 2, not 1.
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(2))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(median: f64, half_width: f64) -> Measurement {
        Measurement {
            id: "g/v/8".into(),
            group: "g".into(),
            variant: "v".into(),
            size: "8".into(),
            median_ns: median,
            lower_ns: median - half_width,
            upper_ns: median + half_width,
        }
    }

    #[test]
    fn thresholds_parse_as_percent_or_fraction() {
        assert_eq!(parse_threshold("5%").unwrap(), 0.05);
        assert_eq!(parse_threshold("0.05").unwrap(), 0.05);
        assert_eq!(parse_threshold(" 12.5 % ").unwrap(), 0.125);
        assert_eq!(parse_threshold("0").unwrap(), 0.0);
        for bad in ["5", "five", "-1%", "%", "", "inf%", "NaN"] {
            let e = parse_threshold(bad).unwrap_err().to_string();
            assert!(
                e.contains(&format!("'{bad}'")) && e.contains("5%"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn the_rule_needs_both_threshold_and_disjoint_intervals() {
        let t = 0.05;
        assert_eq!(
            verdict(&m(100.0, 2.0), &m(130.0, 2.0), t),
            Verdict::Regressed
        );
        assert_eq!(
            verdict(&m(100.0, 2.0), &m(100.0, 2.0), t),
            Verdict::Unchanged
        );
        assert_eq!(
            verdict(&m(100.0, 20.0), &m(130.0, 20.0), t),
            Verdict::WithinNoise
        );
        // Disjoint intervals but below the threshold: not flagged.
        assert_eq!(
            verdict(&m(100.0, 0.5), &m(103.0, 0.5), t),
            Verdict::Unchanged
        );
        assert_eq!(
            verdict(&m(130.0, 2.0), &m(100.0, 2.0), t),
            Verdict::Improved
        );
    }
}
