//! `vitssl report` on synthetic results: the regression rule and its exit status, unmatched ids
//! in comparisons, duplicate ids, criterion baselines, and the SVG figures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use vitssl::report::read::{Source, read_bench_csv, read_criterion_baseline, read_results};
use vitssl::report::schema::{BenchRow, ConvergenceRow};

fn vitssl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vitssl"))
        .args(args)
        .output()
        .expect("run vitssl")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh, empty scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("report")
        .join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `vitssl report regress --baseline base --current cur [extra…]`: exit code, stdout, stderr.
fn regress(base: &Path, cur: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec![
        "report",
        "regress",
        "--baseline",
        s(base),
        "--current",
        s(cur),
    ];
    args.extend_from_slice(extra);
    let out = vitssl(&args);
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
}

/// A benchmark row `group/variant/p` with median `ns` and confidence interval `ns ± half`.
fn bench(group: &str, variant: &str, p: usize, ns: f64, half: f64) -> BenchRow {
    let flops = 1000.0 * p as f64;
    BenchRow {
        id: format!("{group}/{variant}/{p}"),
        group: group.into(),
        variant: variant.into(),
        p,
        d: 16,
        n: 1,
        threads: 1,
        isa: if variant == "fast-v3" { "v3" } else { "scalar" }.into(),
        median_ns: ns,
        lower_ns: ns - half,
        upper_ns: ns + half,
        flops,
        gflops: flops / ns,
        peak_fraction: Some(0.1),
        git_rev: "abc1234".into(),
        cpu_model: "Synthetic CPU".into(),
        cores: 2,
        rustc: "rustc 1.90.0".into(),
        date: "2025-01-01T00:00:00Z".into(),
    }
}

fn convergence(id: &str, objective: &str, p: usize, delta: f64, steps: usize) -> ConvergenceRow {
    ConvergenceRow {
        id: id.into(),
        objective: objective.into(),
        rows: p,
        cols: 1,
        p,
        d: p + 4,
        k: 2,
        block: 2,
        rho: 0.5,
        delta,
        gamma: 0.5,
        lr: 1.0,
        tau: 1.0,
        n: 256,
        threads: 1,
        isa: "scalar".into(),
        engine: "reference".into(),
        converged: steps < 500,
        steps,
        seconds: steps as f64 * 1e-3 * p as f64,
        own_mass: 0.9,
        global_mass_local: 0.05,
        global_mass_all: 0.1,
        diversity: 0.5,
        seed: 0,
        git_rev: "abc1234".into(),
        cpu_model: "Synthetic CPU".into(),
        cores: 2,
        rustc: "rustc 1.90.0".into(),
        date: "2025-01-01T00:00:00Z".into(),
    }
}

fn write_csv<R: serde::Serialize>(path: &Path, rows: &[R]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut w = csv::Writer::from_path(path).unwrap();
    for r in rows {
        w.serialize(r).unwrap();
    }
    w.flush().unwrap();
}

/// Two results directories: `base` and `cur`, with `cur` rows `factor` times slower.
fn two_dirs(name: &str, rows: &[(&str, f64, f64)], factor: f64) -> (PathBuf, PathBuf) {
    let root = scratch(name);
    let mk = |tag: &str, f: f64| {
        let dir = root.join(tag);
        let v: Vec<BenchRow> = rows
            .iter()
            .enumerate()
            .map(|(i, (g, ns, half))| bench(g, "fast-v3", 8 * (i + 1), ns * f, *half))
            .collect();
        write_csv(&dir.join("kernels.csv"), &v);
        dir
    };
    (mk("base", 1.0), mk("cur", factor))
}

#[test]
fn regress_flags_a_1_3x_slowdown_with_exit_1() {
    let (b, c) = two_dirs("slow", &[("mae_sample", 1000.0, 10.0)], 1.3);
    let (code, stdout, stderr) = regress(&b, &c, &[]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("## Regressions"), "{stdout}");
    assert!(stdout.contains("| mae_sample/fast-v3/8 |"), "{stdout}");
    assert!(stdout.contains("+30.0% (×1.30)"), "{stdout}");
}

