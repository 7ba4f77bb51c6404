//! The canary page of a partitioned VM (invoke functions 2 and 3): a page of
//! [`func::CANARY_WORD`] in HRT RAM (bss), which the ROS must be unable to change.

use core::ptr::{read_volatile, write_volatile};

use abi::func;

#[repr(C, align(4096))]
struct Page([u64; 512]);
static mut PAGE: Page = Page([0; 512]);

/// The page's first word (`Page` is `repr(C)`: its array starts it).
fn words() -> *mut u64 {
    core::ptr::addr_of_mut!(PAGE).cast::<u64>()
}

/// The page's (kernel) virtual address.
pub fn vaddr() -> u64 {
    words() as u64
}

/// Fills every word with [`func::CANARY_WORD`] (core 0, at boot).
pub fn fill() {
    for i in 0..512 {
        // SAFETY: word i < 512 of the page (aligned); core 0 writes it at boot, before the other
        // cores go and before any invoke can check it, and no reference to the page exists.
        unsafe { write_volatile(words().add(i), func::CANARY_WORD) };
    }
}

/// Function 2: [`func::CANARY_WORD`] if every word of the page still holds it, else 0.
pub fn check() -> u64 {
    for i in 0..512 {
        // SAFETY: word i < 512 of the page (aligned); only `fill` writes it, before any invoke.
        if unsafe { read_volatile(words().add(i)) } != func::CANARY_WORD {
            return 0;
        }
    }
    func::CANARY_WORD
}
