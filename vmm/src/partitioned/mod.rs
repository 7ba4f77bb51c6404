//! The partitioned VM (HVM): one VM as the user sees it, two KVM VMs underneath. The ROS's KVM VM maps
//! only the ROS's RAM; the HRT's maps all of it (the same host memory), so isolation is enforced by
//! second-level paging, and ROS IPIs and device interrupts cannot reach HRT cores (they are not in the
//! ROS's VM). This module holds what both sides share: the HRT's lifecycle, the event queues, and the
//! hypercall handlers (`hypercall.rs`); `hrt.rs` runs the HRT's vCPU threads and its supervisor, and
//! `doorbell.rs` wires the doorbells (ROS → HRT core in the kernel, HRT core → ROS through a UART).

mod build;
mod doorbell;
mod hrt;
mod hypercall;
mod port;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use boot::BootEntry;
use devices::stop::StopSignal;
use hvm::abi::{ForwardMode, HrtFault, HrtState, HvmInfo, EVENT_HRT_EXIT, EVENT_HRT_FAULT, EVENT_QUEUE_DEPTH};
use hvm::layout::PartitionLayout;
use kvm_ioctls::VmFd;
use vm_memory::GuestMemoryMmap;

pub use build::{build, BuildArgs, Partitioned};
pub use doorbell::{DoorbellRelay, Doorbells, DOORBELL_GSI_BASE};
pub use hrt::{run_hrt_vcpu, run_supervisor, HrtVcpu};
pub use port::HrtDebugPort;

use crate::plan::{HrtPlan, Module};

/// How long waiting threads sleep between looks at the stop flag.
const WAIT_TICK: Duration = Duration::from_millis(20);
/// ROS accesses to HRT memory logged one by one before the log goes quiet.
const DENIED_LOG_LIMIT: u64 = 16;

/// The MSI address that delivers to LAPIC `apic_id` (physical destination mode); with the HRT's wake
/// vector as data, the message an invoke and an HRT doorbell send.
fn msi_address(apic_id: u32) -> u32 {
    0xfee0_0000 | (apic_id << 12)
}

/// The HRT image to boot (replaceable by hypercall).
#[derive(Debug, Clone)]
pub struct HrtImage {
    /// The kernel file's bytes.
    pub kernel: Arc<Vec<u8>>,
    /// Where it came from (for messages).
    pub origin: String,
    /// Its modules.
    pub modules: Vec<Module>,
    /// Its command line.
    pub cmdline: String,
}

/// What the supervisor is asked to do next.
#[derive(Debug, Clone)]
enum Request {
    /// (Re)boot from the current image.
    Boot,
    /// Stop the HRT's cores and record this state.
    Halt(HrtState, u64),
}

/// The HRT's lifecycle, guarded by one lock.
#[derive(Debug)]
struct HrtCtl {
    state: HrtState,
    detail: u64,
    boots: u64,
    image: HrtImage,
    request: Option<Request>,
    /// Whether the cores may run (false while the supervisor stops them).
    run: bool,
    /// Incremented on every boot; a core runs an epoch once.
    epoch: u64,
    /// Entry state of each core for the current epoch.
    entries: Vec<BootEntry>,
    /// Cores parked (not in KVM_RUN).
    parked: u32,
    /// The cores' threads, for kicks.
    threads: Vec<Option<libc::pthread_t>>,
    /// The partition description the HRT was booted with.
    info: HvmInfo,
}

/// State shared by both partitions' vCPU threads.
pub struct Hvm {
    /// The layout.
    pub layout: PartitionLayout,
    /// All guest memory (the HRT's view).
    mem: GuestMemoryMmap<()>,
    hrt_apic_ids: Vec<u32>,
    ros_apic_ids: Vec<u32>,
    tsc_khz: u64,
    forward: ForwardMode,
    forward_spin_us: u32,
    hrt_vm: VmFd,
    ctl: Mutex<HrtCtl>,
    cv: Condvar,
    /// Whether the HRT's cores should be running the current epoch (fast check for vCPU threads).
    live_epoch: AtomicU64,
    /// Events to the ROS (0) and to the HRT (1).
    events: Mutex<[VecDeque<(u64, u64)>; 2]>,
    seq: AtomicU64,
    stop: Arc<StopSignal>,
    denied: AtomicU64,
    stopping: Arc<AtomicBool>,
}

