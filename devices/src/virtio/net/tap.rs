//! The host side of a virtio-net device: a TAP interface (or anything else that moves whole frames).

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixDatagram;

use super::VNET_HDR_SIZE;

/// Where frames go to and come from. Every frame starts with a [`VNET_HDR_SIZE`]-byte
/// `virtio_net_hdr_v1`, exactly as in the guest's buffers. The descriptor is non-blocking.
pub trait NetBackend: Send {
    /// Reads one frame into `buf`; `WouldBlock` when none is waiting.
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;
    /// Sends one frame.
    fn send(&mut self, frame: &[u8]) -> std::io::Result<usize>;
    /// The descriptor the VMM polls (edge-triggered) for incoming frames.
    fn fd(&self) -> RawFd;
}

/// Errors opening a TAP interface. Each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name cannot be an interface name.
    #[error("{0:?} is not a valid interface name (1 to 15 bytes, no '/', no NUL)")]
    InvalidName(String),
    /// No interface has this name.
    #[error(
        "there is no network interface {0:?}; create it with `ip tuntap add {0} mode tap user $USER` and bring it up"
    )]
    Absent(String),
    /// `/dev/net/tun` is missing or could not be opened.
    #[error("cannot open /dev/net/tun (is the tun module loaded?)")]
    OpenTun(#[source] std::io::Error),
    /// The caller may not attach to the interface.
    #[error(
        "permission denied attaching to {0:?}: create it owned by this user (`ip tuntap add {0} mode tap user $USER`) or run with CAP_NET_ADMIN"
    )]
    PermissionDenied(String),
    /// Another process has the interface open.
    #[error("{0:?} is in use by another process (a TAP serves one reader; is another VM using it?)")]
    Busy(String),
    /// The interface exists but is not a TAP (a TUN, or not a tun/tap at all).
    #[error("{0:?} exists but is not a TAP interface")]
    NotATap(String),
    /// Another ioctl failed.
    #[error("{what} on {name:?} failed")]
    Ioctl {
        /// The ioctl.
        what: &'static str,
        /// The interface.
        name: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// An open TAP interface with `IFF_NO_PI | IFF_VNET_HDR` and a 12-byte vnet header.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Attaches to the existing TAP interface `name` (non-blocking).
    pub fn open(name: &str) -> Result<Tap, TapError> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&b'/') {
            return Err(TapError::InvalidName(name.to_owned()));
        }
        let cname = CString::new(name).map_err(|_| TapError::InvalidName(name.to_owned()))?;
        // TUNSETIFF would create a missing interface (with CAP_NET_ADMIN): an unconfigured one that
        // vanishes with the VM, which nobody wants. Refuse it instead.
        // SAFETY: a NUL-terminated string that lives across the call.
        if unsafe { libc::if_nametoindex(cname.as_ptr()) } == 0 {
            return Err(TapError::Absent(name.to_owned()));
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(TapError::OpenTun)?;
        // SAFETY: ifreq is plain old data; all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(bytes) {
            *dst = *src as libc::c_char;
        }
        req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as libc::c_short;
        // SAFETY: TUNSETIFF reads (and updates) the ifreq we pass, which outlives the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
            let e = std::io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => TapError::PermissionDenied(name.to_owned()),
                Some(libc::EBUSY) => TapError::Busy(name.to_owned()),
                Some(libc::EINVAL) => TapError::NotATap(name.to_owned()),
                _ => TapError::Ioctl { what: "TUNSETIFF", name: name.to_owned(), source: e },
            });
        }
        let size = VNET_HDR_SIZE as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int we pass, which outlives the call.
        if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETVNETHDRSZ, &size) } < 0 {
            let source = std::io::Error::last_os_error();
            return Err(TapError::Ioctl { what: "TUNSETVNETHDRSZ", name: name.to_owned(), source });
        }
        Ok(Tap { file, name: name.to_owned() })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl NetBackend for Tap {
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.file.read(buf)
    }

    fn send(&mut self, frame: &[u8]) -> std::io::Result<usize> {
        self.file.write(frame)
    }

    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

/// One end of a datagram socket pair moves whole frames too: for tests, or a user-space switch on the
/// other end. Set it non-blocking.
impl NetBackend for UnixDatagram {
    fn recv(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        UnixDatagram::recv(self, buf)
    }

    fn send(&mut self, frame: &[u8]) -> std::io::Result<usize> {
        UnixDatagram::send(self, frame)
    }

    fn fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}
