//! Linux boot-to-init: duet against qemu-system-x86_64 booting the same kernel, initramfs and command line
//! in the same run, several runs each (medians); and duet's resident memory beyond guest RAM.
//!
//! `cargo bench -p duet-benches --bench boot` (needs `cargo xtask images`). Environment: `DUET_BOOT_RUNS`
//! (default 3), `DUET_BOOT_LIMIT` seconds per boot (default 900). Results: a table on stdout and
//! `target/bench/boot.json`.
//!
//! Both VMMs are timed the same way: from spawning the process to the first console line of duet's init
//! (`duet-init:`). duet additionally reports its own debug-port mark (VMM start → init). On a PVM host
//! QEMU with KVM cannot boot Linux (it has no fallback for `int3` and friends), so QEMU with TCG is measured
//! there too and the report says which QEMU each ratio uses.

use std::process::Command;
use std::time::Duration;

use duet_benches::{build_duet, guest_image, median, repo_root, time_until_line, Timed};

const NEEDLE: &str = "duet-init:";
const MEM_MIB: u64 = 256;

fn main() {
    if let Err(e) = run() {
        eprintln!("boot bench: {e}");
        std::process::exit(1);
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn run() -> Result<(), String> {
    let runs = env_num("DUET_BOOT_RUNS", 3).max(1);
    let limit = Duration::from_secs(env_num("DUET_BOOT_LIMIT", 900));
    let kernel = guest_image("vmlinux-test")?;
    let initramfs = guest_image("initramfs.cpio")?;
    let duet = build_duet()?;
    let flavor = vmm::KvmFlavor::detect();
    let cpu = vmm::cpu_model();
    let user_cmdline = "console=ttyS0 quiet init_on_alloc=0 lpj=5000000 mitigations=off";
    let settings = vmm::PlatformSettings::resolve(flavor, &config::PlatformConfig::default());
    let cmdline = settings.linux_cmdline(user_cmdline);
    let dir = std::env::temp_dir().join(format!("duet-boot-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let cfg = dir.join("boot.toml");
    std::fs::write(
        &cfg,
        format!(
            "[ros]\nvcpus = 1\nmemory = \"{MEM_MIB}M\"\nkernel = {:?}\ninitramfs = {:?}\ncmdline = {:?}\n[console]\ninput = false\n",
            kernel, initramfs, user_cmdline
        ),
    )
    .map_err(|e| e.to_string())?;
    println!("boot bench: {flavor} on {cpu}; {runs} run(s) each, 1 vCPU, {MEM_MIB} MiB");
    println!("kernel {} + initramfs {}", kernel.display(), initramfs.display());

    let mut duet_console = Vec::new();
    let mut duet_mark = Vec::new();
    let mut rss = Vec::new();
    for i in 0..runs {
        let mut cmd = Command::new(&duet);
        cmd.args(["run"]).arg(&cfg).args(["--timeout", &limit.as_secs().to_string()]);
        let t = time_until_line(cmd, NEEDLE, MEM_MIB << 20, limit)?;
        report("duet", i, &t);
        if let Some(d) = t.to_line {
            duet_console.push(d);
        }
        if let Some(m) = mark_from_stderr(&t.stderr) {
            duet_mark.push(m);
        }
        if let Some(r) = t.overhead_rss {
            rss.push(r);
        }
    }

    let qemu = |accel: &str| {
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-machine", &format!("q35,accel={accel}"), "-m", &MEM_MIB.to_string(), "-smp", "1"])
            .args(["-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-display", "none"])
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .arg("-kernel")
            .arg(&kernel)
            .arg("-initrd")
            .arg(&initramfs)
            .args(["-append", &cmdline]);
        if accel == "kvm" {
            cmd.args(["-cpu", "host,-cx16"]);
        }
        cmd
    };
    let mut results = Vec::new();
    for accel in ["kvm", "tcg"] {
        let mut times = Vec::new();
        let mut failure = None;
        for i in 0..runs {
            let t = time_until_line(qemu(accel), NEEDLE, MEM_MIB << 20, limit)?;
            report(&format!("qemu/{accel}"), i, &t);
            match t.to_line {
                Some(d) => times.push(d),
                None => {
                    failure = Some(t.tail.last().cloned().unwrap_or_else(|| t.stderr.lines().last().unwrap_or("").to_string()));
                    break;
                }
            }
        }
        results.push((accel, median(times), failure));
        // TCG is only the fallback baseline: skip it when QEMU/KVM booted.
        if accel == "kvm" && results[0].1.is_some() {
            break;
        }
    }

    let duet_med = median(duet_console.clone());
    let mark_med = median(duet_mark.clone());
    rss.sort_unstable();
    let rss_med = rss.get(rss.len() / 2).copied();
    println!();
    println!("| what | median | samples |");
    println!("|---|---|---|");
    println!("| duet: spawn → init's first line | {} | {} |", fmt(duet_med), duet_console.len());
    println!("| duet: VMM start → init mark (debug port) | {} | {} |", fmt(mark_med), duet_mark.len());
    for (accel, med, failure) in &results {
        match (med, failure) {
            (Some(m), _) => println!("| qemu-system-x86_64 ({accel}): spawn → init's first line | {} | {runs} |", fmt(Some(*m))),
            (None, Some(f)) => println!("| qemu-system-x86_64 ({accel}) | did not boot: {f} | 0 |"),
            (None, None) => println!("| qemu-system-x86_64 ({accel}) | did not boot | 0 |"),
        }
    }
    println!("| duet RSS beyond guest RAM | {} | {} |", rss_med.map(|r| format!("{:.1} MiB", r as f64 / 1048576.0)).unwrap_or("-".into()), rss.len());
    let baseline = results.iter().find_map(|(a, m, _)| m.map(|m| (*a, m)));
    if let (Some(d), Some((accel, q))) = (duet_med, baseline) {
        println!("ratio duet / qemu ({accel}) = {:.2} (target ≤ 0.7 against QEMU/KVM)", d.as_secs_f64() / q.as_secs_f64());
    }
    println!("host: {flavor} ({}) on {cpu}", flavor.module());

    let json = format!(
        "{{\"version\":1,\"bench\":\"boot\",\"kvm_flavor\":\"{}\",\"cpu\":{:?},\"runs\":{runs},\"duet_spawn_to_init_s\":{},\"duet_vmm_start_to_init_mark_s\":{},\"duet_rss_beyond_guest_bytes\":{},\"qemu\":[{}]}}\n",
        flavor.module(),
        cpu,
        secs(duet_med),
        secs(mark_med),
        rss_med.map(|r| r.to_string()).unwrap_or("null".into()),
        results
            .iter()
            .map(|(a, m, f)| format!("{{\"accel\":\"{a}\",\"spawn_to_init_s\":{},\"failure\":{}}}", secs(*m), f.as_ref().map(|f| format!("{f:?}")).unwrap_or("null".into())))
            .collect::<Vec<_>>()
            .join(",")
    );
    let out = repo_root().join("target/bench");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    std::fs::write(out.join("boot.json"), json).map_err(|e| e.to_string())?;
    println!("results: {}", out.join("boot.json").display());
    Ok(())
}

fn mark_from_stderr(stderr: &str) -> Option<Duration> {
    let rest = stderr.split("init reached after ").nth(1)?;
    let secs: f64 = rest.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_secs_f64(secs))
}

fn report(what: &str, i: u64, t: &Timed) {
    match t.to_line {
        Some(d) => eprintln!("{what} run {i}: init after {:.3} s (exit {:?})", d.as_secs_f64(), t.status),
        None => eprintln!("{what} run {i}: no init line (exit {:?}); last: {:?}", t.status, t.tail.last()),
    }
}

fn fmt(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.3} s", d.as_secs_f64())).unwrap_or_else(|| "-".into())
}

fn secs(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.6}", d.as_secs_f64())).unwrap_or_else(|| "null".into())
}
