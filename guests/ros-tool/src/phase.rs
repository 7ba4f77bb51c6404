//! Measured phases, bracketed by two marks on duet's debug port, and the `bench-phase=` line that
//! says which (benchline::PhaseLine).

use std::sync::atomic::{AtomicU32, Ordering};

use benchline::PhaseLine;

use crate::hcall::Port;

/// The next phase's first mark code (guests' codes start at 0x100; the forward bench's phases use
/// 0x1000 and up, two each).
static NEXT_MARK: AtomicU32 = AtomicU32::new(0x1000);

/// A measured phase, bracketed by two marks on duet's debug port. The VMM samples every vCPU's KVM
/// counters at each mark, so the host can divide the VM exits (and, on PVM, the emulated ring-0
/// instructions) between the two by the phase's calls. The marks' own exits are in the count.
pub struct Phase<'a> {
    port: &'a Port,
    code: u32,
}

impl<'a> Phase<'a> {
    /// Marks the start of a phase.
    pub fn begin(port: &'a Port) -> Phase<'a> {
        let code = NEXT_MARK.fetch_add(2, Ordering::Relaxed);
        port.mark(code);
        Phase { port, code }
    }

    /// Marks its end; the line that tells the host what the two marks bracket:
    /// `bench-phase=NAME calls=N begin=0x.. end=0x..`.
    pub fn end(self, name: &str, calls: u64) -> String {
        self.port.mark(self.code + 1);
        PhaseLine { name: name.to_string(), calls, begin: self.code, end: self.code + 1 }.to_string()
    }
}
