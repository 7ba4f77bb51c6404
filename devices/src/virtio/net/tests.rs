use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;

use virtio_bindings::virtio_mmio as reg;
use virtio_bindings::virtio_ring::{VRING_DESC_F_NEXT, VRING_DESC_F_WRITE};

use super::*;
use crate::virtio::mmio::CONFIG_OFFSET;
use crate::virtio::testing::{Driver, Seg, BUFFERS, MEM_SIZE};

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const RXQ: usize = 0;
const TXQ: usize = 1;
/// Linux's small receive buffer: the header and a 1518-byte frame.
const RX_BUF: u32 = 12 + 1518;

/// A probed device over one end of a datagram pair; the other end plays the host network.
fn probe() -> (Driver<Net<UnixDatagram>>, UnixDatagram) {
    let (dev, host) = UnixDatagram::pair().expect("socket pair");
    dev.set_nonblocking(true).expect("non-blocking");
    host.set_nonblocking(true).expect("non-blocking");
    (Driver::probe(Net::new(dev, MAC), u64::MAX), host)
}

/// A frame with a zero header and `len` bytes of payload that start with `tag`.
fn frame(tag: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR_SIZE];
    f.extend((0..len).map(|i| tag.wrapping_add(i as u8)));
    f
}

fn host_recv(host: &UnixDatagram) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; MAX_FRAME + 100];
    match host.recv(&mut buf) {
        Ok(n) => Some(buf[..n].to_vec()),
        Err(_) => None,
    }
}

/// Adds a receive buffer of `len` bytes at `at`.
fn rx_buffer<B: NetBackend>(d: &mut Driver<Net<B>>, at: u64, len: u32) -> u16 {
    d.add_chain(RXQ, &[Seg(at, len, true)])
}

/// What a frame looks like once the device put it in a buffer: num_buffers set to 1.
fn received(f: &[u8]) -> Vec<u8> {
    let mut f = f.to_vec();
    f[10] = 1;
    f
}

