//! Samples, masks and contrastive views (SPEC §3).
//!
//! A sample draws a cluster `k ~ Unif{0..K-1}` and one weight per area `z_j ~ Unif[L, U]`; its
//! content is `x_p = z_{a_k(p)} · v_{k, a_k(p)} + σ·ξ_p` with `ξ_p ~ N(0, I_d/d)`. A mask is a
//! uniformly random subset of exactly `m = round(γ·P)` positions (ties to even). CL views are the
//! same content under independent masks.
//!
//! A [`Sample`] is stored compactly (cluster, weights, a noise seed, masks): engines materialise
//! its `P × d` content into their own workspace with [`DataModel::write_content`], so a batch never
//! holds `n·P·d` numbers and noise is generated inside the worker that needs it.

use crate::config::DataConfig;
use crate::embedding::Embedding;
use crate::error::{Error, Result};
use crate::geometry::Geometry;
use crate::rng::{Rng, Stream, substream};
use faer::{Mat, MatMut};
use rand::RngExt;
use rand::seq::index;
use rand_distr::StandardNormal;

/// A set of masked positions.
#[derive(Clone, Debug, PartialEq)]
pub struct Mask {
    /// Masked positions, ascending.
    pub masked: Vec<usize>,
    /// `is_masked[p]`.
    pub is_masked: Vec<bool>,
}

impl Mask {
    /// Draws exactly `m` of `p` positions uniformly.
    pub fn draw(rng: &mut Rng, p: usize, m: usize) -> Self {
        let mut masked = index::sample(rng, p, m).into_vec();
        masked.sort_unstable();
        let mut is_masked = vec![false; p];
        for &q in &masked {
            is_masked[q] = true;
        }
        Self { masked, is_masked }
    }
}

/// One image: cluster, area weights, noise seed and one mask per view.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Cluster k.
    pub cluster: usize,
    /// Weight `z_j` of every area j of the cluster.
    pub z: Vec<f64>,
    /// Seed of this sample's noise ξ (unused when σ = 0).
    pub noise_seed: u64,
    /// One mask (MAE) or two independent masks (the CL views).
    pub masks: Vec<Mask>,
}

/// Geometry, embedding and data settings: everything needed to draw and materialise samples.
#[derive(Clone, Debug)]
pub struct DataModel {
    /// Grid and areas.
    pub geom: Geometry,
    /// Embedding vectors.
    pub emb: Embedding,
    /// Weights, noise and mask ratio.
    pub cfg: DataConfig,
    /// Masked positions per view.
    pub m: usize,
}

impl DataModel {
    /// Builds the embedding and checks the mask size `1 ≤ m ≤ P−1`.
    pub fn new(geom: Geometry, cfg: DataConfig, seed: u64) -> Result<Self> {
        let p = geom.p();
        let m = (cfg.mask_ratio * p as f64).round_ties_even() as usize;
        if m < 1 || m + 1 > p {
            return Err(Error::config(
                "mask-ratio",
                cfg.mask_ratio,
                format!("masks m = round(γ·P) = {m} of P = {p} patches; need 1 <= m <= P-1"),
            ));
        }
        let emb = Embedding::new(cfg.embedding, &geom, seed);
        Ok(Self { geom, emb, cfg, m })
    }

    /// Number of patches P.
    pub fn p(&self) -> usize {
        self.geom.p()
    }

    /// Embedding dimension d.
    pub fn d(&self) -> usize {
        self.emb.d
    }

    /// Draws a sample with `views` masks.
    pub fn sample(&self, rng: &mut Rng, views: usize) -> Sample {
        let cluster = rng.random_range(0..self.geom.k());
        let (lo, hi) = self.cfg.weights;
        let z = (0..self.geom.clusters[cluster].n_areas())
            .map(|_| {
                if lo == hi {
                    lo
                } else {
                    rng.random_range(lo..hi)
                }
            })
            .collect();
        let noise_seed = rng.random();
        let masks = (0..views)
            .map(|_| Mask::draw(rng, self.p(), self.m))
            .collect();
        Sample {
            cluster,
            z,
            noise_seed,
            masks,
        }
    }

