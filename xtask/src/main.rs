//! duet's project tooling. Run as `cargo xtask <command>` (alias in .cargo/config.toml).
//!
//! - `images [--cloud]`: guest images in `target/guest-images/` (test kernel, ros-init,
//!   initramfs with the kernel's virtio modules; with `--cloud` also Debian's cloud kernel and its
//!   initramfs). Caches live in
//!   `${XDG_CACHE_HOME:-~/.cache}/duet/`.
//! - `check-guests`: checks the images that `images` made.
//! - `test`: images, then every check CI makes, the whole test suite last (the README's test command).
//! - `check-structure`: unused dependencies and file-level import cycles, in every package.
//! - `fuzz`: build and run the fuzz targets (what cargo-fuzz does, without installing it).
//! - `demo`: images, then an interactive partitioned VM (Linux + duet's HRT) from `examples/`.

mod apt;
mod cpio;
mod fuzz;
mod images;
mod kernel;
mod modules;
mod structure;
mod tasks;
mod util;

use std::process::ExitCode;
use std::time::Instant;

use util::{bail, read, Result};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  images [--cloud]   build/fetch guest images into target/guest-images/ and print their paths:
                     vmlinux-test, bzImage-test (duet's lean test kernel, built once per machine),
                     ros-init, initramfs.cpio (with the test kernel's virtio modules), hrt.elf
                     (guests/hrt); with --cloud also vmlinuz-cloud, cloud-version (Debian's cloud
                     kernel) and initramfs-cloud.cpio (with that kernel's virtio modules).
                     Caches: ${XDG_CACHE_HOME:-~/.cache}/duet/
  check-guests       check the images in target/guest-images/
  check-structure    every package's dependencies are used and its modules import each other
                     without cycles
  test [ARGS]        images, then every check CI makes: the structure check, clippy -D warnings
                     (workspace and guests), the guests' unit tests, the benches and fuzz targets
                     built, each fuzz target run briefly, and the whole test suite on real KVM;
                     with ARGS only the test suite (cargo test --workspace --release ARGS)
  fuzz [--seconds N] [--build-only] [TARGET...]
                     build the fuzz targets (nightly, libFuzzer) and run each N seconds (60)
  demo [ARGS]        images, then boot the partitioned VM of examples/demo.toml (Linux + duet's HRT;
                     with the cloud kernel as the ROS on hardware KVM)
                     with the guest's console on this terminal; ARGS go to `duet run`
  help               this text";

fn check_guests() -> Result<()> {
    let dir = images::images_dir();
    let mut problems = Vec::new();
    for f in ["vmlinux-test", "bzImage-test", "ros-init", "initramfs.cpio", "hrt.elf"] {
        if !dir.join(f).exists() {
            problems.push(format!("{f}: missing (run `cargo xtask images`)"));
        }
    }
    if let Ok(init) = std::fs::read(dir.join("ros-init")) {
        if !util::is_static_elf(&init) {
            problems.push("ros-init: not a static x86-64 ELF".to_string());
        }
    }
    if let Ok(cpio) = std::fs::read(dir.join("initramfs.cpio")) {
        for name in
            [&b"init\0"[..], b"bin/busybox\0", b"bin/sh\0", b"dev/console\0", b"/duet-modules\0", b"TRAILER!!!\0"]
        {
            if !cpio.windows(name.len()).any(|w| w == name) {
                problems.push(format!("initramfs.cpio: no {}", String::from_utf8_lossy(&name[..name.len() - 1])));
            }
        }
    }
    if let Ok(key) = kernel::test_kernel_key() {
        let cached = kernel::test_kernel_cache().map(|c| c.join("key")).and_then(|k| read(&k));
        if cached.map(|c| String::from_utf8_lossy(&c).trim() != key).unwrap_or(true) {
            problems.push("test kernel: cache is stale or missing (run `cargo xtask images`)".to_string());
        }
    }
    if let Ok(config) = std::fs::read_to_string(dir.join("config-test")) {
        for opt in [
            "CONFIG_PVH=y",
            "CONFIG_X86_IOPL_IOPERM=y",
            "CONFIG_SERIAL_8250_CONSOLE=y",
            "CONFIG_BLK_DEV_INITRD=y",
            "CONFIG_MODULES=y",
            "CONFIG_VIRTIO_MMIO=m",
            "CONFIG_ACPI=y",
        ] {
            if !config.lines().any(|l| l == opt) {
                problems.push(format!("config-test: no {opt}"));
            }
        }
    }
    if problems.is_empty() {
        println!("guest images in {} look right", dir.display());
        Ok(())
    } else {
        bail!("guest images in {}:\n  {}", dir.display(), problems.join("\n  "))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let start = Instant::now();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["images"] | ["images", "--cloud"] => images::images(args.len() == 2).map(|paths| {
            for p in paths {
                println!("{}", p.display());
            }
            eprintln!("xtask: images ready in {:.1?}", start.elapsed());
        }),
        ["check-guests"] => check_guests(),
        ["check-structure"] => structure::check(),
        ["fuzz", ..] => fuzz::fuzz(&args[1..]),
        ["test", ..] | ["demo", ..] => {
            let task = if args[0] == "test" { tasks::test } else { tasks::demo };
            return match task(&args[1..]) {
                Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
                Err(e) => {
                    eprintln!("xtask: error: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        [] | ["help"] | ["-h"] | ["--help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("xtask: unknown arguments {args:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}
