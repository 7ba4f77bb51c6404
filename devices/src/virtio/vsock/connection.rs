//! One guest↔host stream connection: its host socket, its state and both directions' credit.

use std::collections::VecDeque;
use std::io::{ErrorKind, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use vmm_sys_util::epoll::EventSet;

use super::packet::Header;

/// Receive-buffer space this device offers the guest per connection (bytes in flight towards the host).
pub const BUF_ALLOC: u32 = 256 << 10;
/// Tell the guest about freed space once this much was forwarded since the last time.
const CREDIT_UPDATE_THRESHOLD: u32 = BUF_ALLOC / 4;

/// Where a connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The host connected and asked for a guest port; the guest has not answered the REQUEST yet.
    Requested,
    /// Data flows.
    Established,
}

/// A connection between guest port `guest_port` and host port `host_port`.
#[derive(Debug)]
pub struct Connection {
    /// The host's end.
    pub stream: UnixStream,
    /// Its epoll token.
    pub token: u64,
    /// Where it stands.
    pub state: State,
    /// Guest data not yet written to the host socket (at most [`BUF_ALLOC`]).
    pub host_bound: VecDeque<u8>,
    /// Bytes of guest data forwarded to the host, ever (wrapping).
    pub fwd_cnt: u32,
    /// `fwd_cnt` as last told to the guest.
    pub fwd_cnt_sent: u32,
    /// Bytes of host data sent to the guest, ever (wrapping).
    pub rx_cnt: u32,
    /// The guest's receive buffer size, as it last said.
    pub peer_buf_alloc: u32,
    /// Bytes the guest consumed, as it last said.
    pub peer_fwd_cnt: u32,
    /// SHUTDOWN flags the guest sent.
    pub peer_shutdown: u32,
    /// The host socket may have data (or an end) for the guest.
    pub readable: bool,
    /// In the device's round-robin of readable connections.
    pub queued: bool,
    /// The host socket reached its end.
    pub host_eof: bool,
    /// Registered with the device's epoll, with this interest (`None`: not registered any more).
    pub interest: Option<EventSet>,
}

impl Connection {
    /// A connection over `stream`, registered under `token` with no interest yet.
    pub fn new(stream: UnixStream, token: u64, state: State) -> Self {
        Connection {
            stream,
            token,
            state,
            host_bound: VecDeque::new(),
            fwd_cnt: 0,
            fwd_cnt_sent: 0,
            rx_cnt: 0,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            peer_shutdown: 0,
            readable: false,
            queued: false,
            host_eof: false,
            interest: Some(EventSet::empty()),
        }
    }

    /// Takes the guest's view of its buffer from any packet it sent.
    pub fn update_peer(&mut self, h: &Header) {
        self.peer_buf_alloc = h.buf_alloc;
        self.peer_fwd_cnt = h.fwd_cnt;
    }

    /// Bytes the guest can take now. A guest that reports more consumed than it was sent gets nothing.
    pub fn peer_credit(&self) -> u32 {
        let in_flight = self.rx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Whether the guest should hear about freed space.
    pub fn credit_update_due(&self) -> bool {
        self.fwd_cnt.wrapping_sub(self.fwd_cnt_sent) >= CREDIT_UPDATE_THRESHOLD
    }

    /// Whether host data can go to the guest now.
    pub fn can_send_to_guest(&self) -> bool {
        self.state == State::Established
            && self.readable
            && !self.host_eof
            && self.peer_shutdown & super::packet::SHUTDOWN_RCV == 0
            && self.peer_credit() > 0
    }

    /// Writes as much guest data to the host as the socket takes; returns false if the host is gone.
    pub fn flush(&mut self) -> bool {
        while !self.host_bound.is_empty() {
            let (front, _) = self.host_bound.as_slices();
            match self.stream.write(front) {
                Ok(0) => return false,
                Ok(n) => {
                    self.host_bound.drain(..n);
                    // n is at most BUF_ALLOC.
                    self.fwd_cnt = self.fwd_cnt.wrapping_add(n as u32);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// What the device should poll the host socket for, in this state.
    pub fn wanted_interest(&self) -> EventSet {
        let mut ev = EventSet::empty();
        if self.state == State::Established && !self.readable && !self.host_eof {
            ev |= EventSet::IN;
        }
        if !self.host_bound.is_empty() {
            ev |= EventSet::OUT;
        }
        ev
    }
}

/// Connects to the Unix socket at `path` without blocking: a host service whose backlog is full refuses
/// the connection instead of stalling the device.
pub fn connect(path: &Path) -> std::io::Result<UnixStream> {
    // SAFETY: socket() takes no pointers; we check its result before using it.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_un is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_un of `len` bytes that outlives the call.
    let rc = unsafe { libc::connect(fd, std::ptr::addr_of!(addr).cast(), len) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(UnixStream::from(sock))
}
