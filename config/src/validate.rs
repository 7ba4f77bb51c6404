//! Semantic checks shared by file loading ([`crate::parse`]) and in-code
//! configs ([`Config::validate`]).

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::error::{ConfigError, Location, Problem};
use crate::model::{
    Config, ConsoleOutput, HrtBoot, HrtConfig, RosConfig, MAX_CMDLINE_LEN, MAX_FORWARD_SPIN_US,
    MAX_MEMORY, MAX_MODULES, MAX_MODULE_CMDLINE_LEN, MAX_VCPUS, MIN_MEMORY, MIN_VCPUS,
};

/// `1..=64`.
pub(crate) fn check_vcpus(value: i64) -> Result<u32, Problem> {
    match u32::try_from(value) {
        Ok(v) if (MIN_VCPUS..=MAX_VCPUS).contains(&v) => Ok(v),
        _ => Err(Problem::VcpusOutOfRange { value }),
    }
}

/// `0..=1_000_000` microseconds.
pub(crate) fn check_forward_spin(value: i64) -> Result<u32, Problem> {
    match u32::try_from(value) {
        Ok(v) if v <= MAX_FORWARD_SPIN_US => Ok(v),
        _ => Err(Problem::ForwardSpinOutOfRange { value }),
    }
}

/// 16 MiB to 64 GiB.
pub(crate) fn check_memory(bytes: u64) -> Result<u64, Problem> {
    if bytes < MIN_MEMORY {
        Err(Problem::MemoryTooSmall { bytes })
    } else if bytes > MAX_MEMORY {
        Err(Problem::MemoryTooLarge { bytes })
    } else {
        Ok(bytes)
    }
}

/// An input file (`what` is `kernel`, `initramfs` or `module`): exists, is
/// a regular file, is not empty (unless `allow_empty`), can be opened for
/// reading.
pub(crate) fn check_input_file(
    what: &'static str,
    path: &Path,
    allow_empty: bool,
) -> Result<(), Problem> {
    if path.as_os_str().is_empty() {
        return Err(Problem::EmptyPath { what });
    }
    let owned = || path.to_path_buf();
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Err(Problem::FileNotFound {
                what,
                path: owned(),
            })
        }
        Err(e) => {
            return Err(Problem::FileUnreadable {
                what,
                path: owned(),
                message: e.to_string(),
            })
        }
    };
    if meta.is_dir() {
        return Err(Problem::IsDirectory {
            what,
            path: owned(),
        });
    }
    if !meta.is_file() {
        return Err(Problem::NotAFile {
            what,
            path: owned(),
        });
    }
    if meta.len() == 0 && !allow_empty {
        return Err(Problem::FileEmpty {
            what,
            path: owned(),
        });
    }
    fs::File::open(path)
        .map(drop)
        .map_err(|e| Problem::FileUnreadable {
            what,
            path: owned(),
            message: e.to_string(),
        })
}

/// No NUL, newline or carriage return.
pub(crate) fn check_cmdline_chars(cmdline: &str) -> Result<(), Problem> {
    match cmdline
        .char_indices()
        .find(|(_, c)| matches!(c, '\0' | '\n' | '\r'))
    {
        Some((offset, ch)) => Err(Problem::CmdlineBadChar { ch, offset }),
        None => Ok(()),
    }
}

/// At most [`MAX_CMDLINE_LEN`] bytes.
pub(crate) fn check_cmdline_len(cmdline: &str) -> Result<(), Problem> {
    if cmdline.len() > MAX_CMDLINE_LEN {
        Err(Problem::CmdlineTooLong { len: cmdline.len() })
    } else {
        Ok(())
    }
}

/// A module command line: no NUL, newline or carriage return; at most
/// [`MAX_MODULE_CMDLINE_LEN`] bytes.
pub(crate) fn check_module_cmdline(cmdline: &str) -> Result<(), Problem> {
    if let Some((offset, ch)) = cmdline
        .char_indices()
        .find(|(_, c)| matches!(c, '\0' | '\n' | '\r'))
    {
        return Err(Problem::ModuleCmdlineBadChar { ch, offset });
    }
    if cmdline.len() > MAX_MODULE_CMDLINE_LEN {
        return Err(Problem::ModuleCmdlineTooLong { len: cmdline.len() });
    }
    Ok(())
}

/// At most [`MAX_MODULES`] modules.
pub(crate) fn check_module_count(count: usize) -> Result<(), Problem> {
    if count > MAX_MODULES {
        Err(Problem::TooManyModules { count })
    } else {
        Ok(())
    }
}

