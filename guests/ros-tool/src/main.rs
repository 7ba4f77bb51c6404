//! `hvm`: drives duet's hypercall ABI (abi, docs/hypercalls.md) from the Linux guest (the
//! ROS) of a partitioned VM. It lives in the guest's initramfs as `/bin/hvm`.
//!
//! Every subcommand prints stable `key=value` lines that tests grep. Exit status: 0 success, 1 a
//! failure (a hypercall error, a timeout, no duet VMM), 2 a usage error. Bad input never panics.
//!
//! Before any hypercall `hvm` takes port access with `ioperm(0xe4, 4, 1)` (the hypercall is a 4-byte
//! `out 0xe4, eax`, which needs all four ports; root, and a kernel with `CONFIG_X86_IOPL_IOPERM`) and
//! locks its memory with `mlockall`, so that buffers and completion records the VMM reads or writes
//! stay resident. Then (except for `hvm raw` and `hvm bench exit`, which work in any VM) it checks
//! with `VERSION` that a duet VMM answers on the port.

/// Writes one line to stdout, ignoring write errors (a closed stdout must not panic).
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

mod bench;
mod blkbench;
mod cli;
mod completion;
mod error;
mod events;
mod forward;
mod forward_error;
mod fwdbench;
mod hcall;
mod hcall_probes;
mod info;
mod invoke;
mod lifecycle;
mod merge;
mod phase;
mod probe_mem;
mod proxy;
mod split;
mod sys;
mod tsc;
mod vsock;

use cli::Cmd;
use error::Error;

fn main() {
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let code = match run(&args) {
        Ok(()) => 0,
        Err(Error::Usage(msg)) => {
            if msg.is_empty() {
                eprintln_quiet(cli::USAGE);
            } else {
                eprintln_quiet(&format!("hvm: {msg}\nhvm: usage: `hvm help`"));
            }
            2
        }
        Err(Error::Failed(msg)) => {
            eprintln_quiet(&format!("hvm: {msg}"));
            1
        }
    };
    std::process::exit(code);
}

/// Writes a line to stderr, ignoring errors.
fn eprintln_quiet(msg: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

fn run(args: &[String]) -> Result<(), Error> {
    // Device tools that need no hypercall (and no duet VMM).
    match args.first().map(String::as_str) {
        Some("vsock") => return vsock::run(&args[1..]),
        Some("blkbench") => return blkbench::run(&args[1..]),
        _ => {}
    }
    let cmd = cli::parse(args)?;
    if let Cmd::Help = cmd {
        out!("{}", cli::USAGE);
        return Ok(());
    }
    if let Cmd::ProbeMem { base, len, stride } = cmd {
        // No hypercall: this is what any root process could do.
        return probe_mem::probe_mem(base, len, stride);
    }
    let bench_exit = matches!(&cmd, Cmd::Bench(b) if b.kind == cli::BenchKind::Exit);
    let port = hcall::Port::open(bench_exit)?;
    // Neither needs a duet VMM: `raw` is a probe, `bench exit` the baseline of any VM.
    match &cmd {
        Cmd::Raw { rax, args } => {
            hcall_probes::raw(&port, *rax, *args);
            return Ok(());
        }
        Cmd::Bench(b) if bench_exit => return bench::run(&port, b),
        _ => {}
    }
    let version = port.probe()?;
    match cmd {
        Cmd::Help | Cmd::Raw { .. } | Cmd::ProbeMem { .. } => Ok(()),
        Cmd::Info => info::info(&port, &version),
        Cmd::Status => info::status(&port),
        Cmd::Lifecycle { request, wait } => lifecycle::run(&port, &request, wait),
        Cmd::Invoke(a) => invoke::invoke(&port, &version, &a),
        Cmd::Result { core } => invoke::result(&port, core),
        Cmd::Events => events::events(&port),
        Cmd::Post { event, payload } => events::post(&port, event, payload),
        Cmd::Exit { status } => lifecycle::exit(&port, status),
        Cmd::Flood { n } => hcall_probes::flood(&port, n),
        Cmd::Bench(b) => bench::run(&port, &b),
        Cmd::Merge { merge, target } => merge::run(&port, &version, merge, target),
        Cmd::MergeTest { core } => merge::test(&port, core),
        Cmd::Forward(a) => forward::run(&port, &version, &a),
    }
}
