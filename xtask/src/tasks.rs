//! `cargo xtask test` and `cargo xtask demo`: the README's two commands.
//!
//! `cargo xtask test` is what CI runs (`.ci/run`): the guest images, then every check the project
//! claims, cheapest first so a mistake fails in minutes: the structure check, clippy with
//! `-D warnings` over the workspace and every guest program, the guest programs' unit tests, the
//! benches and the fuzz targets built (and each fuzz target run briefly), and the whole test suite on
//! real KVM. With arguments it runs only the test suite, passing them to `cargo test`.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::images;
use crate::util::{bail, repo_root, Result};

/// Seconds each fuzz target runs in `cargo xtask test`.
const CI_FUZZ_SECONDS: u64 = 20;
/// Guest programs with host-side unit tests (the HRT is a freestanding kernel: clippy only).
const TESTED_GUESTS: [&str; 2] = ["ros-init", "ros-tool"];
/// Every guest program.
const GUESTS: [&str; 3] = ["hrt", "ros-init", "ros-tool"];

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn status(cmd: &mut Command, what: &str) -> Result<i32> {
    match cmd.status() {
        Ok(s) => Ok(s.code().unwrap_or(1)),
        Err(e) => bail!("{what}: cannot start: {e}"),
    }
}

/// A cargo command inside guest program `name`'s own project (its .cargo/config.toml applies: our
/// environment from `cargo run` must not replace its flags).
fn guest_cargo(name: &str) -> Command {
    let dir = repo_root().join("guests").join(name);
    let mut cmd = cargo();
    cmd.current_dir(&dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR");
    cmd
}

/// One step of the suite: runs it, times it, fails the suite on a non-zero status.
fn step(what: &str, cmd: &mut Command) -> Result<()> {
    let start = Instant::now();
    eprintln!("xtask: {what}");
    let code = status(cmd, what)?;
    if code != 0 {
        bail!("{what} failed (status {code})");
    }
    eprintln!("xtask: {what}: ok in {:.0?}", start.elapsed());
    Ok(())
}

/// Prints the Linux tests' retries (`duet_tests::check_with_sigsegv_retry`) and fails when more than
/// one test needed one.
fn report_retries(log: &Path) -> Result<()> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let retries: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    for r in &retries {
        eprintln!("xtask: RETRIED: {r}");
    }
    if retries.len() > 1 {
        bail!("{} tests needed a retry for the known PVM flake: more than one is not a flake (docs/platform.md)", retries.len());
    }
    Ok(())
}

fn test_suite(extra: &[String]) -> Result<i32> {
    let log = repo_root().join("target/test-retries.log");
    // A stale log from an earlier run must not count.
    let _ = std::fs::remove_file(&log);
    let mut cmd = cargo();
    cmd.current_dir(repo_root()).args(["test", "--workspace", "--release"]).args(extra);
    let code = status(&mut cmd, "cargo test")?;
    report_retries(&log)?;
    Ok(code)
}

/// Prepares the guest images and runs every check; with `extra` arguments only the test suite.
pub fn test(extra: &[String]) -> Result<i32> {
    let start = Instant::now();
    for p in images::images(false)? {
        eprintln!("xtask: image {}", p.display());
    }
    if !extra.is_empty() {
        return test_suite(extra);
    }
    crate::structure::check()?;
    let root = repo_root();
    let mut clippy = cargo();
    clippy.current_dir(&root).args(["clippy", "--workspace", "--all-targets", "--release", "--", "-D", "warnings"]);
    step("clippy (workspace)", &mut clippy)?;
    for g in GUESTS {
        let mut c = guest_cargo(g);
        c.args(["clippy", "--release", "--all-targets", "--", "-D", "warnings"]);
        step(&format!("clippy (guests/{g})"), &mut c)?;
    }
    for g in TESTED_GUESTS {
        step(&format!("unit tests (guests/{g})"), guest_cargo(g).args(["test", "--release"]))?;
    }
    step("benches build", cargo().current_dir(&root).args(["build", "--workspace", "--release", "--benches"]))?;
    let fuzz_start = Instant::now();
    crate::fuzz::fuzz(&["--seconds".to_string(), CI_FUZZ_SECONDS.to_string()])?;
    eprintln!("xtask: fuzz targets built and run in {:.0?}", fuzz_start.elapsed());
    let code = test_suite(&[])?;
    eprintln!("xtask: test: every step done in {:.0?} (test suite status {code})", start.elapsed());
    Ok(code)
}

fn pvm_host() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

/// Prepares the images and boots the demo VM with its console on this terminal.
///
/// On hardware KVM the demo boots Debian's cloud kernel (the default for users); on PVM hosts, where
/// that kernel needs well over 15 minutes to reach init, it boots duet's lean test kernel.
pub fn demo(extra: &[String]) -> Result<i32> {
    let cloud = !pvm_host();
    for p in images::images(cloud)? {
        eprintln!("xtask: image {}", p.display());
    }
    let config = if cloud { "examples/partitioned-cloud.toml" } else { "examples/demo.toml" };
    if !cloud {
        eprintln!("xtask: PVM host detected: booting duet's lean test kernel (see docs/platform.md)");
    }
    let mut build = cargo();
    build.current_dir(repo_root()).args(["build", "--release", "--quiet", "-p", "vmm", "--bin", "duet"]);
    if status(&mut build, "cargo build")? != 0 {
        bail!("building duet failed");
    }
    let mut run = Command::new(repo_root().join("target/release/duet"));
    run.current_dir(repo_root()).args(["run", config]).args(extra);
    status(&mut run, "duet run")
}
