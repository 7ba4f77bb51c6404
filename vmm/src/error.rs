//! The VMM's errors. Each adds its own context and keeps its cause as `source`; the CLI prints the chain.

use std::path::PathBuf;

/// Why a VM could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A kernel or initramfs file could not be read.
    #[error("cannot read the {what} {}", path.display())]
    ReadImage {
        /// "kernel" or "initramfs".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The kernel image was refused.
    #[error("cannot boot the kernel {}", path.display())]
    Boot {
        /// The kernel file.
        path: PathBuf,
        /// Why.
        #[source]
        source: boot::linux::LinuxBootError,
    },
    /// A Multiboot2 kernel was refused.
    #[error("cannot boot the Multiboot2 kernel {}", path.display())]
    BootMultiboot2 {
        /// The kernel file.
        path: PathBuf,
        /// Why.
        #[source]
        source: boot::multiboot2::Mb2Error,
    },
    /// A kernel of the wrong kind for its section.
    #[error("{} is {found}: {hint}", path.display())]
    KernelKind {
        /// The kernel file.
        path: PathBuf,
        /// What it is.
        found: &'static str,
        /// What to do.
        hint: &'static str,
    },
    /// Something this version of duet does not do yet.
    #[error("{0} is not supported by this version of duet yet")]
    Unsupported(&'static str),
    /// The ACPI tables could not be written.
    #[error("cannot write the ACPI tables")]
    Acpi(#[from] boot::acpi::AcpiError),
    /// The MP table could not be written.
    #[error("cannot write the MP table")]
    MpTable(#[from] boot::mptable::MpTableError),
    /// Guest memory could not be allocated.
    #[error("cannot allocate {mib} MiB of guest memory")]
    Memory {
        /// Size asked for.
        mib: u64,
        /// Why.
        #[source]
        source: vm_memory::mmap::FromRangesError,
    },
    /// /dev/kvm could not be opened.
    #[error("cannot open /dev/kvm (is KVM available and are you allowed to use it?)")]
    KvmOpen(#[source] kvm_ioctls::Error),
    /// A KVM ioctl failed.
    #[error("{what} failed")]
    Kvm {
        /// Which operation.
        what: &'static str,
        /// Why.
        #[source]
        source: kvm_ioctls::Error,
    },
    /// A vCPU could not be configured.
    #[error(transparent)]
    Vcpu(#[from] crate::vcpu::setup::SetupError),
    /// Devices could not be placed on the bus.
    #[error("cannot attach a device")]
    Bus(#[from] devices::bus::BusError),
    /// An OS resource (eventfd, epoll, thread, file) failed.
    #[error("{what} failed")]
    Io {
        /// Which operation.
        what: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The partitioned VM's layout is impossible (sizes).
    #[error("the partitioned VM's memory layout is impossible")]
    Layout(#[from] hvm::layout::LayoutError),
    /// The HRT of a partitioned VM cannot boot in its partition.
    #[error("{} cannot boot as the HRT of this partitioned VM", path.display())]
    HrtBoot {
        /// The kernel file.
        path: PathBuf,
        /// Why.
        #[source]
        source: hvm::entry::HrtBootError,
    },
    /// A virtio-blk disk could not be attached (missing or unreadable image, locked by another VM).
    #[error("cannot attach the disk {name} ({})", path.display())]
    Block {
        /// The device, as in the config (`block[0]`).
        name: String,
        /// Its image.
        path: PathBuf,
        /// Why.
        #[source]
        source: devices::virtio::block::BlockError,
    },
    /// A virtio-net interface could not be attached (TAP absent, busy, not a TAP, no permission).
    #[error("cannot attach the network interface {name}")]
    Net {
        /// The device, as in the config (`net[0]`).
        name: String,
        /// Why (names the TAP).
        #[source]
        source: devices::virtio::net::TapError,
    },
    /// The virtio-vsock device could not be attached (bad CID, socket path in use).
    #[error("cannot attach the vsock device")]
    Vsock {
        /// Why (names the socket).
        #[source]
        source: devices::virtio::vsock::VsockError,
    },
    /// The console log file could not be created.
    #[error("cannot create the console file {}", path.display())]
    ConsoleFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl VmmError {
    pub(crate) fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
        move |source| VmmError::Kvm { what, source }
    }

    pub(crate) fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> VmmError {
        move |source| VmmError::Io { what, source }
    }
}
