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

#[cfg(test)]
mod tests {
    use super::super::{parse_str as p, Cmd};
    use super::*;

    #[test]
    fn forward_test_takes_a_test_a_mode_and_numbers() {
        let Ok(Cmd::Forward(a)) = p("forward-test") else { unreachable!() };
        assert_eq!((a.kind, a.mode, a.core, a.calls, a.spin_us), (ForwardKind::Getpid, None, 0, None, None));
        let Ok(Cmd::Forward(a)) = p("forward-test stress --mode adaptive --spin-us 2000 --calls 4000") else { unreachable!() };
        assert_eq!((a.kind, a.mode.as_deref(), a.calls, a.spin_us), (ForwardKind::Stress, Some("adaptive"), Some(4000), Some(2000)));
        for (name, kind) in [
            ("split", ForwardKind::Split),
            ("stress-lseek", ForwardKind::StressSyscall),
            ("corrupt", ForwardKind::Corrupt),
            ("latency", ForwardKind::Latency),
            ("split-bench", ForwardKind::SplitBench),
            ("scaling", ForwardKind::Scaling),
        ] {
            assert!(matches!(p(&format!("forward-test {name} --core 1")), Ok(Cmd::Forward(a)) if a.kind == kind && a.core == 1 && !a.io));
        }
        let Ok(Cmd::Forward(a)) = p("forward-test latency --io --calls 100") else { unreachable!() };
        assert!(a.io && a.calls == Some(100));
        for bad in [
            "forward-test bogus",
            "forward-test --mode spin",
            "forward-test --calls 0",
            "forward-test --spin-us 5000000000",
            "forward-test getpid split",
            "forward-test split --io",
            "forward-test latency --io=1",
        ] {
            assert!(matches!(p(bad), Err(Error::Usage(_))), "{bad}");
        }
    }
}
