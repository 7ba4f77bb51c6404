//! HRT boot: VMM start → the HRT's first instruction (debug-port mark 2) → its main (mark 3) → exit, for
//! duet's own Multiboot2 kernel (`hello`, 1 vCPU), many runs in one process; medians and p90.
//!
//! `cargo bench -p duet-benches --bench hrt_boot` (needs `cargo xtask images`). `DUET_HRT_RUNS` (default
//! 50). Targets: < 5 ms to HRT main on PVM (emulated ring 0), < 1 ms on hardware KVM.

use std::time::Duration;

use duet_benches::{guest_image, repo_root};

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let runs: usize = std::env::var("DUET_HRT_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(50).max(1);
    let kernel = match guest_image("hrt.elf") {
        Ok(k) => k,
        Err(e) => {
            eprintln!("hrt_boot: {e}");
            std::process::exit(1);
        }
    };
    let mut hrt = config::HrtConfig::new(kernel);
    hrt.memory = 64 << 20;
    hrt.cmdline = "hello".into();
    let mut cfg = config::Config::from_hrt(hrt);
    cfg.console.output = config::ConsoleOutput::None;
    cfg.console.input = false;
    let (mut entry, mut main, mut total) = (Vec::new(), Vec::new(), Vec::new());
    let mut flavor = None;
    for _ in 0..runs {
        let out = match vmm::Vm::new(&cfg).and_then(|vm| vm.run(Some(Duration::from_secs(60)))) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("hrt_boot: {e}");
                std::process::exit(1);
            }
        };
        if out.reason != vmm::ExitReason::Exit(0) {
            eprintln!("hrt_boot: the HRT did not exit cleanly: {}", out.reason);
            std::process::exit(1);
        }
        flavor = Some(out.flavor);
        if let (Some(e), Some(m)) = (out.mark(2), out.mark(3)) {
            entry.push(e);
            main.push(m);
            total.push(out.elapsed);
        }
    }
    let flavor = flavor.map(|f| f.to_string()).unwrap_or_default();
    println!("hrt_boot: {flavor} on {}; {} runs, 1 vCPU, 64 MiB", vmm::cpu_model(), entry.len());
    println!("| what | p50 | p90 |");
    println!("|---|---|---|");
    let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
    for (name, v) in [("VMM start → HRT first instruction", &mut entry), ("VMM start → HRT main", &mut main), ("VMM start → exit (whole run)", &mut total)] {
        println!("| {name} | {} | {} |", ms(pct(v, 0.5)), ms(pct(v, 0.9)));
    }
    let json = format!(
        "{{\"version\":1,\"bench\":\"hrt_boot\",\"kvm_flavor\":{flavor:?},\"runs\":{},\"entry_p50_s\":{:.6},\"main_p50_s\":{:.6},\"total_p50_s\":{:.6}}}\n",
        entry.len(),
        pct(&mut entry, 0.5).as_secs_f64(),
        pct(&mut main, 0.5).as_secs_f64(),
        pct(&mut total, 0.5).as_secs_f64()
    );
    let out = repo_root().join("target/bench");
    if std::fs::create_dir_all(&out).and_then(|_| std::fs::write(out.join("hrt_boot.json"), json)).is_err() {
        eprintln!("hrt_boot: cannot write target/bench/hrt_boot.json");
    }
}
