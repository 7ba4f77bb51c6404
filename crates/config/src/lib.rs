//! duet's VM configuration: a TOML file, plus command-line overrides,
//! checked into a plain-data [`Config`]. No KVM and no kernel parsing here
//! (the boot code checks image contents and memory-vs-image sizes).
//!
//! Pipeline: text → raw serde structs (unknown keys rejected) →
//! [`Overrides`] applied → validated [`Config`]. Entry points: [`load`]
//! (read a file) and [`parse`] (text you already have); for configs built
//! in code, [`RosConfig::new`], [`Config::from_ros`] and
//! [`Config::validate`].
//!
//! # File format
//!
//! ```toml
//! # A VM is described by its partitions. A file with only [ros] is a plain Linux VM.
//! [ros]                      # the Linux partition (required for now)
//! vcpus = 2                  # 1..=64, default 1
//! memory = "256M"            # size, see below; 16 MiB to 64 GiB; default "256M"
//! kernel = "vmlinux"         # required; relative to the config file's directory (absolute ok)
//! initramfs = "initramfs.cpio"  # optional; same path rules
//! cmdline = "console=ttyS0"  # optional kernel command line (duet appends its own
//!                            # platform parameters later); max 2048 bytes; no NUL / newline
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
//! ```
//!
//! Sizes ([`parse_size`]): an integer with an optional binary suffix `K`,
//! `M`, `G` (or `KiB`, `MiB`, `GiB`; case-insensitive), e.g. `"512MiB"`,
//! `"1G"`; a bare integer (`"512"`, or the TOML integer `512`) means MiB.
//!
//! The kernel and initramfs must exist and be non-empty, readable regular
//! files. For `output = "file"`, the log file's directory must exist.
//!
//! An `[hrt]` table (a Multiboot2 specialized-kernel partition) is
//! recognized but not supported yet, and is rejected with an error saying
//! so. Any other unknown table or key is an error naming the valid keys.
//!
//! # Command-line overrides
//!
//! [`Overrides`] replace `ros.vcpus`, `ros.memory`, `ros.kernel`,
//! `ros.initramfs` and `ros.cmdline`, or append to the command line
//! (`append`), before validation. Paths given there are relative to the
//! current directory. With a kernel override, the file may omit `[ros]`.
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
//! ```

mod error;
mod model;
mod parse;
mod raw;
mod size;
mod validate;

pub use error::{ConfigError, Location, Problem};
pub use model::{
    Config, ConsoleConfig, ConsoleOutput, PlatformConfig, RosConfig, Workarounds, DEFAULT_MEMORY,
    DEFAULT_VCPUS, MAX_CMDLINE_LEN, MAX_MEMORY, MAX_VCPUS, MIN_MEMORY, MIN_VCPUS,
};
pub use parse::{load, parse, Overrides};
pub use size::{parse_size, SizeError, GIB, KIB, MIB};

#[cfg(test)]
mod tests;
