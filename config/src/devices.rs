//! The ROS's virtio devices: `[[block]]`, `[[net]]` and `[vsock]`, from the file and in code.
//!
//! Checked here: what can be known without opening anything (image files exist and are readable,
//! names and addresses are well formed, the socket's directory exists). Whether a TAP exists and is
//! free, or an image is locked by another VM, is found when the VM is built (`vmm::VmmError`).

use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::error::{ConfigError, Problem};
use crate::model::{
    BlockConfig, DevicesConfig, NetConfig, VsockConfig, MAX_BLOCK_DEVICES, MAX_BLOCK_SERIAL_LEN,
    MAX_NET_DEVICES, MAX_VSOCK_SOCKET_LEN,
};
use crate::parse::Cx;
use crate::raw::{RawBlock, RawNet, RawVsock};
use crate::validate::{check_input_file, resolve};

/// What a disk image is called in messages.
const IMAGE: &str = "disk image";

/// At most `max` devices of kind `what`.
pub(crate) fn check_count(what: &'static str, count: usize, max: usize) -> Result<(), Problem> {
    if count > max {
        return Err(Problem::TooManyDevices { what, count, max });
    }
    Ok(())
}

/// `block.serial`: at most 20 bytes of printable ASCII.
pub(crate) fn check_serial(serial: &str) -> Result<(), Problem> {
    if serial.len() > MAX_BLOCK_SERIAL_LEN || !serial.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(Problem::BadSerial { serial: serial.to_string() });
    }
    Ok(())
}

/// `net.tap`: a Linux interface name.
pub(crate) fn check_tap(name: &str) -> Result<(), Problem> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if !ok {
        return Err(Problem::BadTapName { name: name.to_string() });
    }
    Ok(())
}

/// `net.mac`: `xx:xx:xx:xx:xx:xx`, unicast.
pub(crate) fn parse_mac(text: &str) -> Result<[u8; 6], Problem> {
    let bad = || Problem::BadMac { mac: text.to_string() };
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() || mac[0] & 1 != 0 {
        return Err(bad());
    }
    Ok(mac)
}

/// `vsock.cid`: 3 to `u32::MAX - 1`.
pub(crate) fn check_cid(value: i64) -> Result<u64, Problem> {
    match u64::try_from(value) {
        Ok(v) if (3..u64::from(u32::MAX)).contains(&v) => Ok(v),
        _ => Err(Problem::CidOutOfRange { value }),
    }
}

/// `vsock.socket`: short enough for a Unix socket (with duet's `_PORT` suffixes), not a directory,
/// in a directory that exists. A stale socket file there is the VMM's to report.
pub(crate) fn check_socket(path: &Path) -> Result<(), Problem> {
    if path.as_os_str().is_empty() {
        return Err(Problem::EmptyPath { what: "socket" });
    }
    let len = path.as_os_str().len();
    if len > MAX_VSOCK_SOCKET_LEN {
        return Err(Problem::SocketPathTooLong { len });
    }
    if path.is_dir() {
        return Err(Problem::SocketPathIsDir { path: path.to_path_buf() });
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Problem::SocketDirMissing { path: dir });
    }
    Ok(())
}

