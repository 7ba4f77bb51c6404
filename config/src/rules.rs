//! Every rule a configuration must satisfy, written once and applied to the model: to a config read
//! from a file ([`crate::load`], [`crate::parse`]: its [`Spans`] locate errors at a line of the file
//! or a command-line option) and to one built in code ([`Config::validate`]: no locations).
//!
//! What is checked here is what the model can hold and still be wrong: ranges, lengths, characters,
//! names, the files and directories paths point at, and how the sections go together. What the
//! model cannot hold at all (a missing required key, a size that does not parse, `output = "file"`
//! without a path) is refused while a file is read into it (`build`).
//!
//! The order of the checks is the order errors are found in: partitions, `[ros]`, `[hrt]`, the
//! devices, `[console]`, `[platform]`; within a section, the order of its keys.

use crate::error::{ConfigError, Problem};
use crate::model::{
    Config, ConsoleConfig, ConsoleOutput, DevicesConfig, HrtBoot, HrtConfig, PlatformConfig,
    RosConfig, MAX_BLOCK_DEVICES, MAX_BLOCK_SERIAL_LEN, MAX_CMDLINE_LEN, MAX_FORWARD_SPIN_US,
    MAX_MEMORY, MAX_MODULES, MAX_MODULE_CMDLINE_LEN, MAX_NET_DEVICES, MAX_VCPUS, MIN_MEMORY,
    MIN_VCPUS,
};
use crate::paths::{check_console_path, check_input_file, check_socket};
use crate::spans::Spans;

/// The field named for device sections without a `[ros]` to attach them to (a file names the
/// section it has instead).
pub(crate) const DEVICE_SECTIONS: &str = "block/net/vsock";
/// What a disk image is called in messages.
const IMAGE: &str = "disk image";

impl Config {
    /// Runs the same checks as [`crate::load`] on a config built in code (e.g. with
    /// [`Config::from_ros`] or [`Config::from_hrt`]): at least one partition present, vCPU and
    /// memory ranges, kernel, initramfs and module files (exist, regular, readable; non-empty
    /// except modules), command lines, module count, `hrt.boot`, `hrt.forward_spin_us`, the
    /// devices (image files, serials, TAP names, unicast MACs, the vsock CID and socket), console
    /// file directory, `clearcpuid` entries.
    ///
    /// Errors carry [`crate::Location::Code`] and so display without a location, e.g.
    /// `ros.vcpus: 0 is out of range: expected 1 to 64`. Paths are checked as they are (relative
    /// ones against the current directory).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(self, &Spans::code())
    }
}

/// Applies every rule to `config`; `at` says where its fields came from.
pub(crate) fn check(config: &Config, at: &Spans) -> Result<(), ConfigError> {
    if config.ros.is_none() && config.hrt.is_none() {
        return Err(at.error("ros/hrt", Problem::MissingPartition));
    }
    if let Some(ros) = &config.ros {
        check_ros(ros, at)?;
    }
    if let Some(hrt) = &config.hrt {
        check_hrt(hrt, config.ros.is_some(), at)?;
    }
    check_devices(&config.devices, config.ros.is_some(), at)?;
    check_console(&config.console, at)?;
    check_platform(&config.platform, at)
}

/// Reports `problem` about `field`, if any.
fn rule(at: &Spans, field: &str, result: Result<(), Problem>) -> Result<(), ConfigError> {
    result.map_err(|p| at.error(field, p))
}

fn check_ros(ros: &RosConfig, at: &Spans) -> Result<(), ConfigError> {
    rule(at, "ros.vcpus", vcpus(ros.vcpus))?;
    rule(at, "ros.memory", memory(ros.memory))?;
    rule(
        at,
        "ros.kernel",
        check_input_file("kernel", &ros.kernel, false),
    )?;
    cmdline(at, "ros.cmdline", &ros.cmdline)?;
    if let Some(initramfs) = &ros.initramfs {
        rule(
            at,
            "ros.initramfs",
            check_input_file("initramfs", initramfs, false),
        )?;
    }
    Ok(())
}

