//! The virtio-mmio transport (virtio 1.2 §4.2, register layout version 2): the register machine a
//! Linux guest's `virtio_mmio` driver talks to, wrapping one [`VirtioDevice`].
//!
//! The VMM maps [`MMIO_WINDOW_SIZE`] bytes at a base address, forwards the guest's MMIO accesses in it to
//! [`MmioTransport::read`]/[`MmioTransport::write`], registers an ioeventfd per queue on
//! `base + QUEUE_NOTIFY_OFFSET` (data = the queue index) that calls [`MmioTransport::notify`], turns the
//! interrupt eventfd into an irqfd on the device's line, and tells Linux where the device is with
//! [`cmdline_fragment`]. Registers are 32 bits wide and aligned; any other access to them is ignored (a
//! read gives zero) with a warning. Nothing the driver writes can make the transport panic.
//!
//! Requests run synchronously inside `notify` (and `process_backend`): the VMM shares one transport
//! between its vCPU threads (MMIO exits) and its event loop (ioeventfds, the backend descriptor) behind a
//! mutex, and gives it the memory map of only the RAM the guest's devices may reach.

use std::error::Error as _;

use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FAILED,
    VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
};
use virtio_bindings::virtio_mmio as reg;
use virtio_queue::{Queue, QueueT};
use vm_memory::GuestAddress;

use super::{Activation, DeviceError, Interrupt, LogBudget, Memory, VirtioDevice, VIRTIO_F_VERSION_1};
use crate::EventFdTrigger;

/// Bytes of guest-physical address space one device occupies.
pub const MMIO_WINDOW_SIZE: u64 = 0x1000;
/// Offset of the QueueNotify register, where the VMM puts its ioeventfds.
pub const QUEUE_NOTIFY_OFFSET: u64 = reg::VIRTIO_MMIO_QUEUE_NOTIFY as u64;
/// Offset of the device-specific configuration space.
pub const CONFIG_OFFSET: u64 = reg::VIRTIO_MMIO_CONFIG as u64;
/// "virt", little-endian.
const MAGIC_VALUE: u32 = 0x7472_6976;
/// The non-legacy register layout.
const MMIO_VERSION: u32 = 2;
/// Our vendor ID: "DUET", little-endian (Linux does not look at it).
pub const VENDOR_ID: u32 = u32::from_le_bytes(*b"DUET");

/// The kernel command-line fragment that makes Linux probe a virtio-mmio device at `base` with
/// interrupt `irq` (needs `CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES`).
pub fn cmdline_fragment(base: u64, irq: u32) -> String {
    format!("virtio_mmio.device=4K@{base:#x}:{irq}")
}

/// A device on an MMIO bus: `offset` is relative to the start of its window.
pub trait MmioDevice: Send {
    /// The guest reads `data.len()` bytes at `offset`.
    fn read(&mut self, offset: u64, data: &mut [u8]);
    /// The guest writes `data` at `offset`.
    fn write(&mut self, offset: u64, data: &[u8]);
}

/// What the driver wrote about one queue before `DRIVER_OK`.
#[derive(Debug, Clone, Copy)]
struct QueueConfig {
    max_size: u16,
    size: u16,
    ready: bool,
    desc: u64,
    driver: u64,
    device: u64,
}

impl QueueConfig {
    fn new(max_size: u16) -> Self {
        QueueConfig { max_size, size: max_size, ready: false, desc: 0, driver: 0, device: 0 }
    }

    /// The ring the device will serve: checked against the spec's rules and against guest memory.
    fn build(&self, index: u16, mem: &Memory) -> Result<Queue, DeviceError> {
        let invalid = |source| DeviceError::InvalidQueue { index, source };
        let mut q = Queue::new(self.max_size).map_err(invalid)?;
        if !self.ready {
            return Ok(q);
        }
        q.try_set_size(self.size).map_err(invalid)?;
        q.try_set_desc_table_address(GuestAddress(self.desc)).map_err(invalid)?;
        q.try_set_avail_ring_address(GuestAddress(self.driver)).map_err(invalid)?;
        q.try_set_used_ring_address(GuestAddress(self.device)).map_err(invalid)?;
        q.set_ready(true);
        if !q.is_valid(mem) {
            return Err(DeviceError::QueueOutsideMemory { index });
        }
        Ok(q)
    }
}

