//! duet's debug port: how a guest ends the VM with a status and marks points in time.
//!
//! | port | access | meaning |
//! |---|---|---|
//! | 0xf4 | write 1, 2 or 4 bytes | exit: the port's [`ExitSink`] gets the status (the VM stops; in a partitioned VM the HRT's port ends only the HRT) |
//! | 0xf4–0xf7 | read | the signature bytes `"DUET"` (a 4-byte read at 0xf4 gives all four), so a guest can detect duet |
//! | 0xf8 | write 1, 2 or 4 bytes | mark: the VMM records the host time of the write with this code |
//!
//! Mark codes below 0x100 are reserved for duet ([`MARK_INIT`], …); guests may use the rest. The full
//! description is in `docs/debug-port.md`. One device serves every partition: where its exits go and how
//! its marks are tagged ([`HRT_MARK_BIT`]) are its parameters.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::bus::PioDevice;
use crate::stop::{StopRequest, StopSignal};

/// First port of the device.
pub const DEBUG_PORT: u16 = 0xf4;
/// Ports covered (0xf4..=0xfb).
pub const DEBUG_PORTS: u16 = 8;
/// Offset of the exit register.
pub const EXIT_OFFSET: u16 = 0;
/// Offset of the mark register.
pub const MARK_OFFSET: u16 = 4;
/// Mark code: Linux reached duet's init (PID 1 started).
pub const MARK_INIT: u32 = 1;
/// Mark code: a kernel reached its first instruction.
pub const MARK_KERNEL_ENTRY: u32 = 2;
/// Mark code: a kernel reached its main function.
pub const MARK_KERNEL_MAIN: u32 = 3;
/// What reads of the exit register return.
pub const SIGNATURE: [u8; 4] = *b"DUET";
/// Set on the codes of marks written by the HRT of a partitioned VM, so they stay apart from the ROS's.
pub const HRT_MARK_BIT: u32 = 1 << 31;

/// Where a debug port's exit writes go: the VM's stop signal, or (for the HRT of a partitioned VM)
/// the HRT's lifecycle, which contains the exit.
pub trait ExitSink: Send + Sync {
    /// The guest wrote `status` to the exit register.
    fn exit(&self, status: u32);
}

impl ExitSink for StopSignal {
    fn exit(&self, status: u32) {
        self.request(StopRequest::Exit(status));
    }
}

/// A point in time a guest marked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    /// The code the guest wrote.
    pub code: u32,
    /// When the VMM saw it.
    pub at: Instant,
    /// What the port's [`MarkProbe`] sampled at that moment (empty without one).
    pub counters: Vec<u64>,
}

/// Samples counters at the moment of a mark. The VMM gives the debug port one that reads each
/// vCPU's KVM statistics, so that a guest can bracket a phase with two marks and learn its VM exits.
/// The meaning of the values is the probe's.
pub trait MarkProbe: Send + Sync {
    /// The counters now.
    fn sample(&self) -> Vec<u64>;
}

/// Marks recorded so far, shared with the VMM.
pub type Marks = Arc<Mutex<Vec<Mark>>>;

/// Most marks kept (a guest writing marks in a loop must not grow the VMM without bound).
pub const MAX_MARKS: usize = 4096;

/// The debug port device.
pub struct DebugPort {
    exit: Arc<dyn ExitSink>,
    marks: Marks,
    /// OR-ed into every mark code ([`HRT_MARK_BIT`] for the HRT of a partitioned VM, else 0).
    mark_tag: u32,
    probe: Option<Arc<dyn MarkProbe>>,
}

impl std::fmt::Debug for DebugPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DebugPort")
            .field("mark_tag", &self.mark_tag)
            .field("probe", &self.probe.is_some())
            .finish_non_exhaustive()
    }
}

impl DebugPort {
    /// A port whose exits go to `exit` and whose marks are recorded into `marks`.
    pub fn new(exit: Arc<dyn ExitSink>, marks: Marks) -> Self {
        DebugPort { exit, marks, mark_tag: 0, probe: None }
    }

    /// The same port, sampling `probe` at every mark.
    pub fn with_probe(mut self, probe: Arc<dyn MarkProbe>) -> Self {
        self.probe = Some(probe);
        self
    }

    /// The same port, OR-ing `tag` into every mark code.
    pub fn with_mark_tag(mut self, tag: u32) -> Self {
        self.mark_tag = tag;
        self
    }
}

