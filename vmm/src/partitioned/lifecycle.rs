//! The HRT's lifecycle: one explicit state machine ([`Phase`]) behind one lock, and one condition
//! variable on which everything that waits for it sleeps (the supervisor, parked HRT cores) until the
//! state changes or the VM shuts down; nothing polls.
//!
//! ```text
//! NotBooted ──boot──► Loading ──image loaded──► Booting ──HRT_READY──► Ready
//!                       ▲  (cores parked)          │                     │
//!   Exited/Faulted ─────┘◄────────reboot───────────┴─────────────────────┤
//!        ▲                                                               │
//!        └──────────── Halting (cores parked) ◄──exit or fault───────────┘
//! ```
//!
//! Invokes are accepted only in `Booting` and `Ready`, and posted while the lock is held
//! ([`Lifecycle::while_running`]), so no invoke can slip in between a boot request and the load that
//! clears the invoke slots. The supervisor (`supervisor.rs`) carries out `Loading` and `Halting`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use abi::{HcallError, HrtFault, HrtState, HvmInfo};
use boot::BootEntry;
use devices::debug_port::ExitSink;

use crate::plan::Module;

/// How long the supervisor waits between kicks of cores that have not parked yet (a kick that lands
/// just before KVM_RUN is lost, hence the repeats).
const KICK_INTERVAL: Duration = Duration::from_millis(1);

/// The HRT image to boot (replaceable by hypercall).
#[derive(Debug, Clone)]
pub(crate) struct HrtImage {
    /// The kernel file's bytes.
    pub kernel: std::sync::Arc<Vec<u8>>,
    /// Where it came from (for messages).
    pub origin: String,
    /// Its modules.
    pub modules: Vec<Module>,
    /// Its command line.
    pub cmdline: String,
}

/// Where the HRT is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not booted yet (`boot = "on-request"`).
    NotBooted,
    /// A boot was asked for: the supervisor parks the cores and loads the image.
    Loading,
    /// The cores run the current boot; the HRT has not made HRT_READY yet.
    Booting,
    /// The HRT made HRT_READY.
    Ready,
    /// The HRT exited or faulted (`to`); the supervisor parks the cores. Reported as `from`.
    Halting {
        /// What it was before.
        from: HrtState,
        /// What it becomes, with its detail.
        to: (HrtState, u64),
    },
    /// Exited through its debug port with this status.
    Exited(u64),
    /// Faulted ([`HrtFault`] as a number).
    Faulted(u64),
}

impl Phase {
    /// What HRT_STATUS reports: the state and its detail.
    fn reported(self) -> (HrtState, u64) {
        match self {
            Phase::NotBooted => (HrtState::NotBooted, 0),
            Phase::Loading | Phase::Booting => (HrtState::Booting, 0),
            Phase::Ready => (HrtState::Ready, 0),
            Phase::Halting { from, .. } => (from, 0),
            Phase::Exited(status) => (HrtState::Exited, status),
            Phase::Faulted(fault) => (HrtState::Faulted, fault),
        }
    }

    /// Whether the cores run a boot (and take invokes).
    fn running(self) -> bool {
        matches!(self, Phase::Booting | Phase::Ready)
    }
}

/// What the supervisor is to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Job {
    /// Load the image and release the cores.
    Boot,
    /// Record this end.
    Halt(HrtState, u64),
}

/// A job and the request it serves (a newer request supersedes it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    /// The job.
    pub job: Job,
    generation: u64,
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// Incremented by every request; the supervisor's ticket names the one it serves.
    generation: u64,
    boots: u64,
    image: HrtImage,
    /// Incremented on every boot; a core runs each epoch once.
    epoch: u64,
    /// Entry state of each core for the current epoch.
    entries: Vec<BootEntry>,
    /// The partition description the current boot was given.
    info: HvmInfo,
    /// Cores parked (not in KVM_RUN).
    parked: u32,
    /// The cores' threads, for kicks.
    threads: Vec<Option<libc::pthread_t>>,
    /// The VM is shutting down: every waiter returns.
    shutdown: bool,
}

/// The lifecycle, shared by the hypercall handlers, the HRT's cores and the supervisor.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    state: Mutex<State>,
    changed: Condvar,
    /// The epoch the cores should be running (0: none), for the cores' check before each KVM_RUN.
    live_epoch: AtomicU64,
}

