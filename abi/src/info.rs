//! The HVM boot structures: the header tag an HRT puts in its Multiboot2 header, and the partition
//! description duet gives it (a Multiboot2 information tag) and answers [`crate::Op::PartitionInfo`] with.
//! Both are little-endian, fixed-size, and read and written field by field (no transmutes), so a
//! hostile or truncated copy is an error, not undefined behaviour.

/// Type of the HVM Multiboot2 header tag (Palacios' HRT tag used the same number).
pub const HVM_HEADER_TAG: u16 = 0xF00D;
/// Type of the HVM Multiboot2 information tag.
pub const HVM_INFO_TAG: u32 = 0xF00F;
/// Most cores per partition (the config's limit).
pub const MAX_CORES: usize = 64;

/// The HVM header tag, in the HRT's Multiboot2 header (type [`HVM_HEADER_TAG`], size 40, tag flags
/// bit 0 set = optional, so other loaders ignore it):
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 2 | type = 0xF00D |
/// | 2 | 2 | tag flags (1: optional) |
/// | 4 | 4 | size = 40 |
/// | 8 | 4 | `hvm_flags`: bit 0 = use the 64-bit entry |
/// | 12 | 4 | `wake_vector`: interrupt vector duet sends a core when it posts an invoke (32–255) |
/// | 16 | 8 | `entry64`: virtual address of the 64-bit entry |
/// | 24 | 8 | `kernel_vbase`: virtual address the HRT partition's first byte is mapped at |
/// | 32 | 8 | `phys_map_base`: virtual address all guest memory is also mapped at (0 = none) |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HvmHeaderTag {
    /// Bit 0: enter through `entry64`.
    pub hvm_flags: u32,
    /// The wake-up vector.
    pub wake_vector: u32,
    /// The 64-bit entry (virtual).
    pub entry64: u64,
    /// Where the partition is mapped (virtual); a segment with physical address P is loaded at
    /// partition base + P and mapped at `kernel_vbase` + P.
    pub kernel_vbase: u64,
    /// Where all of guest memory is mapped as well (virtual), or 0.
    pub phys_map_base: u64,
}

impl HvmHeaderTag {
    /// Size of the tag in bytes.
    pub const SIZE: usize = 40;
    /// `hvm_flags` bit 0.
    pub const FLAG_ENTRY64: u32 = 1;

    /// Reads the tag's body from the whole tag's bytes (starting at its type field); `None` if the
    /// type or size is wrong or the bytes are short.
    pub fn parse(tag: &[u8]) -> Option<HvmHeaderTag> {
        if tag.len() < Self::SIZE || u16_at(tag, 0)? != HVM_HEADER_TAG || u32_at(tag, 4)? as usize != Self::SIZE {
            return None;
        }
        Some(HvmHeaderTag {
            hvm_flags: u32_at(tag, 8)?,
            wake_vector: u32_at(tag, 12)?,
            entry64: u64_at(tag, 16)?,
            kernel_vbase: u64_at(tag, 24)?,
            phys_map_base: u64_at(tag, 32)?,
        })
    }

    /// Writes the whole tag (type, flags 1 = optional, size, body).
    pub fn write(&self, out: &mut [u8; Self::SIZE]) {
        out[0..2].copy_from_slice(&HVM_HEADER_TAG.to_le_bytes());
        out[2..4].copy_from_slice(&1u16.to_le_bytes());
        out[4..8].copy_from_slice(&(Self::SIZE as u32).to_le_bytes());
        out[8..12].copy_from_slice(&self.hvm_flags.to_le_bytes());
        out[12..16].copy_from_slice(&self.wake_vector.to_le_bytes());
        out[16..24].copy_from_slice(&self.entry64.to_le_bytes());
        out[24..32].copy_from_slice(&self.kernel_vbase.to_le_bytes());
        out[32..40].copy_from_slice(&self.phys_map_base.to_le_bytes());
    }

    /// Whether the HRT asks for the 64-bit entry.
    pub fn entry64_requested(&self) -> bool {
        self.hvm_flags & Self::FLAG_ENTRY64 != 0
    }
}

