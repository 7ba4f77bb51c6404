use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE as ACK, VIRTIO_CONFIG_S_DRIVER as DRIVER, VIRTIO_CONFIG_S_DRIVER_OK as DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED as FAILED, VIRTIO_CONFIG_S_FEATURES_OK as FEATURES_OK,
    VIRTIO_CONFIG_S_NEEDS_RESET as NEEDS_RESET,
};
use virtio_bindings::virtio_mmio as reg;
use virtio_queue::QueueT;

use super::*;
use crate::virtio::testing::{Driver, MEM_SIZE};

const FAKE_FEATURE: u64 = 1 << 5;

/// A queue as the device got it: ready, size, descriptor table, available ring, used ring.
type QueueSeen = (bool, u16, u64, u64, u64);

/// A device that records what the transport asks of it.
#[derive(Debug, Default)]
struct Fake {
    activations: Vec<(u64, Vec<QueueSeen>)>,
    resets: usize,
    notified: Vec<u16>,
    fail_next: bool,
    config: [u8; 8],
}

impl VirtioDevice for Fake {
    fn device_type(&self) -> u32 {
        42
    }
    fn features(&self) -> u64 {
        FAKE_FEATURE
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[16, 8]
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        crate::virtio::read_config_bytes(&self.config, offset, data);
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) -> bool {
        for (i, b) in data.iter().enumerate() {
            if let Some(slot) = self.config.get_mut(offset as usize + i) {
                *slot = *b;
            }
        }
        true
    }
    fn activate(&mut self, a: Activation) -> Result<(), DeviceError> {
        let qs =
            a.queues.iter().map(|q| (q.ready(), q.size(), q.desc_table(), q.avail_ring(), q.used_ring())).collect();
        self.activations.push((a.features, qs));
        Ok(())
    }
    fn reset(&mut self) {
        self.resets += 1;
    }
    fn process_queue(&mut self, index: u16) -> Result<(), DeviceError> {
        self.notified.push(index);
        if std::mem::take(&mut self.fail_next) {
            return Err(DeviceError::Backend(std::io::Error::other("test failure")));
        }
        Ok(())
    }
}

fn status(d: &mut Driver<Fake>) -> u32 {
    d.r32(reg::VIRTIO_MMIO_STATUS)
}

/// Resets, acknowledges and accepts `features`, leaving the driver just before FEATURES_OK.
fn negotiate(features: u64) -> Driver<Fake> {
    let mut d = Driver::new(Fake::default());
    d.w32(reg::VIRTIO_MMIO_STATUS, 0);
    d.add_status(ACK);
    d.add_status(DRIVER);
    d.set_driver_features(features);
    d
}

#[test]
fn identity_registers() {
    let mut d = Driver::new(Fake::default());
    assert_eq!(d.r32(reg::VIRTIO_MMIO_MAGIC_VALUE), 0x7472_6976);
    assert_eq!(d.r32(reg::VIRTIO_MMIO_VERSION), 2);
    assert_eq!(d.r32(reg::VIRTIO_MMIO_DEVICE_ID), 42);
    assert_eq!(d.r32(reg::VIRTIO_MMIO_VENDOR_ID), VENDOR_ID);
    assert_eq!(d.device_features(), FAKE_FEATURE | VIRTIO_F_VERSION_1);
    for (q, max) in [(0, 16), (1, 8), (2, 0), (0xffff_ffff, 0)] {
        d.w32(reg::VIRTIO_MMIO_QUEUE_SEL, q);
        assert_eq!(d.r32(reg::VIRTIO_MMIO_QUEUE_NUM_MAX), max, "queue {q}");
        assert_eq!(d.r32(reg::VIRTIO_MMIO_QUEUE_READY), 0);
    }
    // No shared-memory regions.
    assert_eq!(d.r32(reg::VIRTIO_MMIO_SHM_LEN_LOW), u32::MAX);
    assert_eq!(d.r32(reg::VIRTIO_MMIO_SHM_LEN_HIGH), u32::MAX);
}

