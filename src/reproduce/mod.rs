//! `vitssl reproduce`: the experiment set behind the paper's claims, the claims table and the
//! figures (SPEC §7–10).
//!
//! The experiments are one sweep of named points ([`experiments`]); each point trains one model.
//! Output, under `--out` (default `results/reproduce/`):
//! - `runs.csv`: one [`RunRow`] per point, in sweep order (a shard writes only its slice, so
//!   concatenating the shards' `runs.csv` rows in shard order gives the unsharded file's rows);
//! - `traces/<id>.csv`: every evaluation of a point, in the `vitssl train` CSV format;
//! - `attention.csv`: the attention row of one masked local query after the headline runs;
//! - `claims.csv` / `claims.md` and the SVG figures, made by [`assemble`] from the files above
//!   (so a sharded sweep is assembled once its shards' files are gathered in one directory).

pub mod claims;
pub mod figures;

use crate::config::{EmbeddingKind, GeometryConfig, Objective, RunConfig};
use crate::engine::EngineKind;
use crate::isa::Isa;
use crate::provenance::Provenance;
use crate::record::{ConfigColumns, RowWriter, train_row};
use crate::sweep::{Point, Shard, Trial, run_point};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One finished point of the experiment set (`runs.csv`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    /// Point id, `experiment/...`.
    pub id: String,
    /// `mae` or `cl`.
    pub objective: String,
    /// Engine.
    pub engine: String,
    /// Instruction set.
    pub isa: String,
    /// Grid rows.
    pub rows: usize,
    /// Grid columns.
    pub cols: usize,
    /// Patches P.
    pub p: usize,
    /// Embedding dimension d.
    pub d: usize,
    /// Block side b.
    pub block: usize,
    /// Global fraction ρ.
    pub rho: f64,
    /// Information gap Δ.
    pub delta: f64,
    /// `orthonormal` or `gaussian`.
    pub embedding: String,
    /// Noise σ.
    pub noise: f64,
    /// Master seed.
    pub seed: u64,
    /// Whether the run reached its target.
    pub converged: bool,
    /// Steps to convergence (or taken).
    pub steps: usize,
    /// Training seconds to convergence (or in all).
    pub seconds: f64,
    /// First-step ratio `−ΔΦ_global / ΔΦ_target`.
    pub rho0: f64,
    /// First evaluation step with `own_mass > global_mass_local` (empty: never).
    pub t_cross: Option<usize>,
    /// Final loss.
    pub loss: f64,
    /// Final `own_mass`.
    pub own_mass: f64,
    /// Final `global_mass_local`.
    pub global_mass_local: f64,
    /// Final `global_mass_all`.
    pub global_mass_all: f64,
    /// Final `diversity`.
    pub diversity: f64,
    /// Final `phi_target`.
    pub phi_target: f64,
    /// Final `phi_global`.
    pub phi_global: f64,
    /// Git revision.
    pub git_rev: String,
    /// CPU model.
    pub cpu_model: String,
    /// Logical cores.
    pub cores: usize,
    /// Worker threads.
    pub threads: usize,
    /// rustc version.
    pub rustc: String,
    /// UTC date.
    pub date: String,
}

impl RunRow {
    fn new(t: &Trial, threads: usize) -> Self {
        let c = t.convergence_row(threads);
        let s = &t.outcome.summary;
        let o = s.last.obs;
        Self {
            id: c.id,
            objective: c.objective,
            engine: c.engine,
            isa: c.isa,
            rows: c.rows,
            cols: c.cols,
            p: c.p,
            d: c.d,
            block: c.block,
            rho: c.rho,
            delta: c.delta,
            embedding: t.run.cfg.data.embedding.name().to_string(),
            noise: t.run.cfg.data.noise,
            seed: c.seed,
            converged: c.converged,
            steps: c.steps,
            seconds: c.seconds,
            rho0: s.rho0,
            t_cross: s.t_cross,
            loss: o.loss,
            own_mass: o.own_mass,
            global_mass_local: o.global_mass_local,
            global_mass_all: o.global_mass_all,
            diversity: o.diversity,
            phi_target: o.phi_target,
            phi_global: o.phi_global,
            git_rev: c.git_rev,
            cpu_model: c.cpu_model,
            cores: c.cores,
            threads,
            rustc: c.rustc,
            date: c.date,
        }
    }
}

/// One entry of `attention.csv`: attention of one masked local query to one key position.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttentionRow {
    /// Point id the attention was read from.
    pub id: String,
    /// The query position.
    pub query: usize,
    /// Key position.
    pub key: usize,
    /// Key grid row.
    pub row: usize,
    /// Key grid column.
    pub col: usize,
    /// Area of the key in the sample's cluster (0 = global).
    pub area: usize,
    /// Whether the key is masked.
    pub masked: bool,
    /// Attention `A_{query,key}`.
    pub attention: f64,
}