/// Records a mark with `code` into `marks` (at most [`MAX_MARKS`]), sampling `probe` if any.
pub fn record_mark(marks: &Marks, code: u32, probe: Option<&dyn MarkProbe>) {
    let at = Instant::now();
    let counters = probe.map(MarkProbe::sample).unwrap_or_default();
    let mut marks = marks.lock().unwrap_or_else(|p| p.into_inner());
    if marks.len() < MAX_MARKS {
        marks.push(Mark { code, at, counters });
    }
}

fn value(data: &[u8]) -> Option<u32> {
    match data.len() {
        1 | 2 | 4 => {
            let mut b = [0u8; 4];
            b[..data.len()].copy_from_slice(data);
            Some(u32::from_le_bytes(b))
        }
        _ => None,
    }
}

impl PioDevice for DebugPort {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = SIGNATURE.get(usize::from(offset) + i).copied().unwrap_or(0);
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        let Some(v) = value(data) else { return };
        match offset {
            EXIT_OFFSET => self.exit.exit(v),
            MARK_OFFSET => record_mark(&self.marks, v | self.mark_tag, self.probe.as_deref()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port() -> (DebugPort, Arc<StopSignal>, Marks) {
        let stop = Arc::new(StopSignal::new().expect("eventfd"));
        let marks = Marks::default();
        (DebugPort::new(stop.clone(), marks.clone()), stop, marks)
    }

    #[test]
    fn exit_write_requests_a_stop_with_the_status() {
        let (mut p, stop, _) = port();
        p.write(EXIT_OFFSET, &7u32.to_le_bytes());
        assert_eq!(stop.requested(), Some(StopRequest::Exit(7)));
    }

    #[test]
    fn byte_wide_exit_works_too() {
        let (mut p, stop, _) = port();
        p.write(EXIT_OFFSET, &[42]);
        assert_eq!(stop.requested(), Some(StopRequest::Exit(42)));
    }

    #[test]
    fn marks_are_recorded_in_order_and_bounded() {
        let (mut p, _, marks) = port();
        p.write(MARK_OFFSET, &MARK_INIT.to_le_bytes());
        p.write(MARK_OFFSET, &[9, 0]);
        let m = marks.lock().expect("lock").clone();
        assert_eq!(m.iter().map(|m| m.code).collect::<Vec<_>>(), vec![1, 9]);
        assert!(m[0].at <= m[1].at);
        for _ in 0..MAX_MARKS + 10 {
            p.write(MARK_OFFSET, &[1]);
        }
        assert_eq!(marks.lock().expect("lock").len(), MAX_MARKS);
    }

    #[test]
    fn odd_sizes_and_offsets_are_ignored() {
        let (mut p, stop, marks) = port();
        p.write(EXIT_OFFSET, &[1, 2, 3]);
        p.write(2, &[1]);
        assert_eq!(stop.requested(), None);
        assert!(marks.lock().expect("lock").is_empty());
    }

    #[test]
    fn reads_return_the_signature() {
        let (mut p, _, _) = port();
        let mut b = [0u8; 4];
        p.read(EXIT_OFFSET, &mut b);
        assert_eq!(&b, b"DUET");
        let mut one = [0u8; 1];
        p.read(1, &mut one);
        assert_eq!(one, *b"U", "a byte read at 0xf5 gives the signature's second byte");
        p.read(MARK_OFFSET, &mut one);
        assert_eq!(one, [0]);
    }

    #[test]
    fn exits_go_to_the_sink_and_marks_carry_the_tag() {
        struct Record(Mutex<Vec<u32>>);
        impl ExitSink for Record {
            fn exit(&self, status: u32) {
                self.0.lock().expect("lock").push(status);
            }
        }
        let sink = Arc::new(Record(Mutex::new(Vec::new())));
        let marks = Marks::default();
        let mut p = DebugPort::new(sink.clone(), marks.clone()).with_mark_tag(HRT_MARK_BIT);
        p.write(EXIT_OFFSET, &[3, 0]);
        p.write(MARK_OFFSET, &5u32.to_le_bytes());
        assert_eq!(*sink.0.lock().expect("lock"), vec![3]);
        assert_eq!(marks.lock().expect("lock")[0].code, 5 | HRT_MARK_BIT);
    }
}
