//! The commands the first word of the command line names (README "Commands and output"), standalone
//! and, before the kernel reports ready, in a partitioned VM.

use crate::mb2::{self, Info};
use crate::out::Line;
use crate::smp;

/// An address above the 4 GiB identity map, where nothing is mapped (in a partitioned VM: above
/// guest RAM, which duet identity-maps).
const UNMAPPED: u64 = 0x70_0000_0000;

/// The command list, for the messages about a missing or unknown command.
pub const COMMANDS: &str = "(commands: hello mem modules fault smp)";

/// Runs the command named by the first word of the command line and returns its status; `None`
/// if the command line names none. `partitioned`: entered through the 64-bit entry of a
/// partitioned VM.
pub fn run(info: &Info, partitioned: bool) -> Option<u32> {
    let cmdline = info.cmdline();
    let mut words = cmdline
        .split(|&b| b == b' ' || b == b'\t')
        .filter(|w| !w.is_empty());
    Some(match words.next()? {
        b"hello" => hello(),
        b"mem" => mem(info),
        b"modules" => modules(info),
        b"fault" => fault(),
        b"smp" if partitioned => smp::run_partitioned(),
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
            // SAFETY: the loader put the module at [start, end) (u32: below 4 GiB, and not in page
            // 0), which `phys_offset` maps (the identity map of 4 GiB standalone, the physical
            // window in a partitioned VM); nobody writes it while it is hashed.
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

/// The `fault` command, and invoke function 4: reads [`UNMAPPED`] (the page fault ends the VM).
pub fn fault() -> u32 {
    Line::new().s("hrt: fault: reading ").hex(UNMAPPED).print();
    // SAFETY: the read faults on purpose: nothing is mapped there (standalone: above the 4 GiB
    // identity map; partitioned: above guest RAM, unless a merged process maps it, and then it is
    // that process's memory, no Rust object), and the page fault ends the VM.
    let v = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
    // Not reached: the page fault handler ends the VM with 0x8e.
    Line::new()
        .s("hrt: fault: read ")
        .hex(v)
        .s(" without a fault")
        .print();
    1
}
