//! Loads the kernel modules the initramfs carries for the running kernel.
//!
//! `cargo xtask images` packs, under `/lib/modules/<release>/`, the modules a kernel needs for duet's
//! devices (Debian's kernels build the virtio drivers as modules) and a list, `duet-modules`, of their
//! paths in load order, dependencies first. Each is loaded with `finit_module`, given the
//! `<module>.<param>=<value>` words of the kernel command line as its parameters, as kmod's modprobe
//! does: `virtio_mmio.device=...`, which duet puts on the command line for each virtio-mmio device,
//! only reaches a virtio_mmio that is a module this way.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::time::Instant;

/// The list's name in `/lib/modules/<release>/`.
pub const LIST: &str = "duet-modules";

/// What loading did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Modules loaded now.
    pub loaded: Vec<String>,
    /// Modules that were already in the kernel.
    pub present: Vec<String>,
    /// `module: error` for each module that failed.
    pub failed: Vec<String>,
    /// A note on why nothing was loaded, if nothing was to be loaded.
    pub none: Option<String>,
    /// Time spent, in milliseconds.
    pub millis: u128,
}

/// A module's name from its path: the file name without `.ko`, `-` written `_`.
pub fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.strip_suffix(".ko").unwrap_or(file).replace('-', "_")
}

/// The kernel command line split into words as the kernel splits it: at spaces outside double
/// quotes; the words before a lone `--` only (the rest is init's argv).
pub fn cmdline_words(cmdline: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let (mut start, mut quoted) = (None, false);
    for (i, c) in cmdline.char_indices() {
        if c == '"' {
            quoted = !quoted;
        }
        if c.is_whitespace() && !quoted {
            if let Some(s) = start.take() {
                words.push(&cmdline[s..i]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        words.push(&cmdline[s..]);
    }
    if let Some(end) = words.iter().position(|w| *w == "--") {
        words.truncate(end);
    }
    words
}

/// The parameter string for module `name`: each `name.param[=value]` word of the command line as
/// `param[=value]`, space-separated, in order (module names compare with `-` and `_` alike).
pub fn module_params(cmdline: &str, name: &str) -> String {
    let mut out = Vec::new();
    for w in cmdline_words(cmdline) {
        // The module name ends at the first dot before any `=`.
        let key_end = w.find('=').unwrap_or(w.len());
        let Some(dot) = w[..key_end].find('.') else { continue };
        if w[..dot].replace('-', "_") == name && dot + 1 < w.len() {
            out.push(&w[dot + 1..]);
        }
    }
    out.join(" ")
}

/// Loads the modules listed for kernel `release` under `root` (`/lib/modules` in the guest).
pub fn load(root: &str, release: &str, cmdline: &str) -> Outcome {
    let start = Instant::now();
    let mut out = Outcome::default();
    let dir = format!("{root}/{release}");
    let list = match std::fs::read_to_string(format!("{dir}/{LIST}")) {
        Ok(list) => list,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let others: Vec<String> = std::fs::read_dir(root)
                .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            out.none = Some(if others.is_empty() {
                "the initramfs carries none".to_string()
            } else {
                let msg = format!(
                    "the initramfs carries modules for {}, not for this kernel ({release}): \
                     build it with `cargo xtask images` for this kernel",
                    others.join(", ")
                );
                out.failed.push(msg.clone());
                msg
            });
            return out;
        }
        Err(e) => {
            out.failed.push(format!("{dir}/{LIST}: {e}"));
            return out;
        }
    };
    for rel in list.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let name = module_name(rel);
        let path = format!("{dir}/{rel}");
        match finit_module(&path, &module_params(cmdline, &name)) {
            Ok(()) => out.loaded.push(name),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => out.present.push(name),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
                out.failed.push(format!("{name}: this kernel cannot load modules ({e})"));
                break;
            }
            Err(e) => out.failed.push(format!("{name} ({path}): {e}")),
        }
    }
    if out.loaded.is_empty() && out.present.is_empty() && out.failed.is_empty() {
        out.none = Some(format!("{dir}/{LIST} lists none"));
    }
    out.millis = start.elapsed().as_millis();
    out
}

