//! Kernel modules for the initramfs: the drivers a kernel needs for duet's devices, with everything
//! they depend on, in load order.
//!
//! Debian's kernels build the virtio drivers as modules (so does duet's test kernel, on purpose: every
//! test boot then loads them the same way). The package ships no `modules.dep` (its postinst runs
//! depmod), so the dependencies come from each module's own `.modinfo` section (`depends=`), the data
//! depmod itself reads. `ros-init` loads the list written here with `finit_module`, dependencies first,
//! passing each module the `<module>.<param>=` words of the kernel command line, as kmod's modprobe does.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{bail, read, run, Context, Result};

/// The modules duet's guests need: the virtio-mmio transport, virtio-blk, virtio-net, virtio-vsock,
/// and ext4 (built in on Debian's and duet's kernels, which is fine: a wanted module may be built in).
pub const WANTED: &[&str] = &["virtio_mmio", "virtio_blk", "virtio_net", "vmw_vsock_virtio_transport", "ext4"];

/// The file, in `/lib/modules/<release>/`, that lists the modules to load, one path (relative to that
/// directory) per line, in load order. Read by ros-init.
pub const LIST: &str = "duet-modules";

/// One module to load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    /// Its name, `-` written `_` (`vmw_vsock_virtio_transport`).
    pub name: String,
    /// Its path relative to `/lib/modules/<release>/`, always ending in `.ko` (decompressed).
    pub rel: String,
    /// The ELF object.
    pub data: Vec<u8>,
}

/// A resolved set of modules for one kernel release.
#[derive(Debug, Clone)]
pub struct ModuleSet {
    /// The kernel release (`uname -r`) the modules are for.
    pub release: String,
    /// The modules in load order: every module after the ones it depends on.
    pub modules: Vec<Module>,
    /// Wanted modules that are built into the kernel (nothing to load).
    pub builtin: Vec<String>,
}

impl ModuleSet {
    /// The contents of the [`LIST`] file.
    pub fn list(&self) -> String {
        let mut s = format!(
            "# Modules ros-init loads at boot, in this order (written by `cargo xtask images`).\n\
             # Built in, nothing to load: {}\n",
            if self.builtin.is_empty() { "-".to_string() } else { self.builtin.join(" ") }
        );
        for m in &self.modules {
            s.push_str(&m.rel);
            s.push('\n');
        }
        s
    }
}

/// A module's name as the kernel knows it: the file name without `.ko[.xz|.zst|.gz]`, `-` as `_`.
pub fn module_name(file: &str) -> Option<String> {
    let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"].iter().find_map(|ext| file.strip_suffix(ext))?;
    (!stem.is_empty()).then(|| stem.replace('-', "_"))
}

/// The single release directory under `lib_modules` (an unpacked package's `lib/modules`).
pub fn release_dir(lib_modules: &Path) -> Result<(String, PathBuf)> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(lib_modules).ctx(|| format!("listing {}", lib_modules.display()))? {
        let e = e.ctx(|| format!("listing {}", lib_modules.display()))?;
        if e.path().join("kernel").is_dir() {
            found.push((e.file_name().to_string_lossy().into_owned(), e.path()));
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("{} has no <release>/kernel directory", lib_modules.display()),
        _ => bail!("{} has modules for {} releases; expected one", lib_modules.display(), found.len()),
    }
}

/// Resolves `wanted` in `dir` (a `lib/modules/<release>` tree) for kernel `release`: each wanted
/// module and its dependencies, transitively, in load order. A wanted module may be built in (listed in
/// `modules.builtin`); a missing one, a dependency cycle, or a module built for another release is an
/// error naming it.
pub fn resolve(dir: &Path, release: &str, wanted: &[&str]) -> Result<ModuleSet> {
    let mut files = BTreeMap::new();
    index(dir, &dir.join("kernel"), &mut files)?;
    let builtin: BTreeSet<String> = match std::fs::read_to_string(dir.join("modules.builtin")) {
        Ok(text) => text.lines().filter_map(|l| module_name(l.rsplit('/').next()?)).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
        Err(e) => bail!("reading {}: {e}", dir.join("modules.builtin").display()),
    };
    let mut r = Resolver { dir, release, files, builtin, done: BTreeMap::new(), set: ModuleSet {
        release: release.to_string(),
        modules: Vec::new(),
        builtin: Vec::new(),
    } };
    for w in wanted {
        let name = w.replace('-', "_");
        if r.set.builtin.contains(&name) || r.done.contains_key(&name) {
            continue;
        }
        if r.builtin.contains(&name) && !r.files.contains_key(&name) {
            r.set.builtin.push(name);
            continue;
        }
        r.visit(&name, &mut Vec::new())?;
    }
    Ok(r.set)
}

