//! A/B comparison of two reports (`bench-compare A.json B.json [--threshold PCT]`): results matched
//! by name, p50 and p99 side by side, and a regression flagged only where B's p50 is worse than A's by
//! more than the threshold *and* more than A's own p50→p90 spread (the noise estimate).

use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use super::{Report, Summary};

/// The default threshold, percent of A's p50.
pub const DEFAULT_THRESHOLD_PCT: f64 = 10.0;

/// How much B's p50 may exceed A's before it is a regression: `max(threshold% of A.p50,
/// A.p90 − A.p50)`, in ns.
pub fn allowance_ns(a: &Summary, threshold_pct: f64) -> f64 {
    let spread = a.p90_ns.saturating_sub(a.p50_ns) as f64;
    (threshold_pct / 100.0 * a.p50_ns as f64).max(spread)
}

/// Whether B regressed against A: `B.p50 > A.p50 + allowance_ns(A)`.
pub fn is_regression(a: &Summary, b: &Summary, threshold_pct: f64) -> bool {
    b.p50_ns as f64 > a.p50_ns as f64 + allowance_ns(a, threshold_pct)
}

/// Whether B improved on A by the same rule turned round: `B.p50 < A.p50 − allowance_ns(A)`.
pub fn is_improvement(a: &Summary, b: &Summary, threshold_pct: f64) -> bool {
    (b.p50_ns as f64) < a.p50_ns as f64 - allowance_ns(a, threshold_pct)
}

/// A duration in ns in the unit that suits it: `950 ns`, `1.50 µs`, `16.79 ms`, `1.20 s`.
pub fn fmt_ns(ns: u64) -> String {
    let v = ns as f64;
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.2} µs", v / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} ms", v / 1e6),
        _ => format!("{:.2} s", v / 1e9),
    }
}

/// `(b − a) / a` in percent (`None` when a is 0).
fn change_pct(a: u64, b: u64) -> Option<f64> {
    (a > 0).then(|| (b as f64 - a as f64) / a as f64 * 100.0)
}

/// One result present in both reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The result's name.
    pub name: String,
    /// A's summary.
    pub a: Summary,
    /// B's summary.
    pub b: Summary,
    /// B's p50 is a regression.
    pub regression: bool,
    /// B's p50 is an improvement beyond the noise.
    pub improvement: bool,
}

/// The comparison of two reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Results in both, in A's order.
    pub rows: Vec<Row>,
    /// Names only A has.
    pub only_a: Vec<String>,
    /// Names only B has.
    pub only_b: Vec<String>,
    /// Differences between the two environments that make the comparison doubtful (KVM flavor, CPU).
    pub warnings: Vec<String>,
}

/// Compares B against A at `threshold_pct`.
pub fn compare(a: &Report, b: &Report, threshold_pct: f64) -> Comparison {
    let rows = a
        .results
        .iter()
        .filter_map(|ra| {
            let rb = b.get(&ra.name)?;
            Some(Row {
                name: ra.name.clone(),
                a: ra.summary,
                b: rb.summary,
                regression: is_regression(&ra.summary, &rb.summary, threshold_pct),
                improvement: is_improvement(&ra.summary, &rb.summary, threshold_pct),
            })
        })
        .collect();
    let missing = |x: &Report, y: &Report| x.results.iter().filter(|r| y.get(&r.name).is_none()).map(|r| r.name.clone()).collect();
    let (ea, eb) = (&a.environment, &b.environment);
    let mut warnings = Vec::new();
    if ea.kvm_flavor != eb.kvm_flavor {
        warnings.push(format!("KVM flavors differ: A {} vs B {}", ea.kvm_flavor, eb.kvm_flavor));
    }
    if ea.cpu_model != eb.cpu_model {
        warnings.push(format!("CPUs differ: A {} vs B {}", ea.cpu_model, eb.cpu_model));
    }
    Comparison { rows, only_a: missing(a, b), only_b: missing(b, a), warnings }
}

impl Comparison {
    /// How many rows regressed.
    pub fn regressions(&self) -> usize {
        self.rows.iter().filter(|r| r.regression).count()
    }

