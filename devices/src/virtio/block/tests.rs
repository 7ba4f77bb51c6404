use std::io::Write;
use std::os::unix::fs::FileExt;

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_S_IOERR as IOERR, VIRTIO_BLK_S_OK as OK, VIRTIO_BLK_S_UNSUPP as UNSUPP, VIRTIO_BLK_T_FLUSH as FLUSH,
    VIRTIO_BLK_T_GET_ID as GET_ID, VIRTIO_BLK_T_IN as IN, VIRTIO_BLK_T_OUT as OUT,
};
use virtio_bindings::virtio_config::VIRTIO_CONFIG_S_NEEDS_RESET;
use virtio_bindings::virtio_mmio as reg;
use virtio_bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vmm_sys_util::tempfile::TempFile;

use super::*;
use crate::virtio::mmio::CONFIG_OFFSET;
use crate::virtio::testing::{Driver, Seg, BUFFERS, MEM_SIZE};

const SECTORS: u64 = 64;
const HDR: u64 = BUFFERS;
const STATUS: u64 = BUFFERS + 0x100;
const DATA: u64 = BUFFERS + 0x1_0000;
const NEXT: u16 = VRING_DESC_F_NEXT as u16;
const WRITE: u16 = VRING_DESC_F_WRITE as u16;

/// The image's byte at `offset` before any test writes it.
fn pattern(offset: u64) -> u8 {
    (offset / SECTOR_SIZE * 7 + offset) as u8
}

fn image(sectors: u64) -> TempFile {
    let f = TempFile::new().expect("temp file");
    let bytes: Vec<u8> = (0..sectors * SECTOR_SIZE).map(pattern).collect();
    f.as_file().write_all(&bytes).expect("image write");
    f
}

fn device(img: &TempFile, options: BlockOptions) -> Block {
    Block::open(img.as_path(), options).expect("block device")
}

fn probe(img: &TempFile, options: BlockOptions) -> Driver<Block> {
    Driver::probe(device(img, options), u64::MAX)
}

fn header(d: &Driver<Block>, kind: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&kind.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    d.write_bytes(HDR, &h);
}

/// Submits one chain, kicks, and returns (status byte, used length).
fn submit(d: &mut Driver<Block>, segs: &[Seg]) -> (u8, u32) {
    d.write_bytes(STATUS, &[0xee]);
    let head = d.add_chain(0, segs);
    d.kick(0);
    let used = d.take_used(0);
    assert_eq!(used.len(), 1, "one completion");
    assert_eq!(used[0].0, u32::from(head));
    (d.read_bytes(STATUS, 1)[0], used[0].1)
}

fn hdr() -> Seg {
    Seg(HDR, 16, false)
}

fn status() -> Seg {
    Seg(STATUS, 1, true)
}

fn image_bytes(img: &TempFile, offset: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    img.as_file().read_exact_at(&mut v, offset).expect("image read");
    v
}

fn expected(offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64).map(pattern).collect()
}

