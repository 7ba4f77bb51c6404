//! Virtio devices behind the virtio-mmio transport (virtio 1.2, register layout version 2), for a Linux
//! guest's stock `virtio_mmio` driver.
//!
//! A device ([`VirtioDevice`]) knows its queues and its backend; the transport ([`mmio::MmioTransport`])
//! is the register machine the guest talks to: feature negotiation, queue setup, status, interrupts.
//! The rings themselves are rust-vmm's `virtio-queue`; every guest access goes through `vm-memory`'s
//! checked accessors, over a memory map that holds only the RAM this guest may reach (the ROS's view in a
//! partitioned VM), so a descriptor cannot make a device touch anything else.
//!
//! - [`mmio`]: the transport, the Linux command-line fragment that announces it.
//! - [`chain`]: the bounded walk that checks a descriptor chain before a device uses it.
//! - [`block`]: virtio-blk over a raw image file.
//! - [`net`]: virtio-net over a TAP interface.
//! - [`vsock`]: virtio-vsock over host Unix sockets (Firecracker's convention).

pub mod block;
pub mod chain;
pub mod mmio;
pub mod net;
pub mod vsock;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use virtio_bindings::virtio_mmio::{VIRTIO_MMIO_INT_CONFIG, VIRTIO_MMIO_INT_VRING};
use virtio_queue::Queue;

use crate::EventFdTrigger;

/// The guest memory devices work on: the part of guest RAM the driving guest may hand to devices.
pub type Memory = vm_memory::GuestMemoryMmap<()>;

/// `VIRTIO_F_VERSION_1`: the transport offers it always and refuses a driver that does not accept it.
pub const VIRTIO_F_VERSION_1: u64 = 1 << virtio_bindings::virtio_config::VIRTIO_F_VERSION_1;
/// `VIRTIO_RING_F_INDIRECT_DESC`: the driver may hand over a table of descriptors in one descriptor.
pub const VIRTIO_RING_F_INDIRECT_DESC: u64 = 1 << virtio_bindings::virtio_ring::VIRTIO_RING_F_INDIRECT_DESC;

/// Why a device stopped serving its queues. The transport answers by setting `DEVICE_NEEDS_RESET` in
/// the status register and raising a configuration-change interrupt; the driver must reset the device.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The driver set up a queue the device cannot use.
    #[error("queue {index} is not usable")]
    InvalidQueue {
        /// The queue.
        index: u16,
        /// What is wrong with it.
        #[source]
        source: virtio_queue::Error,
    },
    /// A ring the driver enabled does not lie in guest memory.
    #[error("queue {index} lies outside guest memory")]
    QueueOutsideMemory {
        /// The queue.
        index: u16,
    },
    /// The driver did not enable a queue the device needs.
    #[error("queue {index} is needed but was not enabled")]
    QueueNotEnabled {
        /// The queue.
        index: u16,
    },
    /// The driver broke a ring's rules (an available index too far ahead, a head out of range).
    #[error("queue {index}: the driver broke the ring")]
    BrokenRing {
        /// The queue.
        index: u16,
        /// What the ring code found.
        #[source]
        source: virtio_queue::Error,
    },
    /// The device's backend failed in a way a request status cannot report.
    #[error("backend failed")]
    Backend(#[source] std::io::Error),
}

/// What a device gets when the driver sets `DRIVER_OK`.
#[derive(Debug)]
pub struct Activation {
    /// Guest memory the rings and buffers live in.
    pub mem: Memory,
    /// The queues, in index order; a queue the driver did not enable is not ready.
    pub queues: Vec<Queue>,
    /// Raises the device's interrupt.
    pub interrupt: Interrupt,
    /// The features the driver accepted.
    pub features: u64,
}

/// The receive and transmit queues (0 and 1, as virtio-net and virtio-vsock number them) of an
/// activation, both of which the driver must have enabled (a later queue, vsock's event queue, is not used).
fn receive_and_transmit(queues: Vec<Queue>) -> Result<(Queue, Queue), DeviceError> {
    use virtio_queue::QueueT;
    let mut queues = queues.into_iter();
    let (Some(rx), Some(tx)) = (queues.next(), queues.next()) else {
        return Err(DeviceError::QueueNotEnabled { index: 0 });
    };
    for (index, q) in [(0, &rx), (1, &tx)] {
        if !q.ready() {
            return Err(DeviceError::QueueNotEnabled { index });
        }
    }
    Ok((rx, tx))
}

/// Which of a guest's repeated mistakes get logged: the first ten, then the 16th, 32nd, 64th, … (each
/// line carries the count), so a broken or hostile driver cannot flood the host's log however often it
/// repeats one, and nothing goes unreported either.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogBudget {
    count: u64,
}

impl LogBudget {
    /// Counts one more; returns the count when this one should be logged.
    pub fn hit(&mut self) -> Option<u64> {
        self.count = self.count.saturating_add(1);
        let n = self.count;
        (n <= 10 || n.is_power_of_two()).then_some(n)
    }

    /// How many were counted.
    pub fn count(&self) -> u64 {
        self.count
    }
}

