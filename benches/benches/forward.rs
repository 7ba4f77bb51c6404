//! The forwarding microbenchmark suite, inside one partitioned VM (a Linux ROS with 1 vCPU beside
//! duet's HRT with `DUET_FWD_HRT_CORES` cores, default 2), with every baseline from the same run:
//! - baselines in the ROS: native `getpid`; native `pread`/`pwrite` on tmpfs and `read`/`write` on
//!   a pipe of 1 B, 4 KiB, 64 KiB; a user-space VM exit; a cache-line ping-pong ROS ↔ HRT core;
//!   the HRT doorbell (ioeventfd → irqfd) round trip; HRT invokes from the ROS (hypercall, and
//!   the polled channel);
//! - forwarded from an HRT core in each mode (poll, adaptive, notify): the echo pseudo-call (the
//!   channel and the proxy alone), `getpid` and the same I/O calls, timed on the HRT;
//! - split execution (poll and notify): a null split round trip, `write()` from a ROS function on
//!   the HRT, first touches of fresh pages there (page-fault forwarding), and the same functions
//!   natively;
//! - throughput with 1..N HRT cores forwarding echo at once (poll).
//!
//! Every phase is bracketed by debug-port marks, at which duet samples each vCPU's KVM statistics:
//! the VM exits (and, on PVM, the emulated ring-0 instructions) per call are measured, per
//! partition.
//!
//! `cargo bench -p duet-benches --bench forward` (needs `cargo xtask images`). `DUET_FWD_CALLS`
//! (default 2000) sets the samples per poll/adaptive latency, a tenth of it (at least 50) for
//! notify, and the native I/O baselines'; `DUET_FWD_ITERS` (default 10000) the other baselines'; `DUET_FWD_STRESS` (default 20000) the
//! echo calls per core of the scaling runs. Prints tables and the targets of docs/benchmarks.md,
//! writes `target/bench/forward.json` (duet-bench/1, raw samples kept), `forward.svg` (latency
//! CDFs of echo, getpid and split execution per mode) and `forward-io.svg` (4 KiB I/O).

use std::collections::HashMap;
use std::time::Duration;

use duet_benches::report::{self, svg, BenchResult, Environment, KvmPerCall, Report, Summary};
use duet_benches::repo_root;

