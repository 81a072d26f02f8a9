//! The figures of `vitssl reproduce`, drawn as SVG from the files the runs wrote.
//!
//! - `attention.svg`: attention of one masked local query over the grid after MAE and after CL,
//!   side by side, area boundaries drawn, the query outlined, masked keys marked;
//! - `masses.svg`: `own_mass`, `global_mass_local`, `global_mass_all` against step, MAE and CL;
//! - `phases.svg`: `phi_target` and `phi_global` against step for a Δ < 0 and a Δ > 0 run;
//! - `rho0_vs_delta.svg`: the first-step ratio `rho0` against Δ, one series per grid;
//! - `scale.svg`: MAE steps to converge against P, log–log, with the fitted slope.
//!
//! Each file is written to `NAME.svg.tmp` and renamed when complete. A figure whose data is
//! absent is skipped with a note on stderr.

use super::{AttentionRow, RunRow, trace_file};
use anyhow::{Context, Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Deserialize;
use std::path::Path;

/// The trace columns the figures use (other columns of the trace CSV are ignored).
#[derive(Clone, Debug, Deserialize)]
pub struct TracePoint {
    /// Step.
    pub step: usize,
    /// `own_mass`.
    pub own_mass: f64,
    /// `global_mass_local`.
    pub global_mass_local: f64,
    /// `global_mass_all`.
    pub global_mass_all: f64,
    /// `phi_target`.
    pub phi_target: f64,
    /// `phi_global`.
    pub phi_global: f64,
}

/// Reads the trace of point `id` from `dir/traces/`, if present.
pub fn read_trace(dir: &Path, id: &str) -> Result<Option<Vec<TracePoint>>> {
    let path = dir.join("traces").join(trace_file(id));
    if !path.exists() {
        return Ok(None);
    }
    let mut r =
        csv::Reader::from_path(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let rows = r
        .deserialize()
        .collect::<std::result::Result<Vec<TracePoint>, _>>()
        .with_context(|| format!("malformed row in {}", path.display()))?;
    Ok(Some(rows))
}

const SERIES: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

fn svg(
    dir: &Path,
    name: &str,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> Result<()>,
) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let root = SVGBackend::new(&tmp, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
        draw(&root)?;
        root.present()
            .map_err(|e| anyhow!("cannot write {}: {e}", tmp.display()))?;
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn skip(name: &str, why: &str) {
    eprintln!("note: {name} skipped: {why}");
}

/// Draws every figure whose data is in `dir`.
pub fn all(dir: &Path, runs: &[RunRow]) -> Result<()> {
    attention(dir, runs)?;
    masses(dir)?;
    phases(dir, runs)?;
    rho0_vs_delta(dir, runs)?;
    scale(dir, runs)?;
    Ok(())
}

fn attention(dir: &Path, runs: &[RunRow]) -> Result<()> {
    let path = dir.join("attention.csv");
    if !path.exists() {
        skip("attention.svg", "no attention.csv");
        return Ok(());
    }
    let rows: Vec<AttentionRow> = csv::Reader::from_path(&path)?
        .deserialize()
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("malformed row in {}", path.display()))?;
    let panels: Vec<(&str, Vec<&AttentionRow>)> = ["headline/mae", "headline/cl"]
        .iter()
        .map(|id| (*id, rows.iter().filter(|r| r.id == *id).collect::<Vec<_>>()))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    if panels.is_empty() {
        skip("attention.svg", "no headline attention rows");
        return Ok(());
    }
    let vmax = rows.iter().map(|r| r.attention).fold(1e-12, f64::max);
    svg(dir, "attention.svg", (1100, 600), |root| {
        let (title, body) = root.split_vertically(50);
        title
            .titled(
                &format!(
                    "Attention of one masked local query (red) over the grid: white 0 → dark blue {vmax:.2}; × masked; black lines: area boundaries"
                ),
                ("sans-serif", 18),
            )
            .map_err(|e| anyhow!("{e}"))?;
        let areas = body.split_evenly((1, panels.len()));
        for ((id, cells), area) in panels.iter().zip(areas.iter()) {
            let rows_n = cells.iter().map(|c| c.row).max().unwrap_or(0) + 1;
            let cols_n = cells.iter().map(|c| c.col).max().unwrap_or(0) + 1;
            let run = runs.iter().find(|r| r.id == *id);
            let caption = match run {
                Some(r) => format!(
                    "{} (own_mass {:.2}, global_mass_all {:.2})",
                    id.trim_start_matches("headline/").to_uppercase(),
                    r.own_mass,
                    r.global_mass_all
                ),
                None => id.to_string(),
            };
            let mut chart = ChartBuilder::on(area)
                .caption(caption, ("sans-serif", 20))
                .margin(20)
                .build_cartesian_2d(0f64..cols_n as f64, 0f64..rows_n as f64)
                .map_err(|e| anyhow!("{e}"))?;
            // Grid row 0 at the top: y = rows − row.
            let y = |r: usize| (rows_n - r) as f64;
            let area_of = |r: usize, c: usize| {
                cells
                    .iter()
                    .find(|x| x.row == r && x.col == c)
                    .map(|x| x.area)
            };
            chart
                .draw_series(cells.iter().map(|c| {
                    let t = (c.attention / vmax).clamp(0.0, 1.0);
                    let shade = |lo: f64, hi: f64| (lo + (hi - lo) * t) as u8;
                    let color =
                        RGBColor(shade(255.0, 8.0), shade(255.0, 48.0), shade(255.0, 107.0));
                    Rectangle::new(
                        [
                            (c.col as f64, y(c.row)),
                            (c.col as f64 + 1.0, y(c.row) - 1.0),
                        ],
                        color.filled(),
                    )
                }))
                .map_err(|e| anyhow!("{e}"))?;
            chart
                .draw_series(cells.iter().filter(|c| c.masked).map(|c| {
                    Cross::new(
                        (c.col as f64 + 0.5, y(c.row) - 0.5),
                        4,
                        RGBColor(150, 150, 150).stroke_width(1),
                    )
                }))
                .map_err(|e| anyhow!("{e}"))?;
            let mut edges = Vec::new();
            for c in cells.iter() {
                let (r, k) = (c.row, c.col);
                if k + 1 < cols_n && area_of(r, k + 1) != Some(c.area) {
                    edges.push(vec![(k as f64 + 1.0, y(r)), (k as f64 + 1.0, y(r) - 1.0)]);
                }
                if r + 1 < rows_n && area_of(r + 1, k) != Some(c.area) {
                    edges.push(vec![(k as f64, y(r) - 1.0), (k as f64 + 1.0, y(r) - 1.0)]);
                }
            }
            chart
                .draw_series(
                    edges
                        .into_iter()
                        .map(|e| PathElement::new(e, BLACK.stroke_width(3))),
                )
                .map_err(|e| anyhow!("{e}"))?;
            if let Some(q) = cells.first().map(|c| c.query) {
                let (qr, qc) = (q / cols_n, q % cols_n);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [
                            (qc as f64 + 0.08, y(qr) - 0.08),
                            (qc as f64 + 0.92, y(qr) - 0.92),
                        ],
                        RED.stroke_width(3),
                    )))
                    .map_err(|e| anyhow!("{e}"))?;
            }
        }
        Ok(())
    })
}

