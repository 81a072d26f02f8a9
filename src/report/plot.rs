//! `vitssl report plot`: SVG figures of a results directory (plotters' SVG backend).
//!
//! Figures, each skipped with a note when its data is absent:
//! - `convergence_steps_vs_p.svg`, `convergence_seconds_vs_p.svg`: steps and training seconds
//!   to convergence against the patch count P, log–log, one series per objective (MAE, CL), from
//!   the `convergence.csv` rows whose id starts with `scale/`;
//! - `convergence_steps_vs_delta.svg`: steps to convergence against the information gap Δ
//!   (SPEC §9), linear axes, from the rows whose id starts with `gap/`;
//! - `gflops_<group>.svg`, one per criterion group of `kernels.csv` and `step.csv`: throughput
//!   per variant (one series each: `fast-v3`, `fast-scalar`, `reference`, …) against P, log–log
//!   (against n when the group has no P, as `exp`). The y axis is GFLOP/s, except for `exp`,
//!   which is element-counted (elements per ns).
//!
//! Runs that did not converge within their budget are drawn as hollow markers at the budget.
//! Points that cannot sit on a log axis (zero or negative) are left out and counted in a note.
//! Each SVG is rendered to memory and written atomically (temporary file, then rename).

use super::error::{ReportError, Result};
use super::read::{Results, read_results};
use super::schema::{BenchRow, ConvergenceRow};
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Arguments of `vitssl report plot`.
#[derive(Debug, clap::Args)]
pub struct PlotArgs {
    /// Results directory (results/<tag>/) holding convergence.csv, kernels.csv and/or step.csv.
    #[arg(value_name = "RESULTS_DIR")]
    pub dir: PathBuf,
    /// Directory for the SVG files (default: the results directory).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// One marker of a figure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    /// Abscissa.
    pub x: f64,
    /// Ordinate.
    pub y: f64,
    /// Drawn hollow (a run that did not converge).
    pub hollow: bool,
}

/// One labelled series.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend text.
    pub label: String,
    /// Markers; the line joins the mean y of each x, in x order.
    pub points: Vec<Point>,
}

/// A figure to draw: axes, labels and series.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// File name, `*.svg`.
    pub file: String,
    /// Title drawn above the plot.
    pub title: String,
    /// X axis label.
    pub x_desc: String,
    /// Y axis label.
    pub y_desc: String,
    /// Logarithmic x axis.
    pub x_log: bool,
    /// Logarithmic y axis.
    pub y_log: bool,
    /// The series, in legend order.
    pub series: Vec<Series>,
    /// Provenance line drawn under the plot (CPU, git revision, dates).
    pub note: String,
}

/// What `plot` did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlotSummary {
    /// SVG files written.
    pub written: Vec<PathBuf>,
    /// Figures skipped and points left out, one note each.
    pub notes: Vec<String>,
}

/// Groups items into series by a label, keeping label order by first appearance.
fn group_series<T>(
    items: impl IntoIterator<Item = T>,
    label: impl Fn(&T) -> String,
    point: impl Fn(&T) -> Point,
) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for item in items {
        let l = label(&item);
        let p = point(&item);
        match out.iter_mut().find(|s| s.label == l) {
            Some(s) => s.points.push(p),
            None => out.push(Series {
                label: l,
                points: vec![p],
            }),
        }
    }
    out
}

