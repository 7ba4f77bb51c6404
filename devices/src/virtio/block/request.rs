//! One virtio-blk request: its descriptor chain checked, then executed against the image.
//!
//! The chain is read as the spec's byte stream (§5.2.6): device-readable bytes (the 16-byte header, then
//! the data of a write), then device-writable bytes (the data of a read or GET_ID, then the status byte,
//! the chain's last writable byte). How the driver cuts that stream into descriptors is its business
//! (`VIRTIO_F_ANY_LAYOUT` is implied by version 1); the chain must pass [`inspect`] (every buffer in guest
//! memory, an end within [`MAX_DESCRIPTORS`], readable descriptors first). A request that breaks a rule completes with `VIRTIO_BLK_S_IOERR`
//! when there is a writable byte for the status, and with nothing written when there is none.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_ID_BYTES, VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH,
    VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
};
use virtio_queue::{DescriptorChain, Reader, Writer};
use vm_memory::{Bytes, GuestAddress};

use crate::virtio::chain::{inspect, ChainError, ChainLayout};
use crate::virtio::Memory;

/// Bytes in a sector, the unit of `sector` in a request and of the capacity.
pub const SECTOR_SIZE: u64 = 512;
/// Segments of data one request may have (`seg_max`): a queue's worth, less header and status.
pub const SEG_MAX: u32 = super::QUEUE_SIZE as u32 - 2;
/// Bytes in one segment (`size_max`).
pub const SIZE_MAX: u32 = 64 << 10;
/// The most data one request may move: `seg_max` segments of `size_max` bytes.
pub const MAX_DATA: u64 = SEG_MAX as u64 * SIZE_MAX as u64;
/// The most descriptors one chain may have: the data segments, the header and the status.
pub const MAX_DESCRIPTORS: usize = SEG_MAX as usize + 2;
/// Bytes of the request header: type, reserved (ioprio), sector.
const HEADER_SIZE: usize = 16;
/// Host memory one request copies through at a time.
const BOUNCE_SIZE: usize = 128 << 10;

/// The host buffer request data is copied through (never empty, so every copy step makes progress).
pub(super) type Bounce = [u8; BOUNCE_SIZE];

/// Why a request failed. The guest sees `VIRTIO_BLK_S_UNSUPP` for [`RequestError::Unsupported`] and
/// `VIRTIO_BLK_S_IOERR` for the rest.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The chain is malformed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// No device-writable byte to put the status in.
    #[error("the chain has no device-writable byte for the status")]
    NoStatus,
    /// Fewer than 16 device-readable bytes.
    #[error("the request header has {0} bytes, not {HEADER_SIZE}")]
    ShortHeader(usize),
    /// A request type this device does not implement.
    #[error("request type {0} is not supported")]
    Unsupported(u32),
    /// Data on the wrong side: readable data for a read, writable data for a write.
    #[error("request type {0} carries data in the wrong direction")]
    WrongDirection(u32),
    /// A data length that is not a whole number of sectors, or too large.
    #[error("{len} data bytes (must be a multiple of {SECTOR_SIZE}, at most {MAX_DATA})")]
    BadLength {
        /// The length.
        len: u64,
    },
    /// Sectors beyond the end of the disk.
    #[error("sectors {sector}+{count} lie beyond the disk's {capacity} sectors")]
    OutOfRange {
        /// First sector.
        sector: u64,
        /// Sectors.
        count: u64,
        /// The disk's capacity in sectors.
        capacity: u64,
    },
    /// A write to a read-only disk.
    #[error("write to a read-only disk")]
    ReadOnly,
    /// Copying between the chain's buffers and the host failed.
    #[error("copying request data failed")]
    Copy(#[source] std::io::Error),
    /// Reading, writing or syncing the image failed.
    #[error("image I/O failed")]
    Io(#[source] std::io::Error),
}

impl RequestError {
    /// The status byte the guest gets.
    pub fn status(&self) -> u8 {
        match self {
            RequestError::Unsupported(_) => VIRTIO_BLK_S_UNSUPP as u8,
            _ => VIRTIO_BLK_S_IOERR as u8,
        }
    }
}

/// The disk a request runs against.
#[derive(Debug)]
pub(super) struct Disk<'a> {
    pub image: &'a File,
    pub capacity: u64,
    pub read_only: bool,
    pub id: &'a [u8; VIRTIO_BLK_ID_BYTES as usize],
    /// Sync after every write: the driver did not negotiate `VIRTIO_BLK_F_FLUSH`, so it cannot ask.
    pub write_through: bool,
}

/// How a request ended.
#[derive(Debug)]
pub(super) struct Completion {
    /// Bytes written into the chain's device-writable buffers (the used-ring length).
    pub used_len: u32,
    /// What happened.
    pub result: Result<(), RequestError>,
}

