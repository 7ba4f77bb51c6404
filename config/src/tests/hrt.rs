//! The `[hrt]` partition (a Multiboot2 kernel): good configs, modules,
//! overrides, and the partition rules (one of [ros] / [hrt], not both).

use std::fs;
use std::path::PathBuf;

use super::{assert_has, at, none, Parts, TestDir, K};
use crate::*;

/// A test dir that also holds a 3-byte `hrt.elf`, a 4-byte `mod.bin` and
/// an empty `empty.bin`.
fn hrt_dir(name: &str) -> TestDir {
    let d = TestDir::new(name);
    fs::write(d.path("hrt.elf"), b"elf").unwrap();
    fs::write(d.path("mod.bin"), b"data").unwrap();
    fs::write(d.path("empty.bin"), b"").unwrap();
    d
}

/// The smallest valid `[hrt]` section.
const H: &str = "[hrt]\nkernel = \"hrt.elf\"\n";

#[test]
fn hrt_minimal() {
    let d = hrt_dir("hrtmin");
    let c = d.parse(H, &none()).unwrap();
    assert_eq!(
        c,
        Config {
            source: d.toml(),
            ros: None,
            hrt: Some(HrtConfig {
                vcpus: 1,
                memory: 256 * MIB,
                kernel: d.path("hrt.elf"),
                cmdline: String::new(),
                modules: vec![],
                boot: HrtBoot::AtStart,
                forward: ForwardMode::Poll,
                forward_spin_us: 100,
            }),
            console: ConsoleConfig::default(),
            platform: PlatformConfig::default(),
            devices: Default::default(),
        }
    );
    assert_eq!(c.hrt, Some(HrtConfig::new(d.path("hrt.elf"))));
    assert!(c.hrt_ref().kernel.is_absolute());
    c.validate().unwrap();
}

#[test]
fn hrt_full() {
    let d = hrt_dir("hrtfull");
    fs::create_dir_all(d.path("sub/mods")).unwrap();
    fs::write(d.path("sub/mods/a.bin"), b"a").unwrap();
    let abs = d.path("mod.bin");
    let text = format!(
        r#"
# An HRT-only VM.
[hrt]
vcpus = 2
memory = "64M"
kernel = "../hrt.elf"
cmdline = "smp"
boot = "at-start"
modules = [
  {{ path = "mods/a.bin", cmdline = "first arg=1" }},
  {{ path = "../empty.bin" }},
  {{ path = {abs:?}, cmdline = "" }},
]

[console]
output = "capture"
"#
    );
    let c = parse(&text, &d.path("sub/vm.toml"), &none()).unwrap();
    assert_eq!(c.ros, None);
    let h = c.hrt_ref();
    assert_eq!((h.vcpus, h.memory), (2, 64 * MIB));
    assert_eq!(h.kernel, d.path("sub/../hrt.elf"));
    assert_eq!(h.cmdline, "smp");
    assert_eq!(h.boot, HrtBoot::AtStart);
    assert_eq!(
        h.modules,
        vec![
            ModuleConfig {
                path: d.path("sub/mods/a.bin"),
                cmdline: "first arg=1".into(),
            },
            // An empty module file is fine.
            ModuleConfig {
                path: d.path("sub/../empty.bin"),
                cmdline: String::new(),
            },
            ModuleConfig {
                path: abs,
                cmdline: String::new(),
            },
        ]
    );
    assert_eq!(c.console.output, ConsoleOutput::Capture);
    c.validate().unwrap();
}

#[test]
fn hrt_module_forms() {
    let d = hrt_dir("hrtforms");
    // Arrays of tables, in order.
    let text = format!(
        "{H}\n[[hrt.modules]]\npath = \"mod.bin\"\ncmdline = \"one\"\n\n[[hrt.modules]]\npath = \"empty.bin\"\n"
    );
    let c = d.parse(&text, &none()).unwrap();
    let modules = &c.hrt_ref().modules;
    assert_eq!(modules.len(), 2);
    assert_eq!(modules[0].path, d.path("mod.bin"));
    assert_eq!(modules[0].cmdline, "one");
    assert_eq!(modules[1].path, d.path("empty.bin"));
    assert_eq!(modules[1].cmdline, "");
    // An empty list; the limits exactly.
    let c = d.parse(&format!("{H}modules = []\n"), &none()).unwrap();
    assert!(c.hrt_ref().modules.is_empty());
    let entry = format!(
        "{{ path = \"mod.bin\", cmdline = \"{}\" }}",
        "x".repeat(1024)
    );
    let list = vec![entry.as_str(); MAX_MODULES].join(", ");
    let c = d
        .parse(&format!("{H}modules = [{list}]\n"), &none())
        .unwrap();
    assert_eq!(c.hrt_ref().modules.len(), 64);
    assert_eq!(
        c.hrt_ref().modules[63].cmdline.len(),
        MAX_MODULE_CMDLINE_LEN
    );
    c.validate().unwrap();
}

