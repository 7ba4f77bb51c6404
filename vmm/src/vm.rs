//! Building a VM from a validated config and running it to its end: a short linear recipe.
//!
//! [`crate::prepare`] reads and checks the images without KVM (what `duet check` runs); [`Vm::new`]
//! creates guest memory, loads the kernel, creates the KVM VM, devices and vCPUs; [`Vm::run`] runs one thread per
//! vCPU plus the event loop on the calling thread, and stops every thread before it returns.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use config::{Config, ConsoleOutput};
use devices::bus::PioBus;
use devices::console::{Capture, ConsoleSink};
use devices::debug_port::{DebugPort, Marks, DEBUG_PORT, DEBUG_PORTS};
use devices::i8042::{I8042, I8042_PORT, I8042_PORTS};
use devices::serial::{SerialPort, COM1_IRQ, COM1_PORT, SERIAL_PORTS};
use devices::stop::{StopRequest, StopSignal};
use devices::EventFdTrigger;
use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};
use vmm_sys_util::eventfd::EventFd;

use crate::error::VmmError;
use crate::event_loop::{ConsoleInput, TerminalGuard, Waker};
use crate::outcome::{ExitReason, MarkAt, Outcome};
use crate::plan::{prepare, Plan};
use crate::platform::KvmFlavor;
use crate::vcpu::{self, setup, VcpuShared};

/// Where KVM puts its TSS and identity-map pages (Intel needs them; three pages below the BIOS).
pub(crate) const KVM_TSS_ADDRESS: usize = 0xfffb_d000;
const KVM_IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;
/// How often the event loop looks at the clock when nothing happens.
const TICK: Duration = Duration::from_millis(100);

/// A VM ready to run.
pub struct Vm {
    started: Instant,
    plan: Plan,
    vcpus: Vec<VcpuFd>,
    shared: VcpuShared,
    stop: Arc<StopSignal>,
    marks: Marks,
    serial: Arc<Mutex<SerialPort<ConsoleSink>>>,
    capture: Option<Capture>,
    console_input: bool,
    /// The HRT's side of a partitioned VM.
    hrt: Option<crate::partitioned::Partitioned>,
    /// The virtio devices' descriptors, handed to the event loop when the VM runs.
    virtio_events: Vec<crate::virtio::DeviceEvents>,
    // Declared last so they are dropped after the vCPUs: the VM fd, then /dev/kvm.
    _vm_fd: VmFd,
    _kvm: Kvm,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm").field("vcpus", &self.vcpus.len()).field("cmdline", &self.plan.cmdline).finish()
    }
}

fn guest_memory(size: u64) -> Result<GuestMemoryMmap<()>, VmmError> {
    let ranges: Vec<_> =
        boot::layout::ram_ranges(size).iter().map(|r| (r.start, r.len as usize)).collect();
    GuestMemoryMmap::from_ranges(&ranges).map_err(|source| VmmError::Memory { mib: size >> 20, source })
}

pub(crate) fn register_memory(vm: &VmFd, mem: &GuestMemoryMmap<()>) -> Result<(), VmmError> {
    for (slot, region) in mem.iter().enumerate() {
        let host = mem
            .get_host_address(region.start_addr())
            .map_err(|_| VmmError::Kvm { what: "finding guest memory", source: kvm_ioctls::Error::new(libc::EFAULT) })?;
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the region is a live mapping owned by `mem`, which the VM outlives only after its
        // vCPUs have stopped (see `Vm`'s field order and `run`).
        unsafe { vm.set_user_memory_region(r) }.map_err(VmmError::kvm("KVM_SET_USER_MEMORY_REGION"))?;
    }
    Ok(())
}

fn console_sink(output: &ConsoleOutput) -> Result<(ConsoleSink, Option<Capture>), VmmError> {
    Ok(match output {
        ConsoleOutput::Stdio => (ConsoleSink::Stdout, None),
        ConsoleOutput::Capture => {
            let c = Capture::new();
            (ConsoleSink::Capture(c.clone()), Some(c))
        }
        ConsoleOutput::File(path) => {
            let f = std::fs::File::create(path)
                .map_err(|source| VmmError::ConsoleFile { path: path.clone(), source })?;
            (ConsoleSink::File(f), None)
        }
        ConsoleOutput::None => (ConsoleSink::Null, None),
    })
}