impl Lifecycle {
    /// A lifecycle for `cores` cores that boots `image` once the supervisor runs (`at_start`) or when
    /// the ROS asks.
    pub fn new(image: HrtImage, cores: u32, at_start: bool) -> Lifecycle {
        Lifecycle {
            state: Mutex::new(State {
                phase: if at_start { Phase::Loading } else { Phase::NotBooted },
                generation: 0,
                boots: 0,
                image,
                epoch: 0,
                entries: Vec::new(),
                info: HvmInfo::default(),
                parked: 0,
                threads: vec![None; cores as usize],
                shutdown: false,
            }),
            changed: Condvar::new(),
            live_epoch: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(guard).unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self, s: &mut State) {
        s.generation += 1;
        self.live_epoch.store(0, Ordering::Release);
        self.changed.notify_all();
    }

    /// HRT_STATUS: the state, its detail and the boots so far.
    pub fn status(&self) -> (HrtState, u64, u64) {
        let s = self.lock();
        let (state, detail) = s.phase.reported();
        (state, detail, s.boots)
    }

    /// The partition description of the current boot (default before the first).
    pub fn info(&self) -> HvmInfo {
        self.lock().info
    }

    /// HRT_BOOT: boots the HRT if it is not running (not booted yet, exited or faulted).
    pub fn boot(&self) -> Result<(), HcallError> {
        let mut s = self.lock();
        match s.phase {
            Phase::NotBooted | Phase::Exited(_) | Phase::Faulted(_) => {
                s.phase = Phase::Loading;
                self.changed(&mut s);
                Ok(())
            }
            _ => Err(HcallError::BadState),
        }
    }

    /// HRT_REBOOT: (re)boots the HRT whatever its state.
    pub fn reboot(&self) {
        let mut s = self.lock();
        s.phase = Phase::Loading;
        self.changed(&mut s);
    }

    /// HRT_REPLACE: makes `kernel` the image and boots it.
    pub fn replace(&self, kernel: Vec<u8>, origin: &str) {
        let mut s = self.lock();
        s.image.kernel = std::sync::Arc::new(kernel);
        s.image.origin = origin.to_string();
        s.phase = Phase::Loading;
        self.changed(&mut s);
    }

    /// Stops the HRT's cores and records `state` (an exit or a fault), unless a boot is pending.
    pub fn halt(&self, state: HrtState, detail: u64) {
        let mut s = self.lock();
        s.phase = match s.phase {
            Phase::Loading => return,
            Phase::Halting { from, .. } => Phase::Halting { from, to: (state, detail) },
            other => Phase::Halting { from: other.reported().0, to: (state, detail) },
        };
        self.changed(&mut s);
    }

    /// A fault of core `core`: contained, recorded, reported to the ROS.
    pub fn fault(&self, core: u32, fault: HrtFault, what: &str) {
        log::warn!("hrt: core {core} faulted: {what}");
        self.halt(HrtState::Faulted, fault as u64);
    }

    /// HRT_READY: the boot core takes invokes now. The boot count, if this changed the state.
    pub fn ready(&self) -> Option<u64> {
        let mut s = self.lock();
        if s.phase != Phase::Booting {
            return None;
        }
        s.phase = Phase::Ready;
        Some(s.boots)
    }

    /// Runs `post` (an invoke's posting, given the boot's wake vector) while the HRT runs a boot,
    /// holding the lifecycle's lock so that no boot can start meanwhile; `BAD_STATE` when it does not
    /// run one (not booted, exited, faulted, or a boot or halt pending).
    pub fn while_running<T>(&self, post: impl FnOnce(u32) -> Result<T, HcallError>) -> Result<T, HcallError> {
        let s = self.lock();
        if !s.phase.running() {
            return Err(HcallError::BadState);
        }
        post(s.info.wake_vector)
    }

    /// Ends every wait: the VM is stopping.
    pub fn shutdown(&self) {
        let mut s = self.lock();
        s.shutdown = true;
        self.changed(&mut s);
    }

    // --- The HRT's cores ---

    /// Records the calling thread as core `core`'s (for kicks).
    pub fn register_core_thread(&self, core: u32) {
        if let Some(t) = self.lock().threads.get_mut(core as usize) {
            // SAFETY: pthread_self has no preconditions.
            *t = Some(unsafe { libc::pthread_self() });
        }
    }

    /// Parks core `core` until a boot newer than `*epoch` releases it; then `*epoch` is that boot's and
    /// the result its entry state (`None` for a core the kernel starts itself). `None` at shutdown.
    pub fn park(&self, core: u32, epoch: &mut u64) -> Option<Option<BootEntry>> {
        let mut s = self.lock();
        s.parked += 1;
        self.changed.notify_all();
        // Until the VM stops, or a boot newer than this core's last one runs.
        while !(s.shutdown || s.phase.running() && s.epoch != *epoch) {
            s = self.wait(s);
        }
        s.parked -= 1;
        if s.shutdown {
            return None;
        }
        *epoch = s.epoch;
        Some(s.entries.get(core as usize).cloned())
    }

    /// Whether `epoch` is still the boot the cores should run.
    pub fn is_live(&self, epoch: u64) -> bool {
        self.live_epoch.load(Ordering::Acquire) == epoch
    }

    // --- The supervisor ---

    /// Waits for work: a boot or halt request. `None` at shutdown.
    pub fn next_job(&self) -> Option<Ticket> {
        let mut s = self.lock();
        loop {
            if s.shutdown {
                return None;
            }
            let job = match s.phase {
                Phase::Loading => Some(Job::Boot),
                Phase::Halting { to: (state, detail), .. } => Some(Job::Halt(state, detail)),
                _ => None,
            };
            if let Some(job) = job {
                return Some(Ticket { job, generation: s.generation });
            }
            s = self.wait(s);
        }
    }

    /// Kicks the cores (with `kick`) until all `cores` are parked; false at shutdown.
    pub fn park_all(&self, cores: u32, kick: impl Fn(&[Option<libc::pthread_t>])) -> bool {
        let mut s = self.lock();
        while s.parked < cores {
            if s.shutdown {
                return false;
            }
            kick(&s.threads);
            s = self.changed.wait_timeout(s, KICK_INTERVAL).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        }
        !s.shutdown
    }

    /// The image to load, unless `ticket` was superseded by a newer request.
    pub fn image_for(&self, ticket: &Ticket) -> Option<HrtImage> {
        let s = self.lock();
        (s.generation == ticket.generation).then(|| s.image.clone())
    }

    /// Commits a loaded boot and releases the cores; false if a newer request came meanwhile (it
    /// wins: a reboot reloads, a halt stops).
    pub fn commit_boot(&self, ticket: &Ticket, entries: Vec<BootEntry>, info: HvmInfo) -> Option<u64> {
        let mut s = self.lock();
        if s.generation != ticket.generation {
            return None;
        }
        s.entries = entries;
        s.info = info;
        s.epoch += 1;
        s.boots += 1;
        s.phase = Phase::Booting;
        self.live_epoch.store(s.epoch, Ordering::Release);
        self.changed.notify_all();
        Some(s.boots)
    }

    /// Records the end `ticket` asked for (or a failed boot, as [`HrtFault::Internal`]); false if a
    /// newer request came meanwhile.
    pub fn commit_halt(&self, ticket: &Ticket, state: HrtState, detail: u64) -> bool {
        let mut s = self.lock();
        if s.generation != ticket.generation {
            return false;
        }
        s.phase = if state == HrtState::Exited { Phase::Exited(detail) } else { Phase::Faulted(detail) };
        self.changed.notify_all();
        true
    }
}

/// The HRT's debug port exits here: the exit is contained (the HRT stops, the ROS is told).
impl ExitSink for Lifecycle {
    fn exit(&self, status: u32) {
        log::info!("hrt: exited with status {status}");
        self.halt(HrtState::Exited, u64::from(status));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> HrtImage {
        HrtImage { kernel: Default::default(), origin: "test".into(), modules: Vec::new(), cmdline: String::new() }
    }

    #[test]
    fn invokes_are_refused_from_a_boot_request_until_the_boot_is_committed() {
        let l = Lifecycle::new(image(), 1, false);
        assert_eq!(l.while_running(|_| Ok(())), Err(HcallError::BadState), "not booted");
        l.boot().expect("boot");
        assert_eq!(l.status().0, HrtState::Booting);
        assert_eq!(l.while_running(|_| Ok(())), Err(HcallError::BadState), "loading");
        let t = l.next_job().expect("a job");
        assert_eq!(t.job, Job::Boot);
        assert_eq!(l.commit_boot(&t, Vec::new(), HvmInfo::default()), Some(1));
        assert_eq!(l.while_running(Ok), Ok(0));
        l.reboot();
        assert_eq!(l.while_running(|_| Ok(())), Err(HcallError::BadState), "a reboot is pending");
        assert_eq!(l.commit_boot(&t, Vec::new(), HvmInfo::default()), None, "a superseded ticket commits nothing");
    }

    #[test]
    fn a_halt_waits_for_the_supervisor_and_a_pending_boot_wins() {
        let l = Lifecycle::new(image(), 1, true);
        let t = l.next_job().expect("a job");
        l.halt(HrtState::Faulted, 3);
        assert!(l.image_for(&t).is_some(), "a boot pending: the halt is ignored");
        l.commit_boot(&t, Vec::new(), HvmInfo::default());
        assert_eq!(l.ready(), Some(1));
        l.halt(HrtState::Exited, 7);
        assert_eq!(l.status(), (HrtState::Ready, 0, 1), "reported as before until recorded");
        assert_eq!(l.boot(), Err(HcallError::BadState));
        let t = l.next_job().expect("a job");
        assert_eq!(t.job, Job::Halt(HrtState::Exited, 7));
        assert!(l.commit_halt(&t, HrtState::Exited, 7));
        assert_eq!(l.status(), (HrtState::Exited, 7, 1));
        assert_eq!(l.boot(), Ok(()));
    }

    #[test]
    fn shutdown_ends_every_wait() {
        let l = std::sync::Arc::new(Lifecycle::new(image(), 1, false));
        let core = {
            let l = l.clone();
            std::thread::spawn(move || l.park(0, &mut 0))
        };
        let sup = {
            let l = l.clone();
            std::thread::spawn(move || l.next_job().map(|t| t.job))
        };
        std::thread::sleep(Duration::from_millis(20));
        l.shutdown();
        assert!(core.join().expect("core").is_none());
        assert!(sup.join().expect("supervisor").is_none());
    }
}
