//! Serving hypercalls (ABI v1, `docs/hypercalls.md`) from either partition's vCPU threads. Nothing
//! here blocks: a boot or reboot is handed to the HRT's supervisor, an invoke is posted to the core's
//! slot and the core woken by an MSI; results come back through the caller's completion record or
//! `INVOKE_RESULT`. Every argument is validated (`hvm::hypercall::decode`, then the page walk in
//! `hvm::paging`), and errors go back in RAX.

use std::sync::atomic::Ordering;

use hvm::abi::{
    slot, HcallError, HrtState, HvmInfo, EVENT_HRT_READY, EVENT_INVOKE_DONE, ABI_VERSION, FUNC_MERGE, FUNC_UNMERGE,
    INVOKE_NOTIFY,
};
use hvm::hypercall::{decode, Call, CoreTarget, Regs};
use hvm::paging::{GuestView, WalkError};
use hvm::Partition;
use kvm_bindings::kvm_msi;
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::Hvm;

use boot::entry::{CR0_PG, CR4_LA57};

/// Results in RBX, RCX, RDX.
#[derive(Debug, Default, Clone, Copy)]
struct Ret(u64, u64, u64);

fn walk_err(e: WalkError) -> HcallError {
    log::debug!("hypercall: {e}");
    HcallError::BadAddress
}

impl Hvm {
    /// Serves the hypercall a vCPU of partition `from` just made (its `out` to the hypercall port):
    /// reads its registers, acts, and writes the status and results back.
    pub fn hypercall(&self, vcpu: &VcpuFd, from: Partition, vcpu_index: u32) {
        let mut regs = match vcpu.get_regs() {
            Ok(r) => r,
            Err(e) => {
                log::warn!("hypercall: reading the registers of {} vCPU {vcpu_index} failed: {e}", from.name());
                return;
            }
        };
        let r = Regs { rax: regs.rax, rbx: regs.rbx, rcx: regs.rcx, rdx: regs.rdx, rsi: regs.rsi, rdi: regs.rdi };
        let outcome = decode(&r, from, self.hrt_cores()).and_then(|call| self.serve(call, vcpu, from));
        match outcome {
            Ok(Ret(b, c, d)) => {
                regs.rax = 0;
                regs.rbx = b;
                regs.rcx = c;
                regs.rdx = d;
            }
            Err(e) => {
                log::debug!("hypercall {:#x} from {} vCPU {vcpu_index}: {}", r.rax, from.name(), e.name());
                regs.rax = e.code() as u64;
            }
        }
        if let Err(e) = vcpu.set_regs(&regs) {
            log::warn!("hypercall: writing the registers of {} vCPU {vcpu_index} failed: {e}", from.name());
        }
    }

