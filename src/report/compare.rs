//! `vitssl report compare`: median times of several inputs side by side, as ratios to a reference.
//!
//! Two layouts ([`By`]):
//! - `--by input` (default): one row per benchmark id, one column per input (result directory,
//!   result CSV or criterion baseline); the first input is the reference. For input `i`,
//!   `ratio = median_i / median_ref` (above 1: slower) and `speedup = median_ref / median_i`.
//! - `--by variant`: within each input, one table per criterion group, one row per size, one
//!   column per variant; the reference variant is `--against VARIANT`, else `reference` when the
//!   group has it, else `libm`, else the first variant in name order. This answers "SIMD speedup
//!   per size": `--by variant --against fast-scalar` gives each fast-v3 speedup over scalar.
//!
//! A key (id or size) missing from any column goes to the table's "unmatched" list with the
//! values it does have, never silently dropped. With `--out FILE.csv` the same numbers are
//! written as [`CompareRow`]s, one per key and non-reference column.

use super::error::{ReportError, Result};
use super::read::{Measurements, Source, load_all, natural_cmp};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

/// How `compare` lays its tables out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum By {
    /// One column per input, rows by benchmark id; ratios to the first input.
    #[default]
    Input,
    /// One table per input and group, one column per variant, rows by size; ratios to the
    /// reference variant.
    Variant,
}

/// Arguments of `vitssl report compare`.
#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    /// Result directories (results/<tag>/) or result CSVs; baseline names with --criterion-dir.
    /// The first is the reference.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,
    /// Compare inputs (one column each) or the variants within each input.
    #[arg(long, value_enum, default_value = "input")]
    pub by: By,
    /// Reference variant for --by variant (default: reference, else libm, else the first).
    #[arg(long, value_name = "VARIANT")]
    pub against: Option<String>,
    /// Read the inputs as criterion baseline names under this directory (e.g. target/criterion).
    #[arg(long, value_name = "DIR")]
    pub criterion_dir: Option<PathBuf>,
    /// Also write the comparison as CSV (written atomically).
    #[arg(long, value_name = "FILE.csv")]
    pub out: Option<PathBuf>,
}

/// One comparison table: the first column is the reference.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// Name of the table in the CSV output: `inputs`, or `<input>/<group>`.
    pub name: String,
    /// Heading of the table in the markdown output.
    pub title: String,
    /// What a row key is: `id` or `size`.
    pub key_name: &'static str,
    /// Column labels (inputs or variants), reference first.
    pub columns: Vec<String>,
    /// Keys present in every column, with their median times (ns), in natural key order.
    pub matched: Vec<(String, Vec<f64>)>,
    /// Keys missing from some column, with the medians they have.
    pub unmatched: Vec<(String, Vec<Option<f64>>)>,
}

impl Table {
    /// Builds a table from per-column medians by key (the first column is the reference).
    pub fn new(
        name: String,
        title: String,
        key_name: &'static str,
        columns: Vec<String>,
        data: &[BTreeMap<String, f64>],
    ) -> Self {
        let mut keys: Vec<&String> = data
            .iter()
            .flat_map(|d| d.keys())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        keys.sort_by(|a, b| natural_cmp(a, b));
        let mut matched = Vec::new();
        let mut unmatched = Vec::new();
        for key in keys {
            let vals: Vec<Option<f64>> = data.iter().map(|d| d.get(key).copied()).collect();
            match vals.iter().copied().collect::<Option<Vec<f64>>>() {
                Some(all) => matched.push((key.clone(), all)),
                None => unmatched.push((key.clone(), vals)),
            }
        }
        Self {
            name,
            title,
            key_name,
            columns,
            matched,
            unmatched,
        }
    }
}

/// The tables of one `compare`, with notes on what was left out.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    /// The tables, in output order.
    pub tables: Vec<Table>,
    /// Groups skipped and why.
    pub notes: Vec<String>,
}

/// One line of `compare --out FILE.csv`: a key in one non-reference column.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CompareRow {
    /// [`Table::name`].
    pub table: String,
    /// Benchmark id (`--by input`) or size (`--by variant`).
    pub key: String,
    /// Reference column (first input, or reference variant).
    pub reference: String,
    /// The column compared with it.
    pub candidate: String,
    /// Reference median, ns (empty when the key is missing there).
    pub reference_median_ns: Option<f64>,
    /// Candidate median, ns (empty when the key is missing there).
    pub candidate_median_ns: Option<f64>,
    /// `candidate / reference` (above 1: slower).
    pub ratio: Option<f64>,
    /// `reference / candidate` (above 1: faster).
    pub speedup: Option<f64>,
}

