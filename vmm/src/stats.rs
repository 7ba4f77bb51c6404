//! Each vCPU's KVM statistics, read through KVM's binary stats fd (`KVM_GET_STATS_FD`, Linux 5.14+).
//!
//! duet samples them whenever a guest writes a mark to the debug port, so a benchmark in the guest
//! can say how many VM exits (and, on PVM, how many emulated ring-0 instructions) a phase between two
//! marks cost on each vCPU of each partition: see [`crate::MarkAt::vcpus`]. A host without the stats
//! fd gives marks without samples; nothing else changes.
//!
//! kvm-ioctls has no wrapper for the stats fd, so the ioctl and the file format
//! (`Documentation/virt/kvm/api.rst`, "KVM_GET_STATS_FD") are done here.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use devices::debug_port::MarkProbe;
pub use hvm::Partition;
use vmm_sys_util::ioctl::ioctl;

mod nr {
    #![allow(missing_docs)]
    use vmm_sys_util::ioctl_io_nr;
    // `_IO(KVMIO, 0xce)`: the request number of KVM_GET_STATS_FD.
    ioctl_io_nr!(KVM_GET_STATS_FD, kvm_bindings::KVMIO, 0xce);
}
use nr::KVM_GET_STATS_FD;

/// The counters duet reads, by their KVM names, in the order of [`Counters`]'s fields.
const NAMES: [&str; 8] =
    ["exits", "io_exits", "mmio_exits", "halt_exits", "irq_exits", "signal_exits", "insn_emulation", "hypercalls"];

/// Size of `struct kvm_stats_header`.
const HEADER_SIZE: usize = 24;
/// Size of `struct kvm_stats_desc` without its name.
const DESC_SIZE: usize = 16;
/// Largest descriptor table duet reads (real ones are a few KiB).
const MAX_DESC_BYTES: usize = 1 << 20;

/// One vCPU's counters at one moment. A counter the host does not report reads 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Every exit from the guest to the host (`exits`), including those KVM handles in the kernel
    /// (an ioeventfd write, a halt) and, on PVM, each emulated ring-0 instruction's trap.
    pub exits: u64,
    /// Port-I/O exits (in-kernel ioeventfd ones included).
    pub io_exits: u64,
    /// MMIO exits.
    pub mmio_exits: u64,
    /// `hlt` exits.
    pub halt_exits: u64,
    /// Exits for a host interrupt.
    pub irq_exits: u64,
    /// Exits because the vCPU thread had a signal pending.
    pub signal_exits: u64,
    /// Instructions KVM emulated (on PVM: the guest's ring-0 instructions).
    pub insn_emulation: u64,
    /// Hypercalls KVM handled (`vmcall`/`vmmcall`; duet's own hypercalls are port I/O).
    pub hypercalls: u64,
}

impl Counters {
    fn from_values(v: [u64; NAMES.len()]) -> Self {
        let [exits, io_exits, mmio_exits, halt_exits, irq_exits, signal_exits, insn_emulation, hypercalls] = v;
        Counters { exits, io_exits, mmio_exits, halt_exits, irq_exits, signal_exits, insn_emulation, hypercalls }
    }

    fn values(&self) -> [u64; NAMES.len()] {
        [
            self.exits,
            self.io_exits,
            self.mmio_exits,
            self.halt_exits,
            self.irq_exits,
            self.signal_exits,
            self.insn_emulation,
            self.hypercalls,
        ]
    }

    /// `self - earlier`, counter by counter (0 where a counter went backwards).
    pub fn since(&self, earlier: &Counters) -> Counters {
        let (a, b) = (self.values(), earlier.values());
        Counters::from_values(std::array::from_fn(|i| a[i].saturating_sub(b[i])))
    }

    /// The sum of two samples, counter by counter.
    pub fn plus(&self, other: &Counters) -> Counters {
        let (a, b) = (self.values(), other.values());
        Counters::from_values(std::array::from_fn(|i| a[i].saturating_add(b[i])))
    }
}

/// Serializes a partition by its name (`ros`, `hrt`), as the config sections are called.
fn partition_name<S: serde::Serializer>(p: &Partition, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.name())
}

/// One vCPU's counters in a mark's sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct VcpuSample {
    /// The vCPU's partition (the ROS's is also the only kernel's, outside a partitioned VM).
    #[serde(serialize_with = "partition_name")]
    pub partition: Partition,
    /// Its index within the partition (the HRT's core number for the HRT).
    pub index: u8,
    /// Its counters.
    pub counters: Counters,
}

/// Errors opening a vCPU's stats.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    /// `KVM_GET_STATS_FD` failed (a host kernel older than 5.14).
    #[error("KVM_GET_STATS_FD: {0}")]
    Ioctl(std::io::Error),
    /// Reading the stats file failed.
    #[error("reading the KVM stats file: {0}")]
    Read(std::io::Error),
    /// The stats file's header or descriptors make no sense.
    #[error("malformed KVM stats file: {0}")]
    Malformed(&'static str),
}

