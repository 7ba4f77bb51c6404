//! The validated configuration: plain data, no I/O.

use std::path::PathBuf;

use crate::size::MIB;

/// How a forwarding channel's two sides wait for each other (`hrt.forward`): the ABI's own
/// type (`poll`, `notify`, `adaptive`), so the value the config holds is the one the partitions are
/// told.
pub use abi::ForwardMode;

/// Default number of vCPUs.
pub const DEFAULT_VCPUS: u32 = 1;
/// Smallest accepted `vcpus` (of `[ros]` or `[hrt]`).
pub const MIN_VCPUS: u32 = 1;
/// Largest accepted `vcpus` (of `[ros]` or `[hrt]`).
pub const MAX_VCPUS: u32 = 64;
/// Default partition memory (256 MiB), for `[ros]` and `[hrt]` alike.
pub const DEFAULT_MEMORY: u64 = 256 * MIB;
/// Smallest accepted guest memory (16 MiB).
pub const MIN_MEMORY: u64 = 16 * MIB;
/// Largest accepted guest memory (64 GiB).
pub const MAX_MEMORY: u64 = 64 * 1024 * MIB;
/// Longest accepted kernel command line (`ros.cmdline`, `hrt.cmdline`), in
/// bytes (before duet appends its own platform parameters).
pub const MAX_CMDLINE_LEN: usize = 2048;
/// Most Multiboot2 modules an `[hrt]` may list (`hrt.modules`).
pub const MAX_MODULES: usize = 64;
/// Longest accepted module command line (`hrt.modules[i].cmdline`), in bytes.
pub const MAX_MODULE_CMDLINE_LEN: usize = 1024;
/// Default `hrt.forward_spin_us`: adaptive forwarding spins 100 µs before sleeping.
pub const DEFAULT_FORWARD_SPIN_US: u32 = 100;
/// Largest accepted `hrt.forward_spin_us` (one second).
pub const MAX_FORWARD_SPIN_US: u32 = 1_000_000;

/// A complete, validated VM configuration. A VM is described by its
/// partitions: `ros` alone (Linux), `hrt` alone (a Multiboot2 kernel), or
/// both (a partitioned VM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The config file it was read from, as given to [`crate::load`] /
    /// [`crate::parse`]; empty for a config built in code.
    pub source: PathBuf,
    /// The Linux partition (`[ros]`), if any.
    pub ros: Option<RosConfig>,
    /// The Multiboot2 specialized-kernel partition (`[hrt]`), if any.
    pub hrt: Option<HrtConfig>,
    /// The guest serial console.
    pub console: ConsoleConfig,
    /// Host-platform settings.
    pub platform: PlatformConfig,
    /// The ROS's virtio devices (`[[block]]`, `[[net]]`, `[vsock]`).
    pub devices: DevicesConfig,
}

impl Config {
    /// A config with the given Linux partition and default console and
    /// platform settings, not tied to a file (`source` is empty). Call
    /// [`Config::validate`] to check it.
    pub fn from_ros(ros: RosConfig) -> Self {
        Config {
            source: PathBuf::new(),
            ros: Some(ros),
            hrt: None,
            console: ConsoleConfig::default(),
            platform: PlatformConfig::default(),
            devices: DevicesConfig::default(),
        }
    }

