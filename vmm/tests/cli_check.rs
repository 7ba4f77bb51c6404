//! `duet check` on bad configs and bad images: a specific message and exit code 78 for each, no panic.
//! Also the exit codes of `duet run` (guest status, timeout, guest fault).

use std::path::{Path, PathBuf};
use std::process::Command;

use duet_tests::{asm, exit_with, scratch, tiny_kernel};

const EXIT_CONFIG: i32 = 78;

struct Case {
    dir: PathBuf,
}

impl Case {
    fn new(name: &str) -> Self {
        let dir = scratch(&format!("cli-{name}"));
        let mut a = asm();
        exit_with(&mut a, 0);
        std::fs::write(dir.join("vmlinux"), tiny_kernel(a)).expect("write kernel");
        Case { dir }
    }

    fn file(&self, name: &str, bytes: &[u8]) -> &Self {
        std::fs::write(self.dir.join(name), bytes).expect("write file");
        self
    }

    fn duet(&self, args: &[&str], config: &str) -> (i32, String, String) {
        let path = self.dir.join("vm.toml");
        std::fs::write(&path, config).expect("write config");
        let out = Command::new(env!("CARGO_BIN_EXE_duet"))
            .args(args)
            .arg(&path)
            .output()
            .expect("run duet");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "duet panicked: {stderr}");
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    }

    /// `duet check` must fail with EX_CONFIG and say every one of `needles`.
    fn refuses(&self, config: &str, needles: &[&str]) {
        let (code, _, stderr) = self.duet(&["check"], config);
        assert_eq!(code, EXIT_CONFIG, "exit code for {config:?}: {stderr}");
        for n in needles {
            assert!(stderr.contains(n), "expected {n:?} in the error for {config:?}, got: {stderr}");
        }
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn a_good_config_checks_ok() {
    let c = Case::new("good");
    let (code, stdout, stderr) = c.duet(&["check"], "[ros]\nkernel = \"vmlinux\"\nmemory = \"32M\"\n");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("ok") && stdout.contains("vmlinux (ELF)"), "{stdout}");
}

#[test]
fn unknown_key_names_the_key_and_line() {
    Case::new("unknown").refuses("[ros]\nkernel = \"vmlinux\"\ncpus = 2\n", &["vm.toml:3", "cpus", "unknown field"]);
}

#[test]
fn bad_size_is_explained() {
    Case::new("size").refuses(
        "[ros]\nkernel = \"vmlinux\"\nmemory = \"12Q\"\n",
        &["vm.toml:3", "ros.memory", "\"12Q\""],
    );
}

#[test]
fn zero_vcpus_is_out_of_range() {
    Case::new("vcpus0").refuses("[ros]\nkernel = \"vmlinux\"\nvcpus = 0\n", &["vm.toml:3", "ros.vcpus", "1 to 64"]);
}

#[test]
fn too_many_vcpus_is_out_of_range() {
    Case::new("vcpus65").refuses("[ros]\nkernel = \"vmlinux\"\nvcpus = 65\n", &["ros.vcpus", "65"]);
}

#[test]
fn missing_kernel_is_named() {
    Case::new("nokernel").refuses("[ros]\nvcpus = 1\n", &["ros.kernel", "missing"]);
}

#[test]
fn kernel_file_not_found_shows_the_path() {
    let c = Case::new("notfound");
    c.refuses("[ros]\nkernel = \"nope.elf\"\n", &["ros.kernel", "not found", &path(&c.dir.join("nope.elf"))]);
}

#[test]
fn a_file_that_is_not_a_kernel_is_refused() {
    let c = Case::new("notkernel");
    c.file("README.txt", b"just some text, not a kernel\n");
    c.refuses("[ros]\nkernel = \"README.txt\"\n", &["not a Linux kernel", "README.txt"]);
}

#[test]
fn truncated_kernel_is_refused() {
    let c = Case::new("truncated");
    let mut a = asm();
    exit_with(&mut a, 0);
    let mut k = tiny_kernel(a);
    k.truncate(k.len() - 100);
    c.file("cut.elf", &k);
    c.refuses("[ros]\nkernel = \"cut.elf\"\n", &["truncated", "segment 0"]);
}

