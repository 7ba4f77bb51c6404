//! The HRT's cores and their supervisor. Each HRT vCPU has a thread that parks between boots and runs
//! one boot "epoch" at a time; the supervisor thread carries out boot, reboot and halt requests: it
//! kicks the cores out of KVM_RUN until all are parked, loads the image (`hvm::entry::boot_hrt`), and
//! releases them with their entry state. A fault or exit of the HRT stops only the HRT.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use boot::multiboot2::ModuleSource;
use boot::BootEntry;
use devices::bus::PioBus;
use hvm::abi::{HrtFault, HrtState, HYPERCALL_PORT};
use hvm::entry::boot_hrt;
use hvm::Partition;
use kvm_bindings::{kvm_lapic_state, kvm_mp_state, kvm_vcpu_events, KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_UNINITIALIZED};
use kvm_ioctls::{VcpuExit, VcpuFd};

use super::{Hvm, Request, WAIT_TICK};
use crate::vcpu::{fallback, setup};

/// `KVM_INTERNAL_ERROR_EMULATION`.
const KVM_INTERNAL_ERROR_EMULATION: u32 = 1;

/// An HRT vCPU and what it needs to restart.
pub struct HrtVcpu {
    /// The vCPU.
    pub fd: VcpuFd,
    /// Its core index.
    pub core: u32,
    /// Its LAPIC as configured at creation (restored on every boot).
    pub lapic: kvm_lapic_state,
    /// The HRT's port-I/O bus.
    pub bus: Arc<PioBus>,
}

/// Lets KVM finish what the vCPU was in the middle of (a port write whose exit the thread served just
/// before it parked): KVM completes pending I/O on the next KVM_RUN and would then overwrite the entry
/// state `reset` sets. With `immediate_exit`, KVM_RUN completes it and returns at once.
fn complete_pending_io(v: &mut HrtVcpu) {
    v.fd.set_kvm_immediate_exit(1);
    match v.fd.run() {
        Err(e) if e.errno() == libc::EINTR => {}
        other => log::debug!("hrt: core {}: completing pending I/O: {other:?}", v.core),
    }
    v.fd.set_kvm_immediate_exit(0);
}

