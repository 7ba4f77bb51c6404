//! A test driver: drives a transport through its registers the way Linux's `virtio_mmio` does, and lays
//! out split virtqueues with hand-written descriptors in anonymous guest memory.

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FEATURES_OK,
};
use virtio_bindings::virtio_mmio as reg;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};
use vm_memory::{Address, Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::mmio::MmioTransport;
use super::{Memory, VirtioDevice};
use crate::EventFdTrigger;

/// Guest memory of the tests: 16 MiB at 0.
pub(crate) const MEM_SIZE: u64 = 16 << 20;
/// Where queue `i`'s rings start (64 KiB each).
const RINGS: u64 = 0x1_0000;
/// Where test buffers may go: above the rings.
pub(crate) const BUFFERS: u64 = 0x10_0000;

/// Anonymous guest memory for a test.
pub(crate) fn memory() -> Memory {
    Memory::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).expect("anonymous guest memory")
}

/// One descriptor of a chain: address, length, device-writable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seg(pub u64, pub u32, pub bool);

/// What the driver knows about one split queue.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    pub size: u16,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    next_desc: u16,
    avail_idx: u16,
    used_seen: u16,
}

impl Ring {
    fn new(index: u16, size: u16) -> Self {
        let desc = RINGS * (u64::from(index) + 1);
        let avail = desc + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size) + 3) & !3;
        Ring { size, desc, avail, used, next_desc: 0, avail_idx: 0, used_seen: 0 }
    }
}

/// A probed device: its transport, its memory, the driver's view of its queues, its interrupt line.
pub(crate) struct Driver<D: VirtioDevice> {
    pub t: MmioTransport<D>,
    pub mem: Memory,
    pub rings: Vec<Ring>,
    pub irq: EventFd,
}

impl<D: VirtioDevice> Driver<D> {
    /// A device behind a new transport, not yet probed.
    pub fn new(device: D) -> Self {
        let mem = memory();
        let line = EventFdTrigger::new().expect("eventfd");
        let irq = line.0.try_clone().expect("eventfd clone");
        Driver { t: MmioTransport::new(device, mem.clone(), line), mem, rings: Vec::new(), irq }
    }

    /// Probes like Linux: reset, ACKNOWLEDGE, DRIVER, features (all offered ones, masked by `accept`),
    /// FEATURES_OK, every queue at its largest size, DRIVER_OK.
    pub fn probe(device: D, accept: u64) -> Self {
        let mut d = Driver::new(device);
        d.init(accept);
        d
    }

