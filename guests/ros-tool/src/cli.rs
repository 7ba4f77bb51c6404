//! The command line: subcommands, options, numbers. Parsing happens before any port access, so usage
//! errors need no privileges.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::Error;

/// `hvm help`.
pub const USAGE: &str = "\
usage: hvm COMMAND [ARGS]    (numbers: decimal or 0x-hex; SECS may have a fraction)
  info                                   ABI version and the partition description
  vsock listen PORT | send CID PORT MSG  AF_VSOCK echo endpoints for tests (no hypercall)
  blkbench DEV [SEQ_MIB] [RAND_OPS]      O_DIRECT 1 MiB sequential and 4 KiB random reads (no hypercall)
  status                                 HRT state: state=NAME detail=N boots=N
  boot    [--wait [SECS]]                boot the HRT, wait until ready (default 30 s; 0 = no wait)
  reboot  [--wait [SECS]]                reboot the HRT from its image, wait until ready
  replace FILE [--wait [SECS]]           replace the HRT image with FILE, boot it, wait until ready
  invoke  [--core N | --all] [--async] [--notify] [--timeout SECS] FUNC [ARG]
                                         run HRT function FUNC(ARG); sync waits for the result (10 s)
  result  CORE                           the last finished invoke on CORE (INVOKE_RESULT)
  merge   [--core N | --all]             share this process's user half with the HRT core(s) (MERGE;
                                         useful only as a probe: the process exits right after)
  unmerge [--core N | --all]             give the HRT core(s) their own lower half back (UNMERGE)
  merge-test [--core N]                  MERGE, the HRT reads and flips a word of this process by its
                                         virtual address (functions 12, 13), a never-touched page is
                                         not mapped there, UNMERGE, an echo invoke
  forward-test [getpid|split|stress|stress-lseek|corrupt|latency|split-bench|scaling]
               [--mode poll|notify|adaptive] [--spin-us N] [--core N] [--calls N] [--io]
                                         be the proxy (channels, MERGE, attach) for a forwarding test:
                                         getpid: HRT function 14 forwards getpid N times (1000);
                                         split: ROS functions run on the HRT (write, files, a 1 MiB
                                         read, page-fault forwarding); stress: every HRT core
                                         forwards echo pseudo-calls (stress-lseek: lseek), N calls
                                         in all (poll 1000000, else 20000);
                                         corrupt: each side corrupts the ring, the other detects it;
                                         latency: N timed echo and getpid round trips (1000),
                                         with --io also pread/pwrite on tmpfs and read/write on a
                                         pipe of 1 B, 4 KiB, 64 KiB;
                                         split-bench: N null split round trips (at most 1000),
                                         writes and fresh-page touches from a split function,
                                         and the same natively; scaling: N echo calls per core
                                         with 1..all HRT cores at once.
                                         Every timed phase is bracketed by debug-port marks.
                                         Mode: the VM's config unless --mode
  events                                 take every pending event
  post    EVENT [PAYLOAD]                post an event to the HRT
  exit    STATUS                         end the VM with STATUS
  raw     OP [RBX RCX RDX RSI RDI]       one hypercall with any register values (a probe; exit 0)
  flood   N                              N VERSION hypercalls
  probe-mem BASE LEN [--stride N]        map /dev/mem at BASE (page-aligned), read every N-th byte's
                                         u64 (default 8: all), write a pattern there, read again;
                                         counts what was not all ones (the HRT's memory must read so)
  bench   null|exit|getpid|invoke|pingpong|invoke-poll|hrt-null|invoke-async|reboot|doorbell|io
          [--core N] [--iters N] [--warmup N]
                                         latency: VERSION, a plain port exit, a native getpid, a sync echo invoke,
                                         a ping-pong with HRT function 8 through shared memory,
                                         an echo through HRT function 11's polled channel (no exit),
                                         VERSION from the HRT's ring 0 (function 10), an echo
                                         invoke polled with INVOKE_RESULT, HRT_REBOOT until ready,
                                         a ping-pong with HRT function 23, which sleeps until its
                                         doorbell rings, the I/O workloads of forward-test latency
                                         --io natively (reboot: 20 iterations, 1 warm-up by default; hrt-null:
                                         --warmup counts samples, one invoke's worth by default)
  help                                   this text
Needs root (ioperm of ports 0xe4-0xeb and 0xf8-0xfb, mlockall); bench pingpong, invoke-poll and hrt-null read
/proc/self/pagemap.";

/// Default `--wait` of boot, reboot, replace.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// Default `--timeout` of a sync invoke.
pub const DEFAULT_INVOKE_TIMEOUT: Duration = Duration::from_secs(10);
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

/// A lifecycle request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// HRT_BOOT.
    Boot,
    /// HRT_REBOOT.
    Reboot,
    /// HRT_REPLACE with this file.
    Replace(PathBuf),
}

/// Which HRT core(s) an invoke targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One core index.
    Core(u64),
    /// Every core.
    All,
}