fn fail(msg: &str) -> ! {
    eprintln!("forward bench: {msg}");
    std::process::exit(1)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Baselines measured by `hvm bench` as summaries, with what they are.
const BASELINES: [(&str, &str); 6] = [
    ("getpid", "baseline: native getpid in a ROS process"),
    ("exit", "baseline: user-space VM exit round trip (ROS process, `out` to an unclaimed port)"),
    ("pingpong", "baseline: cache-line ping-pong round trip, ROS core ↔ HRT core"),
    ("doorbell", "baseline: HRT doorbell round trip (ROS `out` → ioeventfd → irqfd wakes the halted HRT core → answer in shared memory)"),
    ("invoke", "HRT invoke round trip from ROS user space (INVOKE hypercall, completion record)"),
    ("invoke-poll", "HRT invoke round trip over the polled channel (no VM exit)"),
];

/// The I/O workloads (`hvm forward-test latency --io`, `hvm bench io`).
const IO: [&str; 4] = ["read-tmpfs", "write-tmpfs", "read-pipe", "write-pipe"];
const SIZES: [u32; 3] = [1, 4096, 65536];
const MODES: [&str; 3] = ["poll", "adaptive", "notify"];

/// The adaptive mode's spin: longer than this host's HRT turnaround (docs/benchmarks.md).
const ADAPTIVE_SPIN_US: u32 = 2000;

fn main() {
    let calls = env_u64("DUET_FWD_CALLS", 2000).clamp(50, 100_000);
    let notify_calls = (calls / 10).max(50);
    let iters = env_u64("DUET_FWD_ITERS", 10_000).max(100);
    let small = (iters / 10).max(100);
    let io_warmup = (calls / 10).max(20);
    let stress = env_u64("DUET_FWD_STRESS", 20_000).max(1000);
    let hrt_cores = env_u64("DUET_FWD_HRT_CORES", 2).clamp(1, 16) as u32;
    let script = format!(
        "hvm bench getpid --iters {iters} && hvm bench exit --iters {iters} && hvm bench pingpong --iters {iters} && \
         hvm bench doorbell --iters {small} && hvm bench invoke --iters {small} && hvm bench invoke-poll --iters {iters} && \
         hvm bench io --iters {calls} --warmup {io_warmup} && \
         hvm forward-test latency --io --mode poll --calls {calls} && \
         hvm forward-test latency --io --mode adaptive --spin-us {ADAPTIVE_SPIN_US} --calls {calls} && \
         hvm forward-test latency --io --mode notify --calls {notify_calls} && \
         hvm forward-test split-bench --mode poll --calls {calls} && \
         hvm forward-test split-bench --mode notify --calls {notify_calls} && \
         hvm forward-test scaling --mode poll --calls {stress}; exit $?"
    );
    let cfg = duet_benches::linux_partitioned_config(hrt_cores, &script).unwrap_or_else(|e| fail(&e));
    let (out, console) = duet_benches::run_to_success(&cfg, Duration::from_secs(3600)).unwrap_or_else(|e| fail(&e));
    let lines = report::parse_console(&console);
    let samples = report::parse_sample_lines(&console).unwrap_or_else(|e| fail(&e.to_string()));
    let kvm = report::phase_counts(&console, &out.marks).unwrap_or_else(|e| fail(&e.to_string()));
    if kvm.is_empty() {
        println!("note: this host's KVM has no binary stats fd; exits per call are not measured");
    }
    let placement = format!(
        "ROS 1 vCPU + HRT {hrt_cores} vCPUs, separate KVM VMs, unpinned; latency on HRT core 0, proxy on the ROS vCPU"
    );
    let mut rep = Report::new("forward", Environment::detect(out.flavor, placement));
    let with_kvm = |mut r: BenchResult| {
        if let Some(k) = kvm.get(&r.name) {
            r.exits_per_call = Some(k.exits());
            r.kvm = Some(*k);
        }
        r
    };
    for (name, what) in BASELINES {
        match lines.get(name).map(Summary::from_line) {
            Some(Ok(summary)) => rep.push_baseline(with_kvm(BenchResult::new(name, what, summary))),
            Some(Err(e)) => fail(&format!("{name}: {e}")),
            None => fail(&format!("no result for {name}")),
        }
    }
    let sampled = |name: &str, what: String| {
        let Some(s) = samples.get(name) else { fail(&format!("no samples for {name}")) };
        with_kvm(BenchResult::from_samples(name, what, s))
    };
    for size in SIZES {
        for io in IO {
            let name = format!("native-{io}-{size}");
            rep.push_baseline(sampled(&name, format!("baseline: native {} of {size} B", io_words(io))));
        }
    }
    rep.push_baseline(sampled("native-split-write", "baseline: the split-write function run natively (1-byte write() to a tmpfs file)".into()));
    rep.push_baseline(sampled("native-fault", "baseline: the split-fault function run natively (first write to a fresh page: Linux's fault)".into()));
    for mode in MODES {
        let spin = if mode == "adaptive" { " (spin 2 ms)" } else { "" };
        for call in ["echo", "getpid"] {
            rep.push(sampled(&format!("forward-{call}-{mode}"), format!("forwarded {call} from an HRT core, {mode}{spin}")));
        }
        for size in SIZES {
            for io in IO {
                let name = format!("forward-{io}-{size}-{mode}");
                rep.push(sampled(&name, format!("forwarded {} of {size} B, {mode}{spin}", io_words(io))));
            }
        }
    }
    for mode in ["poll", "notify"] {
        rep.push(sampled(&format!("split-null-{mode}"), format!("split execution of a null ROS function on the HRT, round trip from the ROS, {mode}")));
        rep.push(sampled(&format!("split-write-{mode}"), format!("write() (1 B, tmpfs) from a ROS function running on the HRT, {mode}")));
        rep.push(sampled(&format!("split-fault-{mode}"), format!("first write to a fresh page from a ROS function on the HRT (page fault forwarded), {mode}")));
    }
    print_table(&rep, &out.flavor.to_string());
    let scaling: Vec<&str> = console.lines().filter(|l| l.starts_with("bench-scaling ")).collect();
    println!("\nthroughput, echo pseudo-calls forwarded by 1..N HRT cores at once (poll, pipelined 16 deep, one proxy thread):");
    for l in &scaling {
        println!("  {}", l.trim_start_matches("bench-scaling "));
    }
    targets(&rep, &kvm, &scaling);
    write_outputs(&rep);
}

fn io_words(io: &str) -> &'static str {
    match io {
        "read-tmpfs" => "pread64 at offset 0 of a tmpfs file",
        "write-tmpfs" => "pwrite64 at offset 0 of a tmpfs file",
        "read-pipe" => "read from a pipe (filled by an untimed write)",
        _ => "write to a pipe (drained by an untimed read)",
    }
}

