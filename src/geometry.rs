//! Grid geometry and area layouts (SPEC §1), and the information gap Δ (SPEC §8).
//!
//! Patches lie on a `rows × cols` grid, position `p = r·cols + c`. Each of the `K` clusters
//! partitions `[P]` into areas: area 0 is the global area, areas `1..n_k` are local areas.

use crate::config::{GeometryConfig, LayoutSpec};
use crate::error::{Error, Result};
use crate::rng::{Stream, stream};
use rand::seq::index;

/// The areas of one cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    /// `area[p]`: the area of position p (0 = global).
    pub area: Vec<usize>,
    /// `members[j]`: the positions of area j, ascending.
    pub members: Vec<Vec<usize>>,
}

impl Layout {
    /// Number of areas `n_k + 1` (global included).
    pub fn n_areas(&self) -> usize {
        self.members.len()
    }

    /// Number of local areas `n_k`.
    pub fn n_local(&self) -> usize {
        self.members.len() - 1
    }

    fn from_areas(k: usize, area: Vec<usize>) -> Result<Self> {
        let n_areas = area.iter().max().map_or(0, |&m| m + 1);
        let mut members = vec![Vec::new(); n_areas];
        for (p, &a) in area.iter().enumerate() {
            members[a].push(p);
        }
        if let Some(j) = members.iter().position(Vec::is_empty) {
            return Err(Error::Geometry(format!(
                "cluster {k}: area {j} has no position (areas must be numbered 0..n without gaps, 0 = global)"
            )));
        }
        if n_areas < 2 {
            return Err(Error::Geometry(format!(
                "cluster {k} has no local area: give at least one position an area index >= 1"
            )));
        }
        Ok(Self { area, members })
    }
}

/// Grid plus one layout per cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Geometry {
    /// Grid rows.
    pub rows: usize,
    /// Grid columns.
    pub cols: usize,
    /// Block side for block layouts (`None` for explicit layouts).
    pub block: Option<usize>,
    /// One layout per cluster.
    pub clusters: Vec<Layout>,
}

impl Geometry {
    /// Builds and checks the geometry; block layouts draw their cells from the layout stream of
    /// `seed`.
    pub fn new(cfg: &GeometryConfig, seed: u64) -> Result<Self> {
        let GeometryConfig {
            rows,
            cols,
            clusters,
            ref layout,
        } = *cfg;
        if rows == 0 || cols == 0 {
            return Err(Error::Geometry(format!(
                "grid {rows}x{cols} is empty: --rows and --cols must be at least 1"
            )));
        }
        if clusters == 0 {
            return Err(Error::Geometry(
                "K = 0 clusters: --clusters must be at least 1".into(),
            ));
        }
        let p = rows * cols;
        let layouts = match layout {
            LayoutSpec::Blocks { block, global_frac } => {
                block_layouts(rows, cols, clusters, *block, *global_frac, seed)?
            }
            LayoutSpec::Explicit(areas) => {
                if areas.len() != clusters {
                    return Err(Error::Geometry(format!(
                        "explicit layout has {} clusters, the config says K = {clusters}",
                        areas.len()
                    )));
                }
                areas
                    .iter()
                    .enumerate()
                    .map(|(k, a)| {
                        if a.len() != p {
                            return Err(Error::Geometry(format!(
                                "explicit layout of cluster {k} has {} positions, the grid has P = {p}",
                                a.len()
                            )));
                        }
                        Layout::from_areas(k, a.clone())
                    })
                    .collect::<Result<_>>()?
            }
        };
        let block = match layout {
            LayoutSpec::Blocks { block, .. } => Some(*block),
            LayoutSpec::Explicit(_) => None,
        };
        Ok(Self {
            rows,
            cols,
            block,
            clusters: layouts,
        })
    }

    /// Number of patches `P`.
    pub fn p(&self) -> usize {
        self.rows * self.cols
    }

    /// Number of clusters `K`.
    pub fn k(&self) -> usize {
        self.clusters.len()
    }

    /// `C_g`: mean global-area size over clusters.
    pub fn mean_global_size(&self) -> f64 {
        let s: usize = self.clusters.iter().map(|l| l.members[0].len()).sum();
        s as f64 / self.k() as f64
    }

    /// `C_l`: `b²` for block layouts, the mean local-area size otherwise.
    pub fn mean_local_size(&self) -> f64 {
        if let Some(b) = self.block {
            return (b * b) as f64;
        }
        let (mut sum, mut count) = (0usize, 0usize);
        for l in &self.clusters {
            for m in &l.members[1..] {
                sum += m.len();
                count += 1;
            }
        }
        sum as f64 / count as f64
    }

    /// Information gap `Δ = log_P(C_g² / (P·C_l))` (SPEC §8). `NaN` for P = 1.
    pub fn delta(&self) -> f64 {
        let p = self.p() as f64;
        let cg = self.mean_global_size();
        (cg * cg / (p * self.mean_local_size())).ln() / p.ln()
    }
}