/// A `clearcpuid` entry: `[a-z0-9_]+`.
pub(crate) fn check_feature(name: &str) -> Result<(), Problem> {
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

/// The console log file: not empty, not a directory, its directory exists.
pub(crate) fn check_console_path(path: &Path) -> Result<(), Problem> {
    if path.as_os_str().is_empty() {
        return Err(Problem::EmptyPath { what: "console" });
    }
    if path.is_dir() {
        return Err(Problem::ConsolePathIsDir {
            path: path.to_path_buf(),
        });
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
            Err(Problem::ConsoleDirMissing {
                path: dir.to_path_buf(),
            })
        }
        _ => Ok(()),
    }
}

/// Resolves a path from the config file against `base` (the file's
/// directory; empty for the current directory) and makes it absolute
/// (lexically: symlinks are not resolved and the file need not exist).
pub(crate) fn resolve(base: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    };
    std::path::absolute(&joined).unwrap_or(joined)
}

/// An in-code error: no location.
fn code_err(field: &str, problem: Problem) -> ConfigError {
    ConfigError::Invalid {
        location: Location::Code,
        field: field.to_string(),
        problem: Box::new(problem),
    }
}

impl Config {
    /// Runs the same semantic checks as [`crate::load`] on a config built
    /// in code (e.g. with [`Config::from_ros`] or [`Config::from_hrt`]):
    /// at least one partition present, vCPU and memory ranges, kernel,
    /// initramfs and module files (exist, regular, readable; non-empty
    /// except modules), command lines, module count, `hrt.boot`,
    /// `hrt.forward_spin_us`, console file directory, `clearcpuid` entries.
    ///
    /// Errors carry [`Location::Code`] and so display without a location,
    /// e.g. `ros.vcpus: 0 is out of range: expected 1 to 64`. Paths are
    /// checked as they are (relative ones against the current directory).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.ros.is_none() && self.hrt.is_none() {
            return Err(code_err("ros/hrt", Problem::MissingPartition));
        }
        if let Some(ros) = &self.ros {
            validate_ros(ros)?;
        }
        if let Some(hrt) = &self.hrt {
            validate_hrt(hrt, self.ros.is_some())?;
        }
        if let ConsoleOutput::File(path) = &self.console.output {
            check_console_path(path).map_err(|p| code_err("console.path", p))?;
        }
        crate::devices::validate(&self.devices, self.ros.is_some(), code_err)?;
        if let Some(list) = &self.platform.clearcpuid {
            for (i, name) in list.iter().enumerate() {
                check_feature(name)
                    .map_err(|p| code_err(&format!("platform.clearcpuid[{i}]"), p))?;
            }
        }
        Ok(())
    }
}

fn validate_ros(ros: &RosConfig) -> Result<(), ConfigError> {
    let err = code_err;
    check_vcpus(i64::from(ros.vcpus)).map_err(|p| err("ros.vcpus", p))?;
    check_memory(ros.memory).map_err(|p| err("ros.memory", p))?;
    check_input_file("kernel", &ros.kernel, false).map_err(|p| err("ros.kernel", p))?;
    if let Some(initramfs) = &ros.initramfs {
        check_input_file("initramfs", initramfs, false).map_err(|p| err("ros.initramfs", p))?;
    }
    check_cmdline_chars(&ros.cmdline).map_err(|p| err("ros.cmdline", p))?;
    check_cmdline_len(&ros.cmdline).map_err(|p| err("ros.cmdline", p))?;
    Ok(())
}

fn validate_hrt(hrt: &HrtConfig, has_ros: bool) -> Result<(), ConfigError> {
    let err = code_err;
    check_vcpus(i64::from(hrt.vcpus)).map_err(|p| err("hrt.vcpus", p))?;
    check_memory(hrt.memory).map_err(|p| err("hrt.memory", p))?;
    check_input_file("kernel", &hrt.kernel, false).map_err(|p| err("hrt.kernel", p))?;
    check_cmdline_chars(&hrt.cmdline).map_err(|p| err("hrt.cmdline", p))?;
    check_cmdline_len(&hrt.cmdline).map_err(|p| err("hrt.cmdline", p))?;
    check_module_count(hrt.modules.len()).map_err(|p| err("hrt.modules", p))?;
    for (i, module) in hrt.modules.iter().enumerate() {
        check_input_file("module", &module.path, true)
            .map_err(|p| err(&format!("hrt.modules[{i}].path"), p))?;
        check_module_cmdline(&module.cmdline)
            .map_err(|p| err(&format!("hrt.modules[{i}].cmdline"), p))?;
    }
    if hrt.boot == HrtBoot::OnRequest && !has_ros {
        return Err(err("hrt.boot", Problem::OnRequestWithoutRos));
    }
    check_forward_spin(i64::from(hrt.forward_spin_us))
        .map_err(|p| err("hrt.forward_spin_us", p))?;
    Ok(())
}
