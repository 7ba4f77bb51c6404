//! Invoke function 17, split execution (docs/forwarding.md): the ROS function a [`SplitCall`] in
//! the merged process's memory describes runs at CPL3 on this core (user.rs), its system calls and
//! page faults forwarded on the core's channel (fwd.rs).

use forwarder::layout::{SplitCall, SPLIT_EXCEPTION, SPLIT_NO_CHANNEL};

use crate::fwd::{self, FORWARD_NOT_MAPPED};
use crate::merge::{self, user_read_u64, user_region_mapped, user_write_u64};
use crate::user::{self, Outcome};

/// Function 17: `va` = a [`SplitCall`] in merged memory. Runs `entry(arg)` at CPL3 on this core
/// (user.rs) and writes the outputs into the record. Returns the status.
pub fn split(core: u32, va: u64) -> u64 {
    let words = core::mem::size_of::<SplitCall>() as u64 / 8;
    if !va.is_multiple_of(64) || !user_region_mapped(va, words * 8) {
        return FORWARD_NOT_MAPPED;
    }
    let mut input = [0u64; 4];
    for (i, w) in input.iter_mut().enumerate() {
        *w = user_read_u64(va + 8 * i as u64).unwrap_or(0);
    }
    let [entry, arg, stack, fs_base] = input;
    let out = if !fwd::attached(core) {
        Outcome { status: SPLIT_NO_CHANNEL, result: 0, syscalls: 0, page_faults: 0 }
    } else if entry >= 1 << 47 || stack >= 1 << 47 || fs_base >= 1 << 47 {
        Outcome { status: SPLIT_EXCEPTION + 13, result: entry, syscalls: 0, page_faults: 0 }
    } else {
        // The process may have changed its own mappings since this core last looked (its own
        // mmap/munmap/brk, not forwarded from here): drop this core's cached translations first.
        merge::resync();
        merge::touch_tables();
        merge::flush_tlb();
        user::run(core, entry, arg, stack, fs_base)
    };
    for (i, v) in [out.result, out.status, out.syscalls, out.page_faults].into_iter().enumerate() {
        user_write_u64(va + 32 + 8 * i as u64, v);
    }
    out.status
}