/// A guest-physical range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemRange {
    /// First byte.
    pub base: u64,
    /// Length in bytes (0: unused entry).
    pub len: u64,
}

/// The partition description (version 1), [`HvmInfo::SIZE`] bytes, little-endian:
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | `version` = 1 |
/// | 4 | 4 | `flags`: bit 0 = the HRT was entered through its 64-bit entry |
/// | 8 | 4 | `hypercall_port` (0xe4) |
/// | 12 | 4 | `wake_vector` |
/// | 16 | 4 | `hrt_cores` |
/// | 20 | 4 | `ros_cores` |
/// | 24 | 8 | `tsc_khz` (0 = unknown) |
/// | 32 | 16 | `hrt_ram`: base, length |
/// | 48 | 32 | `ros_ram[2]`: base, length (below / above the 4 GiB MMIO gap; length 0 = unused) |
/// | 80 | 8 | `comm_page`: guest-physical address of the invoke slots (HRT RAM) |
/// | 88 | 8 | `kernel_vbase` (0 without the 64-bit entry) |
/// | 96 | 8 | `phys_map_base` (0 = none) |
/// | 104 | 256 | `hrt_apic_ids[64]` (u32 each; the first `hrt_cores` are used; index = core index) |
/// | 360 | 256 | `ros_apic_ids[64]` (u32 each; the first `ros_cores` are used) |
/// | 616 | 4 | `forward_mode`: [`crate::ForwardMode`] as a number (0 poll, 1 notify, 2 adaptive) |
/// | 620 | 4 | `forward_spin_us`: adaptive mode's bounded spin before sleeping, in µs |
/// | 624 | 4 | `hrt_doorbell_port` (0xe8, [`crate::HRT_DOORBELL_PORT`]) |
/// | 628 | 4 | `ros_doorbell_port` (0xec, [`crate::ROS_DOORBELL_PORT`]) |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HvmInfo {
    /// Structure version (1).
    pub version: u32,
    /// Bit 0: entered through the 64-bit entry.
    pub flags: u32,
    /// The hypercall port.
    pub hypercall_port: u32,
    /// The invoke wake-up vector.
    pub wake_vector: u32,
    /// HRT cores.
    pub hrt_cores: u32,
    /// ROS cores.
    pub ros_cores: u32,
    /// TSC frequency in kHz, or 0.
    pub tsc_khz: u64,
    /// The HRT's RAM.
    pub hrt_ram: MemRange,
    /// The ROS's RAM.
    pub ros_ram: [MemRange; 2],
    /// The invoke slots' address.
    pub comm_page: u64,
    /// Where the HRT partition is mapped (64-bit entry).
    pub kernel_vbase: u64,
    /// Where all memory is mapped as well, or 0.
    pub phys_map_base: u64,
    /// HRT APIC IDs by core index.
    pub hrt_apic_ids: [u32; MAX_CORES],
    /// ROS APIC IDs.
    pub ros_apic_ids: [u32; MAX_CORES],
    /// The configured forwarding mode, a [`crate::ForwardMode`] number (decode it with
    /// [`crate::ForwardMode::from_u32`]; an unknown number is kept as it is).
    pub forward_mode: u32,
    /// Adaptive mode's spin bound in microseconds (meaningful only for [`crate::ForwardMode::Adaptive`]).
    pub forward_spin_us: u32,
    /// The HRT doorbell port (ROS → HRT core).
    pub hrt_doorbell_port: u32,
    /// The ROS doorbell port (HRT core → ROS).
    pub ros_doorbell_port: u32,
}

impl Default for HvmInfo {
    fn default() -> Self {
        HvmInfo {
            version: 1,
            flags: 0,
            hypercall_port: u32::from(crate::HYPERCALL_PORT),
            wake_vector: 0,
            hrt_cores: 0,
            ros_cores: 0,
            tsc_khz: 0,
            hrt_ram: MemRange::default(),
            ros_ram: [MemRange::default(); 2],
            comm_page: 0,
            kernel_vbase: 0,
            phys_map_base: 0,
            hrt_apic_ids: [0; MAX_CORES],
            ros_apic_ids: [0; MAX_CORES],
            forward_mode: crate::ForwardMode::Poll as u32,
            forward_spin_us: 0,
            hrt_doorbell_port: u32::from(crate::HRT_DOORBELL_PORT),
            ros_doorbell_port: u32::from(crate::ROS_DOORBELL_PORT),
        }
    }
}

