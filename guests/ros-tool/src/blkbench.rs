//! `hvm blkbench DEV [SEQ_MIB] [RAND_OPS]`: block-device throughput as the guest sees it, for
//! `cargo bench --bench virtio_blk` (busybox's dd cannot do random reads). No hypercall.
//!
//! Opens DEV with `O_DIRECT` (no page cache: every read is a request to the device), reads SEQ_MIB
//! MiB sequentially in 1 MiB requests, then RAND_OPS 4 KiB reads at random aligned offsets
//! (xorshift, fixed seed), and prints one line:
//! `blkbench seq_mib=N seq_s=F seq_mib_s=F rand_ops=N rand_s=F rand_iops=F`.

use std::os::unix::fs::FileExt;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Instant;

use crate::error::Error;

const MIB: usize = 1 << 20;
const PAGE: usize = 4096;

fn number(what: &str, s: Option<&String>, default: usize) -> Result<usize, Error> {
    match s {
        None => Ok(default),
        Some(s) => s.parse().map_err(|_| Error::usage(format!("blkbench: {what} must be a number, got {s:?}"))),
    }
}

/// Runs `hvm blkbench ARGS`.
pub fn run(args: &[String]) -> Result<(), Error> {
    let Some(dev) = args.first() else {
        return Err(Error::usage("usage: hvm blkbench DEV [SEQ_MIB] [RAND_OPS]"));
    };
    let seq_mib = number("SEQ_MIB", args.get(1), 64)?;
    let rand_ops = number("RAND_OPS", args.get(2), 2000)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(dev)
        .map_err(|e| Error::failed(format!("blkbench: open {dev}: {e}")))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let size = if size == 0 {
        use std::io::{Seek, SeekFrom};
        (&file).seek(SeekFrom::End(0)).map_err(|e| Error::failed(format!("blkbench: size of {dev}: {e}")))?
    } else {
        size
    };
    let mibs = (size / MIB as u64).max(1);
    let pages = (size / PAGE as u64).max(1);
    // O_DIRECT needs an aligned buffer: over-allocate and start at the first page boundary.
    let mut raw = vec![0u8; MIB + PAGE];
    let skew = raw.as_ptr().align_offset(PAGE).min(PAGE);
    let buf = &mut raw[skew..skew + MIB];
    let read = |buf: &mut [u8], at: u64| {
        file.read_exact_at(buf, at).map_err(|e| Error::failed(format!("blkbench: read {dev} at {at}: {e}")))
    };

    let start = Instant::now();
    for i in 0..seq_mib as u64 {
        read(buf, (i % mibs) * MIB as u64)?;
    }
    let seq_s = start.elapsed().as_secs_f64();

    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let start = Instant::now();
    for _ in 0..rand_ops {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        read(&mut buf[..PAGE], (x % pages) * PAGE as u64)?;
    }
    let rand_s = start.elapsed().as_secs_f64();
    let per = |n: usize, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
    out!(
        "blkbench seq_mib={seq_mib} seq_s={seq_s:.3} seq_mib_s={:.1} rand_ops={rand_ops} rand_s={rand_s:.3} rand_iops={:.0}",
        per(seq_mib, seq_s),
        per(rand_ops, rand_s)
    );
    Ok(())
}
