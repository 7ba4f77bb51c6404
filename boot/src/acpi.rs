//! ACPI tables: an RSDP where firmware leaves it (0xE0000–0xFFFFF), an XSDT, a FADT pointing at a DSDT,
//! and a MADT listing every CPU's local APIC and the IOAPIC. Built with the `acpi_tables` crate.
//!
//! - For a Multiboot2 kernel ([`write`], [`build_at`]): a PC-like set whose DSDT describes the PIT
//!   (PNP0100) and COM1 (PNP0501) with their ports and interrupts; the RSDP also goes into the Multiboot2
//!   information.
//! - For Linux ([`write_linux`]): a hardware-reduced ACPI set (`HW_REDUCED_ACPI` in the FADT, as
//!   Firecracker and Cloud Hypervisor give it) whose DSDT describes COM1 and every virtio-mmio device
//!   (`LNRO0005`, the ID Linux's `virtio_mmio` driver matches, with its window and interrupt). Distribution
//!   kernels need it: Debian's build `virtio_mmio` without `VIRTIO_MMIO_CMDLINE_DEVICES`, so
//!   `virtio_mmio.device=` on the command line reaches nothing there. A kernel without ACPI ignores the
//!   tables and keeps using the MP table, which duet writes too.

use acpi_tables::aml::{Device, EISAName, Interrupt, Memory32Fixed, Name, ResourceTemplate, Scope, IO};
use acpi_tables::fadt::{FADTBuilder, Flags, FADT};
use acpi_tables::madt::{EnabledStatus, IoApic, LocalInterruptController, ProcessorLocalApic, MADT};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::Aml;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::layout::{IOAPIC_START, LAPIC_START, MPTABLE_START};

/// Where duet puts its ACPI tables (the RSDP first, 16-byte aligned, inside the BIOS search area).
pub const ACPI_START: u64 = 0xe_0000;
const OEM_ID: [u8; 6] = *b"DUET  ";
const OEM_TABLE_ID: [u8; 8] = *b"DUETVM  ";

/// Errors building the tables.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AcpiError {
    /// Zero or too many CPUs.
    #[error("the MADT lists 1 to 255 CPUs, not {0}")]
    CpuCount(usize),
    /// The tables outgrew their space.
    #[error("the ACPI tables need {0} bytes, more than fit in their area")]
    TooLarge(usize),
    /// Guest memory does not cover the tables' place.
    #[error("guest memory does not cover the ACPI tables at {ACPI_START:#x}")]
    Write,
    /// A device the DSDT cannot describe.
    #[error("virtio-mmio device {index} at {base:#x} (IRQ {irq}) cannot be described: {why}")]
    Device {
        /// Its position in the list.
        index: usize,
        /// Its window.
        base: u64,
        /// Its interrupt.
        irq: u32,
        /// What is wrong.
        why: &'static str,
    },
}

/// A virtio-mmio device for the DSDT: its register window and its (edge-triggered, active-high) GSI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioDevice {
    /// Guest-physical base of the window (below 4 GiB).
    pub base: u64,
    /// Window size in bytes.
    pub size: u32,
    /// IOAPIC input (GSI).
    pub irq: u32,
}

fn bytes(table: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    table.to_aml_bytes(&mut v);
    v
}

/// A 16550 UART for the DSDT: its I/O base and its (edge-triggered, active-high) ISA IRQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uart {
    /// I/O port base (8 ports).
    pub port: u16,
    /// ISA IRQ (= GSI; duet's IOAPIC routes them one to one).
    pub irq: u32,
}

/// COM1, which every duet VM has.
pub const COM1: Uart = Uart { port: 0x3f8, irq: 4 };

/// One device, rendered: `Device (name) { Name (_HID, hid) [Name (_UID, uid)] Name (_CRS,
/// ResourceTemplate () { resources }) }`.
struct RenderedDevice(Vec<u8>);

impl Aml for RenderedDevice {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        sink.vec(&self.0);
    }
}

fn device(name: &str, hid: &dyn Aml, uid: Option<u32>, resources: Vec<&dyn Aml>) -> RenderedDevice {
    let crs = ResourceTemplate::new(resources);
    let (hid, crs) = (Name::new("_HID".into(), hid), Name::new("_CRS".into(), &crs));
    let uid = uid.map(|u| Name::new("_UID".into(), &u));
    let mut children: Vec<&dyn Aml> = vec![&hid];
    children.extend(uid.as_ref().map(|u| u as &dyn Aml));
    children.push(&crs);
    RenderedDevice(bytes(&Device::new(name.into(), children)))
}