fn medians(m: &Measurements) -> BTreeMap<String, f64> {
    m.by_id
        .iter()
        .map(|(id, x)| (id.clone(), x.median_ns))
        .collect()
}

/// `--by input`: one table over all ids, ratios to the first input.
pub fn by_input(inputs: &[Measurements]) -> Comparison {
    let columns = inputs.iter().map(|m| m.label.clone()).collect();
    let data: Vec<_> = inputs.iter().map(medians).collect();
    let title = format!(
        "Median time per iteration, relative to {}",
        inputs.first().map_or("", |m| m.label.as_str())
    );
    Comparison {
        tables: vec![Table::new("inputs".into(), title, "id", columns, &data)],
        notes: Vec::new(),
    }
}

/// The reference variant of a group: `against` if given, else `reference`, else `libm`, else
/// the first in name order.
fn reference_variant<'a>(variants: &'a BTreeSet<String>, against: Option<&str>) -> Option<&'a str> {
    let pick = |name: &str| variants.get(name).map(String::as_str);
    match against {
        Some(a) => pick(a),
        None => pick("reference")
            .or_else(|| pick("libm"))
            .or_else(|| variants.first().map(String::as_str)),
    }
}

/// `--by variant`: per input and group, sizes against variants, ratios to the reference variant.
///
/// A group without the `against` variant is skipped with a note; it is an error when no group
/// of any input has it.
pub fn by_variant(inputs: &[Measurements], against: Option<&str>) -> Result<Comparison> {
    let mut out = Comparison::default();
    for m in inputs {
        let mut groups: BTreeMap<&str, BTreeMap<&str, BTreeMap<String, f64>>> = BTreeMap::new();
        for x in m.by_id.values() {
            let size = if x.size.is_empty() { "-" } else { &x.size };
            groups
                .entry(&x.group)
                .or_default()
                .entry(&x.variant)
                .or_default()
                .insert(size.to_string(), x.median_ns);
        }
        for (group, by_variant) in groups {
            let variants: BTreeSet<String> = by_variant.keys().map(|v| v.to_string()).collect();
            let Some(reference) = reference_variant(&variants, against) else {
                out.notes.push(format!(
                    "{}: group {group} has no variant {} (it has {})",
                    m.label,
                    against.unwrap_or("?"),
                    variants.iter().cloned().collect::<Vec<_>>().join(", ")
                ));
                continue;
            };
            let mut columns = vec![reference.to_string()];
            columns.extend(variants.iter().filter(|v| *v != reference).cloned());
            let data: Vec<_> = columns
                .iter()
                .map(|v| by_variant[v.as_str()].clone())
                .collect();
            let title = format!(
                "{}: group {group}, median time per iteration by size, relative to {reference}",
                m.label
            );
            out.tables.push(Table::new(
                format!("{}/{group}", m.label),
                title,
                "size",
                columns,
                &data,
            ));
        }
    }
    if out.tables.is_empty() {
        return Err(ReportError::Usage(match against {
            Some(a) => format!("no group in the inputs has the variant '{a}' given to --against"),
            None => "the inputs hold no benchmarks".to_string(),
        }));
    }
    Ok(out)
}

/// The unit a time in ns reads best in, and the factor from ns to it.
fn unit_of(ns: f64) -> (f64, &'static str) {
    match ns.abs() {
        x if x < 1e3 => (1.0, "ns"),
        x if x < 1e6 => (1e3, "µs"),
        x if x < 1e9 => (1e6, "ms"),
        _ => (1e9, "s"),
    }
}

/// A time in ns with a readable unit and about three significant digits.
pub fn fmt_ns(ns: f64) -> String {
    let (scale, unit) = unit_of(ns);
    let v = ns / scale;
    match v.abs() {
        x if x >= 100.0 => format!("{v:.0} {unit}"),
        x if x >= 10.0 => format!("{v:.1} {unit}"),
        _ => format!("{v:.2} {unit}"),
    }
}

/// A ratio with three significant digits (`143`, `2.00`, `0.00701`).
pub fn fmt_ratio(x: f64) -> String {
    if !x.is_finite() || x == 0.0 {
        return format!("{x}");
    }
    let p = (2 - x.abs().log10().floor() as i32).clamp(0, 12) as usize;
    format!("{x:.p$}")
}