fn line_panel(
    area: &DrawingArea<SVGBackend, Shift>,
    caption: &str,
    y_desc: &str,
    series: &[(&str, Vec<(f64, f64)>)],
) -> Result<()> {
    let xmax = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .fold(1.0, f64::max);
    let ys = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .filter(|v| v.is_finite());
    let (ymin, ymax) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |a, v| {
        (a.0.min(v), a.1.max(v))
    });
    let (ymin, ymax) = if ymin.is_finite() {
        (ymin.min(0.0), ymax.max(ymin + 1e-9))
    } else {
        (0.0, 1.0)
    };
    let pad = 0.05 * (ymax - ymin);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..xmax, (ymin - pad)..(ymax + pad))
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("training step")
        .y_desc(y_desc)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = SERIES[i % SERIES.len()];
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|e| anyhow!("{e}"))?
            .label(*name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::MiddleRight)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

fn masses(dir: &Path) -> Result<()> {
    let (Some(mae), Some(cl)) = (
        read_trace(dir, "headline/mae")?,
        read_trace(dir, "headline/cl")?,
    ) else {
        skip("masses.svg", "headline traces missing");
        return Ok(());
    };
    svg(dir, "masses.svg", (1200, 500), |root| {
        let panels = root.split_evenly((1, 2));
        for (area, (name, trace)) in panels.iter().zip([("MAE", &mae), ("CL (τ = 1)", &cl)]) {
            let pick = |f: fn(&TracePoint) -> f64| {
                trace
                    .iter()
                    .map(|t| (t.step as f64, f(t)))
                    .collect::<Vec<_>>()
            };
            line_panel(
                area,
                &format!("{name}: where the attention goes"),
                "attention mass",
                &[
                    ("own_mass (local query → own area)", pick(|t| t.own_mass)),
                    (
                        "global_mass_local (local query → global)",
                        pick(|t| t.global_mass_local),
                    ),
                    (
                        "global_mass_all (all queries → global)",
                        pick(|t| t.global_mass_all),
                    ),
                ],
            )?;
        }
        Ok(())
    })
}

fn phases(dir: &Path, runs: &[RunRow]) -> Result<()> {
    let (Some(neg), Some(pos)) = (read_trace(dir, "phase/neg")?, read_trace(dir, "phase/pos")?)
    else {
        skip("phases.svg", "phase traces missing");
        return Ok(());
    };
    let delta = |id: &str| {
        runs.iter()
            .find(|r| r.id == id)
            .map_or(f64::NAN, |r| r.delta)
    };
    svg(dir, "phases.svg", (1200, 500), |root| {
        let panels = root.split_evenly((1, 2));
        for (area, (id, trace)) in panels
            .iter()
            .zip([("phase/neg", &neg), ("phase/pos", &pos)])
        {
            let pick = |f: fn(&TracePoint) -> f64| {
                trace
                    .iter()
                    .map(|t| (t.step as f64, f(t)))
                    .collect::<Vec<_>>()
            };
            line_panel(
                area,
                &format!("MAE, 8×8, Δ = {:.2}: FP correlations", delta(id)),
                "correlation e_pᵀ Q v",
                &[
                    ("phi_target (own area's feature)", pick(|t| t.phi_target)),
                    ("phi_global (global feature)", pick(|t| t.phi_global)),
                ],
            )?;
        }
        Ok(())
    })
}