fn block_layouts(
    rows: usize,
    cols: usize,
    clusters: usize,
    b: usize,
    rho: f64,
    seed: u64,
) -> Result<Vec<Layout>> {
    if b == 0 || !rows.is_multiple_of(b) || !cols.is_multiple_of(b) {
        return Err(Error::Geometry(format!(
            "block size b = {b} does not divide the {rows}x{cols} grid: choose --block dividing both --rows and --cols"
        )));
    }
    if !(rho > 0.0 && rho < 1.0) {
        return Err(Error::Geometry(format!(
            "global fraction rho = {rho} is outside (0, 1): choose --global-frac in (0, 1)"
        )));
    }
    let (br, bc) = (rows / b, cols / b);
    let cells = br * bc;
    let n_local = ((1.0 - rho) * cells as f64).round_ties_even() as usize;
    if n_local == 0 {
        return Err(Error::Geometry(format!(
            "rho = {rho} leaves no local area on the {br}x{bc} block grid: lower --global-frac or --block"
        )));
    }
    if n_local >= cells {
        return Err(Error::Geometry(format!(
            "rho = {rho} leaves the global area empty ({n_local} of {cells} blocks local): raise --global-frac"
        )));
    }
    let mut rng = stream(seed, Stream::Layout);
    (0..clusters)
        .map(|k| {
            let mut chosen = index::sample(&mut rng, cells, n_local).into_vec();
            chosen.sort_unstable();
            let mut area = vec![0usize; rows * cols];
            for (j, &cell) in chosen.iter().enumerate() {
                let (r0, c0) = ((cell / bc) * b, (cell % bc) * b);
                for r in r0..r0 + b {
                    for c in c0..c0 + b {
                        area[r * cols + c] = j + 1;
                    }
                }
            }
            Layout::from_areas(k, area)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_layout_has_four_blocks_per_cluster() {
        let g = Geometry::new(&GeometryConfig::default(), 0).unwrap();
        for l in &g.clusters {
            assert_eq!(l.n_local(), 4, "round_ties_even(0.5 * 9) = 4");
            assert_eq!(l.members[0].len(), 20);
            assert!(l.members[1..].iter().all(|m| m.len() == 4));
        }
        let expected = (400.0f64 / 144.0).ln() / 36f64.ln();
        assert!((g.delta() - expected).abs() < 1e-12);
    }

    #[test]
    fn blocks_are_contiguous_squares() {
        let g = Geometry::new(&GeometryConfig::blocks(8, 8, 2, 0.5), 3).unwrap();
        for l in &g.clusters {
            for m in &l.members[1..] {
                let (r0, c0) = (m[0] / 8, m[0] % 8);
                assert_eq!(
                    m,
                    &vec![
                        r0 * 8 + c0,
                        r0 * 8 + c0 + 1,
                        (r0 + 1) * 8 + c0,
                        (r0 + 1) * 8 + c0 + 1
                    ]
                );
            }
        }
    }

    #[test]
    fn invalid_geometries_are_named() {
        let e = Geometry::new(&GeometryConfig::blocks(5, 6, 2, 0.5), 0).unwrap_err();
        assert!(
            matches!(&e, Error::Geometry(m) if m.contains("b = 2") && m.contains("5x6")),
            "{e}"
        );
        let e = Geometry::new(&GeometryConfig::blocks(6, 6, 2, 1.5), 0).unwrap_err();
        assert!(matches!(&e, Error::Geometry(m) if m.contains("1.5")), "{e}");
        let e = Geometry::new(&GeometryConfig::blocks(6, 6, 2, 0.99), 0).unwrap_err();
        assert!(
            matches!(&e, Error::Geometry(m) if m.contains("no local area")),
            "{e}"
        );
        let e = Geometry::new(&GeometryConfig::blocks(6, 6, 2, 0.01), 0).unwrap_err();
        assert!(
            matches!(&e, Error::Geometry(m) if m.contains("global area empty")),
            "{e}"
        );
        let e = Geometry::new(
            &GeometryConfig {
                clusters: 0,
                ..GeometryConfig::default()
            },
            0,
        )
        .unwrap_err();
        assert!(
            matches!(&e, Error::Geometry(m) if m.contains("K = 0")),
            "{e}"
        );
        let e = Geometry::new(&GeometryConfig::blocks(6, 6, 0, 0.5), 0).unwrap_err();
        assert!(
            matches!(&e, Error::Geometry(m) if m.contains("b = 0")),
            "{e}"
        );
    }

    #[test]
    fn explicit_layouts_are_checked() {
        let cfg = |areas: Vec<Vec<usize>>| GeometryConfig {
            rows: 2,
            cols: 2,
            clusters: areas.len(),
            layout: LayoutSpec::Explicit(areas),
        };
        let g = Geometry::new(&cfg(vec![vec![0, 0, 1, 2]]), 0).unwrap();
        assert_eq!(g.clusters[0].members, vec![vec![0, 1], vec![2], vec![3]]);
        assert_eq!(g.mean_local_size(), 1.0);
        let e = Geometry::new(&cfg(vec![vec![0, 0, 2, 2]]), 0).unwrap_err();
        assert!(
            matches!(&e, Error::Geometry(m) if m.contains("area 1 has no position")),
            "{e}"
        );
        let e = Geometry::new(&cfg(vec![vec![1, 1, 2, 2]]), 0).unwrap_err();
        assert!(
            matches!(&e, Error::Geometry(m) if m.contains("area 0 has no position")),
            "{e}"
        );
        let e = Geometry::new(&cfg(vec![vec![0, 0, 0, 0]]), 0).unwrap_err();
        assert!(
            matches!(&e, Error::Geometry(m) if m.contains("no local area")),
            "{e}"
        );
        let e = Geometry::new(&cfg(vec![vec![0, 1, 0]]), 0).unwrap_err();
        assert!(
            matches!(&e, Error::Geometry(m) if m.contains("3 positions")),
            "{e}"
        );
    }
}