#[test]
fn both_partitions_make_a_partitioned_vm() {
    let d = hrt_dir("both");
    let text = format!("{K}\n{H}boot = \"on-request\"\n");
    let c = d.parse(&text, &none()).unwrap();
    assert!(c.ros.is_some());
    assert_eq!(c.hrt_ref().boot, HrtBoot::OnRequest);
    c.validate().unwrap();
    // Overrides apply to the Linux partition.
    let ov = Overrides { vcpus: Some(3), ..Overrides::default() };
    let c = d.parse(&text, &ov).unwrap();
    assert_eq!(c.ros.as_ref().map(|r| r.vcpus), Some(3));
    assert_eq!(c.hrt_ref().vcpus, 1);
}

#[test]
fn on_request_needs_ros() {
    let d = hrt_dir("onreq");
    let e = d
        .parse(&format!("{H}boot = \"on-request\"\n"), &none())
        .unwrap_err();
    assert_eq!(e.problem(), Some(&Problem::OnRequestWithoutRos));
    assert_eq!(e.field(), Some("hrt.boot"));
    assert_eq!(
        e.to_string(),
        format!(
            "{}hrt.boot: boot = \"on-request\" needs a [ros] partition to request the HRT's boot; with [hrt] alone use boot = \"at-start\" (the default)",
            at(&d, 3)
        )
    );
    let msg = d.err(&format!("{H}boot = \"later\"\n"), &none());
    assert_has(
        &msg,
        &[
            &at(&d, 3),
            "hrt.boot: unknown variant `later`",
            "expected `at-start` or `on-request`",
        ],
    );
    let msg = d.err(&format!("{H}boot = true\n"), &none());
    assert_has(
        &msg,
        &[
            &at(&d, 3),
            "hrt.boot: invalid type: boolean `true`, expected one of \"at-start\", \"on-request\"",
        ],
    );
}

#[test]
fn hrt_shape_errors() {
    let d = hrt_dir("hrtshape");
    // No kernel: the [hrt] line is blamed.
    let e = d.parse("# vm\n\n[hrt]\nvcpus = 2\n", &none()).unwrap_err();
    assert_eq!(e.problem(), Some(&Problem::MissingHrtKernel));
    assert_eq!(e.field(), Some("hrt.kernel"));
    assert_has(
        &e.to_string(),
        &[
            &at(&d, 3),
            "hrt.kernel: missing required key",
            "Multiboot2 kernel image",
            "kernel = \"hrt.elf\"",
        ],
    );
    // Unknown keys name the valid ones; initramfs is a [ros] key.
    let msg = d.err(&format!("{H}initramfs = \"initrd.cpio\"\n"), &none());
    assert_has(
        &msg,
        &[
            &at(&d, 3),
            "hrt.initramfs: unknown field `initramfs`",
            "`vcpus`",
            "`kernel`",
            "`modules`",
            "`boot`",
        ],
    );
    let msg = d.err(
        &format!(
            "{H}modules = [{{ path = \"mod.bin\" }}, {{ path = \"mod.bin\", args = \"x\" }}]\n"
        ),
        &none(),
    );
    assert_has(
        &msg,
        &[
            &at(&d, 3),
            "hrt.modules[1].args: unknown field `args`",
            "`path`",
            "`cmdline`",
        ],
    );
    let msg = d.err(&format!("{H}modules = \"mod.bin\"\n"), &none());
    assert_has(&msg, &[&at(&d, 3), "hrt.modules: invalid type"]);
    let msg = d.err(
        &format!("{H}modules = [{{ path = \"mod.bin\", cmdline = 3 }}]\n"),
        &none(),
    );
    assert_has(&msg, &[&at(&d, 3), "hrt.modules[0].cmdline: invalid type"]);
}

