//! User-facing errors about the file's shape (syntax, unknown keys,
//! missing sections) and overrides: messages name file, line, field, gist.

use std::fs;
use std::path::PathBuf;

use super::{assert_has, at, none, TestDir, K};
use crate::*;

#[test]
fn toml_syntax_error() {
    let d = TestDir::new("syntax");
    let e = d
        .parse("[ros]\nkernel = \"vmlinux\nvcpus = 2\n", &none())
        .unwrap_err();
    assert!(matches!(e, ConfigError::Toml { .. }), "{e:?}");
    assert_eq!(e.line(), Some(2));
    assert!(e.to_string().starts_with(&at(&d, 2)), "{e}");
    assert!(!e.to_string().contains('\n'), "{e}");

    let msg = d.err("[ros\nkernel = 1", &none());
    assert_has(&msg, &[&at(&d, 1), "expected `]`"]);
    let msg = d.err(&format!("{K}kernel = \"x\"\n"), &none());
    assert_has(&msg, &[&at(&d, 3), "duplicate key"]);
}

#[test]
fn unknown_keys() {
    let d = TestDir::new("unknown");
    let msg = d.err(&format!("{K}foo = 1\n"), &none());
    assert_has(
        &msg,
        &[
            &at(&d, 3),
            "ros.foo: unknown field `foo`",
            "`vcpus`",
            "`kernel`",
            "`cmdline`",
        ],
    );
    let msg = d.err(&format!("# comment\n{K}\n[bogus]\nx = 1\n"), &none());
    assert_has(
        &msg,
        &[
            &at(&d, 5),
            "bogus: unknown field `bogus`",
            "`ros`, `hrt`, `console`, `platform`",
        ],
    );
    let msg = d.err(
        &format!("{K}[console]\noutput = \"stdio\"\ncolor = true\n"),
        &none(),
    );
    assert_has(
        &msg,
        &[
            &at(&d, 5),
            "console.color: unknown field `color`",
            "`output`",
            "`path`",
            "`input`",
        ],
    );
    let msg = d.err(&format!("{K}[platform]\nclearcpu = []\n"), &none());
    assert_has(
        &msg,
        &[
            &at(&d, 4),
            "platform.clearcpu: unknown field",
            "`pvm_workarounds`",
            "`clearcpuid`",
        ],
    );
    // Inline tables and dotted keys get the same treatment.
    let msg = d.err("ros = { kernel = \"vmlinux\", foo = 2 }\n", &none());
    assert_has(&msg, &[&at(&d, 1), "ros.foo: unknown field `foo`"]);
    let e = d
        .parse(&format!("{K}console.bad = 1\n"), &none())
        .unwrap_err();
    assert_eq!(e.field(), Some("ros.console"));
}

#[test]
fn missing_partition() {
    let d = TestDir::new("nopart");
    let e = d
        .parse("[console]\noutput = \"none\"\n", &none())
        .unwrap_err();
    assert_eq!(e.problem(), Some(&Problem::MissingPartition));
    assert_eq!(e.line(), None);
    assert_eq!(e.field(), Some("ros/hrt"));
    assert_eq!(
        e.to_string(),
        format!(
            "{}: ros/hrt: a VM needs a [ros] (Linux) or [hrt] (Multiboot2 kernel) section",
            d.toml().display()
        )
    );
    assert_has(
        &d.err("", &none()),
        &["a VM needs a [ros] (Linux) or [hrt] (Multiboot2 kernel) section"],
    );
}

#[test]
fn missing_kernel() {
    let d = TestDir::new("nokernel");
    let e = d.parse("# vm\n\n[ros]\nvcpus = 2\n", &none()).unwrap_err();
    assert_eq!(e.problem(), Some(&Problem::MissingKernel));
    assert_eq!(e.field(), Some("ros.kernel"));
    assert_has(
        &e.to_string(),
        &[
            &at(&d, 3),
            "ros.kernel: missing required key",
            "kernel = \"vmlinux\"",
        ],
    );
}

