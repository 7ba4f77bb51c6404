//! The syscall-forwarding channel between an HRT core and its partner process (the proxy) in the ROS:
//! a versioned `#[repr(C)]` layout and a lock-free single-producer/single-consumer ring over memory
//! both sides map. `no_std`, no dependency but the ABI crate `abi` (its forwarding modes), no floating
//! point, so the HRT kernel (built without SSE, with its own `mem*` functions) and the ROS proxy link
//! the same code. The prose specification
//! is `docs/forwarding.md`.
//!
//! - [`layout`]: the byte layout (offsets as constants) and the [`Request`] / [`Response`] records.
//! - [`Channel`]: a validated view of a region ([`Channel::init`] formats one, [`Channel::from_raw`]
//!   checks one), split into the [`Producer`] (HRT core) and [`Consumer`] (proxy) ends.
//! - [`Wait`], [`Spin`]: how [`Producer::forward`] waits for its answer (the poll / notify /
//!   adaptive modes are built on this).
//! - [`Error`]: what went wrong; the peer is untrusted, and corruption fails the channel, never the
//!   caller.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod layout;
mod ring;

pub use layout::{CacheLine, Request, Response, SplitCall};
pub use ring::{Channel, Consumer, Producer};

/// Version of the forwarding channel ABI, stored in every channel's header. Bumped on any
/// incompatible change to the layout or the protocol.
pub const ABI_VERSION: u32 = 1;

/// What can go wrong with a channel.
///
/// Three kinds: the region handed to [`Channel::init`] or [`Channel::from_raw`] is unusable; the
/// peer corrupted the shared memory ([`Error::is_corruption`]), after which the end that noticed
/// is *failed* and answers every later call with the same error; or the local caller asked for
/// something that cannot be done now (the channel stays usable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The region's address is null or not 64-byte aligned.
    BadAddress,
    /// The region is shorter than its header, or than its slot count needs.
    RegionTooSmall,
    /// The header's first word is not [`layout::MAGIC`].
    BadMagic,
    /// The header's version is not [`ABI_VERSION`].
    BadVersion,
    /// The slot count is not a power of two in [`layout::MIN_SLOTS`]..=[`layout::MAX_SLOTS`].
    BadSlotCount,
    /// A published progress counter is behind one it can never be behind. Corruption.
    IndexOutOfRange,
    /// More requests in flight than the channel has slots, or a sequence number that would pass
    /// `u64::MAX`. Corruption.
    Overflow,
    /// A slot's sequence number is neither the expected one nor its previous occupant's. Corruption.
    SequenceMismatch,
    /// [`Producer::forward`] was called with requests still outstanding; collect them first.
    Busy,
    /// [`Consumer::try_complete`] was given a sequence number other than that of the oldest request
    /// taken and not yet completed.
    NotTaken,
    /// The [`Wait`] policy gave up; the request is still outstanding ([`Producer::try_collect`]
    /// will return its response).
    TimedOut,
    /// The header's mode is not one of [`layout::MODE_POLL`], [`layout::MODE_NOTIFY`],
    /// [`layout::MODE_ADAPTIVE`].
    BadMode,
}

impl Error {
    /// Whether the error means the peer corrupted the shared memory (the end that saw it is failed).
    pub fn is_corruption(self) -> bool {
        matches!(self, Error::IndexOutOfRange | Error::Overflow | Error::SequenceMismatch)
    }

    /// A short description, for logs.
    pub fn describe(self) -> &'static str {
        match self {
            Error::BadAddress => "channel region is null or not 64-byte aligned",
            Error::RegionTooSmall => "channel region is too small",
            Error::BadMagic => "channel header has a bad magic",
            Error::BadVersion => "channel header has an unsupported ABI version",
            Error::BadSlotCount => "channel header has a bad slot count",
            Error::IndexOutOfRange => "channel progress counter out of range (corrupt)",
            Error::Overflow => "more requests in flight than slots, or sequence exhausted (corrupt)",
            Error::SequenceMismatch => "unexpected sequence number in a slot (corrupt)",
            Error::Busy => "requests still outstanding",
            Error::NotTaken => "not the oldest taken request",
            Error::TimedOut => "gave up waiting for the response",
            Error::BadMode => "channel header has an unknown mode",
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.describe())
    }
}

/// How a waiting side spends the time until its answer is there: the seam for the poll, notify and
/// adaptive modes (`docs/forwarding.md`).
pub trait Wait {
    /// Called each time the answer was looked for and is not there yet; `polls` counts those looks
    /// (1 the first time). Return `false` to stop waiting.
    fn wait(&mut self, polls: u64) -> bool;
}

/// Any `FnMut(polls) -> keep_waiting` is a [`Wait`] policy (e.g. spin a while, then yield).
impl<F: FnMut(u64) -> bool> Wait for F {
    fn wait(&mut self, polls: u64) -> bool {
        self(polls)
    }
}

/// The poll mode's policy: spin (with the CPU's spin-loop hint) for at most `limit` looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spin {
    /// Looks after which to give up; `u64::MAX` spins for ever.
    pub limit: u64,
}

impl Spin {
    /// Spin for ever.
    pub const fn forever() -> Spin {
        Spin { limit: u64::MAX }
    }

    /// Spin for at most `limit` looks.
    pub const fn limit(limit: u64) -> Spin {
        Spin { limit }
    }
}

impl Wait for Spin {
    fn wait(&mut self, polls: u64) -> bool {
        core::hint::spin_loop();
        polls < self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_version_is_the_first_layout() {
        assert_eq!(ABI_VERSION, 1);
    }

    #[test]
    fn only_peer_damage_is_corruption() {
        use Error::*;
        let all = [
            BadAddress,
            RegionTooSmall,
            BadMagic,
            BadVersion,
            BadSlotCount,
            IndexOutOfRange,
            Overflow,
            SequenceMismatch,
            Busy,
            NotTaken,
            TimedOut,
            BadMode,
        ];
        let corrupt: std::vec::Vec<_> = all.iter().filter(|e| e.is_corruption()).collect();
        assert_eq!(corrupt, [&IndexOutOfRange, &Overflow, &SequenceMismatch]);
        for e in all {
            assert!(!e.describe().is_empty());
        }
    }

    #[test]
    fn spin_gives_up_after_its_limit() {
        let mut spin = Spin::limit(3);
        assert!(spin.wait(1) && spin.wait(2));
        assert!(!spin.wait(3));
        assert!(Spin::forever().wait(u64::MAX - 1));
        let mut closure = |polls: u64| polls < 2;
        assert!(closure.wait(1) && !closure.wait(2));
    }
}
