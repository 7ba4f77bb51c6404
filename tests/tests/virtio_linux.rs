//! The ROS's virtio-mmio devices with a real Linux (duet's lean test kernel): a virtio-blk disk holding
//! an ext4 file system made on the host is mounted, read and written, and the host reads the guest's
//! file back out of the image; a virtio-vsock message crosses both ways; a virtio-net interface over a
//! TAP reaches the host; and garbage written to a device's registers from Linux (/dev/mem) costs that
//! device, never the VMM. Linux boots are expensive where guest ring 0 is emulated, so each boot
//! checks as much as it can.
//!
//! Needs root, `/dev/kvm`, e2fsprogs (`mkfs.ext4 -d`, `debugfs`), iproute2 and `/dev/net/tun`; a
//! missing tool fails the test.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use duet_tests::guest_image;
use vmm::ExitReason;

/// Generous: on a PVM host guest ring 0 is emulated and a boot takes about a minute.
const LIMIT: Duration = Duration::from_secs(1500);

/// One Linux VM at a time: two emulated-ring-0 guests at once saturate a 2-core host.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The file the host puts on the disk, and the one the guest writes.
const HOST_TEXT: &str = "written on the host 7e3f";
const GUEST_TEXT: &str = "written by Linux through virtio-blk 51c9";

/// A plain Linux VM running `script` in init, console captured.
fn linux_config(script: &str) -> config::Config {
    let mut ros = config::RosConfig::new(guest_image("vmlinux-test"));
    ros.memory = 256 << 20;
    ros.initramfs = Some(guest_image("initramfs.cpio"));
    ros.cmdline = format!("console=ttyS0 quiet init_on_alloc=0 lpj=5000000 mitigations=off -- \"{script}\"");
    let mut cfg = config::Config::from_ros(ros);
    cfg.console.output = config::ConsoleOutput::Capture;
    cfg.console.input = false;
    cfg
}

fn run_vm(cfg: &config::Config) -> (vmm::Outcome, String) {
    let out = vmm::Vm::new(cfg).expect("build the VM").run(Some(LIMIT)).expect("run the VM");
    let text = out.console_text();
    (out, text)
}

fn has(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in the console:\n{text}");
}