#[test]
fn corrupt_kernel_header_is_refused() {
    let c = Case::new("corrupt");
    let mut a = asm();
    exit_with(&mut a, 0);
    let mut k = tiny_kernel(a);
    k[18] = 0x28; // e_machine: ARM
    c.file("arm.elf", &k);
    c.refuses("[ros]\nkernel = \"arm.elf\"\n", &["unsupported ELF kernel", "x86-64"]);
}

#[test]
fn initramfs_larger_than_memory_is_refused() {
    let c = Case::new("bigrd");
    c.file("big.cpio", &vec![0u8; 20 << 20]);
    c.refuses(
        "[ros]\nkernel = \"vmlinux\"\nmemory = \"24M\"\ninitramfs = \"big.cpio\"\n",
        &["too small", "initramfs", "at least"],
    );
}

#[test]
fn partitioned_vms_check_their_hrt_against_its_partition() {
    let c = Case::new("both");
    // A Linux kernel in [hrt].
    c.refuses("[ros]\nkernel = \"vmlinux\"\n[hrt]\nkernel = \"vmlinux\"\n", &["is a Linux kernel", "[ros]"]);
    // A 32-bit Multiboot2 kernel linked at 2 MiB: inside the ROS's memory, not the HRT's.
    let mut a = duet_tests::asm32();
    exit_with(&mut a, 0);
    c.file("low.elf", &duet_tests::tiny_mb2_kernel(a));
    c.refuses(
        "[ros]\nkernel = \"vmlinux\"\nmemory = \"32M\"\n[hrt]\nkernel = \"low.elf\"\n",
        &["low.elf cannot boot as the HRT", "not inside guest RAM"],
    );
    // duet's own HRT (64-bit HVM entry) fits; the summary shows both partitions.
    let hrt = duet_tests::guest_image("hrt.elf");
    let config = format!(
        "[ros]\nkernel = \"vmlinux\"\nmemory = \"32M\"\n[hrt]\nvcpus = 2\nmemory = \"64M\"\nkernel = \"{}\"\nboot = \"on-request\"\n",
        hrt.display()
    );
    let (code, stdout, stderr) = c.duet(&["check"], &config);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("hrt: 2 vCPU(s), 64 MiB at 0x2000000..0x6000000 (partitioned VM; boots on request)"), "{stdout}");
    assert!(stdout.contains("64-bit HVM entry"), "{stdout}");
    assert!(stdout.contains("hrt forwarding: poll"), "the default mode: {stdout}");
    let (code, stdout, stderr) =
        c.duet(&["check"], &format!("{config}forward = \"adaptive\"\nforward_spin_us = 250\n"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("hrt forwarding: adaptive (spin 250 us"), "{stdout}");
    c.refuses(&format!("{config}forward = \"sometimes\"\n"), &["vm.toml:9", "hrt.forward", "`notify`"]);
    // Sizes that cannot be laid out.
    c.refuses("[ros]\nkernel = \"vmlinux\"\n[hrt]\nkernel = \"low.elf\"\nmemory = \"16M\"\nvcpus = 65\n", &["hrt.vcpus", "65"]);
}

#[test]
fn a_multiboot2_kernel_checks_ok_in_hrt_and_is_refused_in_ros() {
    let c = Case::new("mb2");
    let mut a = duet_tests::asm32();
    duet_tests::exit_with(&mut a, 0);
    c.file("hrt.elf", &duet_tests::tiny_mb2_kernel(a));
    let (code, stdout, stderr) = c.duet(&["check"], "[hrt]\nkernel = \"hrt.elf\"\nmemory = \"32M\"\ncmdline = \"hello\"\n");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("hrt: 1 vCPU(s), 32 MiB") && stdout.contains("(Multiboot2, loads at 0x200000"), "{stdout}");
    c.refuses("[ros]\nkernel = \"hrt.elf\"\n", &["is a Multiboot2 kernel", "[hrt] section"]);
}

