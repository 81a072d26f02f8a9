//! Feature and position embeddings (SPEC §2).
//!
//! `e_p` embeds position p; `v_{k,j}` is the feature of area j of cluster k (j = 0 global).
//! `orthonormal`: `d = P + Σ_k (n_k + 1)`, `e_p` is basis vector p and `v_{k,j}` is basis vector
//! `P + offset_k + j`. `gaussian{d}`: every vector i.i.d. `N(0, I_d/d)` from the embedding stream.

use crate::config::EmbeddingKind;
use crate::geometry::Geometry;
use crate::rng::{Stream, stream};
use faer::Mat;
use rand::RngExt;
use rand_distr::StandardNormal;

/// Embedding vectors, stored as matrix rows.
#[derive(Clone, Debug)]
pub struct Embedding {
    /// Dimension d.
    pub d: usize,
    /// `P × d`: row p is `e_p`.
    pub e: Mat<f64>,
    /// Per cluster, `(n_k + 1) × d`: row j is `v_{k,j}`.
    pub v: Vec<Mat<f64>>,
}

impl Embedding {
    /// The orthonormal dimension `P + Σ_k (n_k + 1)`.
    pub fn orthonormal_dim(geom: &Geometry) -> usize {
        geom.p() + geom.clusters.iter().map(|l| l.n_areas()).sum::<usize>()
    }

    /// Builds the embedding; gaussian vectors come from the embedding stream of `seed`.
    pub fn new(kind: EmbeddingKind, geom: &Geometry, seed: u64) -> Self {
        let p = geom.p();
        match kind {
            EmbeddingKind::Orthonormal => {
                let d = Self::orthonormal_dim(geom);
                let e = Mat::from_fn(p, d, |i, j| if i == j { 1.0 } else { 0.0 });
                let mut offset = p;
                let v = geom
                    .clusters
                    .iter()
                    .map(|l| {
                        let n = l.n_areas();
                        let m = Mat::from_fn(n, d, |i, j| if j == offset + i { 1.0 } else { 0.0 });
                        offset += n;
                        m
                    })
                    .collect();
                Self { d, e, v }
            }
            EmbeddingKind::Gaussian { dim } => {
                let d = dim.unwrap_or_else(|| Self::orthonormal_dim(geom));
                let mut rng = stream(seed, Stream::Embedding);
                let scale = 1.0 / (d as f64).sqrt();
                let mut draw = |rows: usize| {
                    // Row-major draw order, so the vectors do not depend on faer's storage order.
                    let vals: Vec<f64> = (0..rows * d)
                        .map(|_| scale * rng.sample::<f64, _>(StandardNormal))
                        .collect();
                    Mat::from_fn(rows, d, |i, j| vals[i * d + j])
                };
                let e = draw(p);
                let v = geom.clusters.iter().map(|l| draw(l.n_areas())).collect();
                Self { d, e, v }
            }
        }
    }
}
