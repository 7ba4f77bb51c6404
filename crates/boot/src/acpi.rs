//! ACPI tables that make a Multiboot2 VM look like a PC to a specialized kernel: an RSDP where firmware
//! leaves it (0xE0000–0xFFFFF) and in the Multiboot2 information, an XSDT, and a MADT listing every
//! CPU's local APIC and the IOAPIC. Built with the `acpi_tables` crate.
//!
//! The Linux ROS keeps booting from the MP table: duet's test kernel has no ACPI, and a distribution
//! kernel given a MADT without a FADT would have to fall back anyway.

use acpi_tables::madt::{EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::layout::{IOAPIC_START, LAPIC_START, MPTABLE_START};

/// Where duet puts its ACPI tables (the RSDP first, 16-byte aligned, inside the BIOS search area).
pub const ACPI_START: u64 = 0xe_0000;
const OEM_ID: [u8; 6] = *b"DUET  ";
const OEM_TABLE_ID: [u8; 8] = *b"DUETVM  ";

/// Errors building the tables.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AcpiError {
    /// Zero or too many CPUs.
    #[error("the MADT lists 1 to 255 CPUs, not {0}")]
    CpuCount(usize),
    /// The tables outgrew their space.
    #[error("the ACPI tables need {0} bytes, more than fit below the MP table")]
    TooLarge(usize),
    /// Guest memory does not cover the tables' place.
    #[error("guest memory does not cover the ACPI tables at {ACPI_START:#x}")]
    Write,
}

fn bytes(table: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    table.to_aml_bytes(&mut v);
    v
}

/// The tables for CPUs with the given APIC IDs, laid out from [`ACPI_START`]: RSDP, XSDT, MADT.
/// Returns the bytes and the RSDP's length (36: ACPI 2.0+).
pub fn build(apic_ids: &[u8]) -> Result<(Vec<u8>, usize), AcpiError> {
    if apic_ids.is_empty() || apic_ids.len() > 255 {
        return Err(AcpiError::CpuCount(apic_ids.len()));
    }
    let ioapic_id = apic_ids.iter().copied().max().unwrap_or(0).saturating_add(1);
    let mut madt = MADT::new(OEM_ID, OEM_TABLE_ID, 1, LocalInterruptController::Address(LAPIC_START as u32));
    for (uid, id) in apic_ids.iter().enumerate() {
        madt.add_structure(ProcessorLocalApic::new(uid as u8, *id, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(ioapic_id, IOAPIC_START as u32, 0));
    let madt = bytes(&madt);

    let rsdp_len = Rsdp::len();
    let xsdt_at = ACPI_START + (rsdp_len as u64).next_multiple_of(16);
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, 1);
    // The XSDT holds one 8-byte entry: its own header (36 bytes) + 8.
    let madt_at = xsdt_at + (36u64 + 8).next_multiple_of(16);
    xsdt.add_entry(madt_at);
    let xsdt = bytes(&xsdt);
    let rsdp = bytes(&Rsdp::new(OEM_ID, xsdt_at));

    let total = (madt_at - ACPI_START) as usize + madt.len();
    if ACPI_START as usize + total > MPTABLE_START as usize {
        return Err(AcpiError::TooLarge(total));
    }
    let mut out = vec![0u8; total];
    out[..rsdp.len()].copy_from_slice(&rsdp);
    let x = (xsdt_at - ACPI_START) as usize;
    out[x..x + xsdt.len()].copy_from_slice(&xsdt);
    let m = (madt_at - ACPI_START) as usize;
    out[m..m + madt.len()].copy_from_slice(&madt);
    Ok((out, rsdp_len))
}

/// Builds the tables for APIC IDs 0..vcpus and writes them at [`ACPI_START`]; returns the RSDP bytes
/// (for the Multiboot2 ACPI tag).
pub fn write<M: GuestMemoryBackend>(mem: &M, vcpus: u8) -> Result<Vec<u8>, AcpiError> {
    let ids: Vec<u8> = (0..vcpus).collect();
    let (tables, rsdp_len) = build(&ids)?;
    mem.write_slice(&tables, GuestAddress(ACPI_START)).map_err(|_| AcpiError::Write)?;
    Ok(tables[..rsdp_len].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |a, x| a.wrapping_add(*x))
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
    }

    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from(u32_at(b, o)) | (u64::from(u32_at(b, o + 4)) << 32)
    }

    #[test]
    fn rsdp_xsdt_madt_chain_with_valid_checksums() {
        let (t, rsdp_len) = build(&[0, 1, 2]).expect("build");
        assert_eq!(rsdp_len, 36);
        assert_eq!(&t[..8], b"RSD PTR ");
        assert_eq!(sum(&t[..20]), 0, "ACPI 1.0 checksum");
        assert_eq!(sum(&t[..36]), 0, "extended checksum");
        let xsdt = (u64_at(&t, 24) - ACPI_START) as usize;
        assert_eq!(&t[xsdt..xsdt + 4], b"XSDT");
        let xlen = u32_at(&t, xsdt + 4) as usize;
        assert_eq!(sum(&t[xsdt..xsdt + xlen]), 0);
        let madt = (u64_at(&t, xsdt + 36) - ACPI_START) as usize;
        assert_eq!(&t[madt..madt + 4], b"APIC");
        let mlen = u32_at(&t, madt + 4) as usize;
        assert_eq!(sum(&t[madt..madt + mlen]), 0);
        assert_eq!(u32_at(&t, madt + 36), LAPIC_START as u32);
        // Entries: three local APICs (type 0, length 8), then the IOAPIC (type 1, length 12).
        let mut at = madt + 44;
        let mut lapics = Vec::new();
        while at < madt + mlen {
            match t[at] {
                0 => lapics.push(t[at + 3]),
                1 => {
                    assert_eq!(t[at + 2], 3, "IOAPIC id after the CPUs");
                    assert_eq!(u32_at(&t, at + 4), IOAPIC_START as u32);
                }
                other => unreachable!("unexpected MADT entry type {other}"),
            }
            at += usize::from(t[at + 1]);
        }
        assert_eq!(lapics, vec![0, 1, 2]);
    }

    #[test]
    fn cpu_count_is_bounded() {
        assert_eq!(build(&[]).map(|_| ()), Err(AcpiError::CpuCount(0)));
        let ids: Vec<u8> = (0..=254).collect();
        assert!(build(&ids).is_ok());
    }
}
