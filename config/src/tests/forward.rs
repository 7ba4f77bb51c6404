//! `hrt.forward` and `hrt.forward_spin_us`: the forwarding mode of a
//! partitioned VM.

use std::fs;

use super::{assert_has, at, none, Parts, TestDir, K};
use crate::*;

/// A test dir that also holds a 3-byte `hrt.elf`.
fn dir(name: &str) -> TestDir {
    let d = TestDir::new(name);
    fs::write(d.path("hrt.elf"), b"elf").unwrap();
    d
}

/// A partitioned VM's sections, the `[hrt]` one last so that keys can be
/// appended to it (line 5 is the first appended line).
fn vm(extra: &str) -> String {
    format!("{K}[hrt]\nkernel = \"hrt.elf\"\n{extra}")
}

#[test]
fn defaults_are_poll_and_100_us() {
    let d = dir("fwdefault");
    let c = d.parse(&vm(""), &none()).unwrap();
    assert_eq!(c.hrt_ref().forward, ForwardMode::Poll);
    assert_eq!(c.hrt_ref().forward_spin_us, DEFAULT_FORWARD_SPIN_US);
    assert_eq!(DEFAULT_FORWARD_SPIN_US, 100);
    assert_eq!(ForwardMode::default(), ForwardMode::Poll);
    let h = HrtConfig::new(d.path("hrt.elf"));
    assert_eq!((h.forward, h.forward_spin_us), (ForwardMode::Poll, 100));
}

#[test]
fn every_mode_and_the_spin_bounds_parse() {
    let d = dir("fwmodes");
    for (text, mode) in [
        ("poll", ForwardMode::Poll),
        ("notify", ForwardMode::Notify),
        ("adaptive", ForwardMode::Adaptive),
    ] {
        let c = d
            .parse(&vm(&format!("forward = \"{text}\"\n")), &none())
            .unwrap();
        assert_eq!(c.hrt_ref().forward, mode);
        assert_eq!(mode.name(), text);
        c.validate().unwrap();
    }
    for spin in [0u32, 1, 100, 250, MAX_FORWARD_SPIN_US] {
        let text = vm(&format!(
            "forward = \"adaptive\"\nforward_spin_us = {spin}\n"
        ));
        let c = d.parse(&text, &none()).unwrap();
        assert_eq!(c.hrt_ref().forward_spin_us, spin);
        assert_eq!(c.hrt_ref().forward, ForwardMode::Adaptive);
    }
    // The spin bound is accepted (and ignored) with the other modes, and an HRT-only VM takes the
    // keys too (there is simply nothing to forward).
    let c = d.parse(&vm("forward_spin_us = 5\n"), &none()).unwrap();
    assert_eq!(
        (c.hrt_ref().forward, c.hrt_ref().forward_spin_us),
        (ForwardMode::Poll, 5)
    );
    let c = d
        .parse(
            "[hrt]\nkernel = \"hrt.elf\"\nforward = \"notify\"\n",
            &none(),
        )
        .unwrap();
    assert_eq!(c.hrt_ref().forward, ForwardMode::Notify);
}

#[test]
fn bad_modes_name_the_accepted_ones() {
    let d = dir("fwbadmode");
    let msg = d.err(&vm("forward = \"interrupt\"\n"), &none());
    assert_has(
        &msg,
        &[
            &at(&d, 5),
            "hrt.forward: unknown variant `interrupt`",
            "`poll`",
            "`notify`",
            "`adaptive`",
        ],
    );
    let msg = d.err(&vm("forward = \"Poll\"\n"), &none());
    assert_has(&msg, &[&at(&d, 5), "hrt.forward: unknown variant `Poll`"]);
    let msg = d.err(&vm("forward = 1\n"), &none());
    assert_has(
        &msg,
        &[
            &at(&d, 5),
            "hrt.forward: invalid type: integer `1`, expected one of \"poll\", \"notify\", \"adaptive\"",
        ],
    );
    // forward is an [hrt] key, not a [ros] one.
    let msg = d.err("[ros]\nkernel = \"vmlinux\"\nforward = \"poll\"\n", &none());
    assert_has(&msg, &[&at(&d, 3), "ros.forward: unknown field `forward`"]);
}

#[test]
fn spin_out_of_range_or_mistyped_is_an_error() {
    let d = dir("fwbadspin");
    for bad in ["-1", "1000001", "4294967296", "9223372036854775807"] {
        let e = d
            .parse(
                &vm(&format!(
                    "forward = \"adaptive\"\nforward_spin_us = {bad}\n"
                )),
                &none(),
            )
            .unwrap_err();
        assert_eq!(e.field(), Some("hrt.forward_spin_us"), "{bad}");
        assert_eq!(e.line(), Some(6), "{bad}");
        assert_eq!(
            e.problem(),
            Some(&Problem::ForwardSpinOutOfRange {
                value: bad.parse().unwrap()
            })
        );
        assert_eq!(
            e.to_string(),
            format!(
                "{}hrt.forward_spin_us: {bad} is out of range: expected 0 to 1000000 (microseconds)",
                at(&d, 6)
            )
        );
    }
    let msg = d.err(&vm("forward_spin_us = \"100us\"\n"), &none());
    assert_has(
        &msg,
        &[
            &at(&d, 5),
            "hrt.forward_spin_us: invalid type: string \"100us\", expected an integer number of microseconds from 0 to 1000000",
        ],
    );
    let msg = d.err(&vm("forward_spin_us = 1.5\n"), &none());
    assert_has(&msg, &[&at(&d, 5), "hrt.forward_spin_us: invalid type"]);
}

#[test]
fn in_code_configs_check_the_spin_bound() {
    let d = dir("fwcode");
    let mut c = d.parse(&vm(""), &none()).unwrap();
    c.hrt_mut().forward = ForwardMode::Adaptive;
    c.hrt_mut().forward_spin_us = MAX_FORWARD_SPIN_US;
    c.validate().unwrap();
    c.hrt_mut().forward_spin_us = MAX_FORWARD_SPIN_US + 1;
    let e = c.validate().unwrap_err();
    assert_eq!(e.field(), Some("hrt.forward_spin_us"));
    assert_eq!(
        e.to_string(),
        "hrt.forward_spin_us: 1000001 is out of range: expected 0 to 1000000 (microseconds)"
    );
}
