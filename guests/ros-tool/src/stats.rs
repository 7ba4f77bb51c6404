//! Latency summaries: nearest-rank percentiles of TSC samples.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::hcall::Port;
use crate::tsc::cycles_to_ns;

/// Percentiles and mean of a sample set, in cycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Samples.
    pub n: usize,
    /// 50th percentile.
    pub p50: u64,
    /// 90th.
    pub p90: u64,
    /// 99th.
    pub p99: u64,
    /// 99.9th.
    pub p999: u64,
    /// Mean (rounded down).
    pub mean: u64,
}

/// The nearest-rank percentile `num/den` of sorted, non-empty `s`.
fn rank(s: &[u64], num: usize, den: usize) -> u64 {
    let r = s.len().saturating_mul(num).div_ceil(den).saturating_sub(1);
    s.get(r.min(s.len().saturating_sub(1))).copied().unwrap_or(0)
}

/// Summarizes `samples` (sorted in place); `None` if empty.
pub fn summarize(samples: &mut [u64]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let sum: u128 = samples.iter().map(|&c| u128::from(c)).sum();
    let mean = u64::try_from(sum / samples.len() as u128).unwrap_or(u64::MAX);
    Some(Summary {
        n: samples.len(),
        p50: rank(samples, 500, 1000),
        p90: rank(samples, 900, 1000),
        p99: rank(samples, 990, 1000),
        p999: rank(samples, 999, 1000),
        mean,
    })
}

impl Summary {
    /// `bench=NAME n=N p50_ns=.. p90_ns=.. p99_ns=.. p999_ns=.. mean_ns=.. p50_cycles=.. p99_cycles=.. tsc_khz=..`.
    pub fn line(&self, name: &str, khz: u64) -> String {
        let ns = |c| cycles_to_ns(c, khz);
        format!(
            "bench={name} n={} p50_ns={} p90_ns={} p99_ns={} p999_ns={} mean_ns={} p50_cycles={} p99_cycles={} tsc_khz={khz}",
            self.n,
            ns(self.p50),
            ns(self.p90),
            ns(self.p99),
            ns(self.p999),
            ns(self.mean),
            self.p50,
            self.p99
        )
    }
}

/// `bench-samples=NAME tsc_khz=K C C ...` lines, 64 samples each, in the order taken (the host's
/// report keeps them for its CDF plot: benches/src/report).
pub fn sample_lines(name: &str, khz: u64, samples: &[u64]) -> Vec<String> {
    samples
        .chunks(64)
        .map(|chunk| {
            let words: Vec<String> = chunk.iter().map(u64::to_string).collect();
            format!("bench-samples={name} tsc_khz={khz} {}", words.join(" "))
        })
        .collect()
}

/// The next phase's first mark code (guests' codes start at 0x100; the forward bench's phases use
/// 0x1000 and up, two each).
static NEXT_MARK: AtomicU32 = AtomicU32::new(0x1000);

/// A measured phase, bracketed by two marks on duet's debug port. The VMM samples every vCPU's KVM
/// counters at each mark, so the host can divide the VM exits (and, on PVM, the emulated ring-0
/// instructions) between the two by the phase's calls. The marks' own exits are in the count.
pub struct Phase<'a> {
    port: &'a Port,
    code: u32,
}

impl<'a> Phase<'a> {
    /// Marks the start of a phase.
    pub fn begin(port: &'a Port) -> Phase<'a> {
        let code = NEXT_MARK.fetch_add(2, Ordering::Relaxed);
        port.mark(code);
        Phase { port, code }
    }

    /// Marks its end; the line that tells the host what the two marks bracket:
    /// `bench-phase=NAME calls=N begin=0x.. end=0x..`.
    pub fn end(self, name: &str, calls: u64) -> String {
        self.port.mark(self.code + 1);
        format!("bench-phase={name} calls={calls} begin={:#x} end={:#x}", self.code, self.code + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut s: Vec<u64> = (1..=1000).rev().collect();
        let x = summarize(&mut s).unwrap_or_else(|| unreachable!());
        assert_eq!((x.n, x.p50, x.p90, x.p99, x.p999, x.mean), (1000, 500, 900, 990, 999, 500));
        let mut one = [7];
        let x = summarize(&mut one).unwrap_or_else(|| unreachable!());
        assert_eq!((x.p50, x.p999, x.mean), (7, 7, 7));
        assert_eq!(summarize(&mut []), None);
        assert_eq!(x.line("t", 1_000_000).split(' ').next(), Some("bench=t"));
        assert_eq!(cycles_to_ns(3_000, 3_000_000), 1_000);
    }

    #[test]
    fn sample_lines_come_in_chunks_of_64() {
        let samples: Vec<u64> = (1..=130).collect();
        let lines = sample_lines("x", 7, &samples);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("bench-samples=x tsc_khz=7 1 2 "));
        assert_eq!(lines[2], "bench-samples=x tsc_khz=7 129 130");
        assert!(sample_lines("x", 7, &[]).is_empty());
    }
}
