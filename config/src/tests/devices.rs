//! `[[block]]`, `[[net]]`, `[vsock]`: the ROS's virtio devices.

use std::fs;

use super::{assert_has, at, none, TestDir, K};
use crate::*;

/// A test dir that also holds a 1 KiB `disk.img` and a 3-byte `hrt.elf`.
fn dir(name: &str) -> TestDir {
    let d = TestDir::new(name);
    fs::write(d.path("disk.img"), [0u8; 1024]).unwrap();
    fs::write(d.path("hrt.elf"), b"elf").unwrap();
    d
}

#[test]
fn no_devices_by_default() {
    let d = dir("devnone");
    let c = d.parse(K, &none()).unwrap();
    assert!(c.devices.is_empty());
}

#[test]
fn every_device_parses_with_its_defaults() {
    let d = dir("devall");
    let text = format!(
        "{K}[[block]]\npath = \"disk.img\"\n[[block]]\npath = \"disk.img\"\nread_only = true\nserial = \"disk 1\"\n\
         [[net]]\ntap = \"tap0\"\n[[net]]\ntap = \"tap1\"\nmac = \"02:00:00:aa:bb:0c\"\n[vsock]\ncid = 3\nsocket = \"v.sock\"\n"
    );
    let c = d.parse(&text, &none()).unwrap();
    assert_eq!(
        c.devices.block,
        vec![
            BlockConfig::new(d.path("disk.img")),
            BlockConfig { path: d.path("disk.img"), read_only: true, serial: Some("disk 1".into()) },
        ]
    );
    assert_eq!(
        c.devices.net,
        vec![
            NetConfig { tap: "tap0".into(), mac: None },
            NetConfig { tap: "tap1".into(), mac: Some([2, 0, 0, 0xaa, 0xbb, 0x0c]) },
        ]
    );
    assert_eq!(c.devices.vsock, Some(VsockConfig { cid: 3, socket: d.path("v.sock") }));
    c.validate().unwrap();
}

#[test]
fn a_missing_image_names_the_device_and_line() {
    let d = dir("devmissing");
    let msg = d.err(&format!("{K}[[block]]\npath = \"gone.img\"\n"), &none());
    assert_has(&msg, &[&at(&d, 4), "block[0].path", "disk image file not found", "gone.img"]);
    let msg = d.err(&format!("{K}[[block]]\nread_only = true\n"), &none());
    assert_has(&msg, &["block[0].path", "missing required key", "raw disk image"]);
}

#[test]
fn bad_values_get_clear_errors() {
    let d = dir("devbad");
    let cases = [
        ("[[block]]\npath = \"disk.img\"\nserial = \"123456789012345678901\"\n", "block[0].serial: invalid serial"),
        ("[[net]]\ntap = \"a/b\"\n", "net[0].tap: invalid interface name"),
        ("[[net]]\ntap = \"waytoolonginterface\"\n", "net[0].tap: invalid interface name"),
        ("[[net]]\n", "net[0].tap: missing required key"),
        ("[[net]]\ntap = \"tap0\"\nmac = \"01:00:00:00:00:01\"\n", "net[0].mac: invalid MAC address"),
        ("[[net]]\ntap = \"tap0\"\nmac = \"02:00:00:00:00\"\n", "net[0].mac: invalid MAC address"),
        ("[vsock]\ncid = 2\nsocket = \"v.sock\"\n", "vsock.cid: 2 is out of range"),
        ("[vsock]\ncid = 4294967295\nsocket = \"v.sock\"\n", "vsock.cid: 4294967295 is out of range"),
        ("[vsock]\nsocket = \"v.sock\"\n", "vsock.cid: missing required key"),
        ("[vsock]\ncid = 3\n", "vsock.socket: missing required key"),
        ("[vsock]\ncid = 3\nsocket = \"nodir/v.sock\"\n", "vsock.socket: directory of the socket does not exist"),
        ("[vsock]\ncid = 3\nsocket = \".\"\n", "vsock.socket: socket path is a directory"),
        ("[[block]]\npath = \"disk.img\"\nsize = 3\n", "unknown field `size`"),
    ];
    for (extra, want) in cases {
        let msg = d.err(&format!("{K}{extra}"), &none());
        assert_has(&msg, &[want]);
    }
    let long = format!("{K}[vsock]\ncid = 3\nsocket = \"{}\"\n", "s".repeat(100));
    assert_has(&d.err(&long, &none()), &["vsock.socket: socket path is", "at most 96"]);
    let many = format!("{K}{}", "[[net]]\ntap = \"t\"\n".repeat(MAX_NET_DEVICES + 1));
    assert_has(&d.err(&many, &none()), &["net: too many net devices: 5 (the maximum is 4)"]);
}

