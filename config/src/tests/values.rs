//! User-facing errors about values (ranges, sizes, files, command line,
//! console, clearcpuid): messages name file, line, field, gist.

use std::fs;

use super::{assert_has, at, none, Parts, TestDir, K};

#[test]
fn vcpus_out_of_range() {
    let d = TestDir::new("vcpus");
    for (value, shown) in [
        ("0", "0"),
        ("65", "65"),
        ("-1", "-1"),
        ("100000000000", "100000000000"),
    ] {
        let msg = d.err(&format!("{K}vcpus = {value}\n"), &none());
        assert_eq!(
            msg,
            format!(
                "{}ros.vcpus: {shown} is out of range: expected 1 to 64",
                at(&d, 3)
            )
        );
    }
    let msg = d.err(&format!("{K}vcpus = \"2\"\n"), &none());
    assert_has(
        &msg,
        &[
            &at(&d, 3),
            "ros.vcpus: invalid type: string \"2\", expected an integer from 1 to 64",
        ],
    );
}

#[test]
fn bad_sizes() {
    let d = TestDir::new("sizes");
    let msg = d.err("[ros]\nkernel = \"vmlinux\"\n\nmemory = \"12Q\"\n", &none());
    assert!(
        msg.starts_with(&format!(
            "{}ros.memory: invalid size \"12Q\": expected a number with an optional K, M or G suffix (e.g. \"256M\")",
            at(&d, 4)
        )),
        "{msg}"
    );
    let msg = d.err(&format!("{K}memory = \"99999999999G\"\n"), &none());
    assert_has(
        &msg,
        &[&at(&d, 3), "ros.memory: size \"99999999999G\" is too large"],
    );
    let msg = d.err(&format!("{K}memory = 17592186044416\n"), &none());
    assert_has(
        &msg,
        &[
            &at(&d, 3),
            "ros.memory: size \"17592186044416\" is too large",
        ],
    );
    let msg = d.err(&format!("{K}memory = -5\n"), &none());
    assert_has(&msg, &[&at(&d, 3), "ros.memory: invalid size \"-5\""]);
    let msg = d.err(&format!("{K}memory = 1.5\n"), &none());
    assert_has(
        &msg,
        &[
            &at(&d, 3),
            "ros.memory: invalid type",
            "a size string like \"256M\"",
        ],
    );
}

#[test]
fn memory_out_of_range() {
    let d = TestDir::new("memrange");
    let msg = d.err(&format!("{K}memory = \"8M\"\n"), &none());
    assert_eq!(
        msg,
        format!(
            "{}ros.memory: 8 MiB is too small: the minimum is 16 MiB",
            at(&d, 3)
        )
    );
    let msg = d.err(&format!("{K}memory = \"16383K\"\n"), &none());
    assert_has(&msg, &["16383 KiB is too small"]);
    let msg = d.err(&format!("{K}memory = \"65G\"\n"), &none());
    assert_eq!(
        msg,
        format!(
            "{}ros.memory: 65 GiB is too large: the maximum is 64 GiB",
            at(&d, 3)
        )
    );
    let msg = d.err(&format!("{K}memory = 0\n"), &none());
    assert_has(&msg, &["0 bytes is too small"]);
}