/// `hvm invoke`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeArgs {
    /// Core(s).
    pub target: Target,
    /// Do not wait (RDI = 0).
    pub asynchronous: bool,
    /// Ask for INVOKE_DONE.
    pub notify: bool,
    /// How long a sync invoke waits.
    pub timeout: Duration,
    /// The function.
    pub func: u64,
    /// Its argument.
    pub arg: u64,
}

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

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cmd {
    /// `hvm help`.
    Help,
    /// `hvm info`.
    Info,
    /// `hvm status`.
    Status,
    /// `hvm boot|reboot|replace`.
    Lifecycle {
        /// What to ask for.
        request: Request,
        /// How long to wait for Ready (zero: do not wait).
        wait: Duration,
    },
    /// `hvm invoke`.
    Invoke(InvokeArgs),
    /// `hvm result CORE`.
    Result {
        /// The core.
        core: u64,
    },
    /// `hvm events`.
    Events,
    /// `hvm post`.
    Post {
        /// Event number.
        event: u64,
        /// Payload.
        payload: u64,
    },
    /// `hvm exit`.
    Exit {
        /// VM exit status.
        status: u64,
    },
    /// `hvm raw`.
    Raw {
        /// RAX (all 64 bits).
        rax: u64,
        /// RBX, RCX, RDX, RSI, RDI.
        args: [u64; 5],
    },
    /// `hvm flood N`.
    Flood {
        /// Hypercalls to make.
        n: u64,
    },
    /// `hvm probe-mem BASE LEN [--stride N]`.
    ProbeMem {
        /// First byte (page-aligned, guest-physical).
        base: u64,
        /// Length in bytes.
        len: u64,
        /// Bytes between probed words (a multiple of 8).
        stride: u64,
    },
    /// `hvm bench`.
    Bench(BenchArgs),
    /// `hvm merge` (`merge` true) or `hvm unmerge`.
    Merge {
        /// MERGE or UNMERGE.
        merge: bool,
        /// Core(s).
        target: Target,
    },
    /// `hvm merge-test [--core N]`.
    MergeTest {
        /// The HRT core.
        core: u64,
    },
    /// `hvm forward-test ...`.
    Forward(ForwardArgs),
}

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

/// Whether an option takes a value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Takes {
    /// A flag.
    No,
    /// `--name VALUE` or `--name=VALUE`.
    Value,
    /// Like [`Takes::Value`], but the next argument is taken only if it is a number (`--wait` alone
    /// means the default).
    Number,
}

/// Options and positional arguments of one subcommand.
struct Split {
    opts: Vec<(&'static str, Option<String>)>,
    pos: Vec<String>,
}

impl Split {
    /// The last value given for option `name`, if any.
    fn value(&self, name: &str) -> Option<&str> {
        self.opts.iter().rev().find(|(n, _)| *n == name).and_then(|(_, v)| v.as_deref())
    }

    /// Whether flag `name` was given.
    fn flag(&self, name: &str) -> bool {
        self.opts.iter().any(|(n, _)| *n == name)
    }