impl HvmInfo {
    /// Size of the encoded structure.
    pub const SIZE: usize = 104 + 2 * 4 * MAX_CORES + 4 * 4;
    /// `flags` bit 0.
    pub const FLAG_ENTRY64: u32 = 1;
    /// Offset of `forward_mode`, the first field after the APIC ID tables.
    const FORWARD_AT: usize = 104 + 2 * 4 * MAX_CORES;

    /// Encodes the structure.
    pub fn encode(&self, out: &mut [u8; Self::SIZE]) {
        let mut w = Writer { out, at: 0 };
        for v in [self.version, self.flags, self.hypercall_port, self.wake_vector, self.hrt_cores, self.ros_cores] {
            w.u32(v);
        }
        w.u64(self.tsc_khz);
        for r in [self.hrt_ram, self.ros_ram[0], self.ros_ram[1]] {
            w.u64(r.base);
            w.u64(r.len);
        }
        for v in [self.comm_page, self.kernel_vbase, self.phys_map_base] {
            w.u64(v);
        }
        for v in self.hrt_apic_ids.iter().chain(self.ros_apic_ids.iter()) {
            w.u32(*v);
        }
        for v in [self.forward_mode, self.forward_spin_us, self.hrt_doorbell_port, self.ros_doorbell_port] {
            w.u32(v);
        }
    }

    /// The configured forwarding mode, or `None` for a number this ABI does not know.
    pub fn forward(&self) -> Option<crate::ForwardMode> {
        crate::ForwardMode::from_u32(self.forward_mode)
    }

    /// Decodes a structure; `None` if `bytes` is short, the version is not 1, or a core count is
    /// above [`MAX_CORES`].
    pub fn decode(bytes: &[u8]) -> Option<HvmInfo> {
        if bytes.len() < Self::SIZE || u32_at(bytes, 0)? != 1 {
            return None;
        }
        let range = |at| Some(MemRange { base: u64_at(bytes, at)?, len: u64_at(bytes, at + 8)? });
        let mut info = HvmInfo {
            version: 1,
            flags: u32_at(bytes, 4)?,
            hypercall_port: u32_at(bytes, 8)?,
            wake_vector: u32_at(bytes, 12)?,
            hrt_cores: u32_at(bytes, 16)?,
            ros_cores: u32_at(bytes, 20)?,
            tsc_khz: u64_at(bytes, 24)?,
            hrt_ram: range(32)?,
            ros_ram: [range(48)?, range(64)?],
            comm_page: u64_at(bytes, 80)?,
            kernel_vbase: u64_at(bytes, 88)?,
            phys_map_base: u64_at(bytes, 96)?,
            forward_mode: u32_at(bytes, Self::FORWARD_AT)?,
            forward_spin_us: u32_at(bytes, Self::FORWARD_AT + 4)?,
            hrt_doorbell_port: u32_at(bytes, Self::FORWARD_AT + 8)?,
            ros_doorbell_port: u32_at(bytes, Self::FORWARD_AT + 12)?,
            ..HvmInfo::default()
        };
        if info.hrt_cores as usize > MAX_CORES || info.ros_cores as usize > MAX_CORES {
            return None;
        }
        for i in 0..MAX_CORES {
            info.hrt_apic_ids[i] = u32_at(bytes, 104 + 4 * i)?;
            info.ros_apic_ids[i] = u32_at(bytes, 104 + 4 * MAX_CORES + 4 * i)?;
        }
        Some(info)
    }
}

struct Writer<'a> {
    out: &'a mut [u8],
    at: usize,
}

