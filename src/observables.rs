//! Observables on the fixed evaluation batch (SPEC §7).
//!
//! The evaluation batch (`n_eval` samples from its own stream, two masks each) is drawn once and
//! reused at every evaluation. Attention observables use each sample's first mask; the loss uses
//! the objective's own definition (MAE: first mask; CL: both views, in-batch negatives within the
//! evaluation batch). Everything is computed by the f64 reference, whatever engine trains.
//!
//! - `own_mass`: mean over (sample, masked query p in a local area with ≥ 1 visible key) of
//!   `Σ_{q ∈ area(p)∖M} A_pq`; `global_mass_local`: same pairs, `Σ_{q ∈ global∖M} A_pq`.
//! - `global_mass_all`: mean over (sample, every query p) of `Σ_{q ∈ global∖M} A_pq`.
//! - `diversity`: mean over samples of `1/(P(P−1)) Σ_{p≠p'} ½‖A_p· − A_p'·‖₁`.
//! - `phi_target` / `phi_global`: mean over clusters k and local positions p of
//!   `e_pᵀ Q v_{k,a_k(p)}` / `e_pᵀ Q v_{k,0}`.
//! - `ups_same` / `ups_other`: mean of `e_pᵀ Q e_q` over clusters k, local positions p and keys
//!   `q ≠ p` in the same / a different area of cluster k (our reading of "pairs in the same /
//!   different areas": the queries are the local positions the FP correlations are read at).
//!
//! A mean over an empty set (no qualifying query) is `NaN`.

use crate::config::Objective;
use crate::data::{DataModel, Sample};
use crate::model::{View, attention, mul};
use crate::objectives::{batch_loss_grad, fold_chunks};
use crate::rng::{Stream, stream};
use faer::{Mat, MatRef};

/// One evaluation's observables.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Observables {
    /// Objective loss on the evaluation batch.
    pub loss: f64,
    /// Attention of masked local queries to the visible part of their own area.
    pub own_mass: f64,
    /// Attention of masked local queries to the visible global area.
    pub global_mass_local: f64,
    /// Attention of every query to the visible global area.
    pub global_mass_all: f64,
    /// Mean pairwise half-L1 distance between attention rows.
    pub diversity: f64,
    /// Target local FP correlation.
    pub phi_target: f64,
    /// Global FP correlation at local positions.
    pub phi_global: f64,
    /// PP correlation within an area.
    pub ups_same: f64,
    /// PP correlation across areas.
    pub ups_other: f64,
}

impl Observables {
    /// The value of [`Objective::convergence_observable`] for `objective`.
    pub fn convergence_value(&self, objective: Objective) -> f64 {
        match objective {
            Objective::Mae => self.own_mass,
            Objective::Cl => self.global_mass_all,
        }
    }
}

/// FP and PP correlations read off `Q`: `(phi_target, phi_global, ups_same, ups_other)`.
pub fn correlations(dm: &DataModel, q: MatRef<'_, f64>) -> (f64, f64, f64, f64) {
    let eq = mul(dm.emb.e.as_ref(), q);
    let pp = mul(eq.as_ref(), dm.emb.e.transpose());
    let (mut t, mut g, mut nphi) = (0.0, 0.0, 0usize);
    let (mut same, mut nsame, mut other, mut nother) = (0.0, 0usize, 0.0, 0usize);
    for (k, layout) in dm.geom.clusters.iter().enumerate() {
        let fp = mul(eq.as_ref(), dm.emb.v[k].transpose());
        for (p, &a) in layout.area.iter().enumerate() {
            if a == 0 {
                continue;
            }
            t += fp[(p, a)];
            g += fp[(p, 0)];
            nphi += 1;
            for (qi, &b) in layout.area.iter().enumerate() {
                if qi == p {
                    continue;
                }
                if a == b {
                    same += pp[(p, qi)];
                    nsame += 1;
                } else {
                    other += pp[(p, qi)];
                    nother += 1;
                }
            }
        }
    }
    let mean = |s: f64, n: usize| if n == 0 { f64::NAN } else { s / n as f64 };
    (
        mean(t, nphi),
        mean(g, nphi),
        mean(same, nsame),
        mean(other, nother),
    )
}

#[derive(Default)]
struct Sums {
    own: f64,
    glob_local: f64,
    n_local: usize,
    glob_all: f64,
    n_all: usize,
    diversity: f64,
}

