//! `hvm forward-test`: which test, the mode and the counts.

use super::words::{parse_u64, split, Takes};
use crate::error::Error;

/// Which forwarding test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardKind {
    /// Forwarded getpid.
    Getpid,
    /// Split execution.
    Split,
    /// All cores at once, echo pseudo-calls.
    Stress,
    /// All cores at once, lseek.
    StressSyscall,
    /// Corruption from either side.
    Corrupt,
    /// Timed round trips (echo, getpid; with `--io` the I/O workloads too).
    Latency,
    /// Split execution timed: null round trips, write(), fresh-page touches; natively too.
    SplitBench,
    /// Echo throughput with 1..N cores forwarding.
    Scaling,
}

/// `hvm forward-test` arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardArgs {
    /// The test.
    pub kind: ForwardKind,
    /// `--mode`, else the configured one.
    pub mode: Option<String>,
    /// `--spin-us`.
    pub spin_us: Option<u32>,
    /// `--core` (getpid, split).
    pub core: u64,
    /// `--calls`.
    pub calls: Option<u64>,
    /// `--io` (latency: the I/O workloads too).
    pub io: bool,
}

/// `hvm forward-test` (its arguments, without the command).
pub fn parse_forward(rest: &[String]) -> Result<ForwardArgs, Error> {
    let cmd = "forward-test";
    let s = split(
        cmd,
        rest,
        &[("core", Takes::Value), ("mode", Takes::Value), ("spin-us", Takes::Value), ("calls", Takes::Value), ("io", Takes::No)],
    )?;
    let pos = s.positional(cmd, 0, 1)?;
    let kind = match pos.first().map(String::as_str) {
        None | Some("getpid") => ForwardKind::Getpid,
        Some("split") => ForwardKind::Split,
        Some("stress") => ForwardKind::Stress,
        Some("stress-lseek") => ForwardKind::StressSyscall,
        Some("corrupt") => ForwardKind::Corrupt,
        Some("latency") => ForwardKind::Latency,
        Some("split-bench") => ForwardKind::SplitBench,
        Some("scaling") => ForwardKind::Scaling,
        Some(other) => {
            return Err(Error::usage(format!(
                "{cmd}: unknown test {other:?} (getpid, split, stress, stress-lseek, corrupt, latency, split-bench, scaling)"
            )))
        }
    };
    let mode = s.value("mode").map(str::to_owned);
    if let Some(m) = &mode {
        if !matches!(m.as_str(), "poll" | "notify" | "adaptive") {
            return Err(Error::usage(format!("{cmd}: unknown mode {m:?} (poll, notify, adaptive)")));
        }
    }
    let spin_us = s
        .value("spin-us")
        .map(|v| parse_u64("--spin-us", v).and_then(|n| u32::try_from(n).map_err(|_| Error::usage("--spin-us: too large"))))
        .transpose()?;
    let calls = s.value("calls").map(|v| parse_u64("--calls", v)).transpose()?;
    if calls == Some(0) {
        return Err(Error::usage(format!("{cmd}: --calls must be at least 1")));
    }
    let core = s.value("core").map(|c| parse_u64("--core", c)).transpose()?.unwrap_or(0);
    let io = s.flag("io");
    if io && kind != ForwardKind::Latency {
        return Err(Error::usage(format!("{cmd}: --io is for latency")));
    }
    Ok(ForwardArgs { kind, mode, spin_us, core, calls, io })
}
