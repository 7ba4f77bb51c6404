//! virtio-blk (virtio 1.2 §5.2) over a raw image file: read, write, flush and GET_ID on one queue.
//!
//! Requests run synchronously when the driver notifies the queue, at most one pass over the available
//! ring per notification. A flush is an `fdatasync` of the image, so a write the guest saw complete
//! before a completed flush is in the host file; a driver that does not negotiate `VIRTIO_BLK_F_FLUSH`
//! gets write-through (a sync after every write). The image is locked (`flock`, shared when read-only,
//! exclusive otherwise) so that two VMs do not write one image. See [`request`] for what a request may
//! look like and how a malformed one ends.

pub mod request;

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_ID_BYTES,
};
use virtio_bindings::virtio_ids::VIRTIO_ID_BLOCK;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};

use self::request::{Bounce, Disk, RequestError, SECTOR_SIZE, SEG_MAX, SIZE_MAX};
use super::{
    read_config_bytes, Activation, DeviceError, Interrupt, LogBudget, Memory, VirtioDevice, VIRTIO_RING_F_INDIRECT_DESC,
};

/// Descriptors in the request queue.
pub const QUEUE_SIZE: u16 = 256;
/// Bytes of the configuration space we fill: capacity, size_max, seg_max, geometry (0), blk_size (0).
const CONFIG_SIZE: usize = 24;