    /// A config with the given HRT partition alone (a Multiboot2 kernel
    /// booted fully virtualized) and default console and platform
    /// settings, not tied to a file (`source` is empty). Call
    /// [`Config::validate`] to check it.
    pub fn from_hrt(hrt: HrtConfig) -> Self {
        Config {
            source: PathBuf::new(),
            ros: None,
            hrt: Some(hrt),
            console: ConsoleConfig::default(),
            platform: PlatformConfig::default(),
            devices: DevicesConfig::default(),
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

/// The HRT partition (`[hrt]`): a Multiboot2 kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HrtConfig {
    /// Number of vCPUs, `1..=64`.
    pub vcpus: u32,
    /// Partition memory in bytes, 16 MiB to 64 GiB.
    pub memory: u64,
    /// The Multiboot2 kernel image (resolved: absolute when read from a
    /// file).
    pub kernel: PathBuf,
    /// The kernel command line (Multiboot2 command-line tag); may be empty.
    pub cmdline: String,
    /// Multiboot2 modules, in order (at most [`MAX_MODULES`]).
    pub modules: Vec<ModuleConfig>,
    /// When the HRT boots.
    pub boot: HrtBoot,
    /// How the two sides of a forwarding channel wait for each other
    /// (`hrt.forward`; told to both partitions in the HVM information).
    pub forward: ForwardMode,
    /// Adaptive forwarding's bounded spin before sleeping, in microseconds,
    /// `0..=1_000_000` (`hrt.forward_spin_us`; only meaningful with
    /// [`ForwardMode::Adaptive`]).
    pub forward_spin_us: u32,
}

impl HrtConfig {
    /// An HRT partition booting the Multiboot2 kernel `kernel` with the
    /// defaults: 1 vCPU, 256 MiB ([`DEFAULT_MEMORY`]), empty command line,
    /// no modules, booted at start, poll-mode forwarding with a
    /// [`DEFAULT_FORWARD_SPIN_US`] spin bound.
    pub fn new(kernel: PathBuf) -> Self {
        HrtConfig {
            vcpus: DEFAULT_VCPUS,
            memory: DEFAULT_MEMORY,
            kernel,
            cmdline: String::new(),
            modules: Vec::new(),
            boot: HrtBoot::AtStart,
            forward: ForwardMode::Poll,
            forward_spin_us: DEFAULT_FORWARD_SPIN_US,
        }
    }
}

/// A Multiboot2 module (`hrt.modules[i]`): a file loaded into guest memory
/// and passed to the kernel with a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleConfig {
    /// The module file (resolved like `hrt.kernel`); may be empty.
    pub path: PathBuf,
    /// The module's string (its "command line"); may be empty; at most
    /// [`MAX_MODULE_CMDLINE_LEN`] bytes, no NUL / newline.
    pub cmdline: String,
}

/// When the HRT boots (`hrt.boot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HrtBoot {
    /// When the VM starts (`"at-start"`, the default).
    #[default]
    AtStart,
    /// When the ROS asks for it by hypercall (`"on-request"`); needs a
    /// `[ros]` partition.
    OnRequest,
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

/// Most `[[block]]` devices.
pub const MAX_BLOCK_DEVICES: usize = 8;
/// Most `[[net]]` devices.
pub const MAX_NET_DEVICES: usize = 4;
/// Longest `block.serial`, in bytes (virtio-blk's GET_ID answer).
pub const MAX_BLOCK_SERIAL_LEN: usize = 20;
/// Longest vsock socket path, in bytes: a Unix socket path holds 107, and guest connections to host
/// port P go to `<socket>_P` (up to 11 more bytes).
pub const MAX_VSOCK_SOCKET_LEN: usize = 96;

/// The ROS's virtio-mmio devices. Each needs a `[ros]` partition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DevicesConfig {
    /// `[[block]]`: virtio-blk disks over raw image files, in order (`/dev/vda`, `/dev/vdb`, ...).
    pub block: Vec<BlockConfig>,
    /// `[[net]]`: virtio-net interfaces over existing TAP interfaces, in order (`eth0`, ...).
    pub net: Vec<NetConfig>,
    /// `[vsock]`: one virtio-vsock device.
    pub vsock: Option<VsockConfig>,
}

impl DevicesConfig {
    /// Whether no device is configured.
    pub fn is_empty(&self) -> bool {
        self.block.is_empty() && self.net.is_empty() && self.vsock.is_none()
    }
}

/// A virtio-blk disk (`[[block]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockConfig {
    /// The raw image file (resolved like `ros.kernel`).
    pub path: PathBuf,
    /// Offer the disk read-only (the image is opened read-only).
    pub read_only: bool,
    /// The serial the guest reads (`/sys/block/vdX/serial`), at most
    /// [`MAX_BLOCK_SERIAL_LEN`] bytes of printable ASCII.
    pub serial: Option<String>,
}

impl BlockConfig {
    /// A writable disk over `path`, no serial.
    pub fn new(path: PathBuf) -> Self {
        BlockConfig { path, read_only: false, serial: None }
    }
}

/// A virtio-net interface (`[[net]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The host TAP interface, which must exist (`ip tuntap add NAME mode tap`).
    pub tap: String,
    /// The guest's MAC address; `None`: duet picks a locally administered one from the device's index.
    pub mac: Option<[u8; 6]>,
}

/// A virtio-vsock device (`[vsock]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VsockConfig {
    /// The guest's context ID, 3 to 4294967294.
    pub cid: u64,
    /// The host Unix socket duet listens on (resolved like `ros.kernel`); host port P of a guest
    /// connection is `<socket>_P`.
    pub socket: PathBuf,
}
