//! Everything that must be assembly: the Multiboot2 header, the 32-bit entry and its switch to
//! long mode, the static page tables and GDT, the exception entry stubs, the per-CPU stacks and
//! the real-mode start-up trampoline of the application processors.
//!
//! Ring 0 is emulated instruction by instruction on PVM hosts (../../../shared/PLATFORM.md), so the
//! page tables are built by the assembler, not at run time: entering long mode takes a few dozen
//! instructions. Nothing here uses SSE, XSAVE or int3.

use core::arch::global_asm;

/// Stack of the bootstrap processor.
pub const BSP_STACK_SIZE: usize = 64 * 1024;
/// Stack of each application processor.
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
    /* end tag */
    .balign 8
    .short 0
    .short 0
    .long 8
hrt_mb2_header_end:
    "#,
    options(att_syntax)
);

// ---------------------------------------------------------------------------------------------
// Entry: 32-bit protected mode, paging off, EAX = 0x36D76289, EBX = boot information.
// APs join at hrt_ap_entry32 (from the trampoline) and share the switch to long mode.
// EBP tells them apart in hrt_long: 0 = bootstrap processor, 1 = application processor.
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
    mov $hrt_pml4, %eax
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
    lgdt hrt_gdt_ptr
    ljmp $0x08, $hrt_long

    .code64
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
    "#,
    max_aps = const MAX_APS,
    ap_stack = const AP_STACK_SIZE,
    options(att_syntax)
);

// ---------------------------------------------------------------------------------------------
// Page tables: the first 4 GiB identity-mapped, 2 MiB pages, except the first 2 MiB, mapped with
// 4 KiB pages and page 0 left out (a null pointer faults). 3-4 GiB (the MMIO hole: LAPIC, IOAPIC)
// is uncached. Nothing above 4 GiB is mapped: the `fault` command relies on that.
// The GDT: 0x08 64-bit code, 0x10 flat data, 0x18 32-bit code (AP trampoline).
global_asm!(
    r#"
    .section .data.pagetables, "aw"
    .balign 4096
    .global hrt_pml4
hrt_pml4:
    .quad hrt_pdpt + 0x3
    .fill 511, 8, 0
hrt_pdpt:
    .quad hrt_pd + 0x3
    .quad hrt_pd + 0x1000 + 0x3
    .quad hrt_pd + 0x2000 + 0x3
    .quad hrt_pd + 0x3000 + 0x3
    .fill 508, 8, 0
hrt_pd:
    .quad hrt_pt0 + 0x3
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
hrt_gdt_end:
    .balign 8
    .short 0
    .global hrt_gdt_ptr
hrt_gdt_ptr:
    .short hrt_gdt_end - hrt_gdt - 1
    .quad hrt_gdt
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
    options(att_syntax)
);

// ---------------------------------------------------------------------------------------------
// Exception entry stubs, 16 bytes apart: push a zero error code where the CPU pushes none, push
// the vector, and hand a pointer to [vector, error, rip, cs, rflags, rsp, ss] to hrt_exception.
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
hrt_exc_common:
    cld
    mov %rsp, %rdi
    and $-16, %rsp
    call hrt_exception
    jmp hrt_halt
    "#,
    options(att_syntax)
);

// ---------------------------------------------------------------------------------------------
// The AP start-up trampoline, copied to TRAMPOLINE_ADDR (so position-dependent on it). An AP
// starts at CS=0x0800, IP=0 in real mode; it loads the kernel's GDT, enters protected mode and
// jumps to hrt_ap_entry32 in the kernel, which takes it to long mode on the same page tables.
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
    .long hrt_gdt
hrt_trampoline_end:
    .code64
    "#,
    addr = const TRAMPOLINE_ADDR,
    options(att_syntax)
);
