//! ros-init: PID 1 (`/init`) of duet's Linux guest.
//!
//! Mounts /proc, /sys, /dev, /tmp; reports kernel release, CPUs and memory on the console;
//! records mark 1 ("init reached") on duet's debug port (see `port.rs`); loads the kernel modules
//! the initramfs carries for this kernel (`modules.rs`: the virtio drivers, where they are modules); checks
//! `duet.expect_cpus=N` from /proc/cmdline; runs the command given after ` -- ` on the kernel
//! command line (`shell` for an interactive busybox shell, anything else through `/bin/sh -c`,
//! nothing for checks only); copies the kernel's reports of processes killed by a fault to the console
//! (`kmsg.rs`); then powers the VM off with the resulting status.
//!
//! PID 1 must never exit or panic: every failure becomes a message and status 1.

mod kmsg;
mod modules;
mod port;

use std::ffi::CString;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;

use port::DebugPort;

/// Writes one `duet-init: ` line to stdout (the console), ignoring errors (no panics).
fn say(msg: &str) {
    let line = format!("duet-init: {msg}\n");
    let mut buf = line.as_bytes();
    while !buf.is_empty() {
        // SAFETY: writes from a valid buffer of the given length.
        let n = unsafe { libc::write(1, buf.as_ptr().cast(), buf.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        buf = buf.get(n as usize..).unwrap_or(&[]);
    }
}

macro_rules! say {
    ($($t:tt)*) => { say(&format!($($t)*)) };
}

fn mount(src: &str, target: &str, fstype: &str, ignore_busy: bool) -> Result<(), String> {
    let c = |s: &str| CString::new(s).map_err(|_| format!("bad path {s:?}"));
    let (csrc, ctarget, cfs) = (c(src)?, c(target)?, c(fstype)?);
    // SAFETY: valid NUL-terminated strings; mkdir/mount have no memory-safety preconditions.
    unsafe {
        libc::mkdir(ctarget.as_ptr(), 0o755);
        let flags = libc::MS_NOSUID | if fstype == "devtmpfs" { 0 } else { libc::MS_NODEV };
        if libc::mount(csrc.as_ptr(), ctarget.as_ptr(), cfs.as_ptr(), flags, std::ptr::null()) != 0 {
            let e = std::io::Error::last_os_error();
            if !(ignore_busy && e.raw_os_error() == Some(libc::EBUSY)) {
                return Err(format!("mount {fstype} on {target}: {e}"));
            }
        }
    }
    Ok(())
}

/// Makes sure fds 0..2 are open on the console (they are when the initramfs has /dev/console;
/// without it, the kernel leaves them closed and Rust's runtime points them at /dev/null).
fn ensure_console() {
    // SAFETY: fstat into a zeroed struct; fcntl/open/dup2 on integer fds; a static C string.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        let open = libc::fstat(1, &mut st) == 0;
        let is_null = open && (st.st_mode & libc::S_IFMT) == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3);
        if open && !is_null {
            return;
        }
        let fd = libc::open(c"/dev/console".as_ptr(), libc::O_RDWR | libc::O_NOCTTY);
        if fd >= 0 {
            for target in 0..3 {
                if fd != target {
                    libc::dup2(fd, target);
                }
            }
            if fd > 2 {
                libc::close(fd);
            }
        }
    }
}

fn kernel_release() -> String {
    // SAFETY: uname fills a zeroed utsname; release is NUL-terminated by the kernel.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return format!("unknown ({})", std::io::Error::last_os_error());
        }
        std::ffi::CStr::from_ptr(u.release.as_ptr()).to_string_lossy().into_owned()
    }
}

/// Counts the CPUs in a sysfs CPU list such as "0-1,4,6-7".
fn count_cpu_list(list: &str) -> Option<u32> {
    let mut n = 0u32;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        n += match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                b.checked_sub(a)? + 1
            }
            None => {
                part.parse::<u32>().ok()?;
                1
            }
        };
    }
    Some(n)
}