/// Runs the request in `chain`; the status byte is written before this returns.
pub(super) fn handle(
    disk: &Disk<'_>,
    bounce: &mut Bounce,
    mem: &Memory,
    chain: DescriptorChain<&Memory>,
) -> Completion {
    let status_at = match inspect(mem, chain.clone(), MAX_DESCRIPTORS) {
        (layout, Some(e)) => return fail(mem, layout.last_writable, e.into()),
        (ChainLayout { last_writable: Some(at), .. }, None) => at,
        (_, None) => return fail(mem, None, RequestError::NoStatus),
    };
    let (reader, writer) = match (Reader::new(mem, chain.clone()), Writer::new(mem, chain)) {
        (Ok(r), Ok(w)) => (r, w),
        // `inspect` checked the chain, but Reader and Writer read its descriptors again from guest
        // memory: a driver that rewrites them in between gets its request failed as a broken chain
        // (every address either read touches is checked to lie in guest RAM, so nothing else follows).
        _ => return fail(mem, Some(status_at), ChainError::Broken.into()),
    };
    let mut data = writer;
    let Some(data_len) = data.available_bytes().checked_sub(1) else {
        return fail(mem, Some(status_at), RequestError::NoStatus);
    };
    let mut status = match data.split_at(data_len) {
        Ok(s) => s,
        Err(_) => return fail(mem, Some(status_at), RequestError::NoStatus),
    };
    let result = execute(disk, bounce, reader, &mut data);
    let code = match &result {
        Ok(()) => VIRTIO_BLK_S_OK as u8,
        Err(e) => e.status(),
    };
    let used_len = match status.write_all(&[code]) {
        // At most MAX_DATA + 1 bytes, far below 4 GiB.
        Ok(()) => u32::try_from(data.bytes_written() + 1).unwrap_or(u32::MAX),
        Err(e) => return Completion { used_len: 0, result: Err(RequestError::Copy(e)) },
    };
    Completion { used_len, result }
}

/// Completes a request that failed before it ran: IOERR (or UNSUPP) in the status byte, if there is one.
fn fail(mem: &Memory, status_at: Option<GuestAddress>, e: RequestError) -> Completion {
    match status_at {
        Some(at) if mem.write_obj(e.status(), at).is_ok() => Completion { used_len: 1, result: Err(e) },
        _ => Completion { used_len: 0, result: Err(e) },
    }
}

/// Runs a well-formed request: `reader` holds the readable bytes, `data` the writable ones but the status.
fn execute(
    disk: &Disk<'_>,
    bounce: &mut Bounce,
    mut reader: Reader<'_>,
    data: &mut Writer<'_>,
) -> Result<(), RequestError> {
    let mut header = [0u8; HEADER_SIZE];
    let readable = reader.available_bytes();
    if readable < HEADER_SIZE {
        return Err(RequestError::ShortHeader(readable));
    }
    reader.read_exact(&mut header).map_err(RequestError::Copy)?;
    let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let sector = u64::from_le_bytes([
        header[8], header[9], header[10], header[11], header[12], header[13], header[14], header[15],
    ]);
    match kind {
        VIRTIO_BLK_T_IN => {
            if reader.available_bytes() != 0 {
                return Err(RequestError::WrongDirection(kind));
            }
            let offset = disk.range(sector, data.available_bytes())?;
            read_image(disk.image, bounce, offset, data)
        }
        VIRTIO_BLK_T_OUT => {
            if data.available_bytes() != 0 {
                return Err(RequestError::WrongDirection(kind));
            }
            if disk.read_only {
                return Err(RequestError::ReadOnly);
            }
            let offset = disk.range(sector, reader.available_bytes())?;
            write_image(disk.image, bounce, offset, &mut reader)?;
            if disk.write_through {
                disk.image.sync_data().map_err(RequestError::Io)?;
            }
            Ok(())
        }
        VIRTIO_BLK_T_FLUSH => disk.image.sync_data().map_err(RequestError::Io),
        VIRTIO_BLK_T_GET_ID => {
            let n = data.available_bytes().min(disk.id.len());
            data.write_all(&disk.id[..n]).map_err(RequestError::Copy)
        }
        other => Err(RequestError::Unsupported(other)),
    }
}

impl Disk<'_> {
    /// The byte offset of `len` bytes at `sector`, if they are whole sectors within the disk.
    fn range(&self, sector: u64, len: usize) -> Result<u64, RequestError> {
        let len = len as u64;
        if len % SECTOR_SIZE != 0 || len > MAX_DATA {
            return Err(RequestError::BadLength { len });
        }
        let count = len / SECTOR_SIZE;
        match sector.checked_add(count) {
            Some(end) if end <= self.capacity => Ok(sector * SECTOR_SIZE),
            _ => Err(RequestError::OutOfRange { sector, count, capacity: self.capacity }),
        }
    }
}

/// Image → guest, through the bounce buffer.
fn read_image(image: &File, bounce: &mut Bounce, mut offset: u64, data: &mut Writer<'_>) -> Result<(), RequestError> {
    while data.available_bytes() > 0 {
        let n = data.available_bytes().min(bounce.len());
        image.read_exact_at(&mut bounce[..n], offset).map_err(RequestError::Io)?;
        data.write_all(&bounce[..n]).map_err(RequestError::Copy)?;
        offset += n as u64;
    }
    Ok(())
}

/// Guest → image, through the bounce buffer.
fn write_image(image: &File, bounce: &mut Bounce, mut offset: u64, data: &mut Reader<'_>) -> Result<(), RequestError> {
    while data.available_bytes() > 0 {
        let n = data.available_bytes().min(bounce.len());
        data.read_exact(&mut bounce[..n]).map_err(RequestError::Copy)?;
        image.write_all_at(&bounce[..n], offset).map_err(RequestError::Io)?;
        offset += n as u64;
    }
    Ok(())
}
