//! `cargo xtask images`: guest images in `<repo>/target/guest-images/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::apt::{self, Apt};
use crate::cpio;
use crate::kernel;
use crate::modules;
use crate::util::{bail, cache_dir, copy, is_static_elf, mkdirs, read, repo_root, run, run_stdout, write_atomic, Context, Result};

/// Where the images go.
pub fn images_dir() -> PathBuf {
    repo_root().join("target/guest-images")
}

/// Prepares every image; returns the paths.
pub fn images(cloud: bool) -> Result<Vec<PathBuf>> {
    let out = images_dir();
    mkdirs(&out)?;
    let mut apt = Apt::new();
    let mut done = Vec::new();
    let init = ros_init(&out)?;
    done.push(init.clone());
    let hvm = ros_tool(&out)?;
    done.push(hvm.clone());
    let hrt = hrt(&out)?;
    // Our HRT must be a Multiboot2 kernel by GRUB's own test, not only by duet's loader.
    apt.ensure_program("grub-file", "grub-common")?;
    run(Command::new("grub-file").arg("--is-x86-multiboot2").arg(&hrt))
        .ctx(|| format!("{} is not a Multiboot2 kernel according to grub-file", hrt.display()))?;
    done.push(hrt);
    let busybox = busybox(&mut apt)?;
    let base = Base { init, hvm, busybox };
    done.extend(kernel::test_kernel(&mut apt, &out)?);
    let mods = kernel_modules(&kernel::test_kernel_cache()?.join("modules"))?;
    done.push(initramfs(&base, &mods, &out.join("initramfs.cpio"))?);
    if cloud {
        done.extend(kernel::cloud_kernel(&mut apt, &out)?);
        let mods = kernel_modules(&out.join(kernel::CLOUD_MODULES))?;
        done.push(initramfs(&base, &mods, &out.join("initramfs-cloud.cpio"))?);
    }
    Ok(done)
}

/// The programs every initramfs carries.
pub struct Base {
    /// ros-init, as /init.
    pub init: PathBuf,
    /// The `hvm` tool, as /bin/hvm.
    pub hvm: PathBuf,
    /// A static busybox, as /bin/busybox with its applets.
    pub busybox: PathBuf,
}

/// [`modules::WANTED`] resolved in `lib_modules` (a directory holding one `<release>/` tree).
pub fn kernel_modules(lib_modules: &Path) -> Result<modules::ModuleSet> {
    let (release, dir) = modules::release_dir(lib_modules)?;
    let set = modules::resolve(&dir, &release, modules::WANTED)
        .ctx(|| format!("resolving the guest's kernel modules for {release}"))?;
    eprintln!(
        "xtask: {} modules for {release}: {}{}",
        set.modules.len(),
        set.modules.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(" "),
        if set.builtin.is_empty() { String::new() } else { format!(" (built in: {})", set.builtin.join(" ")) }
    );
    Ok(set)
}

/// Builds the guest program `guests/<name>` (release, its own target dir) and returns the path of its
/// binary `bin`.
fn build_guest(name: &str, bin: &str) -> Result<PathBuf> {
    let dir = repo_root().join("guests").join(name);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--quiet", "--target", "x86_64-unknown-linux-gnu", "--target-dir"])
        .arg(dir.join("target"))
        .arg("--manifest-path")
        .arg(dir.join("Cargo.toml"))
        .current_dir(&dir)
        // Our environment comes from `cargo run`: keep its flags from replacing the ones the guest's own
        // .cargo/config.toml asks for (static linking; for the HRT also no SSE and its linker script).
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("CARGO_TARGET_DIR");
    run(&mut cmd).ctx(|| format!("building guests/{name}"))?;
    Ok(dir.join("target/x86_64-unknown-linux-gnu/release").join(bin))
}

/// Builds guests/ros-init (static, release) and copies it to `out/ros-init`.
pub fn ros_init(out: &Path) -> Result<PathBuf> {
    static_guest("ros-init", "ros-init", out)
}

/// Builds guests/ros-tool (the `hvm` hypercall tool: static, release) and copies it to `out/hvm`.
pub fn ros_tool(out: &Path) -> Result<PathBuf> {
    static_guest("ros-tool", "hvm", out)
}

/// Builds a static guest program and copies its binary `bin` to `out/<bin>`.
fn static_guest(name: &str, bin: &str, out: &Path) -> Result<PathBuf> {
    let built = build_guest(name, bin)?;
    if !is_static_elf(&read(&built)?) {
        bail!("{} is not a static x86-64 ELF (crt-static not applied?)", built.display());
    }
    let dest = out.join(bin);
    copy(&built, &dest)?;
    Ok(dest)
}

