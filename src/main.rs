//! The `vitssl` command line: `train` one run, `info` about this machine.
//!
//! Flags map onto the typed configuration of `vitssl::config`; errors are reported once, here.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use vitssl::config::{
    DataConfig, DataRegime, EmbeddingKind, GeometryConfig, LayoutSpec, Objective, RunConfig,
    TrainConfig,
};
use vitssl::engine::EngineKind;
use vitssl::isa::Isa;
use vitssl::provenance::{Provenance, cpu_model};
use vitssl::record::{ConfigColumns, RowWriter, train_row};
use vitssl::sweep::Shard;
use vitssl::train::Run;

#[derive(Parser)]
#[command(
    name = "vitssl",
    version,
    about = "One-layer softmax ViT trained with MAE and CL on synthetic global/local images"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train one model and write one CSV row per evaluation.
    Train(Box<TrainArgs>),
    /// Print the CPU, its SIMD levels and the versions in this build.
    Info,
    /// Run the experiments behind the paper's claims: claims table, per-run CSVs, figures.
    Reproduce(ReproduceArgs),
    /// Compare, regression-check and plot benchmark results.
    #[command(subcommand)]
    Report(vitssl::report::ReportCommand),
}

#[derive(Clone, Copy, ValueEnum)]
enum ObjectiveArg {
    Mae,
    Cl,
}

#[derive(Clone, Copy, ValueEnum)]
enum EmbeddingArg {
    Orthonormal,
    Gaussian,
}

#[derive(Clone, Copy, ValueEnum)]
enum EngineArg {
    Fast,
    Reference,
}

#[derive(Args)]
struct TrainArgs {
    /// Objective.
    #[arg(long, value_enum, default_value = "mae")]
    objective: ObjectiveArg,
    /// Grid rows.
    #[arg(long, default_value_t = 6)]
    rows: usize,
    /// Grid columns.
    #[arg(long, default_value_t = 6)]
    cols: usize,
    /// Side b of the square local blocks.
    #[arg(long, default_value_t = 2)]
    block: usize,
    /// Global fraction ρ of the block grid.
    #[arg(long, default_value_t = 0.5)]
    global_frac: f64,
    /// Explicit layout file instead of blocks: one line per cluster, P area indices (0 = global).
    #[arg(long, value_name = "FILE")]
    layout: Option<PathBuf>,
    /// Number of clusters K.
    #[arg(long, default_value_t = 2)]
    clusters: usize,
    /// Embedding kind.
    #[arg(long, value_enum, default_value = "orthonormal")]
    embedding: EmbeddingArg,
    /// Embedding dimension d (gaussian only; default: the orthonormal dimension).
    #[arg(long)]
    dim: Option<usize>,
    /// Noise level σ.
    #[arg(long, default_value_t = 0.0)]
    noise: f64,
    /// Area-weight range L,U.
    #[arg(long, default_value = "1,2", value_parser = parse_pair)]
    weights: (f64, f64),
    /// Mask ratio γ.
    #[arg(long, default_value_t = 0.5)]
    mask_ratio: f64,
    /// Learning rate η (default: 1 for MAE, 4 for CL).
    #[arg(long)]
    lr: Option<f64>,
    /// InfoNCE temperature τ.
    #[arg(long, default_value_t = 1.0)]
    tau: f64,
    /// Batch size n.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Data regime: fresh, or fixed:N (N fixed samples as the batch, fresh masks).
    #[arg(long, default_value = "fresh", value_parser = parse_regime)]
    data: DataRegime,
    /// Maximum steps (default: 500 for MAE, 1000 for CL).
    #[arg(long)]
    steps: Option<usize>,
    /// Evaluate every this many steps.
    #[arg(long, default_value_t = 10)]
    eval_every: usize,
    /// Convergence target for own_mass (MAE) or global_mass_all (CL).
    #[arg(long, default_value_t = 0.85)]
    target: f64,
    /// Evaluation batch size.
    #[arg(long, default_value_t = 64)]
    n_eval: usize,
    /// Standard deviation of the initial entries of Q (0: Q = 0).
    #[arg(long, default_value_t = 0.0)]
    init_scale: f64,
    /// Keep training after convergence, up to --steps.
    #[arg(long)]
    keep_going: bool,
    /// Master seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Engine.
    #[arg(long, value_enum, default_value = "fast")]
    engine: EngineArg,
    /// SIMD level of the fast engine: auto, scalar, v3, v4 or neon (default: $VITSSL_ISA, else auto).
    #[arg(long)]
    isa: Option<String>,
    /// Output CSV (default: target/vitssl/train-<objective>.csv).
    #[arg(long, value_name = "FILE.csv")]
    out: Option<PathBuf>,
}

