//! What a VM will boot, read and checked without KVM (what `duet check` prints): the partition's kernel,
//! recognised as Linux or Multiboot2, its images, command line and memory layout.
//!
//! A `[ros]` partition boots Linux; an `[hrt]` partition boots a Multiboot2 kernel, fully virtualized.
//! A kernel in the wrong section is a clear error, not a guest crash.

use std::path::{Path, PathBuf};

use boot::linux::{self, KernelInfo, LinuxBootSpec};
use boot::multiboot2::{self, Mb2BootSpec, Mb2Image, ModuleSource};
use config::Config;
use vm_memory::GuestMemoryMmap;

use crate::error::VmmError;
use crate::placement::{placements, Placement};
use crate::platform::{KvmFlavor, PlatformSettings};

/// Which kind of kernel a partition boots.
#[derive(Debug, Clone)]
pub enum KernelKind {
    /// Linux (vmlinux or bzImage) with its initramfs placement.
    Linux {
        /// The image's facts.
        info: KernelInfo,
        /// Where the initramfs goes.
        initramfs_at: Option<(u64, u64)>,
    },
    /// A Multiboot2 kernel.
    Multiboot2 {
        /// The header's facts.
        image: Mb2Image,
    },
}

/// A module handed to a Multiboot2 kernel.
#[derive(Debug, Clone)]
pub struct Module {
    /// The file.
    pub path: PathBuf,
    /// Its bytes (dropped once loaded).
    pub data: Vec<u8>,
    /// Its string.
    pub string: String,
}

/// The HRT of a partitioned VM: its image (kept for reboots), where it goes, how it starts.
#[derive(Debug, Clone)]
pub struct HrtPlan {
    /// The kernel file.
    pub kernel_path: PathBuf,
    /// The header's facts.
    pub image: Mb2Image,
    /// The kernel's bytes (kept: the HRT can be rebooted).
    pub kernel: std::sync::Arc<Vec<u8>>,
    /// Its modules (kept, like the kernel).
    pub modules: Vec<Module>,
    /// Its command line.
    pub cmdline: String,
    /// HRT cores.
    pub vcpus: u8,
    /// When it boots.
    pub boot: config::HrtBoot,
    /// How forwarding channels wait (`hrt.forward`), as the HVM information tells it.
    pub forward: abi::ForwardMode,
    /// Adaptive forwarding's spin bound in microseconds (`hrt.forward_spin_us`).
    pub forward_spin_us: u32,
    /// The partition layout.
    pub layout: hvm::layout::PartitionLayout,
}

impl HrtPlan {
    /// Whether the kernel asks for the 64-bit HVM entry.
    pub fn entry64(&self) -> bool {
        self.image.hvm.is_some_and(|t| t.entry64_requested())
    }
}

/// The checked plan for a VM.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The kernel file.
    pub kernel_path: PathBuf,
    /// What the kernel is.
    pub kind: KernelKind,
    /// vCPUs.
    pub vcpus: u8,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// The complete kernel command line (for Linux: the config's plus duet's platform parameters).
    pub cmdline: String,
    /// Platform settings (KVM flavor, PVM workarounds).
    pub platform: PlatformSettings,
    kernel: Vec<u8>,
    initramfs: Option<Vec<u8>>,
    /// Multiboot2 modules, in order.
    pub modules: Vec<Module>,
    /// The HRT, when this is a partitioned VM (then `kind` is the ROS's Linux).
    pub hrt: Option<HrtPlan>,
    /// Where Linux's virtio-mmio devices sit: its command line and ACPI tables name them, and the VM
    /// attaches them there.
    pub(crate) virtio: Vec<Placement>,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, VmmError> {
    std::fs::read(path).map_err(|source| VmmError::ReadImage { what, path: path.to_path_buf(), source })
}