#[test]
fn kernel_file_problems() {
    let d = TestDir::new("kfile");
    let missing = d.path("no-such-vmlinux");
    let msg = d.err("[ros]\nkernel = \"no-such-vmlinux\"\n", &none());
    assert_eq!(
        msg,
        format!(
            "{}ros.kernel: kernel file not found: {}",
            at(&d, 2),
            missing.display()
        )
    );
    let msg = d.err("[ros]\nkernel = \"vmlinux/x\"\n", &none());
    assert_has(&msg, &["kernel file not found: "]);

    fs::create_dir(d.path("dir")).unwrap();
    let msg = d.err("[ros]\nkernel = \"dir\"\n", &none());
    assert_eq!(
        msg,
        format!(
            "{}ros.kernel: kernel path is a directory, not a file: {}",
            at(&d, 2),
            d.path("dir").display()
        )
    );

    fs::write(d.path("empty"), b"").unwrap();
    let msg = d.err("[ros]\nkernel = \"empty\"\n", &none());
    assert_eq!(
        msg,
        format!(
            "{}ros.kernel: kernel file is empty: {}",
            at(&d, 2),
            d.path("empty").display()
        )
    );

    let msg = d.err("[ros]\nkernel = \"\"\n", &none());
    assert_eq!(
        msg,
        format!("{}ros.kernel: kernel path is empty", at(&d, 2))
    );

    let msg = d.err("[ros]\nkernel = \"/dev/null\"\n", &none());
    assert_has(
        &msg,
        &["ros.kernel: kernel path is not a regular file: /dev/null"],
    );
}

#[test]
fn unreadable_files() {
    use std::os::unix::fs::PermissionsExt;
    let d = TestDir::new("unreadable");
    let p = d.path("secret");
    fs::write(&p, b"data").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o000)).unwrap();
    // A metadata error other than "not found" (works even as root).
    let long = "x".repeat(300);
    let msg = d.err(&format!("[ros]\nkernel = \"{long}\"\n"), &none());
    assert_has(
        &msg,
        &[
            &at(&d, 2),
            "ros.kernel: cannot read kernel file ",
            "ile name too long",
        ],
    );
    if fs::File::open(&p).is_ok() {
        // Running as root: permissions do not apply; nothing to test.
        return;
    }
    let msg = d.err("[ros]\nkernel = \"secret\"\n", &none());
    assert_has(
        &msg,
        &[
            &at(&d, 2),
            "ros.kernel: cannot read kernel file ",
            "secret",
            "ermission denied",
        ],
    );
    let msg = d.err(&format!("{K}initramfs = \"secret\"\n"), &none());
    assert_has(
        &msg,
        &[&at(&d, 3), "ros.initramfs: cannot read initramfs file "],
    );
}

#[test]
fn initramfs_file_problems() {
    let d = TestDir::new("ifile");
    let msg = d.err(&format!("{K}initramfs = \"nope.cpio\"\n"), &none());
    assert_eq!(
        msg,
        format!(
            "{}ros.initramfs: initramfs file not found: {}",
            at(&d, 3),
            d.path("nope.cpio").display()
        )
    );
    fs::create_dir(d.path("dir")).unwrap();
    let msg = d.err(&format!("{K}initramfs = \"dir\"\n"), &none());
    assert_has(
        &msg,
        &[&at(&d, 3), "ros.initramfs: initramfs path is a directory"],
    );
    fs::write(d.path("empty"), b"").unwrap();
    let msg = d.err(&format!("{K}initramfs = \"empty\"\n"), &none());
    assert_has(
        &msg,
        &[&at(&d, 3), "ros.initramfs: initramfs file is empty"],
    );
    let msg = d.err(&format!("{K}initramfs = \"\"\n"), &none());
    assert_has(
        &msg,
        &[&at(&d, 3), "ros.initramfs: initramfs path is empty"],
    );
}

