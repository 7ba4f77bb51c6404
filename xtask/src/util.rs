//! Small helpers: an error type with context, running commands, paths, hashing, ELF checks.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// An error: a message with its context, outermost first.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// xtask's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds context to errors.
pub trait Context<T> {
    /// Prefixes the error with `what` (e.g. "reading /x").
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: fmt::Display> Context<T> for std::result::Result<T, E> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error(format!("{}: {e}", what())))
    }
}

/// Returns an `Error` built from a format string.
macro_rules! bail {
    ($($t:tt)*) => { return Err($crate::util::Error(format!($($t)*))) };
}
pub(crate) use bail;

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` with captured output; fails with the command line and its stderr tail unless it
/// exits with status 0.
pub fn run(cmd: &mut Command) -> Result<Output> {
    let what = describe(cmd);
    let out = cmd.stdin(Stdio::null()).output().ctx(|| format!("cannot run `{what}`"))?;
    if !out.status.success() {
        let mut msg = tail(&String::from_utf8_lossy(&out.stderr), 30);
        if msg.trim().is_empty() {
            msg = tail(&String::from_utf8_lossy(&out.stdout), 30);
        }
        bail!("`{what}` failed ({}):\n{msg}", out.status);
    }
    Ok(out)
}

/// Runs `cmd` and returns its stdout as text.
pub fn run_stdout(cmd: &mut Command) -> Result<String> {
    Ok(String::from_utf8_lossy(&run(cmd)?.stdout).into_owned())
}

/// Runs `cmd` with stdout and stderr appended to `log`; on failure shows the log's tail.
pub fn run_logged(cmd: &mut Command, log: &Path) -> Result<()> {
    let what = describe(cmd);
    let file = std::fs::File::create(log).ctx(|| format!("creating {}", log.display()))?;
    let file2 = file.try_clone().ctx(|| format!("duplicating {}", log.display()))?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(file2)
        .status()
        .ctx(|| format!("cannot run `{what}`"))?;
    if !status.success() {
        let text = std::fs::read(log).unwrap_or_default();
        bail!(
            "`{what}` failed ({status}); last lines of {}:\n{}",
            log.display(),
            tail(&String::from_utf8_lossy(&text), 40)
        );
    }
    Ok(())
}

/// The repository root (the parent of xtask/).
pub fn repo_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// `${XDG_CACHE_HOME:-$HOME/.cache}/duet`.
pub fn cache_dir() -> Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("duet"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".cache").join("duet")),
        None => bail!("neither XDG_CACHE_HOME nor HOME is set: no place for duet's cache"),
    }
}

/// Creates a directory and its parents.
pub fn mkdirs(p: &Path) -> Result<()> {
    std::fs::create_dir_all(p).ctx(|| format!("creating {}", p.display()))
}

/// Reads a file.
pub fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).ctx(|| format!("reading {}", p.display()))
}

/// Writes a file through a temporary name, so that a reader never sees half of it.
pub fn write_atomic(p: &Path, data: &[u8]) -> Result<()> {
    let tmp = p.with_extension("tmp~");
    std::fs::write(&tmp, data).ctx(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, p).ctx(|| format!("renaming {} to {}", tmp.display(), p.display()))
}

/// Copies `from` to `to` (through a temporary name).
pub fn copy(from: &Path, to: &Path) -> Result<()> {
    let tmp = to.with_extension("tmp~");
    std::fs::copy(from, &tmp).ctx(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    std::fs::rename(&tmp, to).ctx(|| format!("renaming {} to {}", tmp.display(), to.display()))
}

/// FNV-1a, 64 bits.
pub fn fnv1a64(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separate the parts, so that moving bytes from one to the next changes the hash.
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Whether `data` is a 64-bit little-endian x86-64 ELF executable without a program
/// interpreter (PT_INTERP), i.e. one that runs without a dynamic loader.
pub fn is_static_elf(data: &[u8]) -> bool {
    let u16_at = |o: usize| data.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| data.get(o..o + 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |o: usize| {
        data.get(o..o + 8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    };
    // e_ident: magic, ELFCLASS64, ELFDATA2LSB; e_machine EM_X86_64 (62).
    if data.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) || u16_at(18) != Some(62) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(32), u16_at(54), u16_at(56)) else {
        return false;
    };
    if phentsize < 4 {
        return false;
    }
    for i in 0..usize::from(phnum) {
        let Some(o) = usize::try_from(phoff).ok().and_then(|p| p.checked_add(i * usize::from(phentsize))) else {
            return false;
        };
        match u32_at(o) {
            Some(3) => return false, // PT_INTERP
            Some(_) => {}
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_value() {
        // FNV-1a 64 of "a" is af63dc4c8601ec8c; our part separator then mixes in one more byte.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        h ^= u64::from(b'a');
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        assert_eq!(h, 0xaf63_dc4c_8601_ec8c);
        assert_ne!(fnv1a64(&[b"ab", b"c"]), fnv1a64(&[b"a", b"bc"]));
    }

    #[test]
    fn elf_checks() {
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        // The running test binary is dynamically linked (std tests are, on the gnu target).
        if let Ok(exe) = std::env::current_exe().and_then(std::fs::read) {
            assert!(!is_static_elf(&exe));
        }
        // A minimal static ELF header with no program headers.
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        elf[18] = 62;
        elf[54] = 56;
        assert!(is_static_elf(&elf));
        // One PT_INTERP program header.
        elf[32] = 64;
        elf[56] = 1;
        elf.extend_from_slice(&[3, 0, 0, 0]);
        elf.resize(64 + 56, 0);
        assert!(!is_static_elf(&elf));
    }
}
