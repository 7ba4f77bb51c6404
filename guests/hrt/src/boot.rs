//! Everything that must be assembly: the Multiboot2 header (with duet's HVM tag), the 32-bit entry
//! and its switch to long mode, the 64-bit entry of a partitioned VM, the static page tables and
//! GDT, the exception and interrupt entry stubs, the per-CPU stacks and the real-mode start-up
//! trampoline of the application processors.
//!
//! The Multiboot2 header and the 32-bit code (`.text.boot`) are linked at their physical addresses;
//! everything else in the higher half, at [`KERNEL_VBASE`] + physical (linker.ld). Addresses that
//! the 32-bit code and the page tables use are therefore written `sym - KERNEL_VBASE`.
//!
//! Ring 0 is emulated instruction by instruction on PVM hosts (../../../shared/PLATFORM.md), so the
//! page tables are built by the assembler, not at run time: entering long mode takes a few dozen
//! instructions. Nothing here uses SSE, XSAVE or int3.

use core::arch::global_asm;

/// Where the kernel is linked: virtual = KERNEL_VBASE + physical (the HVM tag's kernel_vbase).
pub const KERNEL_VBASE: u64 = 0xFFFF_FFFF_8000_0000;
/// Where the HVM tag asks duet to map all guest-physical memory a second time (the tag's
/// phys_map_base): physical address x is virtual PHYS_MAP_BASE + x. In a partitioned VM the kernel
/// reaches every physical address through this window, never through duet's identity map, whose
/// PML4 entries 0-255 an address-space merge replaces (src/partitioned.rs). 1 GiB aligned, the first
/// address of the canonical upper half: far below the kernel window (KERNEL_VBASE).
pub const PHYS_MAP_BASE: u64 = 0xFFFF_8000_0000_0000;
/// The interrupt vector duet sends an HRT core when it posts an invoke (the HVM tag's wake_vector).
pub const WAKE_VECTOR: u32 = 0xF0;
/// The LAPIC's spurious-interrupt vector (SVR).
pub const SPURIOUS_VECTOR: u32 = 0xFF;

/// Stack of the bootstrap processor (core 0 in a partitioned VM).
pub const BSP_STACK_SIZE: usize = 64 * 1024;
/// Stack of each application processor (core i > 0 of a partitioned VM: stack i - 1).
pub const AP_STACK_SIZE: usize = 16 * 1024;
/// Application processors that get a stack; more are left halted in the entry code.
pub const MAX_APS: usize = 63;
/// Physical address the AP trampoline is copied to (SIPI vector 0x08). duet keeps
/// 0x8000-0x8fff free for it: no ACPI table, boot information or module lies there.
pub const TRAMPOLINE_ADDR: usize = 0x8000;
/// The SIPI vector: the page number of [`TRAMPOLINE_ADDR`].
pub const TRAMPOLINE_VECTOR: u32 = (TRAMPOLINE_ADDR >> 12) as u32;

// ---------------------------------------------------------------------------------------------
// The Multiboot2 header (spec 2.0, section 3.1). linker.ld puts it first in the image.
global_asm!(
    r#"
    .section .multiboot2, "a"
    .balign 8
hrt_mb2_header:
    .long 0xE85250D6                        /* magic */
    .long 0                                 /* architecture: i386 (32-bit protected mode) */
    .long hrt_mb2_header_end - hrt_mb2_header
    .long 0x100000000 - (0xE85250D6 + (hrt_mb2_header_end - hrt_mb2_header))
    /* information request, optional: command line (1), modules (3), memory map (6),
       ACPI old RSDP (14), ACPI new RSDP (15) */
    .balign 8
    .short 1
    .short 1
    .long 28
    .long 1, 3, 6, 14, 15
    /* duet's HVM tag (abi::HvmHeaderTag, type 0xF00D, 40 bytes): in a partitioned VM, start
       every HRT core at hrt_entry64 in long mode on duet's page tables, which map kernel_vbase
       onto the HRT partition and all guest memory at phys_map_base. Tag flags bit 0 = optional (Multiboot2 spec 3.1.3): GRUB and
       duet's standalone loader skip it and take the 32-bit entry. */
    .balign 8
    .short 0xF00D
    .short 1                                /* tag flags: optional */
    .long 40
    .long 1                                 /* hvm_flags: bit 0 = use entry64 */
    .long {wake}                            /* wake_vector */
    .quad hrt_entry64                       /* entry64 (virtual, high half) */
    .quad {kvbase}                          /* kernel_vbase */
    .quad {physbase}                        /* phys_map_base: all guest memory again */
    /* end tag */
    .balign 8
    .short 0
    .short 0
    .long 8
hrt_mb2_header_end:
    "#,
    wake = const WAKE_VECTOR,
    kvbase = const KERNEL_VBASE,
    physbase = const PHYS_MAP_BASE,
    options(att_syntax)
);