#[test]
fn the_linux_probe_sequence_activates_the_device() {
    let mut d = Driver::probe(Fake::default(), u64::MAX);
    assert_eq!(status(&mut d), ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    assert!(d.t.is_active());
    let acts = &d.t.device().activations;
    assert_eq!(acts.len(), 1);
    assert_eq!(acts[0].0, FAKE_FEATURE | VIRTIO_F_VERSION_1);
    let want: Vec<_> = d.rings.iter().map(|r| (true, r.size, r.desc, r.avail, r.used)).collect();
    assert_eq!(acts[0].1, want);
    assert_eq!(want.len(), 2);
}

#[test]
fn a_driver_without_version_1_is_refused() {
    let mut d = negotiate(FAKE_FEATURE);
    d.add_status(FEATURES_OK);
    assert_eq!(status(&mut d), ACK | DRIVER, "FEATURES_OK must not stick");
    d.add_status(DRIVER_OK);
    assert_eq!(status(&mut d) & DRIVER_OK, 0);
    assert!(d.t.device().activations.is_empty());
}

#[test]
fn features_that_were_not_offered_are_refused() {
    let mut d = negotiate(VIRTIO_F_VERSION_1 | (1 << 7));
    d.add_status(FEATURES_OK);
    assert_eq!(status(&mut d) & FEATURES_OK, 0);
}

#[test]
fn driver_features_only_change_between_driver_and_features_ok() {
    let mut d = Driver::new(Fake::default());
    d.set_driver_features(VIRTIO_F_VERSION_1 | FAKE_FEATURE); // before DRIVER: ignored
    d.add_status(ACK);
    d.add_status(DRIVER);
    d.add_status(FEATURES_OK);
    assert_eq!(status(&mut d) & FEATURES_OK, 0, "no features were accepted yet");
    d.set_driver_features(VIRTIO_F_VERSION_1);
    d.add_status(FEATURES_OK);
    assert_ne!(status(&mut d) & FEATURES_OK, 0);
    d.set_driver_features(VIRTIO_F_VERSION_1 | FAKE_FEATURE); // after FEATURES_OK: ignored
    d.add_status(DRIVER_OK);
    assert_eq!(d.t.device().activations[0].0, VIRTIO_F_VERSION_1);
}

#[test]
fn status_bits_out_of_order_are_ignored() {
    let mut d = Driver::new(Fake::default());
    d.w32(reg::VIRTIO_MMIO_STATUS, DRIVER_OK);
    assert_eq!(status(&mut d), 0);
    d.w32(reg::VIRTIO_MMIO_STATUS, ACK | FEATURES_OK);
    assert_eq!(status(&mut d), ACK);
    // Clearing a bit without a reset does nothing.
    d.add_status(DRIVER);
    d.w32(reg::VIRTIO_MMIO_STATUS, ACK);
    assert_eq!(status(&mut d), ACK | DRIVER);
    d.add_status(FAILED);
    assert_eq!(status(&mut d), ACK | DRIVER | FAILED);
    assert!(d.t.device().activations.is_empty());
}

#[test]
fn writing_zero_resets_everything() {
    let mut d = Driver::probe(Fake::default(), u64::MAX);
    d.t.device_mut().fail_next = true;
    d.kick(0);
    assert_ne!(d.r32(reg::VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    let resets = d.t.device().resets;
    d.w32(reg::VIRTIO_MMIO_STATUS, 0);
    assert_eq!(status(&mut d), 0);
    assert_eq!(d.t.device().resets, resets + 1);
    assert_eq!(d.r32(reg::VIRTIO_MMIO_INTERRUPT_STATUS), 0);
    d.w32(reg::VIRTIO_MMIO_QUEUE_SEL, 0);
    assert_eq!(d.r32(reg::VIRTIO_MMIO_QUEUE_READY), 0);
    // Linux's teardown clears QueueReady after the reset: harmless.
    d.w32(reg::VIRTIO_MMIO_QUEUE_READY, 0);
    // And the device can be probed again.
    d.init(u64::MAX);
    assert!(d.t.is_active());
    assert_eq!(d.t.device().activations.len(), 2);
    assert_eq!(status(&mut d) & NEEDS_RESET, 0);
}

#[test]
fn queue_registers_change_only_during_queue_setup() {
    let mut d = negotiate(VIRTIO_F_VERSION_1);
    let ring = crate::virtio::testing::Driver::probe(Fake::default(), u64::MAX).rings[0].clone();
    d.setup_queue(0, &ring); // before FEATURES_OK: ignored
    d.w32(reg::VIRTIO_MMIO_QUEUE_SEL, 0);
    assert_eq!(d.r32(reg::VIRTIO_MMIO_QUEUE_READY), 0);
    d.add_status(FEATURES_OK);
    d.setup_queue(0, &ring);
    assert_eq!(d.r32(reg::VIRTIO_MMIO_QUEUE_READY), 1);
    // A ready queue keeps its addresses.
    d.w32(reg::VIRTIO_MMIO_QUEUE_DESC_LOW, 0x4000);
    d.add_status(DRIVER_OK);
    let qs = &d.t.device().activations[0].1;
    assert_eq!(qs[0], (true, ring.size, ring.desc, ring.avail, ring.used));
    assert!(!qs[1].0, "queue 1 was never enabled");
    // After DRIVER_OK nothing changes.
    d.w32(reg::VIRTIO_MMIO_QUEUE_SEL, 1);
    d.w32(reg::VIRTIO_MMIO_QUEUE_READY, 1);
    assert_eq!(d.r32(reg::VIRTIO_MMIO_QUEUE_READY), 0);
}

/// Sets up queue 0 with `size` and ring addresses, then DRIVER_OK; returns the driver.
fn start_with_queue(size: u32, desc: u64, avail: u64, used: u64) -> Driver<Fake> {
    let mut d = negotiate(VIRTIO_F_VERSION_1);
    d.add_status(FEATURES_OK);
    d.w32(reg::VIRTIO_MMIO_QUEUE_SEL, 0);
    d.w32(reg::VIRTIO_MMIO_QUEUE_NUM, size);
    for (lo, a) in [
        (reg::VIRTIO_MMIO_QUEUE_DESC_LOW, desc),
        (reg::VIRTIO_MMIO_QUEUE_AVAIL_LOW, avail),
        (reg::VIRTIO_MMIO_QUEUE_USED_LOW, used),
    ] {
        d.w32(lo, a as u32);
        d.w32(lo + 4, (a >> 32) as u32);
    }
    d.w32(reg::VIRTIO_MMIO_QUEUE_READY, 1);
    let _ = d.irq_raised();
    d.add_status(DRIVER_OK);
    d
}

#[test]
fn unusable_queues_make_driver_ok_fail_with_needs_reset() {
    let cases = [
        (16, 0x1000, 0x2000, 0x3000, true),
        (12, 0x1000, 0x2000, 0x3000, false),          // not a power of two
        (32, 0x1000, 0x2000, 0x3000, false),          // above QueueNumMax
        (0, 0x1000, 0x2000, 0x3000, false),           // empty
        (0x1_0010, 0x1000, 0x2000, 0x3000, false),    // does not fit 16 bits
        (16, 0x1008, 0x2000, 0x3000, false),          // descriptor table misaligned
        (16, 0x1000, 0x2001, 0x3000, false),          // available ring misaligned
        (16, 0x1000, 0x2000, 0x3002, false),          // used ring misaligned
        (16, MEM_SIZE - 0x80, 0x2000, 0x3000, false), // table runs off the end of memory
        (16, 0x1000, 0x2000, 1 << 40, false),         // used ring far outside memory
        (16, 0x1000, u64::MAX - 1, 0x3000, false),    // wraps
    ];
    for (size, desc, avail, used, ok) in cases {
        let mut d = start_with_queue(size, desc, avail, used);
        let s = status(&mut d);
        assert_eq!(d.t.is_active(), ok, "size {size} desc {desc:#x} avail {avail:#x} used {used:#x}");
        if ok {
            assert_eq!(s & NEEDS_RESET, 0);
        } else {
            assert_eq!(s & (NEEDS_RESET | DRIVER_OK), NEEDS_RESET, "status {s:#x}");
            assert!(d.irq_raised(), "a configuration interrupt tells the driver");
            assert_eq!(d.r32(reg::VIRTIO_MMIO_INTERRUPT_STATUS), reg::VIRTIO_MMIO_INT_CONFIG);
            assert!(d.t.device().activations.is_empty());
        }
    }
}

#[test]
fn notifications_reach_the_device_only_when_active() {
    let mut d = negotiate(VIRTIO_F_VERSION_1);
    d.kick(0);
    d.t.notify(0);
    assert!(d.t.device().notified.is_empty());
    let mut d = Driver::probe(Fake::default(), u64::MAX);
    d.kick(1);
    d.t.notify(0);
    d.t.notify(2); // no such queue
    d.w32(reg::VIRTIO_MMIO_QUEUE_NOTIFY, 0x1_0000); // notification data was not negotiated
    assert_eq!(d.t.device().notified, vec![1, 0]);
}

#[test]
fn a_device_error_sets_needs_reset_until_the_driver_resets() {
    let mut d = Driver::probe(Fake::default(), u64::MAX);
    let generation = d.r32(reg::VIRTIO_MMIO_CONFIG_GENERATION);
    let _ = d.irq_raised();
    d.t.device_mut().fail_next = true;
    d.kick(0);
    assert_eq!(status(&mut d) & NEEDS_RESET, NEEDS_RESET);
    assert!(!d.t.is_active());
    assert!(d.irq_raised());
    assert_eq!(d.r32(reg::VIRTIO_MMIO_INTERRUPT_STATUS), reg::VIRTIO_MMIO_INT_CONFIG);
    assert_ne!(d.r32(reg::VIRTIO_MMIO_CONFIG_GENERATION), generation);
    d.kick(0);
    assert_eq!(d.t.device().notified, vec![0], "a broken device serves no more notifications");
    // Linux's status read-modify-write carries NEEDS_RESET back: harmless.
    d.add_status(FAILED);
    assert_eq!(status(&mut d) & (NEEDS_RESET | FAILED), NEEDS_RESET | FAILED);
    d.w32(reg::VIRTIO_MMIO_INTERRUPT_ACK, reg::VIRTIO_MMIO_INT_CONFIG);
    assert_eq!(d.r32(reg::VIRTIO_MMIO_INTERRUPT_STATUS), 0);
}

#[test]
fn config_space_reads_and_writes_at_any_width() {
    let mut d = Driver::new(Fake { config: [1, 2, 3, 4, 5, 6, 7, 8], ..Fake::default() });
    let mut b8 = [0u8; 8];
    d.t.read(CONFIG_OFFSET, &mut b8);
    assert_eq!(b8, [1, 2, 3, 4, 5, 6, 7, 8]);
    let mut b2 = [0u8; 2];
    d.t.read(CONFIG_OFFSET + 7, &mut b2);
    assert_eq!(b2, [8, 0], "beyond the config reads as zero");
    let mut b1 = [0u8; 1];
    d.t.read(CONFIG_OFFSET + 0x100, &mut b1);
    assert_eq!(b1, [0]);
    d.t.write(CONFIG_OFFSET + 1, &[9, 9]);
    assert_eq!(d.t.device().config, [1, 9, 9, 4, 5, 6, 7, 8]);
    // At and beyond the window's end.
    let mut b4 = [0xffu8; 4];
    d.t.read(MMIO_WINDOW_SIZE - 2, &mut b4);
    assert_eq!(b4, [0; 4]);
    d.t.read(u64::MAX - 1, &mut b4);
    d.t.write(u64::MAX - 1, &b4);
}

#[test]
fn registers_accessed_with_the_wrong_width_or_offset_are_ignored() {
    let mut d = Driver::new(Fake::default());
    for len in [1usize, 2, 3, 8] {
        let mut b = vec![0xffu8; len];
        d.t.read(0, &mut b);
        assert!(b.iter().all(|&x| x == 0), "a {len}-byte read of MagicValue gives zero");
    }
    let mut b = [0xffu8; 4];
    d.t.read(2, &mut b); // misaligned
    assert_eq!(b, [0; 4]);
    d.t.read(0x28, &mut b); // legacy GuestPageSize
    assert_eq!(b, [0; 4]);
    d.t.write(reg::VIRTIO_MMIO_STATUS as u64, &[ACK as u8]); // a 1-byte status write
    assert_eq!(status(&mut d), 0);
    d.t.write(reg::VIRTIO_MMIO_STATUS as u64, &u64::from(ACK).to_le_bytes()); // 8 bytes
    assert_eq!(status(&mut d), 0);
}

#[test]
fn a_storm_of_arbitrary_accesses_does_not_panic() {
    // A deterministic xorshift walk over offsets, widths and values, mixed with the probe sequence.
    let mut d = Driver::probe(Fake::default(), u64::MAX);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let offset = (x >> 8) % 0x1100;
        let len = [1usize, 2, 4, 4, 4, 8][(x % 6) as usize];
        let bytes = (x >> 16).to_le_bytes();
        if x & 0x100 == 0 {
            d.t.write(offset & !3, &bytes[..len]);
        } else {
            let mut b = vec![0u8; len];
            d.t.read(offset, &mut b);
        }
    }
}

#[test]
fn a_driver_repeating_a_mistake_is_counted_but_logged_within_a_budget() {
    let mut d = Driver::new(Fake::default());
    assert_eq!(d.t.driver_mistakes(), 0);
    let mut logged = 0;
    let mut budget = LogBudget::default();
    for _ in 0..100_000 {
        d.t.write(0x28, &[0; 4]); // legacy GuestPageSize: no such register
        logged += u32::from(budget.hit().is_some());
    }
    assert_eq!(d.t.driver_mistakes(), 100_000);
    // The first ten, then 16, 32, ..., 65536: 10 + 13 lines for 100,000 mistakes.
    assert_eq!(logged, 23);
    // Proper accesses are not mistakes.
    d.t.write(reg::VIRTIO_MMIO_STATUS as u64, &ACK.to_le_bytes());
    let mut b = [0u8; 4];
    d.t.read(0, &mut b);
    assert_eq!(d.t.driver_mistakes(), 100_000);
    // Config writes a device does not take count too (the fake takes them).
    d.t.write(CONFIG_OFFSET, &[1]);
    assert_eq!(d.t.driver_mistakes(), 100_000);
}

#[test]
fn the_cmdline_fragment_names_window_and_irq() {
    assert_eq!(cmdline_fragment(0xd000_0000, 5), "virtio_mmio.device=4K@0xd0000000:5");
}
