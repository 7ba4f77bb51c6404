//! Helpers for duet's benchmarks: timing a VM process until its console shows a line, and reading a
//! process's memory use; and [`report`], how the micro-benchmarks report (JSON, CDF SVG, A/B compare).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod report;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

/// A guest image from `cargo xtask images`, or an error saying how to make it.
pub fn guest_image(name: &str) -> Result<PathBuf, String> {
    let p = repo_root().join("target/guest-images").join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!("{} is missing: run `cargo xtask images` first", p.display()))
    }
}

/// The partitioned VM the Linux tests and benches boot: duet's test kernel as the ROS (1 vCPU, 256 MiB,
/// its init runs `script`) beside duet's HRT (`hrt_vcpus` cores, 64 MiB), console captured, no input.
/// The script is one double-quoted init argument: Linux passes at most 32 arguments to init. Callers
/// adjust the `[hrt]` section (boot, command line, forwarding mode) before building the VM.
pub fn linux_partitioned_config(hrt_vcpus: u32, script: &str) -> Result<config::Config, String> {
    let mut ros = config::RosConfig::new(guest_image("vmlinux-test")?);
    ros.memory = 256 << 20;
    ros.initramfs = Some(guest_image("initramfs.cpio")?);
    ros.cmdline = format!("console=ttyS0 quiet init_on_alloc=0 lpj=5000000 mitigations=off duet.expect_cpus=1 -- \"{script}\"");
    let mut cfg = config::Config::from_ros(ros);
    let mut hrt = config::HrtConfig::new(guest_image("hrt.elf")?);
    hrt.vcpus = hrt_vcpus;
    hrt.memory = 64 << 20;
    cfg.hrt = Some(hrt);
    cfg.console.output = config::ConsoleOutput::Capture;
    cfg.console.input = false;
    Ok(cfg)
}

/// Runs the VM `cfg` describes (at most `limit`) and returns its outcome and console, or why it did not
/// end with status 0: the reason and the console's last 40 lines. A console line starting `hvm: ` (a
/// failed `hvm` command) fails it too.
pub fn run_to_success(cfg: &config::Config, limit: Duration) -> Result<(vmm::Outcome, String), String> {
    let out = vmm::Vm::new(cfg).and_then(|vm| vm.run(Some(limit))).map_err(|e| e.to_string())?;
    let console = out.console_text();
    if out.reason != vmm::ExitReason::Exit(0) || console.lines().any(|l| l.starts_with("hvm: ")) {
        let tail: Vec<&str> = console.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!("the VM ended with {}; console tail:\n{}", out.reason, tail.join("\n")));
    }
    Ok((out, console))
}

/// Builds the `duet` binary (release) and returns its path: benches that time `duet run` as a
/// process, beside QEMU, need it fresh.
pub fn build_duet() -> Result<PathBuf, String> {
    let built = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "-p", "vmm", "--bin", "duet"])
        .current_dir(repo_root())
        .status()
        .map_err(|e| format!("cargo build: {e}"))?;
    if !built.success() {
        return Err("building duet failed".into());
    }
    Ok(repo_root().join("target/release/duet"))
}

/// What one timed boot saw.
#[derive(Debug, Clone)]
pub struct Timed {
    /// Time from spawning the process to the first console line containing the needle.
    pub to_line: Option<Duration>,
    /// Resident memory of the process beyond its guest RAM, sampled when the line appeared (bytes).
    pub overhead_rss: Option<u64>,
    /// The process's exit status.
    pub status: Option<i32>,
    /// The last console lines (for failures).
    pub tail: Vec<String>,
    /// Everything the process wrote to stderr.
    pub stderr: String,
}

/// Resident bytes of `pid` outside any mapping of exactly `guest_bytes` (the guest's RAM).
pub fn rss_beyond_guest(pid: u32, guest_bytes: u64) -> Option<u64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let (mut total, mut guest, mut in_guest) = (0u64, 0u64, false);
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ') {
            if let Some((a, b)) = range.split_once('-') {
                if let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                    in_guest = b - a == guest_bytes;
                    continue;
                }
            }
        }
        if let Some(v) = line.strip_prefix("Rss:") {
            let kb: u64 = v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            total += kb * 1024;
            if in_guest {
                guest += kb * 1024;
            }
        }
    }
    Some(total - guest)
}

/// Spawns `cmd` (stdout piped), times the first stdout line containing `needle`, samples memory then,
/// and waits for the process to end (killing it after `limit`).
pub fn time_until_line(mut cmd: Command, needle: &str, guest_bytes: u64, limit: Duration) -> Result<Timed, String> {
    let start = Instant::now();
    let mut child: Child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {cmd:?}: {e}"))?;
    let pid = child.id();
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let err_thread = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let (tx, rx) = mpsc::channel();
    let needle = needle.to_string();
    std::thread::spawn(move || {
        let mut seen = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !seen && line.contains(&needle) {
                seen = true;
                let _ = tx.send((Some(start.elapsed()), rss_beyond_guest(pid, guest_bytes), line.clone()));
            } else {
                let _ = tx.send((None, None, line));
            }
        }
    });
    let mut timed = Timed { to_line: None, overhead_rss: None, status: None, tail: Vec::new(), stderr: String::new() };
    let deadline = start + limit;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok((t, rss, line)) => {
                if t.is_some() {
                    timed.to_line = t;
                    timed.overhead_rss = rss;
                }
                timed.tail.push(line);
                if timed.tail.len() > 20 {
                    timed.tail.remove(0);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
    }
    timed.status = child.wait().ok().and_then(|s| s.code());
    timed.stderr = err_thread.join().unwrap_or_default();
    Ok(timed)
}

/// Median of durations (None when empty).
pub fn median(mut v: Vec<Duration>) -> Option<Duration> {
    v.sort();
    v.get(v.len() / 2).copied()
}