// ---------------------------------------------------------------------------------------------
// Entry: 32-bit protected mode, paging off, EAX = 0x36D76289, EBX = boot information.
// APs join at hrt_ap_entry32 (from the trampoline) and share the switch to long mode.
// EBP tells them apart in hrt_long: 0 = bootstrap processor, 1 = application processor.
// This code runs at its physical addresses (low); hrt_long_low jumps to the high half, which the
// static page tables map too.
global_asm!(
    r#"
    .section .text.boot, "ax"
    .code32
    .global _start
_start:
    cli
    cld
    mov %eax, %esi
    mov %ebx, %edi
    mov $2, %eax
    out %eax, $0xf8                 /* debug port mark 2: the kernel's first instruction */
    cmp $0x36D76289, %esi
    jne hrt_bad_magic
    xor %ebp, %ebp
    jmp hrt_enter_long
hrt_bad_magic:
    mov $4, %eax
    out %eax, $0xf4                 /* exit 4: not started by a Multiboot2 loader */
1:  hlt
    jmp 1b

    .global hrt_ap_entry32
hrt_ap_entry32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $1, %ebp

hrt_enter_long:
    mov $(hrt_pml4 - {kvbase}), %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax                  /* PAE */
    mov %eax, %cr4
    mov $0xC0000080, %ecx           /* EFER */
    rdmsr
    or $0x100, %eax                 /* LME */
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax            /* PG | PE */
    mov %eax, %cr0
    lgdt (hrt_gdt_ptr - {kvbase})
    ljmp $0x08, $hrt_long_low

    .code64
hrt_long_low:
    movabs $hrt_long, %rax          /* to the high half */
    jmp *%rax

    .section .text, "ax"
hrt_long:
    mov $0x10, %eax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %eax, %eax
    mov %ax, %fs
    mov %ax, %gs
    test %ebp, %ebp
    jnz hrt_ap_long
    mov $hrt_bsp_stack_top, %rsp
    mov %esi, %eax
    mov %edi, %esi                  /* second argument: boot information address */
    mov %eax, %edi                  /* first argument: magic */
    call hrt_kmain
    jmp hrt_halt

hrt_ap_long:
    mov $1, %eax
    lock xadd %eax, hrt_ap_next(%rip)
    cmp ${max_aps}, %eax
    jae hrt_halt                    /* no stack left for this one */
    mov %eax, %edi                  /* argument: the AP's index */
    inc %eax
    imul ${ap_stack}, %eax, %eax
    lea hrt_ap_stacks(%rip), %rsp
    add %rax, %rsp
    call hrt_ap_main

    .global hrt_halt
hrt_halt:
    cli
    hlt
    jmp hrt_halt

// The 64-bit entry of a partitioned VM (the HVM tag's entry64; docs in src/partitioned.rs). Every
// HRT core starts here at once on duet's page tables: RDI = RBX = boot information (physical,
// identity-mapped), RSI = core index, RDX = APIC ID, RSP = 0, IF = 0, IDT limit 0. Core 0 takes
// the BSP stack and runs hrt_partitioned_main. The others wait (no stack yet) until core 0 has set
// up the IDT and the partition description (hrt_partitioned_go), then take application-processor
// stack index - 1 and run hrt_partitioned_core; a core index without a stack halts.
    .global hrt_entry64
hrt_entry64:
    cli
    cld
    test %rsi, %rsi
    jnz hrt_entry64_other
    mov $2, %eax
    out %eax, $0xf8                 /* debug port mark 2: the kernel's first instruction */
    lea hrt_bsp_stack_top(%rip), %rsp
    call hrt_partitioned_main       /* (info, core 0, apic id): RDI, RSI, RDX as entered */
    jmp hrt_halt

hrt_entry64_other:
    cmp ${max_aps}, %rsi
    ja hrt_halt
1:  pause
    cmpl $0, hrt_partitioned_go(%rip)
    je 1b
    mov %rsi, %rax
    imul ${ap_stack}, %rax, %rax
    lea hrt_ap_stacks(%rip), %rsp
    add %rax, %rsp                  /* top of stack index - 1 */
    mov %esi, %edi                  /* first argument: core index */
    mov %edx, %esi                  /* second argument: APIC ID */
    call hrt_partitioned_core
    jmp hrt_halt
    "#,
    max_aps = const MAX_APS,
    ap_stack = const AP_STACK_SIZE,
    kvbase = const KERNEL_VBASE,
    options(att_syntax)
);