#[test]
fn config_and_features_describe_the_disk() {
    let img = image(SECTORS);
    let mut d = Driver::new(device(&img, BlockOptions::default()));
    let mut cap = [0u8; 8];
    d.t.read(CONFIG_OFFSET, &mut cap);
    assert_eq!(u64::from_le_bytes(cap), SECTORS);
    // Linux reads 64-bit fields as two 32-bit halves.
    assert_eq!(d.r32(CONFIG_OFFSET as u32), SECTORS as u32);
    assert_eq!(d.r32(CONFIG_OFFSET as u32 + 4), 0);
    assert_eq!(d.r32(CONFIG_OFFSET as u32 + 8), SIZE_MAX);
    assert_eq!(d.r32(CONFIG_OFFSET as u32 + 12), SEG_MAX);
    let f = d.device_features();
    for bit in [VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX] {
        assert_ne!(f & (1 << bit), 0, "feature {bit}");
    }
    assert_eq!(f & (1 << VIRTIO_BLK_F_RO), 0);
    assert_ne!(f & VIRTIO_RING_F_INDIRECT_DESC, 0);
    assert_eq!(d.r32(reg::VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_BLOCK);
    let ro = Driver::new(device(&image(1), BlockOptions { read_only: true, serial: None })).device_features();
    assert_ne!(ro & (1 << VIRTIO_BLK_F_RO), 0);
}

#[test]
fn a_partial_last_sector_is_not_visible() {
    let img = image(3);
    img.as_file().write_all(&[1; 100]).expect("append");
    assert_eq!(device(&img, BlockOptions::default()).capacity(), 3);
}

#[test]
fn reads_land_in_guest_memory() {
    let img = image(SECTORS);
    let mut d = probe(&img, BlockOptions::default());
    header(&d, IN, 2);
    let (st, len) = submit(&mut d, &[hdr(), Seg(DATA, 4096, true), status()]);
    assert_eq!((u32::from(st), len), (OK, 4097));
    assert_eq!(d.read_bytes(DATA, 4096), expected(2 * SECTOR_SIZE, 4096));
    assert!(d.irq_raised());
    assert_eq!(d.r32(reg::VIRTIO_MMIO_INTERRUPT_STATUS), reg::VIRTIO_MMIO_INT_VRING);
    assert_eq!(d.t.device().failed_requests(), 0);
}

#[test]
fn reads_and_writes_scatter_over_segments_of_any_layout() {
    let img = image(SECTORS);
    let mut d = probe(&img, BlockOptions::default());
    // Write 4 KiB from three uneven segments, the header split in two.
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 13 + 5) as u8).collect();
    d.write_bytes(DATA, &data[..512]);
    d.write_bytes(DATA + 0x10000, &data[512..1536]);
    d.write_bytes(DATA + 0x30000, &data[1536..]);
    header(&d, OUT, 10);
    let segs = [
        Seg(HDR, 8, false),
        Seg(HDR + 8, 8, false),
        Seg(DATA, 512, false),
        Seg(DATA + 0x10000, 1024, false),
        Seg(DATA + 0x30000, 2560, false),
        status(),
    ];
    assert_eq!(submit(&mut d, &segs), (OK as u8, 1));
    assert_eq!(image_bytes(&img, 10 * SECTOR_SIZE, 4096), data);
    // Read it back into two segments, the second of which also holds the status byte.
    header(&d, IN, 10);
    let out = DATA + 0x50000;
    let (st, len) = submit(&mut d, &[hdr(), Seg(out, 1000, true), Seg(out + 1000, 4096 - 1000 + 1, true)]);
    assert_eq!((u32::from(d.read_bytes(out + 4096, 1)[0]), len), (OK, 4097));
    assert_eq!(st, 0xee, "the status went to the chain's last byte, not to STATUS");
    assert_eq!(d.read_bytes(out, 4096), data);
}

#[test]
fn a_flushed_write_is_in_the_host_file() {
    let img = image(SECTORS);
    let mut d = probe(&img, BlockOptions::default());
    d.write_bytes(DATA, &[0xab; 1024]);
    header(&d, OUT, SECTORS - 2);
    assert_eq!(submit(&mut d, &[hdr(), Seg(DATA, 1024, false), status()]), (OK as u8, 1));
    header(&d, FLUSH, 0);
    assert_eq!(submit(&mut d, &[hdr(), status()]), (OK as u8, 1));
    // Through a second, independent open of the file.
    let other = std::fs::read(img.as_path()).expect("read image");
    assert_eq!(&other[((SECTORS - 2) * SECTOR_SIZE) as usize..], &[0xab; 1024]);
    assert_eq!(other[..((SECTORS - 2) * SECTOR_SIZE) as usize], expected(0, ((SECTORS - 2) * SECTOR_SIZE) as usize));
}

#[test]
fn without_flush_negotiated_writes_still_work() {
    let img = image(SECTORS);
    let mut d = Driver::probe(device(&img, BlockOptions::default()), !(1 << VIRTIO_BLK_F_FLUSH));
    d.write_bytes(DATA, &[0x5a; 512]);
    header(&d, OUT, 0);
    assert_eq!(submit(&mut d, &[hdr(), Seg(DATA, 512, false), status()]), (OK as u8, 1));
    assert_eq!(image_bytes(&img, 0, 512), vec![0x5a; 512]);
}