struct Resolver<'a> {
    dir: &'a Path,
    release: &'a str,
    /// Module name → path relative to `dir`.
    files: BTreeMap<String, String>,
    builtin: BTreeSet<String>,
    /// Visited: `true` once loaded into `set`.
    done: BTreeMap<String, bool>,
    set: ModuleSet,
}

impl Resolver<'_> {
    fn visit(&mut self, name: &str, path: &mut Vec<String>) -> Result<()> {
        match self.done.get(name) {
            Some(true) => return Ok(()),
            Some(false) => {
                path.push(name.to_string());
                bail!("module dependency cycle: {}", path.join(" -> "));
            }
            None => {}
        }
        let Some(rel) = self.files.get(name).cloned() else {
            if self.builtin.contains(name) {
                return Ok(()); // a dependency built into the kernel
            }
            let via = if path.is_empty() { String::new() } else { format!(" (needed by {})", path.join(" -> ")) };
            bail!("module {name}{via} is neither in {} nor in its modules.builtin", self.dir.join("kernel").display());
        };
        self.done.insert(name.to_string(), false);
        let file = self.dir.join(&rel);
        let data = load(&file)?;
        let info = modinfo(&data).ctx(|| format!("reading {}", file.display()))?;
        let vermagic = info.get("vermagic").map(String::as_str).unwrap_or("");
        if vermagic.split_whitespace().next() != Some(self.release) {
            bail!("{} is built for kernel {vermagic:?}, not {}", file.display(), self.release);
        }
        let deps: Vec<String> = info
            .get("depends")
            .map(|d| d.split(',').map(str::trim).filter(|d| !d.is_empty()).map(|d| d.replace('-', "_")).collect())
            .unwrap_or_default();
        path.push(name.to_string());
        for d in &deps {
            self.visit(d, path)?;
        }
        path.pop();
        let rel = match rel.rsplit_once(".ko") {
            Some((stem, _)) => format!("{stem}.ko"),
            None => rel,
        };
        self.set.modules.push(Module { name: name.to_string(), rel, data });
        self.done.insert(name.to_string(), true);
        Ok(())
    }
}

/// Adds every module file under `at` to `files` (name → path relative to `root`).
fn index(root: &Path, at: &Path, files: &mut BTreeMap<String, String>) -> Result<()> {
    for e in std::fs::read_dir(at).ctx(|| format!("listing {}", at.display()))? {
        let e = e.ctx(|| format!("listing {}", at.display()))?;
        let p = e.path();
        if e.file_type().ctx(|| format!("reading {}", p.display()))?.is_dir() {
            index(root, &p, files)?;
        } else if let Some(name) = p.file_name().and_then(|n| n.to_str()).and_then(module_name) {
            let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().into_owned();
            files.insert(name, rel);
        }
    }
    Ok(())
}

/// A module file's ELF bytes, decompressed with `xz`, `zstd` or `gzip` when it is compressed.
fn load(file: &Path) -> Result<Vec<u8>> {
    let name = file.to_string_lossy();
    let tool = [(".ko.xz", "xz"), (".ko.zst", "zstd"), (".ko.gz", "gzip")]
        .into_iter()
        .find(|(ext, _)| name.ends_with(ext))
        .map(|(_, tool)| tool);
    match tool {
        None => read(file),
        Some(tool) => Ok(run(Command::new(tool).arg("-dc").arg(file))
            .ctx(|| format!("decompressing {} (is `{tool}` installed?)", file.display()))?
            .stdout),
    }
}

