//! Latency summaries (nearest-rank percentiles) and the `bench=NAME k=v ...` console lines of the
//! in-guest harness. The line formats and the percentile method are the `benchline` crate's, which
//! the in-guest tool writes its lines with; this module turns them into the report's types.

use std::collections::BTreeMap;

pub use benchline::{cycles_to_ns, parse_console, BenchLine};
use serde::{Deserialize, Serialize};

use super::ReportError;

/// Raw latency samples in TSC cycles, with the TSC frequency that converts them to time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Samples {
    cycles: Vec<u64>,
    tsc_khz: u64,
}

impl Samples {
    /// A sample set; an error if it is empty or `tsc_khz` is 0.
    pub fn new(cycles: Vec<u64>, tsc_khz: u64) -> Result<Self, ReportError> {
        if cycles.is_empty() {
            return Err(ReportError::NoSamples);
        }
        if tsc_khz == 0 {
            return Err(ReportError::Invalid("a TSC frequency of 0 kHz".into()));
        }
        Ok(Samples { cycles, tsc_khz })
    }

    /// The samples, in the order they were taken.
    pub fn cycles(&self) -> &[u64] {
        &self.cycles
    }

    /// The TSC frequency in kHz.
    pub fn tsc_khz(&self) -> u64 {
        self.tsc_khz
    }

    /// Percentiles and mean, in cycles and in ns.
    pub fn summary(&self) -> Summary {
        let mut s = self.cycles.clone();
        Summary::from(benchline::Summary::of(&mut s).unwrap_or_default().at(self.tsc_khz))
    }

    /// Every sample in ns, sorted (for a CDF).
    pub fn sorted_ns(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.cycles.iter().map(|&c| cycles_to_ns(c, self.tsc_khz)).collect();
        v.sort_unstable();
        v
    }
}

/// Sample count, nearest-rank percentiles and mean (rounded down) of one benchmark, in ns, and in
/// cycles where they are known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub n: u64,
    /// 50th percentile, ns.
    pub p50_ns: u64,
    /// 90th percentile, ns.
    pub p90_ns: u64,
    /// 99th percentile, ns.
    pub p99_ns: u64,
    /// 99.9th percentile, ns.
    pub p999_ns: u64,
    /// Mean, ns.
    pub mean_ns: u64,
    /// 50th percentile, TSC cycles.
    #[serde(default)]
    pub p50_cycles: Option<u64>,
    /// 90th percentile, TSC cycles.
    #[serde(default)]
    pub p90_cycles: Option<u64>,
    /// 99th percentile, TSC cycles.
    #[serde(default)]
    pub p99_cycles: Option<u64>,
    /// 99.9th percentile, TSC cycles.
    #[serde(default)]
    pub p999_cycles: Option<u64>,
    /// Mean, TSC cycles.
    #[serde(default)]
    pub mean_cycles: Option<u64>,
    /// The TSC frequency the cycles were taken at, kHz.
    #[serde(default)]
    pub tsc_khz: Option<u64>,
}

impl Summary {
    /// A summary of one value measured once (every percentile and the mean are that value).
    pub fn single_ns(ns: u64) -> Self {
        Summary {
            n: 1,
            p50_ns: ns,
            p90_ns: ns,
            p99_ns: ns,
            p999_ns: ns,
            mean_ns: ns,
            p50_cycles: None,
            p90_cycles: None,
            p99_cycles: None,
            p999_cycles: None,
            mean_cycles: None,
            tsc_khz: None,
        }
    }

    /// The summary a `bench=` line states: `n` and the `*_ns` fields are required, the `*_cycles`
    /// fields and `tsc_khz` optional.
    pub fn from_line(line: &BenchLine) -> Result<Self, ReportError> {
        line.summary().map(Summary::from).map_err(|e| ReportError::Invalid(e.to_string()))
    }
}