fn mem_total_kib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Everything PID 1 does before powering off (module docs); the status to power off with.
fn run(port: &mut DebugPort) -> u32 {
    if let Err(e) = mount("proc", "/proc", "proc", true) {
        say!("{e}");
    }
    let ioperm_err = mark_init_by_ioperm(port);
    let mount_errors = mount_filesystems();
    ensure_console();
    say!("ros-init started");
    for e in mount_errors {
        say!("{e}");
    }
    if !port.ready() {
        mark_init_by_dev_port(port, ioperm_err);
    }
    say!("debug port via {}", port.describe());

    let release = kernel_release();
    say!("kernel {release}");
    let cpus = report_cpus();
    report_memory();

    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    say!("cmdline: {}", cmdline.trim());
    let modules_ok = load_modules(&release, &cmdline);
    let cpus_ok = check_expected_cpus(&cmdline, cpus);
    let checks_ok = modules_ok && cpus_ok;

    // The command: everything after ` -- ` on the kernel command line is our argv[1..].
    let args: Vec<String> = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    let status = if args.is_empty() {
        if checks_ok {
            0
        } else {
            1
        }
    } else {
        run_command(&args)
    };
    for report in kmsg::matching("segfault at") {
        say!("kernel: {report}");
    }
    if !checks_ok && status != 1 {
        say!("a check failed: status 1 instead of {status}");
        return 1;
    }
    status
}

/// Takes port access with ioperm and, if that worked, records mark 1 ("init reached") at once (the
/// mark times the boot); the ioperm error, if any.
fn mark_init_by_ioperm(port: &mut DebugPort) -> Option<String> {
    let ioperm_err = port.try_ioperm().err();
    if port.ready() {
        if let Err(e) = port.mark(port::MARK_INIT) {
            say!("debug port: {e}; trying /dev/port");
        }
    }
    ioperm_err
}

/// Mounts /sys, /dev and /tmp; what failed, to be said once the console is there.
fn mount_filesystems() -> Vec<String> {
    let mut failed = Vec::new();
    for (src, target, fstype) in [("sysfs", "/sys", "sysfs"), ("devtmpfs", "/dev", "devtmpfs"), ("tmpfs", "/tmp", "tmpfs")] {
        if let Err(e) = mount(src, target, fstype, true) {
            failed.push(e);
        }
    }
    failed
}

/// Falls back to /dev/port for the debug port (ioperm failed with `ioperm_err`, or its `out`
/// faulted) and records mark 1 through it; says so when there is no debug port at all.
fn mark_init_by_dev_port(port: &mut DebugPort, ioperm_err: Option<String>) {
    match port.try_dev_port() {
        Ok(()) => {
            if let Err(e) = port.mark(port::MARK_INIT) {
                say!("debug port: {e}");
            }
        }
        Err(e) => {
            let why = ioperm_err.unwrap_or_else(|| "port I/O refused".to_string());
            say!("no debug port ({why}; {e}): cannot signal the VMM");
        }
    }
}

/// Says which CPUs are online; how many, if the list could be read and counted.
fn report_cpus() -> Option<u32> {
    match std::fs::read_to_string("/sys/devices/system/cpu/online") {
        Ok(list) => {
            let n = count_cpu_list(&list);
            say!("cpus online: {} ({})", list.trim(), n.map_or("?".to_string(), |n| n.to_string()));
            n
        }
        Err(e) => {
            say!("cpus online: unknown (/sys/devices/system/cpu/online: {e})");
            None
        }
    }
}

/// Says how much memory the kernel has.
fn report_memory() {
    match mem_total_kib() {
        Some(k) => say!("memory: {k} kB ({} MiB)", k / 1024),
        None => say!("memory: unknown (/proc/meminfo)"),
    }
}

/// Loads the drivers that are modules (Debian's kernels build virtio as modules) and checks that
/// every virtio device on the command line registered; whether both went well.
fn load_modules(release: &str, cmdline: &str) -> bool {
    let mut ok = true;
    let mods = modules::load("/lib/modules", release, cmdline);
    if !mods.loaded.is_empty() || !mods.present.is_empty() {
        let present =
            if mods.present.is_empty() { String::new() } else { format!("; already loaded: {}", mods.present.join(" ")) };
        say!("modules: loaded {} in {} ms: {}{present}", mods.loaded.len(), mods.millis, mods.loaded.join(" "));
    }
    if let Some(why) = &mods.none {
        say!("modules: none loaded ({why})");
    }
    for f in &mods.failed {
        say!("modules: FAILED: {f}");
        ok = false;
    }
    if let Some(why) = modules::missing_virtio_devices(cmdline, "/sys/bus/virtio/devices") {
        say!("check virtio devices: FAILED ({why})");
        ok = false;
    }
    ok
}

