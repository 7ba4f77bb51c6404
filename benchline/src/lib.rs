//! The console lines of duet's in-guest benchmarks: what `hvm` (guests/ros-tool) prints and what the
//! benches (benches/src/report) read back, in one place, so that the format and the percentile
//! method cannot drift apart.
//!
//! - `bench=NAME n=N p50_ns=.. p90_ns=.. p99_ns=.. p999_ns=.. mean_ns=.. [p50_cycles=..]
//!   [p90_cycles=..] [p99_cycles=..] [p999_cycles=..] [mean_cycles=..] [tsc_khz=..]`: a latency
//!   summary ([`LineSummary`], [`BenchLine`]); [`Summary`] computes one from TSC samples with
//!   nearest-rank percentiles ([`nearest_rank`]).
//! - `bench-samples=NAME tsc_khz=K C C ...`: raw samples in cycles, [`SAMPLES_PER_LINE`] a line
//!   ([`sample_lines`], [`parse_sample_lines`]).
//! - `bench-phase=NAME calls=N begin=0x.. end=0x..`: which two debug-port marks bracket a measured
//!   phase ([`PhaseLine`]).
//!
//! Plain `std`, no dependencies: the guest tool builds it by path outside duet's workspace.

use std::collections::BTreeMap;
use std::fmt;

/// What is wrong with a line, in words (the line's kind and name first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError(pub String);

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LineError {}

/// Converts TSC cycles to nanoseconds at `tsc_khz` (rounded down; a frequency of 0 counts as 1 kHz).
pub fn cycles_to_ns(cycles: u64, tsc_khz: u64) -> u64 {
    let ns = u128::from(cycles) * 1_000_000 / u128::from(tsc_khz.max(1));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// The nearest-rank percentile `num/den` of `sorted` (ascending): the smallest sample with at least
/// `num/den` of the samples at or below it. 0 when empty.
pub fn nearest_rank(sorted: &[u64], num: usize, den: usize) -> u64 {
    let r = sorted.len().saturating_mul(num).div_ceil(den.max(1)).saturating_sub(1);
    sorted.get(r.min(sorted.len().saturating_sub(1))).copied().unwrap_or(0)
}

/// Nearest-rank percentiles and mean (rounded down) of a sample set, in TSC cycles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Summary {
    /// Samples.
    pub n: u64,
    /// 50th percentile.
    pub p50: u64,
    /// 90th.
    pub p90: u64,
    /// 99th.
    pub p99: u64,
    /// 99.9th.
    pub p999: u64,
    /// Mean.
    pub mean: u64,
}

impl Summary {
    /// Summarizes `samples` (sorted in place); `None` if empty.
    pub fn of(samples: &mut [u64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let sum: u128 = samples.iter().map(|&c| u128::from(c)).sum();
        let mean = u64::try_from(sum / samples.len() as u128).unwrap_or(u64::MAX);
        let [p50, p90, p99, p999] = [500, 900, 990, 999].map(|num| nearest_rank(samples, num, 1000));
        Some(Summary { n: samples.len() as u64, p50, p90, p99, p999, mean })
    }

    /// Everything a `bench=` line can state about this summary at `tsc_khz`: every value in ns and
    /// in cycles, and the frequency.
    pub fn at(&self, tsc_khz: u64) -> LineSummary {
        let ns = |c| cycles_to_ns(c, tsc_khz);
        LineSummary {
            n: self.n,
            p50_ns: ns(self.p50),
            p90_ns: ns(self.p90),
            p99_ns: ns(self.p99),
            p999_ns: ns(self.p999),
            mean_ns: ns(self.mean),
            p50_cycles: Some(self.p50),
            p90_cycles: Some(self.p90),
            p99_cycles: Some(self.p99),
            p999_cycles: Some(self.p999),
            mean_cycles: Some(self.mean),
            tsc_khz: Some(tsc_khz),
        }
    }

    /// `hvm`'s `bench=` line for this summary: every value in ns, the median and the 99th
    /// percentile in cycles too, and the frequency:
    /// `bench=NAME n=N p50_ns=.. p90_ns=.. p99_ns=.. p999_ns=.. mean_ns=.. p50_cycles=.. p99_cycles=.. tsc_khz=..`.
    pub fn line(&self, name: &str, tsc_khz: u64) -> String {
        LineSummary { p90_cycles: None, p999_cycles: None, mean_cycles: None, ..self.at(tsc_khz) }.write(name)
    }
}

/// The numbers a `bench=` line states: the count and the `*_ns` values always, the `*_cycles`
/// values and the TSC frequency where the line has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineSummary {
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
    pub p50_cycles: Option<u64>,
    /// 90th percentile, TSC cycles.
    pub p90_cycles: Option<u64>,
    /// 99th percentile, TSC cycles.
    pub p99_cycles: Option<u64>,
    /// 99.9th percentile, TSC cycles.
    pub p999_cycles: Option<u64>,
    /// Mean, TSC cycles.
    pub mean_cycles: Option<u64>,
    /// The TSC frequency the cycles were taken at, kHz (never `Some(0)` from a parsed line).
    pub tsc_khz: Option<u64>,
}