/// Builds guests/hrt (duet's Multiboot2 kernel, release) and copies it to `out/hrt.elf`.
pub fn hrt(out: &Path) -> Result<PathBuf> {
    let dest = out.join("hrt.elf");
    copy(&build_guest("hrt", "hrt")?, &dest)?;
    Ok(dest)
}

/// A static busybox: /bin/busybox if it is one, else Debian's busybox-static, downloaded and
/// unpacked into `~/.cache/duet/busybox` (the host's packages stay as they are).
pub fn busybox(apt: &mut Apt) -> Result<PathBuf> {
    let host = PathBuf::from("/bin/busybox");
    if std::fs::read(&host).is_ok_and(|d| is_static_elf(&d)) {
        return Ok(host);
    }
    let cache = cache_dir()?.join("busybox");
    let unpacked = cache.join("root/bin/busybox");
    if std::fs::read(&unpacked).is_ok_and(|d| is_static_elf(&d)) {
        return Ok(unpacked);
    }
    eprintln!("xtask: /bin/busybox is missing or not static: fetching Debian's busybox-static");
    let deb = match apt::find_deb(&cache, "busybox-static")? {
        Some(deb) => deb,
        None => apt.download("busybox-static", &cache)?,
    };
    apt::extract(&deb, &cache.join("root"))?;
    if !std::fs::read(&unpacked).is_ok_and(|d| is_static_elf(&d)) {
        bail!("{} (from {}) is missing or not a static x86-64 ELF", unpacked.display(), deb.display());
    }
    Ok(unpacked)
}

/// The applets of a busybox binary (`busybox --list`).
fn applets(busybox: &Path) -> Result<Vec<String>> {
    let list = run_stdout(Command::new(busybox).arg("--list"))?;
    let mut names: Vec<String> = list
        .lines()
        .map(str::trim)
        .filter(|n| !n.is_empty() && *n != "busybox" && !n.contains('/') && !n.starts_with('.'))
        .map(String::from)
        .collect();
    names.sort();
    names.dedup();
    for need in ["sh", "ls", "cat", "echo", "mount", "poweroff"] {
        if !names.iter().any(|n| n == need) {
            bail!("{} has no `{need}` applet", busybox.display());
        }
    }
    Ok(names)
}

/// Writes the initramfs: /init (ros-init), the usual directories, /dev/console and /dev/null,
/// /bin/hvm (the hypercall tool), /bin/busybox and a /bin/<applet> → busybox link per applet, and the
/// kernel modules under /lib/modules/<release>/ with the list ros-init loads
/// ([`modules::LIST`]).
pub fn initramfs(base: &Base, mods: &modules::ModuleSet, dest: &Path) -> Result<PathBuf> {
    let init_data = read(&base.init)?;
    let hvm_data = read(&base.hvm)?;
    let busybox_data = read(&base.busybox)?;
    let applets = applets(&base.busybox)?;
    let mut w =
        cpio::Writer::new(Vec::with_capacity(init_data.len() + hvm_data.len() + busybox_data.len() + 64 * 1024));
    let build = |w: &mut cpio::Writer<Vec<u8>>| -> std::io::Result<()> {
        for d in ["dev", "proc", "sys", "tmp", "bin", "sbin", "usr", "usr/bin", "usr/sbin", "root", "etc"] {
            w.dir(d, if d == "tmp" { 0o1777 } else if d == "root" { 0o700 } else { 0o755 })?;
        }
        w.char_dev("dev/console", 0o600, 5, 1)?;
        w.char_dev("dev/null", 0o666, 1, 3)?;
        w.file("init", 0o755, &init_data)?;
        w.file("bin/hvm", 0o755, &hvm_data)?;
        w.file("bin/busybox", 0o755, &busybox_data)?;
        for a in &applets {
            w.symlink(&format!("bin/{a}"), "busybox")?;
        }
        {
            let set = mods;
            let top = format!("lib/modules/{}", set.release);
            let mut dirs = std::collections::BTreeSet::new();
            for m in &set.modules {
                let mut at = Path::new(&m.rel).parent();
                while let Some(d) = at.filter(|d| !d.as_os_str().is_empty()) {
                    dirs.insert(format!("{top}/{}", d.display()));
                    at = d.parent();
                }
            }
            for d in ["lib", "lib/modules", top.as_str()].into_iter().chain(dirs.iter().map(String::as_str)) {
                w.dir(d, 0o755)?;
            }
            for m in &set.modules {
                w.file(&format!("{top}/{}", m.rel), 0o644, &m.data)?;
            }
            w.file(&format!("{top}/{}", modules::LIST), 0o644, set.list().as_bytes())?;
        }
        Ok(())
    };
    build(&mut w).ctx(|| format!("writing {}", dest.display()))?;
    let data = w.finish().ctx(|| format!("writing {}", dest.display()))?;
    write_atomic(dest, &data)?;
    Ok(dest.to_path_buf())
}