#[test]
fn devices_need_a_ros() {
    let d = dir("devnoros");
    let msg = d.err("[hrt]\nkernel = \"hrt.elf\"\n[[block]]\npath = \"disk.img\"\n", &none());
    assert_has(&msg, &[&at(&d, 3), "block: virtio devices belong to the Linux partition"]);
    // Beside an [hrt] in a partitioned VM they are the ROS's.
    let c = d.parse(&format!("{K}[hrt]\nkernel = \"hrt.elf\"\n[vsock]\ncid = 9\nsocket = \"v\"\n"), &none()).unwrap();
    assert_eq!(c.devices.vsock.map(|v| v.cid), Some(9));
}

#[test]
fn in_code_configs_are_checked_too() {
    let d = dir("devcode");
    let mut c = Config::from_ros(RosConfig::new(d.path("vmlinux")));
    c.devices.block.push(BlockConfig::new(d.path("nope.img")));
    assert_has(&c.validate().unwrap_err().to_string(), &["block[0].path: disk image file not found"]);
    c.devices.block[0].path = d.path("disk.img");
    c.devices.net.push(NetConfig { tap: "tap0".into(), mac: Some([1, 0, 0, 0, 0, 0]) });
    assert_has(&c.validate().unwrap_err().to_string(), &["net[0].mac: invalid MAC"]);
    c.devices.net[0].mac = None;
    c.validate().unwrap();
    let mut h = Config::from_hrt(HrtConfig::new(d.path("hrt.elf")));
    h.devices.vsock = Some(VsockConfig { cid: 3, socket: d.path("v") });
    assert_has(&h.validate().unwrap_err().to_string(), &["virtio devices belong to the Linux partition"]);
}

#[test]
fn one_rule_set_for_files_and_code() {
    let d = dir("devonce");
    // An empty device section still asks for devices, and names itself.
    let msg = d.err("block = []\n[hrt]\nkernel = \"hrt.elf\"\n", &none());
    assert_has(&msg, &[&at(&d, 1), "block: virtio devices belong to the Linux partition"]);
    // The file's section is named where it is; in code there is only the model's name.
    let msg = d.err("[hrt]\nkernel = \"hrt.elf\"\n[vsock]\ncid = 3\nsocket = \"v\"\n[[net]]\ntap = \"t\"\n", &none());
    assert_has(&msg, &[&at(&d, 3), "net: virtio devices belong"]);
    let mut h = Config::from_hrt(HrtConfig::new(d.path("hrt.elf")));
    h.devices.net.push(NetConfig { tap: "tap0".into(), mac: None });
    let e = h.validate().unwrap_err();
    assert_eq!((e.field(), e.location()), (Some("block/net/vsock"), Some(&Location::Code)));
    // A multicast MAC is quoted as the file wrote it, and as bytes in code.
    let msg = d.err(&format!("{K}[[net]]\ntap = \"tap0\"\nmac = \"03:AA:00:00:00:01\"\n"), &none());
    assert_has(&msg, &[&at(&d, 5), "net[0].mac: invalid MAC address \"03:AA:00:00:00:01\""]);
    let mut c = d.parse(K, &none()).unwrap();
    c.devices.net.push(NetConfig { tap: "tap0".into(), mac: Some([3, 0xaa, 0, 0, 0, 1]) });
    let e = c.validate().unwrap_err();
    assert_eq!(e.to_string(), "net[0].mac: invalid MAC address \"[03, aa, 00, 00, 00, 01]\": expected six hex bytes separated by ':' (e.g. \"02:00:00:00:00:01\"), unicast (lowest bit of the first byte clear)");
    // A config read from a file and changed in code is checked by the same rules, without locations.
    c.devices.net[0].mac = None;
    c.devices.vsock = Some(VsockConfig { cid: 2, socket: d.path("v") });
    assert_eq!(c.validate().unwrap_err().to_string(), "vsock.cid: 2 is out of range: expected a guest CID from 3 to 4294967294 (0-2 are reserved)");
    c.devices.vsock = Some(VsockConfig { cid: u64::MAX, socket: d.path("v") });
    assert_has(&c.validate().unwrap_err().to_string(), &["vsock.cid: 9223372036854775807 is out of range"]);
    let msg = d.err(&format!("{K}[vsock]\ncid = -3\nsocket = \"v\"\n"), &none());
    assert_has(&msg, &[&at(&d, 4), "vsock.cid: -3 is out of range"]);
    let msg = d.err(&format!("{K}[vsock]\ncid = 3\nsocket = \"\"\n"), &none());
    assert_has(&msg, &[&at(&d, 5), "vsock.socket: socket path is empty"]);
    let msg = d.err(&format!("{K}[[block]]\npath = \"\"\n"), &none());
    assert_has(&msg, &[&at(&d, 4), "block[0].path: disk image path is empty"]);
}
