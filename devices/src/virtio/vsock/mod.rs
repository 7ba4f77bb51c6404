//! virtio-vsock (virtio 1.2 §5.10), stream sockets only, with Firecracker's host-side convention: the
//! device listens on one Unix socket, `PATH`.
//!
//! - **Host to guest**: a host process connects to `PATH` and writes `CONNECT <port>\n`; the device asks
//!   the guest for a connection to that port from a host port it picks, and once the guest accepts it
//!   writes `OK <host port>\n` back. If the guest refuses, the host socket is closed.
//! - **Guest to host**: a guest connection to CID 2, port `P` becomes a connection to the Unix socket
//!   `PATH_P` (made without blocking: a missing or full listener is a refusal, RST to the guest).
//!
//! Both directions honour virtio-vsock's credit: the device sends the guest no more than its buffer has
//! room for, and takes at most [`connection::BUF_ALLOC`] bytes per connection that the host has not yet
//! read (a guest that sends more is reset). The host sockets are non-blocking and polled through one
//! epoll descriptor of the device's ([`VirtioDevice::backend_fd`]); the device only asks it for what it
//! can act on now, so the descriptor stays quiet while the guest has no receive buffers or credit. A
//! malformed packet is dropped (and the connection it names reset); it never stops the device.

pub mod connection;
pub mod packet;

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use virtio_bindings::virtio_ids::VIRTIO_ID_VSOCK;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT, Reader, Writer};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use self::connection::{Connection, State, BUF_ALLOC};
use self::packet::{Header, Op, HDR_SIZE, HOST_CID, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM};
use super::chain::inspect;
use super::{read_config_bytes, Activation, DeviceError, Interrupt, LogBudget, Memory, VirtioDevice};

/// Descriptors in each queue.
pub const QUEUE_SIZE: u16 = 256;
/// The most payload one packet carries (Linux's `VIRTIO_VSOCK_MAX_PKT_BUF_SIZE`).
pub const MAX_PAYLOAD: usize = 64 << 10;
/// Connections (and host sockets still sending their CONNECT line) at most.
pub const MAX_CONNECTIONS: usize = 1024;
/// Control packets (no payload) waiting for receive buffers, at most.
const MAX_CONTROL: usize = 4 * MAX_CONNECTIONS;
/// Longest CONNECT line.
const MAX_LINE: usize = 32;
const RX: u16 = 0;
const TX: u16 = 1;
const LISTENER: u64 = 0;
const MAX_DESCRIPTORS: usize = QUEUE_SIZE as usize;

/// Errors setting up a vsock device.
#[derive(Debug, thiserror::Error)]
pub enum VsockError {
    /// CIDs 0 to 2 are reserved and `u32::MAX` means "any".
    #[error("guest CID {0} is reserved or too large (use 3 to 4294967294)")]
    InvalidCid(u64),
    /// The host-side socket could not be created.
    #[error("cannot listen on {path} (remove a stale socket there first)")]
    Listen {
        /// The socket's path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The device's epoll could not be set up.
    #[error("cannot set up the device's epoll")]
    Epoll(#[source] std::io::Error),
}

/// A connection: (host port, guest port).
type Key = (u32, u32);

/// A packet for the guest without payload; the credit fields are filled when it is delivered.
#[derive(Debug, Clone, Copy)]
struct Control {
    op: Op,
    key: Key,
    flags: u32,
}

/// A host socket that has not finished its CONNECT line.
#[derive(Debug)]
struct PendingHost {
    stream: UnixStream,
    line: Vec<u8>,
}

struct Active {
    mem: Memory,
    rx: Queue,
    tx: Queue,
    interrupt: Interrupt,
}

/// A virtio-vsock device for a guest with CID `cid`.
pub struct Vsock {
    cid: u64,
    path: PathBuf,
    listener: UnixListener,
    epoll: Epoll,
    config: [u8; 8],
    conns: HashMap<Key, Connection>,
    tokens: HashMap<u64, Key>,
    pending: HashMap<u64, PendingHost>,
    ready: VecDeque<Key>,
    control: VecDeque<Control>,
    next_token: u64,
    next_port: u32,
    bounce: Box<[u8]>,
    active: Option<Active>,
    problems: LogBudget,
}

impl std::fmt::Debug for Vsock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vsock")
            .field("cid", &self.cid)
            .field("path", &self.path)
            .field("connections", &self.conns.len())
            .field("active", &self.active.is_some())
            .finish_non_exhaustive()
    }
}

