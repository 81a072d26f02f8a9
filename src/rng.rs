//! Seeded random streams. Every random draw in vitssl comes from a `Xoshiro256PlusPlus` stream
//! derived from the run's master seed and a fixed tag, so a run is a pure function of its config
//! (SPEC §3) and adding a stream never shifts another.

use rand::SeedableRng;
pub use rand_xoshiro::Xoshiro256PlusPlus as Rng;

/// Stream tags.
#[derive(Clone, Copy, Debug)]
pub enum Stream {
    /// Block layout of every cluster.
    Layout = 1,
    /// Gaussian embeddings.
    Embedding = 2,
    /// Training samples and masks.
    Train = 3,
    /// The fixed evaluation batch.
    Eval = 4,
    /// Random initialisation of Q.
    Init = 5,
    /// Per-sample noise: the tag is mixed with a per-sample seed.
    Noise = 6,
}

/// The stream `tag` of master seed `seed`.
pub fn stream(seed: u64, tag: Stream) -> Rng {
    substream(seed, tag as u64)
}

/// A stream keyed by `(seed, key)`; `seed_from_u64` runs SplitMix64 over the mixed key.
pub fn substream(seed: u64, key: u64) -> Rng {
    Rng::seed_from_u64(seed ^ key.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17))
}
