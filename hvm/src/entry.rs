//! Booting the HRT of a partitioned VM: its Multiboot2 image loaded into its own RAM, the boot
//! information with the whole memory map and duet's HVM information tag, and the entry state of every
//! HRT core — the 64-bit HVM entry when the kernel's HVM header tag asks for it (all cores start at
//! once on the VMM's page tables), else the standard 32-bit Multiboot2 entry on the boot core.

use boot::entry::{
    BootEntry, CpuMode, SegmentDescriptor, BOOT_GDT, CODE64_SELECTOR, CR0_ET, CR0_MP, CR0_NE, CR0_PE, CR0_PG, CR0_WP,
    CR4_OSFXSR, CR4_OSXMMEXCPT, CR4_PAE, CR4_PGE, DATA_SELECTOR, EFER_LMA, EFER_LME, EFER_NXE, EFER_SCE, TSS_SELECTOR,
};
use boot::multiboot2::{self, Mb2BootSpec, Mb2Error, ModuleSource};
use abi::{ForwardMode, HvmHeaderTag, HvmInfo, MemRange, MAX_CORES, MB2_BOOTLOADER_MAGIC};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use crate::layout::{PartitionLayout, ACPI_OFFSET, COMM_OFFSET, PAGE_TABLES_OFFSET, VMM_AREA_END};
use crate::paging::{build_hrt_tables, PagingError};

/// Why the HRT could not be booted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum HrtBootError {
    /// The Multiboot2 image is wrong, or does not fit the HRT's RAM.
    #[error(transparent)]
    Multiboot2(#[from] Mb2Error),
    /// The HVM header tag's page-table windows are wrong.
    #[error(transparent)]
    Paging(#[from] PagingError),
    /// The HVM header tag's wake vector is not an interrupt vector.
    #[error("the HVM header tag's wake_vector {0} is not in 32..=255")]
    BadWakeVector(u32),
    /// More cores than the HVM information can describe.
    #[error("{0} cores: the HVM information describes at most 64 per partition")]
    TooManyCores(usize),
    /// A standard (32-bit) Multiboot2 kernel cannot reach an HRT partition above 4 GiB.
    #[error("the HRT's memory starts at {0:#x}, above 4 GiB, where a 32-bit Multiboot2 entry cannot run; give the kernel an HVM header tag (64-bit entry) or give the ROS less memory")]
    Above4G(u64),
    /// The HRT's ACPI tables could not be built.
    #[error("building the HRT's ACPI tables failed")]
    Acpi(#[from] boot::acpi::AcpiError),
    /// Writing guest memory failed.
    #[error("writing {0} into the HRT's memory failed")]
    Write(&'static str),
}

/// What the HRT boots with.
#[derive(Debug, Clone, Copy)]
pub struct HrtBootSpec<'a> {
    /// The Multiboot2 kernel file.
    pub kernel: &'a [u8],
    /// Its command line.
    pub cmdline: &'a str,
    /// Its modules.
    pub modules: &'a [ModuleSource<'a>],
    /// The partition layout.
    pub layout: &'a PartitionLayout,
    /// APIC IDs of the HRT's cores, by core index.
    pub hrt_apic_ids: &'a [u32],
    /// APIC IDs of the ROS's cores.
    pub ros_apic_ids: &'a [u32],
    /// TSC frequency in kHz, or 0.
    pub tsc_khz: u64,
    /// The configured forwarding mode (told in [`HvmInfo::forward_mode`]).
    pub forward: ForwardMode,
    /// Adaptive forwarding's spin bound in microseconds ([`HvmInfo::forward_spin_us`]).
    pub forward_spin_us: u32,
}

/// A booted (loaded, not yet running) HRT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HrtBoot {
    /// Entry state by core index: every core with the 64-bit entry, only the boot core otherwise
    /// (the others wait for INIT/SIPI from it).
    pub entries: Vec<BootEntry>,
    /// The partition description given to the HRT.
    pub info: HvmInfo,
    /// The HVM header tag, if the kernel has one.
    pub tag: Option<HvmHeaderTag>,
}

impl HrtBoot {
    /// Whether the cores start through the 64-bit HVM entry.
    pub fn entry64(&self) -> bool {
        self.info.flags & HvmInfo::FLAG_ENTRY64 != 0
    }
}

/// The partition description for `spec` (`tag`: the kernel's HVM header tag if it asks for the
/// 64-bit entry).
pub fn hvm_info(spec: &HrtBootSpec<'_>, tag: Option<&HvmHeaderTag>) -> Result<HvmInfo, HrtBootError> {
    let (h, r) = (spec.hrt_apic_ids, spec.ros_apic_ids);
    if h.len() > MAX_CORES || r.len() > MAX_CORES {
        return Err(HrtBootError::TooManyCores(h.len().max(r.len())));
    }
    let layout = spec.layout;
    let mut info = HvmInfo {
        flags: if tag.is_some() { HvmInfo::FLAG_ENTRY64 } else { 0 },
        wake_vector: tag.map_or(0, |t| t.wake_vector),
        hrt_cores: h.len() as u32,
        ros_cores: r.len() as u32,
        tsc_khz: spec.tsc_khz,
        hrt_ram: MemRange { base: layout.hrt_base(), len: layout.hrt_ram.len },
        comm_page: layout.comm_page(),
        kernel_vbase: tag.map_or(0, |t| t.kernel_vbase),
        phys_map_base: tag.map_or(0, |t| t.phys_map_base),
        forward_mode: spec.forward as u32,
        forward_spin_us: spec.forward_spin_us,
        ..HvmInfo::default()
    };
    for (i, range) in layout.ros_ram.iter().take(2).enumerate() {
        info.ros_ram[i] = MemRange { base: range.start.0, len: range.len };
    }
    info.hrt_apic_ids[..h.len()].copy_from_slice(h);
    info.ros_apic_ids[..r.len()].copy_from_slice(r);
    Ok(info)
}

