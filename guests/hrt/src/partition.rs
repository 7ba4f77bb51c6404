//! The partition of a partitioned VM as duet describes it (the boot information's HVM tag,
//! [`abi::HvmInfo`]): read by core 0 at boot, stored once before the other cores go, read-only
//! after. Also the physical window through which the kernel reaches every guest-physical address
//! ([`pv`]), the RAM checks on addresses the ROS hands it ([`in_ros_ram`], [`in_ram`]) and the
//! count of cores in the service loop.

use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU32, Ordering};

use abi::{HvmInfo, MemRange};

use crate::boot::PHYS_MAP_BASE;

#[derive(Clone, Copy)]
pub struct Partition {
    pub info: HvmInfo,
    /// Guest-physical address of the canary page (canary.rs).
    pub canary: u64,
}

/// The partition as core 0 read it; written once by [`set`], read-only after.
static mut PARTITION: MaybeUninit<Partition> = MaybeUninit::uninit();
/// Cores other than 0 that reached the service loop.
static SERVING: AtomicU32 = AtomicU32::new(0);

/// Stores the partition description.
///
/// # Safety
/// Core 0 only, once, before any [`get`] and before it lets the other cores go (`GO`).
pub unsafe fn set(p: Partition) {
    // SAFETY: the caller's contract: nobody reads PARTITION yet, and nobody else writes it.
    unsafe { (*core::ptr::addr_of_mut!(PARTITION)).write(p) };
}

/// The partition description. Only after [`set`] (the other cores: after core 0 let them go).
pub fn get() -> &'static Partition {
    // SAFETY: only a partitioned VM's cores call this, after [`set`] initialized PARTITION: core 0
    // calls `set` before anything that reads the partition, the other cores wait in
    // `hrt_entry64` until core 0 stored GO after `set`. It is never written again, so a shared
    // 'static reference is fine.
    unsafe { (*core::ptr::addr_of!(PARTITION)).assume_init_ref() }
}

/// Counts one more core (other than 0) in the service loop.
pub fn count_serving() {
    SERVING.fetch_add(1, Ordering::AcqRel);
}

/// Cores other than 0 that reached the service loop.
pub fn serving() -> u32 {
    SERVING.load(Ordering::Acquire)
}

/// The virtual address of guest-physical `pa` in the physical window.
pub fn pv(pa: u64) -> u64 {
    PHYS_MAP_BASE.wrapping_add(pa)
}

/// Whether [addr, addr + len) lies wholly in `r`.
pub fn in_range(r: &MemRange, addr: u64, len: u64) -> bool {
    r.len != 0 && addr >= r.base && addr.checked_add(len).is_some_and(|end| end <= r.base.saturating_add(r.len))
}

/// Whether [addr, addr + len) lies wholly in one of the ROS's RAM ranges.
pub fn in_ros_ram(addr: u64, len: u64) -> bool {
    get().info.ros_ram.iter().any(|r| in_range(r, addr, len))
}

/// Whether [addr, addr + len) lies wholly in one RAM range, the ROS's or the HRT's (not MMIO, not
/// beyond the physical window).
pub fn in_ram(addr: u64, len: u64) -> bool {
    in_ros_ram(addr, len) || in_range(&get().info.hrt_ram, addr, len)
}
