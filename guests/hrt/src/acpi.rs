//! Just enough ACPI to find the CPUs: RSDP (from the Multiboot2 info) → RSDT/XSDT → MADT.

use crate::mb2::{u32_at, u64_at, u8_at};

/// Most CPUs the MADT walk records.
pub const MAX_CPUS: usize = 64;

pub struct Madt {
    /// Local APIC physical address (with the type-5 override applied).
    pub lapic: u64,
    /// APIC IDs of the enabled processors (type 0 and type 9 entries).
    pub ids: [u32; MAX_CPUS],
    pub count: usize,
}

/// A system description table at physical `addr`, if mapped, sane and its checksum is right.
/// Standalone only: physical memory is read through the boot page tables' identity map of 4 GiB
/// (page 0 not mapped), and firmware tables are not written while the kernel runs.
fn table(addr: u64) -> Option<&'static [u8]> {
    if addr < 0x1000 || addr.checked_add(36)? > 1 << 32 {
        return None;
    }
    // SAFETY: [addr, addr + 36) lies in the identity-mapped 4 GiB above page 0 (checked), no Rust
    // object there is written meanwhile; read_unaligned needs no alignment.
    let len = unsafe { core::ptr::read_unaligned((addr + 4) as usize as *const u32) } as u64;
    if !(36..=1 << 20).contains(&len) || addr + len > 1 << 32 {
        return None;
    }
    // SAFETY: [addr, addr + len) lies in the identity-mapped 4 GiB above page 0 (checked); firmware
    // tables are not written while the kernel runs, so a shared 'static slice is fine.
    let t = unsafe { core::slice::from_raw_parts(addr as usize as *const u8, len as usize) };
    if checksum(t) != 0 {
        return None;
    }
    Some(t)
}

fn checksum(b: &[u8]) -> u8 {
    let mut sum = 0u8;
    for &x in b {
        sum = sum.wrapping_add(x);
    }
    sum
}

/// Errors, as the message to print.
pub type Error = &'static str;

/// Finds and parses the MADT. `rsdp` is the RSDP copy from the boot information.
pub fn madt(rsdp: &[u8]) -> Result<Madt, Error> {
    if rsdp.get(..8) != Some(&b"RSD PTR "[..]) || rsdp.len() < 20 {
        return Err("bad RSDP signature");
    }
    if checksum(rsdp.get(..20).unwrap_or(&[])) != 0 {
        return Err("bad RSDP checksum");
    }
    let revision = u8_at(rsdp, 15).unwrap_or(0);
    let xsdt = if revision >= 2 {
        u64_at(rsdp, 24).unwrap_or(0)
    } else {
        0
    };
    let (root, entry_size) = if xsdt != 0 {
        (table(xsdt).ok_or("bad XSDT")?, 8)
    } else {
        (
            table(u32_at(rsdp, 16).unwrap_or(0) as u64).ok_or("bad RSDT")?,
            4,
        )
    };
    let mut off = 36;
    let mut found = None;
    while off + entry_size <= root.len() {
        let addr = if entry_size == 8 {
            u64_at(root, off)
        } else {
            u32_at(root, off).map(u64::from)
        };
        off += entry_size;
        let Some(addr) = addr else { break };
        if let Some(t) = table(addr) {
            if t.get(..4) == Some(&b"APIC"[..]) {
                found = Some(t);
                break;
            }
        }
    }
    let t = found.ok_or("no MADT (\"APIC\" table)")?;
    let mut m = Madt {
        lapic: u32_at(t, 36).unwrap_or(0) as u64,
        ids: [0; MAX_CPUS],
        count: 0,
    };
    let mut off = 44;
    while let (Some(typ), Some(len)) = (u8_at(t, off), u8_at(t, off + 1)) {
        let len = len as usize;
        if len < 2 {
            break;
        }
        let e = t.get(off..off + len).unwrap_or(&[]);
        off += len;
        let (id, flags) = match typ {
            0 => (u8_at(e, 3).map(u32::from), u32_at(e, 4)),
            9 => (u32_at(e, 4), u32_at(e, 8)),
            5 => {
                if let Some(a) = u64_at(e, 4) {
                    m.lapic = a;
                }
                continue;
            }
            _ => continue,
        };
        let (Some(id), Some(flags)) = (id, flags) else {
            continue;
        };
        // Enabled only: "online capable" processors are hot-plug slots, not started at boot.
        if flags & 1 == 0 || m.ids.get(..m.count).is_some_and(|ids| ids.contains(&id)) {
            continue;
        }
        if let Some(slot) = m.ids.get_mut(m.count) {
            *slot = id;
            m.count += 1;
        }
    }
    Ok(m)
}