    /// Checks the number of positional arguments.
    fn positional(&self, cmd: &str, min: usize, max: usize) -> Result<&[String], Error> {
        if self.pos.len() < min || self.pos.len() > max {
            let want = if min == max { format!("{min}") } else { format!("{min} to {max}") };
            return Err(Error::usage(format!("{cmd}: expected {want} argument(s), got {}", self.pos.len())));
        }
        Ok(&self.pos)
    }
}

/// Splits `args` into options (from `spec`) and positional arguments. `--` ends the options; a
/// lone `-1` is positional (negative numbers for `raw`).
fn split(cmd: &str, args: &[String], spec: &[(&'static str, Takes)]) -> Result<Split, Error> {
    let mut s = Split { opts: Vec::new(), pos: Vec::new() };
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        if a == "--" {
            s.pos.extend(it.cloned());
            break;
        }
        let Some(body) = a.strip_prefix("--") else {
            s.pos.push(a.clone());
            continue;
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        let Some(&(known, takes)) = spec.iter().find(|(n, _)| *n == name) else {
            return Err(Error::usage(format!("{cmd}: unknown option --{name}")));
        };
        let value = match (takes, inline) {
            (Takes::Value | Takes::Number, Some(v)) => Some(v),
            (Takes::Value, None) => match it.next() {
                Some(v) => Some(v.clone()),
                None => return Err(Error::usage(format!("{cmd}: --{name} needs a value"))),
            },
            (Takes::Number, None) => it.next_if(|v| v.trim().parse::<f64>().is_ok()).cloned(),
            (Takes::No, Some(_)) => return Err(Error::usage(format!("{cmd}: --{name} takes no value"))),
            (Takes::No, None) => None,
        };
        s.opts.push((known, value));
    }
    Ok(s)
}

/// Parses a number: decimal or `0x` hex, `_` allowed as a separator.
pub fn parse_u64(what: &str, s: &str) -> Result<u64, Error> {
    let t: String = s.trim().chars().filter(|c| *c != '_').collect();
    let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => t.parse::<u64>(),
    };
    parsed.map_err(|_| Error::usage(format!("{what}: not a number: {s:?}")))
}

/// Like [`parse_u64`], also taking `-N` (two's complement), for `raw`.
fn parse_raw(what: &str, s: &str) -> Result<u64, Error> {
    match s.trim().strip_prefix('-') {
        Some(rest) => Ok(parse_u64(what, rest)?.wrapping_neg()),
        None => parse_u64(what, s),
    }
}

/// Parses seconds (`2`, `0.5`) into a duration; at most a day.
pub fn parse_secs(what: &str, s: &str) -> Result<Duration, Error> {
    let bad = || Error::usage(format!("{what}: not a number of seconds (0 to 86400): {s:?}"));
    let secs: f64 = s.trim().parse().map_err(|_| bad())?;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(bad());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

/// Parses a count for a bench (1 ..= [`MAX_ITERS`]; 0 allowed for `--warmup`).
fn parse_count(what: &str, s: &str, min: usize) -> Result<usize, Error> {
    let n = parse_u64(what, s)?;
    match usize::try_from(n) {
        Ok(n) if (min..=MAX_ITERS).contains(&n) => Ok(n),
        _ => Err(Error::usage(format!("{what}: must be {min} to {MAX_ITERS}, got {s}"))),
    }
}

/// The positional argument at `i`, or a usage error (never an out-of-bounds panic).
fn arg<'a>(pos: &'a [String], i: usize, cmd: &str) -> Result<&'a str, Error> {
    pos.get(i).map(String::as_str).ok_or_else(|| Error::usage(format!("{cmd}: missing argument")))
}

/// Parses the whole command line (without the program name).
pub fn parse(args: &[String]) -> Result<Cmd, Error> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(Error::usage(""));
    };
    let cmd = cmd.as_str();
    match cmd {
        "help" | "--help" | "-h" => Ok(Cmd::Help),
        "info" | "status" | "events" => {
            split(cmd, rest, &[])?.positional(cmd, 0, 0)?;
            Ok(match cmd {
                "info" => Cmd::Info,
                "status" => Cmd::Status,
                _ => Cmd::Events,
            })
        }
        "boot" | "reboot" | "replace" => {
            let s = split(cmd, rest, &[("wait", Takes::Number)])?;
            let wait = s.value("wait").map(|v| parse_secs("--wait", v)).transpose()?.unwrap_or(DEFAULT_WAIT);
            let request = match cmd {
                "boot" => {
                    s.positional(cmd, 0, 0)?;
                    Request::Boot
                }
                "reboot" => {
                    s.positional(cmd, 0, 0)?;
                    Request::Reboot
                }
                _ => Request::Replace(PathBuf::from(arg(s.positional(cmd, 1, 1)?, 0, cmd)?)),
            };
            Ok(Cmd::Lifecycle { request, wait })
        }
        "invoke" => parse_invoke(rest),
        "result" => {
            let s = split(cmd, rest, &[])?;
            let pos = s.positional(cmd, 1, 1)?;
            Ok(Cmd::Result { core: parse_u64("CORE", arg(pos, 0, cmd)?)? })
        }
        "post" => {
            let s = split(cmd, rest, &[])?;
            let pos = s.positional(cmd, 1, 2)?;
            let event = parse_u64("EVENT", arg(pos, 0, cmd)?)?;
            let payload = pos.get(1).map(|p| parse_u64("PAYLOAD", p)).transpose()?.unwrap_or(0);
            Ok(Cmd::Post { event, payload })
        }
        "exit" => {
            let s = split(cmd, rest, &[])?;
            let pos = s.positional(cmd, 1, 1)?;
            Ok(Cmd::Exit { status: parse_u64("STATUS", arg(pos, 0, cmd)?)? })
        }
        "raw" => {
            // Everything is positional here, so that any value (even `--x`) can be probed after `--`.
            let s = split(cmd, rest, &[])?;
            let pos = s.positional(cmd, 1, 6)?;
            let rax = parse_raw("OP", arg(pos, 0, cmd)?)?;
            let mut regs = [0u64; 5];
            for (r, (name, v)) in
                regs.iter_mut().zip(["RBX", "RCX", "RDX", "RSI", "RDI"].iter().zip(pos.iter().skip(1)))
            {
                *r = parse_raw(name, v)?;
            }
            Ok(Cmd::Raw { rax, args: regs })
        }
        "flood" => {
            let s = split(cmd, rest, &[])?;
            let pos = s.positional(cmd, 1, 1)?;
            Ok(Cmd::Flood { n: parse_u64("N", arg(pos, 0, cmd)?)? })
        }
        "probe-mem" => {
            let s = split(cmd, rest, &[("stride", Takes::Value)])?;
            let pos = s.positional(cmd, 2, 2)?;
            let base = parse_u64("BASE", arg(pos, 0, cmd)?)?;
            let len = parse_u64("LEN", arg(pos, 1, cmd)?)?;
            let stride = s.value("stride").map(|v| parse_u64("--stride", v)).transpose()?.unwrap_or(8);
            if base % 4096 != 0 || len == 0 || len > 1 << 30 || stride == 0 || stride % 8 != 0 {
                return Err(Error::usage("probe-mem: BASE page-aligned, LEN 1 B..1 GiB, --stride a multiple of 8"));
            }
            Ok(Cmd::ProbeMem { base, len, stride })
        }
        "bench" => parse_bench(rest),
        "merge" | "unmerge" => {
            let s = split(cmd, rest, &[("core", Takes::Value), ("all", Takes::No)])?;
            s.positional(cmd, 0, 0)?;
            Ok(Cmd::Merge { merge: cmd == "merge", target: target(cmd, &s)? })
        }
        "merge-test" => {
            let s = split(cmd, rest, &[("core", Takes::Value)])?;
            s.positional(cmd, 0, 0)?;
            Ok(Cmd::MergeTest { core: s.value("core").map(|c| parse_u64("--core", c)).transpose()?.unwrap_or(0) })
        }
        "forward-test" => parse_forward(rest),
        other => Err(Error::usage(format!("unknown command {other:?}"))),
    }
}