#[derive(Args)]
struct ReproduceArgs {
    /// Reduced experiment set (a few minutes); the full set takes longer.
    #[arg(long)]
    quick: bool,
    /// Output directory.
    #[arg(long, default_value = "results/reproduce")]
    out: PathBuf,
    /// Run only the i-th of n contiguous slices of the experiment list (1-based), e.g. 2/4.
    /// Claims and figures are then left to `--assemble` on the gathered files.
    #[arg(long, value_parser = parse_shard)]
    shard: Option<Shard>,
    /// Only make claims.csv, claims.md and the figures from the files already in --out.
    #[arg(long)]
    assemble: bool,
    /// Engine.
    #[arg(long, value_enum, default_value = "fast")]
    engine: EngineArg,
    /// SIMD level of the fast engine (default: $VITSSL_ISA, else auto).
    #[arg(long)]
    isa: Option<String>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

fn parse_shard(s: &str) -> std::result::Result<Shard, String> {
    s.parse().map_err(|e: vitssl::Error| e.to_string())
}

fn resolve_isa(isa: &Option<String>) -> Result<Isa> {
    Ok(match isa {
        Some(name) => Isa::resolve(name)?,
        None => Isa::from_env()?,
    })
}

fn engine_kind(e: EngineArg) -> EngineKind {
    match e {
        EngineArg::Fast => EngineKind::Fast,
        EngineArg::Reference => EngineKind::Reference,
    }
}

fn reproduce(args: ReproduceArgs) -> Result<()> {
    if !args.assemble {
        let threads = init_threads(args.threads)?;
        let opts = vitssl::reproduce::Options {
            quick: args.quick,
            out: args.out.clone(),
            shard: args.shard.unwrap_or(Shard::ALL),
            engine: engine_kind(args.engine),
            isa: resolve_isa(&args.isa)?,
            threads,
            verbose: true,
        };
        let start = std::time::Instant::now();
        let rows = vitssl::reproduce::run(&opts)?;
        eprintln!(
            "{} runs in {:.0} s; runs.csv and traces/ in {}",
            rows.len(),
            start.elapsed().as_secs_f64(),
            args.out.display()
        );
        if !opts.shard.is_all() {
            eprintln!(
                "shard {}/{} done: gather every shard's traces/ and runs.csv rows (in shard order) in one directory, then run `vitssl reproduce --assemble --out DIR`",
                opts.shard.index, opts.shard.count
            );
            return Ok(());
        }
    }
    let claims = vitssl::reproduce::assemble(&args.out)?;
    println!("{}", std::fs::read_to_string(args.out.join("claims.md"))?);
    let failed = claims
        .iter()
        .filter(|c| c.pass == vitssl::reproduce::claims::Verdict::Fail)
        .count();
    println!(
        "{} claims judged, {failed} failed; claims.csv, claims.md and the figures are in {}",
        claims.len(),
        args.out.display()
    );
    Ok(())
}

fn parse_pair(s: &str) -> std::result::Result<(f64, f64), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("'{s}' is not a pair L,U such as 1,2"))?;
    let num = |x: &str| {
        x.trim()
            .parse::<f64>()
            .map_err(|e| format!("'{x}' in '{s}': {e}"))
    };
    Ok((num(a)?, num(b)?))
}

fn parse_regime(s: &str) -> std::result::Result<DataRegime, String> {
    if s == "fresh" {
        return Ok(DataRegime::Fresh);
    }
    let n = s
        .strip_prefix("fixed:")
        .ok_or_else(|| format!("'{s}' is neither fresh nor fixed:N"))?;
    n.parse()
        .map(DataRegime::Fixed)
        .map_err(|e| format!("N in '{s}': {e}"))
}

fn read_layout(path: &PathBuf) -> Result<Vec<Vec<usize>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the layout file {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| {
            l.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|t| !t.is_empty())
                .map(|t| {
                    t.parse::<usize>().with_context(|| {
                        format!(
                            "{} line {}: '{t}' is not an area index",
                            path.display(),
                            i + 1
                        )
                    })
                })
                .collect()
        })
        .collect()
}

impl TrainArgs {
    fn config(&self) -> Result<RunConfig> {
        let objective = match self.objective {
            ObjectiveArg::Mae => Objective::Mae,
            ObjectiveArg::Cl => Objective::Cl,
        };
        let layout = match &self.layout {
            Some(path) => LayoutSpec::Explicit(read_layout(path)?),
            None => LayoutSpec::Blocks {
                block: self.block,
                global_frac: self.global_frac,
            },
        };
        let embedding = match self.embedding {
            EmbeddingArg::Orthonormal => {
                if let Some(d) = self.dim {
                    bail!(
                        "--dim {d} applies to --embedding gaussian only (orthonormal fixes d = P + Σ_k (n_k + 1))"
                    );
                }
                EmbeddingKind::Orthonormal
            }
            EmbeddingArg::Gaussian => EmbeddingKind::Gaussian { dim: self.dim },
        };
        let mut train = TrainConfig::for_objective(objective);
        train.lr = self.lr.unwrap_or(train.lr);
        train.max_steps = self.steps.unwrap_or(train.max_steps);
        train.tau = self.tau;
        train.batch = self.batch;
        train.data = self.data;
        train.eval_every = self.eval_every;
        train.target = self.target;
        train.n_eval = self.n_eval;
        train.init_scale = self.init_scale;
        train.keep_going = self.keep_going;
        Ok(RunConfig {
            geometry: GeometryConfig {
                rows: self.rows,
                cols: self.cols,
                clusters: self.clusters,
                layout,
            },
            data: DataConfig {
                embedding,
                weights: self.weights,
                noise: self.noise,
                mask_ratio: self.mask_ratio,
            },
            train,
            seed: self.seed,
        })
    }
}