#[test]
fn get_id_returns_the_serial_nul_padded() {
    let img = image(1);
    let mut d = probe(&img, BlockOptions { read_only: false, serial: Some("duet-disk-0".into()) });
    d.write_bytes(DATA, &[0xff; 20]);
    header(&d, GET_ID, 0);
    assert_eq!(submit(&mut d, &[hdr(), Seg(DATA, 20, true), status()]), (OK as u8, 21));
    let mut want = b"duet-disk-0".to_vec();
    want.resize(20, 0);
    assert_eq!(d.read_bytes(DATA, 20), want);
    assert!(matches!(
        Block::open(img.as_path(), BlockOptions { read_only: true, serial: Some("x".repeat(21)) }),
        Err(BlockError::SerialTooLong(_))
    ));
}

#[test]
fn a_read_only_disk_refuses_writes() {
    let img = image(SECTORS);
    let mut d = probe(&img, BlockOptions { read_only: true, serial: None });
    d.write_bytes(DATA, &[0; 512]);
    header(&d, OUT, 0);
    assert_eq!(submit(&mut d, &[hdr(), Seg(DATA, 512, false), status()]), (IOERR as u8, 1));
    assert_eq!(image_bytes(&img, 0, 512), expected(0, 512));
    header(&d, FLUSH, 0);
    assert_eq!(submit(&mut d, &[hdr(), status()]), (OK as u8, 1));
    header(&d, IN, 0);
    assert_eq!(submit(&mut d, &[hdr(), Seg(DATA, 512, true), status()]), (OK as u8, 513));
}

#[test]
fn unknown_request_types_are_unsupported() {
    let img = image(SECTORS);
    let mut d = probe(&img, BlockOptions::default());
    for kind in [2, 11, 13, 99, u32::MAX] {
        header(&d, kind, 0);
        assert_eq!(submit(&mut d, &[hdr(), Seg(DATA, 512, true), status()]), (UNSUPP as u8, 1), "type {kind}");
    }
    assert_eq!(d.t.device().failed_requests(), 5);
}

#[test]
fn an_image_in_use_is_refused() {
    let img = image(1);
    let _first = device(&img, BlockOptions::default());
    assert!(matches!(Block::open(img.as_path(), BlockOptions::default()), Err(BlockError::Locked(_))));
    let missing = Block::open(std::path::Path::new("/nonexistent/duet.img"), BlockOptions::default());
    assert!(matches!(missing, Err(BlockError::Open { .. })));
}

#[test]
fn a_batch_completes_in_order_with_one_interrupt() {
    let img = image(SECTORS);
    let mut d = probe(&img, BlockOptions::default());
    header(&d, IN, 0);
    let mut heads = Vec::new();
    // 80 chains of 3 fill 240 of the 256 descriptors.
    for i in 0..80u64 {
        heads.push(d.add_chain(0, &[hdr(), Seg(DATA + i * 512, 512, true), Seg(STATUS + i, 1, true)]));
    }
    d.kick(0);
    let used = d.take_used(0);
    assert_eq!(used.iter().map(|u| u.0 as u16).collect::<Vec<_>>(), heads);
    assert!(used.iter().all(|u| u.1 == 513));
    assert!(d.irq_raised());
    assert!(!d.irq_raised());
    // Around the ring more than once.
    for _ in 0..6 {
        for i in 0..80u64 {
            d.add_chain(0, &[hdr(), Seg(DATA + i * 512, 512, true), Seg(STATUS + i, 1, true)]);
        }
        d.kick(0);
        assert_eq!(d.take_used(0).len(), 80);
    }
    assert_eq!(d.read_bytes(STATUS, 80), vec![OK as u8; 80]);
}

