//! `vitssl reproduce`: sharded sweeps give the rows of one unsharded run, and the claims and
//! figures are assembled from the files a run leaves.

use std::path::PathBuf;
use vitssl::config::{Objective, RunConfig};
use vitssl::engine::EngineKind;
use vitssl::isa::Isa;
use vitssl::reproduce::{Options, RunRow, assemble, read_runs, run_points};
use vitssl::sweep::{Point, Shard};

fn tiny(objective: Objective, rows: usize, rho: f64) -> RunConfig {
    let mut c = RunConfig::for_objective(objective);
    c.geometry.rows = rows;
    c.geometry.cols = rows;
    c.geometry.layout = vitssl::config::LayoutSpec::Blocks {
        block: 2,
        global_frac: rho,
    };
    c.train.batch = 16;
    c.train.max_steps = 6;
    c.train.eval_every = 3;
    c.train.n_eval = 8;
    c
}

fn sweep() -> Vec<Point> {
    vec![
        Point::new("headline/mae", tiny(Objective::Mae, 4, 0.5)),
        Point::new("headline/cl", tiny(Objective::Cl, 4, 0.5)),
        Point::new("gap/4x4/b2/rho0.3", tiny(Objective::Mae, 4, 0.3)),
        Point::new("gap/6x6/b2/rho0.5", tiny(Objective::Mae, 6, 0.5)),
        Point::new("scale/mae/6x6", tiny(Objective::Mae, 6, 0.5)),
    ]
}

fn dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("reproduce")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn opts(out: PathBuf, shard: Shard) -> Options {
    Options {
        quick: true,
        out,
        shard,
        engine: EngineKind::Reference,
        isa: Isa::Scalar,
        threads: 1,
        verbose: false,
    }
}

/// A row without its timing and date, which legitimately differ between two runs.
fn comparable(r: &RunRow) -> RunRow {
    RunRow {
        seconds: 0.0,
        date: String::new(),
        ..r.clone()
    }
}

#[test]
fn shards_concatenate_to_the_unsharded_rows() {
    let all = sweep();
    let whole_dir = dir("whole");
    run_points(&opts(whole_dir.clone(), Shard::ALL), &all).unwrap();
    let whole: Vec<RunRow> = read_runs(&whole_dir)
        .unwrap()
        .iter()
        .map(comparable)
        .collect();
    assert_eq!(whole.len(), all.len());
    for n in [2, 3] {
        let mut joined = Vec::new();
        for i in 1..=n {
            let d = dir(&format!("shard-{i}-of-{n}"));
            run_points(&opts(d.clone(), Shard { index: i, count: n }), &all).unwrap();
            joined.extend(read_runs(&d).unwrap().iter().map(comparable));
        }
        assert_eq!(joined, whole, "{n} shards");
    }
}

#[test]
fn assemble_writes_claims_and_figures() {
    let d = dir("assemble");
    run_points(&opts(d.clone(), Shard::ALL), &sweep()).unwrap();
    let claims = assemble(&d).unwrap();
    let names: Vec<&str> = claims.iter().map(|c| c.claim.as_str()).collect();
    for want in [
        "mae_own_mass",
        "cl_global_mass_all",
        "diversity_ratio_mae_over_cl",
        "gap_4x4_rho0_inversions",
    ] {
        assert!(names.contains(&want), "missing claim {want}: {names:?}");
    }
    // Missing experiments are reported as missing, not passed.
    let imbalance = claims
        .iter()
        .find(|c| c.claim.starts_with("imbalance_"))
        .unwrap();
    assert_eq!(imbalance.pass, vitssl::reproduce::claims::Verdict::Missing);
    let csv = std::fs::read_to_string(d.join("claims.csv")).unwrap();
    assert!(csv.starts_with("claim,measured,threshold,pass"), "{csv}");
    assert!(
        std::fs::read_to_string(d.join("claims.md"))
            .unwrap()
            .contains("| mae_own_mass |")
    );
    for fig in ["attention.svg", "masses.svg", "rho0_vs_delta.svg"] {
        let svg = std::fs::read_to_string(d.join(fig)).unwrap_or_else(|e| panic!("{fig}: {e}"));
        assert!(
            svg.contains("<svg") && svg.contains("<text"),
            "{fig} has no labels"
        );
    }
}
