//! The device's two queues: the receive queue filled with control packets and host data (round-robin
//! over the connections), the transmit queue drained into the connections; and reading and writing one
//! packet in a descriptor chain.

use std::io::{ErrorKind, Read, Write};

use virtio_queue::{DescriptorChain, QueueOwnedT, QueueT, Reader, Writer};

use super::connection::BUF_ALLOC;
use super::packet::{Header, Op, HDR_SIZE, SHUTDOWN_RCV, SHUTDOWN_SEND};
use crate::virtio::chain::inspect;
use crate::virtio::{DeviceError, Memory};
use super::*;

impl Vsock {
    /// Sends the guest what waits for it (control packets first, then host data, round-robin), at most a
    /// receive queue's worth of buffers per call.
    pub(super) fn process_rx(&mut self) -> Result<(), DeviceError> {
        let Some(mut a) = self.active.take() else { return Ok(()) };
        let result = self.fill_rx(&mut a);
        self.active = Some(a);
        self.sync_interest();
        result
    }

    pub(super) fn fill_rx(&mut self, a: &mut Active) -> Result<(), DeviceError> {
        let broken = |source| DeviceError::BrokenRing { index: RX, source };
        let mut used = false;
        let mut outcome = Ok(());
        for _ in 0..a.rx.size() {
            if self.control.is_empty() && self.ready.is_empty() {
                break;
            }
            let chain = match a.rx.iter(&a.mem) {
                Ok(mut it) => it.next(),
                Err(source) => {
                    outcome = Err(broken(source));
                    break;
                }
            };
            let Some(chain) = chain else { break };
            let head = chain.head_index();
            let used_len = match self.fill_buffer(&a.mem, chain) {
                Some(n) => n,
                None => {
                    // Nothing was sent after all (the connection had nothing): give the buffer back.
                    a.rx.go_to_previous_position();
                    continue;
                }
            };
            if let Err(source) = a.rx.add_used(&a.mem, head, used_len) {
                outcome = Err(broken(source));
                break;
            }
            used = true;
        }
        if used && a.rx.needs_notification(&a.mem).map_err(broken)? {
            a.interrupt.signal_used_queue();
        }
        outcome
    }

    /// Fills one receive buffer; its used length, or `None` if there turned out to be nothing to send.
    pub(super) fn fill_buffer(&mut self, mem: &Memory, chain: DescriptorChain<&Memory>) -> Option<u32> {
        let (layout, error) = inspect(mem, chain.clone(), MAX_DESCRIPTORS);
        let writer = match (error, Writer::new(mem, chain)) {
            (None, Ok(w)) if layout.readable == 0 && layout.writable >= HDR_SIZE as u64 => w,
            _ => {
                self.note(format_args!("a malformed receive buffer was returned empty"));
                return Some(0);
            }
        };
        if let Some(c) = self.control.pop_front() {
            let mut h = Header::to_guest(c.op, c.key.0, self.cid, c.key.1);
            h.flags = c.flags;
            h.buf_alloc = BUF_ALLOC;
            h.fwd_cnt = self.conns.get(&c.key).map_or(0, |conn| conn.fwd_cnt);
            return Some(write_packet(writer, &h, &[]));
        }
        for _ in 0..self.ready.len() {
            let key = self.ready.pop_front()?;
            if let Some(n) = self.send_data(key, writer.clone()) {
                return Some(n);
            }
        }
        None
    }

