//! Multiboot2 on real KVM: tiny 32-bit kernels check the entry state the spec promises, and the
//! information structure duet builds.

use std::time::Duration;

use duet_tests::*;
use iced_x86::code_asm::*;
use vmm::ExitReason;

const LIMIT: Duration = Duration::from_secs(60);

/// EAX = 0x36D76289, paging off, protected mode on, IF clear, flat CS/DS; exit statuses say which check failed.
#[test]
fn entry_state_is_exactly_the_specs() {
    let mut a = asm32();
    let mut fails: Vec<CodeLabel> = (0..5).map(|_| a.create_label()).collect();
    a.cmp(eax, 0x36d7_6289u32).expect("asm");
    a.jne(fails[0]).expect("asm");
    a.mov(esi, ebx).expect("asm"); // keep the info address
    a.mov(eax, cr0).expect("asm");
    a.test(eax, 0x8000_0000u32).expect("asm"); // PG clear
    a.jnz(fails[1]).expect("asm");
    a.test(eax, 1u32).expect("asm"); // PE set
    a.jz(fails[1]).expect("asm");
    a.mov(esp, TINY_MB2_LOAD).expect("asm"); // ESP is undefined at entry: a kernel sets its own stack
    a.pushfd().expect("asm");
    a.pop(eax).expect("asm");
    a.mov(dx, 0xf8u32).expect("asm");
    a.out(dx, eax).expect("asm"); // report EFLAGS as a mark
    a.test(eax, 0x200u32).expect("asm"); // IF clear
    a.jnz(fails[2]).expect("asm");
    // The info structure: total_size (u32) then reserved; 8-byte aligned; ends with an end tag.
    a.test(esi, 7u32).expect("asm");
    a.jnz(fails[3]).expect("asm");
    a.mov(ecx, dword_ptr(esi)).expect("asm");
    a.cmp(ecx, 16u32).expect("asm");
    a.jb(fails[3]).expect("asm");
    // Walk tags to find the command line (type 1) and check its first byte.
    a.lea(edi, dword_ptr(esi + 8)).expect("asm");
    let mut walk = a.create_label();
    a.set_label(&mut walk).expect("asm");
    a.mov(eax, dword_ptr(edi)).expect("asm");
    a.test(eax, eax).expect("asm");
    a.jz(fails[4]).expect("asm"); // end tag before the cmdline
    a.cmp(eax, 1u32).expect("asm");
    let mut found = a.create_label();
    a.je(found).expect("asm");
    a.mov(eax, dword_ptr(edi + 4)).expect("asm");
    a.add(eax, 7u32).expect("asm");
    a.and(eax, 0xffff_fff8u32).expect("asm");
    a.add(edi, eax).expect("asm");
    a.jmp(walk).expect("asm");
    a.set_label(&mut found).expect("asm");
    a.movzx(eax, byte_ptr(edi + 8)).expect("asm");
    a.cmp(eax, u32::from(b'm')).expect("asm");
    a.jne(fails[4]).expect("asm");
    exit_with(&mut a, 0);
    for (i, l) in fails.iter_mut().enumerate() {
        a.set_label(l).expect("asm");
        exit_with(&mut a, i as u32 + 1);
    }
    let mut cfg = tiny_mb2_config(&scratch("mb2-entry"), &tiny_mb2_kernel(a));
    cfg.hrt.as_mut().expect("hrt").cmdline = "mb2-cmdline".into();
    let out = run(&cfg, LIMIT);
    let eflags: Vec<String> = out.marks.iter().map(|m| format!("{:#x}", m.code)).collect();
    assert_eq!(out.reason, ExitReason::Exit(0), "EFLAGS at entry {eflags:?}; {}", out.console_text());
}

/// The serial port and the ACPI RSDP (in the BIOS area, where a PC kernel searches) are there.
#[test]
fn acpi_rsdp_is_in_the_bios_area() {
    let mut a = asm32();
    let mut fail = a.create_label();
    // "RSD PTR " at 0xE0000 (duet's ACPI_START).
    a.mov(eax, dword_ptr(0xe_0000u32)).expect("asm");
    a.cmp(eax, u32::from_le_bytes(*b"RSD ")).expect("asm");
    a.jne(fail).expect("asm");
    a.mov(eax, dword_ptr(0xe_0004u32)).expect("asm");
    a.cmp(eax, u32::from_le_bytes(*b"PTR ")).expect("asm");
    a.jne(fail).expect("asm");
    for b in b"acpi ok\n" {
        a.mov(al, u32::from(*b)).expect("asm");
        a.mov(dx, 0x3f8u32).expect("asm");
        a.out(dx, al).expect("asm");
    }
    exit_with(&mut a, 0);
    a.set_label(&mut fail).expect("asm");
    exit_with(&mut a, 1);
    let out = run(&tiny_mb2_config(&scratch("mb2-acpi"), &tiny_mb2_kernel(a)), LIMIT);
    assert_eq!(out.reason, ExitReason::Exit(0));
    assert_eq!(out.console_text(), "acpi ok\n");
}

#[test]
fn a_multiboot2_kernel_in_ros_is_a_clear_error() {
    let mut a = asm32();
    exit_with(&mut a, 0);
    let dir = scratch("mb2-in-ros");
    let path = dir.join("k.elf");
    std::fs::write(&path, tiny_mb2_kernel(a)).expect("write");
    let cfg = config::Config::from_ros(config::RosConfig::new(path));
    let err = vmm::Vm::new(&cfg).expect_err("refused");
    assert!(err.to_string().contains("is a Multiboot2 kernel: put it in an [hrt] section"), "{err}");
}

#[test]
fn a_linux_kernel_in_hrt_is_a_clear_error() {
    let mut a = asm();
    exit_with(&mut a, 0);
    let cfg = tiny_mb2_config(&scratch("linux-in-hrt"), &tiny_kernel(a));
    let err = vmm::Vm::new(&cfg).expect_err("refused");
    assert!(err.to_string().contains("is a Linux kernel: put it in a [ros] section"), "{err}");
}
