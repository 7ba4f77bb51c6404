//! The HRT's supervisor thread: carries out the lifecycle's boot and halt requests. For each it kicks
//! the HRT's cores out of KVM_RUN until all are parked; a boot then loads the image
//! (`hvm::entry::boot_hrt`), points the doorbells at its wake vector and releases the cores with their
//! entry states; a halt records the end and tells the ROS.

use std::sync::Arc;

use abi::{HrtFault, HrtState, EVENT_HRT_EXIT, EVENT_HRT_FAULT};
use boot::multiboot2::ModuleSource;
use hvm::entry::boot_hrt;

use super::lifecycle::{Job, Ticket};
use super::PartitionedVm;

fn kick(threads: &[Option<libc::pthread_t>]) {
    for t in threads.iter().flatten() {
        // SAFETY: `t` is a core thread's pthread_t, valid until that thread is joined. Kicks happen
        // only in `Lifecycle::park_all`, under the lifecycle's lock and only before shutdown, and
        // `crate::Vm::run` shuts the lifecycle down (under the same lock) before it joins any thread:
        // no kick can reach a joined thread. The kick signal's handler is installed and does nothing.
        unsafe { libc::pthread_kill(*t, crate::kick::kick_signal()) };
    }
}

/// Serves boot and halt requests until the VM stops.
pub(crate) fn run(vm: Arc<PartitionedVm>) {
    let cores = vm.hrt_cores();
    while let Some(ticket) = vm.lifecycle.next_job() {
        if !vm.lifecycle.park_all(cores, kick) {
            return;
        }
        match ticket.job {
            Job::Halt(state, detail) => halt(&vm, &ticket, state, detail),
            Job::Boot => boot(&vm, &ticket),
        }
    }
}

fn halt(vm: &PartitionedVm, ticket: &Ticket, state: HrtState, detail: u64) {
    if vm.lifecycle.commit_halt(ticket, state, detail) {
        let event = if state == HrtState::Exited { EVENT_HRT_EXIT } else { EVENT_HRT_FAULT };
        vm.events.post_vmm(event, detail);
    }
}

/// Loads the image without the lifecycle's lock (every core is parked, and hypercalls such as
/// HRT_STATUS stay answered meanwhile), then commits the boot unless a newer request came.
fn boot(vm: &PartitionedVm, ticket: &Ticket) {
    let Some(image) = vm.lifecycle.image_for(ticket) else { return };
    let modules: Vec<ModuleSource<'_>> =
        image.modules.iter().map(|m| ModuleSource { data: &m.data, string: &m.string }).collect();
    match boot_hrt(&vm.mem, &vm.topology.boot_spec(&image.kernel, &image.cmdline, &modules)) {
        Ok(booted) => {
            // Before the cores run: the doorbells ring this image's wake vector.
            vm.route_doorbells(booted.info.wake_vector);
            let entry = if booted.info.flags & 1 != 0 { "64-bit HVM" } else { "32-bit Multiboot2" };
            if let Some(boots) = vm.lifecycle.commit_boot(ticket, booted.entries, booted.info) {
                log::info!("hrt: boot {boots} of {} ({entry} entry)", image.origin);
            }
        }
        Err(e) => {
            log::error!("hrt: cannot boot {}: {e}", image.origin);
            halt(vm, ticket, HrtState::Faulted, HrtFault::Internal as u64);
        }
    }
}