fn init_threads(threads: Option<usize>) -> Result<usize> {
    let n = match threads {
        Some(0) => bail!("--threads 0: give at least 1 (or leave it out to use every core)"),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
        .context("cannot start the worker threads")?;
    Ok(n)
}

fn train(args: TrainArgs) -> Result<()> {
    let cfg = args.config()?;
    let threads = init_threads(args.threads)?;
    let run = Run::new(cfg)?;
    let t = &run.cfg.train;
    let isa = resolve_isa(&args.isa)?;
    let mut engine = vitssl::engine::build(engine_kind(args.engine), isa, &run.dm, t)?;
    let out = args.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!("target/vitssl/train-{}.csv", t.objective.name()))
    });
    let mut writer =
        RowWriter::create(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let prov = Provenance::collect(&engine.isa(), threads);
    let cols = ConfigColumns::new(&run.cfg, engine.name(), run.dm.d(), run.dm.geom.delta());

    let bar = ProgressBar::new(t.max_steps as u64);
    if std::io::stdout().is_terminal() {
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} steps {elapsed_precise} {msg}")
                .expect("static template"),
        );
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    let watched = t.objective.convergence_observable();
    let result = run.train(
        engine.as_mut(),
        |row| {
            let v = row.obs.convergence_value(t.objective);
            bar.set_message(format!("{watched} {v:.3}"));
            writer
                .write(train_row(row, &prov, &cols))
                .map_err(|e| vitssl::Error::config("out", out.display(), e.to_string()))
        },
        |_| bar.inc(1),
    );
    bar.finish_and_clear();
    let outcome =
        result.map_err(|e| anyhow::anyhow!("{e}\nrows written so far are in {}", out.display()))?;
    let s = &outcome.summary;
    let fmt_opt = |x: Option<usize>| x.map_or("never".to_string(), |v| v.to_string());
    println!(
        "{} {}: {} after {} steps, {:.3} s of training",
        t.objective.name(),
        engine.name(),
        if s.converged {
            "converged"
        } else {
            "NOT converged"
        },
        s.steps,
        s.seconds
    );
    println!(
        "  {watched} {:.4} (target {}), own_mass {:.4}, global_mass_local {:.4}, global_mass_all {:.4}, diversity {:.4}",
        s.last.obs.convergence_value(t.objective),
        t.target,
        s.last.obs.own_mass,
        s.last.obs.global_mass_local,
        s.last.obs.global_mass_all,
        s.last.obs.diversity
    );
    println!(
        "  delta {:.4}, rho0 {:.4}, t_cross {}",
        s.delta,
        s.rho0,
        fmt_opt(s.t_cross)
    );
    println!("  rows: {}", out.display());
    Ok(())
}

fn info() {
    println!(
        "vitssl {} (git {})",
        env!("CARGO_PKG_VERSION"),
        env!("VITSSL_GIT_REV")
    );
    println!("rustc: {}", env!("VITSSL_RUSTC_VERSION"));
    println!(
        "faer {}, pulp {}, rayon {}",
        env!("VITSSL_FAER_VERSION"),
        env!("VITSSL_PULP_VERSION"),
        env!("VITSSL_RAYON_VERSION")
    );
    println!("cpu: {}", cpu_model());
    println!(
        "cores: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let names = |v: Vec<Isa>| v.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ");
    println!("simd levels available: {}", names(Isa::available()));
    println!("best level: {}", Isa::best());
    println!("machine tag: {}", vitssl::bench::machine_tag());
    match Isa::from_env() {
        Ok(isa) => println!("level in use (auto / VITSSL_ISA): {isa}"),
        Err(e) => println!("level in use: VITSSL_ISA is invalid: {e}"),
    }
}

fn main() -> std::process::ExitCode {
    vitssl::alloc::retain_freed_memory();
    let result = match Cli::parse().command {
        Command::Train(args) => train(*args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Info => {
            info();
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Reproduce(args) => reproduce(args).map(|()| std::process::ExitCode::SUCCESS),
        Command::Report(cmd) => vitssl::report::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // `{:#}` prints the whole context chain on one line, without a backtrace.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