#[test]
fn config_carries_the_mac_and_link_up() {
    let (dev, _host) = UnixDatagram::pair().expect("socket pair");
    let mut d = Driver::new(Net::new(dev, MAC));
    let mut b = [0u8; 8];
    d.t.read(CONFIG_OFFSET, &mut b);
    assert_eq!(&b[..6], &MAC);
    assert_eq!(u16::from_le_bytes([b[6], b[7]]), VIRTIO_NET_S_LINK_UP as u16);
    assert_eq!(d.r32(reg::VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_NET);
    let f = d.device_features();
    assert_eq!(f, (1 << VIRTIO_NET_F_MAC) | (1 << VIRTIO_NET_F_STATUS) | crate::virtio::VIRTIO_F_VERSION_1);
    assert!(d.t.device().backend_fd().is_some());
}

#[test]
fn transmitted_frames_reach_the_backend_whole() {
    let (mut d, host) = probe();
    let f = frame(0x40, 60);
    d.write_bytes(BUFFERS, &f[..VNET_HDR_SIZE]);
    d.write_bytes(BUFFERS + 0x1000, &f[VNET_HDR_SIZE..]);
    let head = d.add_chain(TXQ, &[Seg(BUFFERS, 12, false), Seg(BUFFERS + 0x1000, 60, false)]);
    d.kick(TXQ);
    assert_eq!(host_recv(&host), Some(f));
    assert_eq!(d.take_used(TXQ), vec![(u32::from(head), 0)]);
    assert!(d.irq_raised());
    assert_eq!(d.t.device().stats().tx_frames, 1);
}

#[test]
fn a_frame_waits_for_a_receive_buffer() {
    let (mut d, host) = probe();
    let f = frame(1, 100);
    host.send(&f).expect("send");
    d.t.process_backend();
    assert!(d.take_used(RXQ).is_empty());
    assert!(!d.irq_raised());
    let head = rx_buffer(&mut d, BUFFERS, RX_BUF);
    d.kick(RXQ);
    assert_eq!(d.take_used(RXQ), vec![(u32::from(head), f.len() as u32)]);
    assert_eq!(d.read_bytes(BUFFERS, f.len()), received(&f));
    assert!(d.irq_raised());
}

#[test]
fn frames_fill_buffers_in_order_and_the_rest_wait() {
    let (mut d, host) = probe();
    rx_buffer(&mut d, BUFFERS, RX_BUF);
    rx_buffer(&mut d, BUFFERS + 0x1000, RX_BUF);
    let frames: Vec<_> = (0..3u8).map(|i| frame(i * 50, 64 + usize::from(i))).collect();
    for f in &frames {
        host.send(f).expect("send");
    }
    d.t.process_backend();
    let used = d.take_used(RXQ);
    assert_eq!(used.iter().map(|u| u.1).collect::<Vec<_>>(), vec![76, 77]);
    assert_eq!(d.read_bytes(BUFFERS, 76), received(&frames[0]));
    assert_eq!(d.read_bytes(BUFFERS + 0x1000, 77), received(&frames[1]));
    rx_buffer(&mut d, BUFFERS + 0x2000, RX_BUF);
    d.kick(RXQ);
    assert_eq!(d.take_used(RXQ).len(), 1);
    assert_eq!(d.read_bytes(BUFFERS + 0x2000, 78), received(&frames[2]));
    assert_eq!(d.t.device().stats().rx_frames, 3);
}

#[test]
fn a_frame_too_large_for_the_buffer_is_dropped_and_the_buffer_kept() {
    let (mut d, host) = probe();
    let head = rx_buffer(&mut d, BUFFERS, 100);
    host.send(&frame(1, 200)).expect("send");
    let small = frame(2, 50);
    host.send(&small).expect("send");
    d.t.process_backend();
    assert_eq!(d.take_used(RXQ), vec![(u32::from(head), small.len() as u32)]);
    assert_eq!(d.read_bytes(BUFFERS, small.len()), received(&small));
    assert_eq!(d.t.device().stats().rx_dropped, 1);
}

#[test]
fn malformed_receive_buffers_are_returned_empty_and_the_frame_goes_to_the_next() {
    let (mut d, host) = probe();
    let bad = [
        vec![Seg(BUFFERS, 12, false), Seg(BUFFERS + 0x100, RX_BUF, true)], // a readable part
        vec![Seg(MEM_SIZE - 64, RX_BUF, true)],                            // outside memory
        vec![Seg(u64::MAX - 8, RX_BUF, true)],                             // wraps
    ];
    for segs in &bad {
        d.add_chain(RXQ, segs);
    }
    // A loop: one descriptor pointing to itself (past the four descriptors used above).
    d.write_desc(RXQ, 20, BUFFERS, 64, (VRING_DESC_F_NEXT | VRING_DESC_F_WRITE) as u16, 20);
    d.publish(RXQ, 20);
    // The good one.
    d.write_desc(RXQ, 21, BUFFERS + 0x4000, RX_BUF, VRING_DESC_F_WRITE as u16, 0);
    d.publish(RXQ, 21);
    let f = frame(9, 80);
    host.send(&f).expect("send");
    d.t.process_backend();
    let used = d.take_used(RXQ);
    assert_eq!(used.iter().map(|u| u.1).collect::<Vec<_>>(), vec![0, 0, 0, 0, f.len() as u32]);
    assert_eq!(d.read_bytes(BUFFERS + 0x4000, f.len()), received(&f));
    assert_eq!(d.t.device().stats().rx_bad_buffers, 4);
    assert!(d.t.is_active());
}

#[test]
fn malformed_transmit_chains_are_dropped_and_completed() {
    let (mut d, host) = probe();
    let bad = [
        vec![Seg(BUFFERS, 12, false), Seg(BUFFERS + 0x100, 60, true)], // a writable part
        vec![Seg(BUFFERS, 8, false)],                                  // shorter than the header
        vec![Seg(MEM_SIZE - 16, 64, false)],                           // outside memory
        vec![Seg(BUFFERS, 0x10000, false), Seg(BUFFERS, 0x10000, false)], // larger than any frame
        vec![Seg(BUFFERS, 12, true)],                                  // writable only
    ];
    for segs in &bad {
        d.add_chain(TXQ, segs);
    }
    d.kick(TXQ);
    assert_eq!(d.take_used(TXQ).len(), bad.len());
    assert_eq!(host_recv(&host), None, "nothing was sent");
    assert_eq!(d.t.device().stats().tx_dropped, bad.len() as u64);
    // Still in service.
    let f = frame(3, 20);
    d.write_bytes(BUFFERS, &f);
    d.add_chain(TXQ, &[Seg(BUFFERS, f.len() as u32, false)]);
    d.kick(TXQ);
    assert_eq!(host_recv(&host), Some(f));
}

#[test]
fn a_backend_that_refuses_frames_costs_only_those_frames() {
    let (mut d, host) = probe();
    drop(host);
    let f = frame(3, 20);
    d.write_bytes(BUFFERS, &f);
    d.add_chain(TXQ, &[Seg(BUFFERS, f.len() as u32, false)]);
    d.kick(TXQ);
    assert_eq!(d.take_used(TXQ).len(), 1);
    assert_eq!(d.t.device().stats().tx_dropped, 1);
    rx_buffer(&mut d, BUFFERS, RX_BUF);
    d.kick(RXQ);
    d.t.process_backend();
    assert!(d.t.is_active());
}

#[test]
fn a_reset_device_moves_no_frames() {
    let (mut d, host) = probe();
    rx_buffer(&mut d, BUFFERS, RX_BUF);
    d.w32(reg::VIRTIO_MMIO_STATUS, 0);
    host.send(&frame(1, 10)).expect("send");
    d.t.process_backend();
    d.t.notify(0);
    assert!(d.take_used(RXQ).is_empty());
    // Probed again, the frame (still in the backend) arrives.
    d.init(u64::MAX);
    rx_buffer(&mut d, BUFFERS, RX_BUF);
    d.kick(RXQ);
    assert_eq!(d.take_used(RXQ).len(), 1);
}

#[test]
fn tap_names_are_checked_before_anything_is_opened() {
    for name in ["", "a-name-that-is-too-long", "a/b", "nul\0"] {
        assert!(matches!(Tap::open(name), Err(TapError::InvalidName(_))), "{name:?}");
    }
    assert!(matches!(Tap::open("duet-absent0"), Err(TapError::Absent(_))));
    let msg = Tap::open("duet-absent0").map(|_| ()).expect_err("absent").to_string();
    assert!(msg.contains("ip tuntap add duet-absent0 mode tap"), "{msg}");
}

// ---- A real TAP, in a network namespace of the test's own (so the host's interfaces are untouched).

/// An experimental EtherType (IEEE 802 local use), so the test's frames stand out from the kernel's own.
const ETHERTYPE: u16 = 0x88b5;

/// Runs `f` on a thread in a fresh network namespace; false (and `f` not run) where that is not allowed.
fn in_private_netns(f: impl FnOnce() + Send + 'static) -> bool {
    std::thread::spawn(move || {
        // SAFETY: unshare only changes this thread's namespaces; no memory is involved.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
            return false;
        }
        f();
        true
    })
    .join()
    .expect("netns thread")
}

