use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use virtio_bindings::virtio_mmio as reg;
use vmm_sys_util::tempdir::TempDir;

use super::connection::BUF_ALLOC;
use super::packet::{Header, HDR_SIZE, HOST_CID, TYPE_STREAM};
use super::*;
use crate::virtio::mmio::CONFIG_OFFSET;
use crate::virtio::testing::{Driver, Seg, BUFFERS, MEM_SIZE};

const CID: u64 = 3;
const RXQ: usize = 0;
const TXQ: usize = 1;
const RX_BUFS: u64 = BUFFERS;
const TX_BUFS: u64 = BUFFERS + 0x40_0000;

/// A guest driving the device, with the host socket's directory.
struct Guest {
    d: Driver<Vsock>,
    rx_addr: HashMap<u16, u64>,
    next_rx: u64,
    next_tx: u64,
    dir: TempDir,
}

impl Guest {
    fn new() -> Guest {
        let dir = TempDir::new_with_prefix("/tmp/duet-vsock").expect("temp dir");
        let vsock = Vsock::new(CID, &dir.as_path().join("v.sock")).expect("vsock");
        Guest { d: Driver::probe(vsock, u64::MAX), rx_addr: HashMap::new(), next_rx: 0, next_tx: 0, dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.as_path().join("v.sock")
    }

    /// Posts `n` 4 KiB receive buffers and kicks the receive queue.
    fn post_rx(&mut self, n: usize) {
        for _ in 0..n {
            let at = RX_BUFS + (self.next_rx % 512) * 0x1000;
            self.next_rx += 1;
            let head = self.d.add_chain(RXQ, &[Seg(at, 0x1000, true)]);
            self.rx_addr.insert(head, at);
        }
        self.d.kick(RXQ);
    }

    /// The packets the device put in receive buffers since the last call.
    fn recv(&mut self) -> Vec<(Header, Vec<u8>)> {
        self.d
            .take_used(RXQ)
            .into_iter()
            .map(|(head, len)| {
                let at = self.rx_addr[&(head as u16)];
                let bytes = self.d.read_bytes(at, len as usize);
                let raw: [u8; HDR_SIZE] = bytes[..HDR_SIZE].try_into().expect("header");
                (Header::parse(&raw), bytes[HDR_SIZE..].to_vec())
            })
            .collect()
    }

    /// Sends a packet from the guest (header and payload in two descriptors) and kicks.
    fn send_raw(&mut self, h: &Header, payload: &[u8]) {
        let at = TX_BUFS + (self.next_tx % 64) * 0x1_0000 * 2;
        self.next_tx += 1;
        self.d.write_bytes(at, &h.bytes());
        self.d.write_bytes(at + 0x1000, payload);
        let mut segs = vec![Seg(at, HDR_SIZE as u32, false)];
        if !payload.is_empty() {
            segs.push(Seg(at + 0x1000, payload.len() as u32, false));
        }
        self.d.add_chain(TXQ, &segs);
        self.d.kick(TXQ);
    }

    fn send(&mut self, op: Op, guest_port: u32, host_port: u32, payload: &[u8], fwd_cnt: u32) {
        let h = guest_header(op, guest_port, host_port, payload.len() as u32, 64 << 10, fwd_cnt);
        self.send_raw(&h, payload);
    }
}

fn guest_header(op: Op, guest_port: u32, host_port: u32, len: u32, buf_alloc: u32, fwd_cnt: u32) -> Header {
    Header {
        src_cid: CID,
        dst_cid: HOST_CID,
        src_port: guest_port,
        dst_port: host_port,
        len,
        kind: TYPE_STREAM,
        op: Some(op),
        flags: 0,
        buf_alloc,
        fwd_cnt,
    }
}

fn host_connect(g: &Guest, line: &str) -> UnixStream {
    let mut s = UnixStream::connect(g.path()).expect("connect to the vsock socket");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    s.write_all(line.as_bytes()).expect("connect line");
    s
}

fn read_exactly(s: &mut UnixStream, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    s.read_exact(&mut b).expect("host read");
    b
}

/// A host-initiated connection to guest port 1234, accepted by the guest; returns the host port.
fn host_initiated(g: &mut Guest) -> (UnixStream, u32) {
    g.post_rx(8);
    let mut s = host_connect(g, "CONNECT 1234\n");
    g.d.t.process_backend();
    let got = g.recv();
    assert_eq!(got.len(), 1);
    let (req, _) = got[0];
    assert_eq!((req.op, req.src_cid, req.dst_cid, req.dst_port), (Some(Op::Request), HOST_CID, CID, 1234));
    g.send(Op::Response, 1234, req.src_port, &[], 0);
    let ok = format!("OK {}\n", req.src_port);
    assert_eq!(read_exactly(&mut s, ok.len()), ok.as_bytes());
    (s, req.src_port)
}

#[test]
fn config_and_construction() {
    let mut g = Guest::new();
    let mut b = [0u8; 8];
    g.d.t.read(CONFIG_OFFSET, &mut b);
    assert_eq!(u64::from_le_bytes(b), CID);
    assert_eq!(g.d.r32(reg::VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_VSOCK);
    assert_eq!(g.d.device_features(), crate::virtio::VIRTIO_F_VERSION_1);
    for cid in [0, 1, 2, u64::from(u32::MAX), u64::MAX] {
        assert!(matches!(Vsock::new(cid, &g.dir.as_path().join("x")), Err(VsockError::InvalidCid(_))));
    }
    assert!(matches!(Vsock::new(4, &g.path()), Err(VsockError::Listen { .. })), "the path is taken");
    let other = g.dir.as_path().join("other.sock");
    drop(Vsock::new(4, &other).expect("vsock"));
    assert!(!other.exists(), "the device removes its socket");
}

#[test]
fn a_host_connection_exchanges_data_and_closes() {
    let mut g = Guest::new();
    let (mut s, hp) = host_initiated(&mut g);
    s.write_all(b"ping").expect("host write");
    g.d.t.process_backend();
    let got = g.recv();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0.op, got[0].0.src_port, got[0].0.dst_port), (Some(Op::Rw), hp, 1234));
    assert_eq!(got[0].1, b"ping");
    assert_eq!(got[0].0.buf_alloc, BUF_ALLOC);
    g.send(Op::Rw, 1234, hp, b"pong", 4);
    assert_eq!(read_exactly(&mut s, 4), b"pong");
    // The guest closes: the device answers RST and closes the host socket.
    let mut h = guest_header(Op::Shutdown, 1234, hp, 0, 64 << 10, 4);
    h.flags = SHUTDOWN_RCV | SHUTDOWN_SEND;
    g.send_raw(&h, &[]);
    assert!(g.recv().iter().any(|(h, _)| h.op == Some(Op::Rst)));
    assert_eq!(s.read(&mut [0u8; 8]).expect("eof"), 0);
    assert_eq!(g.d.t.device().connections(), 0);
}