fn rho0_vs_delta(dir: &Path, runs: &[RunRow]) -> Result<()> {
    let gap: Vec<&RunRow> = runs
        .iter()
        .filter(|r| r.id.starts_with("gap/") && r.rho0.is_finite() && r.rho0 > 0.0)
        .collect();
    if gap.is_empty() {
        skip("rho0_vs_delta.svg", "no gap runs");
        return Ok(());
    }
    let mut grids: Vec<String> = gap
        .iter()
        .map(|r| r.id.split('/').nth(1).unwrap_or("?").to_string())
        .collect();
    grids.sort_by_key(|g| g.split('x').next().and_then(|s| s.parse::<usize>().ok()));
    grids.dedup();
    let (ylo, yhi) = gap.iter().fold((f64::INFINITY, 0f64), |a, r| {
        (a.0.min(r.rho0), a.1.max(r.rho0))
    });
    let (xlo, xhi) = gap.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |a, r| {
        (a.0.min(r.delta), a.1.max(r.delta))
    });
    svg(dir, "rho0_vs_delta.svg", (900, 600), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "First-step ratio −ΔΦ_global / ΔΦ_target against the information gap Δ",
                ("sans-serif", 20),
            )
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (xlo - 0.05)..(xhi + 0.05),
                ((ylo * 0.8)..(yhi * 1.25)).log_scale(),
            )
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("information gap Δ = log_P(C_g² / (P·C_l))")
            .y_desc("rho0 (log scale; > 1: global decouples first)")
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .draw_series(LineSeries::new(
                vec![(xlo - 0.05, 1.0), (xhi + 0.05, 1.0)],
                BLACK.stroke_width(1),
            ))
            .map_err(|e| anyhow!("{e}"))?
            .label("rho0 = 1")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        for (i, grid) in grids.iter().enumerate() {
            let color = SERIES[i % SERIES.len()];
            let mut pts: Vec<(f64, f64)> = gap
                .iter()
                .filter(|r| r.id.split('/').nth(1) == Some(grid.as_str()))
                .map(|r| (r.delta, r.rho0))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 5, color.filled())))
                .map_err(|e| anyhow!("{e}"))?
                .label(format!("grid {grid}"))
                .legend(move |(x, y)| Circle::new((x + 10, y), 5, color.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        Ok(())
    })
}

fn scale(dir: &Path, runs: &[RunRow]) -> Result<()> {
    let pts: Vec<(f64, f64)> = runs
        .iter()
        .filter(|r| r.id.starts_with("scale/mae/") && r.converged)
        .map(|r| (r.p as f64, r.steps.max(1) as f64))
        .collect();
    if pts.len() < 2 {
        skip("scale.svg", "fewer than two converged scale runs");
        return Ok(());
    }
    let logs: Vec<(f64, f64)> = pts.iter().map(|p| (p.0.ln(), p.1.ln())).collect();
    let k = super::claims::slope(&logs);
    let (mx, my) = (
        logs.iter().map(|p| p.0).sum::<f64>() / logs.len() as f64,
        logs.iter().map(|p| p.1).sum::<f64>() / logs.len() as f64,
    );
    let (plo, phi) = pts
        .iter()
        .fold((f64::INFINITY, 0f64), |a, p| (a.0.min(p.0), a.1.max(p.0)));
    let (slo, shi) = pts
        .iter()
        .fold((f64::INFINITY, 0f64), |a, p| (a.0.min(p.1), a.1.max(p.1)));
    svg(dir, "scale.svg", (900, 600), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                "MAE: steps to converge (own_mass ≥ 0.85) against the number of patches",
                ("sans-serif", 20),
            )
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(
                ((plo * 0.8)..(phi * 1.25)).log_scale(),
                ((slo * 0.7)..(shi * 1.4)).log_scale(),
            )
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc("patches P (log scale)")
            .y_desc("steps to converge (log scale)")
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        let fit = |p: f64| (my + k * (p.ln() - mx)).exp();
        chart
            .draw_series(LineSeries::new(
                (0..=50).map(|i| {
                    let p = plo * (phi / plo).powf(i as f64 / 50.0);
                    (p, fit(p))
                }),
                SERIES[1].stroke_width(2),
            ))
            .map_err(|e| anyhow!("{e}"))?
            .label(format!("fit: steps ∝ P^{k:.2}"))
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], SERIES[1].stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 6, SERIES[0].filled())))
            .map_err(|e| anyhow!("{e}"))?
            .label("measured")
            .legend(|(x, y)| Circle::new((x + 10, y), 5, SERIES[0].filled()));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        Ok(())
    })
}