/// Runs a host tool, failing the test (with its output) if it is missing or fails.
fn tool(cmd: &mut Command) -> String {
    let out = cmd.output();
    assert!(out.is_ok(), "cannot run {cmd:?} ({:?}): install e2fsprogs and iproute2", out.err());
    let out = out.expect("checked");
    assert!(out.status.success(), "{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A 16 MiB ext4 image holding `/hello.txt`.
fn ext4_image(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(root.join("hello.txt"), format!("{HOST_TEXT}\n")).expect("write");
    let image = dir.join("disk.img");
    std::fs::File::create(&image).and_then(|f| f.set_len(16 << 20)).expect("create the image");
    tool(Command::new("mkfs.ext4").args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d"]).arg(&root).arg(&image));
    image
}

#[test]
fn linux_mounts_reads_and_writes_an_ext4_disk_and_survives_garbage_in_device_registers() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = duet_tests::scratch("virtio-blk");
    let image = ext4_image(&dir);
    let scratch = dir.join("scratch.img");
    std::fs::write(&scratch, vec![0x5a; 1 << 20]).expect("write");
    // block[1] sits at 0xd0001000. After the disk work, a root process takes it over from Linux's
    // driver through /dev/mem: a reset, the status steps and features, then queue 0 at addresses
    // outside RAM and DRIVER_OK (the device must refuse to start and ask for a reset: status 0x4b),
    // notifications of real and absent queues, odd-sized accesses, a write beside the windows.
    let hostile = "b=0xd0001000; devmem $((b+0x70)) 32 0; devmem $((b+0x70)) 32 1; devmem $((b+0x70)) 32 3; \
        devmem $((b+0x24)) 32 1; devmem $((b+0x20)) 32 1; devmem $((b+0x70)) 32 11; \
        devmem $((b+0x30)) 32 0; devmem $((b+0x38)) 32 8; \
        devmem $((b+0x80)) 32 0xfffff000; devmem $((b+0x84)) 32 0xffffffff; devmem $((b+0x90)) 32 0x12345678; \
        devmem $((b+0xa0)) 32 0xdead0000; devmem $((b+0xa4)) 32 0x7fff; devmem $((b+0x44)) 32 1; \
        devmem $((b+0x70)) 32 15; echo hostile-status $(devmem $((b+0x70)) 32); \
        devmem $((b+0x50)) 32 0; devmem $((b+0x50)) 32 7; devmem $((b+0x50)) 32 0xffffffff; \
        devmem $((b+0x51)) 8 1; devmem $((b+0x100)) 64 0; devmem $((b+0xffc)) 32 1; devmem 0xd00ff000 32 1; \
        echo hostile-magic $(devmem $b 32)";
    let script = format!(
        "mkdir -p /mnt && mount -t ext4 /dev/vda /mnt && echo host-file: $(cat /mnt/hello.txt) && \
         echo {GUEST_TEXT} > /mnt/new.txt && sync && umount /mnt && echo disk-done; \
         echo serial: $(cat /sys/block/vdb/serial) ro: $(cat /sys/block/vdb/ro); \
         echo acpi-virtio: $(ls /sys/bus/acpi/devices | grep -c LNRO0005); \
         echo vdb-bytes: $(dd if=/dev/vdb bs=512 count=1 2>/dev/null | od -An -tx1 | head -1); \
         {hostile}; echo after-garbage; exit 0"
    );
    let mut cfg = linux_config(&script);
    cfg.devices.block.push(config::BlockConfig::new(image.clone()));
    cfg.devices.block.push(config::BlockConfig { path: scratch, read_only: true, serial: Some("scratch-1".into()) });
    let started = Instant::now();
    duet_tests::check_with_sigsegv_retry(
        || run_vm(&cfg),
        |out, text| {
            assert_eq!(out.reason, ExitReason::Exit(0), "{text}");
            // The drivers are modules (as in Debian's kernels): ros-init loaded them from the initramfs,
            // and virtio_mmio got its `device=` parameters from the command line.
            has(text, "duet-init: modules: loaded 10 in");
            has(text, "virtio_mmio virtio_blk");
            // The test kernel, like Debian's, finds virtio-mmio devices only in ACPI: both disks are there.
            has(text, "acpi-virtio: 2");
            has(text, &format!("host-file: {HOST_TEXT}"));
            has(text, "disk-done");
            has(text, "serial: scratch-1 ro: 1");
            has(text, "vdb-bytes: 5a 5a 5a 5a");
            // The VMM kept serving: the magic still reads "virt" and the device asks for a reset.
            has(text, "hostile-status 0x0000004B");
            has(text, "hostile-magic 0x74726976");
            has(text, "after-garbage");
        },
    );
    eprintln!("virtio-blk boot and checks: {:.1?}", started.elapsed());
    // The guest's file, byte for byte, read from the image by the host.
    let got = tool(Command::new("debugfs").args(["-R", "cat /new.txt"]).arg(&image));
    assert_eq!(got, format!("{GUEST_TEXT}\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The host side of the vsock checks: answers the guest's connection to host port 5000 and, once the
/// guest listens on port 6000, connects to it through the device's socket.
fn vsock_host(socket: PathBuf, listener: UnixListener, done: Arc<AtomicBool>) -> (String, String) {
    let mut from_guest = String::new();
    let mut reply = String::new();
    listener.set_nonblocking(true).expect("nonblocking");
    let deadline = Instant::now() + LIMIT;
    while !done.load(Ordering::Acquire) && Instant::now() < deadline && (from_guest.is_empty() || reply.is_empty()) {
        if from_guest.is_empty() {
            if let Ok((s, _)) = listener.accept() {
                s.set_nonblocking(false).expect("blocking");
                let mut line = String::new();
                BufReader::new(s.try_clone().expect("clone")).read_line(&mut line).expect("read");
                from_guest = line.trim_end().to_string();
                (&s).write_all(b"host says hi\n").expect("write");
            }
        }
        if reply.is_empty() {
            if let Ok(mut s) = UnixStream::connect(&socket) {
                s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
                s.write_all(b"CONNECT 6000\n").expect("write");
                let mut r = BufReader::new(s.try_clone().expect("clone"));
                let mut ok = String::new();
                if r.read_line(&mut ok).is_ok() && ok.starts_with("OK ") {
                    s.write_all(b"hello guest from the host\n").expect("write");
                    let mut line = String::new();
                    if r.read_line(&mut line).is_ok() && !line.is_empty() {
                        reply = line.trim_end().to_string();
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    (from_guest, reply)
}

#[test]
fn a_vsock_message_crosses_both_ways() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = duet_tests::scratch("virtio-vsock");
    let socket = dir.join("v.sock");
    let guest_to_host = UnixListener::bind(format!("{}_5000", socket.display())).expect("bind the host port");
    let script = "hvm vsock send 2 5000 hello-host-from-linux; hvm vsock listen 6000; exit 0";
    let mut cfg = linux_config(script);
    cfg.devices.vsock = Some(config::VsockConfig { cid: 3, socket: socket.clone() });
    let done = Arc::new(AtomicBool::new(false));
    let host = {
        let done = done.clone();
        std::thread::spawn(move || vsock_host(socket, guest_to_host, done))
    };
    let started = Instant::now();
    let (out, text) = run_vm(&cfg);
    done.store(true, Ordering::Release);
    let (from_guest, reply) = host.join().expect("host thread");
    eprintln!("virtio-vsock boot and checks: {:.1?}", started.elapsed());
    assert_eq!(out.reason, ExitReason::Exit(0), "{text}");
    assert_eq!(from_guest, "hello-host-from-linux", "{text}");
    has(&text, "vsock-send reply=host says hi");
    has(&text, "vsock-listen got=hello guest from the host");
    assert_eq!(reply, "echo: hello guest from the host");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A TAP interface with an address, removed when dropped (also when the test fails).
struct TapGuard(String);

impl TapGuard {
    fn new(name: &str, host_addr: &str) -> TapGuard {
        let _ = Command::new("ip").args(["link", "del", name]).output();
        tool(Command::new("ip").args(["tuntap", "add", name, "mode", "tap"]));
        let guard = TapGuard(name.to_string());
        tool(Command::new("ip").args(["addr", "add", host_addr, "dev", name]));
        tool(Command::new("ip").args(["link", "set", name, "up"]));
        guard
    }
}

impl Drop for TapGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).output();
    }
}

#[test]
fn linux_pings_the_host_over_virtio_net() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let tap = TapGuard::new("duettap7", "10.77.7.1/24");
    let script = "ip link set eth0 up && ip addr add 10.77.7.2/24 dev eth0 && \
        echo mac: $(cat /sys/class/net/eth0/address) && ping -c 3 -W 5 10.77.7.1; echo ping-status $?; exit 0";
    let mut cfg = linux_config(script);
    cfg.devices.net.push(config::NetConfig { tap: tap.0.clone(), mac: None });
    let started = Instant::now();
    let (out, text) = run_vm(&cfg);
    eprintln!("virtio-net boot and checks: {:.1?}", started.elapsed());
    assert_eq!(out.reason, ExitReason::Exit(0), "{text}");
    has(&text, "mac: 02:64:75:65:74:00");
    has(&text, "3 packets transmitted, 3 packets received");
    has(&text, "ping-status 0");
}

#[test]
fn attaching_names_the_device_that_failed() {
    let dir = duet_tests::scratch("virtio-errors");
    let mut cfg = linux_config("exit 0");
    cfg.devices.net.push(config::NetConfig { tap: "duetnotap0".into(), mac: None });
    let err = vmm::Vm::new(&cfg).expect_err("an absent TAP");
    let text = error_chain(&err);
    assert!(text.contains("net[0]") && text.contains("there is no network interface \"duetnotap0\""), "{text}");

    let image = dir.join("d.img");
    std::fs::write(&image, [0u8; 4096]).expect("write");
    let mut cfg = linux_config("exit 0");
    cfg.devices.block.push(config::BlockConfig::new(image.clone()));
    cfg.devices.block.push(config::BlockConfig::new(image.clone()));
    let err = vmm::Vm::new(&cfg).expect_err("the same image twice");
    let text = error_chain(&err);
    assert!(text.contains("block[1]") && text.contains("in use"), "{text}");

    let socket = dir.join("taken.sock");
    let _held = UnixListener::bind(&socket).expect("bind");
    let mut cfg = linux_config("exit 0");
    cfg.devices.vsock = Some(config::VsockConfig { cid: 3, socket: socket.clone() });
    let err = vmm::Vm::new(&cfg).expect_err("a socket path in use");
    let text = error_chain(&err);
    assert!(text.contains("vsock") && text.contains("taken.sock"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[test]
fn the_ros_of_a_partitioned_vm_reads_and_writes_its_disk() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let dir = duet_tests::scratch("virtio-partitioned");
    let image = dir.join("raw.img");
    std::fs::write(&image, vec![0xa7; 1 << 20]).expect("write");
    // The HRT's RAM lies right above the ROS's; the disk's buffers are the ROS's, and a write into
    // the first sector comes back to the host.
    let script = "hvm info | grep -q hrt && echo partitioned; \
        echo disk-bytes: $(dd if=/dev/vda bs=512 count=1 2>/dev/null | od -An -tx1 | head -1); \
        printf ros-wrote-this | dd of=/dev/vda bs=512 conv=sync,fsync 2>/dev/null && echo wrote; exit 0";
    let mut cfg = duet_tests::linux_partitioned_config(1, script);
    cfg.devices.block.push(config::BlockConfig::new(image.clone()));
    duet_tests::check_with_sigsegv_retry(
        || run_vm(&cfg),
        |out, text| {
            assert_eq!(out.reason, ExitReason::Exit(0), "{text}");
            has(text, "partitioned");
            has(text, "disk-bytes: a7 a7 a7 a7");
            has(text, "wrote");
        },
    );
    let bytes = std::fs::read(&image).expect("read");
    assert_eq!(&bytes[..15], b"ros-wrote-this\0");
    assert!(bytes[512..].iter().all(|b| *b == 0xa7));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tiny guest (no Linux) writes a pattern to every register of a disk's and a vsock device's windows,
/// reads each back, makes byte, word and quad-word accesses, then checks that the disk's magic still
/// reads "virt" and exits 0. The VMM must serve it all and end cleanly with the guest's status.
#[test]
fn a_guest_writing_garbage_everywhere_in_the_device_windows_cannot_hurt_the_vmm() {
    use iced_x86::code_asm::*;
    let dir = duet_tests::scratch("virtio-garbage");
    let image = dir.join("d.img");
    std::fs::write(&image, [0u8; 8192]).expect("write");
    let mut a = duet_tests::asm();
    let mut again = a.create_label();
    let mut bad = a.create_label();
    a.mov(rbx, 0xd000_0000u64).expect("asm");
    a.mov(ecx, 2 * 0x1000 / 4u32).expect("asm");
    a.mov(edx, 0x9e37_79b9u32).expect("asm");
    a.set_label(&mut again).expect("asm");
    a.mov(dword_ptr(rbx), edx).expect("asm");
    a.mov(eax, dword_ptr(rbx)).expect("asm");
    a.mov(byte_ptr(rbx + 1), dl).expect("asm");
    a.mov(ax, word_ptr(rbx + 2)).expect("asm");
    a.rol(edx, 7u32).expect("asm");
    a.add(rbx, 4i32).expect("asm");
    a.dec(ecx).expect("asm");
    a.jnz(again).expect("asm");
    a.mov(rbx, 0xd000_0000u64).expect("asm");
    a.mov(rax, qword_ptr(rbx + 0x100)).expect("asm");
    a.mov(qword_ptr(rbx + 0x1ffc), rax).expect("asm");
    a.mov(dword_ptr(rbx + 0x70), 0u32).expect("asm");
    a.mov(eax, dword_ptr(rbx)).expect("asm");
    a.cmp(eax, 0x7472_6976u32).expect("asm");
    a.jne(bad).expect("asm");
    duet_tests::exit_with(&mut a, 0);
    a.set_label(&mut bad).expect("asm");
    duet_tests::exit_with(&mut a, 1);
    let mut cfg = duet_tests::tiny_config(&dir, &duet_tests::tiny_kernel(a));
    cfg.devices.block.push(config::BlockConfig::new(image));
    cfg.devices.vsock = Some(config::VsockConfig { cid: 3, socket: dir.join("v.sock") });
    let out = duet_tests::run(&cfg, Duration::from_secs(120));
    assert_eq!(out.reason, ExitReason::Exit(0), "{:?}", out.console_text());
    let _ = std::fs::remove_dir_all(&dir);
}