/// A median with its confidence interval, `1.000 µs [0.995, 1.005]`: all three in the median's
/// unit, with four significant digits on the median so that narrow intervals stay readable.
pub fn fmt_interval(median: f64, lower: f64, upper: f64) -> String {
    let (scale, unit) = unit_of(median);
    let v = median / scale;
    let p = if v.abs() >= 100.0 {
        1
    } else if v.abs() >= 10.0 {
        2
    } else {
        3
    };
    format!(
        "{v:.p$} {unit} [{:.p$}, {:.p$}]",
        lower / scale,
        upper / scale
    )
}

impl Comparison {
    /// The comparison as markdown: per table, the matched keys with ratio and speedup per
    /// non-reference column, then the unmatched keys.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        for t in &self.tables {
            let r = &t.columns[0];
            let _ = writeln!(s, "## {}\n", t.title);
            let _ = writeln!(
                s,
                "ratio = time / time({r}) (above 1: slower); speedup = time({r}) / time.\n"
            );
            let mut head = format!("| {} | {r} |", t.key_name);
            let mut rule = String::from("|---|--:|");
            for c in &t.columns[1..] {
                let _ = write!(head, " {c} | ratio | speedup |");
                rule.push_str("--:|--:|--:|");
            }
            let _ = writeln!(s, "{head}\n{rule}");
            for (key, vals) in &t.matched {
                let _ = write!(s, "| {key} | {} |", fmt_ns(vals[0]));
                for v in &vals[1..] {
                    let _ = write!(
                        s,
                        " {} | {} | {}× |",
                        fmt_ns(*v),
                        fmt_ratio(v / vals[0]),
                        fmt_ratio(vals[0] / v)
                    );
                }
                s.push('\n');
            }
            if t.matched.is_empty() {
                let _ = writeln!(s, "| (no {} present in every column) | |", t.key_name);
            }
            if !t.unmatched.is_empty() {
                let _ = writeln!(
                    s,
                    "\nUnmatched (missing from some columns, — marks where):\n"
                );
                let _ = writeln!(
                    s,
                    "| {} | {} |\n|---|{}",
                    t.key_name,
                    t.columns.join(" | "),
                    "--:|".repeat(t.columns.len())
                );
                for (key, vals) in &t.unmatched {
                    let cells: Vec<String> = vals
                        .iter()
                        .map(|v| v.map_or_else(|| "—".to_string(), fmt_ns))
                        .collect();
                    let _ = writeln!(s, "| {key} | {} |", cells.join(" | "));
                }
            }
            s.push('\n');
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        s
    }

    /// The comparison as CSV rows: one per key and non-reference column, unmatched keys included
    /// with empty cells where a value is missing.
    pub fn to_rows(&self) -> Vec<CompareRow> {
        let mut rows = Vec::new();
        for t in &self.tables {
            let all = t
                .matched
                .iter()
                .map(|(k, v)| (k, v.iter().map(|x| Some(*x)).collect::<Vec<_>>()))
                .chain(t.unmatched.iter().map(|(k, v)| (k, v.clone())));
            let mut sorted: Vec<_> = all.collect();
            sorted.sort_by(|a, b| natural_cmp(a.0, b.0));
            for (key, vals) in sorted {
                for (c, v) in t.columns.iter().zip(&vals).skip(1) {
                    let (r, v) = (vals[0], *v);
                    if r.is_none() && v.is_none() {
                        continue;
                    }
                    let both = r.zip(v);
                    rows.push(CompareRow {
                        table: t.name.clone(),
                        key: key.clone(),
                        reference: t.columns[0].clone(),
                        candidate: c.clone(),
                        reference_median_ns: r,
                        candidate_median_ns: v,
                        ratio: both.map(|(r, v)| v / r),
                        speedup: both.map(|(r, v)| r / v),
                    });
                }
            }
        }
        rows
    }
}