#[test]
fn bad_enum_strings() {
    let d = TestDir::new("enums");
    let msg = d.err(&format!("{K}[console]\noutput = \"sometimes\"\n"), &none());
    assert_has(
        &msg,
        &[
            &at(&d, 4),
            "console.output: unknown variant `sometimes`",
            "`stdio`, `capture`, `file`, `none`",
        ],
    );
    let msg = d.err(
        &format!("{K}[platform]\npvm_workarounds = \"yes\"\n"),
        &none(),
    );
    assert_has(
        &msg,
        &[
            &at(&d, 4),
            "platform.pvm_workarounds: unknown variant `yes`",
            "`auto`, `on`, `off`",
        ],
    );
    let msg = d.err(&format!("{K}[platform]\npvm_workarounds = true\n"), &none());
    assert_has(
        &msg,
        &[&at(&d, 4), "platform.pvm_workarounds: invalid type: boolean `true`, expected one of \"auto\", \"on\", \"off\""],
    );
    let msg = d.err(&format!("{K}[console]\noutput = 1\n"), &none());
    assert_has(
        &msg,
        &[
            &at(&d, 4),
            "console.output: invalid type: integer `1`, expected one of \"stdio\"",
        ],
    );
}

#[test]
fn override_errors_name_the_option() {
    let d = TestDir::new("overr");
    let text = format!("{K}vcpus = 2\n");
    let ov = |f: &dyn Fn(&mut Overrides)| {
        let mut o = Overrides::default();
        f(&mut o);
        o
    };
    // A valid file made invalid by overrides.
    let e = d.parse(&text, &ov(&|o| o.vcpus = Some(0))).unwrap_err();
    assert_eq!(
        e.location(),
        Some(&Location::CommandLine { option: "--vcpus" })
    );
    assert_eq!(
        e.to_string(),
        "command line (--vcpus): ros.vcpus: 0 is out of range: expected 1 to 64"
    );
    assert_eq!(
        d.err(&text, &ov(&|o| o.vcpus = Some(65))),
        "command line (--vcpus): ros.vcpus: 65 is out of range: expected 1 to 64"
    );
    let msg = d.err(&text, &ov(&|o| o.memory = Some("12Q".into())));
    assert!(
        msg.starts_with("command line (--memory): ros.memory: invalid size \"12Q\""),
        "{msg}"
    );
    assert_eq!(
        d.err(&text, &ov(&|o| o.memory = Some("1M".into()))),
        "command line (--memory): ros.memory: 1 MiB is too small: the minimum is 16 MiB"
    );
    let msg = d.err(&text, &ov(&|o| o.kernel = Some(d.path("gone"))));
    assert_eq!(
        msg,
        format!(
            "command line (--kernel): ros.kernel: kernel file not found: {}",
            d.path("gone").display()
        )
    );
    assert_eq!(
        d.err(&text, &ov(&|o| o.kernel = Some(PathBuf::new()))),
        "command line (--kernel): ros.kernel: kernel path is empty"
    );
    let msg = d.err(&text, &ov(&|o| o.initramfs = Some(d.0.clone())));
    assert_has(
        &msg,
        &["command line (--initramfs): ros.initramfs: initramfs path is a directory"],
    );
    let msg = d.err(&text, &ov(&|o| o.cmdline = Some("a\nb".into())));
    assert_has(
        &msg,
        &[
            "command line (--cmdline): ros.cmdline: ",
            "a newline at byte 1",
        ],
    );
    let msg = d.err(&text, &ov(&|o| o.append = Some("x\0".into())));
    assert_has(
        &msg,
        &[
            "command line (--append): ros.cmdline: ",
            "a NUL character at byte 1",
        ],
    );
    // The file's command line is fine alone but too long with --append.
    let text = format!("{K}cmdline = \"{}\"\n", "x".repeat(2000));
    let msg = d.err(&text, &ov(&|o| o.append = Some("y".repeat(48))));
    assert_eq!(
        msg,
        "command line (--append): ros.cmdline: kernel command line is too long: 2049 bytes (the maximum is 2048)"
    );
    // Too long in the file itself: the file is blamed.
    let text = format!("{K}cmdline = \"{}\"\n", "x".repeat(3000));
    let msg = d.err(&text, &ov(&|o| o.append = Some("y".into())));
    assert_has(&msg, &[&at(&d, 3), "too long: 3000 bytes"]);
    // No partition without --kernel still fails even with other overrides.
    let msg = d.err("", &ov(&|o| o.vcpus = Some(2)));
    assert_has(&msg, &["ros/hrt: a VM needs a [ros] (Linux) or [hrt]"]);
}

