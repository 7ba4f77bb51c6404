//! Guest kernels: duet's lean test kernel (built once per machine, cached) and Debian's cloud
//! kernel (downloaded once per machine, cached).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::apt::{self, Apt};
use crate::modules;
use crate::util::{bail, cache_dir, copy, fnv1a64, mkdirs, read, repo_root, run_logged, run_stdout, write_atomic, Context, Result};

/// The cache key of the test kernel: FNV-1a 64 of the config fragment and the build script.
pub fn test_kernel_key() -> Result<String> {
    let dir = repo_root().join("guests/linux");
    let config = read(&dir.join("duet-test.config"))?;
    let script = read(&dir.join("build-test-kernel.sh"))?;
    let patch = read(&dir.join("pvm-syscall-shim.patch"))?;
    Ok(format!("{:016x}", fnv1a64(&[&config, &script, &patch])))
}

/// `${XDG_CACHE_HOME:-~/.cache}/duet/kernel-test`.
pub fn test_kernel_cache() -> Result<PathBuf> {
    Ok(cache_dir()?.join("kernel-test"))
}

/// Makes sure the cached test kernel is current (building it if not) and copies `vmlinux-test`
/// and `bzImage-test` into `out`.
pub fn test_kernel(apt: &mut Apt, out: &Path) -> Result<Vec<PathBuf>> {
    let cache = test_kernel_cache()?;
    let key = test_kernel_key()?;
    let key_file = cache.join("key");
    let have = std::fs::read_to_string(&key_file).unwrap_or_default();
    let built = cache.join("vmlinux").exists() && cache.join("bzImage").exists();
    if have.trim() != key || !built {
        mkdirs(&cache)?;
        let log = cache.join("build.log");
        let why = if !built { "not built yet" } else { "guests/linux changed" };
        eprintln!(
            "xtask: building the test kernel in {} ({why}; cold: ~5 min with 2 cores; log: {})",
            cache.display(),
            log.display()
        );
        let start = Instant::now();
        let _ = std::fs::remove_file(&key_file);
        let script = repo_root().join("guests/linux/build-test-kernel.sh");
        run_logged(Command::new("bash").arg(&script).arg(&cache).env("DUET_APT_STAMP", apt.stamp()), &log)
            .ctx(|| "building the test kernel".to_string())?;
        for f in ["vmlinux", "bzImage"] {
            if !cache.join(f).exists() {
                bail!("{} finished but left no {f} in {}", script.display(), cache.display());
            }
        }
        write_atomic(&key_file, format!("{key}\n").as_bytes())?;
        eprintln!("xtask: test kernel built in {:.0?}", start.elapsed());
    }
    let mut done = Vec::new();
    for (from, to) in [("vmlinux", "vmlinux-test"), ("bzImage", "bzImage-test"), ("config", "config-test")] {
        let src = cache.join(from);
        if from == "config" && !src.exists() {
            continue;
        }
        copy(&src, &out.join(to))?;
        done.push(out.join(to));
    }
    Ok(done)
}

/// The name of the current `linux-image-*-cloud-amd64-unsigned` package.
fn resolve_cloud_package() -> Result<String> {
    let deps = run_stdout(Command::new("apt-cache").args(["depends", "linux-image-cloud-amd64"]))
        .ctx(|| "looking up Debian's cloud kernel (is this Debian, with main in the apt sources?)".to_string())?;
    for line in deps.lines() {
        let Some(dep) = line.trim().strip_prefix("Depends:") else { continue };
        let dep = dep.trim().trim_start_matches('<').trim_end_matches('>');
        if dep.starts_with("linux-image-") && dep.ends_with("-cloud-amd64") {
            let unsigned = format!("{dep}-unsigned");
            if apt::package_exists(&unsigned) {
                return Ok(unsigned);
            }
        }
    }
    let found = run_stdout(Command::new("apt-cache").args([
        "search",
        "--names-only",
        "^linux-image-[0-9.+a-z-]*-cloud-amd64-unsigned$",
    ]))?;
    let mut names: Vec<&str> = found.lines().filter_map(|l| l.split_whitespace().next()).collect();
    names.sort_by(|a, b| apt::natural_cmp(a, b));
    match names.last() {
        Some(n) => Ok((*n).to_string()),
        None => bail!("apt knows no linux-image-*-cloud-amd64-unsigned package (Debian main needed)"),
    }
}