fn check_hrt(hrt: &HrtConfig, has_ros: bool, at: &Spans) -> Result<(), ConfigError> {
    rule(at, "hrt.vcpus", vcpus(hrt.vcpus))?;
    rule(at, "hrt.memory", memory(hrt.memory))?;
    rule(
        at,
        "hrt.kernel",
        check_input_file("kernel", &hrt.kernel, false),
    )?;
    cmdline(at, "hrt.cmdline", &hrt.cmdline)?;
    rule(at, "hrt.modules", module_count(hrt.modules.len()))?;
    for (i, module) in hrt.modules.iter().enumerate() {
        let path = check_input_file("module", &module.path, true);
        rule(at, &format!("hrt.modules[{i}].path"), path)?;
        let cmdline = module_cmdline(&module.cmdline);
        rule(at, &format!("hrt.modules[{i}].cmdline"), cmdline)?;
    }
    if hrt.boot == HrtBoot::OnRequest && !has_ros {
        return Err(at.error("hrt.boot", Problem::OnRequestWithoutRos));
    }
    rule(at, "hrt.forward_spin_us", forward_spin(hrt.forward_spin_us))
}

fn check_devices(devices: &DevicesConfig, has_ros: bool, at: &Spans) -> Result<(), ConfigError> {
    // A file's (even empty) device section counts: it asks for devices.
    if !has_ros && (!devices.is_empty() || at.has(DEVICE_SECTIONS)) {
        return Err(at.error(DEVICE_SECTIONS, Problem::DevicesWithoutRos));
    }
    rule(
        at,
        "block",
        device_count("block", devices.block.len(), MAX_BLOCK_DEVICES),
    )?;
    for (i, block) in devices.block.iter().enumerate() {
        let path = check_input_file(IMAGE, &block.path, false);
        rule(at, &format!("block[{i}].path"), path)?;
        if let Some(s) = &block.serial {
            rule(at, &format!("block[{i}].serial"), serial(s))?;
        }
    }
    rule(
        at,
        "net",
        device_count("net", devices.net.len(), MAX_NET_DEVICES),
    )?;
    for (i, net) in devices.net.iter().enumerate() {
        rule(at, &format!("net[{i}].tap"), tap(&net.tap))?;
        if let Some(mac) = net.mac {
            let field = format!("net[{i}].mac");
            rule(at, &field, unicast(mac, at.text(&field)))?;
        }
    }
    if let Some(v) = &devices.vsock {
        rule(at, "vsock.cid", cid(v.cid))?;
        rule(at, "vsock.socket", check_socket(&v.socket))?;
    }
    Ok(())
}

fn check_console(console: &ConsoleConfig, at: &Spans) -> Result<(), ConfigError> {
    if let ConsoleOutput::File(path) = &console.output {
        rule(at, "console.path", check_console_path(path))?;
    }
    Ok(())
}

fn check_platform(platform: &PlatformConfig, at: &Spans) -> Result<(), ConfigError> {
    for (i, name) in platform.clearcpuid.iter().flatten().enumerate() {
        rule(at, &format!("platform.clearcpuid[{i}]"), feature(name))?;
    }
    Ok(())
}

/// `1..=64`.
fn vcpus(value: u32) -> Result<(), Problem> {
    if (MIN_VCPUS..=MAX_VCPUS).contains(&value) {
        Ok(())
    } else {
        Err(Problem::VcpusOutOfRange {
            value: i64::from(value),
        })
    }
}

/// 16 MiB to 64 GiB.
fn memory(bytes: u64) -> Result<(), Problem> {
    if bytes < MIN_MEMORY {
        Err(Problem::MemoryTooSmall { bytes })
    } else if bytes > MAX_MEMORY {
        Err(Problem::MemoryTooLarge { bytes })
    } else {
        Ok(())
    }
}

