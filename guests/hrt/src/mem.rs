//! The C memory functions the compiler calls: string instructions only (no SSE).
//!
//! Each has the C library's contract (its `# Safety`). The string instructions go forward because
//! the direction flag is clear everywhere in the kernel: every entry and the trap path start with
//! `cld`, and `memmove`'s backward copy sets it again at once.

use core::arch::asm;

/// # Safety
/// `src` readable and `dest` writable for `n` bytes; the two do not overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract: both ranges valid for `n` bytes and disjoint; DF is clear.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dest
}

/// # Safety
/// `src` readable and `dest` writable for `n` bytes (they may overlap).
#[no_mangle]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize).wrapping_sub(src as usize) >= n {
        // No overlap that a forward copy would trip on.
        // SAFETY: the caller's contract (both ranges valid for `n` bytes); `dest` does not start
        // inside [src, src + n), so a forward copy reads each byte before it is overwritten.
        unsafe {
            asm!("rep movsb", inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _,
                 options(nostack, preserves_flags));
        }
    } else {
        // SAFETY: the caller's contract; `dest` starts inside [src, src + n), so the copy goes
        // backward from the last byte of each range (DF set for it, cleared again after).
        unsafe {
            asm!("std", "rep movsb", "cld",
                 inout("rcx") n => _, inout("rdi") dest.wrapping_add(n).wrapping_sub(1) => _,
                 inout("rsi") src.wrapping_add(n).wrapping_sub(1) => _,
                 options(nostack));
        }
    }
    dest
}

/// # Safety
/// `dest` writable for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dest: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract: `dest` valid for `n` bytes; DF is clear.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dest => _, in("al") c as u8,
             options(nostack, preserves_flags));
    }
    dest
}

/// # Safety
/// `a` and `b` readable for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n, and the caller's contract makes both ranges readable for `n` bytes.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return x as i32 - y as i32;
        }
        i += 1;
    }
    0
}

/// # Safety
/// As [`memcmp`].
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the same contract as memcmp's, passed on.
    unsafe { memcmp(a, b, n) }
}

/// The precompiled `core` refers to it; with panic=abort nothing calls it.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