impl std::fmt::Debug for Hvm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hvm").field("layout", &self.layout).finish_non_exhaustive()
    }
}

/// What [`Hvm::new`] needs.
pub struct HvmParts {
    /// The HRT's plan.
    pub plan: HrtPlan,
    /// All guest memory.
    pub mem: GuestMemoryMmap<()>,
    /// The ROS's core count.
    pub ros_cores: u32,
    /// TSC frequency in kHz, or 0.
    pub tsc_khz: u64,
    /// The HRT's KVM VM.
    pub hrt_vm: VmFd,
    /// The VM's stop signal (the ROS's EXIT hypercall).
    pub stop: Arc<StopSignal>,
    /// The VM-wide stop flag.
    pub stopping: Arc<AtomicBool>,
}

impl Hvm {
    /// The shared state of a partitioned VM; the HRT boots when the supervisor runs (at once when
    /// configured `at-start`).
    pub fn new(p: HvmParts) -> Arc<Hvm> {
        let hrt_cores = u32::from(p.plan.vcpus);
        let request = match p.plan.boot {
            config::HrtBoot::AtStart => Some(Request::Boot),
            config::HrtBoot::OnRequest => None,
        };
        Arc::new(Hvm {
            layout: p.plan.layout.clone(),
            mem: p.mem,
            hrt_apic_ids: (0..hrt_cores).map(|i| p.ros_cores + i).collect(),
            ros_apic_ids: (0..p.ros_cores).collect(),
            tsc_khz: p.tsc_khz,
            forward: p.plan.forward,
            forward_spin_us: p.plan.forward_spin_us,
            hrt_vm: p.hrt_vm,
            ctl: Mutex::new(HrtCtl {
                state: HrtState::NotBooted,
                detail: 0,
                boots: 0,
                image: HrtImage {
                    kernel: p.plan.kernel.clone(),
                    origin: p.plan.kernel_path.display().to_string(),
                    modules: p.plan.modules.clone(),
                    cmdline: p.plan.cmdline.clone(),
                },
                request,
                run: false,
                epoch: 0,
                entries: Vec::new(),
                parked: 0,
                threads: vec![None; hrt_cores as usize],
                info: HvmInfo::default(),
            }),
            cv: Condvar::new(),
            live_epoch: AtomicU64::new(0),
            events: Mutex::new([VecDeque::new(), VecDeque::new()]),
            seq: AtomicU64::new(1),
            stop: p.stop,
            denied: AtomicU64::new(0),
            stopping: p.stopping,
        })
    }

    /// HRT cores.
    pub fn hrt_cores(&self) -> u32 {
        self.hrt_apic_ids.len() as u32
    }