/// A cached cloud kernel .deb, if any (the newest by name).
fn cached_cloud_deb(dir: &Path) -> Result<Option<PathBuf>> {
    if !dir.exists() {
        return Ok(None);
    }
    let mut debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ctx(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("linux-image-") && n.contains("-cloud-amd64-unsigned_") && n.ends_with(".deb")
            })
        })
        .collect();
    debs.sort_by(|a, b| apt::natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
    Ok(debs.pop())
}

/// Where, in the images directory, the cloud kernel's modules go: `<release>/` holding the modules
/// duet's guests need ([`modules::WANTED`] and their dependencies) and `modules.builtin`.
pub const CLOUD_MODULES: &str = "cloud-modules";

/// Debian's cloud kernel as `out/vmlinuz-cloud`, with `out/cloud-version` naming the package and
/// the modules the guest needs in `out/cloud-modules/<release>/`. Skipped when all three are present;
/// the .deb stays in `~/.cache/duet/cloud` (delete it there to pick up a newer kernel).
pub fn cloud_kernel(apt: &mut Apt, out: &Path) -> Result<Vec<PathBuf>> {
    let vmlinuz = out.join("vmlinuz-cloud");
    let version = out.join("cloud-version");
    let mods = out.join(CLOUD_MODULES);
    if vmlinuz.exists() && version.exists() && mods.is_dir() {
        return Ok(vec![vmlinuz, version]);
    }
    let cache = cache_dir()?.join("cloud");
    let deb = match cached_cloud_deb(&cache)? {
        Some(deb) => deb,
        None => {
            apt.update()?;
            let pkg = resolve_cloud_package()?;
            apt.download(&pkg, &cache)?
        }
    };
    let pkg = deb
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('_').next())
        .unwrap_or("?")
        .to_string();
    let ver = apt::deb_version(&deb)?;
    let extract = cache.join("extract");
    apt::extract(&deb, &extract)?;
    let boot = extract.join("boot");
    let image = std::fs::read_dir(&boot)
        .ctx(|| format!("listing {} (from {})", boot.display(), deb.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")));
    let Some(image) = image else {
        bail!("{} has no boot/vmlinuz-*", deb.display());
    };
    copy(&image, &vmlinuz)?;
    // The modules: only the ones the guest loads (the package has ~90 MB of them).
    let (release, dir) = modules::release_dir(&extract.join("lib/modules"))
        .ctx(|| format!("finding the modules of {}", deb.display()))?;
    let set = modules::resolve(&dir, &release, modules::WANTED)
        .ctx(|| format!("resolving the guest's modules in {}", deb.display()))?;
    let tmp = out.join(format!("{CLOUD_MODULES}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).ctx(|| format!("removing {}", tmp.display()))?;
    }
    for m in &set.modules {
        let dest = tmp.join(&release).join(&m.rel);
        if let Some(parent) = dest.parent() {
            mkdirs(parent)?;
        }
        write_atomic(&dest, &m.data)?;
    }
    mkdirs(&tmp.join(&release))?;
    copy(&dir.join("modules.builtin"), &tmp.join(&release).join("modules.builtin"))?;
    if mods.exists() {
        std::fs::remove_dir_all(&mods).ctx(|| format!("removing {}", mods.display()))?;
    }
    std::fs::rename(&tmp, &mods).ctx(|| format!("renaming {} to {}", tmp.display(), mods.display()))?;
    let image_name = image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    write_atomic(&version, format!("{pkg} {ver} {image_name}\n").as_bytes())?;
    std::fs::remove_dir_all(&extract).ctx(|| format!("removing {}", extract.display()))?;
    Ok(vec![vmlinuz, version])
}
