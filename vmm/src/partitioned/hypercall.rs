//! Serving hypercalls (ABI v1, `docs/hypercalls.md`) from either partition's vCPU threads. Nothing
//! here blocks: a boot or reboot is handed to the HRT's supervisor, an invoke is posted to the core's
//! slot and the core woken by an MSI; results come back through the caller's completion record or
//! `INVOKE_RESULT`. Every argument is validated (`hvm::hypercall::decode`, then the page walk in
//! `hvm::paging`), and errors go back in RAX. Registers come through KVM's run page where the host
//! has `KVM_CAP_SYNC_REGS` (`crate::vcpu::regs`), so a hypercall costs no register ioctl.

use std::sync::atomic::Ordering;

use abi::{HcallError, HvmInfo, ABI_VERSION, EVENT_HRT_READY, EVENT_INVOKE_DONE, FUNC_MERGE, FUNC_UNMERGE};
use boot::entry::{CR0_PG, CR4_LA57};
use hvm::hypercall::{decode, Call, CoreTarget, Post, Regs};
use hvm::paging::{GuestView, WalkError};
use hvm::Partition;
use kvm_bindings::{kvm_msi, kvm_sregs};
use vm_memory::GuestMemoryMmap;

use super::slots::Request;
use super::topology::msi_address;
use super::PartitionedVm;
use crate::vcpu::regs::Vcpu;

/// Results in RBX, RCX, RDX.
#[derive(Debug, Default, Clone, Copy)]
struct Ret(u64, u64, u64);

fn walk_err(e: WalkError) -> HcallError {
    log::debug!("hypercall: {e}");
    HcallError::BadAddress
}

impl PartitionedVm {
    /// Serves the hypercall a vCPU of partition `from` just made (its `out` to the hypercall port):
    /// reads its registers, acts, and writes the status and results back.
    pub fn hypercall(&self, vcpu: &mut Vcpu, from: Partition, vcpu_index: u32) {
        self.hypercalls.fetch_add(1, Ordering::Relaxed);
        self.serve_registers(vcpu, from, vcpu_index);
        self.add_register_ioctls(vcpu.take_register_ioctls());
    }

    fn serve_registers(&self, vcpu: &mut Vcpu, from: Partition, vcpu_index: u32) {
        let mut regs = match vcpu.regs() {
            Ok(r) => r,
            Err(e) => {
                log::warn!("hypercall: reading the registers of {} vCPU {vcpu_index} failed: {e}", from.name());
                return;
            }
        };
        let r = Regs { rax: regs.rax, rbx: regs.rbx, rcx: regs.rcx, rdx: regs.rdx, rsi: regs.rsi, rdi: regs.rdi };
        let outcome = decode(&r, from, self.hrt_cores()).and_then(|call| self.serve(call, vcpu, from));
        match outcome {
            Ok(Ret(b, c, d)) => (regs.rax, regs.rbx, regs.rcx, regs.rdx) = (0, b, c, d),
            Err(e) => {
                log::debug!("hypercall {:#x} from {} vCPU {vcpu_index}: {}", r.rax, from.name(), e.name());
                regs.rax = e.code() as u64;
            }
        }
        if let Err(e) = vcpu.set_regs(&regs) {
            log::warn!("hypercall: writing the registers of {} vCPU {vcpu_index} failed: {e}", from.name());
        }
    }

