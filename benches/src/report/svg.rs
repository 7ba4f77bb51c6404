//! A latency CDF as hand-written SVG: one line per series, x log-scale ns with decade ticks, y 0–1,
//! legend and title. No plotting crate: the output is a few dozen elements and must be byte-for-byte
//! deterministic, which plain `format!` gives.

use std::fmt::Write as _;

use super::{Report, ReportError};

/// One line of the plot: a name and its samples in ns (any order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Samples, ns.
    pub ns: Vec<u64>,
}

const W: f64 = 800.0;
const PLOT_H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const LEGEND_ROW: f64 = 20.0;
/// Longest title kept on one line.
const TITLE_CHARS: usize = 90;
/// Most points drawn per series (evenly spaced ranks; the last sample always drawn).
const MAX_POINTS: usize = 1000;
const COLORS: [&str; 10] =
    ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

/// Escapes text for SVG content and attribute values.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

/// `10^d` ns in words: `1 ns`, `10 µs`, `100 ms`, `1 s`, `1000 s`.
fn decade_label(d: u32) -> String {
    let (unit, base) = match d {
        0..=2 => ("ns", 0),
        3..=5 => ("µs", 3),
        6..=8 => ("ms", 6),
        _ => ("s", 9),
    };
    format!("{} {unit}", 10u64.saturating_pow(d - base))
}

/// The CDF of every result of `report` that kept raw samples (and a TSC frequency), titled with the
/// report's bench name, KVM flavor and CPU; an error if none did.
pub fn report_cdf_svg(report: &Report) -> Result<String, ReportError> {
    report_cdf_svg_of(report, "latency CDF", |_| true)
}

/// As [`report_cdf_svg`], for the results whose name `pick` accepts, titled `what`.
pub fn report_cdf_svg_of(report: &Report, what: &str, pick: impl Fn(&str) -> bool) -> Result<String, ReportError> {
    let series: Vec<Series> = report
        .results
        .iter()
        .filter(|r| pick(&r.name))
        .filter_map(|r| r.samples().map(|s| Series { name: r.name.clone(), ns: s.sorted_ns() }))
        .collect();
    if series.is_empty() {
        return Err(ReportError::Invalid(
            "nothing to plot: no result has raw samples (samples_cycles with tsc_khz)".into(),
        ));
    }
    let e = &report.environment;
    let title = format!("{}: {what} ({}, {}, {})", report.bench, e.kvm_flavor, e.cpu_model, e.placement);
    cdf_svg(&title, &series)
}