#[test]
fn hrt_value_errors() {
    let d = hrt_dir("hrtvalues");
    assert_eq!(
        d.err(&format!("{H}vcpus = 0\n"), &none()),
        format!(
            "{}hrt.vcpus: 0 is out of range: expected 1 to 64",
            at(&d, 3)
        )
    );
    assert_eq!(
        d.err(&format!("{H}\nmemory = \"8M\"\n"), &none()),
        format!(
            "{}hrt.memory: 8 MiB is too small: the minimum is 16 MiB",
            at(&d, 4)
        )
    );
    assert_has(
        &d.err(&format!("{H}memory = \"65G\"\n"), &none()),
        &[&at(&d, 3), "hrt.memory: 65 GiB is too large"],
    );
    assert_has(
        &d.err(&format!("{H}memory = \"12Q\"\n"), &none()),
        &[&at(&d, 3), "hrt.memory: invalid size \"12Q\""],
    );
    assert_eq!(
        d.err("[hrt]\nkernel = \"nope.elf\"\n", &none()),
        format!(
            "{}hrt.kernel: kernel file not found: {}",
            at(&d, 2),
            d.path("nope.elf").display()
        )
    );
    // Unlike modules, the kernel must not be empty.
    assert_has(
        &d.err("[hrt]\nkernel = \"empty.bin\"\n", &none()),
        &[&at(&d, 2), "hrt.kernel: kernel file is empty"],
    );
    assert_has(
        &d.err("[hrt]\nkernel = \"\"\n", &none()),
        &[&at(&d, 2), "hrt.kernel: kernel path is empty"],
    );
    assert_has(
        &d.err(&format!("{H}cmdline = \"a\\nb\"\n"), &none()),
        &[
            &at(&d, 3),
            "hrt.cmdline: kernel command line contains a newline at byte 1",
        ],
    );
    assert_has(
        &d.err(&format!("{H}cmdline = \"{}\"\n", "x".repeat(2049)), &none()),
        &[
            &at(&d, 3),
            "hrt.cmdline: kernel command line is too long: 2049 bytes",
        ],
    );
}

#[test]
fn bad_module_paths() {
    let d = hrt_dir("modpath");
    let text = format!(
        "{H}modules = [\n  {{ path = \"mod.bin\" }},\n  {{ path = \"empty.bin\" }},\n  {{ path = \"gone.bin\" }},\n]\n"
    );
    let e = d.parse(&text, &none()).unwrap_err();
    assert_eq!(e.field(), Some("hrt.modules[2].path"));
    assert_eq!(e.line(), Some(6));
    assert_eq!(
        e.to_string(),
        format!(
            "{}hrt.modules[2].path: module file not found: {}",
            at(&d, 6),
            d.path("gone.bin").display()
        )
    );
    fs::create_dir(d.path("dir")).unwrap();
    let msg = d.err(&format!("{H}modules = [{{ path = \"dir\" }}]\n"), &none());
    assert_eq!(
        msg,
        format!(
            "{}hrt.modules[0].path: module path is a directory, not a file: {}",
            at(&d, 3),
            d.path("dir").display()
        )
    );
    let msg = d.err(&format!("{H}modules = [{{ path = \"\" }}]\n"), &none());
    assert_eq!(
        msg,
        format!("{}hrt.modules[0].path: module path is empty", at(&d, 3))
    );
    let msg = d.err(
        &format!("{H}modules = [{{ path = \"/dev/null\" }}]\n"),
        &none(),
    );
    assert_has(
        &msg,
        &["hrt.modules[0].path: module path is not a regular file: /dev/null"],
    );
    // A module without a path; in the [[...]] form, its header is blamed.
    let e = d
        .parse(
            &format!(
                "{H}\n[[hrt.modules]]\npath = \"mod.bin\"\n\n[[hrt.modules]]\ncmdline = \"x\"\n"
            ),
            &none(),
        )
        .unwrap_err();
    assert_eq!(e.problem(), Some(&Problem::MissingModulePath));
    assert_eq!(e.field(), Some("hrt.modules[1].path"));
    assert_has(
        &e.to_string(),
        &[
            "hrt.modules[1].path: missing required key: the path of the module file",
            "path = \"data.bin\"",
        ],
    );
    assert_eq!(e.line(), Some(7));
    let msg = d.err(&format!("{H}modules = [{{ cmdline = \"x\" }}]\n"), &none());
    assert_has(
        &msg,
        &[&at(&d, 3), "hrt.modules[0].path: missing required key"],
    );
}

