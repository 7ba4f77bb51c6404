//! A hostile virtio-blk driver: arbitrary descriptor tables, available rings and buffer contents, driven
//! through the virtio-mmio registers the way Linux sets the device up. The device must never panic, must
//! complete no more chains than were offered, and must either keep serving or ask for a reset.
#![no_main]

use std::fs::File;
use std::io::Write;
use std::sync::OnceLock;

use devices::virtio::block::{Block, BlockOptions};
use devices::virtio::mmio::MmioTransport;
use devices::EventFdTrigger;
use libfuzzer_sys::fuzz_target;
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FEATURES_OK,
    VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_bindings::virtio_mmio as reg;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const MEM: u64 = 0x4_0000;
const DESC: u64 = 0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
const BUFFERS: u64 = 0x3000;

/// One 64-sector image for the whole run (unlinked at once; every device shares its open file, so the
/// device's exclusive `flock` is taken again on the same open file description).
fn image() -> &'static File {
    static IMAGE: OnceLock<File> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("duet-fuzz-blk-{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).expect("image");
        std::fs::remove_file(&path).expect("unlink image");
        f.write_all(&[0x5a; 64 * 512]).expect("image contents");
        f
    })
}

fn w32(t: &mut MmioTransport<Block>, offset: u32, v: u32) {
    t.write(u64::from(offset), &v.to_le_bytes());
}

fn r32(t: &mut MmioTransport<Block>, offset: u32) -> u32 {
    let mut b = [0u8; 4];
    t.read(u64::from(offset), &mut b);
    u32::from_le_bytes(b)
}

/// A descriptor address: mostly one of the buffer slots, sometimes a wild one.
fn address(sel: u8, off: u8) -> u64 {
    const WILD: [u64; 16] = [
        MEM - 8, MEM, MEM - 1, 1 << 40, u64::MAX - 7, u64::MAX, 0, DESC + 8, AVAIL, USED, USED + 2, 0x1_0000_0000,
        MEM - 0x200, 1, 0x8000_0000_0000_0000, BUFFERS - 1,
    ];
    if sel < 0xf0 { BUFFERS + u64::from(sel) * 0x400 + u64::from(off) } else { WILD[usize::from(sel & 0xf)] }
}

fuzz_target!(|data: &[u8]| {
    let byte = |i: usize| data.get(i).copied().unwrap_or(0);
    let mem: GuestMemoryMmap<()> = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM as usize)]).expect("memory");
    let opts = BlockOptions { read_only: byte(0) & 1 != 0, serial: Some("fuzz".into()) };
    let Ok(image) = image().try_clone() else { return };
    let Ok(block) = Block::new(image, opts) else { return };
    let mut t = MmioTransport::new(block, mem.clone(), EventFdTrigger::new().expect("eventfd"));

    // Set the device up as Linux does, with a queue size and features the input picks.
    let size = 1u16 << (byte(1) % 9);
    w32(&mut t, reg::VIRTIO_MMIO_STATUS, 0);
    w32(&mut t, reg::VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    w32(&mut t, reg::VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    let mut features = [0u32; 2];
    for (sel, f) in features.iter_mut().enumerate() {
        w32(&mut t, reg::VIRTIO_MMIO_DEVICE_FEATURES_SEL, sel as u32);
        *f = r32(&mut t, reg::VIRTIO_MMIO_DEVICE_FEATURES);
    }
    // Maybe decline FLUSH (write-through) and indirect descriptors; VERSION_1 always stays.
    if byte(0) & 2 != 0 {
        features[0] &= !(1 << virtio_bindings::virtio_blk::VIRTIO_BLK_F_FLUSH);
    }
    if byte(0) & 4 != 0 {
        features[0] &= !(1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_INDIRECT_DESC);
    }
    for (sel, f) in features.iter().enumerate() {
        w32(&mut t, reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL, sel as u32);
        w32(&mut t, reg::VIRTIO_MMIO_DRIVER_FEATURES, *f);
    }
    let s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
    w32(&mut t, reg::VIRTIO_MMIO_STATUS, s);
    w32(&mut t, reg::VIRTIO_MMIO_QUEUE_SEL, 0);
    w32(&mut t, reg::VIRTIO_MMIO_QUEUE_NUM, u32::from(size));
    w32(&mut t, reg::VIRTIO_MMIO_QUEUE_DESC_LOW, DESC as u32);
    w32(&mut t, reg::VIRTIO_MMIO_QUEUE_AVAIL_LOW, AVAIL as u32);
    w32(&mut t, reg::VIRTIO_MMIO_QUEUE_USED_LOW, USED as u32);
    w32(&mut t, reg::VIRTIO_MMIO_QUEUE_READY, 1);
    w32(&mut t, reg::VIRTIO_MMIO_STATUS, s | VIRTIO_CONFIG_S_DRIVER_OK);
    assert!(t.is_active(), "a well-formed setup must activate the device");

    // Descriptors: 8 input bytes each (slot, offset, length, length scale and flags, next).
    let descs = usize::from(byte(2)).min(usize::from(size));
    let mut at = 3;
    for i in 0..descs {
        let d = |k: usize| byte(at + k);
        let mut len = u32::from(u16::from_le_bytes([d(2), d(3)]));
        if d(4) & 0x80 != 0 {
            len <<= 12;
        }
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&address(d(0), d(1)).to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&u16::from(d(4) & 0x7).to_le_bytes());
        raw[14..].copy_from_slice(&u16::from_le_bytes([d(5), d(6)]).to_le_bytes());
        let _ = mem.write_slice(&raw, GuestAddress(DESC + 16 * i as u64));
        at += 8;
    }
    // The available ring: heads, then an index that may run ahead of them.
    let heads = usize::from(byte(at));
    for i in 0..heads.min(usize::from(size)) {
        let _ = mem.write_obj(u16::from(byte(at + 1 + i)), GuestAddress(AVAIL + 4 + 2 * i as u64));
    }
    at += 1 + heads.min(usize::from(size));
    let avail_idx = heads as u16 + u16::from(byte(at) >> 6) * size;
    let _ = mem.write_obj(avail_idx, GuestAddress(AVAIL + 2));
    // Buffer contents (request headers, indirect tables, data): the rest of the input.
    let _ = mem.write_slice(data.get(at + 1..).unwrap_or(&[]), GuestAddress(BUFFERS));

    t.notify(0);
    t.notify(0);
    let used_idx: u16 = mem.read_obj(GuestAddress(USED + 2)).expect("used idx");
    let broken = r32(&mut t, reg::VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET != 0;
    assert!(broken || used_idx == avail_idx, "a healthy device completes exactly the chains offered");
    assert!(used_idx <= avail_idx.max(size), "more completions than chains offered");
    assert_eq!(broken, !t.is_active());
});