impl LineSummary {
    /// The `bench=NAME ...` line: the count and the ns values, then those of the cycle values and
    /// the frequency that are known, in the order of the fields.
    pub fn write(&self, name: &str) -> String {
        let mut line = format!(
            "bench={name} n={} p50_ns={} p90_ns={} p99_ns={} p999_ns={} mean_ns={}",
            self.n, self.p50_ns, self.p90_ns, self.p99_ns, self.p999_ns, self.mean_ns
        );
        let optional = [
            ("p50_cycles", self.p50_cycles),
            ("p90_cycles", self.p90_cycles),
            ("p99_cycles", self.p99_cycles),
            ("p999_cycles", self.p999_cycles),
            ("mean_cycles", self.mean_cycles),
            ("tsc_khz", self.tsc_khz),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                line.push_str(&format!(" {key}={v}"));
            }
        }
        line
    }

    /// The numbers `line` states: `n` and the `*_ns` fields are required, the `*_cycles` fields
    /// and `tsc_khz` optional (one that is not a whole number, or a `tsc_khz` of 0, counts as absent).
    pub fn from_line(line: &BenchLine) -> Result<LineSummary, LineError> {
        let need = |key: &str| -> Result<u64, LineError> {
            match line.get(key) {
                None => Err(LineError(format!("bench={}: no {key}=", line.name))),
                Some(v) => v
                    .parse()
                    .map_err(|_| LineError(format!("bench={}: {key}={v} is not a whole number", line.name))),
            }
        };
        let opt = |key: &str| line.get(key).and_then(|v| v.parse::<u64>().ok());
        Ok(LineSummary {
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

/// One `bench=NAME k=v ...` console line, as words.
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

    /// The summary the line states ([`LineSummary::from_line`]).
    pub fn summary(&self) -> Result<LineSummary, LineError> {
        LineSummary::from_line(self)
    }
}

/// Every `bench=` line of a console transcript, by name (a later line of the same name wins).
pub fn parse_console(console: &str) -> BTreeMap<String, BenchLine> {
    console.lines().filter_map(BenchLine::parse).map(|l| (l.name.clone(), l)).collect()
}

/// Samples per `bench-samples=` line.
pub const SAMPLES_PER_LINE: usize = 64;

/// `bench-samples=NAME tsc_khz=K C C ...` lines, [`SAMPLES_PER_LINE`] samples each, in the order
/// taken (none for no samples).
pub fn sample_lines(name: &str, tsc_khz: u64, samples: &[u64]) -> Vec<String> {
    samples
        .chunks(SAMPLES_PER_LINE)
        .map(|chunk| {
            let words: Vec<String> = chunk.iter().map(u64::to_string).collect();
            format!("bench-samples={name} tsc_khz={tsc_khz} {}", words.join(" "))
        })
        .collect()
}

/// The raw samples of one name from `bench-samples=` lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SampleSet {
    /// The cycles, in the order taken.
    pub cycles: Vec<u64>,
    /// The TSC frequency, kHz (0: no line said).
    pub tsc_khz: u64,
}

/// Raw samples from `bench-samples=NAME tsc_khz=K C C C ...` console lines, by name: the cycles of
/// every line of one name are appended in order (so a long set can be printed in chunks); the last
/// `tsc_khz` seen for a name wins. Words that are neither `tsc_khz=` nor a whole number are an
/// error; an empty set or a missing frequency is the caller's to judge.
pub fn parse_sample_lines(console: &str) -> Result<BTreeMap<String, SampleSet>, LineError> {
    let mut sets: BTreeMap<String, SampleSet> = BTreeMap::new();
    for line in console.lines() {
        let Some(rest) = line.trim().strip_prefix("bench-samples=") else { continue };
        let mut words = rest.split_whitespace();
        let Some(name) = words.next() else { continue };
        let set = sets.entry(name.to_string()).or_default();
        for w in words {
            if let Some(k) = w.strip_prefix("tsc_khz=") {
                set.tsc_khz = k.parse().map_err(|_| LineError(format!("bench-samples={name}: bad {w}")))?;
            } else {
                set.cycles.push(w.parse().map_err(|_| LineError(format!("bench-samples={name}: bad sample {w:?}")))?);
            }
        }
    }
    Ok(sets)
}

/// One `bench-phase=NAME calls=N begin=0x.. end=0x..` line: the phase's name, its calls and the
/// codes of the two debug-port marks that bracket it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseLine {
    /// The phase's name (the `bench=` or `bench-samples=` name it measures).
    pub name: String,
    /// Calls made between the two marks.
    pub calls: u64,
    /// The first mark's code.
    pub begin: u32,
    /// The second mark's code.
    pub end: u32,
}