#[test]
fn bad_module_cmdlines() {
    let d = hrt_dir("modcmd");
    let msg = d.err(
        &format!(
            "{H}modules = [\n  {{ path = \"mod.bin\", cmdline = \"{}\" }},\n]\n",
            "y".repeat(1025)
        ),
        &none(),
    );
    assert_eq!(
        msg,
        format!(
            "{}hrt.modules[0].cmdline: module command line is too long: 1025 bytes (the maximum is 1024)",
            at(&d, 4)
        )
    );
    let msg = d.err(
        &format!("{H}modules = [{{ path = \"mod.bin\" }}, {{ path = \"mod.bin\", cmdline = \"a\\u0000\" }}]\n"),
        &none(),
    );
    assert_eq!(
        msg,
        format!(
            "{}hrt.modules[1].cmdline: module command line contains a NUL character at byte 1: it must be a single line of text",
            at(&d, 3)
        )
    );
}

#[test]
fn too_many_modules() {
    let d = hrt_dir("manymods");
    let list = vec!["{ path = \"mod.bin\" }"; MAX_MODULES + 1].join(",\n  ");
    let e = d
        .parse(&format!("{H}\nmodules = [\n  {list}\n]\n"), &none())
        .unwrap_err();
    assert_eq!(e.problem(), Some(&Problem::TooManyModules { count: 65 }));
    assert_eq!(
        e.to_string(),
        format!(
            "{}hrt.modules: too many modules: 65 (the maximum is 64)",
            at(&d, 4)
        )
    );
}

#[test]
fn overrides_target_hrt() {
    let d = hrt_dir("hrtov");
    fs::write(d.path("other.elf"), b"k2").unwrap();
    let text = format!("{H}vcpus = 2\nmemory = \"128M\"\ncmdline = \"a=1\"\nmodules = [{{ path = \"mod.bin\" }}]\n");
    let ov = Overrides {
        vcpus: Some(4),
        memory: Some("1G".into()),
        kernel: Some(d.path("other.elf")),
        initramfs: None,
        cmdline: Some("b=2".into()),
        append: Some("c=3".into()),
    };
    let c = d.parse(&text, &ov).unwrap();
    assert_eq!(c.ros, None);
    let h = c.hrt_ref();
    assert_eq!((h.vcpus, h.memory), (4, GIB));
    assert_eq!(h.kernel, d.path("other.elf"));
    assert_eq!(h.cmdline, "b=2 c=3");
    assert_eq!(h.modules.len(), 1);
    // --append alone; --kernel supplies a missing hrt.kernel (and it stays
    // an [hrt] VM).
    let ov = Overrides {
        append: Some("quiet".into()),
        ..Overrides::default()
    };
    assert_eq!(d.parse(&text, &ov).unwrap().hrt_ref().cmdline, "a=1 quiet");
    let ov = Overrides {
        kernel: Some(d.path("hrt.elf")),
        ..Overrides::default()
    };
    let c = d.parse("[hrt]\nvcpus = 3\n", &ov).unwrap();
    assert_eq!(c.ros, None);
    assert_eq!(c.hrt_ref().vcpus, 3);
    assert_eq!(c.hrt_ref().kernel, d.path("hrt.elf"));
    // Errors name the option and the hrt field.
    let ov = Overrides {
        vcpus: Some(0),
        ..Overrides::default()
    };
    assert_eq!(
        d.err(&text, &ov),
        "command line (--vcpus): hrt.vcpus: 0 is out of range: expected 1 to 64"
    );
    let ov = Overrides {
        memory: Some("1M".into()),
        ..Overrides::default()
    };
    assert_eq!(
        d.err(&text, &ov),
        "command line (--memory): hrt.memory: 1 MiB is too small: the minimum is 16 MiB"
    );
    let ov = Overrides {
        kernel: Some(PathBuf::new()),
        ..Overrides::default()
    };
    assert_eq!(
        d.err(&text, &ov),
        "command line (--kernel): hrt.kernel: kernel path is empty"
    );
    let ov = Overrides {
        append: Some("x\n".into()),
        ..Overrides::default()
    };
    assert_has(
        &d.err(&text, &ov),
        &[
            "command line (--append): hrt.cmdline: ",
            "a newline at byte 1",
        ],
    );
}