    /// Runs `f` with a view of the caller's address space (`sregs`: its page tables and mode) and the
    /// memory it may reach (the ROS: its own RAM; the HRT: all RAM).
    fn with_view<T>(
        &self,
        sregs: &kvm_sregs,
        from: Partition,
        f: impl FnOnce(&GuestView<'_, GuestMemoryMmap>) -> Result<T, HcallError>,
    ) -> Result<T, HcallError> {
        let layout = &self.topology.layout;
        let ros = |a: u64, n: u64| layout.in_ros_ram(a, n);
        let any = |a: u64, n: u64| layout.in_any_ram(a, n);
        let allowed: &dyn Fn(u64, u64) -> bool = match from {
            Partition::Ros => &ros,
            Partition::Hrt => &any,
        };
        let view = GuestView {
            mem: &self.mem,
            cr3: sregs.cr3,
            paging: sregs.cr0 & CR0_PG != 0,
            user: sregs.cs.selector & 3 == 3,
            allowed,
        };
        f(&view)
    }

    fn serve(&self, call: Call, vcpu: &mut Vcpu, from: Partition) -> Result<Ret, HcallError> {
        match call {
            Call::Version => Ok(Ret(ABI_VERSION, u64::from(self.hrt_cores()), self.topology.ros_apic_ids.len() as u64)),
            Call::PartitionInfo { buf } => {
                let mut bytes = [0u8; HvmInfo::SIZE];
                self.info().encode(&mut bytes);
                let n = (buf.len as usize).min(bytes.len());
                let sregs = vcpu.sregs().map_err(|_| HcallError::BadAddress)?;
                self.with_view(&sregs, from, |v| v.write(buf.addr, &bytes[..n]).map_err(walk_err))?;
                Ok(Ret(n as u64, HvmInfo::SIZE as u64, 0))
            }
            Call::HrtBoot => self.lifecycle.boot().map(|()| Ret::default()),
            Call::HrtReboot => {
                self.lifecycle.reboot();
                Ok(Ret::default())
            }
            Call::HrtReplace { image } => {
                let sregs = vcpu.sregs().map_err(|_| HcallError::BadAddress)?;
                let bytes = self.with_view(&sregs, from, |v| v.read(image.addr, image.len).map_err(walk_err))?;
                if let Err(e) = boot::multiboot2::inspect(&bytes) {
                    log::info!("hypercall: HRT_REPLACE refused: {e}");
                    return Err(HcallError::BadArgument);
                }
                self.lifecycle.replace(bytes, "an image from the ROS (HRT_REPLACE)");
                Ok(Ret::default())
            }
            Call::Invoke { func, arg, post } => self.invoke(vcpu, from, Request { func, arg, flags: post.flags }, post),
            Call::Merge { merge, post } => {
                // The caller's page-table root: CR3 without PCID (bits 0-11) and flag bits (63, 62).
                let sregs = vcpu.sregs().map_err(|_| HcallError::BadState)?;
                // A 4-level page-table root only (duet hides LA57 from both partitions).
                if sregs.cr0 & CR0_PG == 0 || sregs.cr4 & CR4_LA57 != 0 {
                    return Err(HcallError::BadState);
                }
                let root = sregs.cr3 & 0x000f_ffff_ffff_f000;
                if !self.topology.layout.in_ros_ram(root, 4096) {
                    return Err(HcallError::BadAddress);
                }
                let (func, arg) = if merge { (FUNC_MERGE, root) } else { (FUNC_UNMERGE, 0) };
                self.invoke(vcpu, from, Request { func, arg, flags: post.flags }, post)
            }
            Call::InvokeResult { core } => {
                let (result, done, idle) = self.slots.last_result(&self.mem, core);
                Ok(Ret(result, done, u64::from(idle)))
            }
            Call::EventPost { event, payload } => {
                let to = if from == Partition::Ros { Partition::Hrt } else { Partition::Ros };
                if self.events.post(to, event, payload) {
                    Ok(Ret::default())
                } else {
                    Err(HcallError::Busy)
                }
            }
            Call::EventComplete => Ok(match self.events.take(from) {
                Some((e, p)) => Ret(e, p, 1),
                None => Ret(0, 0, 0),
            }),
            Call::HrtStatus => {
                let (state, detail, boots) = self.lifecycle.status();
                Ok(Ret(state as u64, detail, boots))
            }
            Call::Exit { status } => {
                self.stop.request(devices::stop::StopRequest::Exit(status as u32));
                Ok(Ret::default())
            }
            Call::HrtReady => {
                if let Some(boots) = self.lifecycle.ready() {
                    log::info!("hrt: ready (boot {boots})");
                    self.events.post_vmm(EVENT_HRT_READY, boots);
                }
                Ok(Ret::default())
            }
            Call::InvokeDone { core } => {
                self.events.post_vmm(EVENT_INVOKE_DONE, u64::from(core));
                Ok(Ret::default())
            }
        }
    }

    /// The partition description: the current boot's, or (not booted yet) the partitions all the same.
    fn info(&self) -> HvmInfo {
        let info = self.lifecycle.info();
        if info.hrt_cores != 0 {
            return info;
        }
        hvm::entry::hvm_info(&self.topology.boot_spec(&[], "", &[]), None).unwrap_or_default()
    }

    /// Posts `request` as `post` says: translates the completion records (the caller keeps them
    /// resident: mlock), then, while the HRT runs a boot and under its lifecycle's lock, writes the
    /// slots and wakes the cores.
    fn invoke(&self, vcpu: &mut Vcpu, from: Partition, request: Request, post: Post) -> Result<Ret, HcallError> {
        let cores: Vec<u32> = match post.target {
            CoreTarget::One(c) => vec![c],
            CoreTarget::All => (0..self.hrt_cores()).collect(),
        };
        let records: Vec<u64> = match post.completion {
            None => vec![0; cores.len()],
            Some(va) => {
                let sregs = vcpu.sregs().map_err(|_| HcallError::BadAddress)?;
                self.with_view(&sregs, from, |v| {
                    (0..cores.len() as u64)
                        .map(|i| {
                            let at = va.checked_add(16 * i).ok_or(HcallError::BadAddress)?;
                            match v.pieces(at, 16, true).map_err(walk_err)?.as_slice() {
                                [(gpa, 16)] => Ok(*gpa),
                                _ => Err(HcallError::BadAddress),
                            }
                        })
                        .collect()
                })?
            }
        };
        self.lifecycle.while_running(|wake_vector| {
            let seq = self.slots.post(&self.mem, &cores, request, &records)?;
            if wake_vector != 0 {
                for &c in &cores {
                    self.wake(c, wake_vector);
                }
            }
            Ok(Ret(seq, 0, 0))
        })
    }

    /// Sends HRT core `core` its wake-up vector (an MSI in the HRT's KVM VM).
    fn wake(&self, core: u32, vector: u32) {
        let msi = kvm_msi {
            address_lo: msi_address(self.topology.hrt_apic_id(core)),
            address_hi: 0,
            data: vector,
            ..Default::default()
        };
        if let Err(e) = self.hrt_vm.signal_msi(msi) {
            log::warn!("invoke: waking HRT core {core} failed: {e}");
        }
    }
}
