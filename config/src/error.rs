//! Configuration errors: where ([`Location`]), which field, and what is
//! wrong ([`Problem`]).

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::model::{
    MAX_BLOCK_SERIAL_LEN, MAX_VSOCK_SOCKET_LEN, MAX_CMDLINE_LEN, MAX_FORWARD_SPIN_US, MAX_MEMORY, MAX_MODULES, MAX_MODULE_CMDLINE_LEN,
    MAX_VCPUS, MIN_MEMORY, MIN_VCPUS,
};
use crate::size::{format_size, SizeError};

/// Where a configuration value (or error) comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A place in a config file.
    File {
        /// The config file, as given to [`crate::load`] / [`crate::parse`].
        path: PathBuf,
        /// 1-based line number, when known.
        line: Option<usize>,
    },
    /// A command-line override.
    CommandLine {
        /// The option, e.g. `--memory`.
        option: &'static str,
    },
    /// A [`crate::Config`] built in code and checked with
    /// [`crate::Config::validate`]: there is no location to report.
    Code,
}

impl Location {
    /// The 1-based line number, for a file location that has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            Location::File { line, .. } => *line,
            _ => None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File {
                path,
                line: Some(line),
            } => write!(f, "{}:{line}", path.display()),
            Location::File { path, line: None } => write!(f, "{}", path.display()),
            Location::CommandLine { option } => write!(f, "command line ({option})"),
            Location::Code => f.write_str("configuration"),
        }
    }
}

/// `"<location>: "`, or nothing for [`Location::Code`].
fn prefix(location: &Location) -> String {
    match location {
        Location::Code => String::new(),
        other => format!("{other}: "),
    }
}

/// `"<field>: "`, or nothing.
fn field_prefix(field: &Option<String>) -> String {
    field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default()
}

/// An error loading or checking a configuration.
///
/// The `Display` text is meant for users, e.g.
/// `examples/bad.toml:4: ros.memory: invalid size "12Q": expected a number
/// with an optional K, M or G suffix (e.g. "256M")`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("{}: cannot read config file: {message}", .path.display())]
    Read {
        /// The config file.
        path: PathBuf,
        /// The I/O error kind.
        kind: io::ErrorKind,
        /// The I/O error text.
        message: String,
    },
    /// The file is not valid TOML, or does not fit the schema: unknown key,
    /// wrong value type, unknown enum string (the message comes from the
    /// TOML parser / serde).
    #[error("{}{}{message}", prefix(.location), field_prefix(.field))]
    Toml {
        /// Where (file and line).
        location: Location,
        /// Dotted path of the offending key, when it could be determined.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A value is present and well-typed but not acceptable.
    #[error("{}{field}: {problem}", prefix(.location))]
    Invalid {
        /// Where the value comes from.
        location: Location,
        /// Dotted path of the field, e.g. `ros.memory`,
        /// `hrt.modules[2].path` or `platform.clearcpuid[2]`; `ros/hrt`
        /// for [`Problem::MissingPartition`].
        field: String,
        /// What is wrong (boxed to keep `Result<_, ConfigError>` small).
        problem: Box<Problem>,
    },
}

