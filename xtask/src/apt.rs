//! Debian packages through apt: `apt-get update` at most once per xtask run, downloads,
//! extraction, package lookups.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{bail, mkdirs, run, run_stdout, Context, Result};

/// apt access for one xtask run.
pub struct Apt {
    /// Exists once `apt-get update` ran in this xtask run (also honoured by
    /// build-test-kernel.sh through DUET_APT_STAMP).
    stamp: PathBuf,
}

impl Apt {
    /// A fresh per-run state.
    pub fn new() -> Self {
        let stamp = std::env::temp_dir().join(format!("duet-xtask-apt-updated-{}", std::process::id()));
        let _ = std::fs::remove_file(&stamp);
        Apt { stamp }
    }

    /// The stamp file to hand to build-test-kernel.sh (DUET_APT_STAMP).
    pub fn stamp(&self) -> &Path {
        &self.stamp
    }

    fn root_cmd(program: &str) -> Command {
        if is_root() {
            Command::new(program)
        } else {
            let mut c = Command::new("sudo");
            c.arg("-n").arg(program);
            c
        }
    }

    /// Runs `apt-get update` unless it already ran in this xtask run.
    pub fn update(&mut self) -> Result<()> {
        if self.stamp.exists() {
            return Ok(());
        }
        eprintln!("xtask: apt-get update");
        run(Self::root_cmd("apt-get").args(["update", "-q"]))
            .ctx(|| "updating apt's package lists (needs root or password-less sudo)".to_string())?;
        std::fs::write(&self.stamp, b"").ctx(|| format!("writing {}", self.stamp.display()))
    }

    /// Makes sure `program` is on PATH, installing Debian package `pkg` (root or sudo) if it is not.
    pub fn ensure_program(&mut self, program: &str, pkg: &str) -> Result<()> {
        if Command::new("sh").args(["-c", &format!("command -v {program}")]).output().is_ok_and(|o| o.status.success()) {
            return Ok(());
        }
        self.update()?;
        eprintln!("xtask: apt-get install {pkg} (for {program})");
        run(Self::root_cmd("apt-get").args(["install", "-y", "-q", "--no-install-recommends", pkg]).env("DEBIAN_FRONTEND", "noninteractive"))
            .ctx(|| format!("installing {pkg}"))?;
        Ok(())
    }

    /// Downloads the .deb of `pkg` into `dir` (no root needed) and returns its path.
    pub fn download(&mut self, pkg: &str, dir: &Path) -> Result<PathBuf> {
        self.update()?;
        mkdirs(dir)?;
        eprintln!("xtask: apt-get download {pkg}");
        run(Command::new("apt-get").args(["download", "-q", pkg]).current_dir(dir))?;
        match find_deb(dir, pkg)? {
            Some(deb) => Ok(deb),
            None => bail!("apt-get download {pkg} left no {pkg}_*.deb in {}", dir.display()),
        }
    }
}

impl Drop for Apt {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.stamp);
    }
}

/// Whether we run as root (from /proc/self/status; no libc needed).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// A `<pkg>_*.deb` in `dir`, if any (the newest by name if several).
pub fn find_deb(dir: &Path, pkg: &str) -> Result<Option<PathBuf>> {
    if !dir.exists() {
        return Ok(None);
    }
    let prefix = format!("{pkg}_");
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ctx(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .collect();
    found.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
    Ok(found.pop())
}

/// Extracts a .deb's files into `dir` (which is emptied first).
pub fn extract(deb: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).ctx(|| format!("removing {}", dir.display()))?;
    }
    mkdirs(dir)?;
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(dir)).map(|_| ())
}

/// The version field of a .deb.
pub fn deb_version(deb: &Path) -> Result<String> {
    Ok(run_stdout(Command::new("dpkg-deb").args(["-f"]).arg(deb).arg("Version"))?.trim().to_string())
}

/// Whether apt knows a package of exactly this name.
pub fn package_exists(pkg: &str) -> bool {
    Command::new("apt-cache")
        .args(["show", "--no-all-versions", pkg])
        .output()
        .map(|o| o.status.success() && !o.stdout.is_empty())
        .unwrap_or(false)
}

/// Orders strings with embedded numbers numerically ("6.1.0-9" < "6.1.0-10"), like `sort -V`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let na = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let nb = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (da, db) = (&a[..na], &b[..nb]);
                let strip = |d: &[u8]| -> usize { d.iter().take_while(|&&c| c == b'0').count() };
                let (ta, tb) = (&da[strip(da)..], &db[strip(db)..]);
                let ord = ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[na..];
                b = &b[nb..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::natural_cmp;
    use std::cmp::Ordering;

    #[test]
    fn natural_order() {
        assert_eq!(natural_cmp("linux-image-6.1.0-9-cloud", "linux-image-6.1.0-10-cloud"), Ordering::Less);
        assert_eq!(natural_cmp("a10", "a9"), Ordering::Greater);
        assert_eq!(natural_cmp("a010", "a10"), Ordering::Equal);
        assert_eq!(natural_cmp("6.1", "6.1.0"), Ordering::Less);
    }
}