/// Runs `vitssl report compare`: markdown to stdout, CSV to `--out`.
pub fn run(args: CompareArgs) -> anyhow::Result<std::process::ExitCode> {
    use anyhow::Context as _;
    if args.by == By::Input && args.inputs.len() < 2 {
        return Err(ReportError::Usage(format!(
            "compare needs at least two inputs (got {}), or --by variant to compare the variants \
             within one",
            args.inputs.len()
        ))
        .into());
    }
    if args.by == By::Input && args.against.is_some() {
        return Err(ReportError::Usage("--against applies to --by variant only".into()).into());
    }
    let sources: Vec<Source> = args
        .inputs
        .iter()
        .map(|i| Source::new(i, args.criterion_dir.as_deref()))
        .collect();
    let inputs = load_all(&sources)?;
    let cmp = match args.by {
        By::Input => by_input(&inputs),
        By::Variant => by_variant(&inputs, args.against.as_deref())?,
    };
    print!("{}", cmp.to_markdown());
    if let Some(out) = &args.out {
        crate::record::write_atomic(out, cmp.to_rows())
            .with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!("wrote {}", out.display());
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::read::Measurement;

    fn meas(label: &str, rows: &[(&str, f64)]) -> Measurements {
        let by_id = rows
            .iter()
            .map(|(id, t)| {
                let parts: Vec<&str> = id.split('/').collect();
                let m = Measurement {
                    id: id.to_string(),
                    group: parts[0].into(),
                    variant: parts[1].into(),
                    size: parts[2].into(),
                    median_ns: *t,
                    lower_ns: t * 0.99,
                    upper_ns: t * 1.01,
                };
                (id.to_string(), m)
            })
            .collect();
        Measurements {
            label: label.into(),
            by_id,
        }
    }

    #[test]
    fn ids_missing_somewhere_are_unmatched_not_dropped() {
        let a = meas("a", &[("g/v/8", 100.0), ("g/v/16", 200.0), ("g/w/8", 5.0)]);
        let b = meas("b", &[("g/v/8", 50.0), ("g/v/16", 400.0), ("g/x/8", 7.0)]);
        let c = by_input(&[a, b]);
        let t = &c.tables[0];
        assert_eq!(t.matched.len(), 2);
        assert_eq!(t.matched[0].0, "g/v/8");
        let un: Vec<&str> = t.unmatched.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(un, ["g/w/8", "g/x/8"]);
        let rows = c.to_rows();
        let r8 = rows.iter().find(|r| r.key == "g/v/8").unwrap();
        assert_eq!(r8.ratio, Some(0.5));
        assert_eq!(r8.speedup, Some(2.0));
        let rw = rows.iter().find(|r| r.key == "g/w/8").unwrap();
        assert_eq!((rw.candidate_median_ns, rw.ratio), (None, None));
        let md = c.to_markdown();
        assert!(md.contains("Unmatched"), "{md}");
        assert!(md.contains("| g/x/8 | — | 7.00 ns |"), "{md}");
    }

    #[test]
    fn variants_are_compared_per_group_and_size() {
        let a = meas(
            "m",
            &[
                ("mae_sample/reference/16", 1000.0),
                ("mae_sample/fast-scalar/16", 400.0),
                ("mae_sample/fast-v3/16", 100.0),
                ("mae_sample/fast-v3/64", 300.0),
                ("exp/libm/1024", 800.0),
                ("exp/fast-v3/1024", 100.0),
            ],
        );
        let c = by_variant(std::slice::from_ref(&a), None).unwrap();
        assert_eq!(c.tables.len(), 2);
        let exp = &c.tables[0];
        assert_eq!(exp.columns, ["libm", "fast-v3"]);
        let mae = &c.tables[1];
        assert_eq!(mae.columns, ["reference", "fast-scalar", "fast-v3"]);
        assert_eq!(
            mae.matched,
            [("16".to_string(), vec![1000.0, 400.0, 100.0])]
        );
        assert_eq!(mae.unmatched.len(), 1);

        let s = by_variant(&[a], Some("fast-scalar")).unwrap();
        assert_eq!(s.tables.len(), 1);
        assert_eq!(s.tables[0].columns, ["fast-scalar", "fast-v3", "reference"]);
        assert_eq!(s.notes.len(), 1, "exp has no fast-scalar: {:?}", s.notes);
    }

    #[test]
    fn times_are_formatted_with_units() {
        assert_eq!(fmt_ns(12.345), "12.3 ns");
        assert_eq!(fmt_ns(1234.0), "1.23 µs");
        assert_eq!(fmt_ns(2.5e9), "2.50 s");
        assert_eq!(
            fmt_interval(1000.0, 995.0, 1005.0),
            "1.000 µs [0.995, 1.005]"
        );
        assert_eq!(fmt_interval(250.0, 240.0, 262.5), "250.0 ns [240.0, 262.5]");
    }
}