/// A provenance line: the distinct CPU models and git revisions, and the range of dates.
fn provenance<'a>(rows: impl Iterator<Item = (&'a str, &'a str, &'a str)>) -> String {
    let (mut cpus, mut revs, mut dates) = (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
    for (cpu, rev, date) in rows {
        cpus.insert(cpu);
        revs.insert(rev);
        dates.insert(date);
    }
    let join = |s: &BTreeSet<&str>| s.iter().copied().collect::<Vec<_>>().join(", ");
    let dates = match (dates.first(), dates.last()) {
        (Some(a), Some(b)) if a != b => format!("{a} to {b}"),
        (Some(a), _) => a.to_string(),
        _ => String::new(),
    };
    format!("cpu: {}; git: {}; date: {dates}", join(&cpus), join(&revs))
}

/// The series label of a convergence row: the objective, plus engine and ISA when the rows mix
/// several.
fn convergence_label(rows: &[&ConvergenceRow]) -> impl Fn(&&ConvergenceRow) -> String {
    let runs: BTreeSet<(&str, &str)> = rows
        .iter()
        .map(|r| (r.engine.as_str(), r.isa.as_str()))
        .collect();
    let mixed = runs.len() > 1;
    move |r: &&ConvergenceRow| {
        let obj = r.objective.to_uppercase();
        if mixed {
            format!("{obj} ({}, {})", r.engine, r.isa)
        } else {
            obj
        }
    }
}

/// The convergence figures of `rows` (see the module docs); notes say what is absent.
pub fn convergence_figures(rows: &[ConvergenceRow], notes: &mut Vec<String>) -> Vec<Figure> {
    let mut figs = Vec::new();
    let scale: Vec<&ConvergenceRow> = rows.iter().filter(|r| r.id.starts_with("scale/")).collect();
    if scale.is_empty() {
        notes.push(
            "skipped convergence_steps_vs_p.svg and convergence_seconds_vs_p.svg: no \
             convergence.csv rows with id prefix scale/"
                .into(),
        );
    } else {
        let label = convergence_label(&scale);
        let note_line = provenance(
            scale
                .iter()
                .map(|r| (r.cpu_model.as_str(), r.git_rev.as_str(), r.date.as_str())),
        );
        let budget = " (hollow: not converged, at the budget)";
        let any_hollow = scale.iter().any(|r| !r.converged);
        let note = if any_hollow { budget } else { "" };
        figs.push(Figure {
            file: "convergence_steps_vs_p.svg".into(),
            title: "Steps to convergence vs patches P (scale sweep)".into(),
            x_desc: "patches P (log)".into(),
            y_desc: format!("steps to convergence (log){note}"),
            x_log: true,
            y_log: true,
            series: group_series(scale.iter().copied(), &label, |r| Point {
                x: r.p as f64,
                y: r.steps as f64,
                hollow: !r.converged,
            }),
            note: note_line.clone(),
        });
        figs.push(Figure {
            file: "convergence_seconds_vs_p.svg".into(),
            title: "Training seconds to convergence vs patches P (scale sweep)".into(),
            x_desc: "patches P (log)".into(),
            y_desc: format!("training seconds to convergence (log){note}"),
            x_log: true,
            y_log: true,
            series: group_series(scale.iter().copied(), &label, |r| Point {
                x: r.p as f64,
                y: r.seconds,
                hollow: !r.converged,
            }),
            note: note_line,
        });
    }
    let gap: Vec<&ConvergenceRow> = rows.iter().filter(|r| r.id.starts_with("gap/")).collect();
    if gap.is_empty() {
        notes.push(
            "skipped convergence_steps_vs_delta.svg: no convergence.csv rows with id prefix gap/"
                .into(),
        );
    } else {
        let label = convergence_label(&gap);
        let note = if gap.iter().any(|r| !r.converged) {
            " (hollow: not converged, at the budget)"
        } else {
            ""
        };
        figs.push(Figure {
            file: "convergence_steps_vs_delta.svg".into(),
            title: "Steps to convergence vs information gap Δ (gap sweep)".into(),
            x_desc: "information gap Δ".into(),
            y_desc: format!("steps to convergence{note}"),
            x_log: false,
            y_log: false,
            series: group_series(gap.iter().copied(), &label, |r| Point {
                x: r.delta,
                y: r.steps as f64,
                hollow: !r.converged,
            }),
            note: provenance(
                gap.iter()
                    .map(|r| (r.cpu_model.as_str(), r.git_rev.as_str(), r.date.as_str())),
            ),
        });
    }
    figs
}

/// The throughput figures of `rows`, one per group (see the module docs).
pub fn gflops_figures(rows: &[BenchRow], notes: &mut Vec<String>) -> Vec<Figure> {
    if rows.is_empty() {
        notes.push("skipped gflops_<group>.svg: no kernels.csv or step.csv rows".into());
        return Vec::new();
    }
    let mut groups: BTreeMap<&str, Vec<&BenchRow>> = BTreeMap::new();
    for r in rows {
        groups.entry(&r.group).or_default().push(r);
    }
    let mut figs = Vec::new();
    for (group, rows) in groups {
        let by_p = rows.iter().any(|r| r.p > 0);
        let threads: BTreeSet<usize> = rows.iter().map(|r| r.threads).collect();
        let mut isas: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for r in &rows {
            isas.entry(&r.variant).or_default().insert(&r.isa);
        }
        let label = |r: &&BenchRow| {
            let mut l = r.variant.clone();
            if isas[r.variant.as_str()].len() > 1 {
                l = format!("{l} on {}", r.isa);
            }
            if threads.len() > 1 {
                l = format!("{l}, {} threads", r.threads);
            }
            l
        };
        let (x_desc, x_of): (&str, fn(&BenchRow) -> usize) = if by_p {
            ("patches P (log)", |r| r.p)
        } else {
            ("elements or samples per iteration n (log)", |r| r.n)
        };
        let elements = group == "exp";
        let y_desc = if elements {
            "throughput, G elements/s = elements per ns (log)"
        } else {
            "executed GFLOP/s (log; compare variants by time)"
        };
        let what = if elements { "throughput" } else { "GFLOP/s" };
        let safe: String = group
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        figs.push(Figure {
            file: format!("gflops_{safe}.svg"),
            title: format!(
                "{group}: {what} per variant vs {}",
                if by_p { "patches P" } else { "n" }
            ),
            x_desc: x_desc.into(),
            y_desc: y_desc.into(),
            x_log: true,
            y_log: true,
            series: group_series(rows.iter().copied(), label, |r| Point {
                x: x_of(r) as f64,
                y: r.gflops,
                hollow: false,
            }),
            note: provenance(
                rows.iter()
                    .map(|r| (r.cpu_model.as_str(), r.git_rev.as_str(), r.date.as_str())),
            ),
        });
    }
    figs
}

/// Axis bounds around `values`. On a log axis with base `base`: whole powers of the base
/// enclosing the values with some room (plotters labels log axes from the first whole power on,
/// so the bounds must be whole powers for the ends to be labelled). On a linear axis: 5% of the
/// span either side. Both are widened when all values coincide.
fn bounds(values: impl Iterator<Item = f64>, log: Option<f64>) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    match log {
        Some(base) => {
            let lo_e = (lo / 1.1).log(base).floor();
            let hi_e = (hi * 1.1).log(base).ceil().max(lo_e + 1.0);
            (base.powf(lo_e), base.powf(hi_e))
        }
        None if lo == hi => {
            let w = lo.abs().max(1.0) * 0.1;
            (lo - w, hi + w)
        }
        None => {
            let pad = (hi - lo) * 0.05;
            (lo - pad, hi + pad)
        }
    }
}

