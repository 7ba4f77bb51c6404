//! duet's VM configuration: a TOML file, plus command-line overrides,
//! checked into a plain-data [`Config`]. No KVM and no kernel parsing here
//! (the boot code checks image contents and memory-vs-image sizes).
//!
//! Pipeline: text → raw serde structs (unknown keys rejected) → the model
//! ([`Config`]) with [`Overrides`] applied and the spans of its fields
//! recorded → one validation pass over the model, whose errors the spans
//! locate. Entry points: [`load`] (read a file) and [`parse`] (text you
//! already have); for configs built in code, [`RosConfig::new`] /
//! [`Config::from_ros`], [`HrtConfig::new`] / [`Config::from_hrt`], and
//! [`Config::validate`], which runs the same validation pass (errors then
//! name the field but no location).
//!
//! Modules: `model` (the plain data), `raw` (the file as written), `source`
//! (the text: spans to lines, TOML errors), `overrides`, `build` and
//! `build_devices` (raw + overrides → model + spans), `spans` (where each
//! field came from), `rules` (every check, once), `paths` (resolving paths,
//! checking what is at them), `load` (the pipeline), `error`, `size`.
//!
//! # File format
//!
//! ```toml
//! # A VM is described by its partitions: [ros] alone is a plain Linux VM,
//! # [hrt] alone a Multiboot2 kernel booted fully virtualized, both together
//! # a partitioned VM (Linux and the HRT side by side in one VM; command-line
//! # overrides then apply to [ros]). A file needs at least one of them.
//! [ros]                      # the Linux partition
//! vcpus = 2                  # 1..=64, default 1
//! memory = "256M"            # size, see below; 16 MiB to 64 GiB; default "256M"
//! kernel = "vmlinux"         # required; relative to the config file's directory (absolute ok)
//! initramfs = "initramfs.cpio"  # optional; same path rules
//! cmdline = "console=ttyS0"  # optional kernel command line (duet appends its own
//!                            # platform parameters later); max 2048 bytes; no NUL / newline
//!
//! # -- and/or --
//! [hrt]                      # the HRT partition: a Multiboot2 kernel
//! vcpus = 1                  # as ros.vcpus
//! memory = "64M"             # as ros.memory
//! kernel = "hrt.elf"         # required; path rules as ros.kernel
//! cmdline = "smp"            # as ros.cmdline
//! boot = "at-start"          # "at-start" (default) | "on-request" (booted when the
//!                            # ROS asks: needs a [ros] partition, so not valid alone)
//! forward = "poll"           # "poll" (default) | "notify" | "adaptive": how the HRT and
//!                            # the ROS's proxy wait on a forwarding channel (spin; sleep
//!                            # on the doorbells; spin, then sleep); told to both sides
//! forward_spin_us = 100      # adaptive's bounded spin before sleeping, in µs;
//!                            # 0..=1000000, default 100 (ignored by the other modes)
//! modules = [                # optional, at most 64, passed in order
//!   { path = "data.bin", cmdline = "data" },  # path: as kernel, but may be an empty
//!   { path = "other.bin" },                   # file; cmdline: optional, max 1024
//! ]                                           # bytes, no NUL / newline
//! # ([[hrt.modules]] tables work too)
//!
//! [console]                  # optional
//! output = "stdio"           # "stdio" | "capture" (kept in memory for embedders/tests)
//!                            # | "file" | "none"; default "stdio"
//! path = "console.log"       # required iff output = "file" (relative to the config
//!                            # file's directory); forbidden otherwise
//! input = true               # forward stdin to the guest serial (only meaningful
//!                            # with stdio); default true
//!
//! [platform]                 # optional
//! pvm_workarounds = "auto"   # "auto" | "on" | "off": the PVM-host boot settings
//!                            # (hide CX16, clearcpuid=...); default "auto"
//! clearcpuid = ["popcnt"]    # optional; replaces duet's default clearcpuid= feature
//!                            # list (used only when the workarounds apply);
//!                            # each entry [a-z0-9_]+
//!
//! # The ROS's virtio-mmio devices (each needs [ros]; docs/devices.md)
//! [[block]]                  # up to 8; /dev/vda, /dev/vdb, ... in order
//! path = "disk.img"          # required; a raw image, path rules as ros.kernel
//! read_only = false          # default false
//! serial = "disk0"           # optional; up to 20 bytes of printable ASCII
//!
//! [[net]]                    # up to 4; eth0, eth1, ... in order
//! tap = "tap0"               # required; an existing TAP interface
//! mac = "02:00:00:00:00:01"  # optional unicast MAC; default 02:64:75:65:74:<index>
//!
//! [vsock]                    # at most one
//! cid = 3                    # required; the guest's CID, 3 to 4294967294
//! socket = "vsock.sock"      # required; host Unix socket (path rules as console.path;
//!                            # at most 96 bytes; its directory must exist)
//! ```
//!
//! Sizes ([`parse_size`]): an integer with an optional binary suffix `K`,
//! `M`, `G` (or `KiB`, `MiB`, `GiB`; case-insensitive), e.g. `"512MiB"`,
//! `"1G"`; a bare integer (`"512"`, or the TOML integer `512`) means MiB.
//!
//! Kernels, initramfs and modules must exist and be readable regular files;
//! kernels and initramfs must not be empty (a module may be). For
//! `output = "file"`, the log file's directory must exist. Any unknown
//! table or key is an error naming the valid keys.
//!
//! # Command-line overrides
//!
//! [`Overrides`] target the VM's one partition (`[ros]` if present, else
//! `[hrt]`): they replace its `vcpus`, `memory`, `kernel` and `cmdline`
//! (and `ros.initramfs`; `--initramfs` on an `[hrt]` VM is an error), or
//! append to its command line (`append`), before validation. Paths given
//! there are relative to the current directory. With a kernel override, the
//! file may omit its partition section: it then describes a `[ros]` VM.
//!
//! # Errors
//!
//! [`ConfigError`] messages name the file and 1-based line (or
//! `command line (--option)` for overridden values), the field path, what
//! is wrong and what is accepted:
//!
//! ```text
//! examples/bad.toml:4: ros.memory: invalid size "12Q": expected a number with an optional K, M or G suffix (e.g. "256M"); a bare number means MiB
//! command line (--vcpus): ros.vcpus: 0 is out of range: expected 1 to 64
//! examples/hrt.toml:9: hrt.modules[2].path: module file not found: /abs/examples/gone.bin
//! ```

mod build;
mod build_devices;
mod error;
mod load;
mod model;
mod overrides;
mod paths;
mod raw;
mod rules;
mod size;
mod source;
mod spans;

pub use error::{ConfigError, Location, Problem};
pub use model::{
    BlockConfig, DevicesConfig, NetConfig, VsockConfig, MAX_BLOCK_DEVICES, MAX_BLOCK_SERIAL_LEN,
    MAX_NET_DEVICES, MAX_VSOCK_SOCKET_LEN,
};
pub use model::{
    Config, ConsoleConfig, ConsoleOutput, ForwardMode, HrtBoot, HrtConfig, ModuleConfig,
    PlatformConfig, RosConfig, Workarounds, DEFAULT_FORWARD_SPIN_US, DEFAULT_MEMORY, DEFAULT_VCPUS,
    MAX_CMDLINE_LEN, MAX_FORWARD_SPIN_US, MAX_MEMORY, MAX_MODULES, MAX_MODULE_CMDLINE_LEN,
    MAX_VCPUS, MIN_MEMORY, MIN_VCPUS,
};
pub use load::{load, parse};
pub use overrides::Overrides;
pub use size::{parse_size, SizeError, GIB, KIB, MIB};

#[cfg(test)]
mod tests;
