//! The HRT: duet's own specialized kernel, a no_std Multiboot2 kernel for x86-64.
//!
//! Two entries:
//! - standalone (any Multiboot2 loader): `_start` (boot.rs, 32-bit, debug-port mark 2) → long mode
//!   on static page tables → [`hrt_kmain`] (mark 3) → the command named by the first word of the
//!   command line → exit through duet's debug port (docs/debug-port.md);
//! - in a partitioned VM (duet's HVM header tag): every core at `hrt_entry64` (boot.rs, 64-bit,
//!   mark 2) → partitioned.rs (core 0: mark 3, the command if any) → the invoke service loop
//!   (service.rs), no exit.
//!
//! The kernel is linked in the higher half (linker.ld): virtual = KERNEL_VBASE + physical.
//!
//! Exit statuses: 0 success, 1 command failed (`smp`: not every CPU came up; `mem`: no memory map;
//! HVM: not every core reached the service loop), 2 unknown or missing command, 3 panic, 4 not
//! started by a Multiboot2 loader (bad magic) or bad boot information (HVM: also a missing or
//! unusable HVM tag), 0x80 + vector: a CPU exception (`fault`: 0x8e).
//!
//! Ring 0 must not use SSE/AVX (and on PVM hosts cannot): the crate is built without them
//! (.cargo/config.toml), has its own mem* functions (mem.rs) and formatter (out.rs), and
//! check-no-simd.sh verifies the image.

#![no_std]
#![no_main]

mod acpi;
mod boot;
mod canary;
mod commands;
mod cpu;
mod fwd;
mod idt;
mod lapic;
mod mb2;
mod mem;
mod merge;
mod out;
mod partition;
mod partitioned;
mod port;
mod serial;
mod service;
mod smp;
mod split;
mod tsc;
mod user;

use mb2::Info;
use out::Line;

#[no_mangle]
extern "C" fn hrt_kmain(magic: u32, info_addr: u32) -> ! {
    port::mark(3);
    idt::init();
    serial::init();
    let _ = magic; // checked by _start
    // SAFETY: `_start` checked the Multiboot2 magic, so EBX (`info_addr`) is the loader's boot
    // information; the boot page tables identity-map 4 GiB (page 0 aside).
    let Some(info) = (unsafe { Info::new(info_addr as u64, 1 << 32, 0) }) else {
        Line::new()
            .s("hrt: bad multiboot2 boot information at ")
            .hex(info_addr as u64)
            .print();
        port::exit(4)
    };
    let status = commands::run(&info, false).unwrap_or_else(|| {
        Line::new()
            .s("hrt: no command on the command line ")
            .s(commands::COMMANDS)
            .print();
        2
    });
    port::exit(status)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let mut line = Line::forced();
    line.s("hrt: panic");
    if let Some(loc) = info.location() {
        line.s(" at ").s(loc.file()).s(":").dec(loc.line() as u64);
    }
    line.print();
    drop(line);
    port::exit(3)
}