impl From<benchline::LineSummary> for Summary {
    fn from(s: benchline::LineSummary) -> Self {
        Summary {
            n: s.n,
            p50_ns: s.p50_ns,
            p90_ns: s.p90_ns,
            p99_ns: s.p99_ns,
            p999_ns: s.p999_ns,
            mean_ns: s.mean_ns,
            p50_cycles: s.p50_cycles,
            p90_cycles: s.p90_cycles,
            p99_cycles: s.p99_cycles,
            p999_cycles: s.p999_cycles,
            mean_cycles: s.mean_cycles,
            tsc_khz: s.tsc_khz,
        }
    }
}

/// Raw samples from `bench-samples=NAME tsc_khz=K C C C ...` console lines: the cycles of every line
/// of one name are appended in order (so a long set can be printed in chunks); the last `tsc_khz`
/// seen for a name wins. Words that are neither `tsc_khz=` nor a whole number are an error.
pub fn parse_sample_lines(console: &str) -> Result<BTreeMap<String, Samples>, ReportError> {
    let sets = benchline::parse_sample_lines(console).map_err(|e| ReportError::Invalid(e.to_string()))?;
    sets.into_iter()
        .map(|(name, set)| {
            let s = Samples::new(set.cycles, set.tsc_khz).map_err(|e| ReportError::Invalid(format!("bench-samples={name}: {e}")))?;
            Ok((name, s))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "bench=forward-echo-poll n=1000 p50_ns=96012 p90_ns=1529742 p99_ns=1883137 p999_ns=6257234 \
                        mean_ns=305742 p50_cycles=249262 p99_cycles=4888884 tsc_khz=2596138";

    #[test]
    fn percentiles_are_nearest_rank_like_the_guest() {
        let s = Samples::new((1..=1000).rev().collect(), 1_000_000).unwrap_or_else(|e| unreachable!("{e}"));
        let x = s.summary();
        assert_eq!((x.n, x.p50_cycles, x.p90_cycles, x.p99_cycles, x.p999_cycles), (1000, Some(500), Some(900), Some(990), Some(999)));
        assert_eq!((x.mean_cycles, x.p50_ns, x.p999_ns), (Some(500), 500, 999));
        let one = Samples::new(vec![3_000], 3_000_000).unwrap_or_else(|e| unreachable!("{e}")).summary();
        assert_eq!((one.n, one.p50_ns, one.p999_ns, one.mean_ns), (1, 1_000, 1_000, 1_000));
        assert!(matches!(Samples::new(vec![], 1), Err(ReportError::NoSamples)));
        assert!(Samples::new(vec![1], 0).is_err());
    }

    #[test]
    fn parses_bench_lines() {
        let console = format!("noise\n  {LINE}\nbench=x n=1\nbench=\nbench=x n=2 junk\n");
        let lines = parse_console(&console);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines.get("x").and_then(|l| l.get("n")), Some("2"));
        let l = lines.get("forward-echo-poll").unwrap_or_else(|| unreachable!());
        let s = Summary::from_line(l).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!((s.n, s.p50_ns, s.p999_ns, s.mean_ns), (1000, 96012, 6257234, 305742));
        assert_eq!((s.p50_cycles, s.p90_cycles, s.p99_cycles, s.tsc_khz), (Some(249262), None, Some(4888884), Some(2596138)));
        let bad = BenchLine::parse("bench=y n=1 p50_ns=abc").unwrap_or_else(|| unreachable!());
        let e = Summary::from_line(&bad).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("p50_ns=abc"), "{e}");
        let missing = BenchLine::parse("bench=y n=1").unwrap_or_else(|| unreachable!());
        assert!(Summary::from_line(&missing).is_err());
    }

    #[test]
    fn parses_sample_lines_in_chunks() {
        let text = "bench-samples=a tsc_khz=1000000 5 6\nother\nbench-samples=a 7\nbench-samples=b tsc_khz=2000000 4\n";
        let m = parse_sample_lines(text).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(m.get("a").map(Samples::cycles), Some(&[5, 6, 7][..]));
        assert_eq!(m.get("b").map(Samples::sorted_ns), Some(vec![2]));
        assert!(parse_sample_lines("bench-samples=a tsc_khz=1 x").is_err());
        assert!(parse_sample_lines("bench-samples=a 5").is_err(), "no tsc_khz");
    }
}