    /// A Markdown table of the rows, then the unmatched names and warnings.
    pub fn table(&self, threshold_pct: f64) -> String {
        let pct = |v: Option<f64>| v.map_or("—".to_string(), |p| format!("{p:+.1}%"));
        let mut o = String::new();
        o.push_str("| result | p50 A | p50 B | p50 Δ | p99 A | p99 B | p99 Δ | verdict |\n|---|---|---|---|---|---|---|---|\n");
        for r in &self.rows {
            let verdict = if r.regression {
                "REGRESSION"
            } else if r.improvement {
                "faster"
            } else {
                "ok"
            };
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} | {verdict} |",
                r.name,
                fmt_ns(r.a.p50_ns),
                fmt_ns(r.b.p50_ns),
                pct(change_pct(r.a.p50_ns, r.b.p50_ns)),
                fmt_ns(r.a.p99_ns),
                fmt_ns(r.b.p99_ns),
                pct(change_pct(r.a.p99_ns, r.b.p99_ns)),
            );
        }
        let _ = writeln!(
            o,
            "\nregression: B p50 > A p50 + max({threshold_pct}% of A p50, A p90 − A p50); {} of {} results regressed",
            self.regressions(),
            self.rows.len()
        );
        for (names, side) in [(&self.only_a, "A"), (&self.only_b, "B")] {
            if !names.is_empty() {
                let _ = writeln!(o, "only in {side}: {}", names.join(", "));
            }
        }
        for w in &self.warnings {
            let _ = writeln!(o, "warning: {w}");
        }
        o
    }
}

const USAGE: &str = "usage: bench-compare A.json B.json [--threshold PCT]  (default 10)";