/// Reads and checks everything the VM described by `cfg` needs, without creating it.
pub fn prepare(cfg: &Config, flavor: KvmFlavor) -> Result<Plan, VmmError> {
    let platform = PlatformSettings::resolve(flavor, &cfg.platform);
    match (&cfg.ros, &cfg.hrt) {
        (Some(ros), None) => prepare_linux(ros, &cfg.devices, platform),
        (None, Some(hrt)) => prepare_multiboot2(hrt, platform),
        (Some(ros), Some(hrt)) => {
            let mut plan = prepare_linux(ros, &cfg.devices, platform)?;
            // One paging depth on both sides (the HRT adopts a ROS process's PML4 entries).
            plan.platform.cpuid_mask.la57 = true;
            let single = prepare_multiboot2(hrt, plan.platform.clone())?;
            let layout = hvm::layout::PartitionLayout::new(ros.memory, hrt.memory)?;
            let KernelKind::Multiboot2 { image } = single.kind else {
                return Err(VmmError::Unsupported("an HRT that is not a Multiboot2 kernel"));
            };
            let mode = match image.hvm.is_some_and(|t| t.entry64_requested()) {
                true => multiboot2::LoadMode::Hvm { partition_base: layout.hrt_base() },
                false => multiboot2::LoadMode::Standard,
            };
            multiboot2::plan_with(&image, &[layout.hrt_ram], &layout.hrt_load_reserved(), mode)
                .map_err(|source| VmmError::HrtBoot { path: hrt.kernel.clone(), source: source.into() })?;
            plan.hrt = Some(HrtPlan {
                kernel_path: single.kernel_path,
                image,
                kernel: std::sync::Arc::new(single.kernel),
                modules: single.modules,
                cmdline: single.cmdline,
                vcpus: single.vcpus,
                boot: hrt.boot,
                forward: hrt.forward,
                forward_spin_us: hrt.forward_spin_us,
                layout,
            });
            Ok(plan)
        }
        (None, None) => Err(VmmError::Unsupported("a VM without [ros] or [hrt]")),
    }
}

/// `user`'s kernel parameters, then `extra`, then its ` -- ` part (arguments for init).
fn with_kernel_params(user: &str, extra: &[String]) -> String {
    if extra.is_empty() {
        return user.to_string();
    }
    let words: Vec<&str> = user.split_whitespace().collect();
    let split = words.iter().position(|w| *w == "--").unwrap_or(words.len());
    let (kernel, init) = words.split_at(split);
    let line: Vec<&str> = kernel.iter().copied().chain(extra.iter().map(String::as_str)).chain(init.iter().copied()).collect();
    line.join(" ")
}

fn prepare_linux(ros: &config::RosConfig, devices: &config::DevicesConfig, platform: PlatformSettings) -> Result<Plan, VmmError> {
    let kernel = read("kernel", &ros.kernel)?;
    let initramfs = ros.initramfs.as_ref().map(|p| read("initramfs", p)).transpose()?;
    let boot_err = |source| VmmError::Boot { path: ros.kernel.clone(), source };
    let info = match linux::inspect(&kernel) {
        Err(_) if multiboot2::inspect(&kernel).is_ok() => {
            return Err(VmmError::KernelKind {
                path: ros.kernel.clone(),
                found: "a Multiboot2 kernel",
                hint: "put it in an [hrt] section",
            })
        }
        other => other.map_err(boot_err)?,
    };
    let initramfs_at = linux::plan(&info, initramfs.as_ref().map(|i| i.len() as u64), ros.memory).map_err(boot_err)?;
    let virtio = placements(devices)?;
    let fragments: Vec<String> = virtio.iter().map(Placement::cmdline_fragment).collect();
    let cmdline = platform.linux_cmdline(&with_kernel_params(&ros.cmdline, &fragments));
    if cmdline.len() > info.cmdline_max {
        return Err(boot_err(linux::LinuxBootError::CmdlineTooLong { len: cmdline.len(), max: info.cmdline_max }));
    }
    Ok(Plan {
        kernel_path: ros.kernel.clone(),
        kind: KernelKind::Linux { info, initramfs_at },
        vcpus: u8::try_from(ros.vcpus).unwrap_or(u8::MAX),
        memory: ros.memory,
        cmdline,
        platform,
        kernel,
        initramfs,
        modules: Vec::new(),
        hrt: None,
        virtio,
    })
}

fn prepare_multiboot2(hrt: &config::HrtConfig, platform: PlatformSettings) -> Result<Plan, VmmError> {
    let kernel = read("kernel", &hrt.kernel)?;
    let image = match multiboot2::inspect(&kernel) {
        Err(multiboot2::Mb2Error::NoHeader) if linux::inspect(&kernel).is_ok() => {
            return Err(VmmError::KernelKind {
                path: hrt.kernel.clone(),
                found: "a Linux kernel",
                hint: "put it in a [ros] section",
            })
        }
        other => other.map_err(|source| VmmError::BootMultiboot2 { path: hrt.kernel.clone(), source })?,
    };
    let modules = hrt
        .modules
        .iter()
        .map(|m| Ok(Module { path: m.path.clone(), data: read("module", &m.path)?, string: m.cmdline.clone() }))
        .collect::<Result<Vec<_>, VmmError>>()?;
    Ok(Plan {
        kernel_path: hrt.kernel.clone(),
        kind: KernelKind::Multiboot2 { image },
        vcpus: u8::try_from(hrt.vcpus).unwrap_or(u8::MAX),
        memory: hrt.memory,
        cmdline: hrt.cmdline.clone(),
        platform,
        kernel,
        initramfs: None,
        modules,
        hrt: None,
        virtio: Vec::new(),
    })
}

