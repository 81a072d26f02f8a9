//! The `vitssl` binary: exit status, messages and CSV files as a user sees them.

use std::process::Command;

fn vitssl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vitssl"))
        .args(args)
        .env_remove("VITSSL_ISA")
        .output()
        .expect("run vitssl")
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn invalid_geometry_exits_non_zero_with_a_message() {
    let out = vitssl(&[
        "train",
        "--rows",
        "5",
        "--block",
        "2",
        "--engine",
        "reference",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("b = 2") && err.contains("5x6"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_flags_are_reported() {
    for (args, needle) in [
        (&["train", "--weights", "3,1"][..], "weights"),
        (&["train", "--data", "fixed:x"][..], "fixed:x"),
        (&["train", "--dim", "7"][..], "--dim"),
        (&["train", "--isa", "sse9"][..], "sse9"),
        (&["train", "--threads", "0"][..], "--threads"),
    ] {
        let out = vitssl(args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn train_writes_one_row_per_evaluation_with_provenance() {
    let path = scratch("train.csv");
    let out = vitssl(&[
        "train",
        "--engine",
        "reference",
        "--rows",
        "4",
        "--cols",
        "4",
        "--batch",
        "16",
        "--steps",
        "20",
        "--eval-every",
        "5",
        "--keep-going",
        "--out",
        path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("delta") && stdout.contains("rho0") && stdout.contains("t_cross"),
        "{stdout}"
    );
    let mut r = csv::Reader::from_path(&path).unwrap();
    let header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    let want = [
        "step",
        "seconds",
        "loss",
        "own_mass",
        "global_mass_local",
        "global_mass_all",
        "diversity",
        "phi_target",
        "phi_global",
        "ups_same",
        "ups_other",
    ];
    assert_eq!(&header[..want.len()], &want);
    for col in [
        "git_rev",
        "cpu_model",
        "isa",
        "threads",
        "rustc",
        "date",
        "objective",
        "seed",
        "delta",
    ] {
        assert!(
            header.iter().any(|h| h == col),
            "missing column {col}: {header:?}"
        );
    }
    let steps: Vec<String> = r.records().map(|rec| rec.unwrap()[0].to_string()).collect();
    assert_eq!(steps, ["0", "5", "10", "15", "20"]);
}

#[test]
fn divergence_is_an_error_naming_the_step_and_rows_stay_on_disk() {
    let path = scratch("diverge.csv");
    let out = vitssl(&[
        "train",
        "--engine",
        "reference",
        "--rows",
        "4",
        "--cols",
        "4",
        "--batch",
        "8",
        "--lr",
        "1e308",
        "--embedding",
        "gaussian",
        "--noise",
        "0.5",
        "--steps",
        "10",
        "--eval-every",
        "1",
        "--keep-going",
        "--out",
        path.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("non-finite") && err.contains("at step"),
        "{err}"
    );
    assert!(
        err.contains(path.to_str().unwrap()),
        "the message should say where the rows are: {err}"
    );
    let rows = csv::Reader::from_path(&path).unwrap().records().count();
    assert!(
        rows >= 1,
        "rows written before the failure must stay on disk"
    );
}

#[test]
fn info_lists_simd_levels() {
    let out = vitssl(&["info"]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("simd levels available") && s.contains("scalar"),
        "{s}"
    );
}