impl Vm {
    /// Builds the VM described by `cfg`: memory, kernel, KVM VM, devices, vCPUs.
    pub fn new(cfg: &Config) -> Result<Vm, VmmError> {
        let started = Instant::now();
        cfg.validate()?;
        let flavor = KvmFlavor::detect();
        let mut plan = prepare(cfg, flavor)?;
        let vcpu_count = plan.vcpus;
        // A partitioned VM has one mapping of all guest RAM; the ROS's view leaves out the HRT's range.
        let (mem, all_mem) = match &plan.hrt {
            None => (guest_memory(plan.memory)?, None),
            Some(h) => {
                let ranges: Vec<_> = h.layout.all_ram().iter().map(|r| (r.start, r.len as usize)).collect();
                let all = GuestMemoryMmap::from_ranges(&ranges)
                    .map_err(|source| VmmError::Memory { mib: h.layout.top() >> 20, source })?;
                let (ros, _) = all
                    .remove_region(h.layout.hrt_ram.start, h.layout.hrt_ram.len)
                    .map_err(|_| VmmError::Unsupported("a ROS memory view without the HRT's range"))?;
                (ros, Some(all))
            }
        };
        let entry = plan.load(&mem)?;
        log::debug!("vm: images read, checked and loaded after {:?}", started.elapsed());

        let kvm = Kvm::new().map_err(VmmError::KvmOpen)?;
        let vm = kvm.create_vm().map_err(VmmError::kvm("KVM_CREATE_VM"))?;
        vm.set_tss_address(KVM_TSS_ADDRESS).map_err(VmmError::kvm("KVM_SET_TSS_ADDR"))?;
        if let Err(e) = vm.set_identity_map_address(KVM_IDENTITY_MAP_ADDRESS) {
            log::debug!("KVM_SET_IDENTITY_MAP_ADDR not available ({e}); continuing");
        }
        vm.create_irq_chip().map_err(VmmError::kvm("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
        vm.create_pit2(pit).map_err(VmmError::kvm("KVM_CREATE_PIT2"))?;
        register_memory(&vm, &mem)?;
        log::debug!("vm: KVM VM, irqchip, PIT and memory ready after {:?}", started.elapsed());

        let stop = Arc::new(StopSignal::new().map_err(VmmError::io("creating the stop eventfd"))?);
        let marks = Marks::default();
        let probe = Arc::new(crate::stats::StatsProbe::default());
        let (sink, capture) = console_sink(&cfg.console.output)?;
        let serial_irq = EventFdTrigger::new().map_err(VmmError::io("creating the serial interrupt eventfd"))?;
        vm.register_irqfd(&serial_irq.0, COM1_IRQ).map_err(VmmError::kvm("KVM_IRQFD (serial)"))?;
        let serial = Arc::new(Mutex::new(SerialPort::new(serial_irq, sink)));
        let mut bus = PioBus::new();
        bus.insert(COM1_PORT, SERIAL_PORTS, serial.clone())?;
        bus.insert(I8042_PORT, I8042_PORTS, Arc::new(Mutex::new(I8042::new(stop.clone()))))?;
        bus.insert(DEBUG_PORT, DEBUG_PORTS, Arc::new(Mutex::new(DebugPort::new(stop.clone(), marks.clone()).with_probe(probe.clone()))))?;

        let virtio = crate::virtio::attach(&vm, &mem, &cfg.devices)?;

        let base_cpuid = setup::supported_cpuid(&kvm)?;
        let mut vcpus = Vec::with_capacity(usize::from(vcpu_count));
        for id in 0..vcpu_count {
            let vcpu = vm.create_vcpu(u64::from(id)).map_err(VmmError::kvm("KVM_CREATE_VCPU"))?;
            probe.add(crate::stats::Partition::Ros, id, &vcpu);
            let cpuid = setup::cpuid_for(&base_cpuid, id, vcpu_count, plan.platform.cpuid_mask);
            setup::configure_common(&vcpu, id, &cpuid)?;
            if id == 0 {
                setup::apply_entry(&vcpu, id, &entry)?;
            }
            vcpus.push(vcpu);
        }

        let stopping = Arc::new(AtomicBool::new(false));
        let hrt = match (plan.hrt.clone(), all_mem) {
            (Some(hrt_plan), Some(all)) => {
                let sink = serial.lock().unwrap_or_else(|p| p.into_inner()).output().try_clone();
                let sink = sink.map_err(VmmError::io("sharing the console with the HRT"))?;
                Some(crate::partitioned::build(crate::partitioned::BuildArgs {
                    kvm: &kvm,
                    ros_vm: &vm,
                    ros_bus: &mut bus,
                    plan: hrt_plan,
                    mem: all,
                    ros_vcpus: &vcpus,
                    cpuid: &base_cpuid,
                    platform: &plan.platform,
                    sink: &sink,
                    stop: stop.clone(),
                    marks: marks.clone(),
                    probe: probe.clone(),
                    stopping: stopping.clone(),
                })?)
            }
            _ => None,
        };
        log::debug!("vm: devices and {vcpu_count} vCPU(s) ready after {:?}", started.elapsed());
        let shared = VcpuShared {
            bus: Arc::new(bus),
            mmio: virtio.bus,
            mem,
            stopping,
            faults: Arc::default(),
            fault_evt: Arc::new(EventFd::new(libc::EFD_NONBLOCK).map_err(VmmError::io("creating the fault eventfd"))?),
            fallbacks: Arc::new(AtomicU64::new(0)),
            final_regs: Arc::default(),
            hvm: hrt.as_ref().map(|h| h.hvm.clone()),
        };
        let console_input = cfg.console.input && cfg.console.output == ConsoleOutput::Stdio;
        Ok(Vm {
            started,
            plan,
            vcpus,
            shared,
            stop,
            marks,
            serial,
            capture,
            console_input,
            hrt,
            virtio_events: virtio.events,
            _vm_fd: vm,
            _kvm: kvm,
        })
    }

    /// The plan this VM was built from (command line, kernel format, platform settings).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Runs the VM until the guest stops it, faults, or `timeout` passes; every vCPU thread has ended
    /// when this returns.
    pub fn run(mut self, timeout: Option<Duration>) -> Result<Outcome, VmmError> {
        crate::kick::install_handler()?;
        let mut handles = Vec::with_capacity(self.vcpus.len());
        for (id, vcpu) in self.vcpus.drain(..).enumerate() {
            let shared = self.shared.clone();
            let id = id as u8;
            let spawned = std::thread::Builder::new()
                .name(format!("duet-vcpu{id}"))
                .spawn(move || vcpu::run(vcpu, id, shared));
            match spawned {
                Ok(h) => handles.push(h),
                Err(source) => {
                    crate::kick::stop_all(&self.shared.stopping, handles);
                    return Err(VmmError::Io { what: "starting a vCPU thread", source });
                }
            }
        }
        if let Some(hrt) = self.hrt.as_mut() {
            let hvm = hrt.hvm.clone();
            let spawn = |name: String, f: Box<dyn FnOnce() + Send>| {
                std::thread::Builder::new().name(name).spawn(f).map_err(|source| VmmError::Io { what: "starting an HRT thread", source })
            };
            let mut started = Vec::new();
            for v in hrt.vcpus.drain(..) {
                let h = hvm.clone();
                started.push(spawn(format!("duet-hrt{}", v.core), Box::new(move || crate::partitioned::run_hrt_vcpu(h, v))));
            }
            let h = hvm.clone();
            started.push(spawn("duet-hrt-sup".into(), Box::new(move || crate::partitioned::run_supervisor(h))));
            if let Some(relay) = hrt.doorbells.relay.take() {
                started.push(spawn("duet-doorbell".into(), Box::new(move || relay.run())));
            }
            for s in started {
                match s {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        crate::kick::stop_all(&self.shared.stopping, handles);
                        return Err(e);
                    }
                }
            }
        }
        let devices = std::mem::take(&mut self.virtio_events);
        let result = self.event_loop(timeout, devices);
        crate::kick::stop_all(&self.shared.stopping, handles);
        let reason = result?;
        let marks = self
            .marks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|m| MarkAt {
                code: m.code,
                since_start: m.at.saturating_duration_since(self.started),
                vcpus: crate::stats::StatsProbe::decode(&m.counters),
            })
            .collect();
        {
            use std::io::Write;
            let mut serial = self.serial.lock().unwrap_or_else(|p| p.into_inner());
            // Best effort: a console that cannot be flushed must not turn a finished run into an error.
            let _ = serial.output().flush();
        }
        Ok(Outcome {
            reason,
            console: self.capture.as_ref().map(Capture::contents),
            marks,
            flavor: self.plan.platform.flavor,
            elapsed: self.started.elapsed(),
            emulation_fallbacks: self.shared.fallbacks.load(Ordering::Relaxed),
            vcpu_regs: {
                let mut regs = self.shared.final_regs.lock().unwrap_or_else(|p| p.into_inner()).clone();
                regs.sort_by_key(|(id, _)| *id);
                regs
            },
        })
    }

