//! The partitioned VM's control path, measured inside one VM run: a Linux ROS (1 vCPU) beside duet's
//! HRT (1 vCPU), with the `hvm` tool in Linux running each micro-benchmark and printing percentiles.
//!
//! `cargo bench -p duet-benches --bench hvm` (needs `cargo xtask images`); `DUET_HVM_ITERS` (default
//! 10000) sets the samples per latency benchmark. Prints a table with the baselines of the same run
//! (a raw user-space VM exit; a cache-line ping-pong between the ROS core and the HRT core) and writes
//! `target/bench/hvm.json`.

use std::time::Duration;

use duet_benches::report::{self, BenchResult, Environment, Report, Summary};
use duet_benches::repo_root;

/// What each benchmark is, in the order the table shows them.
const BENCHES: [(&str, &str); 8] = [
    ("exit", "baseline: user-space VM exit round trip (ROS process, `out` to an unclaimed port)"),
    ("pingpong", "baseline: cache-line ping-pong round trip, ROS core ↔ HRT core"),
    ("null", "null hypercall (VERSION) from ROS user space"),
    ("hrt-null", "null hypercall (VERSION) from the HRT (ring 0)"),
    ("invoke", "invoke round trip, sync (ROS → HRT echo → completion record)"),
    ("invoke-async", "invoke round trip, async (INVOKE, then INVOKE_RESULT polls)"),
    ("invoke-poll", "invoke round trip over a polled channel (no VM exit)"),
    ("reboot", "HRT reboot as seen by the ROS (HRT_REBOOT → HRT_STATUS ready)"),
];

fn fail(msg: &str) -> ! {
    eprintln!("hvm bench: {msg}");
    std::process::exit(1)
}

/// VM exits per call where the path fixes them (docs/benchmarks.md): a hypercall or the raw exit
/// leaves the VM once; the ping-pong and the polled channel never do. `None`: not stated here.
fn exits_by_construction(name: &str) -> Option<f64> {
    match name {
        "exit" | "null" | "hrt-null" => Some(1.0),
        "pingpong" | "invoke-poll" => Some(0.0),
        _ => None,
    }
}

fn main() {
    let iters: u64 = std::env::var("DUET_HVM_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000).max(100);
    let script = format!(
        "hvm boot --wait 120; hvm bench exit --iters {iters}; hvm bench pingpong --iters {iters}; \
         hvm bench null --iters {iters}; hvm bench hrt-null --iters {iters}; hvm bench invoke --iters {iters}; \
         hvm bench invoke-async --iters {iters}; hvm bench invoke-poll --iters {iters}; hvm bench reboot --iters 20; exit 0"
    );
    let mut cfg = duet_benches::linux_partitioned_config(1, &script).unwrap_or_else(|e| fail(&e));
    if let Some(hrt) = cfg.hrt.as_mut() {
        // Booted by the ROS (`hvm boot`), so the first boot is timed as the ROS sees it too.
        hrt.boot = config::HrtBoot::OnRequest;
    }
    let (out, console) = duet_benches::run_to_success(&cfg, Duration::from_secs(1800)).unwrap_or_else(|e| fail(&e));
    let results = report::parse_console(&console);
    let get = |name: &str, key: &str| results.get(name).and_then(|l| l.number(key));
    let cpu = vmm::cpu_model();
    let placement = "ROS 1 vCPU + HRT 1 vCPU (separate KVM VMs)";
    println!("hvm: {} on {cpu}; {placement}, {iters} samples per latency", out.flavor);
    println!("| what | n | p50 | p90 | p99 | p99.9 | mean | p50 cycles | p50 / exit |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let exit_p50 = get("exit", "p50_ns");
    let us = |v: Option<f64>| v.map_or("—".to_string(), |ns| format!("{:.2} µs", ns / 1e3));
    let mut rep = Report::new("hvm", Environment::detect(out.flavor, placement));
    for (name, what) in BENCHES.iter() {
        let p50 = get(name, "p50_ns");
        let ratio = match (p50, exit_p50) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
            _ => "—".into(),
        };
        println!(
            "| {what} | {} | {} | {} | {} | {} | {} | {} | {ratio} |",
            get(name, "n").map_or("—".into(), |n| format!("{n:.0}")),
            us(p50),
            us(get(name, "p90_ns")),
            us(get(name, "p99_ns")),
            us(get(name, "p999_ns")),
            us(get(name, "mean_ns")),
            get(name, "p50_cycles").map_or("—".into(), |c| format!("{c:.0}")),
        );
        match results.get(*name).map(Summary::from_line) {
            Some(Ok(summary)) => {
                let mut result = BenchResult::new(*name, *what, summary);
                result.exits_per_call = exits_by_construction(name);
                if what.starts_with("baseline") {
                    rep.push_baseline(result);
                } else {
                    rep.push(result);
                }
            }
            Some(Err(e)) => eprintln!("hvm bench: {e}"),
            None => {}
        }
    }
    let boot_us = console
        .lines()
        .find_map(|l| l.trim().strip_prefix("ready_after_us="))
        .and_then(|v| v.trim().parse::<f64>().ok());
    println!("| HRT boot on request as seen by the ROS (HRT_BOOT → ready), one sample | 1 | {} | | | | | | |", us(boot_us.map(|u| u * 1e3)));
    for (name, label) in [("invoke", "sync invoke (hypercall)"), ("invoke-poll", "sync invoke (polled channel)")] {
        if let (Some(inv), Some(pp)) = (get(name, "p50_ns"), get("pingpong", "p50_ns")) {
            println!("\n{label} p50 / ping-pong p50 = {:.2} (target ≤ 2)", inv / pp);
        }
    }
    if let Some(ns) = boot_us.map(|u| (u * 1e3).round() as u64) {
        rep.push(BenchResult::new("hrt-boot", "HRT boot on request as seen by the ROS (HRT_BOOT → ready), one sample", Summary::single_ns(ns)));
    }
    if let Err(e) = rep.write(&repo_root().join("target/bench/hvm.json")) {
        eprintln!("hvm bench: cannot write the report: {e}");
    }
}