/// A latency CDF of `series` as an SVG document; an error if there are no series or one is empty.
pub fn cdf_svg(title: &str, series: &[Series]) -> Result<String, ReportError> {
    if series.is_empty() {
        return Err(ReportError::Invalid("nothing to plot: no series".into()));
    }
    if let Some(s) = series.iter().find(|s| s.ns.is_empty()) {
        return Err(ReportError::Invalid(format!("nothing to plot for {:?}: no samples", s.name)));
    }
    let sorted: Vec<Vec<u64>> = series
        .iter()
        .map(|s| {
            let mut v: Vec<u64> = s.ns.iter().map(|&x| x.max(1)).collect();
            v.sort_unstable();
            v
        })
        .collect();
    let lo = sorted.iter().filter_map(|v| v.first()).min().copied().unwrap_or(1);
    let hi = sorted.iter().filter_map(|v| v.last()).max().copied().unwrap_or(1);
    // Decades: 10^dmin <= lo, hi <= 10^dmax, at least one decade wide.
    let dmin = lo.ilog10();
    let mut dmax = hi.ilog10();
    if 10u64.checked_pow(dmax).is_some_and(|p| p < hi) {
        dmax += 1;
    }
    if dmax == dmin {
        dmax += 1;
    }
    let plot_w = W - LEFT - RIGHT;
    let x = |ns: u64| LEFT + ((ns as f64).log10() - f64::from(dmin)) / f64::from(dmax - dmin) * plot_w;
    let y = |frac: f64| TOP + (1.0 - frac) * PLOT_H;
    let bottom = TOP + PLOT_H;
    let height = bottom + 50.0 + LEGEND_ROW * series.len() as f64 + 10.0;

    let mut o = String::new();
    // `write!` to a String cannot fail.
    let _ = writeln!(
        o,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {W:.0} {height:.0}\" \
         font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(o, "<rect x=\"0\" y=\"0\" width=\"{W:.0}\" height=\"{height:.0}\" fill=\"white\"/>");
    // A long title goes on two lines, split before its parenthesis (the environment).
    match title.split_once(" (").filter(|_| title.chars().count() > TITLE_CHARS) {
        Some((head, rest)) => {
            let _ = writeln!(o, "<text x=\"{:.1}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{}</text>", W / 2.0, esc(head));
            let _ = writeln!(o, "<text x=\"{:.1}\" y=\"38\" text-anchor=\"middle\" font-size=\"11\">({}</text>", W / 2.0, esc(rest));
        }
        None => {
            let _ = writeln!(o, "<text x=\"{:.1}\" y=\"25\" text-anchor=\"middle\" font-size=\"14\">{}</text>", W / 2.0, esc(title));
        }
    }
    // Grid and ticks: x decades, y quarters.
    for d in dmin..=dmax {
        let px = x(10u64.saturating_pow(d));
        let _ = writeln!(o, "<line x1=\"{px:.1}\" y1=\"{TOP:.1}\" x2=\"{px:.1}\" y2=\"{bottom:.1}\" stroke=\"#ddd\"/>");
        let _ = writeln!(o, "<text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>", bottom + 16.0, decade_label(d));
    }
    for q in 0..=4 {
        let frac = f64::from(q) / 4.0;
        let py = y(frac);
        let _ = writeln!(o, "<line x1=\"{LEFT:.1}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#ddd\"/>", W - RIGHT);
        let _ = writeln!(o, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{frac:.2}</text>", LEFT - 6.0, py + 4.0);
    }
    let _ = writeln!(o, "<rect x=\"{LEFT:.1}\" y=\"{TOP:.1}\" width=\"{plot_w:.1}\" height=\"{PLOT_H:.1}\" fill=\"none\" stroke=\"black\"/>");
    let _ = writeln!(o, "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">latency (log scale)</text>", LEFT + plot_w / 2.0, bottom + 36.0);
    let _ = writeln!(
        o,
        "<text x=\"18\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 18 {:.1})\">fraction of calls ≤ x</text>",
        TOP + PLOT_H / 2.0,
        TOP + PLOT_H / 2.0
    );
    for (i, (s, v)) in series.iter().zip(&sorted).enumerate() {
        let color = COLORS[i % COLORS.len()];
        let n = v.len();
        let mut pts = format!("{:.1},{:.1}", x(v[0]), y(0.0));
        let count = n.min(MAX_POINTS);
        for k in 0..count {
            let idx = if count == n { k } else { k * (n - 1) / (count - 1).max(1) };
            let _ = write!(pts, " {:.1},{:.1}", x(v[idx]), y((idx + 1) as f64 / n as f64));
        }
        let _ = writeln!(o, "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" points=\"{pts}\"/>");
        let ly = bottom + 50.0 + LEGEND_ROW * i as f64;
        let _ = writeln!(o, "<line x1=\"{LEFT:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" stroke-width=\"3\"/>", LEFT + 24.0);
        let _ = writeln!(o, "<text x=\"{:.1}\" y=\"{:.1}\">{} (n={n})</text>", LEFT + 30.0, ly + 4.0, esc(&s.name));
    }
    o.push_str("</svg>\n");
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tags open and close in order (self-closing tags count as both).
    fn balanced(svg: &str) -> bool {
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = svg;
        while let Some(start) = rest.find('<') {
            let Some(end) = rest[start..].find('>') else { return false };
            let tag = &rest[start + 1..start + end];
            rest = &rest[start + end + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                if stack.pop() != Some(name.trim()) {
                    return false;
                }
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap_or(""));
            }
        }
        stack.is_empty()
    }

    fn series() -> Vec<Series> {
        vec![
            Series { name: "poll <echo>".into(), ns: (1..=5000).map(|i| 90_000 + i * 10).collect() },
            Series { name: "notify & co".into(), ns: vec![16_000_000, 17_000_000, 0, 30_000_000] },
        ]
    }

    #[test]
    fn cdf_is_well_formed_and_deterministic() {
        let svg = cdf_svg("t", &series()).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(svg.starts_with("<svg"));
        assert!(svg.ends_with("</svg>\n"));
        assert!(balanced(&svg), "{svg}");
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("poll &lt;echo&gt;") && svg.contains("notify &amp; co"));
        // 0 ns is drawn at 1 ns: decades 1 ns .. 100 ms.
        assert!(svg.contains(">1 ns<") && svg.contains(">100 ms<") && !svg.contains(">1 s<"));
        assert_eq!(svg, cdf_svg("t", &series()).unwrap_or_default());
        let points = svg.lines().find(|l| l.starts_with("<polyline")).map_or(0, |l| l.matches(',').count());
        assert_eq!(points, MAX_POINTS + 1);
    }

    #[test]
    fn one_value_still_gets_a_decade() {
        let svg = cdf_svg("t", &[Series { name: "a".into(), ns: vec![1000] }]).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(balanced(&svg) && svg.contains(">1 µs<") && svg.contains(">10 µs<"));
    }

    #[test]
    fn nothing_to_plot_is_an_error() {
        let msg = |r: Result<String, ReportError>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg(cdf_svg("t", &[])).contains("nothing to plot"));
        assert!(msg(cdf_svg("t", &[Series { name: "a".into(), ns: vec![] }])).contains("\"a\""));
        let env = crate::report::Environment {
            kvm_flavor: "kvm_amd".into(),
            cpu_model: "c".into(),
            placement: "p".into(),
            date: "d".into(),
            git_rev: None,
        };
        let mut r = Report::new("b", env);
        assert!(msg(report_cdf_svg(&r)).contains("no result has raw samples"));
        let s = crate::report::Samples::new(vec![10, 20, 30], 1_000_000).unwrap_or_else(|e| unreachable!("{e}"));
        r.push(crate::report::BenchResult::from_samples("x", "w", &s));
        let svg = report_cdf_svg(&r).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(svg.contains("b: latency CDF (kvm_amd, c, p)") && svg.matches("<polyline").count() == 1);
    }
}
