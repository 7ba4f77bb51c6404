//! The validated configuration: plain data, no I/O.

use std::path::PathBuf;

use crate::size::MIB;

/// Default number of vCPUs.
pub const DEFAULT_VCPUS: u32 = 1;
/// Smallest accepted `ros.vcpus`.
pub const MIN_VCPUS: u32 = 1;
/// Largest accepted `ros.vcpus`.
pub const MAX_VCPUS: u32 = 64;
/// Default guest memory (256 MiB).
pub const DEFAULT_MEMORY: u64 = 256 * MIB;
/// Smallest accepted guest memory (16 MiB).
pub const MIN_MEMORY: u64 = 16 * MIB;
/// Largest accepted guest memory (64 GiB).
pub const MAX_MEMORY: u64 = 64 * 1024 * MIB;
/// Longest accepted kernel command line, in bytes (before duet appends its
/// own platform parameters).
pub const MAX_CMDLINE_LEN: usize = 2048;

/// A complete, validated VM configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The config file it was read from, as given to [`crate::load`] /
    /// [`crate::parse`]; empty for a config built in code.
    pub source: PathBuf,
    /// The Linux partition.
    pub ros: RosConfig,
    /// The guest serial console.
    pub console: ConsoleConfig,
    /// Host-platform settings.
    pub platform: PlatformConfig,
}

impl Config {
    /// A config with the given Linux partition and default console and
    /// platform settings, not tied to a file (`source` is empty). Call
    /// [`Config::validate`] to check it.
    pub fn from_ros(ros: RosConfig) -> Self {
        Config {
            source: PathBuf::new(),
            ros,
            console: ConsoleConfig::default(),
            platform: PlatformConfig::default(),
        }
    }
}

/// The Linux partition (`[ros]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosConfig {
    /// Number of vCPUs, `1..=64`.
    pub vcpus: u32,
    /// Guest memory in bytes, 16 MiB to 64 GiB.
    pub memory: u64,
    /// The kernel image (resolved: absolute when read from a file).
    pub kernel: PathBuf,
    /// The initramfs, if any (resolved like `kernel`).
    pub initramfs: Option<PathBuf>,
    /// The user's kernel command line (duet appends its own platform
    /// parameters later); may be empty.
    pub cmdline: String,
}

impl RosConfig {
    /// A Linux partition booting `kernel` with the defaults: 1 vCPU,
    /// 256 MiB, no initramfs, empty command line.
    pub fn new(kernel: PathBuf) -> Self {
        RosConfig {
            vcpus: DEFAULT_VCPUS,
            memory: DEFAULT_MEMORY,
            kernel,
            initramfs: None,
            cmdline: String::new(),
        }
    }
}

/// The guest serial console (`[console]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// Where guest output goes.
    pub output: ConsoleOutput,
    /// Whether host stdin is forwarded to the guest serial (only meaningful
    /// with [`ConsoleOutput::Stdio`]).
    pub input: bool,
}

impl Default for ConsoleConfig {
    /// Output to stdio, input forwarded.
    fn default() -> Self {
        ConsoleConfig {
            output: ConsoleOutput::Stdio,
            input: true,
        }
    }
}

/// Where guest console output goes (`console.output`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ConsoleOutput {
    /// The host's stdout (`"stdio"`, the default).
    #[default]
    Stdio,
    /// Kept in memory, for embedders and tests (`"capture"`).
    Capture,
    /// Written to a file (`"file"` with `path`; resolved like `ros.kernel`).
    File(PathBuf),
    /// Discarded (`"none"`).
    None,
}

/// Host-platform settings (`[platform]`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlatformConfig {
    /// Whether to apply the PVM-host boot settings.
    pub pvm_workarounds: Workarounds,
    /// Overrides duet's default `clearcpuid=` feature list (used only when
    /// the workarounds apply); `None` keeps the default. Entries are
    /// `[a-z0-9_]+`.
    pub clearcpuid: Option<Vec<String>>,
}

/// `platform.pvm_workarounds`: the PVM-host boot settings (hide CX16,
/// `clearcpuid=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Workarounds {
    /// Apply them when running on a PVM host (`"auto"`, the default).
    #[default]
    Auto,
    /// Always apply them (`"on"`).
    On,
    /// Never apply them (`"off"`).
    Off,
}