// ---------------------------------------------------------------------------------------------
// Page tables: the first 4 GiB identity-mapped, 2 MiB pages, except the first 2 MiB, mapped with
// 4 KiB pages and page 0 left out (a null pointer faults). 3-4 GiB (the MMIO hole: LAPIC, IOAPIC)
// is uncached. The high half: PML4[511] -> a PDPT whose entries 510 and 511 are the PDs of 0-1
// and 1-2 GiB, so KERNEL_VBASE + x maps x for x below 2 GiB (the kernel runs there). Nothing else
// is mapped: the `fault` command relies on that. Entries hold physical addresses (sym - KERNEL_VBASE).
// The GDT: 0x08 64-bit code, 0x10 flat data, 0x18 32-bit code (AP trampoline).
// None of this is used in a partitioned VM: the 64-bit entry runs on duet's GDT and page tables.
global_asm!(
    r#"
    .section .data.pagetables, "aw"
    .balign 4096
    .global hrt_pml4
hrt_pml4:
    .quad hrt_pdpt - {kvbase} + 0x3
    .fill 510, 8, 0
    .quad hrt_pdpt_high - {kvbase} + 0x3
hrt_pdpt:
    .quad hrt_pd - {kvbase} + 0x3
    .quad hrt_pd - {kvbase} + 0x1000 + 0x3
    .quad hrt_pd - {kvbase} + 0x2000 + 0x3
    .quad hrt_pd - {kvbase} + 0x3000 + 0x3
    .fill 508, 8, 0
hrt_pdpt_high:
    .fill 510, 8, 0
    .quad hrt_pd - {kvbase} + 0x3
    .quad hrt_pd - {kvbase} + 0x1000 + 0x3
hrt_pd:
    .quad hrt_pt0 - {kvbase} + 0x3
    .set hrt_i, 1
    .rept 1535
    .quad (hrt_i << 21) | 0x83
    .set hrt_i, hrt_i + 1
    .endr
    .rept 512
    .quad (hrt_i << 21) | 0x9B
    .set hrt_i, hrt_i + 1
    .endr
hrt_pt0:
    .quad 0
    .set hrt_i, 1
    .rept 511
    .quad (hrt_i << 12) | 0x3
    .set hrt_i, hrt_i + 1
    .endr

    .section .data, "aw"
    .balign 16, 0x90
    .global hrt_gdt
hrt_gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF
    .quad 0x00CF93000000FFFF
    .quad 0x00CF9B000000FFFF
    .global hrt_gdt_end
hrt_gdt_end:
    .balign 8
    .short 0
    .global hrt_gdt_ptr
hrt_gdt_ptr:
    .short hrt_gdt_end - hrt_gdt - 1
    .quad hrt_gdt - {kvbase}               /* physical: loaded by 32-bit code */
    .balign 4
    .global hrt_ap_next
hrt_ap_next:
    .long 0

    .section .bss.hrt_stacks, "aw", @nobits
    .balign 4096
hrt_bsp_stack:
    .skip {bsp_stack}
hrt_bsp_stack_top:
hrt_ap_stacks:
    .skip {ap_stacks}
    "#,
    bsp_stack = const BSP_STACK_SIZE,
    ap_stacks = const AP_STACK_SIZE * MAX_APS,
    kvbase = const KERNEL_VBASE,
    options(att_syntax)
);

