//! `cargo xtask test` and `cargo xtask demo`: the README's two commands.

use std::process::Command;

use crate::images;
use crate::util::{bail, repo_root, Result};

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn status(cmd: &mut Command, what: &str) -> Result<i32> {
    match cmd.status() {
        Ok(s) => Ok(s.code().unwrap_or(1)),
        Err(e) => bail!("{what}: cannot start: {e}"),
    }
}

/// Prepares the guest images, then runs the whole workspace test suite (extra args go to cargo test).
pub fn test(extra: &[String]) -> Result<i32> {
    for p in images::images(false)? {
        eprintln!("xtask: image {}", p.display());
    }
    let mut cmd = cargo();
    cmd.current_dir(repo_root()).args(["test", "--workspace", "--release"]).args(extra);
    status(&mut cmd, "cargo test")
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
