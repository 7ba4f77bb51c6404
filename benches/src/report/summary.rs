//! Latency summaries (nearest-rank percentiles) and the `bench=NAME k=v ...` console lines of the
//! in-guest harness.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ReportError;

/// Converts TSC cycles to nanoseconds at `tsc_khz` (rounded down), as the in-guest tool does.
pub fn cycles_to_ns(cycles: u64, tsc_khz: u64) -> u64 {
    let ns = u128::from(cycles) * 1_000_000 / u128::from(tsc_khz.max(1));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// The nearest-rank percentile `num/den` of sorted, non-empty `s` (0 when empty).
fn rank(s: &[u64], num: usize, den: usize) -> u64 {
    let r = s.len().saturating_mul(num).div_ceil(den).saturating_sub(1);
    s.get(r.min(s.len().saturating_sub(1))).copied().unwrap_or(0)
}

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
        s.sort_unstable();
        let sum: u128 = s.iter().map(|&c| u128::from(c)).sum();
        let mean = u64::try_from(sum / s.len().max(1) as u128).unwrap_or(u64::MAX);
        let [p50, p90, p99, p999] = [500, 900, 990, 999].map(|num| rank(&s, num, 1000));
        let ns = |c| cycles_to_ns(c, self.tsc_khz);
        Summary {
            n: s.len() as u64,
            p50_ns: ns(p50),
            p90_ns: ns(p90),
            p99_ns: ns(p99),
            p999_ns: ns(p999),
            mean_ns: ns(mean),
            p50_cycles: Some(p50),
            p90_cycles: Some(p90),
            p99_cycles: Some(p99),
            p999_cycles: Some(p999),
            mean_cycles: Some(mean),
            tsc_khz: Some(self.tsc_khz),
        }
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
        let need = |key: &str| -> Result<u64, ReportError> {
            match line.get(key) {
                None => Err(ReportError::Invalid(format!("bench={}: no {key}=", line.name))),
                Some(v) => v
                    .parse()
                    .map_err(|_| ReportError::Invalid(format!("bench={}: {key}={v} is not a whole number", line.name))),
            }
        };
        let opt = |key: &str| line.get(key).and_then(|v| v.parse::<u64>().ok());
        Ok(Summary {
            n: need("n")?,
            p50_ns: need("p50_ns")?,
            p90_ns: need("p90_ns")?,
            p99_ns: need("p99_ns")?,
            p999_ns: need("p999_ns")?,
            mean_ns: need("mean_ns")?,
            p50_cycles: opt("p50_cycles"),
            p90_cycles: opt("p90_cycles"),
            p99_cycles: opt("p99_cycles"),
            p999_cycles: opt("p999_cycles"),
            mean_cycles: opt("mean_cycles"),
            tsc_khz: opt("tsc_khz").filter(|&k| k > 0),
        })
    }
}

/// One `bench=NAME k=v ...` console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchLine {
    /// The benchmark's name.
    pub name: String,
    /// Its `key=value` words (words without `=` are ignored).
    pub fields: BTreeMap<String, String>,
}

impl BenchLine {
    /// Parses a line that starts (after whitespace) with `bench=NAME`; `None` for any other line.
    pub fn parse(line: &str) -> Option<Self> {
        let rest = line.trim().strip_prefix("bench=")?;
        let mut words = rest.split_whitespace();
        let name = words.next()?.to_string();
        let fields = words.filter_map(|w| w.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Some(BenchLine { name, fields })
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    /// The value of `key` as a number.
    pub fn number(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(|v| v.parse().ok())
    }
}

/// Every `bench=` line of a console transcript, by name (a later line of the same name wins).
pub fn parse_console(console: &str) -> BTreeMap<String, BenchLine> {
    console.lines().filter_map(BenchLine::parse).map(|l| (l.name.clone(), l)).collect()
}

/// Raw samples from `bench-samples=NAME tsc_khz=K C C C ...` console lines: the cycles of every line
/// of one name are appended in order (so a long set can be printed in chunks); the last `tsc_khz`
/// seen for a name wins. Words that are neither `tsc_khz=` nor a whole number are an error.
pub fn parse_sample_lines(console: &str) -> Result<BTreeMap<String, Samples>, ReportError> {
    let mut raw: BTreeMap<String, (Vec<u64>, u64)> = BTreeMap::new();
    for line in console.lines() {
        let Some(rest) = line.trim().strip_prefix("bench-samples=") else { continue };
        let mut words = rest.split_whitespace();
        let Some(name) = words.next() else { continue };
        let entry = raw.entry(name.to_string()).or_default();
        for w in words {
            if let Some(k) = w.strip_prefix("tsc_khz=") {
                entry.1 = k.parse().map_err(|_| ReportError::Invalid(format!("bench-samples={name}: bad {w}")))?;
            } else {
                entry.0.push(w.parse().map_err(|_| ReportError::Invalid(format!("bench-samples={name}: bad sample {w:?}")))?);
            }
        }
    }
    raw.into_iter()
        .map(|(name, (cycles, khz))| {
            let s = Samples::new(cycles, khz).map_err(|e| ReportError::Invalid(format!("bench-samples={name}: {e}")))?;
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
