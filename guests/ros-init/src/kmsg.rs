//! The kernel's reports of user processes killed by a fault (`…: segfault at …`), copied to the
//! console after the command ran. A test kernel booted `quiet` keeps them out of the console; the
//! test harness needs them to tell the one known PVM flake (docs/platform.md) from a real crash.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;

/// The messages of every record in the kernel's log buffer whose text contains `needle`.
pub fn matching(needle: &str) -> Vec<String> {
    let Ok(mut kmsg) = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open("/dev/kmsg") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut record = [0u8; 2048];
    loop {
        // One record per read: "<level>,<seq>,<usec>,<flags>;<message>\n" then continuation lines.
        let n = match kmsg.read(&mut record) {
            Ok(0) => break,
            Ok(n) => n,
            // EPIPE: records were overwritten since the last read; go on with the next one.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        };
        let text = String::from_utf8_lossy(&record[..n]);
        let message = message(&text);
        if message.contains(needle) {
            found.push(message.to_string());
        }
    }
    found
}

/// The message of one /dev/kmsg record (after the prefix's `;`, without continuation lines).
fn message(record: &str) -> &str {
    record.split_once(';').map_or(record, |(_, m)| m).lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn the_message_is_what_follows_the_prefix() {
        let record = "6,812,5433412,-;sh[57]: segfault at 0 ip 00000000004a4d02 sp 00007ffd error 4 in busybox[401000+9c000]\n SUBSYSTEM=x\n";
        assert_eq!(message(record), "sh[57]: segfault at 0 ip 00000000004a4d02 sp 00007ffd error 4 in busybox[401000+9c000]");
        assert_eq!(message("no prefix"), "no prefix");
    }
}
