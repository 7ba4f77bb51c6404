//! duet's own specialized kernel (guests/hrt) on real KVM, booted fully virtualized from an [hrt]
//! section: each command with 1 and 2 vCPUs, modules checked against the host, and no SIMD in ring 0.

use std::time::Duration;

use duet_tests::*;
use vmm::ExitReason;

const LIMIT: Duration = Duration::from_secs(120);

fn hrt(vcpus: u32, cmdline: &str, modules: Vec<config::ModuleConfig>) -> vmm::Outcome {
    let mut hrt = config::HrtConfig::new(guest_image("hrt.elf"));
    hrt.vcpus = vcpus;
    hrt.memory = 64 << 20;
    hrt.cmdline = cmdline.to_string();
    hrt.modules = modules;
    let mut cfg = config::Config::from_hrt(hrt);
    cfg.console.output = config::ConsoleOutput::Capture;
    cfg.console.input = false;
    run(&cfg, LIMIT)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

#[test]
fn hello_on_one_and_two_vcpus() {
    for vcpus in [1, 2] {
        let out = hrt(vcpus, "hello", Vec::new());
        assert_eq!(out.reason, ExitReason::Exit(0), "{}", out.console_text());
        assert!(out.console_text().contains("hrt: hello from the HRT"), "{}", out.console_text());
        let (entry, main) = (out.mark(2), out.mark(3));
        assert!(entry.is_some() && main.is_some() && entry <= main, "entry/main marks: {:?}", out.marks);
    }
}

#[test]
fn mem_reports_the_memory_map() {
    let out = hrt(1, "mem", Vec::new());
    let text = out.console_text();
    assert_eq!(out.reason, ExitReason::Exit(0), "{text}");
    assert!(text.contains("hrt: mmap 2 base=0x100000 length=0x3f00000 type=1 (available)"), "{text}");
    assert!(text.contains("hrt: mem: usable"), "{text}");
}

#[test]
fn smp_brings_up_every_core() {
    for vcpus in [1, 2] {
        let out = hrt(vcpus, "smp", Vec::new());
        let text = out.console_text();
        assert_eq!(out.reason, ExitReason::Exit(0), "{text}");
        assert!(text.contains(&format!("hrt: smp: {vcpus} cpus online")), "{text}");
        if vcpus == 2 {
            assert!(text.contains("hrt: cpu 1 online"), "{text}");
        }
    }
}

#[test]
fn modules_reach_the_kernel_intact() {
    let dir = scratch("hrt-modules");
    let blobs: Vec<Vec<u8>> = vec![(0..70_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect(), b"hello module\n".to_vec()];
    let modules: Vec<config::ModuleConfig> = blobs
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let path = dir.join(format!("m{i}"));
            std::fs::write(&path, b).expect("write module");
            config::ModuleConfig { path, cmdline: format!("module-{i}") }
        })
        .collect();
    for vcpus in [1, 2] {
        let out = hrt(vcpus, "modules", modules.clone());
        let text = out.console_text();
        assert_eq!(out.reason, ExitReason::Exit(0), "{text}");
        for (i, b) in blobs.iter().enumerate() {
            let line = format!("hrt: module {i} fnv1a64={:#x}", fnv1a64(b));
            assert!(text.contains(&line), "expected {line:?} in:\n{text}");
            assert!(text.contains(&format!("string='module-{i}'")), "{text}");
        }
    }
}


#[test]
fn a_deliberate_page_fault_is_reported() {
    for vcpus in [1, 2] {
        let out = hrt(vcpus, "fault", Vec::new());
        let text = out.console_text();
        assert_eq!(out.reason, ExitReason::Exit(0x80 + 14), "{text}");
        assert!(text.contains("hrt: exception page fault (vector 14)") && text.contains("cr2=0x7000000000"), "{text}");
    }
}

#[test]
fn unknown_command_exits_2() {
    let out = hrt(1, "bogus", Vec::new());
    assert_eq!(out.reason, ExitReason::Exit(2), "{}", out.console_text());
}

/// Like Linux (-mno-sse), the HRT uses no SSE/AVX in ring 0; on PVM it could not run at all otherwise.
#[test]
fn the_hrt_image_has_no_simd_instructions() {
    let out = std::process::Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .arg(guest_image("hrt.elf"))
        .output()
        .expect("objdump (binutils) is needed for this check");
    assert!(out.status.success(), "objdump failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let simd: Vec<&str> =
        text.lines().filter(|l| l.contains("%xmm") || l.contains("%ymm") || l.contains("%zmm")).take(5).collect();
    assert!(text.lines().count() > 100, "disassembly too short to be the kernel");
    assert!(simd.is_empty(), "SIMD instructions in the HRT: {simd:#?}");
}
