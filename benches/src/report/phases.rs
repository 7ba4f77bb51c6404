//! VM exits per call, from KVM's statistics: the in-guest tool brackets each measured phase with
//! two debug-port marks and says so in a `bench-phase=NAME calls=N begin=0x.. end=0x..` line
//! ([`PhaseLine`]); the VMM samples every vCPU's counters at each mark ([`vmm::MarkAt::vcpus`]). The
//! difference between the two marks, divided by the phase's calls, is what one call cost, the
//! marks' own two exits (on the ROS) and any timer ticks included.

use std::collections::HashMap;

use benchline::PhaseLine;
use serde::{Deserialize, Serialize};
use vmm::stats::{Counters, Partition};
use vmm::MarkAt;

use super::ReportError;

/// KVM's counters per call over one phase, per partition.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KvmPerCall {
    /// Calls in the phase.
    pub calls: u64,
    /// The phase's length, seconds (between the VMM's sight of its two marks).
    pub seconds: f64,
    /// Exits of the ROS's vCPUs per call.
    pub ros_exits: f64,
    /// Exits of the HRT's vCPUs per call.
    pub hrt_exits: f64,
    /// Exits of the ROS's vCPUs per call for a host interrupt (timers, preemption: not the call's).
    #[serde(default)]
    pub ros_irq_exits: f64,
    /// Exits of the HRT's vCPUs per call for a host interrupt.
    #[serde(default)]
    pub hrt_irq_exits: f64,
    /// Instructions KVM emulated for the ROS per call (PVM: its ring-0 instructions).
    pub ros_emulated: f64,
    /// Instructions KVM emulated for the HRT per call (PVM: its ring-0 instructions).
    pub hrt_emulated: f64,
}

impl KvmPerCall {
    /// Both partitions' exits per call.
    pub fn exits(&self) -> f64 {
        self.ros_exits + self.hrt_exits
    }

    fn from_delta(calls: u64, seconds: f64, ros: Counters, hrt: Counters) -> Self {
        let per = |v: u64| v as f64 / calls.max(1) as f64;
        KvmPerCall {
            calls,
            seconds,
            ros_exits: per(ros.exits),
            hrt_exits: per(hrt.exits),
            ros_irq_exits: per(ros.irq_exits),
            hrt_irq_exits: per(hrt.irq_exits),
            ros_emulated: per(ros.insn_emulation),
            hrt_emulated: per(hrt.insn_emulation),
        }
    }
}

/// Each phase's counters per call, by phase name, from the console's `bench-phase=` lines and the
/// run's marks (matched in order: a phase's marks are the first ones with its codes after the
/// previous phase's). A phase whose marks carry no counters (a host without KVM's stats fd) is
/// left out; one whose marks are missing is an error.
pub fn phase_counts(console: &str, marks: &[MarkAt]) -> Result<HashMap<String, KvmPerCall>, ReportError> {
    let mut out = HashMap::new();
    let mut cursor = 0;
    for line in console.lines() {
        let Some(phase) = PhaseLine::parse(line) else { continue };
        let phase = phase.map_err(|e| ReportError::Invalid(e.to_string()))?;
        let find = |code: u32, from: usize| marks[from..].iter().position(|m| m.code == code).map(|i| from + i);
        let Some(b) = find(phase.begin, cursor) else {
            return Err(ReportError::Invalid(format!("phase {}: no mark {:#x}", phase.name, phase.begin)));
        };
        let Some(e) = find(phase.end, b + 1) else {
            return Err(ReportError::Invalid(format!("phase {}: no mark {:#x} after {:#x}", phase.name, phase.end, phase.begin)));
        };
        cursor = e + 1;
        let (mb, me) = (&marks[b], &marks[e]);
        if mb.vcpus.is_empty() || me.vcpus.is_empty() {
            continue;
        }
        let delta = |p| me.total(p).since(&mb.total(p));
        out.insert(phase.name.clone(), KvmPerCall::from_delta(
            phase.calls,
            me.since_start.saturating_sub(mb.since_start).as_secs_f64(),
            delta(Partition::Ros),
            delta(Partition::Hrt),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use vmm::stats::VcpuSample;

    use super::*;

    fn mark(code: u32, ros_exits: u64, hrt_exits: u64) -> MarkAt {
        let sample = |partition, exits| VcpuSample { partition, index: 0, counters: Counters { exits, insn_emulation: 2 * exits, ..Default::default() } };
        MarkAt { code, since_start: Duration::ZERO, vcpus: vec![sample(Partition::Ros, ros_exits), sample(Partition::Hrt, hrt_exits)] }
    }

    #[test]
    fn phases_pair_with_their_marks_in_order() {
        // Two processes both started at 0x1000: the second phase's marks come after the first's.
        let marks = [mark(0x1000, 10, 5), mark(0x1001, 30, 5), mark(0x1000, 100, 7), mark(0x1001, 104, 9)];
        let console = "x\nbench-phase=a calls=10 begin=0x1000 end=0x1001\nbench=a n=1\nbench-phase=b calls=2 begin=0x1000 end=0x1001\n";
        let c = phase_counts(console, &marks).expect("counts");
        assert_eq!(c["a"].ros_exits, 2.0);
        assert_eq!(c["a"].hrt_exits, 0.0);
        assert_eq!(c["b"].ros_exits, 2.0);
        assert_eq!(c["b"].hrt_exits, 1.0);
        assert_eq!(c["b"].hrt_emulated, 2.0);
        assert_eq!(c["b"].exits(), 3.0);
    }

    #[test]
    fn missing_marks_and_bad_lines_are_errors_and_counterless_marks_are_skipped() {
        let marks = [mark(0x1000, 1, 1)];
        assert!(phase_counts("bench-phase=a calls=1 begin=0x1000 end=0x1001", &marks).is_err());
        assert!(phase_counts("bench-phase=a calls=0 begin=0x1000 end=0x1001", &marks).is_err());
        assert!(phase_counts("bench-phase=a begin=0x1000", &marks).is_err());
        let bare = [MarkAt { code: 0x1000, since_start: Duration::ZERO, vcpus: vec![] }, MarkAt { code: 0x1001, since_start: Duration::ZERO, vcpus: vec![] }];
        assert!(phase_counts("bench-phase=a calls=1 begin=0x1000 end=0x1001", &bare).expect("ok").is_empty());
    }
}
