//! The HRT's view of duet's debug port in a partitioned VM: an exit ends the HRT (contained, reported
//! to the ROS), not the VM; marks are recorded with bit 31 set so they stay apart from the ROS's.

use std::sync::{Arc, Weak};

use devices::bus::PioDevice;
use devices::debug_port::{record_mark, MarkProbe, Marks, EXIT_OFFSET, MARK_OFFSET, SIGNATURE};

use super::Hvm;

/// Bit set on marks written by the HRT of a partitioned VM.
pub const HRT_MARK_BIT: u32 = 1 << 31;

/// The debug port on the HRT's bus.
pub struct HrtDebugPort {
    hvm: Weak<Hvm>,
    marks: Marks,
    probe: Option<Arc<dyn MarkProbe>>,
}

impl HrtDebugPort {
    /// A port reporting to `hvm`.
    pub fn new(hvm: &Arc<Hvm>, marks: Marks, probe: Option<Arc<dyn MarkProbe>>) -> Self {
        HrtDebugPort { hvm: Arc::downgrade(hvm), marks, probe }
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
            MARK_OFFSET => record_mark(&self.marks, value(data) | HRT_MARK_BIT, self.probe.as_deref()),
            _ => {}
        }
    }
}
