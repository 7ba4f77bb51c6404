//! `hvm info` and `hvm status`.

use abi::client::Ret;
use abi::{HrtFault, HrtState, MemRange, Op};

use crate::error::Error;
use crate::hcall::{Port, Version};

/// `base+len` in hex.
fn range(r: &MemRange) -> String {
    format!("{:#x}+{:#x}", r.base, r.len)
}

/// A comma-separated list of the first `n` IDs (bounded by the array, never out of range).
fn ids(list: &[u32], n: u32) -> String {
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    list.iter().take(n).map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// `hvm info`: VERSION and PARTITION_INFO.
pub fn info(port: &Port, v: &Version) -> Result<(), Error> {
    let i = port.partition_info()?;
    out!("abi={}", v.abi);
    out!("info.version={}", i.version);
    out!("hrt.cores={}", i.hrt_cores);
    out!("hrt.apic_ids={}", ids(&i.hrt_apic_ids, i.hrt_cores));
    out!("hrt.ram={}", range(&i.hrt_ram));
    out!("ros.cores={}", i.ros_cores);
    out!("ros.apic_ids={}", ids(&i.ros_apic_ids, i.ros_cores));
    let ros: Vec<String> = i.ros_ram.iter().filter(|r| r.len != 0).map(range).collect();
    out!("ros.ram={}", ros.join(","));
    out!("tsc_khz={}", i.tsc_khz);
    out!("wake_vector={:#x}", i.wake_vector);
    out!("comm_page={:#x}", i.comm_page);
    out!("hypercall_port={:#x}", i.hypercall_port);
    out!("entry64={}", u32::from(i.flags & abi::HvmInfo::FLAG_ENTRY64 != 0));
    out!("kernel_vbase={:#x}", i.kernel_vbase);
    out!("phys_map_base={:#x}", i.phys_map_base);
    let mode = abi::ForwardMode::from_u32(i.forward_mode).map_or("unknown", |m| m.name());
    out!("forward.mode={mode} forward.spin_us={}", i.forward_spin_us);
    out!("doorbells: hrt={:#x} ros={:#x}", i.hrt_doorbell_port, i.ros_doorbell_port);
    if u64::from(i.hrt_cores) != v.hrt_cores || u64::from(i.ros_cores) != v.ros_cores {
        return Err(Error::failed(format!(
            "VERSION says {} HRT / {} ROS cores, PARTITION_INFO says {} / {}",
            v.hrt_cores, v.ros_cores, i.hrt_cores, i.ros_cores
        )));
    }
    Ok(())
}

/// The name of an HRT fault code.
pub fn fault_name(code: u64) -> &'static str {
    match code {
        c if c == HrtFault::TripleFault as u64 => "triple-fault",
        c if c == HrtFault::Unsupported as u64 => "unsupported",
        c if c == HrtFault::Internal as u64 => "internal",
        _ => "unknown",
    }
}

/// The HRT_STATUS answer as a line: `state=ready detail=0 boots=1` (faults add `fault=NAME`).
pub fn status_line(r: &Ret) -> String {
    let state = HrtState::from_raw(r.rbx).map_or_else(|| format!("unknown-{}", r.rbx), |s| s.name().to_string());
    let mut line = format!("state={state} detail={} boots={}", r.rcx, r.rdx);
    if HrtState::from_raw(r.rbx) == Some(HrtState::Faulted) {
        line.push_str(&format!(" fault={}", fault_name(r.rcx)));
    }
    line
}

/// HRT_STATUS.
pub fn query(port: &Port) -> Result<Ret, Error> {
    port.call(Op::HrtStatus, [0; 5])
}

/// `hvm status`.
pub fn status(port: &Port) -> Result<(), Error> {
    out!("{}", status_line(&query(port)?));
    Ok(())
}
