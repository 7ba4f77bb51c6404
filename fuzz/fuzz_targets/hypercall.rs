//! A hostile ROS: arbitrary hypercall registers, and arbitrary page tables and CR3 in its memory. The
//! decoder and the page walk must never panic, and no translated byte may lie outside the ROS's RAM.
#![no_main]

use hvm::hypercall::{decode, Call, Post, Regs};
use hvm::layout::PartitionLayout;
use hvm::paging::GuestView;
use hvm::Partition;
use libfuzzer_sys::fuzz_target;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

fn u64_at(d: &[u8], i: usize) -> u64 {
    let mut b = [0u8; 8];
    for (j, x) in b.iter_mut().enumerate() {
        *x = d.get(i * 8 + j).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let layout = PartitionLayout::new(16 << 20, 8 << 20).expect("layout");
    let ranges: Vec<_> = layout.all_ram().iter().map(|r| (r.start, r.len as usize)).collect();
    let mem: GuestMemoryMmap<()> = GuestMemoryMmap::from_ranges(&ranges).expect("memory");
    // Registers, CR3 and mode from the first 64 bytes; the rest is scattered as page-table bytes.
    let regs = Regs { rax: u64_at(data, 0), rbx: u64_at(data, 1), rcx: u64_at(data, 2), rdx: u64_at(data, 3), rsi: u64_at(data, 4), rdi: u64_at(data, 5) };
    let cr3 = u64_at(data, 6) & 0x00ff_ffff;
    let flags = u64_at(data, 7);
    for (i, chunk) in data.get(64..).unwrap_or(&[]).chunks(16).enumerate() {
        let at = (u64_at(chunk, 0) & 0x00ff_fff8).max(0) + (i as u64 % 4) * 0x1000;
        let v = u64_at(chunk, 1);
        let _ = mem.write_obj(v, GuestAddress(at % (16 << 20)));
    }
    let from = if flags & 1 == 0 { Partition::Ros } else { Partition::Hrt };
    let call = decode(&regs, from, (flags >> 8) as u32 % 65);
    let ros = |a: u64, n: u64| layout.in_ros_ram(a, n);
    let view = GuestView { mem: &mem, cr3, paging: flags & 2 == 0, user: flags & 4 != 0, allowed: &ros };
    let (va, len, write) = match call {
        Ok(Call::PartitionInfo { buf }) => (buf.addr, buf.len.min(1 << 16), true),
        Ok(Call::HrtReplace { image }) => (image.addr, image.len.min(1 << 16), false),
        Ok(Call::Invoke { post: Post { completion: Some(c), .. }, .. }) => (c, 16, true),
        _ => (regs.rbx, regs.rcx % (1 << 16), flags & 8 != 0),
    };
    if let Ok(pieces) = view.pieces(va, len, write) {
        for (gpa, n) in pieces {
            assert!(layout.in_ros_ram(gpa, n), "a piece escaped the ROS's RAM: {gpa:#x}+{n}");
        }
    }
});