    /// Draws `mask` afresh for every view of `s` (the fixed data regime).
    pub fn redraw_masks(&self, rng: &mut Rng, s: &mut Sample) {
        for mask in &mut s.masks {
            *mask = Mask::draw(rng, self.p(), self.m);
        }
    }

    /// Calls `put(p, j, x_pj)` for every entry of the content `X` (`P × d`), row by row.
    pub fn write_content(&self, s: &Sample, mut put: impl FnMut(usize, usize, f64)) {
        let layout = &self.geom.clusters[s.cluster];
        let v = &self.emb.v[s.cluster];
        let d = self.d();
        let sigma = self.cfg.noise;
        let mut noise = (sigma > 0.0).then(|| substream(s.noise_seed, Stream::Noise as u64));
        let scale = sigma / (d as f64).sqrt();
        for p in 0..self.p() {
            let a = layout.area[p];
            let z = s.z[a];
            for j in 0..d {
                let mut x = z * v[(a, j)];
                if let Some(rng) = noise.as_mut() {
                    x += scale * rng.sample::<f64, _>(StandardNormal);
                }
                put(p, j, x);
            }
        }
    }

    /// The content `X` of `s` as a `P × d` matrix.
    pub fn content(&self, s: &Sample) -> Mat<f64> {
        let mut x = Mat::zeros(self.p(), self.d());
        self.fill_content(s, x.as_mut());
        x
    }

    /// Writes the content of `s` into `x` (`P × d`).
    #[track_caller]
    pub fn fill_content(&self, s: &Sample, mut x: MatMut<'_, f64>) {
        assert_eq!((x.nrows(), x.ncols()), (self.p(), self.d()));
        self.write_content(s, |p, j, v| x[(p, j)] = v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GeometryConfig;
    use crate::rng::stream;

    fn model(noise: f64) -> DataModel {
        let g = Geometry::new(&GeometryConfig::default(), 7).unwrap();
        DataModel::new(
            g,
            DataConfig {
                noise,
                ..DataConfig::default()
            },
            7,
        )
        .unwrap()
    }

    #[test]
    fn masks_have_exact_size_and_content_follows_areas() {
        let dm = model(0.0);
        let mut rng = stream(1, Stream::Train);
        for _ in 0..20 {
            let s = dm.sample(&mut rng, 2);
            assert_eq!(s.masks.len(), 2);
            for mask in &s.masks {
                assert_eq!(mask.masked.len(), 18);
                assert_eq!(mask.is_masked.iter().filter(|&&b| b).count(), 18);
            }
            assert!(s.z.iter().all(|&z| (1.0..2.0).contains(&z)));
            let x = dm.content(&s);
            let layout = &dm.geom.clusters[s.cluster];
            for p in 0..dm.p() {
                let a = layout.area[p];
                let col = dm.p()
                    + dm.geom.clusters[..s.cluster]
                        .iter()
                        .map(|l| l.n_areas())
                        .sum::<usize>()
                    + a;
                for j in 0..dm.d() {
                    let want = if j == col { s.z[a] } else { 0.0 };
                    assert_eq!(x[(p, j)], want);
                }
            }
        }
    }

    #[test]
    fn noise_is_reproducible_and_scaled() {
        let dm = model(0.1);
        let mut rng = stream(1, Stream::Train);
        let s = dm.sample(&mut rng, 1);
        let (a, b) = (dm.content(&s), dm.content(&s));
        assert_eq!(a, b);
        let clean = model(0.0).content(&s);
        let diff = &a - &clean;
        let rms = diff.norm_l2() / (dm.p() as f64).sqrt();
        assert!(
            (rms - 0.1).abs() < 0.02,
            "per-row noise norm {rms} should be about σ = 0.1"
        );
    }

    #[test]
    fn mask_ratio_bounds_are_errors() {
        let g = Geometry::new(&GeometryConfig::default(), 0).unwrap();
        let cfg = DataConfig {
            mask_ratio: 0.01,
            ..DataConfig::default()
        };
        let e = DataModel::new(g, cfg, 0).unwrap_err();
        assert!(e.to_string().contains("mask-ratio"), "{e}");
    }
}
