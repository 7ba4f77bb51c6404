//! Where the guest's console output goes.

use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// Most bytes a capture buffer keeps; later output is counted but dropped, so a chatty guest cannot
/// exhaust the VMM's memory.
pub const CAPTURE_LIMIT: usize = 16 << 20;

/// A capture buffer shared between the serial device and whoever reads the console afterwards.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    inner: Arc<Mutex<CaptureInner>>,
}

#[derive(Debug, Default)]
struct CaptureInner {
    bytes: Vec<u8>,
    dropped: u64,
}

impl Capture {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Everything captured so far.
    pub fn contents(&self) -> Vec<u8> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).bytes.clone()
    }

    /// Bytes dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).dropped
    }

    fn push(&self, data: &[u8]) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let room = CAPTURE_LIMIT.saturating_sub(inner.bytes.len());
        let take = room.min(data.len());
        inner.bytes.extend_from_slice(&data[..take]);
        inner.dropped += (data.len() - take) as u64;
    }
}

/// The serial console's output: the terminal, a buffer, a file, or nowhere.
#[derive(Debug)]
pub enum ConsoleSink {
    /// The VMM's standard output.
    Stdout,
    /// An in-memory buffer for embedders and tests.
    Capture(Capture),
    /// A file.
    File(File),
    /// Discarded.
    Null,
}

impl ConsoleSink {
    /// A second sink writing to the same place (the same terminal, buffer or file), for a second
    /// console writer such as the HRT's serial port in a partitioned VM.
    pub fn try_clone(&self) -> io::Result<ConsoleSink> {
        Ok(match self {
            ConsoleSink::Stdout => ConsoleSink::Stdout,
            ConsoleSink::Capture(c) => ConsoleSink::Capture(c.clone()),
            ConsoleSink::File(f) => ConsoleSink::File(f.try_clone()?),
            ConsoleSink::Null => ConsoleSink::Null,
        })
    }
}

impl Write for ConsoleSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ConsoleSink::Stdout => io::stdout().write(buf),
            ConsoleSink::Capture(c) => {
                c.push(buf);
                Ok(buf.len())
            }
            ConsoleSink::File(f) => f.write(buf),
            ConsoleSink::Null => Ok(buf.len()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            ConsoleSink::Stdout => io::stdout().flush(),
            ConsoleSink::File(f) => f.flush(),
            ConsoleSink::Capture(_) | ConsoleSink::Null => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_bytes_up_to_the_limit() {
        let c = Capture::new();
        let mut sink = ConsoleSink::Capture(c.clone());
        sink.write_all(b"hello").expect("write");
        assert_eq!(c.contents(), b"hello");
        let big = vec![b'x'; CAPTURE_LIMIT];
        sink.write_all(&big).expect("write");
        assert_eq!(c.contents().len(), CAPTURE_LIMIT);
        assert_eq!(c.dropped(), 5);
    }
}
