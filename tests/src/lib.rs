//! Shared helpers for duet's integration tests: tiny real guests assembled with iced-x86, guest images
//! prepared by `cargo xtask images`, and process resource counts.
//!
//! Every test here runs on real KVM and fails (never skips) when something it needs is missing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use iced_x86::code_asm::*;

pub mod ros_snippet;

/// Where a tiny test kernel is loaded and entered (64-bit, identity-mapped).
pub const TINY_LOAD: u64 = 0x100_0000;
/// Scratch data area inside the tiny kernel's segment.
pub const TINY_DATA: u64 = TINY_LOAD + 0x800;
/// The debug exit port.
pub const EXIT_PORT: u16 = devices::debug_port::DEBUG_PORT;

/// A fresh 64-bit assembler.
pub fn asm() -> CodeAssembler {
    CodeAssembler::new(64).expect("64-bit assembler")
}

/// Appends "write `status` to the exit port, then halt forever" (the same bytes in 32- and 64-bit code).
pub fn exit_with(a: &mut CodeAssembler, status: u32) {
    a.mov(eax, status).expect("asm");
    a.mov(dx, u32::from(EXIT_PORT)).expect("asm");
    a.out(dx, eax).expect("asm");
    let mut again = a.create_label();
    a.set_label(&mut again).expect("asm");
    a.hlt().expect("asm");
    a.jmp(again).expect("asm");
}

/// Assembles `a` for [`TINY_LOAD`] and wraps it in a one-segment x86-64 ELF ("vmlinux"): the code, padded
/// to at least a page, loaded and entered at [`TINY_LOAD`].
pub fn tiny_kernel(mut a: CodeAssembler) -> Vec<u8> {
    let mut code = a.assemble(TINY_LOAD).expect("assemble");
    code.resize(code.len().max(0x1000), 0);
    boot::elf::Builder::elf64().entry(TINY_LOAD).segment(TINY_LOAD, &code, code.len() as u64).build()
}

/// A unique scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("duet-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A config for a tiny kernel: 1 vCPU, 32 MiB, console captured.
pub fn tiny_config(dir: &Path, kernel: &[u8]) -> config::Config {
    let path = dir.join("tiny.elf");
    std::fs::write(&path, kernel).expect("write kernel");
    let mut ros = config::RosConfig::new(path);
    ros.memory = 32 << 20;
    let mut cfg = config::Config::from_ros(ros);
    cfg.console.output = config::ConsoleOutput::Capture;
    cfg.console.input = false;
    cfg
}

/// Builds and runs a VM, with a time limit.
pub fn run(cfg: &config::Config, limit: Duration) -> vmm::Outcome {
    let vm = vmm::Vm::new(cfg).expect("build the VM");
    vm.run(Some(limit)).expect("run the VM")
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// A guest image made by `cargo xtask images`; panics with instructions when it is missing.
pub fn guest_image(name: &str) -> PathBuf {
    let path = repo_root().join("target/guest-images").join(name);
    assert!(
        path.is_file(),
        "guest image {} is missing: run `cargo xtask images` (the README's test command does)",
        path.display()
    );
    path
}

/// The Linux tests' partitioned VM ([`duet_benches::linux_partitioned_config`], which the benches
/// boot too); panics with instructions when a guest image is missing.
pub fn linux_partitioned_config(hrt_vcpus: u32, script: &str) -> config::Config {
    duet_benches::linux_partitioned_config(hrt_vcpus, script).expect("the guest images (`cargo xtask images` makes them)")
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).expect("/proc/self/fd")
}

/// Threads of this process.
pub fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map(|d| d.count()).expect("/proc/self/task")
}

/// Where a tiny Multiboot2 kernel is loaded (above duet's reserved first MiB).
pub const TINY_MB2_LOAD: u32 = 0x20_0000;

/// A fresh 32-bit assembler (Multiboot2 kernels start in 32-bit protected mode).
pub fn asm32() -> CodeAssembler {
    CodeAssembler::new(32).expect("32-bit assembler")
}

/// Wraps 32-bit code in an ELF32 Multiboot2 kernel: one PT_LOAD segment at [`TINY_MB2_LOAD`] holding a
/// Multiboot2 header (magic, i386, checksum, end tag) followed by the code, which is the ELF entry.
pub fn tiny_mb2_kernel(a: CodeAssembler) -> Vec<u8> {
    tiny_mb2_kernel_at(a, TINY_MB2_LOAD)
}