#[test]
fn initramfs_override_on_hrt() {
    let d = hrt_dir("hrtinitrd");
    let ov = Overrides {
        initramfs: Some(d.path("initrd.cpio")),
        ..Overrides::default()
    };
    let e = d.parse(H, &ov).unwrap_err();
    assert_eq!(e.problem(), Some(&Problem::InitramfsWithoutRos));
    assert_eq!(
        e.location(),
        Some(&Location::CommandLine {
            option: "--initramfs"
        })
    );
    assert_eq!(
        e.to_string(),
        "command line (--initramfs): ros.initramfs: --initramfs applies to [ros] (the Linux partition), and this VM has only [hrt]"
    );
    // Still fine for a [ros] VM, including one made by --kernel alone.
    assert!(d.parse(K, &ov).unwrap().ros_ref().initramfs.is_some());
    let ov = Overrides {
        kernel: Some(d.path("vmlinux")),
        ..ov
    };
    let c = d.parse("", &ov).unwrap();
    assert_eq!(c.hrt, None);
    assert_eq!(c.ros_ref().initramfs, Some(d.path("initrd.cpio")));
}

#[test]
fn in_code_hrt_config() {
    let d = hrt_dir("hrtcode");
    let mut c = Config::from_hrt(HrtConfig::new(d.path("hrt.elf")));
    assert_eq!(c.source, PathBuf::new());
    assert_eq!(c.ros, None);
    assert_eq!(c.hrt_ref().vcpus, DEFAULT_VCPUS);
    assert_eq!(c.hrt_ref().memory, DEFAULT_MEMORY);
    assert_eq!(c.hrt_ref().boot, HrtBoot::AtStart);
    assert_eq!(HrtBoot::default(), HrtBoot::AtStart);
    c.validate().unwrap();

    c.hrt_mut().vcpus = 65;
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "hrt.vcpus: 65 is out of range: expected 1 to 64"
    );
    c.hrt_mut().vcpus = 2;
    c.hrt_mut().memory = 65 * GIB;
    assert_has(
        &c.validate().unwrap_err().to_string(),
        &["hrt.memory: 65 GiB is too large"],
    );
    c.hrt_mut().memory = 32 * MIB;
    c.hrt_mut().kernel = d.path("empty.bin");
    assert_has(
        &c.validate().unwrap_err().to_string(),
        &["hrt.kernel: kernel file is empty"],
    );
    c.hrt_mut().kernel = d.path("hrt.elf");
    c.hrt_mut().cmdline = "a\rb".into();
    assert_has(
        &c.validate().unwrap_err().to_string(),
        &["hrt.cmdline: kernel command line contains a carriage return"],
    );
    c.hrt_mut().cmdline = "x".repeat(MAX_CMDLINE_LEN);
    c.validate().unwrap();

    let module = |path: PathBuf| ModuleConfig {
        path,
        cmdline: String::new(),
    };
    c.hrt_mut().modules = vec![module(d.path("mod.bin")), module(d.path("empty.bin"))];
    c.validate().unwrap();
    c.hrt_mut().modules.push(module(d.path("gone.bin")));
    let e = c.validate().unwrap_err();
    assert_eq!(e.location(), Some(&Location::Code));
    assert_has(
        &e.to_string(),
        &["hrt.modules[2].path: module file not found: ", "gone.bin"],
    );
    c.hrt_mut().modules[2] = ModuleConfig {
        path: d.path("mod.bin"),
        cmdline: "z".repeat(MAX_MODULE_CMDLINE_LEN + 1),
    };
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "hrt.modules[2].cmdline: module command line is too long: 1025 bytes (the maximum is 1024)"
    );
    c.hrt_mut().modules = vec![module(d.path("mod.bin")); MAX_MODULES + 1];
    assert_eq!(
        c.validate().unwrap_err().to_string(),
        "hrt.modules: too many modules: 65 (the maximum is 64)"
    );
    c.hrt_mut().modules.pop();
    c.validate().unwrap();

    c.hrt_mut().boot = HrtBoot::OnRequest;
    let e = c.validate().unwrap_err();
    assert_eq!(e.field(), Some("hrt.boot"));
    assert_eq!(e.problem(), Some(&Problem::OnRequestWithoutRos));
    c.hrt_mut().boot = HrtBoot::AtStart;

    // The partition rules: both together are a partitioned VM, and then
    // on-request is allowed.
    c.ros = Some(RosConfig::new(d.path("vmlinux")));
    c.validate().unwrap();
    c.hrt_mut().boot = HrtBoot::OnRequest;
    c.validate().unwrap();
    c.hrt = None;
    c.validate().unwrap();
    c.ros = None;
    let e = c.validate().unwrap_err();
    assert_eq!(e.problem(), Some(&Problem::MissingPartition));
    assert_eq!(
        e.to_string(),
        "ros/hrt: a VM needs a [ros] (Linux) or [hrt] (Multiboot2 kernel) section"
    );
}