#[test]
fn a_guest_connection_reaches_the_port_socket() {
    let mut g = Guest::new();
    let mut port_path = g.path().into_os_string();
    port_path.push("_5000");
    let listener = UnixListener::bind(&port_path).expect("port listener");
    g.post_rx(8);
    g.send(Op::Request, 40000, 5000, &[], 0);
    let got = g.recv();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0.op, got[0].0.src_port, got[0].0.dst_port), (Some(Op::Response), 5000, 40000));
    let (mut s, _) = listener.accept().expect("accept");
    s.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    g.send(Op::Rw, 40000, 5000, b"hello", 0);
    assert_eq!(read_exactly(&mut s, 5), b"hello");
    s.write_all(b"world").expect("host write");
    g.d.t.process_backend();
    let got = g.recv();
    assert_eq!((got[0].0.op, got[0].1.as_slice()), (Some(Op::Rw), &b"world"[..]));
    // The host hangs up: the guest hears that no more comes either way.
    drop(s);
    g.d.t.process_backend();
    let got = g.recv();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].0.op, got[0].0.flags), (Some(Op::Shutdown), SHUTDOWN_SEND | SHUTDOWN_RCV));
    g.send(Op::Rst, 40000, 5000, &[], 0);
    assert_eq!(g.d.t.device().connections(), 0);
}

#[test]
fn a_guest_connection_to_a_port_nobody_serves_is_reset() {
    let mut g = Guest::new();
    g.post_rx(2);
    g.send(Op::Request, 40000, 7777, &[], 0);
    let got = g.recv();
    assert_eq!((got[0].0.op, got[0].0.src_port, got[0].0.dst_port), (Some(Op::Rst), 7777, 40000));
    assert_eq!(g.d.t.device().connections(), 0);
}

#[test]
fn host_data_respects_the_guest_credit() {
    let mut g = Guest::new();
    g.post_rx(4);
    let mut s = host_connect(&g, "CONNECT 99\n");
    g.d.t.process_backend();
    let hp = g.recv()[0].0.src_port;
    let h = guest_header(Op::Response, 99, hp, 0, 100, 0);
    g.send_raw(&h, &[]);
    let _ = read_exactly(&mut s, format!("OK {hp}\n").len());
    s.write_all(&[7u8; 300]).expect("host write");
    g.d.t.process_backend();
    let got: usize = g.recv().iter().map(|(_, p)| p.len()).sum();
    assert_eq!(got, 100, "no more than the guest's 100 bytes of room");
    g.send_raw(&guest_header(Op::CreditUpdate, 99, hp, 0, 100, 100), &[]);
    g.d.t.process_backend();
    let got: usize = g.recv().iter().map(|(_, p)| p.len()).sum();
    assert_eq!(got, 100);
}