/// A kernel command line: no NUL, newline or carriage return; at most [`MAX_CMDLINE_LEN`] bytes.
///
/// Checked piece by piece where it was put together (the file's or `--cmdline`'s, then
/// `--append`'s), so that the piece at fault is blamed: offsets are within that piece, and the
/// length is that of the line up to its end.
fn cmdline(at: &Spans, field: &str, line: &str) -> Result<(), ConfigError> {
    for (range, location) in at.parts(field, line.len()) {
        let fail = |p| crate::spans::invalid(location.clone(), field, p);
        let piece = line.get(range.clone()).unwrap_or_default();
        if let Some((offset, ch)) = bad_char(piece) {
            return Err(fail(Problem::CmdlineBadChar { ch, offset }));
        }
        let len = range.end.min(line.len());
        if len > MAX_CMDLINE_LEN {
            return Err(fail(Problem::CmdlineTooLong { len }));
        }
    }
    Ok(())
}

/// The first NUL, newline or carriage return, and its byte offset.
fn bad_char(text: &str) -> Option<(usize, char)> {
    text.char_indices()
        .find(|(_, c)| matches!(c, '\0' | '\n' | '\r'))
}

/// A module command line: no NUL, newline or carriage return; at most
/// [`MAX_MODULE_CMDLINE_LEN`] bytes.
fn module_cmdline(cmdline: &str) -> Result<(), Problem> {
    if let Some((offset, ch)) = bad_char(cmdline) {
        return Err(Problem::ModuleCmdlineBadChar { ch, offset });
    }
    if cmdline.len() > MAX_MODULE_CMDLINE_LEN {
        return Err(Problem::ModuleCmdlineTooLong { len: cmdline.len() });
    }
    Ok(())
}

/// At most [`MAX_MODULES`] modules.
fn module_count(count: usize) -> Result<(), Problem> {
    if count > MAX_MODULES {
        Err(Problem::TooManyModules { count })
    } else {
        Ok(())
    }
}

/// `0..=1_000_000` microseconds.
fn forward_spin(value: u32) -> Result<(), Problem> {
    if value <= MAX_FORWARD_SPIN_US {
        Ok(())
    } else {
        Err(Problem::ForwardSpinOutOfRange {
            value: i64::from(value),
        })
    }
}

/// A `clearcpuid` entry: `[a-z0-9_]+`.
fn feature(name: &str) -> Result<(), Problem> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Problem::BadFeatureName {
            name: name.to_string(),
        })
    }
}

/// At most `max` devices of kind `what`.
fn device_count(what: &'static str, count: usize, max: usize) -> Result<(), Problem> {
    if count > max {
        return Err(Problem::TooManyDevices { what, count, max });
    }
    Ok(())
}

/// `block.serial`: at most 20 bytes of printable ASCII.
fn serial(serial: &str) -> Result<(), Problem> {
    let printable = serial.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
    if serial.len() > MAX_BLOCK_SERIAL_LEN || !printable {
        return Err(Problem::BadSerial {
            serial: serial.to_string(),
        });
    }
    Ok(())
}

/// `net.tap`: a Linux interface name.
fn tap(name: &str) -> Result<(), Problem> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if !ok {
        return Err(Problem::BadTapName {
            name: name.to_string(),
        });
    }
    Ok(())
}

/// `net.mac`: unicast (the lowest bit of the first byte clear). `written` is the address as the
/// file wrote it, quoted in the message (an in-code one is shown as its bytes).
fn unicast(mac: [u8; 6], written: Option<&str>) -> Result<(), Problem> {
    if mac[0] & 1 == 0 {
        return Ok(());
    }
    let mac = written.map_or_else(|| format!("{mac:02x?}"), str::to_string);
    Err(Problem::BadMac { mac })
}

/// `vsock.cid`: 3 to `u32::MAX - 1`.
fn cid(value: u64) -> Result<(), Problem> {
    if (3..u64::from(u32::MAX)).contains(&value) {
        return Ok(());
    }
    Err(Problem::CidOutOfRange {
        value: i64::try_from(value).unwrap_or(i64::MAX),
    })
}