impl ConfigError {
    /// Where the error is, if anywhere ([`ConfigError::Read`] has only a path).
    pub fn location(&self) -> Option<&Location> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Toml { location, .. } | ConfigError::Invalid { location, .. } => {
                Some(location)
            }
        }
    }

    /// The 1-based line in the config file, when known.
    pub fn line(&self) -> Option<usize> {
        self.location().and_then(Location::line)
    }

    /// The dotted field path (e.g. `ros.memory`), when known.
    pub fn field(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Toml { field, .. } => field.as_deref(),
            ConfigError::Invalid { field, .. } => Some(field),
        }
    }

    /// The semantic problem, for [`ConfigError::Invalid`].
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ConfigError::Invalid { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// What is wrong with a value (see [`ConfigError::Invalid`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The file has neither `[ros]` nor `[hrt]` (and no `--kernel` to
    /// stand in for `[ros]`), or an in-code [`crate::Config`] has neither.
    #[error("a VM needs a [ros] (Linux) or [hrt] (Multiboot2 kernel) section")]
    MissingPartition,
    /// `ros.kernel` is not given.
    #[error(
        "missing required key: the path of the Linux kernel image (e.g. kernel = \"vmlinux\", relative to the config file's directory)"
    )]
    MissingKernel,
    /// `hrt.kernel` is not given.
    #[error(
        "missing required key: the path of the Multiboot2 kernel image (e.g. kernel = \"hrt.elf\", relative to the config file's directory)"
    )]
    MissingHrtKernel,
    /// `hrt.modules[i].path` is not given.
    #[error(
        "missing required key: the path of the module file (e.g. path = \"data.bin\", relative to the config file's directory)"
    )]
    MissingModulePath,
    /// `hrt.modules` lists more than [`MAX_MODULES`] modules.
    #[error("too many modules: {count} (the maximum is {MAX_MODULES})")]
    TooManyModules {
        /// How many were given.
        count: usize,
    },
    /// A module command line exceeds [`MAX_MODULE_CMDLINE_LEN`].
    #[error(
        "module command line is too long: {len} bytes (the maximum is {MAX_MODULE_CMDLINE_LEN})"
    )]
    ModuleCmdlineTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// A module command line contains NUL, newline or carriage return.
    #[error("module command line contains {} at byte {offset}: it must be a single line of text", char_name(*.ch))]
    ModuleCmdlineBadChar {
        /// The offending character.
        ch: char,
        /// Its byte offset.
        offset: usize,
    },
    /// `hrt.boot = "on-request"` without a `[ros]` to make the request.
    #[error("boot = \"on-request\" needs a [ros] partition to request the HRT's boot; with [hrt] alone use boot = \"at-start\" (the default)")]
    OnRequestWithoutRos,
    /// `--initramfs` given for a VM with only `[hrt]`.
    #[error("--initramfs applies to [ros] (the Linux partition), and this VM has only [hrt]")]
    InitramfsWithoutRos,
    /// `ros.vcpus` or `hrt.vcpus` is outside `1..=64`.
    #[error("{value} is out of range: expected {MIN_VCPUS} to {MAX_VCPUS}")]
    VcpusOutOfRange {
        /// The rejected count.
        value: i64,
    },
    /// `hrt.forward_spin_us` is outside `0..=1_000_000`.
    #[error("{value} is out of range: expected 0 to {MAX_FORWARD_SPIN_US} (microseconds)")]
    ForwardSpinOutOfRange {
        /// The rejected value.
        value: i64,
    },
    /// The size string does not parse.
    #[error(transparent)]
    Size(#[from] SizeError),
    /// `ros.memory` or `hrt.memory` is below the minimum.
    #[error("{} is too small: the minimum is {}", format_size(*.bytes), format_size(MIN_MEMORY))]
    MemoryTooSmall {
        /// The rejected size in bytes.
        bytes: u64,
    },
    /// `ros.memory` or `hrt.memory` is above the maximum.
    #[error("{} is too large: the maximum is {}", format_size(*.bytes), format_size(MAX_MEMORY))]
    MemoryTooLarge {
        /// The rejected size in bytes.
        bytes: u64,
    },
    /// A path is the empty string.
    #[error("{what} path is empty")]
    EmptyPath {
        /// What the path is for: `kernel`, `initramfs`, `module`, `console`.
        what: &'static str,
    },
    /// The file does not exist.
    #[error("{what} file not found: {}", .path.display())]
    FileNotFound {
        /// What the file is for: `kernel`, `initramfs` or `module`.
        what: &'static str,
        /// The resolved path.
        path: PathBuf,
    },
    /// The path names a directory.
    #[error("{what} path is a directory, not a file: {}", .path.display())]
    IsDirectory {
        /// What the file is for.
        what: &'static str,
        /// The resolved path.
        path: PathBuf,
    },
    /// The path names something that is neither a file nor a directory
    /// (a device, a FIFO, ...).
    #[error("{what} path is not a regular file: {}", .path.display())]
    NotAFile {
        /// What the file is for.
        what: &'static str,
        /// The resolved path.
        path: PathBuf,
    },
    /// The file exists but cannot be read (permissions, ...).
    #[error("cannot read {what} file {}: {message}", .path.display())]
    FileUnreadable {
        /// What the file is for.
        what: &'static str,
        /// The resolved path.
        path: PathBuf,
        /// The I/O error text.
        message: String,
    },
    /// The file has size 0.
    #[error("{what} file is empty: {}", .path.display())]
    FileEmpty {
        /// What the file is for.
        what: &'static str,
        /// The resolved path.
        path: PathBuf,
    },
    /// The kernel command line exceeds [`MAX_CMDLINE_LEN`].
    #[error("kernel command line is too long: {len} bytes (the maximum is {MAX_CMDLINE_LEN})")]
    CmdlineTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The kernel command line contains NUL, newline or carriage return.
    #[error("kernel command line contains {} at byte {offset}: it must be a single line of text", char_name(*.ch))]
    CmdlineBadChar {
        /// The offending character.
        ch: char,
        /// Its byte offset.
        offset: usize,
    },
    /// `console.output = "file"` without `console.path`.
    #[error("output = \"file\" needs a path (e.g. path = \"console.log\", relative to the config file's directory)")]
    ConsolePathMissing,
    /// `console.path` with an output other than `"file"`.
    #[error("path is only allowed with output = \"file\" (output is \"{output}\")")]
    ConsolePathForbidden {
        /// The configured output.
        output: &'static str,
    },
    /// The console log's directory does not exist.
    #[error("directory of the console file does not exist: {}", .path.display())]
    ConsoleDirMissing {
        /// The missing directory.
        path: PathBuf,
    },
    /// The console log path is a directory.
    #[error("console path is a directory: {}", .path.display())]
    ConsolePathIsDir {
        /// The resolved path.
        path: PathBuf,
    },
    /// A device section without a `[ros]` partition to attach it to.
    #[error("virtio devices belong to the Linux partition, and this VM has no [ros]")]
    DevicesWithoutRos,
    /// More devices of one kind than duet attaches.
    #[error("too many {what} devices: {count} (the maximum is {max})")]
    TooManyDevices {
        /// `block` or `net`.
        what: &'static str,
        /// How many were given.
        count: usize,
        /// The maximum.
        max: usize,
    },
    /// A required device key is missing.
    #[error("missing required key: {hint}")]
    MissingDeviceKey {
        /// What to write, e.g. `the TAP interface (e.g. tap = "tap0")`.
        hint: &'static str,
    },
    /// `block.serial` is too long or not printable ASCII.
    #[error("invalid serial {serial:?}: expected at most {MAX_BLOCK_SERIAL_LEN} bytes of printable ASCII")]
    BadSerial {
        /// The rejected serial.
        serial: String,
    },
    /// `net.tap` cannot be an interface name.
    #[error("invalid interface name {name:?}: expected 1 to 15 bytes, no '/', whitespace or ':'")]
    BadTapName {
        /// The rejected name.
        name: String,
    },
    /// `net.mac` does not parse or is a multicast address.
    #[error("invalid MAC address {mac:?}: expected six hex bytes separated by ':' (e.g. \"02:00:00:00:00:01\"), unicast (lowest bit of the first byte clear)")]
    BadMac {
        /// The rejected address.
        mac: String,
    },
    /// `vsock.cid` is reserved or too large.
    #[error("{value} is out of range: expected a guest CID from 3 to 4294967294 (0-2 are reserved)")]
    CidOutOfRange {
        /// The rejected CID.
        value: i64,
    },
    /// The vsock socket path is too long for a Unix socket.
    #[error("socket path is {len} bytes long: at most {MAX_VSOCK_SOCKET_LEN} fit a Unix socket with duet's `_PORT` suffixes")]
    SocketPathTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The vsock socket's directory does not exist.
    #[error("directory of the socket does not exist: {}", .path.display())]
    SocketDirMissing {
        /// The missing directory.
        path: PathBuf,
    },
    /// The vsock socket path is a directory.
    #[error("socket path is a directory: {}", .path.display())]
    SocketPathIsDir {
        /// The resolved path.
        path: PathBuf,
    },
    /// A `platform.clearcpuid` entry is not `[a-z0-9_]+`.
    #[error("invalid CPU feature name \"{name}\": expected lowercase letters, digits and underscores (e.g. \"popcnt\")")]
    BadFeatureName {
        /// The rejected entry.
        name: String,
    },
}

fn char_name(ch: char) -> &'static str {
    match ch {
        '\0' => "a NUL character",
        '\n' => "a newline",
        '\r' => "a carriage return",
        _ => "a control character",
    }
}
