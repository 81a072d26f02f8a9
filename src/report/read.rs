//! Readers: result directories and CSV files into typed rows, criterion baselines into
//! [`Measurement`]s.
//!
//! A results directory is `results/<machine-tag>/` holding any of `kernels.csv`, `step.csv`
//! (rows [`BenchRow`]) and `convergence.csv` (rows [`ConvergenceRow`]); a single CSV file is
//! recognised by its header. Ids are unique within a file, and across the benchmark files of
//! one directory; a repeated id is an error naming the id and the file.
//!
//! A criterion baseline is read from criterion 0.8's layout,
//! `<criterion-dir>/<group>/<function>/<value>/<baseline>/estimates.json` (the path components are
//! criterion's filename-safe forms of the id parts), with the benchmark's full id taken from
//! `benchmark.json` beside it (`full_id`, `group_id`, `function_id`, `value_str`), or from the path
//! when that file is absent. The median and its confidence interval come from
//! `median.point_estimate` and `median.confidence_interval.{lower_bound, upper_bound}`, in ns.

use super::error::{ReportError, Result};
use super::schema::{BenchRow, ConvergenceRow};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The result files of a directory, in the order they are read.
pub const RESULT_FILES: [&str; 3] = ["kernels.csv", "step.csv", "convergence.csv"];

/// The rows of one results directory or CSV file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Results {
    /// The files read.
    pub files: Vec<PathBuf>,
    /// Timing rows of `kernels.csv` and `step.csv`, in file order.
    pub bench: Vec<BenchRow>,
    /// Rows of `convergence.csv`, in file order.
    pub convergence: Vec<ConvergenceRow>,
}

/// What kind of rows a CSV file holds, told by its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsvKind {
    /// [`BenchRow`]s (`kernels.csv`, `step.csv`).
    Bench,
    /// [`ConvergenceRow`]s (`convergence.csv`).
    Convergence,
}

/// Tells a result CSV's kind from its header: `median_ns` marks timing rows, `objective` with
/// `steps` marks convergence rows.
pub fn csv_kind(path: &Path) -> Result<CsvKind> {
    let mut reader = open_csv(path)?;
    let headers = reader.headers().map_err(|source| ReportError::Csv {
        path: path.to_path_buf(),
        source,
    })?;
    let has = |name: &str| headers.iter().any(|h| h == name);
    if has("median_ns") {
        Ok(CsvKind::Bench)
    } else if has("objective") && has("steps") {
        Ok(CsvKind::Convergence)
    } else {
        Err(ReportError::UnknownCsv {
            path: path.to_path_buf(),
        })
    }
}

fn open_csv(path: &Path) -> Result<csv::Reader<std::fs::File>> {
    csv::Reader::from_path(path).map_err(|source| ReportError::Csv {
        path: path.to_path_buf(),
        source,
    })
}

fn read_rows<T: DeserializeOwned>(path: &Path, id: impl Fn(&T) -> &str) -> Result<Vec<T>> {
    let mut reader = open_csv(path)?;
    let rows = reader
        .deserialize()
        .collect::<std::result::Result<Vec<T>, _>>()
        .map_err(|source| ReportError::Csv {
            path: path.to_path_buf(),
            source,
        })?;
    let mut seen = BTreeSet::new();
    for row in &rows {
        if !seen.insert(id(row)) {
            return Err(ReportError::DuplicateId {
                id: id(row).to_string(),
                path: path.to_path_buf(),
            });
        }
    }
    Ok(rows)
}

/// Reads a `kernels.csv` or `step.csv`; rejects a repeated id.
pub fn read_bench_csv(path: &Path) -> Result<Vec<BenchRow>> {
    read_rows(path, |r: &BenchRow| &r.id)
}

/// Reads a `convergence.csv`; rejects a repeated id.
pub fn read_convergence_csv(path: &Path) -> Result<Vec<ConvergenceRow>> {
    read_rows(path, |r: &ConvergenceRow| &r.id)
}

/// Reads a results directory (any of [`RESULT_FILES`]) or a single result CSV.
///
/// A benchmark id repeated across `kernels.csv` and `step.csv` of one directory is an error too.
pub fn read_results(path: &Path) -> Result<Results> {
    let meta = std::fs::metadata(path).map_err(|e| ReportError::io(path, e))?;
    let mut out = Results::default();
    let mut bench_origin: HashMap<String, PathBuf> = HashMap::new();
    let mut add = |out: &mut Results, file: &Path, kind: CsvKind| -> Result<()> {
        match kind {
            CsvKind::Bench => {
                for row in read_bench_csv(file)? {
                    if let Some(first) = bench_origin.insert(row.id.clone(), file.to_path_buf()) {
                        return Err(ReportError::DuplicateAcross {
                            id: row.id,
                            first,
                            second: file.to_path_buf(),
                        });
                    }
                    out.bench.push(row);
                }
            }
            CsvKind::Convergence => out.convergence.extend(read_convergence_csv(file)?),
        }
        out.files.push(file.to_path_buf());
        Ok(())
    };
    if meta.is_dir() {
        for name in RESULT_FILES {
            let file = path.join(name);
            if file.exists() {
                let kind = if name == "convergence.csv" {
                    CsvKind::Convergence
                } else {
                    CsvKind::Bench
                };
                add(&mut out, &file, kind)?;
            }
        }
        if out.files.is_empty() {
            return Err(ReportError::NoResults {
                path: path.to_path_buf(),
            });
        }
    } else {
        let kind = csv_kind(path)?;
        add(&mut out, path, kind)?;
    }
    Ok(out)
}