#[test]
fn packets_wait_for_receive_buffers() {
    let mut g = Guest::new();
    let _s = host_connect(&g, "CONNECT 1\n");
    g.d.t.process_backend();
    assert!(g.recv().is_empty());
    g.post_rx(1);
    let got = g.recv();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.op, Some(Op::Request));
}

#[test]
fn bad_connect_lines_close_the_host_socket() {
    let mut g = Guest::new();
    g.post_rx(4);
    for line in ["HELLO 5\n", "CONNECT x\n", "CONNECT 99999999999\n", &"C".repeat(40)] {
        let mut s = host_connect(&g, line);
        g.d.t.process_backend();
        // Closed: the end of the stream, or a reset where the device left bytes unread.
        let closed = match s.read(&mut [0u8; 4]) {
            Ok(n) => n == 0,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        assert!(closed, "{line:?}");
    }
    assert!(g.recv().is_empty());
}

#[test]
fn malformed_packets_are_dropped_and_their_connection_reset() {
    let mut g = Guest::new();
    let (mut s, hp) = host_initiated(&mut g);
    // Too short for a header; a writable part; outside memory.
    let tx = TX_BUFS + 0x30_0000;
    g.d.add_chain(TXQ, &[Seg(tx, 20, false)]);
    g.d.add_chain(TXQ, &[Seg(tx, HDR_SIZE as u32, false), Seg(tx + 0x100, 8, true)]);
    g.d.add_chain(TXQ, &[Seg(MEM_SIZE - 8, HDR_SIZE as u32, false)]);
    g.d.kick(TXQ);
    // From another CID, and of another socket type: dropped, RST for the latter.
    let mut h = guest_header(Op::Rw, 1234, hp, 0, 0, 0);
    h.src_cid = 9;
    g.send_raw(&h, &[]);
    assert_eq!(g.d.t.device().connections(), 1, "nothing so far touched the connection");
    let mut h = guest_header(Op::Rw, 1234, hp, 0, 0, 0);
    h.kind = 2;
    g.send_raw(&h, &[]);
    assert!(g.recv().iter().any(|(h, _)| h.op == Some(Op::Rst) && h.dst_port == 1234));
    assert_eq!(g.d.t.device().connections(), 0);
    assert_eq!(s.read(&mut [0u8; 4]).expect("eof"), 0);
    // A length beyond the payload, an unknown op, data for a connection that does not exist.
    let (_s2, hp2) = host_initiated(&mut g);
    let h = guest_header(Op::Rw, 1234, hp2, 1000, 0, 0);
    g.send_raw(&h, b"short");
    assert_eq!(g.d.t.device().connections(), 0);
    assert!(g.recv().iter().any(|(h, _)| h.op == Some(Op::Rst) && h.src_port == hp2));
    let (_s3, hp3) = host_initiated(&mut g);
    let mut h = guest_header(Op::Rw, 1234, hp3, 0, 0, 0);
    h.op = None;
    g.send_raw(&h, &[]);
    assert_eq!(g.d.t.device().connections(), 0);
    assert!(g.recv().iter().any(|(h, _)| h.op == Some(Op::Rst) && h.src_port == hp3));
    g.send(Op::Rw, 5, 6, b"nobody", 0);
    let got = g.recv();
    assert!(got.iter().any(|(h, _)| h.op == Some(Op::Rst) && (h.src_port, h.dst_port) == (6, 5)));
    assert!(g.d.t.is_active());
}

#[test]
fn a_guest_sending_beyond_its_credit_is_reset() {
    let mut g = Guest::new();
    let (mut s, hp) = host_initiated(&mut g);
    // The host reads nothing; the guest sends far more than BUF_ALLOC plus the socket's buffer.
    let chunk = vec![1u8; MAX_PAYLOAD];
    for _ in 0..16 {
        g.send(Op::Rw, 1234, hp, &chunk, 0);
        if g.d.t.device().connections() == 0 {
            break;
        }
    }
    assert_eq!(g.d.t.device().connections(), 0);
    assert!(g.recv().iter().any(|(h, _)| h.op == Some(Op::Rst)));
    // The host gets what was written before the reset, then the end.
    let mut all = Vec::new();
    s.read_to_end(&mut all).expect("host read");
    assert!(all.len() > MAX_PAYLOAD && all.iter().all(|&b| b == 1));
}

#[test]
fn a_reset_drops_every_connection() {
    let mut g = Guest::new();
    let (mut s, _) = host_initiated(&mut g);
    g.d.w32(reg::VIRTIO_MMIO_STATUS, 0);
    assert_eq!(g.d.t.device().connections(), 0);
    assert_eq!(s.read(&mut [0u8; 4]).expect("eof"), 0);
    // Probed again, it serves new connections.
    g.d.init(u64::MAX);
    g.next_rx = 0;
    g.next_tx = 0;
    g.rx_addr.clear();
    let _ = host_initiated(&mut g);
}