/// UART `index` (0 is `COM1`): a 16550 (`PNP0501`) with its 8 ports and its edge-triggered IRQ.
fn uart_device(index: usize, uart: &Uart) -> RenderedDevice {
    let (io, irq) = (IO::new(uart.port, uart.port, 0, 8), Interrupt::new(true, true, false, false, uart.irq));
    let uid = index as u32 + 1;
    device(&format!("COM{uid}"), &EISAName::new("PNP0501"), Some(uid), vec![&io, &irq])
}

/// A DSDT holding `devices` in `\\_SB`.
fn dsdt_of(devices: &[RenderedDevice]) -> Vec<u8> {
    let sb = Scope::new("\\_SB_".into(), devices.iter().map(|d| d as &dyn Aml).collect());
    let mut table = Sdt::new(*b"DSDT", 36, 6, OEM_ID, OEM_TABLE_ID, 1);
    table.append_slice(&bytes(&sb));
    table.as_slice().to_vec()
}

/// The DSDT of a Linux VM: the UARTs (`COM1`, `COM2`, …) and the virtio-mmio devices (`VR00`, `VR01`,
/// …), in `\\_SB`. Hardware-reduced ACPI has no legacy PIC, so Linux wires an ISA IRQ to the IOAPIC
/// only for a device described here: a UART left out would get no interrupt.
fn linux_dsdt(uarts: &[Uart], virtio: &[MmioDevice]) -> Result<Vec<u8>, AcpiError> {
    if uarts.len() > 9 {
        return Err(AcpiError::Device { index: 9, base: 0, irq: 0, why: "more than 9 UARTs" });
    }
    if virtio.len() > 0x100 {
        return Err(AcpiError::Device { index: 0x100, base: 0, irq: 0, why: "more than 256 devices" });
    }
    let mut devices: Vec<RenderedDevice> = uarts.iter().enumerate().map(|(i, u)| uart_device(i, u)).collect();
    let hid: &'static str = "LNRO0005";
    for (index, d) in virtio.iter().enumerate() {
        let err = |why| AcpiError::Device { index, base: d.base, irq: d.irq, why };
        let base = u32::try_from(d.base).map_err(|_| err("the window is above 4 GiB"))?;
        if base.checked_add(d.size).is_none() || d.size == 0 {
            return Err(err("the window is empty or crosses 4 GiB"));
        }
        let (mem, irq) = (Memory32Fixed::new(true, base, d.size), Interrupt::new(true, true, false, false, d.irq));
        devices.push(device(&format!("VR{index:02X}"), &hid, Some(index as u32), vec![&mem, &irq]));
    }
    Ok(dsdt_of(&devices))
}

/// The DSDT of a Multiboot2 VM: the legacy devices duet provides (COM1 and the PIT), in `\\_SB`.
fn dsdt() -> Vec<u8> {
    let (pit_io, pit_irq) = (IO::new(0x40, 0x40, 0, 4), Interrupt::new(true, true, false, false, 0));
    let pit = device("TMR_", &EISAName::new("PNP0100"), None, vec![&pit_io, &pit_irq]);
    dsdt_of(&[uart_device(0, &COM1), pit])
}

/// Appends `table` at the next 16-byte boundary of `out` (which starts at `base`); returns its
/// guest-physical address.
fn place(out: &mut Vec<u8>, base: u64, table: &[u8]) -> u64 {
    out.resize(out.len().next_multiple_of(16), 0);
    let at = base + out.len() as u64;
    out.extend_from_slice(table);
    at
}

/// The tables for CPUs with the given APIC IDs, laid out from [`ACPI_START`]: RSDP, DSDT, FADT, MADT,
/// XSDT. Returns the bytes and the RSDP's length (36: ACPI 2.0+).
pub fn build(apic_ids: &[u8]) -> Result<(Vec<u8>, usize), AcpiError> {
    let (out, rsdp_len) = build_at(ACPI_START, apic_ids)?;
    if ACPI_START as usize + out.len() > MPTABLE_START as usize {
        return Err(AcpiError::TooLarge(out.len()));
    }
    Ok((out, rsdp_len))
}

