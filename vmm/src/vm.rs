//! Building a VM from a validated config and running it to its end: a short linear recipe.
//!
//! [`crate::prepare`] reads and checks the images and plans the whole layout without KVM (what
//! `duet check` runs); [`Vm::new`] applies the plan: guest memory, the kernel, the KVM VM, devices and
//! vCPUs, and the HRT's side of a partitioned VM; [`Vm::run`] runs one thread per vCPU plus the event
//! loop on the calling thread, and stops every thread before it returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use config::{Config, ConsoleOutput};
use devices::bus::PioBus;
use devices::console::{Capture, ConsoleSink};
use devices::debug_port::{DebugPort, DEBUG_PORT, DEBUG_PORTS};
use devices::i8042::{I8042, I8042_PORT, I8042_PORTS};
use devices::serial::{SerialPort, COM1_IRQ, COM1_PORT, SERIAL_PORTS};
use devices::EventFdTrigger;
use hvm::Partition;
use kvm_ioctls::{Kvm, VmFd};
use vmm_sys_util::eventfd::EventFd;

use crate::error::VmmError;
use crate::machine::{create_vm, VmContext};
use crate::memory::GuestRam;
use crate::outcome::{MarkAt, Outcome};
use crate::partitioned::{HrtSide, RosSide};
use crate::plan::{prepare, Plan};
use crate::platform::KvmFlavor;
use crate::vcpu::regs::Vcpu;
use crate::vcpu::ros::VcpuShared;
use crate::vcpu::setup;

/// The ROS's serial port on COM1.
type Console = Arc<Mutex<SerialPort<ConsoleSink>>>;

