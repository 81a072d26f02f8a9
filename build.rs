//! Records the git revision and the rustc version for the provenance columns of every CSV.
use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=VITSSL_RUSTC_VERSION={version}");
    let rev =
        output("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = output("git", &["status", "--porcelain", "--untracked-files=no"]).is_some();
    let rev = if dirty { format!("{rev}-dirty") } else { rev };
    println!("cargo:rustc-env=VITSSL_GIT_REV={rev}");
    if let Some(dir) = output("git", &["rev-parse", "--git-dir"]) {
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/index");
        if let Some(r) = output("git", &["symbolic-ref", "-q", "HEAD"]) {
            println!("cargo:rerun-if-changed={dir}/{r}");
        }
    }
    // Versions of the core numeric crates, for `vitssl info`.
    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    for name in ["faer", "pulp", "rayon"] {
        let version = locked_version(&lock, name).unwrap_or_else(|| "unknown".into());
        println!(
            "cargo:rustc-env=VITSSL_{}_VERSION={version}",
            name.to_uppercase()
        );
    }
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=build.rs");
}

fn locked_version(lock: &str, name: &str) -> Option<String> {
    let mut lines = lock.lines();
    while let Some(l) = lines.next() {
        if l.trim() == format!("name = \"{name}\"") {
            let v = lines.next()?.trim().strip_prefix("version = ")?;
            return Some(v.trim_matches('"').to_string());
        }
    }
    None
}
