//! Tests: good configs, overrides and path resolution here; errors in
//! `errors.rs`.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::*;

mod errors;
mod devices;
mod forward;
mod hrt;
mod modules;
mod values;

/// Test access to the one partition of a config.
pub(crate) trait Parts {
    fn ros_ref(&self) -> &RosConfig;
    fn ros_mut(&mut self) -> &mut RosConfig;
    fn hrt_ref(&self) -> &HrtConfig;
    fn hrt_mut(&mut self) -> &mut HrtConfig;
}

impl Parts for Config {
    fn ros_ref(&self) -> &RosConfig {
        self.ros.as_ref().expect("a [ros] partition")
    }
    fn ros_mut(&mut self) -> &mut RosConfig {
        self.ros.as_mut().expect("a [ros] partition")
    }
    fn hrt_ref(&self) -> &HrtConfig {
        self.hrt.as_ref().expect("an [hrt] partition")
    }
    fn hrt_mut(&mut self) -> &mut HrtConfig {
        self.hrt.as_mut().expect("an [hrt] partition")
    }
}

/// A fresh directory under the system temp dir with a 6-byte `vmlinux` and
/// a 4-byte `initrd.cpio`. Removed on drop.
pub(crate) struct TestDir(pub(crate) PathBuf);

impl TestDir {
    pub(crate) fn new(name: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "duet-config-test-{}-{n}-{name}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("vmlinux"), b"kernel").unwrap();
        fs::write(dir.join("initrd.cpio"), b"cpio").unwrap();
        TestDir(dir)
    }

    /// The config file path used by [`TestDir::parse`].
    pub(crate) fn toml(&self) -> PathBuf {
        self.0.join("vm.toml")
    }

    pub(crate) fn parse(&self, text: &str, ov: &Overrides) -> Result<Config, ConfigError> {
        parse(text, &self.toml(), ov)
    }