/// One timed benchmark, from a result CSV or a criterion baseline.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Full id, `group/variant/size`.
    pub id: String,
    /// Criterion group.
    pub group: String,
    /// Variant (criterion's function id), empty when the id has none.
    pub variant: String,
    /// Size parameter (criterion's value string), empty when the id has none.
    pub size: String,
    /// Median time per iteration, ns.
    pub median_ns: f64,
    /// Lower bound of the median's confidence interval, ns.
    pub lower_ns: f64,
    /// Upper bound of the median's confidence interval, ns.
    pub upper_ns: f64,
}

impl From<&BenchRow> for Measurement {
    fn from(r: &BenchRow) -> Self {
        // The id is `group/variant/size`; fall back to P when it does not have that shape.
        let prefix = format!("{}/{}/", r.group, r.variant);
        let size =
            r.id.strip_prefix(&prefix)
                .map_or_else(|| r.p.to_string(), str::to_string);
        Self {
            id: r.id.clone(),
            group: r.group.clone(),
            variant: r.variant.clone(),
            size,
            median_ns: r.median_ns,
            lower_ns: r.lower_ns,
            upper_ns: r.upper_ns,
        }
    }
}

/// The timed benchmarks of one input, by id, with a short label for tables.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurements {
    /// Short name of the input: the machine tag, `tag/file.csv`, or the baseline name.
    pub label: String,
    /// Measurements by id.
    pub by_id: BTreeMap<String, Measurement>,
}

/// Where measurements come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A results directory or a result CSV (its timing rows; convergence rows are ignored).
    Path(PathBuf),
    /// A criterion baseline saved with `--save-baseline name`.
    Criterion {
        /// Criterion's output directory, normally `target/criterion`.
        dir: PathBuf,
        /// The baseline name.
        baseline: String,
    },
}

impl Source {
    /// `input` as a path, or as a baseline name under `criterion_dir` when that is given.
    pub fn new(input: &str, criterion_dir: Option<&Path>) -> Self {
        match criterion_dir {
            Some(dir) => Source::Criterion {
                dir: dir.to_path_buf(),
                baseline: input.to_string(),
            },
            None => Source::Path(PathBuf::from(input)),
        }
    }

    /// A short label: the directory name, `parent/file` for a file, the baseline name.
    pub fn label(&self) -> String {
        match self {
            Source::Path(p) => {
                let name = |q: &Path| q.file_name().map(|s| s.to_string_lossy().into_owned());
                let own = name(p).unwrap_or_else(|| p.display().to_string());
                match p.parent().and_then(name) {
                    Some(parent) if p.is_file() => format!("{parent}/{own}"),
                    _ => own,
                }
            }
            Source::Criterion { baseline, .. } => baseline.clone(),
        }
    }

    /// Reads the measurements.
    pub fn load(&self) -> Result<Measurements> {
        let rows = match self {
            Source::Path(p) => {
                let results = read_results(p)?;
                if results.bench.is_empty() {
                    return Err(ReportError::NoTimings { path: p.clone() });
                }
                results.bench.iter().map(Measurement::from).collect()
            }
            Source::Criterion { dir, baseline } => read_criterion_baseline(dir, baseline)?,
        };
        Ok(Measurements {
            label: self.label(),
            by_id: rows.into_iter().map(|m| (m.id.clone(), m)).collect(),
        })
    }
}

/// Loads every source, making labels unique (a repeated label becomes the full path).
pub fn load_all(sources: &[Source]) -> Result<Vec<Measurements>> {
    let mut all = sources
        .iter()
        .map(Source::load)
        .collect::<Result<Vec<_>>>()?;
    let labels: Vec<String> = all.iter().map(|m| m.label.clone()).collect();
    for (i, (m, src)) in all.iter_mut().zip(sources).enumerate() {
        if labels.iter().filter(|l| **l == labels[i]).count() > 1 {
            m.label = match src {
                Source::Path(p) => p.display().to_string(),
                Source::Criterion { dir, baseline } => format!("{}:{baseline}", dir.display()),
            };
        }
    }
    Ok(all)
}