fn print_table(rep: &Report, flavor: &str) {
    println!("forward: {flavor} on {}; {}", rep.environment.cpu_model, rep.environment.placement);
    println!("| name | n | p50 | p90 | p99 | p99.9 | mean | p50 cycles | exits/call ROS+HRT | emulated instr/call HRT |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let us = |ns: u64| format!("{:.2} µs", ns as f64 / 1e3);
    for r in &rep.results {
        let s = &r.summary;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            s.n,
            us(s.p50_ns),
            us(s.p90_ns),
            us(s.p99_ns),
            us(s.p999_ns),
            us(s.mean_ns),
            s.p50_cycles.map_or("—".into(), |c| c.to_string()),
            r.kvm.map_or("—".into(), |k| format!("{:.3} + {:.3}", k.ros_exits, k.hrt_exits)),
            r.kvm.map_or("—".into(), |k| format!("{:.0}", k.hrt_emulated)),
        );
    }
}

/// The targets of the forwarding issue, as ratios within this run.
fn targets(rep: &Report, kvm: &HashMap<String, KvmPerCall>, scaling: &[&str]) {
    let p50 = |name: &str| rep.get(name).map(|r| r.summary.p50_ns as f64);
    let verdict = |ok: bool| if ok { "met" } else { "not met" };
    println!();
    if let (Some(fwd), Some(pp), Some(native)) = (p50("forward-getpid-poll"), p50("pingpong"), p50("getpid")) {
        println!(
            "poll-mode forwarded getpid p50 / (ping-pong + native getpid) = {:.2} (target ≤ 1.3: {})",
            fwd / (pp + native),
            verdict(fwd <= 1.3 * (pp + native))
        );
    }
    if let (Some(fwd), Some(exit)) = (p50("forward-getpid-notify"), p50("exit")) {
        println!("notify-mode forwarded getpid p50 / user-space VM exit = {:.2} (target ≤ 1: {})", fwd / exit, verdict(fwd <= exit));
    }
    if let Some(k) = kvm.get("forward-echo-poll") {
        // Exits for host interrupts (timers, preemption of a vCPU thread) are not the call's.
        let (hrt, ros) = (k.hrt_exits - k.hrt_irq_exits, k.ros_exits - k.ros_irq_exits);
        println!(
            "VM exits per poll-mode forwarded echo (the channel alone): HRT {hrt:.3} (+ {:.3} for host interrupts), ROS {ros:.3} (+ {:.3}): target 0 on the HRT: {}",
            k.hrt_irq_exits,
            k.ros_irq_exits,
            verdict(hrt < 0.05)
        );
        println!("emulated ring-0 instructions per poll-mode forwarded echo (the HRT's forward path): HRT {:.0}", k.hrt_emulated);
    }
    if let (Some(k), Some(n)) = (kvm.get("forward-getpid-poll"), kvm.get("getpid")) {
        println!(
            "VM exits per poll-mode forwarded getpid: HRT {:.3}, ROS {:.3}; per native getpid: ROS {:.3} (on PVM a system call switches through the host)",
            k.hrt_exits, k.ros_exits, n.ros_exits
        );
        println!("emulated ring-0 instructions per poll-mode forwarded getpid: HRT {:.0}, ROS {:.0}", k.hrt_emulated, k.ros_emulated);
    }
    let linear: Vec<f64> = scaling
        .iter()
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("vs_linear=")).and_then(|v| v.parse().ok()))
        .collect();
    if let Some(worst) = linear.iter().copied().reduce(f64::min) {
        println!("throughput vs linear, worst over 1..N cores = {worst:.2} (target ≥ 0.8: {})", verdict(worst >= 0.8));
    }
    if let Some(c) = rep.get("forward-echo-poll").and_then(|r| r.summary.p50_cycles) {
        println!("poll-mode forwarded echo p50 = {c} cycles (Multiverse: \"a few thousand cycles\")");
    }
}

/// A plot: file name, title, which results it draws.
type Plot = (&'static str, &'static str, fn(&str) -> bool);

fn write_outputs(rep: &Report) {
    let dir = repo_root().join("target/bench");
    if let Err(e) = rep.write(&dir.join("forward.json")) {
        eprintln!("forward bench: cannot write the report: {e}");
    }
    let plots: [Plot; 2] = [
        ("forward.svg", "latency CDF, echo, getpid and split execution", |n| {
            n.starts_with("forward-echo") || n.starts_with("forward-getpid") || n.starts_with("split-write") || n.starts_with("split-fault-poll")
        }),
        ("forward-io.svg", "latency CDF, 4 KiB I/O, native and forwarded", |n| n.contains("-4096") && !n.ends_with("-adaptive")),
    ];
    for (file, what, pick) in plots {
        match svg::report_cdf_svg_of(rep, what, pick).map(|s| std::fs::write(dir.join(file), s)) {
            Ok(Ok(())) => println!("wrote target/bench/{file}"),
            Ok(Err(e)) => eprintln!("forward bench: cannot write {file}: {e}"),
            Err(e) => eprintln!("forward bench: no plot {file}: {e}"),
        }
    }
    println!("wrote target/bench/forward.json");
}
