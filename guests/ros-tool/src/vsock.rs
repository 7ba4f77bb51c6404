//! `hvm vsock`: AF_VSOCK stream endpoints for tests (busybox has no vsock tool). No hypercall.
//!
//! - `hvm vsock listen PORT`: accepts one connection on PORT, reads one line, answers
//!   `echo: LINE`, prints `vsock-listen got=LINE` and exits.
//! - `hvm vsock send CID PORT MESSAGE`: connects to CID:PORT (2 is the host), writes `MESSAGE\n`, reads
//!   one line back and prints `vsock-send reply=LINE`.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;

use crate::error::Error;

/// The usage text of `hvm vsock`.
pub const USAGE: &str = "hvm vsock listen PORT | hvm vsock send CID PORT MESSAGE";

fn number<T: std::str::FromStr>(what: &str, s: &str) -> Result<T, Error> {
    s.parse().map_err(|_| Error::usage(format!("vsock: {what} must be a number, got {s:?}")))
}

fn os_err(what: &str) -> Error {
    Error::failed(format!("vsock: {what}: {}", std::io::Error::last_os_error()))
}

fn socket() -> Result<OwnedFd, Error> {
    // SAFETY: socket() takes no pointers; a negative result is checked below.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(os_err("socket(AF_VSOCK)"));
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn addr(cid: u32, port: u32) -> libc::sockaddr_vm {
    // SAFETY: sockaddr_vm is plain old data; all zeroes is a valid value.
    let mut a: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    a.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    a.svm_cid = cid;
    a.svm_port = port;
    a
}

const ADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;

/// A stream over a connected vsock descriptor: the std Unix stream type only wraps the fd for
/// read/write, which work the same on any stream socket.
fn stream(fd: OwnedFd) -> UnixStream {
    UnixStream::from(fd)
}

fn exchange(s: UnixStream, send_first: Option<&str>) -> Result<String, Error> {
    let mut w = s.try_clone().map_err(|e| Error::failed(format!("vsock: {e}")))?;
    if let Some(msg) = send_first {
        w.write_all(format!("{msg}\n").as_bytes()).map_err(|e| Error::failed(format!("vsock: write: {e}")))?;
    }
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).map_err(|e| Error::failed(format!("vsock: read: {e}")))?;
    let line = line.trim_end().to_string();
    if send_first.is_none() {
        w.write_all(format!("echo: {line}\n").as_bytes()).map_err(|e| Error::failed(format!("vsock: write: {e}")))?;
    }
    Ok(line)
}

/// Runs `hvm vsock ARGS`.
pub fn run(args: &[String]) -> Result<(), Error> {
    match args {
        [cmd, port] if cmd == "listen" => {
            let port: u32 = number("PORT", port)?;
            let fd = socket()?;
            let a = addr(libc::VMADDR_CID_ANY, port);
            // SAFETY: `a` is a valid sockaddr_vm of ADDR_LEN bytes that outlives the call.
            if unsafe { libc::bind(std::os::fd::AsRawFd::as_raw_fd(&fd), (&a as *const libc::sockaddr_vm).cast(), ADDR_LEN) } != 0 {
                return Err(os_err("bind"));
            }
            // SAFETY: listen() on our own socket takes no pointers.
            if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&fd), 1) } != 0 {
                return Err(os_err("listen"));
            }
            out!("vsock-listen port={port}");
            // SAFETY: accept() with null address pointers is allowed; the result is checked.
            let c = unsafe { libc::accept4(std::os::fd::AsRawFd::as_raw_fd(&fd), std::ptr::null_mut(), std::ptr::null_mut(), libc::SOCK_CLOEXEC) };
            if c < 0 {
                return Err(os_err("accept"));
            }
            // SAFETY: `c` is a fresh descriptor that nothing else owns.
            let conn = unsafe { OwnedFd::from_raw_fd(c) };
            let got = exchange(stream(conn), None)?;
            out!("vsock-listen got={got}");
            Ok(())
        }
        [cmd, cid, port, msg] if cmd == "send" => {
            let cid: u32 = number("CID", cid)?;
            let port: u32 = number("PORT", port)?;
            let fd = socket()?;
            let a = addr(cid, port);
            // SAFETY: `a` is a valid sockaddr_vm of ADDR_LEN bytes that outlives the call.
            if unsafe { libc::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), (&a as *const libc::sockaddr_vm).cast(), ADDR_LEN) } != 0 {
                return Err(os_err("connect"));
            }
            let reply = exchange(stream(fd), Some(msg))?;
            out!("vsock-send reply={reply}");
            Ok(())
        }
        _ => Err(Error::usage(format!("usage: {USAGE}"))),
    }
}
