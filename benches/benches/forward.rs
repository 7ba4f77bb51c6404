//! Syscall forwarding, measured inside one partitioned VM (a Linux ROS with 1 vCPU beside duet's HRT
//! with 2 cores), with baselines from the same run: a native ROS `getpid`, a user-space VM exit, a
//! cache-line ping-pong between the ROS core and an HRT core. Then, in each mode (poll, adaptive,
//! notify), round trips of the echo pseudo-call (the channel and the proxy alone) and of `getpid`
//! forwarded from an HRT core, timed on the HRT; and the throughput of both HRT cores forwarding at
//! once in poll mode.
//!
//! `cargo bench -p duet-benches --bench forward` (needs `cargo xtask images`). `DUET_FWD_CALLS`
//! (default 2000) sets the samples per poll/adaptive latency, a tenth of it (at least 50) for notify;
//! `DUET_FWD_ITERS` (default 10000) the baselines'. Prints a table and the targets of
//! docs/benchmarks.md, writes `target/bench/forward.json` (duet-bench/1, raw samples kept) and
//! `target/bench/forward.svg` (latency CDF per mode).

use std::time::Duration;

use duet_benches::report::{self, svg, BenchResult, Environment, Report, Summary};
use duet_benches::{guest_image, repo_root};

fn fail(msg: &str) -> ! {
    eprintln!("forward bench: {msg}");
    std::process::exit(1)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Baselines measured by `hvm bench` (summaries only), with what they are and their exits per call.
const BASELINES: [(&str, &str, Option<f64>); 3] = [
    ("getpid", "baseline: native getpid in a ROS process", Some(0.0)),
    ("exit", "baseline: user-space VM exit round trip (ROS process, `out` to an unclaimed port)", Some(1.0)),
    ("pingpong", "baseline: cache-line ping-pong round trip, ROS core ↔ HRT core", Some(0.0)),
];

/// The adaptive mode's spin: longer than this host's HRT turnaround (docs/benchmarks.md).
const ADAPTIVE_SPIN_US: u32 = 2000;

fn main() {
    let calls = env_u64("DUET_FWD_CALLS", 2000).clamp(50, 100_000);
    let notify_calls = (calls / 10).max(50);
    let iters = env_u64("DUET_FWD_ITERS", 10_000).max(100);
    let stress = env_u64("DUET_FWD_STRESS", 100_000).max(1000);
    let image = |n: &str| guest_image(n).unwrap_or_else(|e| fail(&e));
    let script = format!(
        "hvm bench getpid --iters {iters}; hvm bench exit --iters {iters}; hvm bench pingpong --iters {iters}; \
         hvm forward-test latency --mode poll --calls {calls}; \
         hvm forward-test latency --mode adaptive --spin-us {ADAPTIVE_SPIN_US} --calls {calls}; \
         hvm forward-test latency --mode notify --calls {notify_calls}; \
         hvm forward-test stress --mode poll --calls {stress}; exit 0"
    );
    let mut ros = config::RosConfig::new(image("vmlinux-test"));
    ros.memory = 256 << 20;
    ros.initramfs = Some(image("initramfs.cpio"));
    ros.cmdline = format!("console=ttyS0 quiet init_on_alloc=0 lpj=5000000 mitigations=off -- \"{script}\"");
    let mut cfg = config::Config::from_ros(ros);
    let mut hrt = config::HrtConfig::new(image("hrt.elf"));
    hrt.vcpus = 2;
    hrt.memory = 64 << 20;
    cfg.hrt = Some(hrt);
    cfg.console.output = config::ConsoleOutput::Capture;
    cfg.console.input = false;
    let out = vmm::Vm::new(&cfg)
        .and_then(|vm| vm.run(Some(Duration::from_secs(3600))))
        .unwrap_or_else(|e| fail(&e.to_string()));
    let console = out.console_text();
    if out.reason != vmm::ExitReason::Exit(0) || console.lines().any(|l| l.starts_with("hvm: ")) {
        let tail: Vec<&str> = console.lines().rev().take(40).collect();
        fail(&format!("the VM ended with {}; console tail:\n{}", out.reason, tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
    }
    let lines = report::parse_console(&console);
    let samples = report::parse_sample_lines(&console).unwrap_or_else(|e| fail(&e.to_string()));
    let placement = "ROS 1 vCPU + HRT 2 vCPUs (separate KVM VMs); latency on HRT core 0; the proxy on the ROS vCPU";
    let mut rep = Report::new("forward", Environment::detect(out.flavor, placement));
    for (name, what, exits) in BASELINES {
        match lines.get(name).map(Summary::from_line) {
            Some(Ok(summary)) => {
                let mut r = BenchResult::new(name, what, summary);
                r.exits_per_call = exits;
                rep.push_baseline(r);
            }
            Some(Err(e)) => fail(&format!("{name}: {e}")),
            None => fail(&format!("no result for {name}")),
        }
    }
    for mode in ["poll", "adaptive", "notify"] {
        for call in ["echo", "getpid"] {
            let name = format!("forward-{call}-{mode}");
            let Some(s) = samples.get(&name) else { fail(&format!("no samples for {name}")) };
            let what = format!("forwarded {call} from an HRT core, {mode} mode{}", if mode == "adaptive" { " (spin 2 ms)" } else { "" });
            let mut r = BenchResult::from_samples(name.as_str(), what, s);
            // By construction: poll and adaptive (while spinning) touch only shared memory; notify
            // rings two doorbells, each one exit handled in the host kernel (ioeventfd).
            r.exits_per_call = Some(if mode == "notify" { 2.0 } else { 0.0 });
            rep.push(r);
        }
    }
    print_table(&rep, &out.flavor.to_string());
    if let Some(line) = console.lines().find(|l| l.starts_with("forward-test stress ok")) {
        println!("\nthroughput, both HRT cores forwarding echo at once (poll): {line}");
    }
    targets(&rep);
    let dir = repo_root().join("target/bench");
    if let Err(e) = rep.write(&dir.join("forward.json")) {
        eprintln!("forward bench: cannot write the report: {e}");
    }
    match svg::report_cdf_svg(&rep).map(|s| std::fs::write(dir.join("forward.svg"), s)) {
        Ok(Ok(())) => println!("\nwrote target/bench/forward.json and target/bench/forward.svg"),
        Ok(Err(e)) => eprintln!("forward bench: cannot write the plot: {e}"),
        Err(e) => eprintln!("forward bench: no plot: {e}"),
    }
}

fn print_table(rep: &Report, flavor: &str) {
    println!("forward: {flavor} on {}; {}", rep.environment.cpu_model, rep.environment.placement);
    println!("| what | n | p50 | p90 | p99 | p99.9 | mean | p50 cycles | exits/call |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let us = |ns: u64| format!("{:.2} µs", ns as f64 / 1e3);
    for r in &rep.results {
        let s = &r.summary;
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.what,
            s.n,
            us(s.p50_ns),
            us(s.p90_ns),
            us(s.p99_ns),
            us(s.p999_ns),
            us(s.mean_ns),
            s.p50_cycles.map_or("—".into(), |c| c.to_string()),
            r.exits_per_call.map_or("—".into(), |e| format!("{e}")),
        );
    }
}

/// The targets of the forwarding issue, as ratios within this run.
fn targets(rep: &Report) {
    let p50 = |name: &str| rep.get(name).map(|r| r.summary.p50_ns as f64);
    if let (Some(fwd), Some(pp), Some(native)) = (p50("forward-getpid-poll"), p50("pingpong"), p50("getpid")) {
        let bar = 1.3 * (pp + native);
        println!(
            "\npoll-mode forwarded getpid p50 / (ping-pong + native getpid) = {:.2} (target ≤ 1.3: {})",
            fwd / (pp + native),
            if fwd <= bar { "met" } else { "not met" }
        );
    }
    if let (Some(fwd), Some(exit)) = (p50("forward-getpid-notify"), p50("exit")) {
        println!(
            "notify-mode forwarded getpid p50 / user-space VM exit = {:.2} (target ≤ 1: {})",
            fwd / exit,
            if fwd <= exit { "met" } else { "not met" }
        );
    }
}
