//! Provenance: where and how a result was produced, recorded in every CSV row.

use serde::{Deserialize, Serialize};

/// Machine and build facts for a result row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// Git revision of the source the binary was built from (`-dirty` with local changes).
    pub git_rev: String,
    /// CPU model name.
    pub cpu_model: String,
    /// Logical cores of the machine.
    pub cores: usize,
    /// Instruction set the computation ran on.
    pub isa: String,
    /// Worker threads.
    pub threads: usize,
    /// `rustc --version` of the build.
    pub rustc: String,
    /// UTC time the run started, RFC 3339.
    pub date: String,
}

impl Provenance {
    /// Facts of this build and machine, now, for work on `isa` with `threads` workers.
    pub fn collect(isa: &str, threads: usize) -> Self {
        Self {
            git_rev: env!("VITSSL_GIT_REV").to_string(),
            cpu_model: cpu_model(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            isa: isa.to_string(),
            threads,
            rustc: env!("VITSSL_RUSTC_VERSION").to_string(),
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        }
    }
}

/// The CPU model name (`/proc/cpuinfo` on Linux), or `unknown`.
pub fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k.trim(), "model name" | "Model" | "Hardware" | "cpu model")
                .then(|| v.trim().to_string())
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}
