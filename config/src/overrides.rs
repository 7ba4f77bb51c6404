//! Command-line overrides: values that replace the file's before it is checked.

use std::path::PathBuf;

/// Command-line overrides, applied on top of the file before validation.
/// `None` keeps the file's value.
///
/// They target the VM's one partition: `[ros]` if the file has it, else
/// `[hrt]` (where `--initramfs` is an error). With `--kernel`, a file with
/// neither section describes a Linux (`[ros]`) VM.
///
/// Override paths are relative to the current directory (not the config
/// file's); errors in overridden values are reported as
/// `command line (--memory)` etc.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Overrides {
    /// `--vcpus`: replaces `ros.vcpus` / `hrt.vcpus`.
    pub vcpus: Option<u32>,
    /// `--memory`: replaces `ros.memory` / `hrt.memory` (same size syntax).
    pub memory: Option<String>,
    /// `--kernel`: replaces `ros.kernel` / `hrt.kernel`; with it, a file
    /// with neither `[ros]` nor `[hrt]` is accepted (as a `[ros]` VM).
    pub kernel: Option<PathBuf>,
    /// `--initramfs`: replaces `ros.initramfs`; an error for an `[hrt]`
    /// VM.
    pub initramfs: Option<PathBuf>,
    /// `--cmdline`: replaces `ros.cmdline` / `hrt.cmdline`.
    pub cmdline: Option<String>,
    /// `--append`: appended to the (possibly overridden) command line,
    /// separated by a space.
    pub append: Option<String>,
}