    /// Reads host data of connection `key` into a packet; `None` if there was none to send.
    pub(super) fn send_data(&mut self, key: Key, writer: Writer<'_>) -> Option<u32> {
        let cid = self.cid;
        let c = self.conns.get_mut(&key)?;
        c.queued = false;
        if !c.can_send_to_guest() {
            return None;
        }
        let room = writer.available_bytes().saturating_sub(HDR_SIZE);
        let max = room.min(MAX_PAYLOAD).min(c.peer_credit() as usize);
        if max == 0 {
            // A buffer with room for the header only: try the next one.
            self.requeue(key);
            return None;
        }
        let n = match c.stream.read(&mut self.bounce[..max]) {
            Ok(0) => {
                c.host_eof = true;
                c.readable = false;
                // The host closed its side; without epoll (hung up) it will not read either.
                let flags = if c.interest.is_none() { SHUTDOWN_SEND | SHUTDOWN_RCV } else { SHUTDOWN_SEND };
                self.send_control(Op::Shutdown, key, flags);
                return None;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                c.readable = false;
                return None;
            }
            Err(_) => {
                self.rst(key);
                return None;
            }
        };
        let mut h = Header::to_guest(Op::Rw, key.0, cid, key.1);
        h.len = n as u32;
        h.buf_alloc = BUF_ALLOC;
        h.fwd_cnt = c.fwd_cnt;
        c.fwd_cnt_sent = c.fwd_cnt;
        c.rx_cnt = c.rx_cnt.wrapping_add(n as u32);
        let used = write_packet(writer, &h, &self.bounce[..n]);
        self.requeue(key);
        Some(used)
    }

    /// Takes the packets the guest sent (one pass over the transmit ring).
    pub(super) fn process_tx(&mut self) -> Result<(), DeviceError> {
        let Some(mut a) = self.active.take() else { return Ok(()) };
        let result = self.drain_tx(&mut a);
        self.active = Some(a);
        let rx = self.process_rx();
        result.and(rx)
    }

    pub(super) fn drain_tx(&mut self, a: &mut Active) -> Result<(), DeviceError> {
        let broken = |source| DeviceError::BrokenRing { index: TX, source };
        let chains: Vec<DescriptorChain<&Memory>> = a.tx.iter(&a.mem).map_err(broken)?.collect();
        let mut bounce = std::mem::take(&mut self.bounce);
        let mut outcome = Ok(());
        let mut used = false;
        for chain in chains {
            let head = chain.head_index();
            let packet = read_packet(&a.mem, chain, &mut bounce);
            if let Err(source) = a.tx.add_used(&a.mem, head, 0) {
                outcome = Err(broken(source));
                break;
            }
            used = true;
            match packet {
                Ok((h, n)) => self.guest_packet(h, &bounce[..n]),
                Err(Some(h)) => {
                    self.note(format_args!("a malformed packet on {:?} reset it", (h.dst_port, h.src_port)));
                    if h.src_cid == self.cid && h.op != Some(Op::Rst) {
                        self.rst((h.dst_port, h.src_port));
                    }
                }
                Err(None) => self.note(format_args!("a malformed transmit chain was dropped")),
            }
        }
        self.bounce = bounce;
        if used && a.tx.needs_notification(&a.mem).map_err(broken)? {
            a.interrupt.signal_used_queue();
        }
        outcome
    }
}

/// Writes a packet into a receive buffer known to hold at least the header; returns the bytes written.
pub(super) fn write_packet(mut w: Writer<'_>, h: &Header, payload: &[u8]) -> u32 {
    let ok = w.write_all(&h.bytes()).and_then(|()| w.write_all(payload));
    // The chain was checked to lie in memory and to be large enough; a failure writes nothing useful.
    if ok.is_err() {
        return 0;
    }
    u32::try_from(w.bytes_written()).unwrap_or(0)
}

/// Reads a packet from a transmit chain into `buf`: its header and payload length. On error, the header
/// if there was one (so that its connection can be reset).
pub(super) fn read_packet(
    mem: &Memory,
    chain: DescriptorChain<&Memory>,
    buf: &mut [u8],
) -> Result<(Header, usize), Option<Header>> {
    let (layout, error) = inspect(mem, chain.clone(), MAX_DESCRIPTORS);
    if error.is_some() || layout.writable > 0 || layout.readable < HDR_SIZE as u64 {
        return Err(None);
    }
    let mut reader: Reader<'_> = Reader::new(mem, chain).map_err(|_| None)?;
    let mut raw = [0u8; HDR_SIZE];
    reader.read_exact(&mut raw).map_err(|_| None)?;
    let h = Header::parse(&raw);
    let len = h.len as usize;
    if len > buf.len() || len > reader.available_bytes() {
        return Err(Some(h));
    }
    reader.read_exact(&mut buf[..len]).map_err(|_| Some(h))?;
    Ok((h, len))
}
