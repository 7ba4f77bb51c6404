//! A writer for "newc" cpio archives (the format the Linux kernel unpacks as initramfs).
//!
//! Each entry: a 110-byte ASCII header (`070701` and 13 eight-digit hex fields: ino, mode, uid,
//! gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize including
//! the NUL, check), the NUL-terminated name, padding to 4 bytes, the data, padding to 4 bytes.
//! The archive ends with an entry named `TRAILER!!!`. Names are relative (`init`, `dev/console`);
//! parents must come before their children (the kernel does not create them).

use std::io::{self, Write};

/// File type bits of `mode`.
pub const S_IFDIR: u32 = 0o040_000;
/// Regular file.
pub const S_IFREG: u32 = 0o100_000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120_000;
/// Character device.
pub const S_IFCHR: u32 = 0o020_000;

/// Writes a newc archive. Owner root, mtime 0: the output depends on the contents only.
pub struct Writer<W: Write> {
    out: W,
    next_ino: u32,
    offset: u64,
}

struct Header<'a> {
    name: &'a str,
    mode: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
}

impl<W: Write> Writer<W> {
    /// A writer appending to `out`.
    pub fn new(out: W) -> Self {
        Writer { out, next_ino: 1, offset: 0 }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn pad4(&mut self) -> io::Result<()> {
        let pad = (4 - (self.offset % 4) as usize) % 4;
        self.put(&[0u8; 3][..pad])
    }

    fn entry(&mut self, h: Header<'_>, data: &[u8]) -> io::Result<()> {
        let name = h.name.trim_start_matches('/');
        if name.is_empty() || name.contains('\0') {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad cpio name {:?}", h.name)));
        }
        let ino = if name == "TRAILER!!!" { 0 } else { self.next_ino };
        self.next_ino += 1;
        let namesize = name.len() as u32 + 1;
        let fields = [ino, h.mode, 0, 0, h.nlink, 0, h.size, 0, 0, h.rdev.0, h.rdev.1, namesize, 0];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for f in fields {
            header.push_str(&format!("{f:08x}"));
        }
        self.put(header.as_bytes())?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad4()?;
        self.put(data)?;
        self.pad4()
    }

    /// A directory.
    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.entry(Header { name, mode: S_IFDIR | perm, nlink: 2, size: 0, rdev: (0, 0) }, &[])
    }