/// Guest RAM as plain data: the ranges to allocate, and (in a partitioned VM) the HRT's range, which
/// the ROS's view of that memory leaves out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RamPlan {
    /// Every range of guest RAM.
    pub ranges: Vec<boot::layout::RamRange>,
    /// The HRT's range (partitioned VMs only).
    pub hrt: Option<boot::layout::RamRange>,
}

impl Plan {
    /// Where guest RAM goes.
    pub(crate) fn ram(&self) -> RamPlan {
        match &self.hrt {
            None => RamPlan { ranges: boot::layout::ram_ranges(self.memory), hrt: None },
            Some(h) => RamPlan { ranges: h.layout.all_ram(), hrt: Some(h.layout.hrt_ram) },
        }
    }

    /// Loads the kernel (and initramfs or modules) into `mem`, writes the firmware tables the kernel
    /// expects (MP and ACPI tables for Linux; ACPI tables and the Multiboot2 information for Multiboot2), and
    /// returns the boot vCPU's entry state. The image bytes are dropped afterwards: they now live in
    /// guest memory, and a second copy would cost the VMM tens of MiB.
    pub fn load(&mut self, mem: &GuestMemoryMmap<()>) -> Result<boot::BootEntry, VmmError> {
        let entry = match &self.kind {
            KernelKind::Linux { .. } => {
                let spec = LinuxBootSpec {
                    kernel: &self.kernel,
                    initramfs: self.initramfs.as_deref(),
                    cmdline: &self.cmdline,
                    mem_size: self.memory,
                };
                let loaded = linux::load(mem, &spec)
                    .map_err(|source| VmmError::Boot { path: self.kernel_path.clone(), source })?;
                // Both: a kernel without ACPI finds its CPUs in the MP table and its devices on the
                // command line; one with ACPI (a distribution kernel, duet's test kernel) finds both in
                // ACPI (Debian's kernels take virtio-mmio devices from nowhere else).
                boot::mptable::write(mem, self.vcpus)?;
                // A partitioned VM's ROS also has the doorbell UART at COM2.
                let com2 = boot::acpi::Uart { port: abi::ROS_DOORBELL_UART, irq: abi::ROS_DOORBELL_IRQ };
                let uarts: &[boot::acpi::Uart] =
                    if self.hrt.is_some() { &[boot::acpi::COM1, com2] } else { &[boot::acpi::COM1] };
                let devices: Vec<boot::acpi::MmioDevice> = self.virtio.iter().map(Placement::acpi).collect();
                boot::acpi::write_linux(mem, self.vcpus, uarts, &devices)?;
                loaded.entry
            }
            KernelKind::Multiboot2 { .. } => {
                let rsdp = boot::acpi::write(mem, self.vcpus)?;
                let rsdp = <[u8; 36]>::try_from(rsdp.as_slice()).ok().map(multiboot2::Rsdp::V2);
                let ram = boot::layout::ram_ranges(self.memory);
                let modules: Vec<ModuleSource<'_>> =
                    self.modules.iter().map(|m| ModuleSource { data: &m.data, string: &m.string }).collect();
                let spec = Mb2BootSpec {
                    kernel: &self.kernel,
                    cmdline: &self.cmdline,
                    modules: &modules,
                    rsdp,
                    ram: &ram,
                    reserved: &multiboot2::DUET_RESERVED,
                    mmap_reserved: &multiboot2::DUET_MMAP_RESERVED,
                    gdt_addr: multiboot2::GDT_ADDR,
                    mode: multiboot2::LoadMode::Standard,
                    map_ram: None,
                    extra_tags: &[],
                };
                multiboot2::boot(mem, &spec)
                    .map_err(|source| VmmError::BootMultiboot2 { path: self.kernel_path.clone(), source })?
                    .entry
            }
        };
        self.kernel = Vec::new();
        self.initramfs = None;
        for m in &mut self.modules {
            m.data = Vec::new();
        }
        Ok(entry)
    }
}
