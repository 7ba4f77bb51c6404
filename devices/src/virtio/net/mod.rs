//! virtio-net (virtio 1.2 §5.1) over a TAP interface: one receive and one transmit queue, a MAC address
//! and link status in the configuration, no offloads.
//!
//! Every frame in the guest's buffers starts with the 12-byte `virtio_net_hdr_v1`; the TAP is opened with
//! `IFF_VNET_HDR` and the same header size, so frames pass between the rings and the TAP unchanged (on
//! receive the device sets `num_buffers` to 1, which the TAP leaves alone). With no offloads negotiated
//! the host kernel hands the TAP only whole, checksummed frames of at most the interface's MTU.
//!
//! Transmit runs when the driver notifies queue 1. Receive runs when the TAP has frames (the VMM polls
//! [`VirtioDevice::backend_fd`] edge-triggered and calls `process_backend`) and when the driver adds
//! receive buffers (a notification of queue 0). A frame that finds no receive buffer waits in the device
//! (one frame; the rest wait in the TAP's own queue) until the driver adds one. A malformed chain costs the
//! guest its buffer (completed with length 0) or its frame (dropped), never the device.

pub mod tap;

use std::io::{Read, Write};
use std::os::fd::RawFd;

use virtio_bindings::virtio_ids::VIRTIO_ID_NET;
use virtio_bindings::virtio_net::{VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP};
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT, Reader, Writer};

pub use self::tap::{NetBackend, Tap, TapError};
use super::chain::{inspect, ChainError};
use super::{read_config_bytes, Activation, DeviceError, Interrupt, LogBudget, Memory, VirtioDevice};

/// Bytes of `virtio_net_hdr_v1` before every frame (version 1 always has `num_buffers`).
pub const VNET_HDR_SIZE: usize = 12;
/// Descriptors in each queue.
pub const QUEUE_SIZE: u16 = 256;
/// The largest frame the device moves, header included: a 64 KiB packet, its Ethernet and VLAN headers.
pub const MAX_FRAME: usize = VNET_HDR_SIZE + 65_535 + 18;
/// Most descriptors in one chain.
const MAX_DESCRIPTORS: usize = QUEUE_SIZE as usize;
const RX: u16 = 0;
const TX: u16 = 1;

/// Frame counts since the device was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Frames handed to the guest.
    pub rx_frames: u64,
    /// Frames dropped on the way to the guest (too large for its buffer).
    pub rx_dropped: u64,
    /// Receive buffers the guest lost to malformed chains.
    pub rx_bad_buffers: u64,
    /// Frames sent to the host.
    pub tx_frames: u64,
    /// Frames dropped on the way out (a malformed chain, or the backend refused them).
    pub tx_dropped: u64,
}

/// A virtio-net device over `B` (a [`Tap`], or a datagram socket in tests).
pub struct Net<B: NetBackend = Tap> {
    backend: B,
    config: [u8; 8],
    rx_frame: Box<[u8]>,
    /// Length of the frame in `rx_frame` that waits for a receive buffer.
    rx_pending: Option<usize>,
    tx_frame: Box<[u8]>,
    active: Option<Active>,
    stats: NetStats,
    log_budget: LogBudget,
}

struct Active {
    mem: Memory,
    rx: Queue,
    tx: Queue,
    interrupt: Interrupt,
}

impl<B: NetBackend> std::fmt::Debug for Net<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("mac", &&self.config[..6])
            .field("active", &self.active.is_some())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Why a chain could not carry a frame.
#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("a receive buffer with device-readable descriptors")]
    ReadableRxBuffer,
    #[error("a transmit buffer with device-writable descriptors")]
    WritableTxBuffer,
    #[error("a {0}-byte frame (the header alone is {VNET_HDR_SIZE}, the largest frame {MAX_FRAME})")]
    BadTxLength(u64),
    #[error("copying the frame failed")]
    Copy(#[source] std::io::Error),
}