/// The `key=value` strings of an ELF64 object's `.modinfo` section (later keys win; `depends` and
/// `vermagic` appear once).
pub fn modinfo(elf: &[u8]) -> Result<BTreeMap<String, String>> {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |o: usize| elf.get(o..o + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    let u64_at = |o: usize| elf.get(o..o + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        bail!("not a little-endian ELF64 object");
    }
    let bad = || crate::util::Error("truncated or malformed ELF section headers".to_string());
    let shoff = usize::try_from(u64_at(0x28).ok_or_else(bad)?).map_err(|_| bad())?;
    let (shentsize, shnum, shstrndx) =
        (u16_at(0x3a).ok_or_else(bad)?, u16_at(0x3c).ok_or_else(bad)?, u16_at(0x3e).ok_or_else(bad)?);
    if shentsize < 0x40 {
        return Err(bad());
    }
    let section = |i: usize| -> Result<(u32, &[u8])> {
        let h = shoff.checked_add(i.checked_mul(shentsize).ok_or_else(bad)?).ok_or_else(bad)?;
        let name = u32_at(h).ok_or_else(bad)?;
        let off = usize::try_from(u64_at(h + 0x18).ok_or_else(bad)?).map_err(|_| bad())?;
        let size = usize::try_from(u64_at(h + 0x20).ok_or_else(bad)?).map_err(|_| bad())?;
        let data = elf.get(off..off.checked_add(size).ok_or_else(bad)?).ok_or_else(bad)?;
        Ok((name, data))
    };
    let (_, strtab) = section(shstrndx)?;
    for i in 0..shnum {
        let (name, data) = section(i)?;
        let name = strtab.get(name as usize..).unwrap_or(&[]);
        if name.split(|&b| b == 0).next() == Some(&b".modinfo"[..]) {
            return Ok(data
                .split(|&b| b == 0)
                .filter_map(|kv| {
                    let kv = std::str::from_utf8(kv).ok()?;
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_string(), v.to_string()))
                })
                .collect());
        }
    }
    bail!("no .modinfo section (not a kernel module)")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    /// A minimal ELF64 object with a `.modinfo` section holding `info` (NUL-separated).
    pub fn fake_ko(info: &[&str]) -> Vec<u8> {
        let mut modinfo = Vec::new();
        for kv in info {
            modinfo.extend_from_slice(kv.as_bytes());
            modinfo.push(0);
        }
        let strtab = b"\0.modinfo\0.shstrtab\0";
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1]);
        let modinfo_off = elf.len();
        elf.extend_from_slice(&modinfo);
        let strtab_off = elf.len();
        elf.extend_from_slice(strtab);
        let shoff = elf.len();
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        for (name, off, size) in [(0u32, 0usize, 0usize), (1, modinfo_off, modinfo.len()), (10, strtab_off, strtab.len())] {
            let mut h = [0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[0x18..0x20].copy_from_slice(&(off as u64).to_le_bytes());
            h[0x20..0x28].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&h);
        }
        elf
    }

    fn tree(mods: &[(&str, &str, &str)], builtin: &[&str]) -> tempdir::Dir {
        let d = tempdir::Dir::new("modules");
        for (path, vermagic, depends) in mods {
            let p = d.0.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let v = format!("vermagic={vermagic} SMP mod_unload ");
            let dep = format!("depends={depends}");
            std::fs::write(&p, fake_ko(&["license=GPL", &dep, &v])).unwrap();
        }
        std::fs::write(d.0.join("modules.builtin"), builtin.iter().map(|b| format!("{b}\n")).collect::<String>())
            .unwrap();
        d
    }

    mod tempdir {
        /// A directory removed on drop.
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new(tag: &str) -> Self {
                let p = std::env::temp_dir().join(format!(
                    "xtask-{tag}-{}-{:?}",
                    std::process::id(),
                    std::thread::current().id()
                ));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn names() {
        assert_eq!(module_name("virtio_blk.ko").as_deref(), Some("virtio_blk"));
        assert_eq!(module_name("virtio-rng.ko.xz").as_deref(), Some("virtio_rng"));
        assert_eq!(module_name("x.ko.zst").as_deref(), Some("x"));
        assert_eq!(module_name("virtio.o"), None);
        assert_eq!(module_name(".ko"), None);
    }

    #[test]
    fn dependencies_come_first_and_builtins_are_skipped() {
        let d = tree(
            &[
                ("kernel/drivers/virtio/virtio.ko", "6.1.0-x", ""),
                ("kernel/drivers/virtio/virtio_ring.ko", "6.1.0-x", ""),
                ("kernel/drivers/virtio/virtio_mmio.ko", "6.1.0-x", "virtio,virtio_ring"),
                ("kernel/drivers/block/virtio_blk.ko", "6.1.0-x", "virtio_ring,virtio"),
                ("kernel/net/vmw_vsock/vsock.ko", "6.1.0-x", ""),
                ("kernel/net/vmw_vsock/vmw_vsock_virtio_transport_common.ko", "6.1.0-x", "vsock,virtio"),
                ("kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko", "6.1.0-x", "vmw_vsock_virtio_transport_common,vsock,crc32c"),
                ("kernel/unused/other.ko", "6.1.0-x", "missing"),
            ],
            &["kernel/fs/ext4/ext4.ko", "kernel/lib/crc32c.ko"],
        );
        let set = resolve(&d.0, "6.1.0-x", &["virtio-mmio", "virtio_blk", "vmw_vsock_virtio_transport", "ext4"]).unwrap();
        let names: Vec<_> = set.modules.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "virtio",
                "virtio_ring",
                "virtio_mmio",
                "virtio_blk",
                "vsock",
                "vmw_vsock_virtio_transport_common",
                "vmw_vsock_virtio_transport"
            ]
        );
        assert_eq!(set.builtin, ["ext4"]);
        assert_eq!(set.modules[3].rel, "kernel/drivers/block/virtio_blk.ko");
        let list = set.list();
        assert!(list.contains("Built in, nothing to load: ext4"), "{list}");
        assert!(list.ends_with("kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko\n"), "{list}");
        assert_eq!(modinfo(&set.modules[0].data).unwrap().get("license").map(String::as_str), Some("GPL"));
    }

    #[test]
    fn errors_name_the_module() {
        let d = tree(
            &[
                ("kernel/a.ko", "6.1.0-x", "b"),
                ("kernel/b.ko", "6.1.0-x", "a"),
                ("kernel/c.ko", "6.1.0-x", "gone"),
                ("kernel/old.ko", "5.10.0-y", ""),
            ],
            &[],
        );
        let e = resolve(&d.0, "6.1.0-x", &["a"]).unwrap_err().0;
        assert!(e.contains("cycle: a -> b -> a"), "{e}");
        let e = resolve(&d.0, "6.1.0-x", &["c"]).unwrap_err().0;
        assert!(e.contains("module gone (needed by c)"), "{e}");
        let e = resolve(&d.0, "6.1.0-x", &["old"]).unwrap_err().0;
        assert!(e.contains("built for kernel \"5.10.0-y SMP mod_unload \", not 6.1.0-x"), "{e}");
        let e = resolve(&d.0, "6.1.0-x", &["nowhere"]).unwrap_err().0;
        assert!(e.contains("module nowhere is neither in"), "{e}");
    }

    #[test]
    fn malformed_objects_are_errors() {
        assert!(modinfo(b"not an elf").is_err());
        let mut elf = fake_ko(&["depends="]);
        assert!(modinfo(&elf).is_ok());
        elf.truncate(elf.len() - 48); // into the last section header's offset and size
        assert!(modinfo(&elf).unwrap_err().0.contains("malformed"));
        let mut elf = fake_ko(&[]);
        elf[0x3e] = 200; // a section-name table past the headers the file holds
        assert!(modinfo(&elf).is_err());
    }
}