/// Creates the TAP `name` and makes it persistent, so that it outlives this descriptor.
fn create_tap(name: &str, persist: bool) -> std::fs::File {
    let file = std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun").expect("/dev/net/tun");
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = *src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
    // SAFETY: TUNSETIFF reads and updates the ifreq, which outlives the call.
    assert_eq!(unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) }, 0, "TUNSETIFF");
    if persist {
        // SAFETY: TUNSETPERSIST takes its argument by value.
        assert_eq!(unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETPERSIST, 1 as libc::c_ulong) }, 0);
    }
    file
}

/// Sets the interface up and returns a packet socket bound to it (the host's end of the wire).
fn link_up_with_packet_socket(name: &str) -> std::os::fd::OwnedFd {
    use std::os::fd::{FromRawFd, OwnedFd};
    let cname = std::ffi::CString::new(name).expect("name");
    // SAFETY: plain socket calls on descriptors we own, with structures that outlive each call.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        assert!(s >= 0);
        let ctl = OwnedFd::from_raw_fd(s);
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
            *dst = *src as libc::c_char;
        }
        assert_eq!(libc::ioctl(ctl.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req), 0);
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        assert_eq!(libc::ioctl(ctl.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req), 0);
        let p = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, i32::from(ETHERTYPE.to_be()));
        assert!(p >= 0, "packet socket");
        let packet = OwnedFd::from_raw_fd(p);
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = ETHERTYPE.to_be();
        addr.sll_ifindex = libc::if_nametoindex(cname.as_ptr()) as i32;
        let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        assert_eq!(libc::bind(packet.as_raw_fd(), &addr as *const _ as *const libc::sockaddr, len), 0);
        // A lost frame fails the test instead of hanging it.
        let timeout = libc::timeval { tv_sec: 5, tv_usec: 0 };
        let tlen = std::mem::size_of::<libc::timeval>() as u32;
        let rc = libc::setsockopt(
            packet.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            &timeout as *const _ as *const _,
            tlen,
        );
        assert_eq!(rc, 0);
        packet
    }
}