/// Labelled (bold) and unlabelled (light) ticks of a log axis over `[lo, hi]` (whole powers of
/// `base`): every power of 2 (every other one when there are many); every power of 10 with
/// 2× and 5× between when the axis spans at most two decades, and light lines at 2–9×.
fn log_ticks(lo: f64, hi: f64, base: f64) -> (Vec<f64>, Vec<f64>) {
    let (e0, e1) = (lo.log(base).round() as i32, hi.log(base).round() as i32);
    let powers: Vec<f64> = (e0..=e1).map(|e| base.powi(e)).collect();
    if base == 10.0 {
        let between: &[f64] = if e1 - e0 <= 2 { &[2.0, 5.0] } else { &[] };
        let mut bold = Vec::new();
        let mut light = Vec::new();
        for &p in &powers {
            bold.push(p);
            if p < hi {
                bold.extend(between.iter().map(|m| m * p));
                light.extend((2..10).map(|m| f64::from(m) * p));
            }
        }
        (bold, light)
    } else {
        let step = powers.len().div_ceil(12).max(1);
        let bold = powers.iter().step_by(step).copied().collect();
        (bold, powers)
    }
}

/// A tick label: integers without decimals, other values with at most four significant
/// digits, very small or large ones in exponent notation.
fn fmt_tick(v: &f64) -> String {
    let a = v.abs();
    if a < 1e-12 {
        // Linear axes produce round-off zeros such as -2.8e-17.
        "0".to_string()
    } else if !(1e-3..1e7).contains(&a) {
        format!("{v:e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        let digits = (3 - a.log10().floor() as i32).clamp(0, 6) as usize;
        let t = format!("{v:.digits$}");
        t.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Drops points a log axis cannot show; returns how many were dropped.
fn drop_unplottable(fig: &mut Figure) -> usize {
    let mut dropped = 0;
    for s in &mut fig.series {
        let before = s.points.len();
        s.points.retain(|p| {
            p.x.is_finite()
                && p.y.is_finite()
                && (!fig.x_log || p.x > 0.0)
                && (!fig.y_log || p.y > 0.0)
        });
        dropped += before - s.points.len();
    }
    fig.series.retain(|s| !s.points.is_empty());
    dropped
}

/// The line of a series: mean y per x, in x order.
fn line_of(points: &[Point]) -> Vec<(f64, f64)> {
    let mut by_x: Vec<(f64, f64, usize)> = Vec::new();
    let mut sorted = points.to_vec();
    sorted.sort_by(|a, b| a.x.total_cmp(&b.x));
    for p in sorted {
        match by_x.last_mut() {
            Some((x, sum, n)) if *x == p.x => {
                *sum += p.y;
                *n += 1;
            }
            _ => by_x.push((p.x, p.y, 1)),
        }
    }
    by_x.into_iter()
        .map(|(x, sum, n)| (x, sum / n as f64))
        .collect()
}

/// Series colours (Tableau 10): distinct and dark enough on white.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The legend corner holding the fewest markers (a corner is the outer 40% of each axis).
fn legend_position(fig: &Figure, x: (f64, f64), y: (f64, f64)) -> SeriesLabelPosition {
    let norm = |v: f64, (lo, hi): (f64, f64), log: bool| {
        if log {
            (v / lo).ln() / (hi / lo).ln()
        } else {
            (v - lo) / (hi - lo)
        }
    };
    let corners = [
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let side = |t: f64, high: bool| if high { t > 0.6 } else { t < 0.4 };
    let points: Vec<(f64, f64)> = fig
        .series
        .iter()
        .flat_map(|s| s.points.iter())
        .map(|p| (norm(p.x, x, fig.x_log), norm(p.y, y, fig.y_log)))
        .collect();
    corners
        .into_iter()
        .min_by_key(|&(_, right, upper)| {
            points
                .iter()
                .filter(|&&(px, py)| side(px, right) && side(py, upper))
                .count()
        })
        .map_or(SeriesLabelPosition::UpperLeft, |c| c.0)
}

fn draw_on<X, Y>(
    fig: &Figure,
    x: X,
    y: Y,
    legend: SeriesLabelPosition,
) -> std::result::Result<String, String>
where
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 660)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&fig.title, ("sans-serif", 26))
            .margin(20)
            .margin_bottom(40)
            .x_label_area_size(55)
            .y_label_area_size(80)
            .build_cartesian_2d(x, y)
            .map_err(e)?;
        chart
            .configure_mesh()
            .x_desc(&fig.x_desc)
            .y_desc(&fig.y_desc)
            .x_labels(12)
            .y_labels(12)
            .x_label_formatter(&fmt_tick)
            .y_label_formatter(&fmt_tick)
            .axis_desc_style(("sans-serif", 18))
            .label_style(("sans-serif", 15))
            .draw()
            .map_err(e)?;
        for (i, s) in fig.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()].to_rgba();
            chart
                .draw_series(LineSeries::new(line_of(&s.points), color.stroke_width(2)))
                .map_err(e)?
                .label(&s.label)
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(-10, 0), (10, 0)], color.stroke_width(2))
                        + Circle::new((0, 0), 4, color.filled())
                });
            chart
                .draw_series(s.points.iter().map(|p| {
                    let style = if p.hollow {
                        color.stroke_width(2)
                    } else {
                        color.filled()
                    };
                    Circle::new((p.x, p.y), 5, style)
                }))
                .map_err(e)?;
        }
        chart
            .configure_series_labels()
            .position(legend)
            .label_font(("sans-serif", 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(e)?;
        root.draw(&Text::new(
            fig.note.as_str(),
            (10, 636),
            ("sans-serif", 13).into_font().color(&BLACK.mix(0.6)),
        ))
        .map_err(e)?;
        root.present().map_err(e)?;
    }
    Ok(svg)
}