impl Writer<'_> {
    fn u32(&mut self, v: u32) {
        if let Some(d) = self.out.get_mut(self.at..self.at + 4) {
            d.copy_from_slice(&v.to_le_bytes());
        }
        self.at += 4;
    }

    fn u64(&mut self, v: u64) {
        if let Some(d) = self.out.get_mut(self.at..self.at + 8) {
            d.copy_from_slice(&v.to_le_bytes());
        }
        self.at += 8;
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_tag_round_trips_and_refuses_wrong_type_or_size() {
        let tag = HvmHeaderTag {
            hvm_flags: 1,
            wake_vector: 0xf0,
            entry64: 0xffff_ffff_8020_1000,
            kernel_vbase: 0xffff_ffff_8000_0000,
            phys_map_base: 0xffff_8000_0000_0000,
        };
        let mut bytes = [0u8; HvmHeaderTag::SIZE];
        tag.write(&mut bytes);
        assert_eq!(HvmHeaderTag::parse(&bytes), Some(tag));
        assert!(tag.entry64_requested());
        assert_eq!(HvmHeaderTag::parse(&bytes[..39]), None);
        let mut wrong = bytes;
        wrong[0] = 0;
        assert_eq!(HvmHeaderTag::parse(&wrong), None);
        let mut wrong = bytes;
        wrong[4] = 48;
        assert_eq!(HvmHeaderTag::parse(&wrong), None);
    }

    #[test]
    fn info_round_trips_and_rejects_bad_copies() {
        let mut info = HvmInfo {
            flags: 1,
            wake_vector: 0xf0,
            hrt_cores: 2,
            ros_cores: 1,
            tsc_khz: 2_500_000,
            hrt_ram: MemRange { base: 0x1000_0000, len: 0x400_0000 },
            comm_page: 0x1010_0000,
            ..HvmInfo::default()
        };
        info.ros_ram[0] = MemRange { base: 0, len: 0x1000_0000 };
        info.hrt_apic_ids[0] = 1;
        info.hrt_apic_ids[1] = 2;
        info.ros_apic_ids[63] = 9;
        info.forward_mode = crate::ForwardMode::Adaptive as u32;
        info.forward_spin_us = 250;
        let mut bytes = [0u8; HvmInfo::SIZE];
        info.encode(&mut bytes);
        assert_eq!(HvmInfo::decode(&bytes), Some(info));
        assert_eq!(HvmInfo::decode(&bytes).and_then(|i| i.forward()), Some(crate::ForwardMode::Adaptive));
        assert_eq!(HvmInfo::decode(&bytes[..HvmInfo::SIZE - 1]), None);
        let mut bad = bytes;
        bad[0] = 2;
        assert_eq!(HvmInfo::decode(&bad), None, "unknown version");
        let mut bad = bytes;
        bad[16] = 65;
        assert_eq!(HvmInfo::decode(&bad), None, "too many cores");
    }

    #[test]
    fn forwarding_fields_sit_after_the_apic_ids_at_their_documented_offsets() {
        assert_eq!(HvmInfo::SIZE, 632);
        let info = HvmInfo { forward_mode: 1, forward_spin_us: 0x0102_0304, ..HvmInfo::default() };
        let mut bytes = [0u8; HvmInfo::SIZE];
        info.encode(&mut bytes);
        assert_eq!(u32_at(&bytes, 616), Some(1));
        assert_eq!(u32_at(&bytes, 620), Some(0x0102_0304));
        assert_eq!(u32_at(&bytes, 624), Some(0xe8));
        assert_eq!(u32_at(&bytes, 628), Some(0xec));
        assert_eq!(info.forward(), Some(crate::ForwardMode::Notify));
        // An unknown mode number decodes (a newer VMM), but is no ForwardMode.
        let mut newer = bytes;
        newer[616] = 7;
        let decoded = HvmInfo::decode(&newer);
        assert_eq!(decoded.map(|i| i.forward_mode), Some(7));
        assert_eq!(decoded.and_then(|i| i.forward()), None);
        assert_eq!(HvmInfo::default().forward(), Some(crate::ForwardMode::Poll));
    }
}
