//! Instruction-set levels and their detection: the one place that picks a `pulp::Arch`.
//!
//! `auto` takes the best level this CPU has (x86: `v4` when built with the `avx512` feature, which
//! is on by default, then `v3`; aarch64: `neon`), falling back to `scalar`. Any level can be
//! forced for comparisons; a level the CPU lacks is an [`Error::Isa`].

use crate::error::{Error, Result};
use std::fmt;

/// A SIMD level the fast kernels can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable scalar code (pulp's `Scalar`).
    Scalar,
    /// x86-64-v3: AVX2 + FMA, 8 f32 lanes.
    V3,
    /// x86-64-v4: AVX-512, 16 f32 lanes (needs the `avx512` cargo feature, a default feature).
    V4,
    /// aarch64 NEON, 4 f32 lanes.
    Neon,
}

impl Isa {
    /// Every level, best first.
    pub const ALL: [Isa; 4] = [Isa::V4, Isa::V3, Isa::Neon, Isa::Scalar];

    /// The name used on the command line, in `VITSSL_ISA` and in CSV files.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::V3 => "v3",
            Isa::V4 => "v4",
            Isa::Neon => "neon",
        }
    }

    /// f32 lanes per vector.
    pub fn f32_lanes(self) -> usize {
        match self {
            Isa::Scalar => 1,
            Isa::V3 => 8,
            Isa::V4 => 16,
            Isa::Neon => 4,
        }
    }

    /// Whether this CPU (and this build) can run the level.
    pub fn is_available(self) -> bool {
        self.arch().is_some()
    }

    /// The pulp architecture token for the level, when available.
    pub fn arch(self) -> Option<pulp::Arch> {
        match self {
            Isa::Scalar => Some(pulp::Arch::Scalar),
            #[cfg(target_arch = "x86_64")]
            Isa::V3 => pulp::x86::V3::try_new().map(pulp::Arch::V3),
            #[cfg(all(target_arch = "x86_64", feature = "avx512"))]
            Isa::V4 => pulp::x86::V4::try_new().map(pulp::Arch::V4),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => pulp::aarch64::Neon::try_new().map(pulp::Arch::Neon),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The levels available here, best first.
    pub fn available() -> Vec<Isa> {
        Self::ALL.into_iter().filter(|i| i.is_available()).collect()
    }

    /// The best available level.
    pub fn best() -> Isa {
        Self::available()[0]
    }

    /// Resolves `auto` or a level name to an available level.
    pub fn resolve(name: &str) -> Result<Isa> {
        let name = name.trim().to_ascii_lowercase();
        if name == "auto" {
            return Ok(Self::best());
        }
        let list = || {
            Self::available()
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let isa = Self::ALL
            .into_iter()
            .find(|i| i.name() == name)
            .ok_or_else(|| {
                Error::config(
                    "isa",
                    &name,
                    format!(
                        "use auto or one of scalar, v3, v4, neon (available here: {})",
                        list()
                    ),
                )
            })?;
        if !isa.is_available() {
            let why = if isa == Isa::V4 && cfg!(target_arch = "x86_64") && !cfg!(feature = "avx512")
            {
                format!(
                    "{} (v4 also needs the avx512 feature, which this build leaves out)",
                    list()
                )
            } else {
                list()
            };
            return Err(Error::Isa {
                requested: isa.name().to_string(),
                available: why,
            });
        }
        Ok(isa)
    }

    /// The level chosen by `VITSSL_ISA` when set, otherwise `auto`.
    pub fn from_env() -> Result<Isa> {
        Self::resolve(&std::env::var("VITSSL_ISA").unwrap_or_else(|_| "auto".into()))
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalar_is_always_available_and_names_round_trip() {
        assert!(Isa::available().contains(&Isa::Scalar));
        for isa in Isa::available() {
            assert_eq!(Isa::resolve(isa.name()).unwrap(), isa);
        }
        assert_eq!(Isa::resolve("auto").unwrap(), Isa::best());
    }

    #[test]
    fn unknown_or_missing_levels_are_errors() {
        let e = Isa::resolve("sse9").unwrap_err();
        assert!(e.to_string().contains("sse9"), "{e}");
        if let Some(missing) = Isa::ALL.into_iter().find(|i| !i.is_available()) {
            let e = Isa::resolve(missing.name()).unwrap_err();
            assert!(matches!(e, Error::Isa { .. }), "{e}");
        }
    }
}