/// Loads the HRT into its partition (kernel, modules, boot information with the HVM tag; for the
/// 64-bit entry also the VMM's GDT and page tables), clears the comm page, and returns each core's
/// entry state. Touches only the HRT's RAM.
pub fn boot_hrt<M: GuestMemoryBackend>(mem: &M, spec: &HrtBootSpec<'_>) -> Result<HrtBoot, HrtBootError> {
    let layout = spec.layout;
    let image = multiboot2::inspect(spec.kernel)?;
    let tag = image.hvm.filter(HvmHeaderTag::entry64_requested);
    if let Some(t) = &tag {
        if !(32..=255).contains(&t.wake_vector) {
            return Err(HrtBootError::BadWakeVector(t.wake_vector));
        }
    } else if layout.hrt_base() >= 1 << 32 {
        return Err(HrtBootError::Above4G(layout.hrt_base()));
    }
    let info = hvm_info(spec, tag.as_ref())?;
    let base = layout.hrt_base();
    // The VMM's area starts clean on every boot: the comm page above all (no stale requests).
    mem.write_slice(&[0u8; PAGE_TABLES_OFFSET as usize], GuestAddress(base)).map_err(|_| HrtBootError::Write("the comm page"))?;
    // ACPI tables for the HRT alone: its cores (by APIC ID), its LAPICs and IOAPIC.
    let ids: Vec<u8> = spec.hrt_apic_ids.iter().map(|id| u8::try_from(*id).unwrap_or(u8::MAX)).collect();
    let (tables, rsdp_len) = boot::acpi::build_at(base + ACPI_OFFSET, &ids)?;
    if ACPI_OFFSET + tables.len() as u64 > VMM_AREA_END {
        return Err(HrtBootError::Acpi(boot::acpi::AcpiError::TooLarge(tables.len())));
    }
    mem.write_slice(&tables, GuestAddress(base + ACPI_OFFSET)).map_err(|_| HrtBootError::Write("the ACPI tables"))?;
    let rsdp = <[u8; 36]>::try_from(&tables[..rsdp_len]).ok().map(multiboot2::Rsdp::V2);
    let extra = multiboot2::hvm_info_tag(&info);
    let all_ram = layout.all_ram();
    let mode = match tag {
        Some(_) => multiboot2::LoadMode::Hvm { partition_base: base },
        None => multiboot2::LoadMode::Standard,
    };
    let booted = multiboot2::boot(
        mem,
        &Mb2BootSpec {
            kernel: spec.kernel,
            cmdline: spec.cmdline,
            modules: spec.modules,
            rsdp,
            ram: &[layout.hrt_ram],
            reserved: &layout.hrt_load_reserved(),
            mmap_reserved: &layout.hrt_mmap_reserved(),
            gdt_addr: layout.gdt(),
            mode,
            map_ram: Some(&all_ram),
            extra_tags: &extra,
        },
    )?;
    let Some(tag) = tag else {
        return Ok(HrtBoot { entries: vec![booted.entry], info, tag: image.hvm });
    };
    let cr3 = build_hrt_tables(mem, layout, tag.kernel_vbase, tag.phys_map_base)?;
    for (i, e) in BOOT_GDT.iter().enumerate() {
        mem.write_obj(*e, GuestAddress(layout.gdt() + i as u64 * 8)).map_err(|_| HrtBootError::Write("the GDT"))?;
    }
    let info_addr = booted.placement.info;
    let entries = spec
        .hrt_apic_ids
        .iter()
        .enumerate()
        .map(|(core, apic)| BootEntry {
            mode: CpuMode::Long64,
            rip: tag.entry64,
            rsp: 0,
            rsi: core as u64,
            rbx: info_addr,
            rax: u64::from(MB2_BOOTLOADER_MAGIC),
            rdx: u64::from(*apic),
            rdi: info_addr,
            cr0: CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG,
            cr3,
            cr4: CR4_PAE | CR4_PGE | CR4_OSFXSR | CR4_OSXMMEXCPT,
            efer: EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE,
            gdt: (layout.gdt(), (BOOT_GDT.len() * 8 - 1) as u16),
            code: SegmentDescriptor::from_gdt_entry(CODE64_SELECTOR, BOOT_GDT[1]),
            data: SegmentDescriptor::from_gdt_entry(DATA_SELECTOR, BOOT_GDT[2]),
            tss: SegmentDescriptor::from_gdt_entry(TSS_SELECTOR, BOOT_GDT[3]),
        })
        .collect();
    Ok(HrtBoot { entries, info, tag: Some(tag) })
}

/// Offset of core `core`'s invoke slot from the start of the partition.
pub fn slot_offset(core: u32) -> u64 {
    COMM_OFFSET + u64::from(core) * abi::slot::SIZE
}

#[cfg(test)]
#[path = "entry_tests.rs"]
mod tests;