impl Vsock {
    /// A device for guest CID `cid`, listening for host connections on the Unix socket `path`.
    pub fn new(cid: u64, path: &Path) -> Result<Vsock, VsockError> {
        if !(3..u64::from(u32::MAX)).contains(&cid) {
            return Err(VsockError::InvalidCid(cid));
        }
        let listen = |source| VsockError::Listen { path: path.to_owned(), source };
        let listener = UnixListener::bind(path).map_err(listen)?;
        listener.set_nonblocking(true).map_err(listen)?;
        let epoll = Epoll::new().map_err(VsockError::Epoll)?;
        epoll
            .ctl(ControlOperation::Add, listener.as_raw_fd(), EpollEvent::new(EventSet::IN, LISTENER))
            .map_err(VsockError::Epoll)?;
        Ok(Vsock {
            cid,
            path: path.to_owned(),
            listener,
            epoll,
            config: cid.to_le_bytes(),
            conns: HashMap::new(),
            tokens: HashMap::new(),
            pending: HashMap::new(),
            ready: VecDeque::new(),
            control: VecDeque::new(),
            next_token: LISTENER + 1,
            next_port: 1 << 30,
            bounce: vec![0u8; MAX_PAYLOAD].into_boxed_slice(),
            active: None,
            problems: LogBudget::default(),
        })
    }

    /// The guest's CID.
    pub fn cid(&self) -> u64 {
        self.cid
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Logs a problem within the device's [`LogBudget`].
    fn note(&mut self, msg: std::fmt::Arguments<'_>) {
        if let Some(n) = self.problems.hit() {
            log::warn!("virtio-vsock: {msg} ({n} problems so far)");
        }
    }

    fn send_control(&mut self, op: Op, key: Key, flags: u32) {
        if self.control.len() >= MAX_CONTROL {
            self.note(format_args!("the guest takes no packets; {op:?} for {key:?} dropped"));
            return;
        }
        self.control.push_back(Control { op, key, flags });
    }

    fn register(&mut self, fd: RawFd, events: EventSet) -> Option<u64> {
        let token = self.next_token;
        self.next_token += 1;
        match self.epoll.ctl(ControlOperation::Add, fd, EpollEvent::new(events, token)) {
            Ok(()) => Some(token),
            Err(e) => {
                self.note(format_args!("epoll registration failed: {e}"));
                None
            }
        }
    }

    fn remove(&mut self, key: Key) {
        if let Some(c) = self.conns.remove(&key) {
            if c.interest.is_some() {
                let _ = self.epoll.ctl(ControlOperation::Delete, c.stream.as_raw_fd(), EpollEvent::default());
            }
            self.tokens.remove(&c.token);
        }
    }

    /// Resets a connection: RST to the guest, the host socket closed.
    fn rst(&mut self, key: Key) {
        self.remove(key);
        self.send_control(Op::Rst, key, 0);
    }

    /// Puts a connection in the round-robin of those with data for the guest, if it can send now.
    fn requeue(&mut self, key: Key) {
        if let Some(c) = self.conns.get_mut(&key) {
            if c.can_send_to_guest() && !c.queued {
                c.queued = true;
                self.ready.push_back(key);
            }
        }
    }

    /// Brings a connection up to date after anything happened to it: guest data to the host, the
    /// guest's shutdown carried out, a credit update when due, data for the guest queued.
    fn settle(&mut self, key: Key) {
        let Some(c) = self.conns.get_mut(&key) else { return };
        if !c.flush() {
            self.rst(key);
            return;
        }
        if c.host_bound.is_empty() {
            if c.peer_shutdown & SHUTDOWN_SEND != 0 {
                let _ = c.stream.shutdown(std::net::Shutdown::Write);
            }
            if c.peer_shutdown == SHUTDOWN_RCV | SHUTDOWN_SEND {
                // The guest closed; RST finishes the close on its side.
                self.rst(key);
                return;
            }
        }
        if c.credit_update_due() {
            c.fwd_cnt_sent = c.fwd_cnt;
            self.send_control(Op::CreditUpdate, key, 0);
        }
        self.requeue(key);
    }

    /// Handles what the host sockets have for us, until nothing is ready.
    fn handle_events(&mut self) {
        let mut events = [EpollEvent::default(); 64];
        // Every event either drains its socket or turns its interest off, so this ends; the bound only
        // guards against a host that opens connections without pause.
        for _ in 0..1024 {
            let n = match self.epoll.wait(0, &mut events) {
                Ok(0) => return,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.note(format_args!("epoll_wait failed: {e}"));
                    return;
                }
            };
            for ev in &events[..n] {
                let (token, set) = (ev.data(), ev.event_set());
                if token == LISTENER {
                    self.accept_all();
                } else if self.pending.contains_key(&token) {
                    self.read_connect_line(token);
                } else if let Some(&key) = self.tokens.get(&token) {
                    self.host_event(key, set);
                }
            }
            self.sync_interest();
        }
    }

