//! The demo path on real KVM: `duet run` with the guest's console on stdin/stdout, duet's init starting
//! an interactive busybox shell, and a command typed into it through the VMM's console input.

use std::io::{BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use duet_tests::guest_image;

#[test]
fn a_command_typed_on_the_console_runs_in_the_guest_shell() {
    let out = Command::new(env!("CARGO_BIN_EXE_duet"))
        .args(["run", "--timeout", "1500", "--vcpus", "1", "--memory", "256M"])
        .arg("--kernel")
        .arg(guest_image("vmlinux-test"))
        .arg("--initramfs")
        .arg(guest_image("initramfs.cpio"))
        .args(["--cmdline", "console=ttyS0 quiet init_on_alloc=0 lpj=5000000 mitigations=off -- shell"])
        .arg("/dev/null") // no file: every setting comes from the command line
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start duet");
    let mut child = out;
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // The console is raw bytes; the prompt has no newline, so read in chunks.
        let mut reader = BufReader::new(stdout);
        let mut buf = [0u8; 256];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    });
    let deadline = Instant::now() + Duration::from_secs(1500);
    let mut seen = String::new();
    let mut typed = false;
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(chunk) => seen.push_str(&chunk),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if !typed && seen.contains("/ # ") {
            stdin.write_all(b"echo typed-$((6*7)); exit 5\n").expect("type into the console");
            stdin.flush().expect("flush");
            typed = true;
        }
    }
    let status = child.wait().expect("wait for duet");
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let tail: String = seen.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    assert!(typed, "the shell prompt never appeared:\n{tail}\n{stderr}");
    assert!(seen.contains("typed-42"), "the typed command did not run:\n{tail}\n{stderr}");
    assert_eq!(status.code(), Some(5), "duet exits with the shell's status:\n{tail}\n{stderr}");
}
