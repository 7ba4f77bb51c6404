//! `hvm bench`: which bench, its counts and their defaults.

use super::words::{arg, parse_u64, split, Takes};
use crate::error::Error;

/// Default `--iters` of a bench (but `reboot`).
pub const DEFAULT_ITERS: usize = 10_000;
/// Default `--warmup` of a bench (but `reboot` and `hrt-null`).
pub const DEFAULT_WARMUP: usize = 1_000;
/// Default `--iters` of `bench reboot`.
pub const DEFAULT_REBOOT_ITERS: usize = 20;
/// Default `--warmup` of `bench reboot`.
pub const DEFAULT_REBOOT_WARMUP: usize = 1;
/// Most samples one invoke of HRT function 10 (`bench hrt-null`) takes.
pub const HRT_NULL_PER_INVOKE: usize = 511;
/// Most `--iters` (or `--warmup`) a bench takes; the samples are kept in locked memory.
pub const MAX_ITERS: usize = 1_000_000;

/// Which bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchKind {
    /// VERSION round trip.
    Null,
    /// A write to an unclaimed port.
    Exit,
    /// A native ROS getpid (the forwarding baseline).
    Getpid,
    /// A sync invoke of func 0.
    Invoke,
    /// Rounds with HRT function 8.
    PingPong,
    /// Echo requests through HRT function 11's polled channel.
    InvokePoll,
    /// VERSION from the HRT's ring 0, timed there (HRT function 10).
    HrtNull,
    /// An echo invoke without a completion record, polled with INVOKE_RESULT.
    InvokeAsync,
    /// HRT_REBOOT, then HRT_STATUS until ready.
    Reboot,
    /// Ping-pong with HRT function 23, which sleeps until its doorbell rings.
    Doorbell,
    /// Native pread/pwrite on tmpfs and read/write on a pipe, 1 B, 4 KiB, 64 KiB.
    Io,
}

impl BenchKind {
    /// The name in the output.
    pub fn name(self) -> &'static str {
        match self {
            BenchKind::Null => "null",
            BenchKind::Exit => "exit",
            BenchKind::Getpid => "getpid",
            BenchKind::Invoke => "invoke",
            BenchKind::PingPong => "pingpong",
            BenchKind::InvokePoll => "invoke-poll",
            BenchKind::HrtNull => "hrt-null",
            BenchKind::InvokeAsync => "invoke-async",
            BenchKind::Reboot => "reboot",
            BenchKind::Doorbell => "doorbell",
            BenchKind::Io => "io",
        }
    }

    /// `--iters` when not given.
    pub fn default_iters(self) -> usize {
        match self {
            BenchKind::Reboot => DEFAULT_REBOOT_ITERS,
            _ => DEFAULT_ITERS,
        }
    }

    /// `--warmup` when not given (`hrt-null`: samples, those of one invoke).
    pub fn default_warmup(self, iters: usize) -> usize {
        match self {
            BenchKind::Reboot => DEFAULT_REBOOT_WARMUP,
            BenchKind::HrtNull => iters.min(HRT_NULL_PER_INVOKE),
            _ => DEFAULT_WARMUP,
        }
    }
}

/// `hvm bench`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchArgs {
    /// Which bench.
    pub kind: BenchKind,
    /// HRT core (invoke, pingpong, invoke-poll, hrt-null, invoke-async).
    pub core: u64,
    /// Timed rounds (hrt-null: samples).
    pub iters: usize,
    /// Untimed rounds first (hrt-null: samples, taken by invokes of their own).
    pub warmup: usize,
}

/// Parses a count for a bench (1 ..= [`MAX_ITERS`]; 0 allowed for `--warmup`).
fn parse_count(what: &str, s: &str, min: usize) -> Result<usize, Error> {
    let n = parse_u64(what, s)?;
    match usize::try_from(n) {
        Ok(n) if (min..=MAX_ITERS).contains(&n) => Ok(n),
        _ => Err(Error::usage(format!("{what}: must be {min} to {MAX_ITERS}, got {s}"))),
    }
}

/// `hvm bench` (its arguments, without the command).
pub fn parse_bench(rest: &[String]) -> Result<BenchArgs, Error> {
    let cmd = "bench";
    let s = split(cmd, rest, &[("core", Takes::Value), ("iters", Takes::Value), ("warmup", Takes::Value)])?;
    let pos = s.positional(cmd, 1, 1)?;
    let kind = match arg(pos, 0, cmd)? {
        "null" => BenchKind::Null,
        "exit" => BenchKind::Exit,
        "getpid" => BenchKind::Getpid,
        "invoke" => BenchKind::Invoke,
        "pingpong" => BenchKind::PingPong,
        "invoke-poll" => BenchKind::InvokePoll,
        "hrt-null" => BenchKind::HrtNull,
        "invoke-async" => BenchKind::InvokeAsync,
        "reboot" => BenchKind::Reboot,
        "doorbell" => BenchKind::Doorbell,
        "io" => BenchKind::Io,
        other => {
            return Err(Error::usage(format!(
                "bench: unknown bench {other:?} (null, exit, getpid, invoke, pingpong, invoke-poll, hrt-null, invoke-async, reboot, doorbell, io)"
            )))
        }
    };
    let iters = s.value("iters").map(|v| parse_count("--iters", v, 1)).transpose()?.unwrap_or(kind.default_iters());
    Ok(BenchArgs {
        kind,
        core: s.value("core").map(|c| parse_u64("--core", c)).transpose()?.unwrap_or(0),
        iters,
        warmup: s.value("warmup").map(|v| parse_count("--warmup", v, 0)).transpose()?.unwrap_or(kind.default_warmup(iters)),
    })
}