    fn accept_all(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    let path = self.path.display().to_string();
                    self.note(format_args!("accept on {path} failed: {e}"));
                    return;
                }
            };
            if self.conns.len() + self.pending.len() >= MAX_CONNECTIONS {
                self.note(format_args!("{MAX_CONNECTIONS} connections open; a host connection was refused"));
                continue;
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            if let Some(token) = self.register(stream.as_raw_fd(), EventSet::IN) {
                self.pending.insert(token, PendingHost { stream, line: Vec::new() });
            }
        }
    }

    /// Reads a host socket's `CONNECT <port>\n` byte by byte (what follows it is the stream's data).
    fn read_connect_line(&mut self, token: u64) {
        let Some(p) = self.pending.get_mut(&token) else { return };
        let port = loop {
            let mut b = [0u8; 1];
            match p.stream.read(&mut b) {
                Ok(1) if b[0] == b'\n' => {
                    break std::str::from_utf8(&p.line)
                        .ok()
                        .and_then(|l| l.trim_end_matches('\r').strip_prefix("CONNECT "))
                        .and_then(|port| port.trim().parse::<u32>().ok());
                }
                Ok(1) if p.line.len() < MAX_LINE => p.line.push(b[0]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                _ => break None,
            }
        };
        let Some(p) = self.pending.remove(&token) else { return };
        let Some(guest_port) = port else {
            let _ = self.epoll.ctl(ControlOperation::Delete, p.stream.as_raw_fd(), EpollEvent::default());
            self.note(format_args!(
                "a host connection sent no valid CONNECT line: {:?}",
                String::from_utf8_lossy(&p.line)
            ));
            return;
        };
        let mut host_port = self.next_port;
        while self.conns.contains_key(&(host_port, guest_port)) {
            host_port = host_port.wrapping_add(1);
        }
        self.next_port = host_port.wrapping_add(1);
        let key = (host_port, guest_port);
        self.tokens.insert(token, key);
        self.conns.insert(key, Connection::new(p.stream, token, State::Requested));
        self.send_control(Op::Request, key, 0);
    }

    fn host_event(&mut self, key: Key, set: EventSet) {
        let Some(c) = self.conns.get_mut(&key) else { return };
        if set.intersects(EventSet::HANG_UP | EventSet::ERROR) {
            // Reported whatever the interest: stop polling; what is left is read without epoll.
            let _ = self.epoll.ctl(ControlOperation::Delete, c.stream.as_raw_fd(), EpollEvent::default());
            c.interest = None;
            if c.state == State::Requested {
                self.rst(key);
                return;
            }
        }
        if c.state == State::Established && set.intersects(EventSet::IN | EventSet::HANG_UP | EventSet::ERROR) {
            c.readable = true;
        }
        self.settle(key);
    }

    fn sync_interest(&mut self) {
        for c in self.conns.values_mut() {
            let Some(current) = c.interest else { continue };
            let want = c.wanted_interest();
            if want != current {
                let ev = EpollEvent::new(want, c.token);
                if self.epoll.ctl(ControlOperation::Modify, c.stream.as_raw_fd(), ev).is_ok() {
                    c.interest = Some(want);
                }
            }
        }
    }

    /// A packet from the guest.
    fn guest_packet(&mut self, h: Header, payload: &[u8]) {
        if h.src_cid != self.cid || h.dst_cid != HOST_CID {
            self.note(format_args!("a packet from CID {} to CID {} dropped", h.src_cid, h.dst_cid));
            return;
        }
        let key = (h.dst_port, h.src_port);
        let op = match (h.kind, h.op) {
            (_, Some(Op::Rst)) => {
                self.remove(key);
                return;
            }
            (TYPE_STREAM, Some(op)) => op,
            _ => {
                self.rst(key);
                return;
            }
        };
        if op == Op::Request {
            if self.conns.contains_key(&key) {
                self.rst(key);
            } else {
                self.connect_to_host(key, &h);
            }
            return;
        }
        let Some(c) = self.conns.get_mut(&key) else {
            self.send_control(Op::Rst, key, 0);
            return;
        };
        c.update_peer(&h);
        match op {
            Op::Response if c.state == State::Requested => {
                c.state = State::Established;
                let ok = format!("OK {}\n", key.0);
                // A fresh socket has room for a line; if not, the host cannot be talking to us.
                if c.stream.write_all(ok.as_bytes()).is_err() {
                    self.rst(key);
                    return;
                }
            }
            Op::Rw if c.state == State::Established && c.peer_shutdown & SHUTDOWN_SEND == 0 => {
                if c.host_bound.len() + payload.len() > BUF_ALLOC as usize {
                    self.note(format_args!("the guest sent beyond its credit on {key:?}"));
                    self.rst(key);
                    return;
                }
                c.host_bound.extend(payload);
            }
            Op::Shutdown => c.peer_shutdown |= h.flags & (SHUTDOWN_RCV | SHUTDOWN_SEND),
            Op::CreditRequest => {
                c.fwd_cnt_sent = c.fwd_cnt;
                self.send_control(Op::CreditUpdate, key, 0);
            }
            Op::CreditUpdate => {}
            _ => {
                self.rst(key);
                return;
            }
        }
        self.settle(key);
    }

    /// The guest connects to host port `key.0`: the Unix socket `PATH_<port>`.
    fn connect_to_host(&mut self, key: Key, h: &Header) {
        if self.conns.len() + self.pending.len() >= MAX_CONNECTIONS {
            self.send_control(Op::Rst, key, 0);
            return;
        }
        let mut path = self.path.as_os_str().to_owned();
        path.push(format!("_{}", key.0));
        let stream = match connection::connect(Path::new(&path)) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("virtio-vsock: guest connection to {}: {e}", Path::new(&path).display());
                self.send_control(Op::Rst, key, 0);
                return;
            }
        };
        let Some(token) = self.register(stream.as_raw_fd(), EventSet::IN) else {
            self.send_control(Op::Rst, key, 0);
            return;
        };
        let mut c = Connection::new(stream, token, State::Established);
        c.interest = Some(EventSet::IN);
        c.update_peer(h);
        self.tokens.insert(token, key);
        self.conns.insert(key, c);
        self.send_control(Op::Response, key, 0);
    }

    /// Sends the guest what waits for it (control packets first, then host data, round-robin), at most a
    /// receive queue's worth of buffers per call.
    fn process_rx(&mut self) -> Result<(), DeviceError> {
        let Some(mut a) = self.active.take() else { return Ok(()) };
        let result = self.fill_rx(&mut a);
        self.active = Some(a);
        self.sync_interest();
        result
    }

    fn fill_rx(&mut self, a: &mut Active) -> Result<(), DeviceError> {
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
    fn fill_buffer(&mut self, mem: &Memory, chain: DescriptorChain<&Memory>) -> Option<u32> {
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
    fn send_data(&mut self, key: Key, writer: Writer<'_>) -> Option<u32> {
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
    fn process_tx(&mut self) -> Result<(), DeviceError> {
        let Some(mut a) = self.active.take() else { return Ok(()) };
        let result = self.drain_tx(&mut a);
        self.active = Some(a);
        let rx = self.process_rx();
        result.and(rx)
    }

    fn drain_tx(&mut self, a: &mut Active) -> Result<(), DeviceError> {
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
fn write_packet(mut w: Writer<'_>, h: &Header, payload: &[u8]) -> u32 {
    let ok = w.write_all(&h.bytes()).and_then(|()| w.write_all(payload));
    // The chain was checked to lie in memory and to be large enough; a failure writes nothing useful.
    if ok.is_err() {
        return 0;
    }
    u32::try_from(w.bytes_written()).unwrap_or(0)
}

/// Reads a packet from a transmit chain into `buf`: its header and payload length. On error, the header
/// if there was one (so that its connection can be reset).
fn read_packet(
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

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_VSOCK
    }

    fn features(&self) -> u64 {
        0
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, activation: Activation) -> Result<(), DeviceError> {
        let Activation { mem, queues, interrupt, .. } = activation;
        let (rx, tx) = super::receive_and_transmit(queues)?;
        self.active = Some(Active { mem, rx, tx, interrupt });
        // Host connections that came while the device was stopped.
        self.handle_events();
        self.process_rx()
    }

    fn reset(&mut self) {
        self.active = None;
        let keys: Vec<Key> = self.conns.keys().copied().collect();
        for key in keys {
            self.remove(key);
        }
        self.ready.clear();
        self.control.clear();
    }

    fn process_queue(&mut self, index: u16) -> Result<(), DeviceError> {
        match index {
            RX => self.process_rx(),
            TX => self.process_tx(),
            // The event queue only carries transport resets (after a snapshot restore): never sent.
            _ => Ok(()),
        }
    }

    fn backend_fd(&self) -> Option<RawFd> {
        Some(self.epoll.as_raw_fd())
    }

    fn process_backend(&mut self) -> Result<(), DeviceError> {
        self.handle_events();
        self.process_rx()
    }
}

impl Drop for Vsock {
    fn drop(&mut self) {
        // The listening socket's file is ours; leave no stale one behind.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests;