fn cfg(objective: Objective, rows: usize, block: usize, rho: f64) -> RunConfig {
    let mut c = RunConfig::for_objective(objective);
    c.geometry = GeometryConfig::blocks(rows, rows, block, rho);
    c
}

/// Global fractions of the information-gap sweep (invalid geometries are dropped).
pub const GAP_RHOS: [f64; 9] = [0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95];
/// Global fractions of the imbalance experiment (8 × 8 grid).
pub const IMBALANCE_RHOS: [f64; 3] = [0.2, 0.35, 0.5];

/// The grids (side) and block sizes of the information-gap sweep.
pub fn gap_grids(quick: bool) -> Vec<(usize, Vec<usize>)> {
    let mut g = vec![(8, vec![2, 4]), (12, vec![2])];
    if !quick {
        g.push((16, vec![2, 4]));
    }
    g
}

/// Grid sides of the convergence-against-scale experiment.
pub fn scale_sides(quick: bool) -> Vec<usize> {
    if quick {
        vec![4, 6, 8, 10]
    } else {
        vec![4, 6, 8, 10, 12, 14, 16]
    }
}

/// The experiment set, in order. `quick` keeps every claim but uses fewer and smaller grids.
pub fn experiments(quick: bool) -> Vec<Point> {
    let mut pts = Vec::new();
    for obj in [Objective::Mae, Objective::Cl] {
        pts.push(Point::new(
            format!("headline/{}", obj.name()),
            RunConfig::for_objective(obj),
        ));
    }
    for rho in IMBALANCE_RHOS {
        for obj in [Objective::Mae, Objective::Cl] {
            let mut c = cfg(obj, 8, 2, rho);
            if quick && obj == Objective::Cl {
                // CL needs several hundred steps here; evaluating half as often keeps --quick short.
                c.train.eval_every = 20;
            }
            pts.push(Point::new(format!("imbalance/{}/rho{rho}", obj.name()), c));
        }
    }
    for (side, blocks) in gap_grids(quick) {
        for b in blocks {
            for rho in GAP_RHOS {
                let mut c = cfg(Objective::Mae, side, b, rho);
                // rho0 is read off the first step; a few more steps show the start of the phases.
                c.train.max_steps = 1;
                c.train.eval_every = 1;
                c.train.n_eval = 8;
                if crate::train::Run::new(c.clone()).is_ok() {
                    pts.push(Point::new(format!("gap/{side}x{side}/b{b}/rho{rho}"), c));
                }
            }
        }
    }
    for (name, rho) in [("neg", 0.1), ("pos", 0.65)] {
        let mut c = cfg(Objective::Mae, 8, 2, rho);
        c.train.eval_every = 1;
        c.train.max_steps = 120;
        c.train.keep_going = true;
        pts.push(Point::new(format!("phase/{name}"), c));
    }
    for side in scale_sides(quick) {
        let mut c = cfg(Objective::Mae, side, 2, 0.5);
        c.train.max_steps = 3000;
        pts.push(Point::new(format!("scale/mae/{side}x{side}"), c));
    }
    for obj in [Objective::Mae, Objective::Cl] {
        let mut g = RunConfig::for_objective(obj);
        if quick && obj == Objective::Cl {
            // Reported, not judged: a shorter budget in --quick (gaussian CL does not reach the
            // target within the full budget either).
            g.train.max_steps = 400;
        }
        g.data.embedding = EmbeddingKind::Gaussian { dim: None };
        pts.push(Point::new(format!("beyond/{}/gaussian", obj.name()), g));
        let mut n = RunConfig::for_objective(obj);
        n.data.noise = 0.1;
        pts.push(Point::new(format!("beyond/{}/noise0.1", obj.name()), n));
    }
    pts
}

/// How `reproduce` runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Reduced experiment set.
    pub quick: bool,
    /// Output directory.
    pub out: PathBuf,
    /// Which slice of the sweep to run.
    pub shard: Shard,
    /// Engine.
    pub engine: EngineKind,
    /// SIMD level.
    pub isa: Isa,
    /// Worker threads (for the provenance columns).
    pub threads: usize,
    /// Print a line per finished point.
    pub verbose: bool,
}

/// File name of a point's trace.
pub fn trace_file(id: &str) -> String {
    format!("{}.csv", id.replace('/', "_"))
}

/// Runs this shard's slice of [`experiments`]; see [`run_points`].
pub fn run(opts: &Options) -> Result<Vec<RunRow>> {
    run_points(opts, &experiments(opts.quick))
}