/// The command line of `bench-compare` (without the program name). Returns the exit status: 0 no
/// regression, 1 a regression, 2 bad usage or input (missing file, bad JSON, wrong schema).
pub fn cli(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let mut files = Vec::new();
    let mut threshold = DEFAULT_THRESHOLD_PCT;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = if arg == "--threshold" {
            it.next().map(String::as_str)
        } else if let Some(v) = arg.strip_prefix("--threshold=") {
            Some(v)
        } else if arg == "-h" || arg == "--help" {
            let _ = writeln!(out, "{USAGE}");
            return 0;
        } else if arg.starts_with("--") {
            let _ = writeln!(err, "bench-compare: unknown option {arg}\n{USAGE}");
            return 2;
        } else {
            files.push(arg.as_str());
            continue;
        };
        match value.and_then(|v| v.trim_end_matches('%').parse::<f64>().ok()).filter(|t| t.is_finite() && *t >= 0.0) {
            Some(t) => threshold = t,
            None => {
                let _ = writeln!(err, "bench-compare: --threshold needs a percentage ≥ 0\n{USAGE}");
                return 2;
            }
        }
    }
    let [a, b] = files[..] else {
        let _ = writeln!(err, "bench-compare: need exactly two report files\n{USAGE}");
        return 2;
    };
    let load = |p: &str| Report::load(Path::new(p));
    let (ra, rb) = match (load(a), load(b)) {
        (Ok(ra), Ok(rb)) => (ra, rb),
        (Err(e), _) | (_, Err(e)) => {
            let _ = writeln!(err, "bench-compare: {e}");
            return 2;
        }
    };
    let c = compare(&ra, &rb, threshold);
    if c.rows.is_empty() {
        let _ = writeln!(err, "bench-compare: {a} and {b} have no result names in common");
        return 2;
    }
    let _ = writeln!(out, "A: {a} ({}, {}, {})", ra.bench, ra.environment.date, ra.environment.git_rev.as_deref().unwrap_or("no git rev"));
    let _ = writeln!(out, "B: {b} ({}, {}, {})\n", rb.bench, rb.environment.date, rb.environment.git_rev.as_deref().unwrap_or("no git rev"));
    let _ = write!(out, "{}", c.table(threshold));
    i32::from(c.regressions() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{BenchResult, Environment};

    fn s(p50: u64, p90: u64) -> Summary {
        Summary { p50_ns: p50, p90_ns: p90, p99_ns: p90 * 2, ..Summary::single_ns(p50) }
    }

    #[test]
    fn regression_needs_threshold_and_noise() {
        // Tight A (spread 2%): the 10% threshold decides.
        assert!(!is_regression(&s(1000, 1020), &s(1100, 1100), 10.0));
        assert!(is_regression(&s(1000, 1020), &s(1101, 1101), 10.0));
        // Noisy A (spread 50%): 20% slower is within the noise.
        assert!(!is_regression(&s(1000, 1500), &s(1200, 1200), 10.0));
        assert!(is_regression(&s(1000, 1500), &s(1501, 1600), 10.0));
        // Threshold 0 and no spread: any slowdown counts.
        assert!(is_regression(&s(1000, 1000), &s(1001, 1001), 0.0));
        assert!(is_improvement(&s(1000, 1020), &s(899, 899), 10.0) && !is_improvement(&s(1000, 1020), &s(900, 900), 10.0));
        assert!(!is_regression(&s(0, 0), &s(0, 0), 10.0));
        assert_eq!(change_pct(0, 5), None);
        assert_eq!([950, 1_500, 16_794_176, 1_200_000_000].map(fmt_ns), ["950 ns", "1.50 µs", "16.79 ms", "1.20 s"]);
    }

    fn report(name: &str, flavor: &str, rows: &[(&str, u64, u64)]) -> Report {
        let env = Environment {
            kvm_flavor: flavor.into(),
            cpu_model: "cpu".into(),
            placement: "p".into(),
            date: "2026-11-24T00:00:00Z".into(),
            git_rev: Some(name.into()),
        };
        let mut r = Report::new("t", env);
        for (n, p50, p90) in rows {
            r.push(BenchResult::new(*n, "w", s(*p50, *p90)));
        }
        r
    }

    #[test]
    fn compare_matches_by_name() {
        let a = report("a", "kvm_amd", &[("x", 1000, 1010), ("y", 1000, 1010), ("gone", 1, 1)]);
        let b = report("b", "kvm_pvm", &[("new", 1, 1), ("y", 1500, 1500), ("x", 1000, 1000)]);
        let c = compare(&a, &b, 10.0);
        assert_eq!(c.rows.iter().map(|r| (r.name.as_str(), r.regression)).collect::<Vec<_>>(), [("x", false), ("y", true)]);
        assert_eq!((c.only_a.as_slice(), c.only_b.as_slice()), (&["gone".to_string()][..], &["new".to_string()][..]));
        let t = c.table(10.0);
        assert!(t.contains("| y | 1.00 µs | 1.50 µs | +50.0% |") && t.contains("REGRESSION"), "{t}");
        assert!(t.contains("only in A: gone") && t.contains("warning: KVM flavors differ"), "{t}");
    }

    /// Runs the command line with files written to a fresh temporary directory.
    fn run(files: &[(&str, String)], args: &[&str]) -> (i32, String, String) {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("duet-bench-compare-{}-{n}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        for (name, text) in files {
            let _ = std::fs::write(dir.join(name), text);
        }
        let args: Vec<String> =
            args.iter().map(|a| if a.ends_with(".json") { dir.join(a).display().to_string() } else { a.to_string() }).collect();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = cli(&args, &mut out, &mut err);
        let _ = std::fs::remove_dir_all(&dir);
        (code, String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned())
    }

    #[test]
    fn cli_exit_statuses() {
        let json = |r: Report| r.to_json().unwrap_or_default();
        let a = json(report("a", "kvm_amd", &[("x", 1000, 1010)]));
        let slower = json(report("b", "kvm_amd", &[("x", 1150, 1160)]));
        let same = json(report("b", "kvm_amd", &[("x", 1050, 1060)]));
        let (code, out, _) = run(&[("a.json", a.clone()), ("b.json", slower.clone())], &["a.json", "b.json"]);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("REGRESSION"));
        assert_eq!(run(&[("a.json", a.clone()), ("b.json", slower.clone())], &["a.json", "b.json", "--threshold", "20"]).0, 0);
        assert_eq!(run(&[("a.json", a.clone()), ("b.json", slower)], &["--threshold=14.9%", "a.json", "b.json"]).0, 1);
        assert_eq!(run(&[("a.json", a.clone()), ("b.json", same)], &["a.json", "b.json"]).0, 0);

        let (code, _, err) = run(&[("a.json", a.clone())], &["a.json", "missing.json"]);
        assert!(code == 2 && err.contains("missing.json"), "{err}");
        let (code, _, err) = run(&[("a.json", a.clone()), ("b.json", "{ nope".into())], &["a.json", "b.json"]);
        assert!(code == 2 && err.contains("not a benchmark report"), "{err}");
        let (code, _, err) = run(&[("a.json", a.clone()), ("b.json", a.replace("duet-bench/1", "x/9"))], &["a.json", "b.json"]);
        assert!(code == 2 && err.contains("schema \"x/9\""), "{err}");
        let other = json(report("b", "kvm_amd", &[("z", 1, 1)]));
        let (code, _, err) = run(&[("a.json", a.clone()), ("b.json", other)], &["a.json", "b.json"]);
        assert!(code == 2 && err.contains("no result names in common"), "{err}");
        assert_eq!(run(&[], &["a.json"]).0, 2);
        assert_eq!(run(&[], &["a.json", "b.json", "--threshold", "-1"]).0, 2);
        assert_eq!(run(&[], &["a.json", "b.json", "--threshold"]).0, 2);
        assert_eq!(run(&[], &["--bogus"]).0, 2);
        assert_eq!(run(&[], &["--help"]).0, 0);
    }
}