    /// The probe sequence on this transport, with fresh rings (also after a reset).
    pub fn init(&mut self, accept: u64) {
        let d = self;
        d.rings.clear();
        assert_eq!(d.r32(0), 0x7472_6976, "magic");
        assert_eq!(d.r32(4), 2, "version");
        d.w32(reg::VIRTIO_MMIO_STATUS, 0);
        d.add_status(VIRTIO_CONFIG_S_ACKNOWLEDGE);
        d.add_status(VIRTIO_CONFIG_S_DRIVER);
        let features = d.device_features() & accept;
        d.set_driver_features(features);
        d.add_status(VIRTIO_CONFIG_S_FEATURES_OK);
        assert_ne!(d.r32(reg::VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK, 0, "FEATURES_OK refused");
        let mut i = 0;
        loop {
            d.w32(reg::VIRTIO_MMIO_QUEUE_SEL, i);
            let max = d.r32(reg::VIRTIO_MMIO_QUEUE_NUM_MAX);
            if max == 0 {
                break;
            }
            assert_eq!(d.r32(reg::VIRTIO_MMIO_QUEUE_READY), 0);
            let ring = Ring::new(i as u16, max as u16);
            d.setup_queue(i, &ring);
            d.rings.push(ring);
            i += 1;
        }
        d.add_status(VIRTIO_CONFIG_S_DRIVER_OK);
    }

    pub fn r32(&mut self, offset: u32) -> u32 {
        let mut b = [0u8; 4];
        self.t.read(u64::from(offset), &mut b);
        u32::from_le_bytes(b)
    }

    pub fn w32(&mut self, offset: u32, v: u32) {
        self.t.write(u64::from(offset), &v.to_le_bytes());
    }

    pub fn add_status(&mut self, bit: u32) {
        let s = self.r32(reg::VIRTIO_MMIO_STATUS);
        self.w32(reg::VIRTIO_MMIO_STATUS, s | bit);
    }

    pub fn device_features(&mut self) -> u64 {
        self.w32(reg::VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
        let hi = u64::from(self.r32(reg::VIRTIO_MMIO_DEVICE_FEATURES));
        self.w32(reg::VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
        (hi << 32) | u64::from(self.r32(reg::VIRTIO_MMIO_DEVICE_FEATURES))
    }

    pub fn set_driver_features(&mut self, f: u64) {
        self.w32(reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
        self.w32(reg::VIRTIO_MMIO_DRIVER_FEATURES, (f >> 32) as u32);
        self.w32(reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
        self.w32(reg::VIRTIO_MMIO_DRIVER_FEATURES, f as u32);
    }

    pub fn setup_queue(&mut self, i: u32, ring: &Ring) {
        self.w32(reg::VIRTIO_MMIO_QUEUE_SEL, i);
        self.w32(reg::VIRTIO_MMIO_QUEUE_NUM, u32::from(ring.size));
        for (lo, a) in [
            (reg::VIRTIO_MMIO_QUEUE_DESC_LOW, ring.desc),
            (reg::VIRTIO_MMIO_QUEUE_AVAIL_LOW, ring.avail),
            (reg::VIRTIO_MMIO_QUEUE_USED_LOW, ring.used),
        ] {
            self.w32(lo, a as u32);
            self.w32(lo + 4, (a >> 32) as u32);
        }
        self.w32(reg::VIRTIO_MMIO_QUEUE_READY, 1);
    }

    /// Writes descriptor `index` of queue `q` as it is.
    pub fn write_desc(&self, q: usize, index: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = GuestAddress(self.rings[q].desc + 16 * u64::from(index));
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..].copy_from_slice(&next.to_le_bytes());
        self.mem.write_slice(&raw, at).expect("descriptor write");
    }

    /// Puts `head` in the available ring of queue `q` and publishes it.
    pub fn publish(&mut self, q: usize, head: u16) {
        let r = &mut self.rings[q];
        let slot = GuestAddress(r.avail + 4 + 2 * u64::from(r.avail_idx % r.size));
        self.mem.write_obj(head, slot).expect("avail ring write");
        r.avail_idx = r.avail_idx.wrapping_add(1);
        self.mem.write_obj(r.avail_idx, GuestAddress(r.avail + 2)).expect("avail idx write");
    }

    /// Writes `segs` as one chain at the next free descriptors of queue `q` and publishes it.
    pub fn add_chain(&mut self, q: usize, segs: &[Seg]) -> u16 {
        let size = self.rings[q].size;
        let head = self.rings[q].next_desc;
        for (i, s) in segs.iter().enumerate() {
            let index = (head + i as u16) % size;
            let last = i + 1 == segs.len();
            let flags = if last { 0 } else { VRING_DESC_F_NEXT } | if s.2 { VRING_DESC_F_WRITE } else { 0 };
            self.write_desc(q, index, s.0, s.1, flags as u16, (index + 1) % size);
        }
        self.rings[q].next_desc = (head + segs.len() as u16) % size;
        self.publish(q, head);
        head
    }

    /// Kicks queue `q` through the QueueNotify register.
    pub fn kick(&mut self, q: usize) {
        self.w32(reg::VIRTIO_MMIO_QUEUE_NOTIFY, q as u32);
    }

    /// The used-ring entries of queue `q` added since the last call: (head, length).
    pub fn take_used(&mut self, q: usize) -> Vec<(u32, u32)> {
        let r = &mut self.rings[q];
        let idx: u16 = self.mem.read_obj(GuestAddress(r.used + 2)).expect("used idx");
        let mut out = Vec::new();
        while r.used_seen != idx {
            let at = GuestAddress(r.used + 4 + 8 * u64::from(r.used_seen % r.size));
            let id: u32 = self.mem.read_obj(at).expect("used id");
            let len: u32 = self.mem.read_obj(at.unchecked_add(4)).expect("used len");
            out.push((id, len));
            r.used_seen = r.used_seen.wrapping_add(1);
        }
        out
    }

    /// Whether the interrupt line was raised since the last call (and clears it).
    pub fn irq_raised(&self) -> bool {
        self.irq.read().is_ok()
    }

    pub fn read_bytes(&self, at: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        self.mem.read_slice(&mut v, GuestAddress(at)).expect("guest read");
        v
    }

    pub fn write_bytes(&self, at: u64, data: &[u8]) {
        self.mem.write_slice(data, GuestAddress(at)).expect("guest write");
    }
}
