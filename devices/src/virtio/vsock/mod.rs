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
mod guest;
mod host;
pub mod packet;
mod queues;

use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use virtio_bindings::virtio_ids::VIRTIO_ID_VSOCK;
use virtio_queue::Queue;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use self::connection::Connection;
use self::packet::{Op, SHUTDOWN_RCV, SHUTDOWN_SEND};
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
