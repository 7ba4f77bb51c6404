//! virtio-blk as a Linux guest sees it: duet against qemu-system-x86_64 on the same raw image, kernel,
//! initramfs and command line, in the same run.
//!
//! `cargo bench -p duet-benches --bench virtio_blk` (needs `cargo xtask images`). In the guest,
//! `hvm blkbench /dev/vda` reads with `O_DIRECT` (every read is a device request): sequential 1 MiB
//! reads (MiB/s) and 4 KiB reads at random offsets (IOPS), timed by the guest's clock. QEMU runs its
//! `microvm` machine, whose virtio-blk is virtio-mmio like duet's (the test kernel has no PCI), with
//! `cache=none` against duet's buffered image file, so QEMU is not handicapped by the host cache.
//! Environment: `DUET_BLK_RUNS` (default 3), `DUET_BLK_SEQ_MIB` (default 64), `DUET_BLK_RAND_OPS`
//! (default 2000), `DUET_BLK_LIMIT` seconds per VM (default 900). Results: a table on stdout and
//! `target/bench/virtio_blk.json`.
//!
//! On a PVM host QEMU with KVM cannot boot Linux (no fallback for `int3` and friends), so QEMU runs
//! with TCG there, and the report says so: the guest's own kernel work dominates both figures (ring 0
//! is emulated by PVM under duet, translated by TCG under QEMU), so the ratio says more about the two
//! CPUs' emulation than about the devices; on hardware KVM both run the guest natively.

use std::process::Command;
use std::time::Duration;

use duet_benches::{build_duet, guest_image, repo_root, time_until_line};

const MEM_MIB: u64 = 256;
const IMAGE_MIB: u64 = 256;
const NEEDLE: &str = "blkbench seq_mib=";

fn main() {
    if let Err(e) = run() {
        eprintln!("virtio_blk bench: {e}");
        std::process::exit(1);
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One VM's figures: sequential MiB/s and random IOPS.
#[derive(Debug, Clone, Copy)]
struct Figures {
    seq_mib_s: f64,
    rand_iops: f64,
}

fn parse(line: &str) -> Option<Figures> {
    let get = |key: &str| {
        line.split_whitespace().find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('='))).and_then(|v| v.parse().ok())
    };
    Some(Figures { seq_mib_s: get("seq_mib_s")?, rand_iops: get("rand_iops")? })
}

fn measure(cmd: Command, limit: Duration) -> Result<(Figures, String), String> {
    let t = time_until_line(cmd, NEEDLE, MEM_MIB << 20, limit)?;
    let served = t.stderr.lines().find(|l| l.contains("block[0]:") && l.contains("served")).unwrap_or("").to_string();
    t.tail
        .iter()
        .find(|l| l.contains(NEEDLE))
        .and_then(|l| parse(&l[l.find(NEEDLE).unwrap_or(0)..]))
        .map(|f| (f, served))
        .ok_or_else(|| format!("no blkbench line; last output: {:?}; stderr: {}", t.tail, t.stderr.lines().last().unwrap_or("")))
}