/// [`build`] for tables laid out from `base` (e.g. the HRT's own area in a partitioned VM).
pub fn build_at(base: u64, apic_ids: &[u8]) -> Result<(Vec<u8>, usize), AcpiError> {
    let fadt = |dsdt_at| FADTBuilder::new(OEM_ID, OEM_TABLE_ID, 1).dsdt_64(dsdt_at).finalize();
    layout(base, apic_ids, &dsdt(), fadt)
}

/// The tables of a Linux VM with CPUs of the given APIC IDs, UARTs and virtio-mmio devices, laid out
/// from [`ACPI_START`]: RSDP, DSDT, a hardware-reduced FADT, MADT, XSDT.
pub fn build_linux(apic_ids: &[u8], uarts: &[Uart], virtio: &[MmioDevice]) -> Result<(Vec<u8>, usize), AcpiError> {
    let fadt = |dsdt_at| {
        FADTBuilder::new(OEM_ID, OEM_TABLE_ID, 1)
            .dsdt_64(dsdt_at)
            .flag(Flags::HwReducedAcpi)
            .flag(Flags::PwrButton)
            .flag(Flags::SlpButton)
            .finalize()
    };
    let (out, rsdp_len) = layout(ACPI_START, apic_ids, &linux_dsdt(uarts, virtio)?, fadt)?;
    if ACPI_START as usize + out.len() > MPTABLE_START as usize {
        return Err(AcpiError::TooLarge(out.len()));
    }
    Ok((out, rsdp_len))
}

/// Builds the tables of a Linux VM ([`build_linux`], APIC IDs 0..vcpus) and writes them at [`ACPI_START`].
pub fn write_linux<M: GuestMemoryBackend>(
    mem: &M,
    vcpus: u8,
    uarts: &[Uart],
    virtio: &[MmioDevice],
) -> Result<(), AcpiError> {
    let ids: Vec<u8> = (0..vcpus).collect();
    let (tables, _) = build_linux(&ids, uarts, virtio)?;
    mem.write_slice(&tables, GuestAddress(ACPI_START)).map_err(|_| AcpiError::Write)
}