/// Compares the virtio-mmio devices the command line names (`virtio_mmio.device=`, one per device duet
/// attached) with the virtio devices Linux registered (entries of `bus`, i.e.
/// `/sys/bus/virtio/devices`). `None` when they agree or the command line names none; otherwise why not.
pub fn missing_virtio_devices(cmdline: &str, bus: &str) -> Option<String> {
    let named = cmdline_words(cmdline)
        .iter()
        .filter(|w| w.split_once('=').is_some_and(|(k, _)| k.replace('-', "_") == "virtio_mmio.device"))
        .count();
    if named == 0 {
        return None;
    }
    let found = std::fs::read_dir(bus).map(|d| d.filter_map(|e| e.ok()).count()).unwrap_or(0);
    (found < named).then(|| {
        format!(
            "duet attached {named} virtio-mmio devices, Linux registered {found}: its virtio_mmio takes devices \
             neither from the command line (VIRTIO_MMIO_CMDLINE_DEVICES) nor from ACPI, or a driver is missing"
        )
    })
}

fn finit_module(path: &str, params: &str) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    let params = CString::new(params).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: finit_module reads the open file and the NUL-terminated parameter string; both outlive
    // the call.
    let r = unsafe { libc::syscall(libc::SYS_finit_module, file.as_raw_fd(), params.as_ptr(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(module_name("kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko"), "vmw_vsock_virtio_transport");
        assert_eq!(module_name("virtio-rng.ko"), "virtio_rng");
    }

    #[test]
    fn words_split_like_the_kernel() {
        let c = "console=ttyS0 a.b=\"x y\"  quiet -- sh -c 'virtio_mmio.device=no'\n";
        assert_eq!(cmdline_words(c), ["console=ttyS0", "a.b=\"x y\"", "quiet"]);
        assert_eq!(cmdline_words(""), Vec::<&str>::new());
    }

    #[test]
    fn params_for_a_module() {
        let c = "quiet virtio_mmio.device=4K@0xd0000000:5 virtio-mmio.device=4K@0xd0001000:6 \
                 virtio_net.napi_tx=1 x.y.z=1 foo=virtio_mmio.bar noval. virtio_mmio.force_legacy \
                 -- virtio_mmio.device=after";
        assert_eq!(
            module_params(c, "virtio_mmio"),
            "device=4K@0xd0000000:5 device=4K@0xd0001000:6 force_legacy"
        );
        assert_eq!(module_params(c, "virtio_net"), "napi_tx=1");
        assert_eq!(module_params(c, "x"), "y.z=1");
        assert_eq!(module_params(c, "virtio_blk"), "");
        assert_eq!(module_params(c, "noval"), "");
    }

    #[test]
    fn virtio_devices_are_counted() {
        let dir = std::env::temp_dir().join(format!("ros-init-bus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("virtio0")).expect("a fake bus directory");
        let bus = dir.to_string_lossy().into_owned();
        let two = "quiet virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6 -- x";
        assert!(missing_virtio_devices(two, &bus).is_some_and(|m| m.contains("attached 2") && m.contains("registered 1")));
        assert_eq!(missing_virtio_devices("quiet -- virtio_mmio.device=x", &bus), None);
        std::fs::create_dir_all(dir.join("virtio1")).expect("a fake bus directory");
        assert_eq!(missing_virtio_devices(two, &bus), None);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(missing_virtio_devices(two, &bus).is_some(), "no bus at all: none registered");
    }

    #[test]
    fn missing_lists() {
        let dir = std::env::temp_dir().join(format!("ros-init-mods-{}", std::process::id()));
        let root = dir.to_string_lossy().into_owned();
        let _ = std::fs::remove_dir_all(&dir);
        // No /lib/modules at all: nothing to load, not a failure.
        let o = load(&root, "6.1.0", "");
        assert!(o.failed.is_empty() && o.none.is_some(), "{o:?}");
        // Modules for another kernel: a failure that names both releases.
        std::fs::create_dir_all(dir.join("5.10.0")).expect("a fake module directory");
        let o = load(&root, "6.1.0", "");
        assert!(o.failed.first().is_some_and(|f| f.contains("for 5.10.0, not for this kernel (6.1.0)")), "{o:?}");
        // A listed module that is not there.
        std::fs::create_dir_all(dir.join("6.1.0")).expect("a fake module directory");
        std::fs::write(dir.join("6.1.0").join(LIST), "# comment\nkernel/gone.ko\n").expect("a fake module list");
        let o = load(&root, "6.1.0", "");
        assert!(o.failed.first().is_some_and(|f| f.starts_with("gone (") && f.contains("No such file")), "{o:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