/// Errors setting up a block device.
#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    /// The image could not be opened.
    #[error("cannot open disk image {path}")]
    Open {
        /// The image.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds a lock on the image (another VM uses it).
    #[error("disk image is in use by another process (locked)")]
    Locked(#[source] std::io::Error),
    /// The image's size could not be found.
    #[error("cannot find the size of the disk image")]
    Size(#[source] std::io::Error),
    /// The serial does not fit the 20 bytes of GET_ID.
    #[error("serial {0:?} is longer than {VIRTIO_BLK_ID_BYTES} bytes")]
    SerialTooLong(String),
}

/// How a block device presents its image.
#[derive(Debug, Clone, Default)]
pub struct BlockOptions {
    /// Offer `VIRTIO_BLK_F_RO` and refuse writes.
    pub read_only: bool,
    /// The serial the guest reads with GET_ID (`/sys/block/vdX/serial`), at most 20 bytes; none: empty.
    pub serial: Option<String>,
}

/// A virtio-blk device.
pub struct Block {
    image: File,
    capacity: u64,
    read_only: bool,
    id: [u8; VIRTIO_BLK_ID_BYTES as usize],
    config: [u8; CONFIG_SIZE],
    bounce: Box<Bounce>,
    active: Option<Active>,
    failed_requests: LogBudget,
}

/// What the device holds while the driver runs it.
struct Active {
    mem: Memory,
    queue: Queue,
    interrupt: Interrupt,
    write_through: bool,
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Block")
            .field("capacity", &self.capacity)
            .field("read_only", &self.read_only)
            .field("active", &self.active.is_some())
            .finish_non_exhaustive()
    }
}

impl Block {
    /// Opens the raw image at `path` (read-only when `options.read_only`).
    pub fn open(path: &Path, options: BlockOptions) -> Result<Block, BlockError> {
        let image = OpenOptions::new()
            .read(true)
            .write(!options.read_only)
            .open(path)
            .map_err(|source| BlockError::Open { path: path.to_owned(), source })?;
        Block::new(image, options)
    }

    /// A device over an open raw image (a regular file or a block device). Its capacity is its size
    /// in whole sectors; a partial last sector is not visible to the guest.
    pub fn new(image: File, options: BlockOptions) -> Result<Block, BlockError> {
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        if let Some(serial) = &options.serial {
            let bytes = serial.as_bytes();
            if bytes.len() > id.len() {
                return Err(BlockError::SerialTooLong(serial.clone()));
            }
            id[..bytes.len()].copy_from_slice(bytes);
        }
        lock(&image, options.read_only)?;
        let size = (&image).seek(SeekFrom::End(0)).map_err(BlockError::Size)?;
        if size % SECTOR_SIZE != 0 {
            log::warn!("virtio-blk: image size {size} is not a whole number of sectors; the tail is not visible");
        }
        let capacity = size / SECTOR_SIZE;
        let mut config = [0u8; CONFIG_SIZE];
        config[0..8].copy_from_slice(&capacity.to_le_bytes());
        config[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        Ok(Block {
            image,
            capacity,
            read_only: options.read_only,
            id,
            config,
            bounce: Box::new([0u8; std::mem::size_of::<Bounce>()]),
            active: None,
            failed_requests: LogBudget::default(),
        })
    }

    /// The capacity in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Requests that failed so far (each got an error status).
    pub fn failed_requests(&self) -> u64 {
        self.failed_requests.count()
    }

    /// Logs a failed request within the device's [`LogBudget`].
    fn note_failure(&mut self, e: &RequestError) {
        if let Some(n) = self.failed_requests.hit() {
            let cause = std::error::Error::source(e).map(|s| format!(": {s}")).unwrap_or_default();
            log::warn!("virtio-blk: request failed ({n} so far): {e}{cause}");
        }
    }
}

/// Takes an advisory lock on the image for the device's lifetime (released when the file closes).
fn lock(image: &File, shared: bool) -> Result<(), BlockError> {
    let op = if shared { libc::LOCK_SH } else { libc::LOCK_EX } | libc::LOCK_NB;
    // SAFETY: flock on a descriptor we own; it reads or writes no memory of ours.
    let rc = unsafe { libc::flock(image.as_raw_fd(), op) };
    if rc != 0 {
        return Err(BlockError::Locked(std::io::Error::last_os_error()));
    }
    Ok(())
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn features(&self) -> u64 {
        let ro = if self.read_only { 1 << VIRTIO_BLK_F_RO } else { 0 };
        (1 << VIRTIO_BLK_F_FLUSH)
            | (1 << VIRTIO_BLK_F_SEG_MAX)
            | (1 << VIRTIO_BLK_F_SIZE_MAX)
            | ro
            | VIRTIO_RING_F_INDIRECT_DESC
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.config, offset, data);
    }

    fn activate(&mut self, activation: Activation) -> Result<(), DeviceError> {
        let Activation { mem, queues, interrupt, features } = activation;
        let Some(queue) = queues.into_iter().next().filter(|q| q.ready()) else {
            return Err(DeviceError::QueueNotEnabled { index: 0 });
        };
        let write_through = features & (1 << VIRTIO_BLK_F_FLUSH) == 0;
        if write_through {
            log::info!("virtio-blk: the driver did not negotiate FLUSH; every write is synced");
        }
        self.active = Some(Active { mem, queue, interrupt, write_through });
        Ok(())
    }

    fn reset(&mut self) {
        self.active = None;
    }

    fn process_queue(&mut self, index: u16) -> Result<(), DeviceError> {
        if index != 0 {
            log::warn!("virtio-blk: notify of queue {index}, which does not exist");
            return Ok(());
        }
        let Some(active) = self.active.as_mut() else { return Ok(()) };
        let Active { mem, queue, interrupt, write_through } = active;
        let broken = |source| DeviceError::BrokenRing { index, source };
        // One pass: the chains available now, at most a queue's worth (the iterator checks that).
        let chains: Vec<DescriptorChain<&Memory>> = queue.iter(&*mem).map_err(broken)?.collect();
        let disk = Disk {
            image: &self.image,
            capacity: self.capacity,
            read_only: self.read_only,
            id: &self.id,
            write_through: *write_through,
        };
        let mut failures = Vec::new();
        let mut used = false;
        let mut outcome = Ok(());
        for chain in chains {
            let head = chain.head_index();
            let done = request::handle(&disk, &mut self.bounce, mem, chain);
            if let Err(e) = done.result {
                failures.push(e);
            }
            // A head out of the table's range cannot be returned: the ring is broken.
            if let Err(source) = queue.add_used(&*mem, head, done.used_len) {
                outcome = Err(broken(source));
                break;
            }
            used = true;
        }
        if used && queue.needs_notification(&*mem).map_err(broken)? {
            interrupt.signal_used_queue();
        }
        for e in &failures {
            self.note_failure(e);
        }
        outcome
    }
}

#[cfg(test)]
mod tests;
