//! The ROS's virtio device sections of a file (`[[block]]`, `[[net]]`, `[vsock]`) → the model's
//! [`DevicesConfig`] and the spans of its fields. As in `build`, only what the model cannot hold
//! is refused here (a missing required key, a MAC that does not parse, a negative CID); the rules
//! ([`crate::rules`]) check the rest.
//!
//! What the rules check is what can be known without opening anything (image files exist and are
//! readable, names and addresses are well formed, the socket's directory exists). Whether a TAP
//! exists and is free, or an image is locked by another VM, is found when the VM is built
//! (`vmm::VmmError`).

use std::path::Path;

use toml::Spanned;

use crate::error::{ConfigError, Problem};
use crate::model::{BlockConfig, DevicesConfig, NetConfig, VsockConfig};
use crate::paths::resolve;
use crate::raw::{RawBlock, RawNet, RawVsock};
use crate::rules::DEVICE_SECTIONS;
use crate::source::Source;
use crate::spans::{invalid, Spans};

/// The device sections of a file.
pub(crate) fn build_devices(
    src: &Source<'_>,
    block: Option<Spanned<Vec<Spanned<RawBlock>>>>,
    net: Option<Spanned<Vec<Spanned<RawNet>>>>,
    vsock: Option<Spanned<RawVsock>>,
    spans: &mut Spans,
) -> Result<DevicesConfig, ConfigError> {
    // Where the file asks for devices, for the rule that they need a [ros]: the first section in
    // the file, named by the first of block, net, vsock that is there.
    let sections = [
        block.as_ref().map(Spanned::span),
        net.as_ref().map(Spanned::span),
        vsock.as_ref().map(Spanned::span),
    ];
    if let Some(span) = sections.into_iter().flatten().min_by_key(|s| s.start) {
        let name = match () {
            _ if block.is_some() => "block",
            _ if net.is_some() => "net",
            _ => "vsock",
        };
        spans.set_named(DEVICE_SECTIONS, src.at(span), name);
    }
    let mut devices = DevicesConfig::default();
    if let Some(list) = block {
        spans.set("block", src.at(list.span()));
        for (i, raw) in list.into_inner().into_iter().enumerate() {
            devices.block.push(build_block(src, i, raw, spans)?);
        }
    }
    if let Some(list) = net {
        spans.set("net", src.at(list.span()));
        for (i, raw) in list.into_inner().into_iter().enumerate() {
            devices.net.push(build_net(src, i, raw, spans)?);
        }
    }
    if let Some(raw) = vsock {
        devices.vsock = Some(build_vsock(src, raw, spans)?);
    }
    Ok(devices)
}

/// `block[i]`.
fn build_block(
    src: &Source<'_>,
    i: usize,
    raw: Spanned<RawBlock>,
    spans: &mut Spans,
) -> Result<BlockConfig, ConfigError> {
    let table = raw.span();
    let raw = raw.into_inner();
    let field = |key: &str| format!("block[{i}].{key}");
    let Some(path) = raw.path else {
        let hint = "the raw disk image (e.g. path = \"disk.img\", relative to the config file's directory)";
        let problem = Problem::MissingDeviceKey { hint };
        return Err(invalid(src.at(table), field("path"), problem));
    };
    spans.set(field("path"), src.at(path.span()));
    let serial = raw.serial.map(|s| {
        spans.set(field("serial"), src.at(s.span()));
        s.into_inner()
    });
    Ok(BlockConfig {
        path: resolve(src.base, Path::new(path.get_ref())),
        read_only: raw.read_only.is_some_and(Spanned::into_inner),
        serial,
    })
}

/// `net[i]`.
fn build_net(
    src: &Source<'_>,
    i: usize,
    raw: Spanned<RawNet>,
    spans: &mut Spans,
) -> Result<NetConfig, ConfigError> {
    let table = raw.span();
    let raw = raw.into_inner();
    let field = |key: &str| format!("net[{i}].{key}");
    let Some(tap) = raw.tap else {
        let hint = "the host TAP interface (e.g. tap = \"tap0\")";
        let problem = Problem::MissingDeviceKey { hint };
        return Err(invalid(src.at(table), field("tap"), problem));
    };
    spans.set(field("tap"), src.at(tap.span()));
    let mac = match raw.mac {
        None => None,
        Some(m) => {
            let at = src.at(m.span());
            spans.set_text(field("mac"), at.clone(), m.get_ref());
            Some(parse_mac(m.get_ref()).map_err(|p| invalid(at, field("mac"), p))?)
        }
    };
    Ok(NetConfig {
        tap: tap.into_inner(),
        mac,
    })
}

/// `[vsock]`.
fn build_vsock(
    src: &Source<'_>,
    raw: Spanned<RawVsock>,
    spans: &mut Spans,
) -> Result<VsockConfig, ConfigError> {
    let table = raw.span();
    let raw = raw.into_inner();
    let missing = |field: &str, hint| {
        invalid(
            src.at(table.clone()),
            field,
            Problem::MissingDeviceKey { hint },
        )
    };
    let Some(cid) = raw.cid else {
        return Err(missing(
            "vsock.cid",
            "the guest's context ID (e.g. cid = 3)",
        ));
    };
    let at = src.at(cid.span());
    spans.set("vsock.cid", at.clone());
    let value = cid.into_inner();
    // Below 0 is out of range for the rules' range too.
    let cid = u64::try_from(value)
        .map_err(|_| invalid(at, "vsock.cid", Problem::CidOutOfRange { value }))?;
    let Some(socket) = raw.socket else {
        let hint = "the host Unix socket (e.g. socket = \"vsock.sock\", relative to the config file's directory)";
        return Err(missing("vsock.socket", hint));
    };
    spans.set("vsock.socket", src.at(socket.span()));
    Ok(VsockConfig {
        cid,
        socket: resolve(src.base, Path::new(socket.get_ref())),
    })
}

/// `net.mac` as written: `xx:xx:xx:xx:xx:xx` (the rules check that it is unicast).
fn parse_mac(text: &str) -> Result<[u8; 6], Problem> {
    let bad = || Problem::BadMac {
        mac: text.to_string(),
    };
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(mac)
}