#[test]
fn indirect_descriptor_tables_are_followed() {
    let img = image(SECTORS);
    let mut d = probe(&img, BlockOptions::default());
    header(&d, IN, 1);
    let table = DATA + 0x8_0000;
    write_table(&d, table, &[(HDR, 16, NEXT, 1), (DATA, 512, NEXT | WRITE, 2), (STATUS, 1, WRITE, 0)]);
    let (st, len) = submit_raw(&mut d, &[(table, 48, VRING_DESC_F_INDIRECT as u16, 0)]);
    assert_eq!((u32::from(st), len), (OK, 513));
    assert_eq!(d.read_bytes(DATA, 512), expected(SECTOR_SIZE, 512));
}

// ---- A hostile driver: every malformed request ends with an error status (or none), never a panic,
// ---- never a byte outside guest memory, and the device keeps serving.

/// Writes an indirect table of (addr, len, flags, next).
fn write_table(d: &Driver<Block>, at: u64, descs: &[(u64, u32, u16, u16)]) {
    for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..].copy_from_slice(&next.to_le_bytes());
        d.write_bytes(at + 16 * i as u64, &raw);
    }
}

/// Writes descriptors 0.. of queue 0 exactly as given (flags and next untouched), publishes head 0 and
/// kicks; returns (status byte, used length).
fn submit_raw(d: &mut Driver<Block>, descs: &[(u64, u32, u16, u16)]) -> (u8, u32) {
    d.write_bytes(STATUS, &[0xee]);
    for (i, &(addr, len, flags, next)) in descs.iter().enumerate() {
        d.write_desc(0, i as u16, addr, len, flags, next);
    }
    d.publish(0, 0);
    d.kick(0);
    let used = d.take_used(0);
    assert_eq!(used.len(), 1);
    (d.read_bytes(STATUS, 1)[0], used[0].1)
}

/// After a malformed request the device still serves a good one.
fn still_serves(d: &mut Driver<Block>) {
    assert!(d.t.is_active(), "the device went out of service");
    header(d, IN, 0);
    assert_eq!(submit(d, &[hdr(), Seg(DATA, 512, true), status()]), (OK as u8, 513));
}

#[test]
fn buffers_outside_guest_memory_get_ioerr() {
    let img = image(SECTORS);
    let mut d = probe(&img, BlockOptions::default());
    for (addr, len) in
        [(MEM_SIZE - 100, 512), (MEM_SIZE, 512), (1 << 40, 512), (u64::MAX - 255, 512), (0, u32::MAX - 64)]
    {
        header(&d, IN, 0);
        assert_eq!(submit(&mut d, &[hdr(), Seg(addr, len, true), status()]), (IOERR as u8, 1), "{addr:#x}+{len:#x}");
        d.write_bytes(DATA, &[7; 512]);
        header(&d, OUT, 0);
        assert_eq!(submit(&mut d, &[hdr(), Seg(addr, len, false), status()]), (IOERR as u8, 1));
        // The header itself (partly) out of memory.
        assert_eq!(submit(&mut d, &[Seg(addr.max(MEM_SIZE - 8), 16, false), status()]), (IOERR as u8, 1));
    }
    // A chain of more than 4 GiB ends where it crosses that size (virtio 1.2 §2.7.5.2): no status.
    header(&d, IN, 0);
    assert_eq!(submit(&mut d, &[hdr(), Seg(0, u32::MAX, true), status()]), (0xee, 0));
    // The status byte out of memory: nothing can be reported, and nothing is written.
    header(&d, IN, 0);
    d.write_bytes(DATA, &[7; 512]);
    let (st, len) = submit(&mut d, &[hdr(), Seg(DATA, 512, true), Seg(MEM_SIZE + 10, 1, true)]);
    assert_eq!((st, len), (0xee, 0));
    assert_eq!(d.read_bytes(DATA, 512), vec![7; 512]);
    assert_eq!(image_bytes(&img, 0, 4096), expected(0, 4096));
    still_serves(&mut d);
}

