//! How duet's micro-benchmarks report: [`Summary`] percentiles from raw [`Samples`] or from the
//! in-guest tool's `bench=` lines, a versioned JSON [`Report`] (schema [`SCHEMA`]), a latency-CDF SVG
//! ([`svg::cdf_svg`]) and an A/B comparison ([`compare`]). See `docs/benchmarks.md`, "Reports".

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub mod compare;
mod phases;
mod summary;
pub mod svg;

pub use phases::{phase_counts, KvmPerCall};
pub use summary::{cycles_to_ns, parse_console, parse_sample_lines, BenchLine, Samples, Summary};

/// The schema string every report carries; a reader refuses any other.
pub const SCHEMA: &str = "duet-bench/1";

/// What can go wrong building, reading or writing a report.
#[derive(Debug)]
pub enum ReportError {
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not JSON, or not a report's shape.
    Json(String),
    /// The report's `schema` is not [`SCHEMA`] (`None`: it has none).
    Schema(Option<String>),
    /// A sample set, or a set of series to plot, is empty.
    NoSamples,
    /// Anything else wrong with the input, said in words.
    Invalid(String),
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReportError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            ReportError::Json(e) => write!(f, "not a benchmark report: {e}"),
            ReportError::Schema(Some(s)) => write!(f, "schema {s:?} is not {SCHEMA:?}"),
            ReportError::Schema(None) => write!(f, "no \"schema\" field (expected {SCHEMA:?})"),
            ReportError::NoSamples => f.write_str("no samples"),
            ReportError::Invalid(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for ReportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReportError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Where a report's numbers were taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    /// The host's KVM module (`kvm_intel`, `kvm_amd`, `kvm_pvm`, `unknown`).
    pub kvm_flavor: String,
    /// The host CPU's model name.
    pub cpu_model: String,
    /// vCPU placement in words, e.g. "ROS 1 vCPU + HRT 2 vCPUs".
    pub placement: String,
    /// When the report was made, UTC, RFC 3339 (`2026-11-24T04:10:00Z`).
    pub date: String,
    /// `git rev-parse --short HEAD` of the tree that ran, if known.
    pub git_rev: Option<String>,
}

impl Environment {
    /// This host's environment: the given KVM flavor and placement, the CPU model from
    /// `/proc/cpuinfo`, the time now and the repository's git revision.
    pub fn detect(flavor: vmm::KvmFlavor, placement: impl Into<String>) -> Self {
        let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Environment {
            kvm_flavor: flavor.module().to_string(),
            cpu_model: vmm::cpu_model(),
            placement: placement.into(),
            date: rfc3339_utc(secs),
            git_rev: git_rev(&crate::repo_root()),
        }
    }
}

/// `git rev-parse --short HEAD` in `dir`, if git is there and it is a repository.
pub fn git_rev(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git").arg("-C").arg(dir).args(["rev-parse", "--short", "HEAD"]).output().ok()?;
    let rev = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !rev.is_empty()).then_some(rev)
}

/// Seconds since the Unix epoch as an RFC 3339 UTC time.
pub fn rfc3339_utc(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (H. Hinnant's algorithm), for days since 1970-01-01 (non-negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// One benchmark's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// Short name, unique in its report (matched by `bench-compare`).
    pub name: String,
    /// What it measures, in words.
    pub what: String,
    /// Its percentiles.
    #[serde(flatten)]
    pub summary: Summary,
    /// VM exits per call, where known: measured (both partitions' vCPUs, from KVM's statistics,
    /// see `kvm`) or, where the host has no stats fd, by construction.
    #[serde(default)]
    pub exits_per_call: Option<f64>,
    /// KVM's counters per call over the phase that measured this, per partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kvm: Option<KvmPerCall>,
    /// The raw samples in TSC cycles (at `tsc_khz`), where kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples_cycles: Option<Vec<u64>>,
}

impl BenchResult {
    /// A result from a summary alone (no raw samples).
    pub fn new(name: impl Into<String>, what: impl Into<String>, summary: Summary) -> Self {
        BenchResult { name: name.into(), what: what.into(), summary, exits_per_call: None, kvm: None, samples_cycles: None }
    }

    /// A result from raw samples: their summary, and the samples kept for the CDF.
    pub fn from_samples(name: impl Into<String>, what: impl Into<String>, samples: &Samples) -> Self {
        BenchResult { samples_cycles: Some(samples.cycles().to_vec()), ..Self::new(name, what, samples.summary()) }
    }

    /// Sets the VM exits per call.
    pub fn with_exits_per_call(mut self, exits: f64) -> Self {
        self.exits_per_call = Some(exits);
        self
    }

    /// The raw samples as a [`Samples`] set, if the result kept them with a TSC frequency.
    pub fn samples(&self) -> Option<Samples> {
        Samples::new(self.samples_cycles.clone()?, self.summary.tsc_khz?).ok()
    }
}

/// A versioned benchmark report: `{ "schema": "duet-bench/1", "bench", "environment", "results",
/// "baselines" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`SCHEMA`].
    pub schema: String,
    /// Which benchmark program made it (`hvm`, `forward`, ...).
    pub bench: String,
    /// Where it ran.
    pub environment: Environment,
    /// The results, in table order.
    pub results: Vec<BenchResult>,
    /// Names of the results that are baselines of the same run.
    #[serde(default)]
    pub baselines: Vec<String>,
}