/// Runs this shard's slice of `all`, writing `runs.csv`, the traces and the headline attention
/// rows into `opts.out`. `runs.csv` is flushed row by row, so an interrupted sweep keeps the
/// points it finished.
pub fn run_points(opts: &Options, all: &[Point]) -> Result<Vec<RunRow>> {
    let points = opts.shard.slice(all);
    let traces = opts.out.join("traces");
    std::fs::create_dir_all(&traces)
        .with_context(|| format!("cannot create {}", traces.display()))?;
    let runs_path = opts.out.join("runs.csv");
    let mut runs = RowWriter::create(&runs_path)
        .with_context(|| format!("cannot create {}", runs_path.display()))?;
    let mut attention = Vec::new();
    let mut rows = Vec::new();
    for (i, point) in points.iter().enumerate() {
        let trace_path = traces.join(trace_file(&point.id));
        let mut trace = RowWriter::create(&trace_path)
            .with_context(|| format!("cannot create {}", trace_path.display()))?;
        let prov = Provenance::collect(&engine_isa_name(opts), opts.threads);
        // The run is built inside `run_point`: its configuration columns are formed at its first
        // evaluation and reused for the others.
        let mut cols: Option<ConfigColumns> = None;
        let trial = run_point(point, opts.engine, opts.isa, |run, r| {
            let cols = cols.get_or_insert_with(|| {
                ConfigColumns::new(
                    &run.cfg,
                    opts.engine.name(),
                    run.dm.d(),
                    run.dm.geom.delta(),
                )
            });
            trace
                .write(train_row(r, &prov, cols))
                .map_err(|e| crate::Error::config("out", trace_path.display(), e.to_string()))
        })
        .with_context(|| format!("point {}", point.id))?;
        let row = RunRow::new(&trial, opts.threads);
        runs.write(&row)
            .with_context(|| format!("cannot write {}", runs_path.display()))?;
        if point.experiment() == "headline" {
            attention.extend(attention_rows(&trial));
        }
        if opts.verbose {
            eprintln!(
                "[{}/{}] {}: {} after {} steps ({:.1} s)",
                i + 1,
                points.len(),
                point.id,
                if row.converged {
                    "converged"
                } else {
                    "not converged"
                },
                row.steps,
                row.seconds
            );
        }
        rows.push(row);
    }
    if !attention.is_empty() {
        crate::record::write_atomic(&opts.out.join("attention.csv"), &attention)?;
    }
    Ok(rows)
}

fn engine_isa_name(opts: &Options) -> String {
    match opts.engine {
        EngineKind::Reference => "f64".to_string(),
        EngineKind::Fast => opts.isa.name().to_string(),
    }
}

/// The attention row of the first masked local query (with a visible key in its own area) of
/// evaluation sample 0, at the trial's final Q.
fn attention_rows(t: &Trial) -> Vec<AttentionRow> {
    let dm = &t.run.dm;
    let eval = t.run.evaluator();
    let s = &eval.batch()[0];
    let mask = &s.masks[0];
    let layout = &dm.geom.clusters[s.cluster];
    let Some(&query) = mask.masked.iter().find(|&&p| {
        let a = layout.area[p];
        a != 0 && layout.members[a].iter().any(|&k| !mask.is_masked[k])
    }) else {
        return Vec::new();
    };
    let a = eval.attention(dm, t.outcome.q.as_ref(), 0);
    let cols = dm.geom.cols;
    (0..dm.p())
        .map(|key| AttentionRow {
            id: t.point.id.clone(),
            query,
            key,
            row: key / cols,
            col: key % cols,
            area: layout.area[key],
            masked: mask.is_masked[key],
            attention: a[(query, key)],
        })
        .collect()
}

/// Reads `runs.csv` of `dir`.
pub fn read_runs(dir: &Path) -> Result<Vec<RunRow>> {
    let path = dir.join("runs.csv");
    let mut r =
        csv::Reader::from_path(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let rows: Vec<RunRow> = r
        .deserialize()
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("malformed row in {}", path.display()))?;
    let mut seen = std::collections::HashSet::new();
    for row in &rows {
        anyhow::ensure!(
            seen.insert(row.id.clone()),
            "duplicate id {} in {}",
            row.id,
            path.display()
        );
    }
    Ok(rows)
}

/// Makes `claims.csv`, `claims.md` and the figures from the files in `dir`.
pub fn assemble(dir: &Path) -> Result<Vec<claims::Claim>> {
    let runs = read_runs(dir)?;
    let list = claims::evaluate(&runs);
    claims::write(dir, &list)?;
    figures::all(dir, &runs)?;
    Ok(list)
}