#[test]
fn a_real_tap_moves_frames_both_ways() {
    // Integration tests fail, never skip, when what they need is missing.
    assert!(std::path::Path::new("/dev/net/tun").exists(), "this test needs /dev/net/tun (a TAP device)");
    let ran = in_private_netns(|| {
        // While another descriptor holds the TAP, attaching is refused as busy.
        let holder = create_tap("duet-t0", true);
        assert!(matches!(Tap::open("duet-t0"), Err(TapError::Busy(_))));
        drop(holder);
        let tap = Tap::open("duet-t0").expect("attach to the persistent TAP");
        assert_eq!(tap.name(), "duet-t0");
        assert!(matches!(Tap::open("duet-t0"), Err(TapError::Busy(_))));
        let packet = link_up_with_packet_socket("duet-t0");
        let mut d = Driver::probe(Net::new(tap, MAC), u64::MAX);

        // Guest → host: a frame sent by the guest arrives on the interface.
        let mut eth = vec![0xffu8; 6];
        eth.extend_from_slice(&MAC);
        eth.extend_from_slice(&ETHERTYPE.to_be_bytes());
        eth.extend_from_slice(b"from the guest, 46 bytes of payload at least..");
        let mut f = vec![0u8; VNET_HDR_SIZE];
        f.extend_from_slice(&eth);
        d.write_bytes(BUFFERS, &f);
        d.add_chain(TXQ, &[Seg(BUFFERS, f.len() as u32, false)]);
        d.kick(TXQ);
        assert_eq!(d.t.device().stats().tx_frames, 1);
        let mut buf = [0u8; 2048];
        // SAFETY: recv into a buffer we own, of the length we pass.
        let n = unsafe { libc::recv(packet.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        assert!(n > 0, "the guest's frame did not reach the interface");
        assert_eq!(&buf[..n as usize], &eth[..]);

        // Host → guest: a frame sent on the interface reaches a receive buffer.
        for i in 0..64 {
            rx_buffer(&mut d, BUFFERS + 0x1000 * (i + 1), RX_BUF);
        }
        let mut reply = MAC.to_vec();
        reply.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        reply.extend_from_slice(&ETHERTYPE.to_be_bytes());
        reply.extend_from_slice(b"to the guest, also at least 46 bytes of payload");
        // SAFETY: send from a buffer we own, of the length we pass.
        let sent = unsafe { libc::send(packet.as_raw_fd(), reply.as_ptr().cast(), reply.len(), 0) };
        assert_eq!(sent, reply.len() as isize);
        // The kernel may send frames of its own on a new link (IPv6 neighbour discovery); find ours. The
        // VMM would wait for the TAP to become readable; the test polls.
        let mut ours = None;
        for _ in 0..500 {
            d.t.process_backend();
            let used = d.take_used(RXQ);
            ours = used.iter().find_map(|&(head, len)| {
                let at = BUFFERS + 0x1000 * (u64::from(head) + 1);
                let got = d.read_bytes(at, len as usize);
                (got.get(VNET_HDR_SIZE..) == Some(&reply[..])).then_some(got)
            });
            if ours.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let got = ours.expect("the host's frame reached the guest");
        assert_eq!(u16::from_le_bytes([got[10], got[11]]), 1, "num_buffers");
    });
    assert!(ran, "this test needs a private network namespace (unshare(CLONE_NEWNET): root or CAP_SYS_ADMIN)");
}