    /// Runs `f` with a view of the caller's address space: its page tables, its mode, and the memory it
    /// may reach (the ROS: its own RAM; the HRT: all RAM).
    fn with_view<T>(
        &self,
        vcpu: &VcpuFd,
        from: Partition,
        f: impl FnOnce(&GuestView<'_, GuestMemoryMmap<()>>) -> Result<T, HcallError>,
    ) -> Result<T, HcallError> {
        let sregs = vcpu.get_sregs().map_err(|_| HcallError::BadAddress)?;
        let layout = &self.layout;
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

    fn serve(&self, call: Call, vcpu: &VcpuFd, from: Partition) -> Result<Ret, HcallError> {
        match call {
            Call::Version => Ok(Ret(ABI_VERSION, u64::from(self.hrt_cores()), self.ros_apic_ids.len() as u64)),
            Call::PartitionInfo { buf } => {
                let mut bytes = [0u8; HvmInfo::SIZE];
                self.info().encode(&mut bytes);
                let n = (buf.len as usize).min(bytes.len());
                self.with_view(vcpu, from, |v| v.write(buf.addr, &bytes[..n]).map_err(walk_err))?;
                Ok(Ret(n as u64, HvmInfo::SIZE as u64, 0))
            }
            Call::HrtBoot => {
                let mut ctl = self.ctl();
                match ctl.state {
                    HrtState::NotBooted | HrtState::Exited | HrtState::Faulted if ctl.request.is_none() => {
                        self.request_boot(&mut ctl);
                        Ok(Ret::default())
                    }
                    _ => Err(HcallError::BadState),
                }
            }
            Call::HrtReboot => {
                let mut ctl = self.ctl();
                self.request_boot(&mut ctl);
                Ok(Ret::default())
            }
            Call::HrtReplace { image } => {
                let bytes = self.with_view(vcpu, from, |v| v.read(image.addr, image.len).map_err(walk_err))?;
                if let Err(e) = boot::multiboot2::inspect(&bytes) {
                    log::info!("hypercall: HRT_REPLACE refused: {e}");
                    return Err(HcallError::BadArgument);
                }
                let mut ctl = self.ctl();
                ctl.image.kernel = std::sync::Arc::new(bytes);
                ctl.image.origin = "an image from the ROS (HRT_REPLACE)".into();
                self.request_boot(&mut ctl);
                Ok(Ret::default())
            }
            Call::Invoke { func, arg, target, flags, completion } => self.invoke(vcpu, from, func, arg, target, flags, completion),
            Call::Merge { merge, target, flags, completion } => {
                // The caller's page-table root: CR3 without PCID (bits 0-11) and flag bits (63, 62).
                let sregs = vcpu.get_sregs().map_err(|_| HcallError::BadState)?;
                // A 4-level page-table root only (duet hides LA57 from both partitions).
                if sregs.cr0 & CR0_PG == 0 || sregs.cr4 & CR4_LA57 != 0 {
                    return Err(HcallError::BadState);
                }
                let root = sregs.cr3 & 0x000f_ffff_ffff_f000;
                if !self.layout.in_ros_ram(root, 4096) {
                    return Err(HcallError::BadAddress);
                }
                let (func, arg) = if merge { (FUNC_MERGE, root) } else { (FUNC_UNMERGE, 0) };
                self.invoke(vcpu, from, func, arg, target, flags, completion)
            }
            Call::InvokeResult { core } => {
                let at = self.layout.hrt_base() + hvm::entry::slot_offset(core);
                let load = |off: u64| self.mem.load::<u64>(GuestAddress(at + off), Ordering::Acquire).unwrap_or(0);
                let (seq, done, result) = (load(slot::SEQ), load(slot::DONE), load(slot::RESULT));
                Ok(Ret(result, done, u64::from(seq == done)))
            }
            Call::EventPost { event, payload } => {
                if self.post(from == Partition::Ros, event, payload) {
                    Ok(Ret::default())
                } else {
                    Err(HcallError::Busy)
                }
            }
            Call::EventComplete => Ok(match self.take_event(from == Partition::Hrt) {
                Some((e, p)) => Ret(e, p, 1),
                None => Ret(0, 0, 0),
            }),
            Call::HrtStatus => {
                let (state, detail, boots) = self.hrt_status();
                Ok(Ret(state as u64, detail, boots))
            }
            Call::Exit { status } => {
                self.stop.request(devices::stop::StopRequest::Exit(status as u32));
                Ok(Ret::default())
            }
            Call::HrtReady => {
                let mut ctl = self.ctl();
                if ctl.state == HrtState::Booting && ctl.request.is_none() {
                    ctl.state = HrtState::Ready;
                    let boots = ctl.boots;
                    drop(ctl);
                    log::info!("hrt: ready (boot {boots})");
                    self.post_vmm(EVENT_HRT_READY, boots);
                }
                Ok(Ret::default())
            }
            Call::InvokeDone { core } => {
                self.post_vmm(EVENT_INVOKE_DONE, u64::from(core));
                Ok(Ret::default())
            }
        }
    }

    fn info(&self) -> HvmInfo {
        let info = self.ctl().info;
        if info.hrt_cores != 0 {
            return info;
        }
        // Not booted yet: describe the partitions all the same.
        hvm::entry::hvm_info(&self.boot_spec(&[], "", &[]), None).unwrap_or_default()
    }

    #[allow(clippy::too_many_arguments)]
    fn invoke(
        &self,
        vcpu: &VcpuFd,
        from: Partition,
        func: u64,
        arg: u64,
        target: CoreTarget,
        flags: u64,
        completion: Option<u64>,
    ) -> Result<Ret, HcallError> {
        let (state, wake_vector) = {
            let ctl = self.ctl();
            (ctl.state, ctl.info.wake_vector)
        };
        if !matches!(state, HrtState::Booting | HrtState::Ready) {
            return Err(HcallError::BadState);
        }
        let cores: Vec<u32> = match target {
            CoreTarget::One(c) => vec![c],
            CoreTarget::All => (0..self.hrt_cores()).collect(),
        };
        let slot_at = |core: u32| self.layout.hrt_base() + hvm::entry::slot_offset(core);
        let load = |at: u64| self.mem.load::<u64>(GuestAddress(at), Ordering::Acquire).map_err(|_| HcallError::BadState);
        for &c in &cores {
            if load(slot_at(c) + slot::SEQ)? != load(slot_at(c) + slot::DONE)? {
                return Err(HcallError::Busy);
            }
        }
        // The completion records, translated now (the caller keeps them resident: mlock).
        let records: Vec<u64> = match completion {
            None => vec![0; cores.len()],
            Some(va) => self.with_view(vcpu, from, |v| {
                cores
                    .iter()
                    .enumerate()
                    .map(|(i, _)| {
                        let at = va.checked_add(16 * i as u64).ok_or(HcallError::BadAddress)?;
                        let pieces = v.pieces(at, 16, true).map_err(walk_err)?;
                        match pieces.as_slice() {
                            [(gpa, 16)] => Ok(*gpa),
                            _ => Err(HcallError::BadAddress),
                        }
                    })
                    .collect()
            })?,
        };
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        for (&c, &record) in cores.iter().zip(&records) {
            let at = slot_at(c);
            let fields = [(slot::FUNC, func), (slot::ARG, arg), (slot::COMPLETION, record), (slot::FLAGS, flags & INVOKE_NOTIFY)];
            for (off, v) in fields {
                self.mem.write_obj(v, GuestAddress(at + off)).map_err(|_| HcallError::BadState)?;
            }
            self.mem.store(seq, GuestAddress(at + slot::SEQ), Ordering::Release).map_err(|_| HcallError::BadState)?;
            if wake_vector != 0 {
                let msi = kvm_msi {
                    address_lo: super::msi_address(self.hrt_apic_id(c)),
                    address_hi: 0,
                    data: wake_vector,
                    ..Default::default()
                };
                if let Err(e) = self.hrt_vm.signal_msi(msi) {
                    log::warn!("invoke: waking HRT core {c} failed: {e}");
                }
            }
        }
        Ok(Ret(seq, 0, 0))
    }
}