    /// A regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        let size = u32::try_from(data.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, format!("{name}: too large for cpio")))?;
        self.entry(Header { name, mode: S_IFREG | perm, nlink: 1, size, rdev: (0, 0) }, data)
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        let size = target.len() as u32;
        self.entry(Header { name, mode: S_IFLNK | 0o777, nlink: 1, size, rdev: (0, 0) }, target.as_bytes())
    }

    /// A character device node.
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(Header { name, mode: S_IFCHR | perm, nlink: 1, size: 0, rdev: (major, minor) }, &[])
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.entry(Header { name: "TRAILER!!!", mode: 0, nlink: 1, size: 0, rdev: (0, 0) }, &[])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// One parsed entry: name, mode, rdev, data.
    #[derive(Debug, PartialEq)]
    pub struct Entry {
        pub name: String,
        pub mode: u32,
        pub rdev: (u32, u32),
        pub data: Vec<u8>,
    }

    /// A strict newc reader, for the tests: checks magic, padding (zeros) and the trailer.
    pub fn parse(mut buf: &[u8]) -> Vec<Entry> {
        let total = buf.len();
        let mut out = Vec::new();
        loop {
            let start = total - buf.len();
            assert_eq!(start % 4, 0, "entry at unaligned offset {start}");
            assert_eq!(&buf[..6], b"070701");
            let field = |i: usize| {
                let s = std::str::from_utf8(&buf[6 + 8 * i..14 + 8 * i]).expect("ascii");
                u32::from_str_radix(s, 16).expect("hex")
            };
            let (mode, size, rdev, namesize) = (field(1), field(6) as usize, (field(9), field(10)), field(11) as usize);
            let name = std::str::from_utf8(&buf[110..110 + namesize - 1]).expect("utf8").to_string();
            assert_eq!(buf[110 + namesize - 1], 0, "name not NUL-terminated");
            let data_at = (110 + namesize + 3) & !3;
            assert!(buf[110 + namesize..data_at].iter().all(|&b| b == 0), "name padding");
            let next = (data_at + size + 3) & !3;
            assert!(buf[data_at + size..next].iter().all(|&b| b == 0), "data padding");
            let data = buf[data_at..data_at + size].to_vec();
            buf = &buf[next..];
            if name == "TRAILER!!!" {
                assert!(buf.is_empty(), "bytes after the trailer");
                return out;
            }
            out.push(Entry { name, mode, rdev, data });
        }
    }

    #[test]
    fn header_format() {
        let mut w = Writer::new(Vec::new());
        w.file("/init", 0o755, b"hello").expect("write");
        let buf = w.finish().expect("finish");
        let want = "070701\
            00000001\
            000081ed\
            00000000\
            00000000\
            00000001\
            00000000\
            00000005\
            00000000\
            00000000\
            00000000\
            00000000\
            00000005\
            00000000";
        assert_eq!(&buf[..110], want.as_bytes());
        // "init\0" = 5 bytes: 115 -> padded to 116; data 5 bytes -> 121, padded to 124.
        assert_eq!(&buf[110..116], b"init\0\0");
        assert_eq!(&buf[116..124], b"hello\0\0\0");
        assert_eq!(buf.len() % 4, 0);
    }

    #[test]
    fn padding_for_every_name_and_data_length() {
        for n in 1..9 {
            for d in 0..9 {
                let name = "n".repeat(n);
                let data = vec![0xaau8; d];
                let mut w = Writer::new(Vec::new());
                w.file(&name, 0o644, &data).expect("write");
                w.symlink("l", &"t".repeat(d + 1)).expect("write");
                let entries = parse(&w.finish().expect("finish"));
                assert_eq!(entries.len(), 2);
                assert_eq!(entries[0].name, name);
                assert_eq!(entries[0].data, data);
                assert_eq!(entries[1].data, "t".repeat(d + 1).as_bytes());
            }
        }
    }

    #[test]
    fn trailer() {
        let buf = Writer::new(Vec::new()).finish().expect("finish");
        assert_eq!(&buf[..6], b"070701");
        assert_eq!(&buf[94..102], b"0000000b"); // namesize: "TRAILER!!!" + NUL
        assert_eq!(&buf[110..121], b"TRAILER!!!\0");
        assert_eq!(buf.len(), 124);
        assert!(parse(&buf).is_empty());
    }

    #[test]
    fn device_nodes_dirs_and_links() {
        let mut w = Writer::new(Vec::new());
        w.dir("dev", 0o755).expect("write");
        w.char_dev("dev/console", 0o600, 5, 1).expect("write");
        w.char_dev("/dev/null", 0o666, 1, 3).expect("write");
        w.symlink("bin/sh", "busybox").expect("write");
        let buf = w.finish().expect("finish");
        let e = parse(&buf);
        assert_eq!(e[0], Entry { name: "dev".into(), mode: 0o040_755, rdev: (0, 0), data: vec![] });
        assert_eq!(e[1], Entry { name: "dev/console".into(), mode: 0o020_600, rdev: (5, 1), data: vec![] });
        assert_eq!(e[2], Entry { name: "dev/null".into(), mode: 0o020_666, rdev: (1, 3), data: vec![] });
        assert_eq!(e[3], Entry { name: "bin/sh".into(), mode: 0o120_777, rdev: (0, 0), data: b"busybox".to_vec() });
        // rdevmajor/rdevminor are fields 9 and 10 of the console's header.
        let at = buf.windows(12).position(|w| w == b"dev/console\0").expect("console name") - 110;
        assert_eq!(&buf[at + 6 + 8 * 9..at + 6 + 8 * 11], b"0000000500000001");
    }

    #[test]
    fn rejects_empty_names() {
        let mut w = Writer::new(Vec::new());
        assert!(w.file("/", 0o644, b"").is_err());
    }

    #[test]
    fn system_cpio_agrees() {
        // Cross-check with GNU cpio when installed (not required).
        let Ok(mut child) = std::process::Command::new("cpio")
            .arg("-it")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
        else {
            return;
        };
        let mut w = Writer::new(Vec::new());
        w.dir("bin", 0o755).expect("write");
        w.file("bin/busybox", 0o755, b"\x7fELF").expect("write");
        w.symlink("bin/sh", "busybox").expect("write");
        w.char_dev("console", 0o600, 5, 1).expect("write");
        let buf = w.finish().expect("finish");
        child.stdin.take().expect("stdin").write_all(&buf).expect("pipe");
        let out = child.wait_with_output().expect("cpio");
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "bin\nbin/busybox\nbin/sh\nconsole\n");
    }
}