/// `1/(P(P−1)) Σ_{p≠p'} ½‖A_p· − A_p'·‖₁` of one attention matrix.
pub fn diversity(a: MatRef<'_, f64>) -> f64 {
    let p = a.nrows();
    if p < 2 {
        return 0.0;
    }
    // Row-major copy so each row is one contiguous slice.
    let rows: Vec<Vec<f64>> = (0..p)
        .map(|i| (0..a.ncols()).map(|j| a[(i, j)]).collect())
        .collect();
    let mut total = 0.0;
    for i in 0..p {
        for k in i + 1..p {
            total += rows[i]
                .iter()
                .zip(&rows[k])
                .map(|(x, y)| (x - y).abs())
                .sum::<f64>();
        }
    }
    // Each unordered pair counts twice in Σ_{p≠p'}, and the ½ cancels that.
    total / (p * (p - 1)) as f64
}

/// The fixed evaluation batch.
pub struct Evaluator {
    batch: Vec<Sample>,
    objective: Objective,
    tau: f64,
}

impl Evaluator {
    /// Draws `n_eval` samples (two masks each) from the evaluation stream of `seed`.
    pub fn new(dm: &DataModel, n_eval: usize, seed: u64, objective: Objective, tau: f64) -> Self {
        let mut rng = stream(seed, Stream::Eval);
        let batch = (0..n_eval).map(|_| dm.sample(&mut rng, 2)).collect();
        Self {
            batch,
            objective,
            tau,
        }
    }

    /// The evaluation samples.
    pub fn batch(&self) -> &[Sample] {
        &self.batch
    }

    /// Full attention `A` (`P × P`) of evaluation sample `i` under its first mask.
    pub fn attention(&self, dm: &DataModel, q: MatRef<'_, f64>, i: usize) -> Mat<f64> {
        let s = &self.batch[i];
        let view = View::new(dm, s, &s.masks[0]);
        attention(q, view.h.as_ref(), view.h.as_ref())
    }

    /// All observables at `q`.
    pub fn evaluate(&self, dm: &DataModel, q: MatRef<'_, f64>) -> Observables {
        let loss = batch_loss_grad(self.objective, self.tau, dm, q, &self.batch, None);
        let mut sums = Sums::default();
        fold_chunks(
            self.batch.len(),
            |r| {
                let mut part = Sums::default();
                for i in r {
                    self.accumulate(dm, q, i, &mut part);
                }
                part
            },
            |part| {
                sums.own += part.own;
                sums.glob_local += part.glob_local;
                sums.n_local += part.n_local;
                sums.glob_all += part.glob_all;
                sums.n_all += part.n_all;
                sums.diversity += part.diversity;
            },
        );
        let (phi_target, phi_global, ups_same, ups_other) = correlations(dm, q);
        let mean = |s: f64, n: usize| if n == 0 { f64::NAN } else { s / n as f64 };
        Observables {
            loss,
            own_mass: mean(sums.own, sums.n_local),
            global_mass_local: mean(sums.glob_local, sums.n_local),
            global_mass_all: mean(sums.glob_all, sums.n_all),
            diversity: sums.diversity / self.batch.len() as f64,
            phi_target,
            phi_global,
            ups_same,
            ups_other,
        }
    }

    fn accumulate(&self, dm: &DataModel, q: MatRef<'_, f64>, i: usize, out: &mut Sums) {
        let s = &self.batch[i];
        let mask = &s.masks[0];
        let layout = &dm.geom.clusters[s.cluster];
        let a = self.attention(dm, q, i);
        let p = dm.p();
        let visible_mass = |row: usize, area: usize| -> f64 {
            layout.members[area]
                .iter()
                .filter(|&&k| !mask.is_masked[k])
                .map(|&k| a[(row, k)])
                .sum()
        };
        for row in 0..p {
            out.glob_all += visible_mass(row, 0);
        }
        out.n_all += p;
        for &row in &mask.masked {
            let area = layout.area[row];
            if area == 0 || layout.members[area].iter().all(|&k| mask.is_masked[k]) {
                continue;
            }
            out.own += visible_mass(row, area);
            out.glob_local += visible_mass(row, 0);
            out.n_local += 1;
        }
        out.diversity += diversity(a.as_ref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diversity_extremes() {
        let same = Mat::from_fn(4, 4, |_, _| 0.25);
        assert_eq!(diversity(same.as_ref()), 0.0);
        let disjoint = Mat::from_fn(4, 4, |i, j| if i == j { 1.0 } else { 0.0 });
        assert!((diversity(disjoint.as_ref()) - 1.0).abs() < 1e-15);
    }
}