#[test]
fn regress_passes_an_unchanged_benchmark() {
    let (b, c) = two_dirs("same", &[("mae_sample", 1000.0, 10.0)], 1.0);
    let (code, stdout, stderr) = regress(&b, &c, &["--threshold", "0.05"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("0 regressed"), "{stdout}");
}

#[test]
fn regress_ignores_a_slowdown_within_overlapping_intervals() {
    // ±200 ns around 1000 and 1300: [800, 1200] and [1100, 1500] overlap.
    let (b, c) = two_dirs("noisy", &[("cl_view", 1000.0, 200.0)], 1.3);
    let (code, stdout, stderr) = regress(&b, &c, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("within noise"), "{stdout}");
    assert!(stdout.contains("| cl_view/fast-v3/8 |"), "{stdout}");
}

#[test]
fn regress_lists_missing_and_new_ids_without_failing() {
    let root = scratch("missing");
    let b = root.join("base.csv");
    let c = root.join("cur.csv");
    write_csv(
        &b,
        &[
            bench("exp", "fast-v3", 8, 100.0, 1.0),
            bench("exp", "fast-v3", 16, 200.0, 1.0),
        ],
    );
    write_csv(
        &c,
        &[
            bench("exp", "fast-v3", 8, 100.0, 1.0),
            bench("exp", "fast-v3", 32, 400.0, 1.0),
        ],
    );
    let (code, stdout, stderr) = regress(&b, &c, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("Missing from current"), "{stdout}");
    assert!(stdout.contains("- exp/fast-v3/16"), "{stdout}");
    assert!(stdout.contains("New in current"), "{stdout}");
    assert!(stdout.contains("- exp/fast-v3/32"), "{stdout}");
}

#[test]
fn regress_rejects_a_bad_threshold_and_unreadable_input_with_exit_2() {
    let (b, c) = two_dirs("badthr", &[("exp", 100.0, 1.0)], 1.0);
    let (code, _, stderr) = regress(&b, &c, &["--threshold", "5x"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("'5x'") && stderr.contains("5%"), "{stderr}");

    let gone = b.join("no-such-dir");
    let (code, _, stderr) = regress(&gone, &c, &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no-such-dir"), "{stderr}");
}

#[test]
fn compare_lists_unmatched_ids_and_writes_csv() {
    let root = scratch("compare");
    let a = root.join("box-a");
    let b = root.join("box-b");
    write_csv(
        &a.join("kernels.csv"),
        &[
            bench("mae_sample", "fast-v3", 16, 1000.0, 5.0),
            bench("mae_sample", "fast-v3", 64, 4000.0, 5.0),
        ],
    );
    write_csv(
        &b.join("kernels.csv"),
        &[
            bench("mae_sample", "fast-v3", 16, 500.0, 5.0),
            bench("mae_sample", "fast-v4", 16, 250.0, 5.0),
        ],
    );
    let csv_out = root.join("out/cmp.csv");
    let out = vitssl(&["report", "compare", s(&a), s(&b), "--out", s(&csv_out)]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("| mae_sample/fast-v3/16 | 1.00 µs | 500 ns | 0.500 | 2.00× |"),
        "{stdout}"
    );
    let unmatched = stdout.split("Unmatched").nth(1).expect(&stdout);
    assert!(unmatched.contains("mae_sample/fast-v3/64"), "{stdout}");
    assert!(unmatched.contains("mae_sample/fast-v4/16"), "{stdout}");

    let written = std::fs::read_to_string(&csv_out).unwrap();
    assert!(
        written.starts_with("table,key,reference,candidate,"),
        "{written}"
    );
    assert!(
        written.contains("inputs,mae_sample/fast-v3/16,box-a,box-b,1000.0,500.0,0.5,2.0"),
        "{written}"
    );
    assert!(
        written.contains("inputs,mae_sample/fast-v3/64,box-a,box-b,4000.0,,,"),
        "{written}"
    );
    assert!(!root.join("out/cmp.csv.tmp").exists());
}

#[test]
fn compare_by_variant_shows_simd_speedup_per_size() {
    let root = scratch("variant");
    let f = root.join("box/kernels.csv");
    write_csv(
        &f,
        &[
            bench("mae_sample", "reference", 16, 8000.0, 5.0),
            bench("mae_sample", "fast-scalar", 16, 2000.0, 5.0),
            bench("mae_sample", "fast-v3", 16, 500.0, 5.0),
            bench("mae_sample", "fast-v3", 64, 1500.0, 5.0),
        ],
    );
    let out = vitssl(&[
        "report",
        "compare",
        s(&f),
        "--by",
        "variant",
        "--against",
        "fast-scalar",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("relative to fast-scalar"), "{stdout}");
    assert!(
        stdout.contains("| 16 | 2.00 µs | 500 ns | 0.250 | 4.00× | 8.00 µs | 4.00 | 0.250× |"),
        "{stdout}"
    );
    assert!(stdout.contains("| 64 | — | 1.50 µs | — |"), "{stdout}");

    let out = vitssl(&["report", "compare", s(&f)]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("--by variant"));
}

#[test]
fn duplicate_ids_are_rejected_naming_id_and_file() {
    let root = scratch("dup");
    let f = root.join("kernels.csv");
    write_csv(
        &f,
        &[
            bench("exp", "fast-v3", 8, 100.0, 1.0),
            bench("exp", "fast-v3", 8, 110.0, 1.0),
        ],
    );
    let e = read_bench_csv(&f).unwrap_err().to_string();
    assert!(e.contains("'exp/fast-v3/8'") && e.contains(s(&f)), "{e}");

    // Across kernels.csv and step.csv of one directory, too.
    write_csv(&f, &[bench("exp", "fast-v3", 8, 100.0, 1.0)]);
    write_csv(
        &root.join("step.csv"),
        &[bench("exp", "fast-v3", 8, 100.0, 1.0)],
    );
    let e = read_results(&root).unwrap_err().to_string();
    assert!(e.contains("exp/fast-v3/8") && e.contains("step.csv"), "{e}");

    let out = vitssl(&["report", "compare", s(&root), s(&root)]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("exp/fast-v3/8"));
}

#[test]
fn unreadable_and_foreign_files_are_named() {
    let root = scratch("foreign");
    let f = root.join("other.csv");
    std::fs::write(&f, "a,b\n1,2\n").unwrap();
    let e = read_results(&f).unwrap_err().to_string();
    assert!(e.contains(s(&f)) && e.contains("median_ns"), "{e}");
    let broken = root.join("kernels.csv");
    std::fs::write(&broken, "id,median_ns\nx,not-a-number\n").unwrap();
    let e = read_results(&root).unwrap_err().to_string();
    assert!(e.contains(s(&broken)), "{e}");
    let e = read_results(&root.join("empty")).unwrap_err().to_string();
    assert!(e.contains("empty"), "{e}");

    // A directory with convergence rows only has nothing to compare.
    let conv = root.join("conv-only");
    write_csv(
        &conv.join("convergence.csv"),
        &[convergence("scale/mae/4", "mae", 4, 0.1, 10)],
    );
    let e = Source::Path(conv.clone()).load().unwrap_err().to_string();
    assert!(e.contains("no timing rows") && e.contains(s(&conv)), "{e}");
}

/// Writes criterion 0.8's files for one benchmark and baseline.
fn criterion_bench(root: &Path, id: [&str; 3], baseline: &str, ns: f64, half: f64, json: bool) {
    let dir = root.join(id.join("/")).join(baseline);
    std::fs::create_dir_all(&dir).unwrap();
    let est = |p: f64| {
        format!(
            r#"{{"confidence_interval":{{"confidence_level":0.95,"lower_bound":{},"upper_bound":{}}},"point_estimate":{p},"standard_error":1.0}}"#,
            p - half,
            p + half
        )
    };
    std::fs::write(
        dir.join("estimates.json"),
        format!(
            r#"{{"mean":{},"median":{},"median_abs_dev":{},"slope":null,"std_dev":{}}}"#,
            est(ns * 1.01),
            est(ns),
            est(3.0),
            est(4.0)
        ),
    )
    .unwrap();
    if json {
        let full = id.join("/");
        std::fs::write(
            dir.join("benchmark.json"),
            format!(
                r#"{{"group_id":"{}","function_id":"{}","value_str":"{}","throughput":{{"Elements":1000}},"full_id":"{full}","directory_name":"{full}","title":"{full}"}}"#,
                id[0], id[1], id[2]
            ),
        )
        .unwrap();
    }
}

#[test]
fn criterion_baselines_are_read_and_regress_across_them() {
    let root = scratch("criterion");
    let crit = root.join("criterion");
    for (baseline, f) in [("before", 1.0), ("after", 1.3), ("new", 1.3)] {
        criterion_bench(
            &crit,
            ["mae_sample", "fast-v3", "16"],
            baseline,
            1000.0 * f,
            5.0,
            true,
        );
        criterion_bench(
            &crit,
            ["exp", "fast-v3", "1024"],
            baseline,
            200.0,
            5.0,
            false,
        );
    }
    criterion_bench(&crit, ["exp", "libm", "1024"], "before", 900.0, 5.0, true);
    // Criterion's change estimates and HTML reports sit beside the baselines.
    criterion_bench(
        &crit,
        ["mae_sample", "fast-v3", "16"],
        "change",
        0.3,
        0.01,
        false,
    );
    std::fs::create_dir_all(crit.join("report")).unwrap();
    std::fs::write(crit.join("report/index.html"), "<html/>").unwrap();

    let before = read_criterion_baseline(&crit, "before").unwrap();
    assert_eq!(before.len(), 3);
    let m = before
        .iter()
        .find(|m| m.id == "mae_sample/fast-v3/16")
        .unwrap();
    assert_eq!(
        (m.median_ns, m.lower_ns, m.upper_ns),
        (1000.0, 995.0, 1005.0)
    );
    assert_eq!(
        (m.group.as_str(), m.variant.as_str()),
        ("mae_sample", "fast-v3")
    );
    let from_path = before.iter().find(|m| m.id == "exp/fast-v3/1024").unwrap();
    assert_eq!(from_path.size, "1024");

    let out = vitssl(&[
        "report",
        "regress",
        "--criterion-dir",
        s(&crit),
        "--baseline",
        "before",
        "--current",
        "after",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("| mae_sample/fast-v3/16 |"), "{stdout}");
    assert!(stdout.contains("- exp/libm/1024"), "{stdout}");

    let e = Source::new("nope", Some(&crit))
        .load()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("'nope'") && e.contains("after, before, new"),
        "{e}"
    );
    assert!(!e.contains("change"), "{e}");
}

#[test]
fn plot_writes_labelled_svgs_and_skips_absent_data() {
    let root = scratch("plot");
    let dir = root.join("box");
    let mut conv = Vec::new();
    for (obj, base) in [("mae", 40), ("cl", 90)] {
        for (i, p) in [16, 64, 256].into_iter().enumerate() {
            conv.push(convergence(
                &format!("scale/{obj}/{p}"),
                obj,
                p,
                0.2,
                base * (i + 1),
            ));
        }
        for (i, delta) in [-0.2, 0.1, 0.4].into_iter().enumerate() {
            let steps = if i == 0 { 500 } else { base * (3 - i) };
            conv.push(convergence(
                &format!("gap/{obj}/{i}"),
                obj,
                36,
                delta,
                steps,
            ));
        }
    }
    write_csv(&dir.join("convergence.csv"), &conv);
    let mut kernels = Vec::new();
    for (v, speed) in [("reference", 1.0), ("fast-scalar", 4.0), ("fast-v3", 16.0)] {
        for p in [16, 64, 256] {
            kernels.push(bench("mae_sample", v, p, 1000.0 * p as f64 / speed, 1.0));
        }
    }
    write_csv(&dir.join("kernels.csv"), &kernels);

    let out_dir = root.join("figs");
    let out = vitssl(&["report", "plot", s(&dir), "--out", s(&out_dir)]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    for (file, needles) in [
        (
            "convergence_steps_vs_p.svg",
            &[
                "Steps to convergence vs patches P",
                "patches P",
                "MAE",
                "CL",
            ][..],
        ),
        (
            "convergence_seconds_vs_p.svg",
            &["Training seconds to convergence", "MAE"][..],
        ),
        (
            "convergence_steps_vs_delta.svg",
            &["information gap Δ", "hollow: not converged"][..],
        ),
        (
            "gflops_mae_sample.svg",
            &[
                "mae_sample: GFLOP/s per variant",
                "GFLOP/s",
                "fast-v3",
                "fast-scalar",
            ][..],
        ),
    ] {
        let svg = std::fs::read_to_string(out_dir.join(file)).unwrap_or_else(|e| {
            panic!("{file}: {e}\n{stdout}");
        });
        assert!(svg.starts_with("<svg"), "{file}");
        for n in needles {
            assert!(
                svg.contains(&format!(">{n}")) || svg.contains(n),
                "{file}: no '{n}'"
            );
        }
        assert!(svg.contains("<text"), "{file} has no text elements");
    }

    // Only kernels: the convergence figures are skipped with a note, the kernel figure drawn.
    let only = root.join("only-kernels");
    write_csv(&only.join("kernels.csv"), &kernels);
    let out = vitssl(&["report", "plot", s(&only)]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("note: skipped convergence_steps_vs_p.svg"),
        "{stdout}"
    );
    assert!(only.join("gflops_mae_sample.svg").exists());
    assert!(!only.join("convergence_steps_vs_delta.svg").exists());
}