/// A virtio device behind the virtio-mmio register interface.
pub struct MmioTransport<D: VirtioDevice> {
    device: D,
    mem: Memory,
    interrupt: Interrupt,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    queues: Vec<QueueConfig>,
    /// The driver's mistakes (accesses the transport ignores), for rate-limited logging.
    mistakes: LogBudget,
}

impl<D: VirtioDevice> std::fmt::Debug for MmioTransport<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioTransport")
            .field("device_type", &self.device.device_type())
            .field("status", &self.status)
            .field("driver_features", &self.driver_features)
            .finish_non_exhaustive()
    }
}

impl<D: VirtioDevice> MmioTransport<D> {
    /// `device` behind the transport; its buffers live in `mem` and its interrupt is `line`.
    pub fn new(device: D, mem: Memory, line: EventFdTrigger) -> Self {
        let queues = device.queue_max_sizes().iter().map(|&m| QueueConfig::new(m)).collect();
        MmioTransport {
            device,
            mem,
            interrupt: Interrupt::new(line),
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            queues,
            mistakes: LogBudget::default(),
        }
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device, mutably.
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.device
    }

    /// How many queues the device has (the VMM registers one ioeventfd per queue).
    pub fn queue_count(&self) -> u16 {
        // A device has a handful of queues; the MMIO registers could not address more anyway.
        u16::try_from(self.queues.len()).unwrap_or(u16::MAX)
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// The features the device offers.
    pub fn device_features(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1
    }

    /// Whether the driver started the device and it is serving its queues.
    pub fn is_active(&self) -> bool {
        self.status & VIRTIO_CONFIG_S_DRIVER_OK != 0 && self.status & VIRTIO_CONFIG_S_NEEDS_RESET == 0
    }

    /// The driver notified queue `index` (the VMM calls this when that queue's ioeventfd fires).
    pub fn notify(&mut self, index: u16) {
        if !self.is_active() {
            log::debug!("{}: notify of queue {index} while not active, ignored", self.name());
            return;
        }
        if usize::from(index) >= self.queues.len() {
            self.complain(format_args!("notify of queue {index}, which does not exist"));
            return;
        }
        if let Err(e) = self.device.process_queue(index) {
            self.needs_reset(&e);
        }
    }

    /// The device's backend descriptor became readable (see [`VirtioDevice::backend_fd`]).
    pub fn process_backend(&mut self) {
        if !self.is_active() {
            return;
        }
        if let Err(e) = self.device.process_backend() {
            self.needs_reset(&e);
        }
    }

    fn name(&self) -> &'static str {
        super::type_name(self.device.device_type())
    }

    /// How many accesses of the driver the transport refused or ignored so far.
    pub fn driver_mistakes(&self) -> u64 {
        self.mistakes.count()
    }

    /// Logs a mistake of the driver within the transport's [`LogBudget`].
    fn complain(&mut self, msg: std::fmt::Arguments<'_>) {
        if let Some(n) = self.mistakes.hit() {
            log::warn!("{}: {msg} ({n} driver mistakes so far)", self.name());
        }
    }