#[derive(Deserialize)]
struct CiJson {
    lower_bound: f64,
    upper_bound: f64,
}

#[derive(Deserialize)]
struct EstimateJson {
    point_estimate: f64,
    confidence_interval: CiJson,
}

#[derive(Deserialize)]
struct EstimatesJson {
    median: EstimateJson,
}

#[derive(Deserialize)]
struct BenchmarkJson {
    group_id: String,
    function_id: Option<String>,
    value_str: Option<String>,
    full_id: String,
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| ReportError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Collects the directories holding an `estimates.json` below `dir`: those named `baseline` go
/// to `hits`, every such name to `names`. Symlinks are not followed.
fn find_baseline_dirs(
    dir: &Path,
    baseline: &str,
    hits: &mut Vec<PathBuf>,
    names: &mut BTreeSet<String>,
) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| ReportError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ReportError::io(dir, e))?;
        let path = entry.path();
        let is_dir = entry
            .file_type()
            .map_err(|e| ReportError::io(&path, e))?
            .is_dir();
        if !is_dir {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        // `change/` holds criterion's relative-change estimates, not a baseline.
        if name == "change" {
            continue;
        }
        if path.join("estimates.json").is_file() {
            if name == baseline {
                hits.push(path);
            }
            names.insert(name);
        } else {
            find_baseline_dirs(&path, baseline, hits, names)?;
        }
    }
    Ok(())
}

/// Reads the criterion baseline `baseline` (as saved by `--save-baseline baseline`; `new` is the
/// latest run) from criterion's output directory `dir`, one [`Measurement`] per benchmark.
pub fn read_criterion_baseline(dir: &Path, baseline: &str) -> Result<Vec<Measurement>> {
    let mut hits = Vec::new();
    let mut names = BTreeSet::new();
    find_baseline_dirs(dir, baseline, &mut hits, &mut names)?;
    if hits.is_empty() {
        let found = if names.is_empty() {
            "none".to_string()
        } else {
            names.into_iter().collect::<Vec<_>>().join(", ")
        };
        return Err(ReportError::NoBaseline {
            dir: dir.to_path_buf(),
            name: baseline.to_string(),
            found,
        });
    }
    hits.sort();
    let mut origin: HashMap<String, PathBuf> = HashMap::new();
    let mut out = Vec::with_capacity(hits.len());
    for hit in hits {
        let est: EstimatesJson = read_json(&hit.join("estimates.json"))?;
        let bench_file = hit.join("benchmark.json");
        let (id, group, variant, size) = if bench_file.is_file() {
            let b: BenchmarkJson = read_json(&bench_file)?;
            (
                b.full_id,
                b.group_id,
                b.function_id.unwrap_or_default(),
                b.value_str.unwrap_or_default(),
            )
        } else {
            // No benchmark.json: the id is the path below `dir` (the filename-safe form).
            let rel = hit
                .parent()
                .unwrap_or(&hit)
                .strip_prefix(dir)
                .unwrap_or(&hit);
            let parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            let part = |i: usize| parts.get(i).cloned().unwrap_or_default();
            (parts.join("/"), part(0), part(1), part(2))
        };
        if let Some(first) = origin.insert(id.clone(), hit.clone()) {
            return Err(ReportError::DuplicateAcross {
                id,
                first,
                second: hit,
            });
        }
        let m = est.median;
        out.push(Measurement {
            id,
            group,
            variant,
            size,
            median_ns: m.point_estimate,
            lower_ns: m.confidence_interval.lower_bound,
            upper_ns: m.confidence_interval.upper_bound,
        });
    }
    Ok(out)
}

/// Orders ids naturally: `/`-separated parts compare as numbers when both are numbers, so
/// `g/v/8` sorts before `g/v/16`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let mut pa = a.split('/');
    let mut pb = b.split('/');
    loop {
        match (pa.next(), pb.next()) {
            (None, None) => return std::cmp::Ordering::Equal,
            (None, Some(_)) => return std::cmp::Ordering::Less,
            (Some(_), None) => return std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = match (x.parse::<f64>(), y.parse::<f64>()) {
                    (Ok(u), Ok(v)) => u.total_cmp(&v),
                    _ => x.cmp(y),
                };
                if ord != std::cmp::Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_sorts_sizes_numerically() {
        let mut ids = vec!["g/v/16", "g/v/8", "g/a/100", "f/v/1"];
        ids.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(ids, ["f/v/1", "g/a/100", "g/v/8", "g/v/16"]);
    }

    #[test]
    fn label_of_a_directory_is_its_name() {
        let s = Source::Path(PathBuf::from("results/box-a"));
        assert_eq!(s.label(), "box-a");
        let c = Source::new("before", Some(Path::new("target/criterion")));
        assert_eq!(c.label(), "before");
    }
}