/// [`tiny_mb2_kernel`] linked and loaded at `load` instead of [`TINY_MB2_LOAD`].
pub fn tiny_mb2_kernel_at(mut a: CodeAssembler, load: u32) -> Vec<u8> {
    const HEADER_LEN: u32 = 24; // 16-byte header + 8-byte end tag
    let code = a.assemble(u64::from(load + HEADER_LEN)).expect("assemble");
    let mut seg = Vec::new();
    let magic = 0xe852_50d6u32;
    seg.extend_from_slice(&magic.to_le_bytes());
    seg.extend_from_slice(&0u32.to_le_bytes());
    seg.extend_from_slice(&HEADER_LEN.to_le_bytes());
    seg.extend_from_slice(&0u32.wrapping_sub(magic).wrapping_sub(HEADER_LEN).to_le_bytes());
    seg.extend_from_slice(&[0, 0, 0, 0, 8, 0, 0, 0]); // end tag: type 0, flags 0, size 8
    seg.extend_from_slice(&code);
    let base = u64::from(load);
    boot::elf::Builder::elf32().entry(base + u64::from(HEADER_LEN)).segment(base, &seg, seg.len() as u64).build()
}

/// A config for a tiny Multiboot2 kernel in an `[hrt]` section: 1 vCPU, 32 MiB, console captured.
pub fn tiny_mb2_config(dir: &Path, kernel: &[u8]) -> config::Config {
    let path = dir.join("tiny-mb2.elf");
    std::fs::write(&path, kernel).expect("write kernel");
    let mut hrt = config::HrtConfig::new(path);
    hrt.memory = 32 << 20;
    let mut cfg = config::Config::from_hrt(hrt);
    cfg.console.output = config::ConsoleOutput::Capture;
    cfg.console.input = false;
    cfg
}

/// Where the Linux tests record the VMs they ran again ([`check_with_sigsegv_retry`]);
/// `cargo xtask test` prints the file after the suite and fails the run when more than one test needed
/// a retry.
pub fn retry_log() -> PathBuf {
    repo_root().join("target/test-retries.log")
}

/// The kernel's reports of the one known flake (docs/platform.md), if `out` and its console show it
/// and nothing else: on a PVM host, every `segfault at` report (ros-init copies them to the console)
/// is a busybox process reading address 0 (`…: segfault at 0 ip … in busybox[…]`). Any other
/// process (`hvm` running split code, a test's own program), any other address, another host: none.
pub fn known_pvm_flake(out: &vmm::Outcome, text: &str) -> Option<Vec<String>> {
    if out.flavor != vmm::KvmFlavor::Pvm {
        return None;
    }
    let reports: Vec<String> = text.lines().filter(|l| l.contains("segfault at")).map(str::to_string).collect();
    let known = |l: &String| l.contains("segfault at 0 ") && l.contains(" in busybox[");
    (!reports.is_empty() && reports.iter().all(known)).then_some(reports)
}

/// Runs a Linux VM (`run`) and checks it (`check`, which panics on failure). If the check fails and the
/// console shows the known PVM flake and nothing else ([`known_pvm_flake`]: a busybox process of duet's
/// test kernel dies now and then at the same instruction, a TLS read that finds 0; about one exec in
/// 200 under load; see docs/platform.md), the VM runs once more and the second run is checked. The retry
/// is printed and recorded in [`retry_log`], which `cargo xtask test` prints and which fails the suite
/// when more than one test needed a retry; the checks are never loosened, and a second failure fails
/// the test.
pub fn check_with_sigsegv_retry(run: impl Fn() -> (vmm::Outcome, String), check: impl Fn(&vmm::Outcome, &str)) {
    let (out, text) = run();
    let Some(reports) = known_pvm_flake(&out, &text) else {
        return check(&out, &text);
    };
    let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&out, &text)));
    if first.is_ok() {
        return;
    }
    let test = std::thread::current().name().unwrap_or("a test").to_string();
    let line = format!("{test}: retried after the known PVM flake: {}", reports.join(" | "));
    eprintln!("warning: {line}");
    use std::io::Write;
    let logged = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(retry_log())
        .and_then(|mut f| writeln!(f, "{line}"));
    logged.expect("recording the retry in target/test-retries.log");
    let (out, text) = run();
    check(&out, &text);
}