#[test]
fn load_errors() {
    let d = TestDir::new("loaderr");
    let e = load(&d.path("absent.toml"), &none()).unwrap_err();
    assert!(
        matches!(
            e,
            ConfigError::Read {
                kind: std::io::ErrorKind::NotFound,
                ..
            }
        ),
        "{e:?}"
    );
    assert_has(
        &e.to_string(),
        &[&format!(
            "{}: cannot read config file: ",
            d.path("absent.toml").display()
        )],
    );
    assert_eq!(e.location(), None);
    // Errors from load name the file as given.
    fs::write(d.toml(), "[ros]\nkernel = \"vmlinux\"\nmemory = \"12Q\"\n").unwrap();
    let e = load(&d.toml(), &none()).unwrap_err();
    assert_eq!(
        e.location(),
        Some(&Location::File {
            path: d.toml(),
            line: Some(3)
        })
    );
    assert_eq!(e.field(), Some("ros.memory"));
    assert_eq!(
        e.problem(),
        Some(&Problem::Size(SizeError::Invalid {
            input: "12Q".into()
        }))
    );
}

#[test]
fn relative_origin_in_messages() {
    // The origin is shown as given, e.g. `examples/bad.toml:4: ...`.
    let origin = std::path::Path::new("examples/bad.toml");
    let text = "[ros]\nkernel = \"vmlinux\"\n\nmemory = \"12Q\"\n";
    let e = parse(text, origin, &none()).unwrap_err();
    assert!(
        e.to_string().starts_with(
            "examples/bad.toml:4: ros.memory: invalid size \"12Q\": expected a number with an optional K, M or G suffix (e.g. \"256M\")"
        ),
        "{e}"
    );
}

#[test]
fn overrides_and_append_blame_their_part() {
    let d = TestDir::new("parts");
    let ov = Overrides { cmdline: Some("a\nb".into()), append: Some("c\nd".into()), ..Overrides::default() };
    // The base is checked first, its offsets its own; then --append, with offsets in it.
    assert_has(&d.err(K, &ov), &["command line (--cmdline): ros.cmdline: ", "newline at byte 1"]);
    let ov = Overrides { cmdline: Some("abc".into()), append: Some("de\n".into()), ..Overrides::default() };
    assert_has(&d.err(K, &ov), &["command line (--append): ros.cmdline: ", "newline at byte 2"]);
    // An empty --append adds nothing, and blames nothing.
    let ov = Overrides { append: Some(String::new()), ..Overrides::default() };
    let text = format!("{K}cmdline = \"{}\"\n", "x".repeat(2048));
    assert_eq!(d.parse(&text, &ov).unwrap().ros.unwrap().cmdline.len(), 2048);
    // Values overridden away are not looked at, even where the rules would refuse them.
    let ov = Overrides { vcpus: Some(64), ..Overrides::default() };
    assert_eq!(d.parse(&format!("{K}vcpus = 99\n"), &ov).unwrap().ros.unwrap().vcpus, 64);
    let e = d.parse(&format!("{K}vcpus = 99\n"), &none()).unwrap_err();
    assert_eq!(e.line(), Some(3));
}