    /// The error message for `text` (which must fail).
    pub(crate) fn err(&self, text: &str, ov: &Overrides) -> String {
        match self.parse(text, ov) {
            Ok(c) => panic!("expected an error for {text:?}, got {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Asserts that `msg` contains every one of `parts`.
#[track_caller]
pub(crate) fn assert_has(msg: &str, parts: &[&str]) {
    for part in parts {
        assert!(msg.contains(part), "message {msg:?} lacks {part:?}");
    }
}

pub(crate) fn none() -> Overrides {
    Overrides::default()
}

/// `"<dir>/vm.toml:<line>: "`.
pub(crate) fn at(d: &TestDir, line: usize) -> String {
    format!("{}:{line}: ", d.toml().display())
}

/// The smallest valid `[ros]` section.
pub(crate) const K: &str = "[ros]\nkernel = \"vmlinux\"\n";

#[test]
fn minimal() {
    let d = TestDir::new("minimal");
    let c = d.parse("[ros]\nkernel = \"vmlinux\"\n", &none()).unwrap();
    assert_eq!(
        c,
        Config {
            source: d.toml(),
            ros: Some(RosConfig {
                vcpus: 1,
                memory: 256 * MIB,
                kernel: d.path("vmlinux"),
                initramfs: None,
                cmdline: String::new(),
            }),
            hrt: None,
            console: ConsoleConfig {
                output: ConsoleOutput::Stdio,
                input: true,
            },
            platform: PlatformConfig {
                pvm_workarounds: Workarounds::Auto,
                clearcpuid: None,
            },
            devices: Default::default(),
        }
    );
    assert!(c.ros_ref().kernel.is_absolute());
    c.validate().unwrap();
}

#[test]
fn full() {
    let d = TestDir::new("full");
    let text = r#"
# A full config.
[ros]
vcpus = 4
memory = "1G"
kernel = "vmlinux"
initramfs = "initrd.cpio"
cmdline = "console=ttyS0 quiet"

[console]
output = "file"
path = "console.log"
input = false

[platform]
pvm_workarounds = "off"
clearcpuid = ["popcnt", "avx512f", "x2apic_1"]
"#;
    let c = d.parse(text, &none()).unwrap();
    assert_eq!(c.ros_ref().vcpus, 4);
    assert_eq!(c.ros_ref().memory, GIB);
    assert_eq!(c.ros_ref().kernel, d.path("vmlinux"));
    assert_eq!(c.ros_ref().initramfs, Some(d.path("initrd.cpio")));
    assert_eq!(c.ros_ref().cmdline, "console=ttyS0 quiet");
    assert_eq!(c.console.output, ConsoleOutput::File(d.path("console.log")));
    assert!(!c.console.input);
    assert_eq!(c.platform.pvm_workarounds, Workarounds::Off);
    assert_eq!(
        c.platform.clearcpuid,
        Some(vec!["popcnt".into(), "avx512f".into(), "x2apic_1".into()])
    );
    c.validate().unwrap();
}

#[test]
fn enum_values() {
    let d = TestDir::new("enums");
    for (text, want) in [
        ("stdio", ConsoleOutput::Stdio),
        ("capture", ConsoleOutput::Capture),
        ("none", ConsoleOutput::None),
    ] {
        let c = d
            .parse(
                &format!("[ros]\nkernel = \"vmlinux\"\n[console]\noutput = \"{text}\"\n"),
                &none(),
            )
            .unwrap();
        assert_eq!(c.console.output, want);
        assert!(c.console.input);
    }
    for (text, want) in [
        ("auto", Workarounds::Auto),
        ("on", Workarounds::On),
        ("off", Workarounds::Off),
    ] {
        let c = d
            .parse(
                &format!("[ros]\nkernel = \"vmlinux\"\n[platform]\npvm_workarounds = \"{text}\"\n"),
                &none(),
            )
            .unwrap();
        assert_eq!(c.platform.pvm_workarounds, want);
        assert_eq!(c.platform.clearcpuid, None);
    }
    // Empty sections are fine; an empty clearcpuid list is kept as such.
    let c = d
        .parse(
            "[ros]\nkernel = \"vmlinux\"\n[console]\n[platform]\nclearcpuid = []\n",
            &none(),
        )
        .unwrap();
    assert_eq!(c.console, ConsoleConfig::default());
    assert_eq!(c.platform.clearcpuid, Some(vec![]));
}

#[test]
fn memory_forms() {
    let d = TestDir::new("memory");
    for (value, want) in [
        ("\"512MiB\"", 512 * MIB),
        ("\"16M\"", 16 * MIB),
        ("\"64G\"", 64 * GIB),
        ("\"16384K\"", 16 * MIB),
        ("\"300\"", 300 * MIB),
        ("300", 300 * MIB),
        ("\"2g\"", 2 * GIB),
    ] {
        let c = d
            .parse(
                &format!("[ros]\nkernel = \"vmlinux\"\nmemory = {value}\n"),
                &none(),
            )
            .unwrap();
        assert_eq!(c.ros_ref().memory, want, "memory = {value}");
    }
}

#[test]
fn vcpu_bounds_ok() {
    let d = TestDir::new("vcpus");
    for n in [1, 64] {
        let c = d
            .parse(
                &format!("[ros]\nkernel = \"vmlinux\"\nvcpus = {n}\n"),
                &none(),
            )
            .unwrap();
        assert_eq!(c.ros_ref().vcpus, n);
    }
}

#[test]
fn relative_paths_resolve_against_config_dir() {
    let d = TestDir::new("relative");
    fs::create_dir_all(d.path("sub/images")).unwrap();
    fs::write(d.path("sub/images/bzImage"), b"x").unwrap();
    fs::create_dir_all(d.path("logs")).unwrap();
    let text = "[ros]\nkernel = \"images/bzImage\"\ninitramfs = \"../initrd.cpio\"\n\
                [console]\noutput = \"file\"\npath = \"../logs/out.log\"\n";
    let c = parse(text, &d.path("sub/vm.toml"), &none()).unwrap();
    assert_eq!(c.ros_ref().kernel, d.path("sub/images/bzImage"));
    // `..` is kept (lexical resolution); the file is still found.
    assert_eq!(c.ros_ref().initramfs, Some(d.path("sub/../initrd.cpio")));
    assert_eq!(
        c.console.output,
        ConsoleOutput::File(d.path("sub/../logs/out.log"))
    );
    // Absolute paths are kept.
    let abs = d.path("vmlinux");
    let text = format!("[ros]\nkernel = {:?}\n", abs.to_str().unwrap());
    let c = parse(&text, &d.path("sub/vm.toml"), &none()).unwrap();
    assert_eq!(c.ros_ref().kernel, abs);
}

#[test]
fn relative_origin_gives_absolute_paths() {
    // A config named by a relative path resolves against the current dir.
    let d = TestDir::new("relorigin");
    let cwd = std::env::current_dir().unwrap();
    let Some(rel) = pathdiff(&d.0, &cwd) else {
        return;
    };
    let origin = rel.join("vm.toml");
    let c = parse("[ros]\nkernel = \"vmlinux\"\n", &origin, &none()).unwrap();
    assert!(c.ros_ref().kernel.is_absolute());
    assert_eq!(fs::read(&c.ros_ref().kernel).unwrap(), b"kernel");
    assert_eq!(c.source, origin);
}

/// `path` relative to `base` via `..` components, if both are absolute.
fn pathdiff(path: &Path, base: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for _ in base.components().skip(1) {
        out.push("..");
    }
    Some(out.join(path.strip_prefix("/").ok()?))
}

#[test]
fn load_reads_file() {
    let d = TestDir::new("load");
    fs::write(d.toml(), "[ros]\nkernel = \"vmlinux\"\nvcpus = 3\n").unwrap();
    let c = load(&d.toml(), &none()).unwrap();
    assert_eq!(c.ros_ref().vcpus, 3);
    assert_eq!(c.source, d.toml());
}

#[test]
fn overrides_replace_file_values() {
    let d = TestDir::new("ov");
    fs::write(d.path("other"), b"k2").unwrap();
    let text = "[ros]\nkernel = \"vmlinux\"\nvcpus = 2\nmemory = \"128M\"\ncmdline = \"a=1\"\n";
    let ov = Overrides {
        vcpus: Some(8),
        memory: Some("2G".into()),
        kernel: Some(d.path("other")),
        initramfs: Some(d.path("initrd.cpio")),
        cmdline: Some("b=2".into()),
        append: Some("c=3 d".into()),
    };
    let c = d.parse(text, &ov).unwrap();
    assert_eq!(c.ros_ref().vcpus, 8);
    assert_eq!(c.ros_ref().memory, 2 * GIB);
    assert_eq!(c.ros_ref().kernel, d.path("other"));
    assert_eq!(c.ros_ref().initramfs, Some(d.path("initrd.cpio")));
    assert_eq!(c.ros_ref().cmdline, "b=2 c=3 d");
}

#[test]
fn append_without_base_cmdline() {
    let d = TestDir::new("append");
    let ov = Overrides {
        append: Some("quiet".into()),
        ..Overrides::default()
    };
    let c = d.parse("[ros]\nkernel = \"vmlinux\"\n", &ov).unwrap();
    assert_eq!(c.ros_ref().cmdline, "quiet");
    let c = d
        .parse(
            "[ros]\nkernel = \"vmlinux\"\ncmdline = \"console=ttyS0\"\n",
            &ov,
        )
        .unwrap();
    assert_eq!(c.ros_ref().cmdline, "console=ttyS0 quiet");
}

#[test]
fn overrides_fix_invalid_file() {
    let d = TestDir::new("ovfix");
    // Bad values in the file are not looked at when overridden.
    let text = "[ros]\nvcpus = 0\nmemory = \"12Q\"\nkernel = \"missing\"\n";
    let ov = Overrides {
        vcpus: Some(2),
        memory: Some("64M".into()),
        kernel: Some(d.path("vmlinux")),
        ..Overrides::default()
    };
    let c = d.parse(text, &ov).unwrap();
    assert_eq!((c.ros_ref().vcpus, c.ros_ref().memory), (2, 64 * MIB));
    // A missing kernel (or even [ros]) is supplied by --kernel.
    let ov = Overrides {
        kernel: Some(d.path("vmlinux")),
        ..Overrides::default()
    };
    assert_eq!(
        d.parse("[ros]\nvcpus = 2\n", &ov).unwrap().ros_ref().vcpus,
        2
    );
    let c = d.parse("", &ov).unwrap();
    assert_eq!(c.ros, Some(RosConfig::new(d.path("vmlinux"))));
    assert_eq!(c.hrt, None);
}

#[test]
fn relative_override_paths_use_cwd() {
    let d = TestDir::new("ovrel");
    let cwd = std::env::current_dir().unwrap();
    let ov = Overrides {
        kernel: Some(PathBuf::from("definitely-not-here/vmlinux")),
        ..Overrides::default()
    };
    let msg = d.err("[ros]\nkernel = \"vmlinux\"\n", &ov);
    let want = cwd.join("definitely-not-here/vmlinux");
    assert_eq!(
        msg,
        format!(
            "command line (--kernel): ros.kernel: kernel file not found: {}",
            want.display()
        )
    );
}

#[test]
fn in_code_config() {
    let d = TestDir::new("code");
    let mut c = Config::from_ros(RosConfig::new(d.path("vmlinux")));
    assert_eq!(c.source, PathBuf::new());
    assert_eq!(c.ros_ref().vcpus, DEFAULT_VCPUS);
    assert_eq!(c.ros_ref().memory, DEFAULT_MEMORY);
    assert_eq!(c.console, ConsoleConfig::default());
    assert_eq!(c.platform, PlatformConfig::default());
    c.validate().unwrap();

    c.ros_mut().vcpus = 65;
    let e = c.validate().unwrap_err();
    assert_eq!(e.location(), Some(&Location::Code));
    assert_eq!(e.field(), Some("ros.vcpus"));
    assert_eq!(
        e.to_string(),
        "ros.vcpus: 65 is out of range: expected 1 to 64"
    );
    c.ros_mut().vcpus = 1;

    c.ros_mut().memory = MIB;
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "ros.memory: 1 MiB is too small: the minimum is 16 MiB"
    );
    c.ros_mut().memory = DEFAULT_MEMORY;

    c.ros_mut().kernel = d.path("nope");
    assert_has(
        &c.validate().unwrap_err().to_string(),
        &["ros.kernel: kernel file not found: ", "nope"],
    );
    c.ros_mut().kernel = PathBuf::new();
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "ros.kernel: kernel path is empty"
    );
    c.ros_mut().kernel = d.path("vmlinux");

    c.ros_mut().initramfs = Some(d.0.clone());
    assert_has(
        &c.validate().unwrap_err().to_string(),
        &["ros.initramfs: initramfs path is a directory"],
    );
    c.ros_mut().initramfs = None;

    c.ros_mut().cmdline = "a\nb".into();
    assert_has(
        &c.validate().unwrap_err().to_string(),
        &["ros.cmdline: ", "newline at byte 1"],
    );
    c.ros_mut().cmdline = "x".repeat(MAX_CMDLINE_LEN + 1);
    assert_has(
        &c.validate().unwrap_err().to_string(),
        &["too long: 2049 bytes"],
    );
    c.ros_mut().cmdline = "x".repeat(MAX_CMDLINE_LEN);
    c.validate().unwrap();

    c.console.output = ConsoleOutput::File(d.path("no-such-dir/log"));
    assert_has(
        &c.validate().unwrap_err().to_string(),
        &["console.path: directory of the console file does not exist"],
    );
    c.console.output = ConsoleOutput::File(d.path("log"));
    c.validate().unwrap();

    c.platform.clearcpuid = Some(vec!["ok".into(), "Bad".into()]);
    assert_has(
        &c.validate().unwrap_err().to_string(),
        &["platform.clearcpuid[1]: invalid CPU feature name \"Bad\""],
    );
}
