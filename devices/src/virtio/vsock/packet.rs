//! The virtio-vsock packet header (virtio 1.2 §5.10.6), little-endian on the wire.

/// Bytes of the header before a packet's payload.
pub const HDR_SIZE: usize = 44;
/// The host's CID.
pub const HOST_CID: u64 = 2;
/// `type`: a stream socket (the only type this device serves).
pub const TYPE_STREAM: u16 = 1;

/// What a packet asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Open a connection.
    Request,
    /// Accept a connection.
    Response,
    /// Refuse or abort a connection.
    Rst,
    /// No more data in the directions of `flags`.
    Shutdown,
    /// Data.
    Rw,
    /// The sender's buffer space changed.
    CreditUpdate,
    /// Asks for a credit update.
    CreditRequest,
}

impl Op {
    fn code(self) -> u16 {
        match self {
            Op::Request => 1,
            Op::Response => 2,
            Op::Rst => 3,
            Op::Shutdown => 4,
            Op::Rw => 5,
            Op::CreditUpdate => 6,
            Op::CreditRequest => 7,
        }
    }

    fn from_code(code: u16) -> Option<Op> {
        Some(match code {
            1 => Op::Request,
            2 => Op::Response,
            3 => Op::Rst,
            4 => Op::Shutdown,
            5 => Op::Rw,
            6 => Op::CreditUpdate,
            7 => Op::CreditRequest,
            _ => return None,
        })
    }
}

/// SHUTDOWN flag: the sender will receive no more data.
pub const SHUTDOWN_RCV: u32 = 1;
/// SHUTDOWN flag: the sender will send no more data.
pub const SHUTDOWN_SEND: u32 = 2;

/// A packet header. `op` is `None` for an operation this device does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Source CID.
    pub src_cid: u64,
    /// Destination CID.
    pub dst_cid: u64,
    /// Source port.
    pub src_port: u32,
    /// Destination port.
    pub dst_port: u32,
    /// Payload bytes after the header.
    pub len: u32,
    /// Socket type.
    pub kind: u16,
    /// Operation.
    pub op: Option<Op>,
    /// Operation flags (SHUTDOWN).
    pub flags: u32,
    /// The sender's receive buffer size.
    pub buf_alloc: u32,
    /// Bytes the sender has consumed from its receive buffer, ever (wrapping).
    pub fwd_cnt: u32,
}

impl Header {
    /// A host-to-guest header for `op` on the connection host `host_port` ↔ guest `guest_cid:guest_port`.
    pub fn to_guest(op: Op, host_port: u32, guest_cid: u64, guest_port: u32) -> Header {
        Header {
            src_cid: HOST_CID,
            dst_cid: guest_cid,
            src_port: host_port,
            dst_port: guest_port,
            len: 0,
            kind: TYPE_STREAM,
            op: Some(op),
            flags: 0,
            buf_alloc: 0,
            fwd_cnt: 0,
        }
    }

    /// Decodes a header.
    pub fn parse(b: &[u8; HDR_SIZE]) -> Header {
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| u64::from(u32_at(i)) | (u64::from(u32_at(i + 4)) << 32);
        Header {
            src_cid: u64_at(0),
            dst_cid: u64_at(8),
            src_port: u32_at(16),
            dst_port: u32_at(20),
            len: u32_at(24),
            kind: u16_at(28),
            op: Op::from_code(u16_at(30)),
            flags: u32_at(32),
            buf_alloc: u32_at(36),
            fwd_cnt: u32_at(40),
        }
    }

    /// Encodes the header.
    pub fn bytes(&self) -> [u8; HDR_SIZE] {
        let mut b = [0u8; HDR_SIZE];
        b[0..8].copy_from_slice(&self.src_cid.to_le_bytes());
        b[8..16].copy_from_slice(&self.dst_cid.to_le_bytes());
        b[16..20].copy_from_slice(&self.src_port.to_le_bytes());
        b[20..24].copy_from_slice(&self.dst_port.to_le_bytes());
        b[24..28].copy_from_slice(&self.len.to_le_bytes());
        b[28..30].copy_from_slice(&self.kind.to_le_bytes());
        b[30..32].copy_from_slice(&self.op.map_or(0, Op::code).to_le_bytes());
        b[32..36].copy_from_slice(&self.flags.to_le_bytes());
        b[36..40].copy_from_slice(&self.buf_alloc.to_le_bytes());
        b[40..44].copy_from_slice(&self.fwd_cnt.to_le_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_in_the_spec_layout() {
        let h = Header {
            src_cid: 3,
            dst_cid: HOST_CID,
            src_port: 0x1234_5678,
            dst_port: 52,
            len: 7,
            kind: TYPE_STREAM,
            op: Some(Op::Shutdown),
            flags: SHUTDOWN_RCV | SHUTDOWN_SEND,
            buf_alloc: 0x4_0000,
            fwd_cnt: 0xffff_fff0,
        };
        let b = h.bytes();
        assert_eq!(&b[0..8], &3u64.to_le_bytes());
        assert_eq!(&b[16..20], &0x1234_5678u32.to_le_bytes());
        assert_eq!(&b[30..32], &4u16.to_le_bytes());
        assert_eq!(Header::parse(&b), h);
        let mut unknown = b;
        unknown[30] = 99;
        assert_eq!(Header::parse(&unknown).op, None);
    }
}