// ---------------------------------------------------------------------------------------------
// Exception entry stubs, 16 bytes apart: push a zero error code where the CPU pushes none, push
// the vector, and join hrt_exc_common, which saves every register and hands the frame
// (src/user.rs TrapFrame; the CPU aligned RSP to 16, and the 22 words keep it so) to hrt_trap.
// A trap from ring 0 never returns (the report, then the exit); one from CPL3 (src/user.rs) may,
// and then resumes the user code with iretq.
// Vectors with an error code: 8, 10-14, 17, 21, 29, 30 (mask 0x60227D00).
global_asm!(
    r#"
    .section .text, "ax"
    .balign 16, 0x90
    .global hrt_exc_stubs
hrt_exc_stubs:
    .set hrt_v, 0
    .rept 32
    .balign 16, 0x90
    .if ((0x60227D00 >> hrt_v) & 1) == 0
    push $0
    .endif
    push $hrt_v
    jmp hrt_exc_common
    .set hrt_v, hrt_v + 1
    .endr
    .global hrt_exc_common
hrt_exc_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    cld
    mov %rsp, %rdi
    call hrt_trap
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp
    iretq

// The invoke wake-up interrupt (partitioned VM): it only has to end `sti; hlt` in the service
// loop (src/service.rs), so it sends the LAPIC an EOI and returns. The LAPIC's virtual address is
// hrt_lapic (src/lapic.rs): in a partitioned VM the LAPIC page in the physical window, since the
// identity map may be gone (address-space merge).
    .balign 16, 0x90
    .global hrt_wake_isr
hrt_wake_isr:
    push %rax
    mov hrt_lapic(%rip), %rax
    movl $0, 0xb0(%rax)             /* EOI */
    pop %rax
    iretq

// The LAPIC's spurious interrupt: no EOI.
    .balign 16, 0x90
    .global hrt_spurious_isr
hrt_spurious_isr:
    iretq
    "#,
    options(att_syntax)
);

// ---------------------------------------------------------------------------------------------
// The AP start-up trampoline, copied to TRAMPOLINE_ADDR (so position-dependent on it). An AP
// starts at CS=0x0800, IP=0 in real mode; it loads the kernel's GDT (physical address), enters
// protected mode and jumps to hrt_ap_entry32 in the kernel (low, physical = virtual), which takes
// it to long mode on the same page tables. Standalone only: in a partitioned VM low memory is the
// ROS's, and duet starts every HRT core itself.
global_asm!(
    r#"
    .section .rodata.hrt_trampoline, "a"
    .global hrt_trampoline_start
    .global hrt_trampoline_end
    .code16
hrt_trampoline_start:
    cli
    cld
    xor %ax, %ax
    mov %ax, %ds
    lgdtl {addr} + (hrt_tramp_gdtp - hrt_trampoline_start)
    mov %cr0, %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x18, $hrt_ap_entry32
    .balign 8
hrt_tramp_gdtp:
    .short hrt_gdt_end - hrt_gdt - 1
    .long hrt_gdt - {kvbase}
hrt_trampoline_end:
    .code64
    "#,
    addr = const TRAMPOLINE_ADDR,
    kvbase = const KERNEL_VBASE,
    options(att_syntax)
);
