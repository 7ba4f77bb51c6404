//! `cargo xtask fuzz [--seconds N] [--build-only] [TARGET...]`: builds the fuzz targets in `fuzz/`
//! (libFuzzer, through libfuzzer-sys) and runs each for N seconds (default 60) from its corpus in
//! `fuzz/corpus/<target>/`. A crash leaves its input in `fuzz/artifacts/<target>/` and fails the run.
//!
//! This is what `cargo fuzz build` and `cargo fuzz run` do, with the same compiler flags (the nightly
//! toolchain's coverage instrumentation and AddressSanitizer), without installing cargo-fuzz: CI
//! machines start from a clean toolchain, and building cargo-fuzz would cost more than the runs.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::util::{bail, repo_root, Context, Result};

/// The host triple the targets are built for (explicit, so that build scripts are not instrumented).
const TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// cargo-fuzz's flags for libFuzzer's coverage feedback, plus AddressSanitizer and debug assertions.
const RUSTFLAGS: &str = "-Cpasses=sancov-module \
    -Cllvm-args=-sanitizer-coverage-level=4 \
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
    -Cllvm-args=-sanitizer-coverage-pc-table \
    -Cllvm-args=-sanitizer-coverage-trace-compares \
    --cfg fuzzing -Zsanitizer=address -Cdebug-assertions -Coverflow-checks -Cforce-frame-pointers";

/// The fuzz targets: `fuzz/fuzz_targets/<name>.rs`.
pub fn targets() -> Result<Vec<String>> {
    let dir = repo_root().join("fuzz/fuzz_targets");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .ctx(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".rs").map(str::to_string))
        .collect();
    names.sort();
    Ok(names)
}

struct Options {
    seconds: u64,
    build_only: bool,
    targets: Vec<String>,
}

fn options(args: &[String]) -> Result<Options> {
    let mut o = Options { seconds: 60, build_only: false, targets: Vec::new() };
    let mut args = args.iter();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                let v = args.next().map(String::as_str).unwrap_or("");
                o.seconds = v.parse().ctx(|| format!("--seconds {v:?}: a whole number of seconds"))?;
            }
            "--build-only" => o.build_only = true,
            t => o.targets.push(t.to_string()),
        }
    }
    let all = targets()?;
    if let Some(t) = o.targets.iter().find(|t| !all.contains(t)) {
        bail!("no fuzz target {t:?} (there are: {})", all.join(", "));
    }
    if o.targets.is_empty() {
        o.targets = all;
    }
    Ok(o)
}

fn fuzz_dir() -> PathBuf {
    repo_root().join("fuzz")
}

/// Builds the fuzz targets (release, instrumented) with the nightly toolchain.
fn build(targets: &[String]) -> Result<()> {
    let dir = fuzz_dir();
    let mut cmd = Command::new("cargo");
    cmd.args(["+nightly", "build", "--release", "--target", TRIPLE, "--manifest-path"])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(dir.join("target"))
        .env("RUSTFLAGS", RUSTFLAGS)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO");
    for t in targets {
        cmd.args(["--bin", t]);
    }
    let status = cmd.status().ctx(|| "running cargo +nightly build for the fuzz targets".to_string())?;
    if !status.success() {
        bail!("building the fuzz targets failed (they need the nightly toolchain: `rustup toolchain install nightly`)");
    }
    Ok(())
}

/// Runs target `t` for `seconds` from its corpus (seeds from `fuzz/make_seeds.py` where it has them).
fn run(t: &str, seconds: u64) -> Result<()> {
    let dir = fuzz_dir();
    let corpus = dir.join("corpus").join(t);
    let artifacts = dir.join("artifacts").join(t);
    for d in [&corpus, &artifacts] {
        std::fs::create_dir_all(d).ctx(|| format!("creating {}", d.display()))?;
    }
    let bin = dir.join("target").join(TRIPLE).join("release").join(t);
    let start = Instant::now();
    let out = Command::new(&bin)
        .arg(&corpus)
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-artifact_prefix={}/", artifacts.display()))
        .arg("-rss_limit_mb=4096")
        .arg("-print_final_stats=1")
        .output()
        .ctx(|| format!("running {}", bin.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    let runs = stderr.lines().find_map(|l| l.strip_prefix("stat::number_of_executed_units:")).map(str::trim).unwrap_or("?");
    if !out.status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("fuzz target {t} failed after {runs} runs (the input is in {}):\n{}", artifacts.display(), tail.join("\n"));
    }
    eprintln!("xtask: fuzz {t}: {runs} runs in {:.0?}, no finding", start.elapsed());
    Ok(())
}

/// `cargo xtask fuzz`.
pub fn fuzz(args: &[String]) -> Result<()> {
    let o = options(args)?;
    let seeds = fuzz_dir().join("make_seeds.py");
    let status = Command::new("python3").arg(&seeds).status().ctx(|| format!("running {}", seeds.display()))?;
    if !status.success() {
        bail!("{} failed", seeds.display());
    }
    build(&o.targets)?;
    if o.build_only {
        return Ok(());
    }
    for t in &o.targets {
        run(t, o.seconds)?;
    }
    Ok(())
}
