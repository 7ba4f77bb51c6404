//! The Intel MultiProcessor Specification 1.4 table: how an SMP Linux without ACPI finds its CPUs, the
//! IOAPIC and the ISA interrupt routing.
//!
//! Written by hand because no maintained crate provides it; the format is small and fixed. Entries are
//! assembled as bytes and copied into guest memory (no references into guest memory).

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::layout::{BIOS_AREA_END, IOAPIC_START, LAPIC_START, MPTABLE_START};

/// Most CPUs duet describes (APIC IDs are one byte; one ID is the IOAPIC's).
pub const MAX_CPUS: u8 = 254;
const LAPIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
/// Interrupt pins of KVM's in-kernel IOAPIC.
const IOAPIC_PINS: u8 = 24;
const CPU_ENABLED: u8 = 1;
const CPU_BOOTSTRAP: u8 = 2;
const INT_TYPE_INT: u8 = 0;
const INT_TYPE_NMI: u8 = 1;
const INT_TYPE_EXTINT: u8 = 3;

/// Errors writing the MP table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MpTableError {
    /// Zero or too many CPUs.
    #[error("the MP table describes 1 to {MAX_CPUS} CPUs, not {0}")]
    CpuCount(usize),
    /// The table outgrew the space reserved for it.
    #[error("the MP table needs {0} bytes, more than fit in the BIOS area")]
    TooLarge(usize),
    /// Guest memory does not cover the table's place.
    #[error("guest memory does not cover the MP table at {MPTABLE_START:#x}")]
    Write,
}

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b)))
}

/// Builds the MP floating pointer plus configuration table for CPUs with the given APIC IDs (the first is
/// the bootstrap processor). The IOAPIC gets the ID after the highest CPU's. Returns the bytes to place at
/// [`MPTABLE_START`].
pub fn build(apic_ids: &[u8]) -> Result<Vec<u8>, MpTableError> {
    if apic_ids.is_empty() || apic_ids.len() > MAX_CPUS as usize {
        return Err(MpTableError::CpuCount(apic_ids.len()));
    }
    let ioapic_id = apic_ids.iter().copied().max().unwrap_or(0).saturating_add(1);
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for (i, id) in apic_ids.iter().enumerate() {
        let flags = CPU_ENABLED | if i == 0 { CPU_BOOTSTRAP } else { 0 };
        entries.extend_from_slice(&[0, *id, LAPIC_VERSION, flags]);
        entries.extend_from_slice(&0x600u32.to_le_bytes()); // CPU signature: family 6
        entries.extend_from_slice(&0x201u32.to_le_bytes()); // features: FPU, APIC
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[1, 0]); // bus 0
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    entries.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, CPU_ENABLED]);
    entries.extend_from_slice(&(IOAPIC_START as u32).to_le_bytes());
    count += 1;
    // ISA IRQ i goes to IOAPIC pin i (KVM's default routing), plus the 8259 as ExtINT on pin 0.
    entries.extend_from_slice(&[3, INT_TYPE_EXTINT, 0, 0, 0, 0, ioapic_id, 0]);
    count += 1;
    for irq in 1..IOAPIC_PINS {
        entries.extend_from_slice(&[3, INT_TYPE_INT, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // Local interrupts on every LAPIC (0xff): LINT0 = ExtINT, LINT1 = NMI.
    entries.extend_from_slice(&[4, INT_TYPE_EXTINT, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, INT_TYPE_NMI, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let table_addr = MPTABLE_START as u32 + 16;
    let mut table = Vec::with_capacity(44 + entries.len());
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    table.push(4); // spec revision 1.4
    table.push(0); // checksum, below
    table.extend_from_slice(b"DUET    ");
    table.extend_from_slice(b"DUET VM     ");
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&count.to_le_bytes());
    table.extend_from_slice(&(LAPIC_START as u32).to_le_bytes());
    table.extend_from_slice(&[0; 4]); // extended table length, checksum, reserved
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut out = Vec::with_capacity(16 + table.len());
    out.extend_from_slice(b"_MP_");
    out.extend_from_slice(&table_addr.to_le_bytes());
    out.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]); // length (16-byte units), revision, checksum, features
    out[10] = checksum(&out);
    out.extend_from_slice(&table);
    if MPTABLE_START as usize + out.len() > BIOS_AREA_END as usize {
        return Err(MpTableError::TooLarge(out.len()));
    }
    Ok(out)
}

/// Builds the MP table for `vcpus` CPUs with APIC IDs 0..vcpus and writes it at [`MPTABLE_START`].
pub fn write<M: GuestMemoryBackend>(mem: &M, vcpus: u8) -> Result<(), MpTableError> {
    let ids: Vec<u8> = (0..vcpus).collect();
    let bytes = build(&ids)?;
    mem.write_slice(&bytes, GuestAddress(MPTABLE_START)).map_err(|_| MpTableError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryMmap;

    #[test]
    fn floating_pointer_and_table_checksum_to_zero() {
        let t = build(&[0, 1, 2, 3]).expect("build");
        assert_eq!(&t[..4], b"_MP_");
        assert_eq!(t[..16].iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let len = u16::from_le_bytes([t[20], t[21]]) as usize;
        assert_eq!(&t[16..20], b"PCMP");
        assert_eq!(t[16..16 + len].iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        assert_eq!(16 + len, t.len());
        let ptr = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
        assert_eq!(u64::from(ptr), MPTABLE_START + 16);
    }

    #[test]
    fn lists_every_cpu_with_the_first_as_bootstrap() {
        let t = build(&[0, 1, 2]).expect("build");
        let entries = &t[16 + 44..];
        for i in 0..3 {
            let e = &entries[i * 20..i * 20 + 20];
            assert_eq!(e[0], 0, "processor entry");
            assert_eq!(e[1], i as u8, "APIC id");
            assert_eq!(e[3] & CPU_BOOTSTRAP != 0, i == 0);
            assert!(e[3] & CPU_ENABLED != 0);
        }
        let count = u16::from_le_bytes([t[16 + 34], t[16 + 35]]);
        assert_eq!(count as usize, 3 + 1 + 1 + 24 + 2);
        // The IOAPIC entry follows the bus and takes the next free ID.
        let io = &entries[3 * 20 + 8..3 * 20 + 16];
        assert_eq!((io[0], io[1]), (2, 3));
    }

    #[test]
    fn cpu_count_is_bounded() {
        assert_eq!(build(&[]), Err(MpTableError::CpuCount(0)));
        let many: Vec<u8> = (0..=254).collect();
        assert_eq!(build(&many), Err(MpTableError::CpuCount(255)));
        let most: Vec<u8> = (0..MAX_CPUS).collect();
        assert!(build(&most).is_ok_and(|t| MPTABLE_START as usize + t.len() <= BIOS_AREA_END as usize));
    }

    #[test]
    fn writes_into_guest_memory() {
        let mem: GuestMemoryMmap<()> =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).expect("anonymous memory");
        write(&mem, 2).expect("write");
        let mut sig = [0u8; 4];
        mem.read_slice(&mut sig, GuestAddress(MPTABLE_START)).expect("read");
        assert_eq!(&sig, b"_MP_");
    }
}