#[test]
fn cmdline_problems() {
    let d = TestDir::new("cmdline");
    let long = "x".repeat(2049);
    let msg = d.err(&format!("{K}cmdline = \"{long}\"\n"), &none());
    assert_eq!(
        msg,
        format!(
            "{}ros.cmdline: kernel command line is too long: 2049 bytes (the maximum is 2048)",
            at(&d, 3)
        )
    );
    let ok = "x".repeat(2048);
    assert_eq!(
        d.parse(&format!("{K}cmdline = \"{ok}\"\n"), &none())
            .unwrap()
            .ros_ref()
            .cmdline,
        ok
    );

    let msg = d.err(&format!("{K}cmdline = \"a\\nb\"\n"), &none());
    assert_eq!(
        msg,
        format!("{}ros.cmdline: kernel command line contains a newline at byte 1: it must be a single line of text", at(&d, 3))
    );
    let msg = d.err(&format!("{K}cmdline = \"\"\"\nquiet\n\"\"\"\n"), &none());
    assert_has(&msg, &[&at(&d, 3), "contains a newline at byte 5"]);
    let msg = d.err(&format!("{K}cmdline = \"ab\\u0000\"\n"), &none());
    assert_has(
        &msg,
        &[
            &at(&d, 3),
            "ros.cmdline: kernel command line contains a NUL character at byte 2",
        ],
    );
    let msg = d.err(&format!("{K}cmdline = \"a\\rb\"\n"), &none());
    assert_has(&msg, &["a carriage return at byte 1"]);
}

#[test]
fn console_path_rules() {
    let d = TestDir::new("console");
    let msg = d.err(&format!("{K}[console]\noutput = \"file\"\n"), &none());
    assert_eq!(
        msg,
        format!(
            "{}console.path: output = \"file\" needs a path (e.g. path = \"console.log\", relative to the config file's directory)",
            at(&d, 4)
        )
    );
    let msg = d.err(&format!("{K}[console]\npath = \"x.log\"\n"), &none());
    assert_eq!(
        msg,
        format!(
            "{}console.path: path is only allowed with output = \"file\" (output is \"stdio\")",
            at(&d, 4)
        )
    );
    let msg = d.err(
        &format!("{K}[console]\noutput = \"capture\"\n\npath = \"x.log\"\n"),
        &none(),
    );
    assert_has(&msg, &[&at(&d, 6), "(output is \"capture\")"]);
    let msg = d.err(
        &format!("{K}[console]\noutput = \"file\"\npath = \"\"\n"),
        &none(),
    );
    assert_has(&msg, &[&at(&d, 5), "console.path: console path is empty"]);
    let msg = d.err(
        &format!("{K}[console]\noutput = \"file\"\npath = \"nodir/x.log\"\n"),
        &none(),
    );
    assert_has(
        &msg,
        &[
            &at(&d, 5),
            "console.path: directory of the console file does not exist",
            "nodir",
        ],
    );
    let msg = d.err(
        &format!("{K}[console]\noutput = \"file\"\npath = \".\"\n"),
        &none(),
    );
    assert_has(
        &msg,
        &[&at(&d, 5), "console.path: console path is a directory"],
    );
}

#[test]
fn bad_clearcpuid() {
    let d = TestDir::new("clearcpuid");
    let msg = d.err(
        &format!("{K}[platform]\nclearcpuid = [\n  \"popcnt\",\n  \"AVX\",\n]\n"),
        &none(),
    );
    assert_eq!(
        msg,
        format!(
            "{}platform.clearcpuid[1]: invalid CPU feature name \"AVX\": expected lowercase letters, digits and underscores (e.g. \"popcnt\")",
            at(&d, 6)
        )
    );
    for bad in ["", "a b", "x,y", "sse4.2", "-x"] {
        let msg = d.err(&format!("{K}[platform]\nclearcpuid = [{bad:?}]\n"), &none());
        assert_has(
            &msg,
            &[
                &at(&d, 4),
                "platform.clearcpuid[0]: invalid CPU feature name",
            ],
        );
    }
    let msg = d.err(
        &format!("{K}[platform]\nclearcpuid = [\"a\", 3]\n"),
        &none(),
    );
    assert_has(
        &msg,
        &[
            &at(&d, 4),
            "platform.clearcpuid[1]: invalid type: integer `3`",
        ],
    );
    let msg = d.err(
        &format!("{K}[platform]\nclearcpuid = \"popcnt\"\n"),
        &none(),
    );
    assert_has(&msg, &[&at(&d, 4), "platform.clearcpuid: invalid type"]);
}