/// RSDP, DSDT, FADT (from `fadt`, given the DSDT's address), MADT and XSDT laid out from `base`.
fn layout(
    base: u64,
    apic_ids: &[u8],
    dsdt: &[u8],
    fadt: impl FnOnce(u64) -> FADT,
) -> Result<(Vec<u8>, usize), AcpiError> {
    if apic_ids.is_empty() || apic_ids.len() > 255 {
        return Err(AcpiError::CpuCount(apic_ids.len()));
    }
    let ioapic_id = apic_ids.iter().copied().max().unwrap_or(0).saturating_add(1);
    let mut madt = MADT::new(OEM_ID, OEM_TABLE_ID, 1, LocalInterruptController::Address(LAPIC_START as u32));
    for (uid, id) in apic_ids.iter().enumerate() {
        madt.add_structure(ProcessorLocalApic::new(uid as u8, *id, EnabledStatus::Enabled));
    }
    madt.add_structure(IoApic::new(ioapic_id, IOAPIC_START as u32, 0));

    let rsdp_len = Rsdp::len();
    let mut out = vec![0u8; rsdp_len];
    let dsdt_at = place(&mut out, base, dsdt);
    let fadt_at = place(&mut out, base, &bytes(&fadt(dsdt_at)));
    let madt_at = place(&mut out, base, &bytes(&madt));
    let mut xsdt = XSDT::new(OEM_ID, OEM_TABLE_ID, 1);
    xsdt.add_entry(fadt_at);
    xsdt.add_entry(madt_at);
    let xsdt_at = place(&mut out, base, &bytes(&xsdt));
    out[..rsdp_len].copy_from_slice(&bytes(&Rsdp::new(OEM_ID, xsdt_at)));
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
        crate::le::u32_at(b, o).expect("a field inside the tables")
    }

    fn u64_at(b: &[u8], o: usize) -> u64 {
        crate::le::u64_at(b, o).expect("a field inside the tables")
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
        assert_eq!(xlen, 36 + 16, "two entries: FADT and MADT");
        let fadt = (u64_at(&t, xsdt + 36) - ACPI_START) as usize;
        assert_eq!(&t[fadt..fadt + 4], b"FACP");
        assert_eq!(sum(&t[fadt..fadt + u32_at(&t, fadt + 4) as usize]), 0);
        let dsdt = (u64_at(&t, fadt + 140) - ACPI_START) as usize; // X_DSDT
        assert_eq!(&t[dsdt..dsdt + 4], b"DSDT");
        let dlen = u32_at(&t, dsdt + 4) as usize;
        assert_eq!(sum(&t[dsdt..dsdt + dlen]), 0);
        let aml = &t[dsdt + 36..dsdt + dlen];
        assert!(aml.windows(4).any(|w| w == b"COM1") && aml.windows(4).any(|w| w == b"TMR_"));
        // EISA IDs are compressed: PNP0501 = 41 d0 05 01, PNP0100 = 41 d0 01 00.
        assert!(aml.windows(4).any(|w| w == [0x41, 0xd0, 0x05, 0x01]));
        assert!(aml.windows(4).any(|w| w == [0x41, 0xd0, 0x01, 0x00]));
        let madt = (u64_at(&t, xsdt + 44) - ACPI_START) as usize;
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
    fn linux_tables_are_hardware_reduced_and_describe_every_virtio_device() {
        let virtio = [
            MmioDevice { base: 0xd000_0000, size: 0x1000, irq: 5 },
            MmioDevice { base: 0xd000_1000, size: 0x1000, irq: 6 },
        ];
        let com2 = Uart { port: 0x2f8, irq: 3 };
        let (t, rsdp_len) = build_linux(&[0, 1], &[COM1, com2], &virtio).expect("build");
        assert_eq!(sum(&t[..rsdp_len]), 0);
        let xsdt = (u64_at(&t, 24) - ACPI_START) as usize;
        let fadt = (u64_at(&t, xsdt + 36) - ACPI_START) as usize;
        assert_eq!(&t[fadt..fadt + 4], b"FACP");
        assert_eq!(sum(&t[fadt..fadt + u32_at(&t, fadt + 4) as usize]), 0);
        assert_ne!(u32_at(&t, fadt + 112) & (1 << 20), 0, "HW_REDUCED_ACPI");
        let dsdt = (u64_at(&t, fadt + 140) - ACPI_START) as usize;
        let dlen = u32_at(&t, dsdt + 4) as usize;
        assert_eq!(sum(&t[dsdt..dsdt + dlen]), 0);
        let aml = &t[dsdt + 36..dsdt + dlen];
        let has = |needle: &[u8]| aml.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"COM1") && has(b"COM2") && !has(b"COM3") && has(b"VR00") && has(b"VR01") && !has(b"VR02"));
        // COM2's I/O descriptor (0x47, decode16, 0x2f8 twice, alignment 0, 8 ports) and IRQ 3.
        assert!(has(&[0x47, 1, 0xf8, 2, 0xf8, 2, 0, 8, 0x89, 6, 0, 0b0011, 1, 3, 0, 0, 0]));
        assert_eq!(aml.windows(9).filter(|w| w == b"LNRO0005\0").count(), 2);
        // Memory32Fixed (0x86, length 9, read-write) with each window, then an extended IRQ (0x89).
        for (d, irq) in [(0xd000_0000u32, 5u8), (0xd000_1000, 6)] {
            let mut desc = vec![0x86, 9, 0, 1];
            desc.extend_from_slice(&d.to_le_bytes());
            desc.extend_from_slice(&0x1000u32.to_le_bytes());
            desc.extend_from_slice(&[0x89, 6, 0, 0b0011, 1, irq, 0, 0, 0]);
            assert!(has(&desc), "window {d:#x} irq {irq}");
        }
        // No virtio devices: still valid.
        assert!(build_linux(&[0], &[COM1], &[]).is_ok());
        let high = [MmioDevice { base: 0x1_0000_0000, size: 0x1000, irq: 5 }];
        assert!(matches!(build_linux(&[0], &[COM1], &high), Err(AcpiError::Device { index: 0, .. })));
    }

    #[test]
    fn cpu_count_is_bounded() {
        assert_eq!(build(&[]).map(|_| ()), Err(AcpiError::CpuCount(0)));
        let ids: Vec<u8> = (0..=254).collect();
        assert!(build(&ids).is_ok());
    }
}