#[test]
fn descriptor_loops_and_wild_next_indices_get_ioerr() {
    let img = image(SECTORS);
    let mut d = probe(&img, BlockOptions::default());
    header(&d, IN, 0);
    // 0 -> 1 -> 1 -> ...: the status descriptor points to itself.
    assert_eq!(submit_raw(&mut d, &[(HDR, 16, NEXT, 1), (STATUS, 1, NEXT | WRITE, 1)]), (IOERR as u8, 1));
    // 0 -> 1 -> 2 -> 1 -> ...: the error status lands in the last writable buffer the walk reached.
    d.write_bytes(DATA, &[7; 512]);
    let looped = [(HDR, 16, NEXT, 1), (DATA, 512, NEXT | WRITE, 2), (STATUS, 1, NEXT | WRITE, 1)];
    let (st, len) = submit_raw(&mut d, &looped);
    assert_eq!(len, 1);
    assert!(st == IOERR as u8 || d.read_bytes(DATA + 511, 1) == [IOERR as u8]);
    assert_eq!(d.read_bytes(DATA, 511), vec![7; 511], "no data was read into a looping chain");
    // A descriptor that points to itself.
    assert_eq!(submit_raw(&mut d, &[(HDR, 16, NEXT, 0)]), (0xee, 0));
    // A next index beyond the table.
    let wild = [(HDR, 16, NEXT, 1), (STATUS, 1, NEXT | WRITE, 999)];
    assert_eq!(submit_raw(&mut d, &wild), (IOERR as u8, 1));
    still_serves(&mut d);
}

#[test]
fn buffers_in_the_wrong_direction_get_ioerr() {
    let img = image(SECTORS);
    let mut d = probe(&img, BlockOptions::default());
    d.write_bytes(DATA, &[9; 512]);
    // The header in a device-writable buffer: no readable header at all.
    header(&d, OUT, 0);
    assert_eq!(submit(&mut d, &[Seg(HDR, 16, true), Seg(DATA, 512, true), status()]), (IOERR as u8, 1));
    // A read whose data buffer is device-readable.
    header(&d, IN, 0);
    assert_eq!(submit(&mut d, &[hdr(), Seg(DATA, 512, false), status()]), (IOERR as u8, 1));
    assert_eq!(d.read_bytes(DATA, 512), vec![9; 512], "nothing was read into a readable buffer");
    // A write whose data buffer is device-writable.
    header(&d, OUT, 0);
    assert_eq!(submit(&mut d, &[hdr(), Seg(DATA, 512, true), status()]), (IOERR as u8, 1));
    // The status in a device-readable buffer: the error goes to the last writable byte.
    header(&d, IN, 0);
    assert_eq!(submit(&mut d, &[hdr(), Seg(DATA, 512, true), Seg(STATUS, 1, false)]), (0xee, 1));
    assert_eq!(d.read_bytes(DATA + 511, 1), [IOERR as u8]);
    // Readable after writable.
    header(&d, OUT, 0);
    assert_eq!(submit(&mut d, &[hdr(), Seg(DATA + 512, 1, true), Seg(DATA, 512, false), status()]), (IOERR as u8, 1));
    assert_eq!(image_bytes(&img, 0, 512), expected(0, 512));
    still_serves(&mut d);
}

#[test]
fn bad_lengths_and_sectors_get_ioerr() {
    let img = image(SECTORS);
    let mut d = probe(&img, BlockOptions::default());
    let cases: &[(u32, u64, u32)] = &[
        (IN, 0, 1000),              // not whole sectors
        (OUT, 0, 100),              // not whole sectors
        (IN, SECTORS, 512),         // just past the end
        (IN, SECTORS - 1, 1024),    // straddles the end
        (OUT, SECTORS - 1, 1024),   // straddles the end
        (IN, u64::MAX, 512),        // sector + count overflows
        (OUT, u64::MAX / 512, 512), // offset overflows
    ];
    for &(kind, sector, len) in cases {
        header(&d, kind, sector);
        let st = submit(&mut d, &[hdr(), Seg(DATA, len, kind == IN), status()]);
        assert_eq!(st, (IOERR as u8, 1), "type {kind} sector {sector} len {len}");
    }
    // More data than a request may carry: 20 overlapping 1 MiB segments (descriptors may overlap).
    header(&d, IN, 0);
    let mut segs = vec![hdr()];
    segs.extend((0..20).map(|_| Seg(DATA, 1 << 20, true)));
    segs.push(status());
    assert_eq!(submit(&mut d, &segs), (IOERR as u8, 1));
    // The last sector itself is fine.
    header(&d, IN, SECTORS - 1);
    assert_eq!(submit(&mut d, &[hdr(), Seg(DATA, 512, true), status()]), (OK as u8, 513));
    assert_eq!(image_bytes(&img, 0, (SECTORS * SECTOR_SIZE) as usize), expected(0, (SECTORS * SECTOR_SIZE) as usize));
    still_serves(&mut d);
}