impl Report {
    /// An empty report of the current schema.
    pub fn new(bench: impl Into<String>, environment: Environment) -> Self {
        Report { schema: SCHEMA.to_string(), bench: bench.into(), environment, results: Vec::new(), baselines: Vec::new() }
    }

    /// Adds a result.
    pub fn push(&mut self, result: BenchResult) {
        self.results.push(result);
    }

    /// Adds a result and marks it a baseline.
    pub fn push_baseline(&mut self, result: BenchResult) {
        self.baselines.push(result.name.clone());
        self.results.push(result);
    }

    /// The result called `name`.
    pub fn get(&self, name: &str) -> Option<&BenchResult> {
        self.results.iter().find(|r| r.name == name)
    }

    /// The report as pretty-printed JSON (with a final newline).
    pub fn to_json(&self) -> Result<String, ReportError> {
        serde_json::to_string_pretty(self).map(|s| s + "\n").map_err(|e| ReportError::Json(e.to_string()))
    }

    /// Reads a report from JSON: the schema must be [`SCHEMA`], result names unique, and every
    /// baseline a result.
    pub fn from_json(text: &str) -> Result<Self, ReportError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| ReportError::Json(e.to_string()))?;
        match value.get("schema") {
            Some(serde_json::Value::String(s)) if s == SCHEMA => {}
            Some(serde_json::Value::String(s)) => return Err(ReportError::Schema(Some(s.clone()))),
            Some(other) => return Err(ReportError::Schema(Some(other.to_string()))),
            None => return Err(ReportError::Schema(None)),
        }
        let report: Report = serde_json::from_value(value).map_err(|e| ReportError::Json(e.to_string()))?;
        for (i, r) in report.results.iter().enumerate() {
            if report.results[..i].iter().any(|o| o.name == r.name) {
                return Err(ReportError::Invalid(format!("two results are called {:?}", r.name)));
            }
        }
        if let Some(b) = report.baselines.iter().find(|b| report.get(b).is_none()) {
            return Err(ReportError::Invalid(format!("baseline {b:?} is not a result")));
        }
        Ok(report)
    }

    /// Reads a report file.
    pub fn load(path: &Path) -> Result<Self, ReportError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io { path: path.to_path_buf(), source })?;
        Self::from_json(&text).map_err(|e| match e {
            ReportError::Io { .. } => e,
            other => ReportError::Invalid(format!("{}: {other}", path.display())),
        })
    }

    /// Writes the report as JSON to `path`, creating its directory.
    pub fn write(&self, path: &Path) -> Result<(), ReportError> {
        let io = |source| ReportError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        std::fs::write(path, self.to_json()?).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment {
            kvm_flavor: "kvm_pvm".into(),
            cpu_model: "AMD EPYC".into(),
            placement: "ROS 1 vCPU + HRT 2 vCPUs".into(),
            date: rfc3339_utc(0),
            git_rev: None,
        }
    }

    fn sample_report() -> Report {
        let mut r = Report::new("forward", env());
        let s = Samples::new(vec![300, 100, 200, 1_000_000], 2_000_000).unwrap_or_else(|e| unreachable!("{e}"));
        r.push_baseline(BenchResult::from_samples("pingpong", "cache-line ping-pong", &s).with_exits_per_call(0.0));
        let line = BenchLine::parse("bench=echo n=3 p50_ns=5 p90_ns=6 p99_ns=7 p999_ns=8 mean_ns=6").unwrap_or_else(|| unreachable!());
        r.push(BenchResult::new("echo", "echo \"quoted\" µs", Summary::from_line(&line).unwrap_or_else(|e| unreachable!("{e}"))));
        r
    }

    #[test]
    fn json_round_trips() {
        let r = sample_report();
        let text = r.to_json().unwrap_or_else(|e| unreachable!("{e}"));
        assert!(text.contains("\"schema\": \"duet-bench/1\""), "{text}");
        assert!(text.contains("\"p50_cycles\": null"), "unknown cycles are explicit: {text}");
        assert_eq!(text.matches("samples_cycles").count(), 1, "omitted where none");
        let back = Report::from_json(&text).unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(back, r);
        assert_eq!(back.get("pingpong").and_then(BenchResult::samples).map(|s| s.summary().p50_ns), Some(100));
        assert_eq!(back.get("pingpong").map(|x| x.summary.p999_ns), Some(500_000));
    }

    #[test]
    fn reading_refuses_other_schemas_and_bad_reports() {
        let text = sample_report().to_json().unwrap_or_else(|e| unreachable!("{e}"));
        let err = |t: &str| Report::from_json(t).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(&text.replace("duet-bench/1", "duet-bench/2")).contains("\"duet-bench/2\" is not"));
        assert!(err("{\"bench\": 1}").contains("no \"schema\""));
        assert!(err("{").starts_with("not a benchmark report"));
        assert!(err("{\"schema\": \"duet-bench/1\"}").starts_with("not a benchmark report"));
        assert!(err(&text.replace("\"echo\"", "\"pingpong\"")).contains("two results"));
        assert!(err(&text.replace("\"pingpong\"", "\"pp\"").replacen("\"pp\"", "\"pingpong\"", 1)).contains("baseline"));
    }

    #[test]
    fn dates_are_utc_rfc3339() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_795_489_815), "2026-11-24T03:10:15Z");
    }
}
