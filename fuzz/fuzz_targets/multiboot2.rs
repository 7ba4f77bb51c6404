//! Arbitrary bytes as a Multiboot2 kernel: header and ELF/a.out inspection, planning and loading into a
//! small anonymous guest memory, module placement and the boot information structure. Any panic is a bug.
#![no_main]

use boot::layout::{ram_ranges, RamRange};
use boot::multiboot2::{self, InfoSpec, ModuleInfo, Rsdp};
use libfuzzer_sys::fuzz_target;
use vm_memory::{GuestAddress, GuestMemoryMmap};

const MEM: u64 = 8 << 20;

fuzz_target!(|data: &[u8]| {
    let ram: Vec<RamRange> = ram_ranges(MEM);
    let Ok(image) = multiboot2::inspect(data) else { return };
    // Planning alone also covers windows and addresses beyond the small memory.
    let _ = multiboot2::plan(&image, &ram_ranges(8 << 30), &multiboot2::DUET_RESERVED);
    let Ok(mem) = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM as usize)]) else { return };
    let Ok(loaded) = multiboot2::load(&mem, data, &image, &ram, &multiboot2::DUET_RESERVED) else { return };
    let lens = [data.len() as u64 % 0x3000 + 1];
    let Ok(placement) = multiboot2::place_modules(loaded.load_end, &lens, 0x400, &ram, &multiboot2::DUET_RESERVED)
    else {
        return;
    };
    let (start, end) = placement.modules[0];
    let cmdline = String::from_utf8_lossy(&data[..data.len().min(64)]);
    let mut rsdp = [0u8; 36];
    rsdp.iter_mut().zip(data).for_each(|(r, d)| *r = *d);
    let modules = [ModuleInfo { start: start as u32, end: end as u32, string: "fuzz" }];
    let spec = InfoSpec {
        cmdline: &cmdline,
        bootloader_name: multiboot2::BOOTLOADER_NAME,
        ram: &ram,
        mmap_reserved: &multiboot2::DUET_MMAP_RESERVED,
        modules: &modules,
        rsdp: Some(Rsdp::V2(rsdp)),
        load_base: loaded.load_base.map(|b| b as u32),
    };
    let _ = multiboot2::build_info(&spec);
    let _ = multiboot2::setup_entry(&mem, loaded.entry, placement.info as u32, multiboot2::GDT_ADDR);
});