/// A VM ready to run.
pub struct Vm {
    started: Instant,
    plan: Plan,
    ctx: VmContext,
    vcpus: Vec<Vcpu>,
    shared: VcpuShared,
    serial: Console,
    capture: Option<Capture>,
    console_input: bool,
    /// The HRT's side of a partitioned VM.
    hrt: Option<HrtSide>,
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

fn console_sink(output: &ConsoleOutput) -> Result<(ConsoleSink, Option<Capture>), VmmError> {
    Ok(match output {
        ConsoleOutput::Stdio => (ConsoleSink::Stdout, None),
        ConsoleOutput::Capture => {
            let c = Capture::new();
            (ConsoleSink::Capture(c.clone()), Some(c))
        }
        ConsoleOutput::File(path) => {
            let f = std::fs::File::create(path).map_err(|source| VmmError::ConsoleFile { path: path.clone(), source })?;
            (ConsoleSink::File(f), None)
        }
        ConsoleOutput::None => (ConsoleSink::Null, None),
    })
}

/// The ROS's port bus: COM1 (interrupts through an irqfd), the i8042 reset line, the debug port.
fn ros_bus(vm: &VmFd, ctx: &VmContext, sink: ConsoleSink) -> Result<(PioBus, Console), VmmError> {
    let irq = EventFdTrigger::new().map_err(VmmError::io("creating the serial interrupt eventfd"))?;
    vm.register_irqfd(&irq.0, COM1_IRQ).map_err(VmmError::kvm("KVM_IRQFD (serial)"))?;
    let serial = Arc::new(Mutex::new(SerialPort::new(irq, sink)));
    let mut bus = PioBus::new();
    bus.insert(COM1_PORT, SERIAL_PORTS, serial.clone())?;
    bus.insert(I8042_PORT, I8042_PORTS, Arc::new(Mutex::new(I8042::new(ctx.stop.clone()))))?;
    let port = DebugPort::new(ctx.stop.clone(), ctx.marks.clone()).with_probe(ctx.probe.clone());
    bus.insert(DEBUG_PORT, DEBUG_PORTS, Arc::new(Mutex::new(port)))?;
    Ok((bus, serial))
}

/// The ROS's vCPUs; the first starts at the kernel's entry, the others wait for its INIT/SIPI.
fn ros_vcpus(vm: &VmFd, ctx: &VmContext, count: u8, entry: &boot::BootEntry) -> Result<Vec<Vcpu>, VmmError> {
    (0..count)
        .map(|id| {
            let vcpu = ctx.vcpu(vm, id, count, Partition::Ros, id)?;
            if id == 0 {
                setup::apply_entry(&vcpu.fd, id, entry)?;
            }
            Ok(vcpu)
        })
        .collect()
}

impl Vm {
    /// Builds the VM described by `cfg`: memory, kernel, KVM VM, devices, vCPUs.
    pub fn new(cfg: &Config) -> Result<Vm, VmmError> {
        let started = Instant::now();
        cfg.validate()?;
        let mut plan = prepare(cfg, KvmFlavor::detect())?;
        let ram = GuestRam::new(&plan.ram())?;
        let entry = plan.load(&ram.ros)?;
        log::debug!("vm: images read, checked and loaded after {:?}", started.elapsed());

        let kvm = Kvm::new().map_err(VmmError::KvmOpen)?;
        let vm = create_vm(&kvm, &ram.ros, Partition::Ros)?;
        let ctx = VmContext::new(&kvm, plan.platform.cpuid_mask)?;
        let (sink, capture) = console_sink(&cfg.console.output)?;
        let hrt_sink = sink.try_clone().map_err(VmmError::io("sharing the console with the HRT"))?;
        let (mut bus, serial) = ros_bus(&vm, &ctx, sink)?;
        let virtio = crate::virtio::attach(&vm, &ram.ros, &plan.virtio, &cfg.devices)?;
        let vcpus = ros_vcpus(&vm, &ctx, plan.vcpus, &entry)?;
        let hrt = match (plan.hrt.clone(), ram.all) {
            (Some(hrt_plan), Some(all)) => {
                let fds: Vec<_> = vcpus.iter().map(|v| &v.fd).collect();
                let ros = RosSide { vm: &vm, bus: &mut bus, vcpus: &fds, console: &hrt_sink };
                Some(crate::partitioned::build(&kvm, &ctx, ros, hrt_plan, all)?)
            }
            _ => None,
        };
        log::debug!("vm: devices and {} vCPU(s) ready after {:?}", plan.vcpus, started.elapsed());

        let shared = VcpuShared {
            bus: Arc::new(bus),
            mmio: virtio.bus,
            mem: ram.ros,
            stopping: ctx.stopping.clone(),
            faults: Arc::default(),
            fault_evt: Arc::new(EventFd::new(libc::EFD_NONBLOCK).map_err(VmmError::io("creating the fault eventfd"))?),
            fallbacks: Arc::new(AtomicU64::new(0)),
            final_regs: Arc::default(),
            partitioned: hrt.as_ref().map(|h| h.vm.clone()),
        };
        let console_input = cfg.console.input && cfg.console.output == ConsoleOutput::Stdio;
        Ok(Vm {
            started,
            plan,
            ctx,
            vcpus,
            shared,
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
        let sources = crate::event_loop::Sources {
            wake: self.wake_fds()?,
            devices: std::mem::take(&mut self.virtio_events),
            console: self.console_input.then(|| self.serial.clone()),
        };
        let (handles, started) = self.start_threads();
        if let Err(e) = started {
            self.stop_threads(handles);
            return Err(e);
        }
        let result = crate::event_loop::run(sources, timeout, || self.finished());
        self.stop_threads(handles);
        let reason = result?;
        Ok(self.outcome(reason))
    }

    /// Starts the ROS's vCPU threads, then the HRT's cores, its supervisor and the doorbell relay; the
    /// threads started, and whether all were.
    fn start_threads(&mut self) -> (Vec<std::thread::JoinHandle<()>>, Result<(), VmmError>) {
        let mut handles = Vec::new();
        let mut spawn = |name: String, f: Box<dyn FnOnce() + Send>| match std::thread::Builder::new().name(name).spawn(f) {
            Ok(h) => {
                handles.push(h);
                Ok(())
            }
            Err(source) => Err(VmmError::Io { what: "starting a vCPU thread", source }),
        };
        let mut started = Ok(());
        for (id, vcpu) in self.vcpus.drain(..).enumerate() {
            let shared = self.shared.clone();
            let id = id as u8;
            started = started.and_then(|()| spawn(format!("duet-vcpu{id}"), Box::new(move || crate::vcpu::ros::run_thread(vcpu, id, shared))));
        }
        if let Some(hrt) = self.hrt.as_mut() {
            for c in hrt.cores.drain(..) {
                let vm = hrt.vm.clone();
                started = started.and_then(|()| spawn(format!("duet-hrt{}", c.core), Box::new(move || crate::partitioned::run_core(vm, c))));
            }
            let vm = hrt.vm.clone();
            started = started.and_then(|()| spawn("duet-hrt-sup".into(), Box::new(move || crate::partitioned::run_supervisor(vm))));
            if let Some(relay) = hrt.doorbells.relay.take() {
                started = started.and_then(|()| spawn("duet-doorbell".into(), Box::new(move || relay.run())));
            }
        }
        (handles, started)
    }

    /// Ends the HRT's waits, then stops and joins every thread.
    fn stop_threads(&self, handles: Vec<std::thread::JoinHandle<()>>) {
        if let Some(hrt) = &self.hrt {
            hrt.vm.shutdown();
        }
        crate::kick::stop_all(&self.ctx.stopping, handles);
    }

    /// The stop request or fault that ended the VM, if there is one yet.
    fn finished(&self) -> Option<crate::ExitReason> {
        use devices::stop::StopRequest;
        if let Some(fault) = self.shared.faults.lock().unwrap_or_else(|p| p.into_inner()).first() {
            return Some(crate::ExitReason::Fault(fault.clone()));
        }
        match self.ctx.stop.requested()? {
            StopRequest::Exit(status) => Some(crate::ExitReason::Exit(status)),
            StopRequest::Reset => Some(crate::ExitReason::Reset),
        }
    }

    /// What the event loop waits on: the stop signal's and the fault eventfd's duplicates.
    fn wake_fds(&self) -> Result<Vec<EventFd>, VmmError> {
        let dup = |e: &EventFd| e.try_clone().map_err(VmmError::io("duplicating an eventfd"));
        Ok(vec![dup(self.ctx.stop.eventfd())?, dup(&self.shared.fault_evt)?])
    }

    fn outcome(&self, reason: crate::ExitReason) -> Outcome {
        let marks = self
            .ctx
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
        let hypercalls = self.hrt.as_ref().map(|h| h.vm.hypercall_stats());
        if let Some(h) = &hypercalls {
            log::info!("{h}");
        }
        let mut vcpu_regs = self.shared.final_regs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        vcpu_regs.sort_by_key(|(id, _)| *id);
        Outcome {
            reason,
            console: self.capture.as_ref().map(Capture::contents),
            marks,
            flavor: self.plan.platform.flavor,
            elapsed: self.started.elapsed(),
            emulation_fallbacks: self.shared.fallbacks.load(Ordering::Relaxed),
            vcpu_regs,
            hypercalls,
        }
    }
}