/// Renders a figure to SVG text (points a log axis cannot show must be dropped first).
pub fn render(fig: &Figure) -> std::result::Result<String, String> {
    let xs = || fig.series.iter().flat_map(|s| s.points.iter().map(|p| p.x));
    let ys = || fig.series.iter().flat_map(|s| s.points.iter().map(|p| p.y));
    // Sizes (P, n) are mostly powers of two; times and rates span decades.
    let (xb, yb) = (2.0, 10.0);
    let (x0, x1) = bounds(xs(), fig.x_log.then_some(xb));
    let (y0, y1) = bounds(ys(), fig.y_log.then_some(yb));
    let log_axis = |lo: f64, hi: f64, base: f64| {
        let (bold, light) = log_ticks(lo, hi, base);
        (lo..hi)
            .log_scale()
            .with_key_points(bold)
            .with_light_points(light)
    };
    let legend = legend_position(fig, (x0, x1), (y0, y1));
    match (fig.x_log, fig.y_log) {
        (true, true) => draw_on(fig, log_axis(x0, x1, xb), log_axis(y0, y1, yb), legend),
        (true, false) => draw_on(fig, log_axis(x0, x1, xb), y0..y1, legend),
        (false, true) => draw_on(fig, x0..x1, log_axis(y0, y1, yb), legend),
        (false, false) => draw_on(fig, x0..x1, y0..y1, legend),
    }
}

