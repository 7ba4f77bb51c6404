//! The host side of virtio-vsock: the listening socket and the host's connections, polled through the
//! device's epoll (accepts, `CONNECT <port>` lines, readiness), and the guest's connections to host ports.

use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::path::Path;

use vmm_sys_util::epoll::{ControlOperation, EpollEvent, EventSet};

use super::connection::{Connection, State};
use super::packet::{Header, Op};
use super::*;

impl Vsock {
    /// Handles what the host sockets have for us, until nothing is ready.
    pub(super) fn handle_events(&mut self) {
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

    pub(super) fn accept_all(&mut self) {
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
    pub(super) fn read_connect_line(&mut self, token: u64) {
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

    pub(super) fn host_event(&mut self, key: Key, set: EventSet) {
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

    pub(super) fn sync_interest(&mut self) {
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

    /// The guest connects to host port `key.0`: the Unix socket `PATH_<port>`.
    pub(super) fn connect_to_host(&mut self, key: Key, h: &Header) {
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
}