    fn needs_reset(&mut self, e: &DeviceError) {
        let mut msg = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            msg.push_str(": ");
            msg.push_str(&s.to_string());
            source = s.source();
        }
        log::error!("{}: {msg}; the device needs a reset by the driver", self.name());
        self.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
        self.interrupt.signal_config_change();
    }

    fn reset(&mut self) {
        self.device.reset();
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        for q in &mut self.queues {
            *q = QueueConfig::new(q.max_size);
        }
        self.interrupt.clear();
    }

    /// Queue registers may change between `FEATURES_OK` and `DRIVER_OK` (virtio 1.2 §3.1.1).
    fn queue_setup_allowed(&self) -> bool {
        let s = self.status;
        s & VIRTIO_CONFIG_S_FEATURES_OK != 0
            && s & (VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_NEEDS_RESET | VIRTIO_CONFIG_S_FAILED) == 0
    }

    fn selected_queue(&self) -> Option<&QueueConfig> {
        self.queues.get(usize::try_from(self.queue_sel).ok()?)
    }

    /// The selected queue, if the driver may change it now (a ready queue only with `even_if_ready`).
    fn queue_for_setup(&mut self, what: &str, even_if_ready: bool) -> Option<&mut QueueConfig> {
        if !self.queue_setup_allowed() {
            let status = self.status;
            self.complain(format_args!("{what} written outside queue setup (status {status:#x}), ignored"));
            return None;
        }
        let sel = self.queue_sel;
        let index = usize::try_from(sel).ok().filter(|&i| i < self.queues.len());
        match index.map(|i| self.queues.get(i).is_some_and(|q| q.ready)) {
            Some(true) if !even_if_ready => {
                self.complain(format_args!("{what} of queue {sel} written while it is ready, ignored"));
                None
            }
            Some(_) => self.queues.get_mut(index?),
            None => {
                self.complain(format_args!("{what} of queue {sel}, which does not exist, ignored"));
                None
            }
        }
    }

    fn features_acceptable(&mut self) -> bool {
        let offered = self.device_features();
        if self.driver_features & VIRTIO_F_VERSION_1 == 0 {
            self.complain(format_args!("the driver did not accept VIRTIO_F_VERSION_1 (legacy drivers are not served)"));
            return false;
        }
        let extra = self.driver_features & !offered;
        if extra != 0 {
            self.complain(format_args!("the driver accepted features that were not offered: {extra:#x}"));
            return false;
        }
        true
    }

    fn activate(&mut self) -> Result<(), DeviceError> {
        let mut queues = Vec::with_capacity(self.queues.len());
        for (i, q) in self.queues.iter().enumerate() {
            queues.push(q.build(u16::try_from(i).unwrap_or(u16::MAX), &self.mem)?);
        }
        let activation = Activation {
            mem: self.mem.clone(),
            queues,
            interrupt: self.interrupt.clone(),
            features: self.driver_features,
        };
        self.device.activate(activation)
    }

    /// The driver writes the status register: 0 resets; otherwise it adds the next bit of the
    /// ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK sequence (or FAILED). Out-of-order bits are ignored;
    /// FEATURES_OK stays clear when the features are unacceptable, so the driver sees the refusal.
    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let cleared = self.status & !value & !VIRTIO_CONFIG_S_NEEDS_RESET;
        if cleared != 0 {
            self.complain(format_args!("the driver cleared status bits {cleared:#x} without a reset, ignored"));
        }
        const STEPS: [(u32, u32); 4] = [
            (VIRTIO_CONFIG_S_ACKNOWLEDGE, 0),
            (VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_ACKNOWLEDGE),
            (VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_DRIVER),
            (VIRTIO_CONFIG_S_DRIVER_OK, VIRTIO_CONFIG_S_FEATURES_OK),
        ];
        for (bit, needs) in STEPS {
            if value & bit == 0 || self.status & bit != 0 {
                continue;
            }
            if self.status & needs != needs || self.status & (VIRTIO_CONFIG_S_NEEDS_RESET | VIRTIO_CONFIG_S_FAILED) != 0
            {
                let status = self.status;
                self.complain(format_args!("status bit {bit:#x} set out of order (status {status:#x}), ignored"));
                break;
            }
            if bit == VIRTIO_CONFIG_S_FEATURES_OK && !self.features_acceptable() {
                break;
            }
            if bit == VIRTIO_CONFIG_S_DRIVER_OK {
                if let Err(e) = self.activate() {
                    self.device.reset();
                    self.needs_reset(&e);
                    break;
                }
            }
            self.status |= bit;
        }
        if value & VIRTIO_CONFIG_S_FAILED != 0 && self.status & VIRTIO_CONFIG_S_FAILED == 0 {
            log::warn!("{}: the driver gave up on the device (FAILED)", self.name());
            self.status |= VIRTIO_CONFIG_S_FAILED;
        }
    }

    fn read_register(&self, offset: u32) -> Option<u32> {
        let q = self.selected_queue();
        Some(match offset {
            reg::VIRTIO_MMIO_MAGIC_VALUE => MAGIC_VALUE,
            reg::VIRTIO_MMIO_VERSION => MMIO_VERSION,
            reg::VIRTIO_MMIO_DEVICE_ID => self.device.device_type(),
            reg::VIRTIO_MMIO_VENDOR_ID => VENDOR_ID,
            reg::VIRTIO_MMIO_DEVICE_FEATURES => match self.device_features_sel {
                0 => self.device_features() as u32,
                1 => (self.device_features() >> 32) as u32,
                _ => 0,
            },
            reg::VIRTIO_MMIO_QUEUE_NUM_MAX => q.map_or(0, |q| u32::from(q.max_size)),
            reg::VIRTIO_MMIO_QUEUE_READY => q.map_or(0, |q| u32::from(q.ready)),
            reg::VIRTIO_MMIO_INTERRUPT_STATUS => self.interrupt.status(),
            reg::VIRTIO_MMIO_STATUS => self.status,
            // No shared-memory regions: a length of all ones says so (§4.2.2).
            reg::VIRTIO_MMIO_SHM_LEN_LOW
            | reg::VIRTIO_MMIO_SHM_LEN_HIGH
            | reg::VIRTIO_MMIO_SHM_BASE_LOW
            | reg::VIRTIO_MMIO_SHM_BASE_HIGH => u32::MAX,
            reg::VIRTIO_MMIO_CONFIG_GENERATION => self.interrupt.config_generation(),
            _ => return None,
        })
    }

    /// One half of a ring address (QueueDesc, QueueDriver, QueueDevice; Low or High).
    fn write_queue_address(&mut self, offset: u32, v: u32) {
        let high = offset % 8 == 4;
        let Some(q) = self.queue_for_setup("a ring address", false) else { return };
        let field = match offset & !4 {
            reg::VIRTIO_MMIO_QUEUE_DESC_LOW => &mut q.desc,
            reg::VIRTIO_MMIO_QUEUE_AVAIL_LOW => &mut q.driver,
            _ => &mut q.device,
        };
        *field = with_half(*field, v, high);
    }

    fn write_register(&mut self, offset: u32, v: u32) -> bool {
        match offset {
            reg::VIRTIO_MMIO_DEVICE_FEATURES_SEL => self.device_features_sel = v,
            reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL => self.driver_features_sel = v,
            reg::VIRTIO_MMIO_DRIVER_FEATURES => {
                let s = self.status;
                if s & VIRTIO_CONFIG_S_DRIVER == 0 || s & VIRTIO_CONFIG_S_FEATURES_OK != 0 {
                    self.complain(format_args!("DriverFeatures written in status {s:#x}, ignored"));
                } else {
                    match self.driver_features_sel {
                        0 | 1 => {
                            self.driver_features = with_half(self.driver_features, v, self.driver_features_sel == 1)
                        }
                        sel => self.complain(format_args!("DriverFeatures word {sel} written, ignored")),
                    }
                }
            }
            reg::VIRTIO_MMIO_QUEUE_SEL => self.queue_sel = v,
            reg::VIRTIO_MMIO_QUEUE_NUM => {
                if let Some(q) = self.queue_for_setup("QueueNum", false) {
                    // An invalid size is refused when the driver sets DRIVER_OK.
                    q.size = u16::try_from(v).unwrap_or(0);
                }
            }
            reg::VIRTIO_MMIO_QUEUE_READY => {
                // Linux clears QueueReady when it tears the queues down after a reset: a no-op then.
                if v == 0 && self.selected_queue().is_none_or(|q| !q.ready) {
                    return true;
                }
                if let Some(q) = self.queue_for_setup("QueueReady", true) {
                    q.ready = v & 1 != 0;
                }
            }
            reg::VIRTIO_MMIO_QUEUE_DESC_LOW
            | reg::VIRTIO_MMIO_QUEUE_DESC_HIGH
            | reg::VIRTIO_MMIO_QUEUE_AVAIL_LOW
            | reg::VIRTIO_MMIO_QUEUE_AVAIL_HIGH
            | reg::VIRTIO_MMIO_QUEUE_USED_LOW
            | reg::VIRTIO_MMIO_QUEUE_USED_HIGH => self.write_queue_address(offset, v),
            reg::VIRTIO_MMIO_QUEUE_NOTIFY => match u16::try_from(v) {
                Ok(index) => self.notify(index),
                Err(_) => {
                    self.complain(format_args!("QueueNotify with {v:#x} (no notification data negotiated), ignored"))
                }
            },
            reg::VIRTIO_MMIO_INTERRUPT_ACK => self.interrupt.ack(v),
            reg::VIRTIO_MMIO_STATUS => self.write_status(v),
            reg::VIRTIO_MMIO_SHM_SEL => {}
            _ => return false,
        }
        true
    }

    /// The guest reads `data.len()` bytes at `offset` in the device's window.
    pub fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= CONFIG_OFFSET {
            match offset.checked_add(data.len() as u64) {
                Some(end) if end <= MMIO_WINDOW_SIZE => self.device.read_config(offset - CONFIG_OFFSET, data),
                _ => {
                    self.complain(format_args!("read of {} bytes at {offset:#x} outside the window", data.len()));
                    data.fill(0);
                }
            }
            return;
        }
        let value = match (u32::try_from(offset), data.len()) {
            (Ok(off), 4) if off % 4 == 0 => self.read_register(off),
            _ => None,
        };
        match value {
            Some(v) => data.copy_from_slice(&v.to_le_bytes()),
            None => {
                self.complain(format_args!("read of {} bytes at {offset:#x} (no such register), gives 0", data.len()));
                data.fill(0);
            }
        }
    }

    /// The guest writes `data` at `offset` in the device's window.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= CONFIG_OFFSET {
            match offset.checked_add(data.len() as u64) {
                Some(end) if end <= MMIO_WINDOW_SIZE => {
                    if !self.device.write_config(offset - CONFIG_OFFSET, data) {
                        self.complain(format_args!(
                            "config write of {} bytes at {offset:#x} ignored (read-only config)",
                            data.len()
                        ));
                    }
                }
                _ => self.complain(format_args!("write of {} bytes at {offset:#x} outside the window", data.len())),
            }
            return;
        }
        let done = match (u32::try_from(offset), <[u8; 4]>::try_from(data)) {
            (Ok(off), Ok(bytes)) if off % 4 == 0 => self.write_register(off, u32::from_le_bytes(bytes)),
            _ => false,
        };
        if !done {
            self.complain(format_args!("write of {} bytes at {offset:#x} (no such register), ignored", data.len()));
        }
    }
}

/// `value` with its low (or high) 32 bits replaced by `half`: how 64-bit fields are written.
fn with_half(value: u64, half: u32, high: bool) -> u64 {
    if high {
        (value & 0xffff_ffff) | (u64::from(half) << 32)
    } else {
        (value & !0xffff_ffff) | u64::from(half)
    }
}

impl<D: VirtioDevice> MmioDevice for MmioTransport<D> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        MmioTransport::read(self, offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        MmioTransport::write(self, offset, data);
    }
}

#[cfg(test)]
#[path = "mmio_tests.rs"]
mod tests;