/// Writes `text` to `path` atomically: a temporary file beside it, then a rename.
fn write_text_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension("svg.tmp");
    let io = |e| ReportError::io(path, e);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Draws every figure the results have data for into `out_dir` (made if absent).
pub fn plot_results(results: &Results, out_dir: &Path) -> Result<PlotSummary> {
    let mut summary = PlotSummary::default();
    let mut figs = convergence_figures(&results.convergence, &mut summary.notes);
    figs.extend(gflops_figures(&results.bench, &mut summary.notes));
    if !figs.is_empty() {
        std::fs::create_dir_all(out_dir).map_err(|e| ReportError::io(out_dir, e))?;
    }
    for mut fig in figs {
        let dropped = drop_unplottable(&mut fig);
        if dropped > 0 {
            summary.notes.push(format!(
                "{}: left out {dropped} point(s) that are not finite or not positive on a log axis",
                fig.file
            ));
        }
        if fig.series.is_empty() {
            summary
                .notes
                .push(format!("skipped {}: no plottable points", fig.file));
            continue;
        }
        let path = out_dir.join(&fig.file);
        let svg = render(&fig).map_err(|message| ReportError::Plot {
            path: path.clone(),
            message,
        })?;
        write_text_atomic(&path, &svg)?;
        summary.written.push(path);
    }
    Ok(summary)
}

/// Runs `vitssl report plot`: prints the files written and the notes.
pub fn run(args: PlotArgs) -> anyhow::Result<std::process::ExitCode> {
    let results = read_results(&args.dir)?;
    let out = args.out.clone().unwrap_or_else(|| {
        if args.dir.is_dir() {
            args.dir.clone()
        } else {
            args.dir
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        }
    });
    let summary = plot_results(&results, &out)?;
    for n in &summary.notes {
        println!("note: {n}");
    }
    for p in &summary.written {
        println!("wrote {}", p.display());
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_join_mean_per_x_in_order() {
        let p = |x, y| Point {
            x,
            y,
            hollow: false,
        };
        let line = line_of(&[p(4.0, 1.0), p(1.0, 2.0), p(4.0, 3.0)]);
        assert_eq!(line, [(1.0, 2.0), (4.0, 2.0)]);
    }

    #[test]
    fn log_bounds_widen_a_single_value() {
        assert_eq!(bounds([16.0, 256.0].into_iter(), Some(2.0)), (8.0, 512.0));
        assert_eq!(
            bounds([40.0, 270.0].into_iter(), Some(10.0)),
            (10.0, 1000.0)
        );
        assert_eq!(bounds([0.0, 10.0].into_iter(), None), (-0.5, 10.5));
        let (lo, hi) = bounds([3.0].into_iter(), None);
        assert!(lo < 3.0 && hi > 3.0);
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(fmt_tick(&100.0), "100");
        assert_eq!(fmt_tick(&0.25), "0.25");
        assert_eq!(fmt_tick(&-0.2), "-0.2");
        assert_eq!(fmt_tick(&1.0e-5), "1e-5");
        assert_eq!(fmt_tick(&12.345678), "12.35");
    }
}
