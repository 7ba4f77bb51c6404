//! The command line: subcommands, options, numbers. Parsing happens before any port access, so usage
//! errors need no privileges. One file per command family with options of its own (invoke, bench,
//! forward-test); the words every parser shares (options, numbers, seconds) in `words`.

mod bench;
mod forward;
mod invoke;
mod usage;
mod words;

use std::path::PathBuf;
use std::time::Duration;

pub use bench::{BenchArgs, BenchKind, HRT_NULL_PER_INVOKE};
use bench::parse_bench;
pub use forward::{ForwardArgs, ForwardKind};
use forward::parse_forward;
pub use invoke::{InvokeArgs, Target, DEFAULT_INVOKE_TIMEOUT};
use invoke::{parse_invoke, target};
pub use usage::USAGE;
use words::{arg, parse_raw, parse_secs, parse_u64, split, Takes};

use crate::error::Error;

/// Default `--wait` of boot, reboot, replace.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);

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
        "invoke" => parse_invoke(rest).map(Cmd::Invoke),
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
        "bench" => parse_bench(rest).map(Cmd::Bench),
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
        "forward-test" => parse_forward(rest).map(Cmd::Forward),
        other => Err(Error::usage(format!("unknown command {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::bench::{DEFAULT_ITERS, DEFAULT_WARMUP};
    use super::*;

    fn p(line: &str) -> Result<Cmd, Error> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&args)
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