impl PhaseLine {
    /// Parses a line that starts (after whitespace) with `bench-phase=`: `None` for any other line,
    /// an error for one without a name, a `calls=` of at least 1, a hex `begin=` and `end=`.
    pub fn parse(line: &str) -> Option<Result<PhaseLine, LineError>> {
        let rest = line.trim().strip_prefix("bench-phase=")?;
        let mut words = rest.split_whitespace();
        let name = words.next().unwrap_or("");
        let (mut calls, mut begin, mut end) = (None, None, None);
        for w in words {
            let hex = |v: &str| u32::from_str_radix(v.trim_start_matches("0x"), 16).ok();
            match w.split_once('=') {
                Some(("calls", v)) => calls = v.parse().ok(),
                Some(("begin", v)) => begin = hex(v),
                Some(("end", v)) => end = hex(v),
                _ => {}
            }
        }
        Some(match (calls, begin, end) {
            (Some(calls), Some(begin), Some(end)) if !name.is_empty() && calls > 0 => {
                Ok(PhaseLine { name: name.to_string(), calls, begin, end })
            }
            _ => Err(LineError(format!("malformed phase line: {line:?}"))),
        })
    }
}

impl fmt::Display for PhaseLine {
    /// `bench-phase=NAME calls=N begin=0x.. end=0x..`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bench-phase={} calls={} begin={:#x} end={:#x}", self.name, self.calls, self.begin, self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "bench=forward-echo-poll n=1000 p50_ns=96012 p90_ns=1529742 p99_ns=1883137 p999_ns=6257234 \
                        mean_ns=305742 p50_cycles=249262 p99_cycles=4888884 tsc_khz=2596138";

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut s: Vec<u64> = (1..=1000).rev().collect();
        let x = Summary::of(&mut s).expect("samples");
        assert_eq!((x.n, x.p50, x.p90, x.p99, x.p999, x.mean), (1000, 500, 900, 990, 999, 500));
        let mut one = [7];
        let x = Summary::of(&mut one).expect("one sample");
        assert_eq!((x.p50, x.p999, x.mean), (7, 7, 7));
        assert_eq!(Summary::of(&mut []), None);
        assert_eq!(x.line("t", 1_000_000).split(' ').next(), Some("bench=t"));
        assert_eq!(cycles_to_ns(3_000, 3_000_000), 1_000);
        let one = Summary::of(&mut [3_000]).expect("one sample").at(3_000_000);
        assert_eq!((one.n, one.p50_ns, one.p999_ns, one.mean_ns), (1, 1_000, 1_000, 1_000));
        assert_eq!(nearest_rank(&[], 500, 1000), 0);
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 500, 1000), 2);
        assert_eq!(nearest_rank(&[1, 2, 3, 4], 501, 1000), 3);
    }

    #[test]
    fn hvm_writes_its_line_as_it_always_has() {
        let x = Summary { n: 1000, p50: 2_000, p90: 3_000, p99: 4_000, p999: 5_000, mean: 2_500 };
        assert_eq!(
            x.line("null", 2_000_000),
            "bench=null n=1000 p50_ns=1000 p90_ns=1500 p99_ns=2000 p999_ns=2500 mean_ns=1250 p50_cycles=2000 p99_cycles=4000 tsc_khz=2000000"
        );
    }

    #[test]
    fn bench_lines_round_trip() {
        let mut samples: Vec<u64> = (0..777u64).map(|i| (i * 7919) % 1013 + 100).collect();
        let x = Summary::of(&mut samples).expect("samples");
        let all = x.at(2_596_138);
        let back = BenchLine::parse(&all.write("rt")).expect("a bench= line");
        assert_eq!(back.name, "rt");
        assert_eq!(back.summary(), Ok(all));
        // hvm's line leaves three cycle values out; everything it writes comes back.
        let back = BenchLine::parse(&x.line("hvm", 2_596_138)).expect("a bench= line");
        let want = LineSummary { p90_cycles: None, p999_cycles: None, mean_cycles: None, ..all };
        assert_eq!(back.summary(), Ok(want));
        // Only the required values.
        let bare = LineSummary { p50_cycles: None, p99_cycles: None, tsc_khz: None, ..want };
        assert_eq!(BenchLine::parse(&bare.write("b")).map(|l| l.summary()), Some(Ok(bare)));
        // A parsed line writes back to itself.
        let parsed = BenchLine::parse(LINE).expect("a bench= line").summary().expect("a summary");
        assert_eq!(parsed.write("forward-echo-poll"), LINE.split_whitespace().collect::<Vec<_>>().join(" "));
    }

    #[test]
    fn parses_bench_lines() {
        let console = format!("noise\n  {LINE}\nbench=x n=1\nbench=\nbench=x n=2 junk\n");
        let lines = parse_console(&console);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines.get("x").and_then(|l| l.get("n")), Some("2"));
        let l = lines.get("forward-echo-poll").expect("the line");
        let s = l.summary().expect("a summary");
        assert_eq!((s.n, s.p50_ns, s.p999_ns, s.mean_ns), (1000, 96012, 6257234, 305742));
        assert_eq!((s.p50_cycles, s.p90_cycles, s.p99_cycles, s.tsc_khz), (Some(249262), None, Some(4888884), Some(2596138)));
        assert_eq!(l.number("p99_ns"), Some(1883137.0));
        let bad = BenchLine::parse("bench=y n=1 p50_ns=abc").expect("a bench= line");
        let e = bad.summary().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("p50_ns=abc"), "{e}");
        let missing = BenchLine::parse("bench=y n=1").expect("a bench= line");
        assert!(missing.summary().is_err());
        let zero = BenchLine::parse("bench=z n=1 p50_ns=1 p90_ns=1 p99_ns=1 p999_ns=1 mean_ns=1 tsc_khz=0").expect("a line");
        assert_eq!(zero.summary().map(|s| s.tsc_khz), Ok(None));
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

    #[test]
    fn sample_lines_round_trip() {
        let samples: Vec<u64> = (0..200u64).map(|i| i * i).collect();
        let mut text = sample_lines("a", 2_000_000, &samples).join("\n");
        text.push_str("\nnoise\n");
        text.push_str(&sample_lines("b", 3, &[9]).join("\n"));
        let sets = parse_sample_lines(&text).expect("sample lines");
        assert_eq!(sets.get("a"), Some(&SampleSet { cycles: samples, tsc_khz: 2_000_000 }));
        assert_eq!(sets.get("b"), Some(&SampleSet { cycles: vec![9], tsc_khz: 3 }));
    }

    #[test]
    fn parses_sample_lines_in_chunks() {
        let text = "bench-samples=a tsc_khz=1000000 5 6\nother\nbench-samples=a 7\nbench-samples=b tsc_khz=2000000 4\n";
        let m = parse_sample_lines(text).expect("sample lines");
        assert_eq!(m.get("a").map(|s| (s.cycles.as_slice(), s.tsc_khz)), Some((&[5, 6, 7][..], 1_000_000)));
        assert_eq!(m.get("b").map(|s| (s.cycles.as_slice(), s.tsc_khz)), Some((&[4][..], 2_000_000)));
        assert!(parse_sample_lines("bench-samples=a tsc_khz=1 x").is_err());
        assert!(parse_sample_lines("bench-samples=a tsc_khz=x 1").is_err());
        assert_eq!(parse_sample_lines("bench-samples=a 5").map(|m| m.get("a").map(|s| s.tsc_khz)), Ok(Some(0)), "no tsc_khz");
    }

    #[test]
    fn phase_lines_round_trip() {
        let p = PhaseLine { name: "forward-echo-poll".into(), calls: 1000, begin: 0x1000, end: 0x1001 };
        let line = p.to_string();
        assert_eq!(line, "bench-phase=forward-echo-poll calls=1000 begin=0x1000 end=0x1001");
        assert_eq!(PhaseLine::parse(&line), Some(Ok(p)));
        assert_eq!(PhaseLine::parse("bench=a n=1"), None);
        for bad in ["bench-phase=a calls=0 begin=0x1000 end=0x1001", "bench-phase=a begin=0x1000", "bench-phase= calls=1 begin=1 end=2"] {
            assert!(matches!(PhaseLine::parse(bad), Some(Err(_))), "{bad}");
        }
    }
}