    fn event_loop(&self, timeout: Option<Duration>, devices: Vec<crate::virtio::DeviceEvents>) -> Result<ExitReason, VmmError> {
        let woken = Arc::new(AtomicBool::new(false));
        let dup = |e: &EventFd| e.try_clone().map_err(VmmError::io("duplicating an eventfd"));
        let waker = Waker::new(vec![dup(self.stop.eventfd())?, dup(&self.shared.fault_evt)?], woken.clone());
        let mut em: EventManager<Box<dyn MutEventSubscriber + Send>> =
            EventManager::new().map_err(|e| VmmError::Io { what: "creating the event loop", source: std::io::Error::other(format!("{e:?}")) })?;
        em.add_subscriber(Box::new(waker));
        for d in devices {
            em.add_subscriber(Box::new(d));
        }
        let _terminal = if self.console_input {
            em.add_subscriber(Box::new(ConsoleInput::new(self.serial.clone())));
            Some(TerminalGuard::new())
        } else {
            None
        };
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(reason) = self.finished() {
                return Ok(reason);
            }
            let wait = match deadline {
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Ok(ExitReason::Timeout);
                    }
                    left.min(TICK)
                }
                None => TICK,
            };
            if let Err(e) = em.run_with_timeout(wait.as_millis().max(1) as i32) {
                log::warn!("event loop: {e:?}");
            }
            woken.store(false, Ordering::Relaxed);
        }
    }

    fn finished(&self) -> Option<ExitReason> {
        if let Some(fault) = self.shared.faults.lock().unwrap_or_else(|p| p.into_inner()).first() {
            return Some(ExitReason::Fault(fault.clone()));
        }
        match self.stop.requested()? {
            StopRequest::Exit(status) => Some(ExitReason::Exit(status)),
            StopRequest::Reset => Some(ExitReason::Reset),
        }
    }
}