#[test]
fn short_headers_and_missing_status_are_handled() {
    let img = image(SECTORS);
    let mut d = probe(&img, BlockOptions::default());
    header(&d, IN, 0);
    assert_eq!(submit(&mut d, &[Seg(HDR, 8, false), Seg(DATA, 512, true), status()]), (IOERR as u8, 1));
    assert_eq!(submit(&mut d, &[Seg(HDR, 0, false), status()]), (IOERR as u8, 1));
    // No writable byte: completed with nothing written.
    assert_eq!(submit(&mut d, &[hdr()]), (0xee, 0));
    assert_eq!(submit(&mut d, &[hdr(), Seg(STATUS, 0, true)]), (0xee, 0));
    // Only a status byte.
    assert_eq!(submit(&mut d, &[status()]), (IOERR as u8, 1));
    still_serves(&mut d);
}

#[test]
fn malformed_indirect_tables_get_ioerr() {
    let img = image(SECTORS);
    let mut d = probe(&img, BlockOptions::default());
    header(&d, IN, 0);
    let table = DATA + 0x8_0000;
    // A table longer than a request may be: 300 descriptors, all pointing on.
    let long: Vec<_> = (0..300u16).map(|i| (STATUS, 1, NEXT | WRITE, i + 1)).collect();
    write_table(&d, table, &long);
    assert_eq!(
        submit_raw(&mut d, &[(HDR, 16, NEXT, 1), (table, 300 * 16, VRING_DESC_F_INDIRECT as u16, 0)]).0,
        IOERR as u8
    );
    // A table outside memory, a misaligned length, a nested indirect table, a table of zero length.
    for (addr, len) in [(MEM_SIZE - 16, 48), (table, 40), (1 << 50, 16), (table, 0)] {
        assert_eq!(
            submit_raw(&mut d, &[(STATUS, 1, NEXT | WRITE, 1), (addr, len, VRING_DESC_F_INDIRECT as u16, 0)]),
            (IOERR as u8, 1)
        );
    }
    write_table(&d, table, &[(HDR, 16, NEXT, 1), (table, 32, VRING_DESC_F_INDIRECT as u16, 0)]);
    assert_eq!(submit_raw(&mut d, &[(table, 32, VRING_DESC_F_INDIRECT as u16, 0)]), (0xee, 0));
    still_serves(&mut d);
}

#[test]
fn a_broken_ring_marks_the_device_for_reset() {
    let img = image(SECTORS);
    let mut d = probe(&img, BlockOptions::default());
    // A good request and then a head index beyond the queue in the same batch.
    header(&d, IN, 0);
    d.add_chain(0, &[hdr(), Seg(DATA, 512, true), status()]);
    d.publish(0, 999);
    d.kick(0);
    assert_eq!(d.take_used(0).len(), 1, "the good request completed");
    let s = d.r32(reg::VIRTIO_MMIO_STATUS);
    assert_eq!(s & VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_CONFIG_S_NEEDS_RESET);
    assert!(!d.t.is_active());
    // A reset and a new probe bring it back.
    d.w32(reg::VIRTIO_MMIO_STATUS, 0);
    d.init(u64::MAX);
    still_serves(&mut d);
}

#[test]
fn an_available_index_too_far_ahead_marks_the_device_for_reset() {
    let img = image(SECTORS);
    let mut d = probe(&img, BlockOptions::default());
    let avail = d.rings[0].avail;
    d.write_bytes(avail + 2, &(QUEUE_SIZE + 1).to_le_bytes());
    d.kick(0);
    assert_eq!(d.r32(reg::VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_CONFIG_S_NEEDS_RESET);
    assert!(d.take_used(0).is_empty());
}