/// The device sections of a file; `has_ros` says whether there is a partition to attach them to.
pub(crate) fn build(
    cx: &Cx<'_>,
    block: Option<Spanned<Vec<Spanned<RawBlock>>>>,
    net: Option<Spanned<Vec<Spanned<RawNet>>>>,
    vsock: Option<Spanned<RawVsock>>,
    has_ros: bool,
) -> Result<DevicesConfig, ConfigError> {
    let first = [block.as_ref().map(|b| b.span()), net.as_ref().map(|n| n.span()), vsock.as_ref().map(|v| v.span())];
    if !has_ros {
        if let Some(span) = first.into_iter().flatten().min_by_key(|s| s.start) {
            let field = match () {
                _ if block.is_some() => "block",
                _ if net.is_some() => "net",
                _ => "vsock",
            };
            return Err(cx.invalid(cx.at(span), field, Problem::DevicesWithoutRos));
        }
    }
    let mut devices = DevicesConfig::default();
    if let Some(list) = block {
        let span = list.span();
        let list = list.into_inner();
        check_count("block", list.len(), MAX_BLOCK_DEVICES).map_err(|p| cx.invalid(cx.at(span), "block", p))?;
        for (i, raw) in list.into_iter().enumerate() {
            let table = raw.span();
            let raw = raw.into_inner();
            let field = |key: &str| format!("block[{i}].{key}");
            let Some(path) = raw.path else {
                let hint = "the raw disk image (e.g. path = \"disk.img\", relative to the config file's directory)";
                return Err(cx.invalid(cx.at(table), &field("path"), Problem::MissingDeviceKey { hint }));
            };
            let fail = |p| cx.invalid(cx.at(path.span()), &field("path"), p);
            if path.get_ref().is_empty() {
                return Err(fail(Problem::EmptyPath { what: IMAGE }));
            }
            let resolved = resolve(cx.base, Path::new(path.get_ref()));
            check_input_file(IMAGE, &resolved, false).map_err(fail)?;
            let serial = match raw.serial {
                None => None,
                Some(s) => {
                    check_serial(s.get_ref()).map_err(|p| cx.invalid(cx.at(s.span()), &field("serial"), p))?;
                    Some(s.into_inner())
                }
            };
            let read_only = raw.read_only.is_some_and(Spanned::into_inner);
            devices.block.push(BlockConfig { path: resolved, read_only, serial });
        }
    }
    if let Some(list) = net {
        let span = list.span();
        let list = list.into_inner();
        check_count("net", list.len(), MAX_NET_DEVICES).map_err(|p| cx.invalid(cx.at(span), "net", p))?;
        for (i, raw) in list.into_iter().enumerate() {
            let table = raw.span();
            let raw = raw.into_inner();
            let field = |key: &str| format!("net[{i}].{key}");
            let Some(tap) = raw.tap else {
                let hint = "the host TAP interface (e.g. tap = \"tap0\")";
                return Err(cx.invalid(cx.at(table), &field("tap"), Problem::MissingDeviceKey { hint }));
            };
            check_tap(tap.get_ref()).map_err(|p| cx.invalid(cx.at(tap.span()), &field("tap"), p))?;
            let mac = match raw.mac {
                None => None,
                Some(m) => Some(parse_mac(m.get_ref()).map_err(|p| cx.invalid(cx.at(m.span()), &field("mac"), p))?),
            };
            devices.net.push(NetConfig { tap: tap.into_inner(), mac });
        }
    }
    if let Some(raw) = vsock {
        let table = raw.span();
        let raw = raw.into_inner();
        let Some(cid) = raw.cid else {
            let hint = "the guest's context ID (e.g. cid = 3)";
            return Err(cx.invalid(cx.at(table), "vsock.cid", Problem::MissingDeviceKey { hint }));
        };
        let cid = check_cid(*cid.get_ref()).map_err(|p| cx.invalid(cx.at(cid.span()), "vsock.cid", p))?;
        let Some(socket) = raw.socket else {
            let hint = "the host Unix socket (e.g. socket = \"vsock.sock\", relative to the config file's directory)";
            return Err(cx.invalid(cx.at(table), "vsock.socket", Problem::MissingDeviceKey { hint }));
        };
        let resolved = resolve(cx.base, Path::new(socket.get_ref()));
        let fail = |p| cx.invalid(cx.at(socket.span()), "vsock.socket", p);
        if socket.get_ref().is_empty() {
            return Err(fail(Problem::EmptyPath { what: "socket" }));
        }
        check_socket(&resolved).map_err(fail)?;
        devices.vsock = Some(VsockConfig { cid, socket: resolved });
    }
    Ok(devices)
}

/// The checks of [`build`] on an in-code config; `err` adds the (code) location.
pub(crate) fn validate(
    devices: &DevicesConfig,
    has_ros: bool,
    err: impl Fn(&str, Problem) -> ConfigError,
) -> Result<(), ConfigError> {
    if !devices.is_empty() && !has_ros {
        return Err(err("block/net/vsock", Problem::DevicesWithoutRos));
    }
    check_count("block", devices.block.len(), MAX_BLOCK_DEVICES).map_err(|p| err("block", p))?;
    for (i, b) in devices.block.iter().enumerate() {
        check_input_file(IMAGE, &b.path, false).map_err(|p| err(&format!("block[{i}].path"), p))?;
        if let Some(s) = &b.serial {
            check_serial(s).map_err(|p| err(&format!("block[{i}].serial"), p))?;
        }
    }
    check_count("net", devices.net.len(), MAX_NET_DEVICES).map_err(|p| err("net", p))?;
    for (i, n) in devices.net.iter().enumerate() {
        check_tap(&n.tap).map_err(|p| err(&format!("net[{i}].tap"), p))?;
        if n.mac.is_some_and(|m| m[0] & 1 != 0) {
            let mac = n.mac.map(|m| format!("{m:02x?}")).unwrap_or_default();
            return Err(err(&format!("net[{i}].mac"), Problem::BadMac { mac }));
        }
    }
    if let Some(v) = &devices.vsock {
        check_cid(i64::try_from(v.cid).unwrap_or(i64::MAX)).map_err(|p| err("vsock.cid", p))?;
        check_socket(&v.socket).map_err(|p| err("vsock.socket", p))?;
    }
    Ok(())
}
