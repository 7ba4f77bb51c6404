//! The HRT: duet's own specialized kernel, a no_std Multiboot2 kernel for x86-64.
//!
//! Two entries:
//! - standalone (any Multiboot2 loader): `_start` (boot.rs, 32-bit, debug-port mark 2) → long mode
//!   on static page tables → [`hrt_kmain`] (mark 3) → the command named by the first word of the
//!   command line → exit through duet's debug port (docs/debug-port.md);
//! - in a partitioned VM (duet's HVM header tag): every core at `hrt_entry64` (boot.rs, 64-bit,
//!   mark 2) → hvm.rs (core 0: mark 3, the command if any) → the invoke service loop, no exit.
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
mod fwd;
mod hvm;
mod idt;
mod mb2;
mod mem;
mod merge;
mod out;
mod port;
mod serial;
mod smp;
mod user;

use mb2::Info;
use out::Line;

/// An address above the 4 GiB identity map, where nothing is mapped (in a partitioned VM: above
/// guest RAM, which duet identity-maps).
const UNMAPPED: u64 = 0x70_0000_0000;

const COMMANDS: &str = "(commands: hello mem modules fault smp)";

#[no_mangle]
extern "C" fn hrt_kmain(magic: u32, info_addr: u32) -> ! {
    port::mark(3);
    idt::init();
    serial::init();
    let _ = magic; // checked by _start
    let Some(info) = (unsafe { Info::new(info_addr as u64, 1 << 32, 0) }) else {
        Line::new()
            .s("hrt: bad multiboot2 boot information at ")
            .hex(info_addr as u64)
            .print();
        port::exit(4)
    };
    let status = command(&info, false).unwrap_or_else(|| {
        Line::new()
            .s("hrt: no command on the command line ")
            .s(COMMANDS)
            .print();
        2
    });
    port::exit(status)
}

/// Runs the command named by the first word of the command line and returns its status; `None`
/// if the command line names none. `hvm`: entered through the 64-bit entry of a partitioned VM.
fn command(info: &Info, hvm: bool) -> Option<u32> {
    let cmdline = info.cmdline();
    let mut words = cmdline
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty());
    Some(match words.next()? {
        b"hello" => hello(),
        b"mem" => mem(info),
        b"modules" => modules(info),
        b"fault" => fault(),
        b"smp" if hvm => hvm::smp(),
        b"smp" => smp::run(info),
        other => {
            Line::new()
                .s("hrt: unknown command '")
                .b(other)
                .s("' ")
                .s(COMMANDS)
                .print();
            2
        }
    })
}

/// Stops this CPU for good.
fn halt() -> ! {
    loop {
        unsafe { core::arch::asm!("cli", "hlt", options(nomem, nostack)) }
    }
}

fn hello() -> u32 {
    Line::new().s("hrt: hello from the HRT").print();
    0
}

fn mmap_type(t: u32) -> &'static str {
    match t {
        1 => "available",
        2 => "reserved",
        3 => "ACPI reclaimable",
        4 => "ACPI NVS",
        5 => "bad",
        _ => "other",
    }
}

fn mem(info: &Info) -> u32 {
    let Some(tag) = info.find(mb2::TAG_MMAP) else {
        Line::new()
            .s("hrt: mem: no memory map in the boot information")
            .print();
        return 1;
    };
    let mut usable = 0u64;
    for (i, e) in mb2::mmap_entries(tag).enumerate() {
        Line::new()
            .s("hrt: mmap ")
            .dec(i as u64)
            .s(" base=")
            .hex(e.base)
            .s(" length=")
            .hex(e.len)
            .s(" type=")
            .dec(e.typ as u64)
            .s(" (")
            .s(mmap_type(e.typ))
            .s(")")
            .print();
        if e.typ == 1 {
            usable = usable.wrapping_add(e.len);
        }
    }
    Line::new()
        .s("hrt: mem: usable ")
        .dec(usable)
        .s(" bytes (")
        .dec(usable >> 20)
        .s(" MiB)")
        .print();
    0
}

/// FNV-1a, 64 bits.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn modules(info: &Info) -> u32 {
    let mut count = 0u64;
    for (typ, tag) in info.tags() {
        if typ != mb2::TAG_MODULE {
            continue;
        }
        let Some(m) = mb2::module(tag) else { continue };
        let len = m.end.saturating_sub(m.start) as usize;
        Line::new()
            .s("hrt: module ")
            .dec(count)
            .s(" start=")
            .hex(m.start as u64)
            .s(" end=")
            .hex(m.end as u64)
            .s(" size=")
            .dec(len as u64)
            .s(" string='")
            .b(m.string)
            .s("'")
            .print();
        // Page 0 is unmapped standalone; a module there (never placed by duet) is not read. The
        // bytes are read where the boot information says physical memory is mapped.
        let bytes: &[u8] = if len == 0 || m.start < 0x1000 {
            &[]
        } else {
            let at = info.phys_offset + m.start as u64;
            unsafe { core::slice::from_raw_parts(at as usize as *const u8, len) }
        };
        Line::new()
            .s("hrt: module ")
            .dec(count)
            .s(" fnv1a64=")
            .hex16(fnv1a64(bytes))
            .print();
        count += 1;
    }
    Line::new().s("hrt: modules: ").dec(count).print();
    0
}

fn fault() -> u32 {
    Line::new().s("hrt: fault: reading ").hex(UNMAPPED).print();
    let v = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
    // Not reached: the page fault handler ends the VM with 0x8e.
    Line::new()
        .s("hrt: fault: read ")
        .hex(v)
        .s(" without a fault")
        .print();
    1
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
