//! What the guest's packets do: connection requests, data, credit, shutdown and reset, each checked
//! against the connection it names (a packet for no connection resets it).

use std::io::Write;

use super::connection::{State, BUF_ALLOC};
use super::packet::{Header, Op, HOST_CID, SHUTDOWN_RCV, SHUTDOWN_SEND, TYPE_STREAM};
use super::*;

impl Vsock {
    /// A packet from the guest.
    pub(super) fn guest_packet(&mut self, h: Header, payload: &[u8]) {
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
}
