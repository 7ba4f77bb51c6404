//! The HRT's view of duet's debug port in a partitioned VM: an exit ends the HRT (contained, reported
//! to the ROS), not the VM; marks are recorded with bit 31 set so they stay apart from the ROS's.

use std::sync::{Arc, Weak};
use std::time::Instant;

use devices::bus::PioDevice;
use devices::debug_port::{Mark, Marks, EXIT_OFFSET, MARK_OFFSET, MAX_MARKS, SIGNATURE};

use super::Hvm;

/// Bit set on marks written by the HRT of a partitioned VM.
pub const HRT_MARK_BIT: u32 = 1 << 31;

/// The debug port on the HRT's bus.
pub struct HrtDebugPort {
    hvm: Weak<Hvm>,
    marks: Marks,
}

impl HrtDebugPort {
    /// A port reporting to `hvm`.
    pub fn new(hvm: &Arc<Hvm>, marks: Marks) -> Self {
        HrtDebugPort { hvm: Arc::downgrade(hvm), marks }
    }
}

fn value(data: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    let n = data.len().min(4);
    b[..n].copy_from_slice(&data[..n]);
    u32::from_le_bytes(b)
}

impl PioDevice for HrtDebugPort {
    fn read(&mut self, offset: u16, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = SIGNATURE.get(usize::from(offset) + i).copied().unwrap_or(0xff);
        }
    }

    fn write(&mut self, offset: u16, data: &[u8]) {
        match offset {
            EXIT_OFFSET => {
                if let Some(hvm) = self.hvm.upgrade() {
                    hvm.hrt_exited(value(data));
                }
            }
            MARK_OFFSET => {
                let mut marks = self.marks.lock().unwrap_or_else(|p| p.into_inner());
                if marks.len() < MAX_MARKS {
                    marks.push(Mark { code: value(data) | HRT_MARK_BIT, at: Instant::now() });
                }
            }
            _ => {}
        }
    }
}