fn fmedian(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn run() -> Result<(), String> {
    let runs = env_num("DUET_BLK_RUNS", 3).max(1);
    let seq_mib = env_num("DUET_BLK_SEQ_MIB", 64);
    let rand_ops = env_num("DUET_BLK_RAND_OPS", 2000);
    let limit = Duration::from_secs(env_num("DUET_BLK_LIMIT", 900));
    let kernel = guest_image("vmlinux-test")?;
    let initramfs = guest_image("initramfs.cpio")?;
    let duet = build_duet()?;
    let flavor = vmm::KvmFlavor::detect();
    let cpu = vmm::cpu_model();
    let dir = std::env::temp_dir().join(format!("duet-blk-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // Non-zero data, so that neither side can shortcut holes in a sparse file.
    let image = dir.join("disk.img");
    let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let mut data = Vec::with_capacity((IMAGE_MIB << 20) as usize);
    for _ in 0..IMAGE_MIB {
        data.extend_from_slice(&chunk);
    }
    std::fs::write(&image, data).map_err(|e| e.to_string())?;

    let script = format!("hvm blkbench /dev/vda {seq_mib} {rand_ops}");
    let params = "console=ttyS0 quiet init_on_alloc=0 lpj=5000000 mitigations=off";
    let user_cmdline = format!("{params} -- \"{script}\"");
    // microvm's one virtio-mmio device, told to Linux before ` -- ` (microvm's own automatic
    // parameter would land after it, among init's arguments).
    let qemu_user_cmdline = format!("{params} virtio_mmio.device=512@0xfeb00e00:12 -- \"{script}\"");
    let cfg = dir.join("blk.toml");
    std::fs::write(
        &cfg,
        format!(
            "[ros]\nvcpus = 1\nmemory = \"{MEM_MIB}M\"\nkernel = {kernel:?}\ninitramfs = {initramfs:?}\ncmdline = {user_cmdline:?}\n\
             [console]\ninput = false\n[[block]]\npath = {image:?}\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let settings = vmm::PlatformSettings::resolve(flavor, &config::PlatformConfig::default());
    let qemu_cmdline = settings.linux_cmdline(&qemu_user_cmdline);
    let accel = if flavor.emulates_ring0() { "tcg" } else { "kvm" };
    println!("virtio_blk bench: {flavor} on {cpu}; {runs} run(s) each; {seq_mib} MiB sequential, {rand_ops} random 4 KiB reads");

    let mut duet_runs = Vec::new();
    let mut qemu_runs = Vec::new();
    for i in 0..runs {
        let mut cmd = Command::new(&duet);
        cmd.args(["run"]).arg(&cfg).args(["--timeout", &limit.as_secs().to_string()]);
        // duet logs the time its event loop spent serving the disk: the VMM's share of each request.
        cmd.env("RUST_LOG", "warn,vmm::virtio=info");
        let (f, served) = measure(cmd, limit).map_err(|e| format!("duet run {i}: {e}"))?;
        println!("duet run {i}: {:.1} MiB/s sequential, {:.0} IOPS random; {}", f.seq_mib_s, f.rand_iops, served.trim());
        duet_runs.push(f);

        let mut q = Command::new("qemu-system-x86_64");
        q.args(["-machine", &format!("microvm,accel={accel},acpi=off,auto-kernel-cmdline=off"), "-m", &MEM_MIB.to_string(), "-smp", "1"])
            .args(["-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-display", "none"])
            .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
            .arg("-drive")
            .arg(format!("id=d0,if=none,format=raw,cache=none,aio=threads,file={}", image.display()))
            .args(["-device", "virtio-blk-device,drive=d0"])
            .arg("-kernel")
            .arg(&kernel)
            .arg("-initrd")
            .arg(&initramfs)
            .args(["-append", &qemu_cmdline]);
        if accel == "kvm" {
            q.args(["-cpu", "host,-cx16"]);
        }
        let (f, _) = measure(q, limit).map_err(|e| format!("qemu ({accel}) run {i}: {e}"))?;
        println!("qemu/{accel} run {i}: {:.1} MiB/s sequential, {:.0} IOPS random", f.seq_mib_s, f.rand_iops);
        qemu_runs.push(f);
    }
    let _ = std::fs::remove_dir_all(&dir);
    // Medians of what the guest measured: wall-clock boot time plays no part.
    let d_seq = fmedian(duet_runs.iter().map(|f| f.seq_mib_s).collect());
    let d_iops = fmedian(duet_runs.iter().map(|f| f.rand_iops).collect());
    let q_seq = fmedian(qemu_runs.iter().map(|f| f.seq_mib_s).collect());
    let q_iops = fmedian(qemu_runs.iter().map(|f| f.rand_iops).collect());
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    println!();
    println!("| guest-measured, median of {runs} | duet | qemu-system-x86_64 ({accel}) | duet / qemu |");
    println!("|---|---|---|---|");
    println!("| sequential 1 MiB O_DIRECT reads | {d_seq:.1} MiB/s | {q_seq:.1} MiB/s | {:.2} |", ratio(d_seq, q_seq));
    println!("| random 4 KiB O_DIRECT reads | {d_iops:.0} IOPS | {q_iops:.0} IOPS | {:.2} |", ratio(d_iops, q_iops));
    println!("host: {flavor} ({}) on {cpu}; target duet / qemu ≥ 1.0", flavor.module());

    let json = serde_json::json!({
        "version": 1,
        "bench": "virtio_blk",
        "kvm_flavor": flavor.module(),
        "cpu": cpu,
        "runs": runs,
        "seq_mib": seq_mib,
        "rand_ops": rand_ops,
        "qemu_accel": accel,
        "duet": { "seq_mib_s": d_seq, "rand_iops": d_iops },
        "qemu": { "seq_mib_s": q_seq, "rand_iops": q_iops },
        "ratio": { "seq": ratio(d_seq, q_seq), "rand": ratio(d_iops, q_iops) },
    });
    let out = repo_root().join("target/bench");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    std::fs::write(out.join("virtio_blk.json"), format!("{json:#}\n")).map_err(|e| e.to_string())?;
    println!("results: {}", out.join("virtio_blk.json").display());
    Ok(())
}
