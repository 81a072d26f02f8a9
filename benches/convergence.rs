//! Convergence bench: wall time and steps to convergence (SPEC §9) against problem scale and
//! against the information gap, on the fast engine with the best ISA and every core.
//!
//! Points (ids in `convergence.csv`):
//! - `scale/<mae|cl>/<g>x<g>`: grids 4×4 … 12×12, block 2, ρ = 0.5;
//! - `gap/<mae|cl>/rho<ρ>`: 8×8 grid, ρ ∈ {0.2, 0.35, 0.5, 0.65, 0.8} (Δ from −0.14 to 0.57).
//!
//! Each point is one training run (its time is long and its variance small next to it, so it is
//! timed once, not sampled by criterion). `cargo bench -- --test` runs one short point and
//! writes nothing; `cargo bench --bench convergence -- FILTER` runs the points whose id contains
//! FILTER and writes to `target/vitssl/bench/<tag>/`. A complete run writes
//! `results/<machine-tag>/convergence.csv` (written whole, then renamed).

mod common;

use vitssl::config::{GeometryConfig, Objective, RunConfig};
use vitssl::engine::EngineKind;
use vitssl::isa::Isa;
use vitssl::sweep::{Point, run_point};

fn point(objective: Objective, side: usize, rho: f64, id: String) -> Point {
    let mut cfg = RunConfig::for_objective(objective);
    cfg.geometry = GeometryConfig::blocks(side, side, 2, rho);
    Point::new(id, cfg)
}

fn points() -> Vec<Point> {
    let mut pts = Vec::new();
    for obj in [Objective::Mae, Objective::Cl] {
        for side in [4, 6, 8, 10, 12] {
            pts.push(point(
                obj,
                side,
                0.5,
                format!("scale/{}/{side}x{side}", obj.name()),
            ));
        }
        for rho in [0.2, 0.35, 0.5, 0.65, 0.8] {
            pts.push(point(obj, 8, rho, format!("gap/{}/rho{rho}", obj.name())));
        }
    }
    pts
}

fn main() {
    // Allocator thresholds fixed first, as in the `vitssl` binary (see `vitssl::alloc`).
    vitssl::alloc::retain_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let test = vitssl::bench::test_mode();
    let filter = common::filter(&args);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let isa = Isa::best();
    let mut pts = points();
    if test {
        pts.truncate(1);
        pts[0].cfg.train.max_steps = 5;
    } else if let Some(f) = &filter {
        pts.retain(|p| p.id.contains(f.as_str()));
    }
    let mut rows = Vec::new();
    for p in &pts {
        let trial = match run_point(p, EngineKind::Fast, isa, |_, _| Ok(())) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {}: {e}", p.id);
                std::process::exit(1);
            }
        };
        let row = trial.convergence_row(threads);
        eprintln!(
            "{:<22} P={:<4} Δ={:+.3}  {} in {} steps, {:.2} s",
            row.id,
            row.p,
            row.delta,
            if row.converged {
                "converged"
            } else {
                "NOT converged"
            },
            row.steps,
            row.seconds
        );
        rows.push(row);
    }
    if test {
        println!("convergence: 1 point run in test mode, nothing written");
        return;
    }
    common::write_rows("convergence.csv", &rows, filter.is_none());
}