fn parse_forward(rest: &[String]) -> Result<Cmd, Error> {
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
    Ok(Cmd::Forward(ForwardArgs { kind, mode, spin_us, core, calls, io }))
}

/// `--core N` or `--all` (default core 0).
fn target(cmd: &str, s: &Split) -> Result<Target, Error> {
    Ok(match (s.value("core"), s.flag("all")) {
        (Some(_), true) => return Err(Error::usage(format!("{cmd}: --core and --all exclude each other"))),
        (Some(c), false) => Target::Core(parse_u64("--core", c)?),
        (None, true) => Target::All,
        (None, false) => Target::Core(0),
    })
}

fn parse_invoke(rest: &[String]) -> Result<Cmd, Error> {
    let cmd = "invoke";
    let s = split(
        cmd,
        rest,
        &[
            ("core", Takes::Value),
            ("all", Takes::No),
            ("async", Takes::No),
            ("notify", Takes::No),
            ("timeout", Takes::Value),
        ],
    )?;
    let pos = s.positional(cmd, 1, 2)?;
    let target = target(cmd, &s)?;
    let timeout = s.value("timeout").map(|v| parse_secs("--timeout", v)).transpose()?.unwrap_or(DEFAULT_INVOKE_TIMEOUT);
    Ok(Cmd::Invoke(InvokeArgs {
        target,
        asynchronous: s.flag("async"),
        notify: s.flag("notify"),
        timeout,
        func: parse_u64("FUNC", arg(pos, 0, cmd)?)?,
        arg: pos.get(1).map(|a| parse_u64("ARG", a)).transpose()?.unwrap_or(0),
    }))
}