fn reset(v: &mut HrtVcpu, entry: Option<&BootEntry>) -> Result<(), String> {
    complete_pending_io(v);
    let id = v.core as u8;
    let err = |what: &str, e: kvm_ioctls::Error| format!("{what}: {e}");
    v.fd.set_vcpu_events(&kvm_vcpu_events::default()).map_err(|e| err("KVM_SET_VCPU_EVENTS", e))?;
    v.fd.set_lapic(&v.lapic).map_err(|e| err("KVM_SET_LAPIC", e))?;
    let fpu = kvm_bindings::kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() };
    v.fd.set_fpu(&fpu).map_err(|e| err("KVM_SET_FPU", e))?;
    let mp_state = if entry.is_some() { KVM_MP_STATE_RUNNABLE } else { KVM_MP_STATE_UNINITIALIZED };
    v.fd.set_mp_state(kvm_mp_state { mp_state }).map_err(|e| err("KVM_SET_MP_STATE", e))?;
    if let Some(entry) = entry {
        setup::apply_entry(&v.fd, id, entry).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Runs HRT core `v.core` until the VM stops: parked between boots, running each boot once.
pub fn run_hrt_vcpu(hvm: Arc<Hvm>, mut v: HrtVcpu) {
    let core = v.core;
    {
        let mut ctl = hvm.ctl();
        // SAFETY: pthread_self has no preconditions.
        ctl.threads[core as usize] = Some(unsafe { libc::pthread_self() });
    }
    let mut my_epoch = 0;
    loop {
        // Park until a new boot releases this core (or the VM stops).
        let entry = {
            let mut ctl = hvm.ctl();
            ctl.parked += 1;
            hvm.cv.notify_all();
            loop {
                if hvm.stopping.load(Ordering::Acquire) {
                    return;
                }
                if ctl.run && ctl.epoch != my_epoch {
                    break;
                }
                ctl = hvm.cv.wait_timeout(ctl, WAIT_TICK).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
            }
            ctl.parked -= 1;
            my_epoch = ctl.epoch;
            ctl.entries.get(core as usize).cloned()
        };
        if let Err(e) = reset(&mut v, entry.as_ref()) {
            hvm.hrt_faulted(core, HrtFault::Internal, &format!("resetting the core failed: {e}"));
            continue;
        }
        run_epoch(&hvm, &mut v, my_epoch);
    }
}

/// Runs one boot of core `v.core` until the HRT halts, is rebooted, or the VM stops.
fn run_epoch(hvm: &Hvm, v: &mut HrtVcpu, epoch: u64) {
    let core = v.core;
    loop {
        if hvm.stopping.load(Ordering::Acquire) || hvm.live_epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        match v.fd.run() {
            Ok(VcpuExit::IoOut(port, _)) if port == HYPERCALL_PORT => hvm.hypercall(&v.fd, Partition::Hrt, core),
            Ok(VcpuExit::IoOut(port, data)) => {
                v.bus.write(port, data);
            }
            Ok(VcpuExit::IoIn(port, data)) => {
                v.bus.read(port, data);
            }
            Ok(VcpuExit::MmioRead(_, data)) => data.fill(0xff),
            Ok(VcpuExit::MmioWrite(..)) => {}
            Ok(VcpuExit::Hlt) => std::thread::yield_now(),
            Ok(VcpuExit::Shutdown) => {
                hvm.hrt_faulted(core, HrtFault::TripleFault, "triple fault (KVM_EXIT_SHUTDOWN)");
                return;
            }
            Ok(VcpuExit::InternalError) => {
                // SAFETY: KVM_EXIT_INTERNAL_ERROR fills the `internal` member of the exit union.
                let suberror = unsafe { v.fd.get_kvm_run().__bindgen_anon_1.internal.suberror };
                if suberror != KVM_INTERNAL_ERROR_EMULATION {
                    hvm.hrt_faulted(core, HrtFault::Internal, &format!("KVM internal error {suberror}"));
                    return;
                }
                if let Err(report) = fallback::handle(&v.fd, &hvm.mem) {
                    hvm.hrt_faulted(core, HrtFault::Unsupported, &report);
                    return;
                }
            }
            Ok(other) => {
                hvm.hrt_faulted(core, HrtFault::Internal, &format!("unexpected exit {other:?}"));
                return;
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => v.fd.set_kvm_immediate_exit(0),
            Err(e) => {
                hvm.hrt_faulted(core, HrtFault::Internal, &format!("KVM_RUN failed: {e}"));
                return;
            }
        }
    }
}

fn kick(threads: &[Option<libc::pthread_t>]) {
    for t in threads.iter().flatten() {
        // SAFETY: the HRT's vCPU threads live until the VM stops, and the supervisor (which kicks) stops
        // before they are joined; the kick signal's handler is installed and does nothing.
        unsafe { libc::pthread_kill(*t, crate::kick::kick_signal()) };
    }
}

/// The supervisor: carries out boot and halt requests until the VM stops.
pub fn run_supervisor(hvm: Arc<Hvm>) {
    let cores = hvm.hrt_cores();
    loop {
        let request = {
            let mut ctl = hvm.ctl();
            loop {
                if hvm.stopping.load(Ordering::Acquire) {
                    return;
                }
                if let Some(r) = ctl.request.take() {
                    ctl.run = false;
                    break r;
                }
                ctl = hvm.cv.wait_timeout(ctl, WAIT_TICK).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
            }
        };
        hvm.live_epoch.store(0, Ordering::Release);
        // Kick the cores until every one is parked (a kick that lands just before KVM_RUN is lost,
        // hence the repeats).
        loop {
            let ctl = hvm.ctl();
            if ctl.parked >= cores {
                break;
            }
            if hvm.stopping.load(Ordering::Acquire) {
                return;
            }
            kick(&ctl.threads);
            drop(ctl);
            std::thread::sleep(Duration::from_millis(1));
        }
        let image = {
            let ctl = hvm.ctl();
            if ctl.request.is_some() {
                // A newer request arrived meanwhile: serve that one instead.
                continue;
            }
            ctl.image.clone()
        };
        // The image is loaded without the lock: every core is parked, and hypercalls (HRT_STATUS, …)
        // stay answered meanwhile.
        let booted = match request {
            Request::Halt(..) => None,
            Request::Boot => {
                let modules: Vec<ModuleSource<'_>> =
                    image.modules.iter().map(|m| ModuleSource { data: &m.data, string: &m.string }).collect();
                let booted = boot_hrt(&hvm.mem, &hvm.boot_spec(&image.kernel, &image.cmdline, &modules));
                if let Ok(b) = &booted {
                    // Before the cores run: the doorbells ring this image's wake vector.
                    hvm.route_doorbells(b.info.wake_vector);
                }
                Some(booted)
            }
        };
        let mut ctl = hvm.ctl();
        if ctl.request.is_some() {
            // A request that came during the load wins (a reboot reloads; a halt stops).
            continue;
        }
        match (request, booted) {
            (Request::Halt(state, detail), _) => hvm.record_halt(&mut ctl, state, detail),
            (Request::Boot, Some(Ok(booted))) => {
                ctl.entries = booted.entries;
                ctl.info = booted.info;
                ctl.epoch += 1;
                ctl.boots += 1;
                ctl.state = HrtState::Booting;
                ctl.detail = 0;
                ctl.run = true;
                hvm.live_epoch.store(ctl.epoch, Ordering::Release);
                let entry = if booted.info.flags & 1 != 0 { "64-bit HVM" } else { "32-bit Multiboot2" };
                log::info!("hrt: boot {} of {} ({entry} entry)", ctl.boots, image.origin);
            }
            (Request::Boot, Some(Err(e))) => {
                log::error!("hrt: cannot boot {}: {e}", image.origin);
                hvm.record_halt(&mut ctl, HrtState::Faulted, HrtFault::Internal as u64);
            }
            (Request::Boot, None) => {}
        }
        hvm.cv.notify_all();
    }
}