impl<B: NetBackend> Net<B> {
    /// A device with MAC address `mac` in front of `backend`.
    pub fn new(backend: B, mac: [u8; 6]) -> Self {
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&mac);
        config[6..8].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        Net {
            backend,
            config,
            rx_frame: vec![0u8; MAX_FRAME].into_boxed_slice(),
            rx_pending: None,
            tx_frame: vec![0u8; MAX_FRAME].into_boxed_slice(),
            active: None,
            stats: NetStats::default(),
            log_budget: LogBudget::default(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Frame counts.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Logs a dropped frame or lost buffer within the device's [`LogBudget`].
    fn note(&mut self, what: &str, e: &dyn std::error::Error) {
        if let Some(n) = self.log_budget.hit() {
            let cause = e.source().map(|s| format!(": {s}")).unwrap_or_default();
            log::warn!("virtio-net: {what} ({n} problems so far): {e}{cause}");
        }
    }

    /// Moves frames from the backend into receive buffers: until the backend has none, or the guest has
    /// no buffer (then one frame waits), at most a queue's worth of buffers per call.
    fn process_rx(&mut self) -> Result<(), DeviceError> {
        let Some(active) = self.active.as_mut() else { return Ok(()) };
        let Active { mem, rx, interrupt, .. } = active;
        let broken = |source| DeviceError::BrokenRing { index: RX, source };
        let mut problems: Vec<(&str, FrameError)> = Vec::new();
        let mut used = false;
        let mut buffers = rx.size();
        let mut reads = 2 * u32::from(rx.size());
        let mut outcome = Ok(());
        while buffers > 0 && reads > 0 {
            let len = match self.rx_pending {
                Some(len) => len,
                None => match self.backend.recv(&mut self.rx_frame) {
                    // A backend frame always carries the header; anything shorter is not a frame.
                    Ok(len) if len >= VNET_HDR_SIZE => {
                        reads -= 1;
                        len
                    }
                    Ok(_) => {
                        reads -= 1;
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => {
                        problems.push(("receiving from the backend failed", FrameError::Copy(e)));
                        break;
                    }
                },
            };
            self.rx_pending = Some(len);
            let chain = match rx.iter(&*mem) {
                Ok(mut it) => it.next(),
                Err(source) => {
                    outcome = Err(broken(source));
                    break;
                }
            };
            let Some(chain) = chain else { break };
            buffers -= 1;
            let head = chain.head_index();
            // num_buffers: one buffer per frame without VIRTIO_NET_F_MRG_RXBUF.
            self.rx_frame[10..12].copy_from_slice(&1u16.to_le_bytes());
            let used_len = match deliver(mem, chain, &self.rx_frame[..len]) {
                Ok(Some(n)) => {
                    self.stats.rx_frames += 1;
                    self.rx_pending = None;
                    n
                }
                Ok(None) => {
                    // Too small for this frame: drop the frame, keep the buffer for the next one.
                    self.stats.rx_dropped += 1;
                    self.rx_pending = None;
                    rx.go_to_previous_position();
                    continue;
                }
                Err(e) => {
                    self.stats.rx_bad_buffers += 1;
                    problems.push(("a receive buffer was unusable", e));
                    0
                }
            };
            if let Err(source) = rx.add_used(&*mem, head, used_len) {
                outcome = Err(broken(source));
                break;
            }
            used = true;
        }
        if used && rx.needs_notification(&*mem).map_err(broken)? {
            interrupt.signal_used_queue();
        }
        for (what, e) in problems {
            self.note(what, &e);
        }
        outcome
    }

    /// Sends the frames the guest queued for transmission (one pass over the available ring).
    fn process_tx(&mut self) -> Result<(), DeviceError> {
        let Some(active) = self.active.as_mut() else { return Ok(()) };
        let Active { mem, tx, interrupt, .. } = active;
        let broken = |source| DeviceError::BrokenRing { index: TX, source };
        let chains: Vec<DescriptorChain<&Memory>> = tx.iter(&*mem).map_err(broken)?.collect();
        let mut problems: Vec<(&str, FrameError)> = Vec::new();
        let mut used = false;
        let mut outcome = Ok(());
        for chain in chains {
            let head = chain.head_index();
            match gather(mem, chain, &mut self.tx_frame) {
                Ok(len) => match self.backend.send(&self.tx_frame[..len]) {
                    Ok(_) => self.stats.tx_frames += 1,
                    Err(e) => {
                        self.stats.tx_dropped += 1;
                        problems.push(("the backend refused a frame", FrameError::Copy(e)));
                    }
                },
                Err(e) => {
                    self.stats.tx_dropped += 1;
                    problems.push(("a transmit chain was unusable", e));
                }
            }
            if let Err(source) = tx.add_used(&*mem, head, 0) {
                outcome = Err(broken(source));
                break;
            }
            used = true;
        }
        if used && tx.needs_notification(&*mem).map_err(broken)? {
            interrupt.signal_used_queue();
        }
        for (what, e) in problems {
            self.note(what, &e);
        }
        outcome
    }
}

/// Copies `frame` into a receive chain; `None` when it does not fit.
fn deliver(mem: &Memory, chain: DescriptorChain<&Memory>, frame: &[u8]) -> Result<Option<u32>, FrameError> {
    let (layout, error) = inspect(mem, chain.clone(), MAX_DESCRIPTORS);
    if let Some(e) = error {
        return Err(e.into());
    }
    if layout.readable > 0 {
        return Err(FrameError::ReadableRxBuffer);
    }
    if layout.writable < frame.len() as u64 {
        return Ok(None);
    }
    let mut writer = Writer::new(mem, chain).map_err(|_| ChainError::Broken)?;
    writer.write_all(frame).map_err(FrameError::Copy)?;
    // At most MAX_FRAME bytes.
    Ok(Some(u32::try_from(frame.len()).unwrap_or(u32::MAX)))
}

/// Copies a transmit chain into `buf`; returns the frame's length.
fn gather(mem: &Memory, chain: DescriptorChain<&Memory>, buf: &mut [u8]) -> Result<usize, FrameError> {
    let (layout, error) = inspect(mem, chain.clone(), MAX_DESCRIPTORS);
    if let Some(e) = error {
        return Err(e.into());
    }
    if layout.writable > 0 {
        return Err(FrameError::WritableTxBuffer);
    }
    let len = match usize::try_from(layout.readable) {
        Ok(len) if (VNET_HDR_SIZE..=buf.len()).contains(&len) => len,
        _ => return Err(FrameError::BadTxLength(layout.readable)),
    };
    let mut reader = Reader::new(mem, chain).map_err(|_| ChainError::Broken)?;
    reader.read_exact(&mut buf[..len]).map_err(FrameError::Copy)?;
    Ok(len)
}

impl<B: NetBackend> VirtioDevice for Net<B> {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn features(&self) -> u64 {
        (1 << VIRTIO_NET_F_MAC) | (1 << VIRTIO_NET_F_STATUS)
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, activation: Activation) -> Result<(), DeviceError> {
        let Activation { mem, queues, interrupt, .. } = activation;
        let (rx, tx) = super::receive_and_transmit(queues)?;
        self.active = Some(Active { mem, rx, tx, interrupt });
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
        self.rx_pending = None;
    }

    fn process_queue(&mut self, index: u16) -> Result<(), DeviceError> {
        match index {
            RX => self.process_rx(),
            TX => self.process_tx(),
            _ => {
                log::warn!("virtio-net: notify of queue {index}, which does not exist");
                Ok(())
            }
        }
    }

    fn backend_fd(&self) -> Option<RawFd> {
        Some(self.backend.fd())
    }

    fn process_backend(&mut self) -> Result<(), DeviceError> {
        self.process_rx()
    }
}

#[cfg(test)]
mod tests;