/// Checks every `duet.expect_cpus=N` before ` -- ` on the kernel command line against the CPUs
/// online (`cpus`); whether all held.
fn check_expected_cpus(cmdline: &str, cpus: Option<u32>) -> bool {
    let mut ok = true;
    for word in cmdline.split_whitespace() {
        if word == "--" {
            break;
        }
        if let Some(want) = word.strip_prefix("duet.expect_cpus=") {
            match (want.parse::<u32>(), cpus) {
                (Ok(w), Some(h)) if w == h => say!("check cpus: ok"),
                (Ok(w), Some(h)) => {
                    say!("check cpus: FAILED (want {w}, have {h})");
                    ok = false;
                }
                (Ok(w), None) => {
                    say!("check cpus: FAILED (want {w}, have unknown)");
                    ok = false;
                }
                (Err(_), _) => {
                    say!("check cpus: FAILED (bad value {want:?})");
                    ok = false;
                }
            }
        }
    }
    ok
}

/// Runs `args` (non-empty) through `/bin/sh -c`, or an interactive shell for `shell`; its status
/// (128 + the signal that killed it, 1 if it could not run).
fn run_command(args: &[String]) -> u32 {
    let mut cmd = shell_command(args);
    match cmd.status() {
        Ok(st) => match (st.code(), st.signal()) {
            (Some(c), _) => c as u32,
            (None, Some(sig)) => {
                say!("command killed by signal {sig}");
                128 + sig as u32
            }
            (None, None) => 1,
        },
        Err(e) => {
            say!("cannot run /bin/sh: {e}");
            1
        }
    }
}

/// The `/bin/sh` that runs `args`: `-c` with the words joined, or, for `shell` alone, an
/// interactive shell with the console as its controlling terminal; a clean environment, in `/`.
fn shell_command(args: &[String]) -> Command {
    let mut cmd = Command::new("/bin/sh");
    let shell = args.len() == 1 && args.first().is_some_and(|a| a == "shell");
    if shell {
        say!("starting /bin/sh on the console");
        // SAFETY: setsid and ioctl are async-signal-safe; the closure allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 1);
                Ok(())
            });
        }
    } else {
        let line = args.join(" ");
        say!("running: {line}");
        cmd.arg("-c").arg(line);
    }
    cmd.env_clear()
        .env("PATH", "/bin:/sbin:/usr/bin:/usr/sbin")
        .env("HOME", "/")
        .env("TERM", "linux")
        .current_dir("/");
    cmd
}

fn power_off(port: &mut DebugPort, status: u32) -> ! {
    say!("exit status {status}");
    // Let the console transmit everything written so far: the VM ends the moment the exit port is
    // written, and output still queued in the tty would be lost.
    // SAFETY: plain calls on standard descriptors; a failure only risks losing the last lines.
    unsafe {
        libc::tcdrain(1);
        libc::tcdrain(2);
    }
    if port.ready() {
        if let Err(e) = port.exit(status) {
            say!("debug port: {e}");
        }
    }
    // Still running: not under duet (or its exit port failed). Power off the usual way.
    // SAFETY: plain syscalls.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
    say!("reboot(RB_POWER_OFF): {}", std::io::Error::last_os_error());
    loop {
        // SAFETY: plain syscall; PID 1 must never return.
        unsafe { libc::pause() };
    }
}

fn main() {
    let mut port = DebugPort::none();
    let status = run(&mut port);
    if !port.ready() {
        // The ioperm path faulted after setup: one more try through /dev/port.
        let _ = port.try_dev_port();
    }
    power_off(&mut port, status)
}

#[cfg(test)]
mod tests {
    use super::count_cpu_list;

    #[test]
    fn cpu_lists() {
        assert_eq!(count_cpu_list("0\n"), Some(1));
        assert_eq!(count_cpu_list("0-1\n"), Some(2));
        assert_eq!(count_cpu_list("0-1,4,6-7"), Some(5));
        assert_eq!(count_cpu_list("x"), None);
    }
}