#[test]
fn duets_own_hrt_in_ros_is_refused_as_a_multiboot2_kernel() {
    // hrt.elf is an x86-64 ELF, as a vmlinux is; its Multiboot2 header (and no Linux ELF note) tells them apart.
    let c = Case::new("hrt-in-ros");
    let hrt = duet_tests::guest_image("hrt.elf");
    let config = format!("[ros]\nkernel = \"{}\"\nmemory = \"64M\"\n", hrt.display());
    let (code, stdout, stderr) = c.duet(&["check"], &config);
    assert_eq!(code, EXIT_CONFIG, "{stdout}{stderr}");
    assert!(stderr.contains("is a Multiboot2 kernel") && stderr.contains("[hrt] section"), "{stderr}");
    assert!(stderr.contains(&path(&hrt)), "{stderr}");
    assert!(!stdout.contains("vmlinux (ELF)"), "{stdout}");
    // In [hrt] it checks.
    let (code, _, stderr) = c.duet(&["check"], &format!("[hrt]\nkernel = \"{}\"\nmemory = \"64M\"\n", hrt.display()));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn a_malformed_multiboot2_kernel_gets_a_specific_error() {
    let c = Case::new("mb2-bad");
    let mut a = duet_tests::asm32();
    duet_tests::exit_with(&mut a, 0);
    let mut k = duet_tests::tiny_mb2_kernel(a);
    k[0x1000 + 12] ^= 1; // the header checksum
    c.file("bad.elf", &k);
    c.refuses("[hrt]\nkernel = \"bad.elf\"\n", &["cannot boot the Multiboot2 kernel", "bad checksum"]);
}

#[test]
fn toml_syntax_error_has_a_line() {
    Case::new("syntax").refuses("[ros]\nkernel = \"vmlinux\n", &["vm.toml:2"]);
}

#[test]
fn missing_ros_section_is_explained() {
    Case::new("noros").refuses("[console]\noutput = \"none\"\n", &["[ros]"]);
}

#[test]
fn console_file_without_path_is_refused() {
    Case::new("console").refuses("[ros]\nkernel = \"vmlinux\"\n[console]\noutput = \"file\"\n", &["console.path"]);
}

#[test]
fn empty_kernel_file_is_refused() {
    let c = Case::new("empty");
    c.file("empty.elf", b"");
    c.refuses("[ros]\nkernel = \"empty.elf\"\n", &["empty"]);
}

#[test]
fn command_line_override_is_validated_too() {
    let c = Case::new("override");
    let (code, _, stderr) = c.duet(&["check", "--memory", "1Z"], "[ros]\nkernel = \"vmlinux\"\n");
    assert_eq!(code, EXIT_CONFIG, "{stderr}");
    assert!(stderr.contains("--memory") && stderr.contains("\"1Z\""), "{stderr}");
}

#[test]
fn run_exits_with_the_guest_status() {
    let c = Case::new("status");
    let mut a = asm();
    exit_with(&mut a, 7);
    c.file("seven.elf", &tiny_kernel(a));
    let (code, _, stderr) =
        c.duet(&["run", "--quiet"], "[ros]\nkernel = \"seven.elf\"\nmemory = \"32M\"\n[console]\noutput = \"none\"\n");
    assert_eq!(code, 7, "{stderr}");
}

#[test]
fn run_timeout_has_its_own_exit_code() {
    let c = Case::new("timeout");
    let mut a = asm();
    let mut spin = a.create_label();
    a.set_label(&mut spin).expect("asm");
    a.jmp(spin).expect("asm");
    c.file("spin.elf", &tiny_kernel(a));
    let (code, _, stderr) = c.duet(
        &["run", "--timeout", "0.5"],
        "[ros]\nkernel = \"spin.elf\"\nmemory = \"32M\"\n[console]\noutput = \"none\"\n",
    );
    assert_eq!(code, 124, "{stderr}");
    assert!(stderr.contains("timed out") && stderr.contains("vCPU 0 stopped at RIP="), "{stderr}");
}

#[test]
fn run_guest_fault_has_its_own_exit_code() {
    let c = Case::new("fault");
    let mut a = asm();
    a.ud2().expect("asm");
    c.file("ud2.elf", &tiny_kernel(a));
    let (code, _, stderr) =
        c.duet(&["run"], "[ros]\nkernel = \"ud2.elf\"\nmemory = \"32M\"\n[console]\noutput = \"none\"\n");
    assert_eq!(code, 125, "{stderr}");
    assert!(stderr.contains("triple-faulted") && stderr.contains("RIP="), "{stderr}");
}

#[test]
fn kernel_larger_than_memory_is_refused() {
    // The tiny kernel loads at 16 MiB: 16 MiB of RAM cannot hold it.
    Case::new("smallmem").refuses("[ros]\nkernel = \"vmlinux\"\nmemory = \"16M\"\n", &["too small for the kernel", "16 MiB"]);
}