/// One vCPU's open stats file and where its counters lie in it.
#[derive(Debug)]
pub struct VcpuStats {
    file: File,
    /// File offset of each of [`NAMES`]' values, if the host reports it.
    offsets: [Option<u64>; NAMES.len()],
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, StatsError> {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
        .ok_or(StatsError::Malformed("truncated"))
}

impl VcpuStats {
    /// Opens the stats of the vCPU (or VM) behind `fd`.
    pub fn open(fd: &impl AsRawFd) -> Result<Self, StatsError> {
        // SAFETY: KVM_GET_STATS_FD takes no argument and returns a new fd or -1; `fd` is a KVM
        // vCPU or VM fd that outlives the call.
        let raw = unsafe { ioctl(fd, KVM_GET_STATS_FD()) };
        if raw < 0 {
            return Err(StatsError::Ioctl(std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a new fd nothing else owns.
        let file = unsafe { File::from_raw_fd(raw) };
        let mut header = [0u8; HEADER_SIZE];
        file.read_exact_at(&mut header, 0).map_err(StatsError::Read)?;
        let name_size = u32_at(&header, 4)? as usize;
        let count = u32_at(&header, 8)? as usize;
        let desc_offset = u64::from(u32_at(&header, 16)?);
        let data_offset = u64::from(u32_at(&header, 20)?);
        let desc_len = DESC_SIZE + name_size;
        let table_len = count.checked_mul(desc_len).filter(|&l| l <= MAX_DESC_BYTES);
        let table_len = table_len.ok_or(StatsError::Malformed("descriptor table too large"))?;
        let mut table = vec![0u8; table_len];
        file.read_exact_at(&mut table, desc_offset).map_err(StatsError::Read)?;
        let mut offsets = [None; NAMES.len()];
        for desc in table.chunks_exact(desc_len) {
            let size = u16::from_le_bytes([desc[6], desc[7]]);
            let offset = u64::from(u32_at(desc, 8)?);
            let name = &desc[DESC_SIZE..];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if size != 1 {
                continue; // histograms and other arrays: not counters duet reads
            }
            if let Some(i) = NAMES.iter().position(|n| n.as_bytes() == name) {
                offsets[i] = Some(data_offset + offset);
            }
        }
        Ok(VcpuStats { file, offsets })
    }

    /// The counters now.
    pub fn read(&self) -> Result<Counters, StatsError> {
        let mut values = [0u64; NAMES.len()];
        for (v, offset) in values.iter_mut().zip(self.offsets) {
            if let Some(at) = offset {
                let mut b = [0u8; 8];
                self.file.read_exact_at(&mut b, at).map_err(StatsError::Read)?;
                *v = u64::from_le_bytes(b);
            }
        }
        Ok(Counters::from_values(values))
    }
}

/// The stats of every vCPU of a VM (both partitions), sampled at each mark.
#[derive(Debug, Default)]
pub struct StatsProbe {
    vcpus: Mutex<Vec<(Partition, u8, VcpuStats)>>,
}

impl StatsProbe {
    /// Adds a vCPU; a host without stats fds is logged once per vCPU and left out.
    pub fn add(&self, partition: Partition, index: u8, fd: &impl AsRawFd) {
        match VcpuStats::open(fd) {
            Ok(s) => self.vcpus.lock().unwrap_or_else(|p| p.into_inner()).push((partition, index, s)),
            Err(e) => log::debug!("no KVM statistics for {partition:?} vCPU {index}: {e}"),
        }
    }

    /// Every vCPU's counters now (a vCPU whose read fails is left out).
    pub fn sample_all(&self) -> Vec<VcpuSample> {
        let vcpus = self.vcpus.lock().unwrap_or_else(|p| p.into_inner());
        vcpus
            .iter()
            .filter_map(|(partition, index, s)| {
                s.read().ok().map(|counters| VcpuSample { partition: *partition, index: *index, counters })
            })
            .collect()
    }

    /// Turns a mark's raw sample (made by [`MarkProbe::sample`]) back into per-vCPU counters.
    pub fn decode(raw: &[u64]) -> Vec<VcpuSample> {
        raw.chunks_exact(2 + NAMES.len())
            .map(|c| VcpuSample {
                partition: if c[0] == 0 { Partition::Ros } else { Partition::Hrt },
                index: c[1] as u8,
                counters: Counters::from_values(std::array::from_fn(|i| c[2 + i])),
            })
            .collect()
    }
}

impl MarkProbe for StatsProbe {
    fn sample(&self) -> Vec<u64> {
        let mut raw = Vec::new();
        for s in self.sample_all() {
            raw.push(u64::from(s.partition == Partition::Hrt));
            raw.push(u64::from(s.index));
            raw.extend(s.counters.values());
        }
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_subtract_and_add_field_by_field() {
        let a = Counters { exits: 10, io_exits: 3, insn_emulation: 100, ..Default::default() };
        let b = Counters { exits: 4, io_exits: 5, insn_emulation: 40, ..Default::default() };
        assert_eq!(a.since(&b), Counters { exits: 6, io_exits: 0, insn_emulation: 60, ..Default::default() });
        assert_eq!(a.plus(&b).exits, 14);
    }

    #[test]
    fn raw_samples_decode_to_what_was_encoded() {
        let c = Counters { exits: 1, io_exits: 2, mmio_exits: 3, halt_exits: 4, irq_exits: 5, signal_exits: 6, insn_emulation: 7, hypercalls: 8 };
        let mut raw = vec![1, 3];
        raw.extend(c.values());
        raw.extend([0, 0]); // a truncated entry is dropped
        let d = StatsProbe::decode(&raw);
        assert_eq!(d, vec![VcpuSample { partition: Partition::Hrt, index: 3, counters: c }]);
    }
}