/// A virtio device model: the device-type-specific half that the transport wraps.
pub trait VirtioDevice: Send {
    /// The virtio device ID (`VIRTIO_ID_*`).
    fn device_type(&self) -> u32;
    /// The device-specific and ring features it offers; the transport adds [`VIRTIO_F_VERSION_1`].
    fn features(&self) -> u64;
    /// The largest size of each queue (powers of two); the slice's length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads `data.len()` bytes of the configuration space at `offset`; bytes beyond it read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the configuration space; `false` if the device took nothing (no writable fields there:
    /// the transport reports the write, within its log budget).
    fn write_config(&mut self, offset: u64, data: &[u8]) -> bool {
        let _ = (offset, data);
        false
    }
    /// Starts serving the queues the driver set up.
    fn activate(&mut self, activation: Activation) -> Result<(), DeviceError>;
    /// Back to the state before activation: drops the queues and the memory, keeps the backend.
    fn reset(&mut self);
    /// The driver notified queue `index`. Work per call is bounded (one pass over the available ring).
    fn process_queue(&mut self, index: u16) -> Result<(), DeviceError>;
    /// A descriptor the VMM polls for the backend, if the device has one: edge-triggered (`EPOLLIN |
    /// EPOLLET`), calling [`Self::process_backend`] on each event. That call takes what it can; what it
    /// cannot (the guest has no buffers) waits until the driver notifies a queue, so a level-triggered
    /// poll would spin.
    fn backend_fd(&self) -> Option<RawFd> {
        None
    }
    /// The backend has something for the guest (a packet, a connection).
    fn process_backend(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}

impl VirtioDevice for Box<dyn VirtioDevice> {
    fn device_type(&self) -> u32 {
        (**self).device_type()
    }
    fn features(&self) -> u64 {
        (**self).features()
    }
    fn queue_max_sizes(&self) -> &[u16] {
        (**self).queue_max_sizes()
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        (**self).read_config(offset, data)
    }
    fn write_config(&mut self, offset: u64, data: &[u8]) -> bool {
        (**self).write_config(offset, data)
    }
    fn activate(&mut self, activation: Activation) -> Result<(), DeviceError> {
        (**self).activate(activation)
    }
    fn reset(&mut self) {
        (**self).reset()
    }
    fn process_queue(&mut self, index: u16) -> Result<(), DeviceError> {
        (**self).process_queue(index)
    }
    fn backend_fd(&self) -> Option<RawFd> {
        (**self).backend_fd()
    }
    fn process_backend(&mut self) -> Result<(), DeviceError> {
        (**self).process_backend()
    }
}

/// The name of a virtio device type, for logs.
pub fn type_name(device_type: u32) -> &'static str {
    use virtio_bindings::virtio_ids::{VIRTIO_ID_BLOCK, VIRTIO_ID_NET, VIRTIO_ID_VSOCK};
    match device_type {
        VIRTIO_ID_BLOCK => "virtio-blk",
        VIRTIO_ID_NET => "virtio-net",
        VIRTIO_ID_VSOCK => "virtio-vsock",
        _ => "virtio",
    }
}

/// Copies the part of `config` at `offset` into `data`, zero beyond its end: the configuration-space
/// read of a device whose configuration is a byte image.
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else { return };
    if let Some(src) = config.get(start..) {
        let n = src.len().min(data.len());
        data[..n].copy_from_slice(&src[..n]);
    }
}

/// A device's interrupt: the transport's interrupt-status bits plus the line (an irqfd in the VMM).
/// Cheap to clone; every clone raises the same line.
#[derive(Debug, Clone)]
pub struct Interrupt {
    inner: Arc<InterruptInner>,
}

#[derive(Debug)]
struct InterruptInner {
    status: AtomicU32,
    config_generation: AtomicU32,
    line: EventFdTrigger,
}

impl Interrupt {
    /// An interrupt raised through `line`.
    pub fn new(line: EventFdTrigger) -> Self {
        Interrupt {
            inner: Arc::new(InterruptInner { status: AtomicU32::new(0), config_generation: AtomicU32::new(0), line }),
        }
    }

    /// Tells the driver that buffers were used.
    pub fn signal_used_queue(&self) {
        self.raise(VIRTIO_MMIO_INT_VRING);
    }

    /// Tells the driver that the configuration (or the device status) changed.
    pub fn signal_config_change(&self) {
        self.inner.config_generation.fetch_add(1, Ordering::AcqRel);
        self.raise(VIRTIO_MMIO_INT_CONFIG);
    }

    fn raise(&self, bit: u32) {
        self.inner.status.fetch_or(bit, Ordering::AcqRel);
        if let Err(e) = vm_superio::Trigger::trigger(&self.inner.line) {
            log::warn!("virtio: raising the interrupt failed: {e}");
        }
    }

    /// The interrupt-status register.
    pub fn status(&self) -> u32 {
        self.inner.status.load(Ordering::Acquire)
    }

    /// The driver acknowledged `bits`.
    pub fn ack(&self, bits: u32) {
        self.inner.status.fetch_and(!bits, Ordering::AcqRel);
    }

    /// The configuration generation: changes whenever the configuration may have changed.
    pub fn config_generation(&self) -> u32 {
        self.inner.config_generation.load(Ordering::Acquire)
    }

    fn clear(&self) {
        self.inner.status.store(0, Ordering::Release);
    }
}

#[cfg(test)]
pub(crate) mod testing;