    /// The HRT's boot description: `kernel`'s image with the VM's partitions and forwarding mode.
    fn boot_spec<'a>(
        &'a self,
        kernel: &'a [u8],
        cmdline: &'a str,
        modules: &'a [boot::multiboot2::ModuleSource<'a>],
    ) -> hvm::entry::HrtBootSpec<'a> {
        hvm::entry::HrtBootSpec {
            kernel,
            cmdline,
            modules,
            layout: &self.layout,
            hrt_apic_ids: &self.hrt_apic_ids,
            ros_apic_ids: &self.ros_apic_ids,
            tsc_khz: self.tsc_khz,
            forward: self.forward,
            forward_spin_us: self.forward_spin_us,
        }
    }

    /// APIC ID of HRT core `core` (its KVM vCPU id).
    pub fn hrt_apic_id(&self, core: u32) -> u32 {
        self.hrt_apic_ids.get(core as usize).copied().unwrap_or(0)
    }

    fn ctl(&self) -> MutexGuard<'_, HrtCtl> {
        self.ctl.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues an event of duet's own for the ROS; when the queue is full the oldest event makes room
    /// (the newest state matters most).
    fn post_vmm(&self, event: u64, payload: u64) {
        let mut q = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let q = &mut q[0];
        if q.len() >= EVENT_QUEUE_DEPTH {
            if let Some((old, _)) = q.pop_front() {
                log::debug!("hvm: the ROS's event queue is full; event {old:#x} dropped for {event:#x}");
            }
        }
        q.push_back((event, payload));
    }

    /// Queues an event for the ROS (`to_hrt` false) or the HRT; false if that queue is full.
    fn post(&self, to_hrt: bool, event: u64, payload: u64) -> bool {
        let mut q = self.events.lock().unwrap_or_else(|p| p.into_inner());
        let q = &mut q[usize::from(to_hrt)];
        if q.len() >= EVENT_QUEUE_DEPTH {
            return false;
        }
        q.push_back((event, payload));
        true
    }

    fn take_event(&self, for_hrt: bool) -> Option<(u64, u64)> {
        self.events.lock().unwrap_or_else(|p| p.into_inner())[usize::from(for_hrt)].pop_front()
    }

    /// Asks the supervisor to stop the HRT's cores and record `state` (an exit or a fault), unless a
    /// boot is already pending.
    pub fn request_halt(&self, state: HrtState, detail: u64) {
        let mut ctl = self.ctl();
        if !matches!(ctl.request, Some(Request::Boot)) {
            ctl.request = Some(Request::Halt(state, detail));
        }
        self.live_epoch.store(0, Ordering::Release);
        self.cv.notify_all();
    }

    /// Asks the supervisor to (re)boot the HRT.
    fn request_boot(&self, ctl: &mut HrtCtl) {
        ctl.request = Some(Request::Boot);
        ctl.state = HrtState::Booting;
        self.live_epoch.store(0, Ordering::Release);
        self.cv.notify_all();
    }

    /// The HRT's exit through its debug port: contained, reported to the ROS.
    pub fn hrt_exited(&self, status: u32) {
        log::info!("hrt: exited with status {status}");
        self.request_halt(HrtState::Exited, u64::from(status));
    }

    /// A fault of an HRT core: contained, reported to the ROS.
    pub fn hrt_faulted(&self, core: u32, fault: HrtFault, what: &str) {
        log::warn!("hrt: core {core} faulted: {what}");
        self.request_halt(HrtState::Faulted, fault as u64);
    }

    fn record_halt(&self, ctl: &mut HrtCtl, state: HrtState, detail: u64) {
        ctl.state = state;
        ctl.detail = detail;
        let event = if state == HrtState::Exited { EVENT_HRT_EXIT } else { EVENT_HRT_FAULT };
        self.post_vmm(event, detail);
    }

    /// A ROS access to guest-physical memory its VM does not map: reads see all ones, writes are
    /// dropped. Accesses to the HRT's RAM are logged (the first few, then every 1000th).
    pub fn ros_denied_access(&self, vcpu: u8, addr: u64, len: usize, write: bool) {
        if !self.layout.in_hrt_ram(addr, len as u64) {
            return;
        }
        let n = self.denied.fetch_add(1, Ordering::Relaxed) + 1;
        if n <= DENIED_LOG_LIMIT || n % 1000 == 0 {
            let what = if write { "write to" } else { "read of" };
            log::warn!("isolation: ROS vCPU {vcpu}: {what} HRT memory at {addr:#x} ({len} bytes) denied ({n} so far)");
        }
    }

    /// ROS accesses to HRT memory denied so far.
    pub fn denied_accesses(&self) -> u64 {
        self.denied.load(Ordering::Relaxed)
    }

    /// The HRT's state, detail and boot count.
    pub fn hrt_status(&self) -> (HrtState, u64, u64) {
        let ctl = self.ctl();
        (ctl.state, ctl.detail, ctl.boots)
    }
}