fn parse_bench(rest: &[String]) -> Result<Cmd, Error> {
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
    Ok(Cmd::Bench(BenchArgs {
        kind,
        core: s.value("core").map(|c| parse_u64("--core", c)).transpose()?.unwrap_or(0),
        iters,
        warmup: s.value("warmup").map(|v| parse_count("--warmup", v, 0)).transpose()?.unwrap_or(kind.default_warmup(iters)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Cmd, Error> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&args)
    }

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

    #[test]
    fn numbers_take_decimal_hex_and_separators() {
        assert_eq!(parse_u64("x", "42").ok(), Some(42));
        assert_eq!(parse_u64("x", "0x2A").ok(), Some(42));
        assert_eq!(parse_u64("x", "0xffff_ffff_ffff_ffff").ok(), Some(u64::MAX));
        for bad in ["", "0x", "-1", "1.5", "0x1g", "18446744073709551616", "abc"] {
            assert!(parse_u64("x", bad).is_err(), "{bad}");
        }
        assert_eq!(parse_raw("x", "-1").ok(), Some(u64::MAX));
        assert_eq!(parse_raw("x", "-0x3").ok(), Some(3u64.wrapping_neg()));
    }

    #[test]
    fn seconds_reject_nonsense() {
        assert_eq!(parse_secs("s", "0.5").ok(), Some(Duration::from_millis(500)));
        for bad in ["-1", "nan", "inf", "1e300", "x", ""] {
            assert!(parse_secs("s", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn commands_parse() {
        assert!(matches!(p(""), Err(Error::Usage(_))));
        assert_eq!(p("info").ok(), Some(Cmd::Info));
        assert!(matches!(p("info x"), Err(Error::Usage(_))));
        assert_eq!(p("boot").ok(), Some(Cmd::Lifecycle { request: Request::Boot, wait: DEFAULT_WAIT }));
        assert_eq!(
            p("replace --wait=0 img").ok(),
            Some(Cmd::Lifecycle { request: Request::Replace("img".into()), wait: Duration::ZERO })
        );
        assert!(matches!(p("replace"), Err(Error::Usage(_))));
        assert_eq!(p("reboot --wait").ok(), Some(Cmd::Lifecycle { request: Request::Reboot, wait: DEFAULT_WAIT }));
        assert_eq!(
            p("replace --wait img").ok(),
            Some(Cmd::Lifecycle { request: Request::Replace("img".into()), wait: DEFAULT_WAIT })
        );
        assert_eq!(
            p("boot --wait 2.5").ok(),
            Some(Cmd::Lifecycle { request: Request::Boot, wait: Duration::from_millis(2500) })
        );
        assert!(matches!(p("boot --wait=x"), Err(Error::Usage(_))));
        assert!(matches!(p("invoke --timeout"), Err(Error::Usage(_))));
        assert!(matches!(p("boot --bogus"), Err(Error::Usage(_))));
        let Ok(Cmd::Invoke(i)) = p("invoke --all --async --notify 0x8 7") else { unreachable!() };
        assert_eq!((i.target, i.asynchronous, i.notify, i.func, i.arg), (Target::All, true, true, 8, 7));
        let Ok(Cmd::Invoke(i)) = p("invoke 1 --core 1 --timeout 2") else { unreachable!() };
        assert_eq!((i.target, i.timeout, i.func, i.arg), (Target::Core(1), Duration::from_secs(2), 1, 0));
        assert!(matches!(p("invoke --core 1 --all 0"), Err(Error::Usage(_))));
        assert!(matches!(p("invoke"), Err(Error::Usage(_))));
        assert_eq!(p("raw -1 0x10").ok(), Some(Cmd::Raw { rax: u64::MAX, args: [0x10, 0, 0, 0, 0] }));
        assert!(matches!(p("raw 1 2 3 4 5 6 7"), Err(Error::Usage(_))));
        assert_eq!(p("post 5").ok(), Some(Cmd::Post { event: 5, payload: 0 }));
        let Ok(Cmd::Bench(b)) = p("bench pingpong --core 1 --iters 100 --warmup 0") else { unreachable!() };
        assert_eq!((b.kind, b.core, b.iters, b.warmup), (BenchKind::PingPong, 1, 100, 0));
        assert!(matches!(p("bench null --iters 0"), Err(Error::Usage(_))));
        let Ok(Cmd::Bench(b)) = p("bench null") else { unreachable!() };
        assert_eq!((b.iters, b.warmup), (DEFAULT_ITERS, DEFAULT_WARMUP));
        let Ok(Cmd::Bench(b)) = p("bench reboot") else { unreachable!() };
        assert_eq!((b.kind, b.iters, b.warmup), (BenchKind::Reboot, 20, 1));
        let Ok(Cmd::Bench(b)) = p("bench reboot --iters 5 --warmup 0") else { unreachable!() };
        assert_eq!((b.iters, b.warmup), (5, 0));
        let Ok(Cmd::Bench(b)) = p("bench hrt-null --core 1 --iters 2000") else { unreachable!() };
        assert_eq!((b.kind, b.core, b.iters, b.warmup), (BenchKind::HrtNull, 1, 2000, 511));
        let Ok(Cmd::Bench(b)) = p("bench hrt-null --iters 100") else { unreachable!() };
        assert_eq!(b.warmup, 100);
        let Ok(Cmd::Bench(b)) = p("bench invoke-async --iters 7") else { unreachable!() };
        assert_eq!((b.kind, b.kind.name(), b.iters, b.warmup), (BenchKind::InvokeAsync, "invoke-async", 7, DEFAULT_WARMUP));
        let Ok(Cmd::Bench(b)) = p("bench invoke-poll --core 1 --iters 5000 --warmup 10") else { unreachable!() };
        assert_eq!((b.kind, b.kind.name(), b.core, b.iters, b.warmup), (BenchKind::InvokePoll, "invoke-poll", 1, 5000, 10));
        for (name, kind) in [("doorbell", BenchKind::Doorbell), ("io", BenchKind::Io)] {
            let Ok(Cmd::Bench(b)) = p(&format!("bench {name} --iters 200")) else { unreachable!() };
            assert_eq!((b.kind, b.kind.name(), b.iters), (kind, name, 200));
        }
        assert!(matches!(p("bench warp"), Err(Error::Usage(_))));
        assert_eq!(p("merge").ok(), Some(Cmd::Merge { merge: true, target: Target::Core(0) }));
        assert_eq!(p("merge --all").ok(), Some(Cmd::Merge { merge: true, target: Target::All }));
        assert_eq!(p("unmerge --core 1").ok(), Some(Cmd::Merge { merge: false, target: Target::Core(1) }));
        assert!(matches!(p("merge --core 1 --all"), Err(Error::Usage(_))));
        assert!(matches!(p("unmerge 3"), Err(Error::Usage(_))));
        assert_eq!(p("merge-test --core 1").ok(), Some(Cmd::MergeTest { core: 1 }));
        assert_eq!(p("merge-test").ok(), Some(Cmd::MergeTest { core: 0 }));
        assert!(matches!(p("merge-test --all"), Err(Error::Usage(_))));
        assert!(matches!(p("forward-test 3"), Err(Error::Usage(_))));
        assert!(matches!(p("frobnicate"), Err(Error::Usage(_))));
    }
}
