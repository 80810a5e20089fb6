//! Output: the console table, `GROUP.csv`, `GROUP.svg` and `report.md`.
//!
//! The CSV files are the source of truth: `report.md` and the charts are
//! regenerated from every `GROUP.csv` in the output directory after each run,
//! so running one group keeps the others' last results in the report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use crate::harness::Measurement;

/// The CSV header; tooling reads it, keep it exact.
pub const CSV_HEADER: &str = "case,impl,median_ns,min_ns,max_ns,samples";

/// The implementation every ratio is computed for (strata's time over the
/// peer's time; lower is better).
pub const SUBJECT: &str = "strata";

/// `target/strata-bench`: under `$CARGO_TARGET_DIR` when set (at run time,
/// else at compile time; a relative one is taken from the workspace root),
/// else under the workspace's `target/`.
pub fn out_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let root = root.canonicalize().unwrap_or(root);
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_TARGET_DIR").map(PathBuf::from))
        .map(|t| if t.is_absolute() { t } else { root.join(t) })
        .unwrap_or_else(|| root.join("target"));
    target.join("strata-bench")
}

/// Formats a time in ns with a precision that suits its size.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 10.0 {
        format!("{ns:.2}")
    } else if ns < 1000.0 {
        format!("{ns:.1}")
    } else {
        format!("{ns:.0}")
    }
}

/// Formats a time with a unit (ns, µs, ms, s), for chart labels.
pub fn fmt_time(ns: f64) -> String {
    let (v, unit) = if ns < 1e3 {
        (ns, "ns")
    } else if ns < 1e6 {
        (ns / 1e3, "µs")
    } else if ns < 1e9 {
        (ns / 1e6, "ms")
    } else {
        (ns / 1e9, "s")
    };
    let s = if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    };
    format!("{s} {unit}")
}

/// Console table header for a group.
pub fn table_header(group: &str, samples: usize) -> String {
    format!(
        "\n== {group} ({samples} samples per impl, median of time per op; ratio = {SUBJECT}/impl, lower is better) ==\n\
         {:<28} {:<13} {:>12} {:>11} {:>11} {:>12}",
        "case", "impl", "median ns/op", "min", "max", "strata/impl"
    )
}

/// Console table rows for one case.
pub fn table_rows(results: &[Measurement]) -> String {
    let subject = results.iter().find(|m| m.imp == SUBJECT);
    let mut out = String::new();
    for (i, m) in results.iter().enumerate() {
        let ratio = match subject {
            Some(s) if m.imp != SUBJECT => format!("{:.2}", s.median_ns / m.median_ns),
            _ => String::new(),
        };
        let case = if i == 0 { m.case.as_str() } else { "" };
        let _ = writeln!(
            out,
            "{:<28} {:<13} {:>12} {:>11} {:>11} {:>12}",
            case,
            m.imp,
            fmt_ns(m.median_ns),
            fmt_ns(m.min_ns),
            fmt_ns(m.max_ns),
            ratio
        );
    }
    out
}

/// Renders measurements as CSV (with [`CSV_HEADER`]).
pub fn to_csv(results: &[Measurement]) -> String {
    let mut out = String::from(CSV_HEADER);
    out.push('\n');
    for m in results {
        let _ = writeln!(
            out,
            "{},{},{:.2},{:.2},{:.2},{}",
            m.case, m.imp, m.median_ns, m.min_ns, m.max_ns, m.samples
        );
    }
    out
}

/// Parses CSV written by [`to_csv`]; malformed lines are skipped.
pub fn from_csv(text: &str) -> Vec<Measurement> {
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some(CSV_HEADER) {
        return Vec::new();
    }
    lines
        .filter_map(|line| {
            let f: Vec<&str> = line.trim().split(',').collect();
            if f.len() != 6 {
                return None;
            }
            Some(Measurement {
                case: f[0].to_string(),
                imp: f[1].to_string(),
                median_ns: f[2].parse().ok()?,
                min_ns: f[3].parse().ok()?,
                max_ns: f[4].parse().ok()?,
                samples: f[5].parse().ok()?,
            })
        })
        .collect()
}

/// Writes `dir/GROUP.csv`.
pub fn write_csv(dir: &Path, group: &str, results: &[Measurement]) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{group}.csv"));
    std::fs::write(&path, to_csv(results))?;
    Ok(path)
}

/// Cases and impls of one group in first-seen order, with a lookup of
/// medians.
struct Table<'a> {
    cases: Vec<&'a str>,
    impls: Vec<&'a str>,
    by_key: BTreeMap<(&'a str, &'a str), &'a Measurement>,
}

impl<'a> Table<'a> {
    fn new(results: &'a [Measurement]) -> Self {
        let mut t = Table {
            cases: Vec::new(),
            impls: Vec::new(),
            by_key: BTreeMap::new(),
        };
        for m in results {
            if !t.cases.contains(&m.case.as_str()) {
                t.cases.push(&m.case);
            }
            if !t.impls.contains(&m.imp.as_str()) {
                t.impls.push(&m.imp);
            }
            t.by_key.insert((&m.case, &m.imp), m);
        }
        // strata first, so it gets the first colour and column.
        if let Some(i) = t.impls.iter().position(|&i| i == SUBJECT) {
            let s = t.impls.remove(i);
            t.impls.insert(0, s);
        }
        t
    }

    fn median(&self, case: &str, imp: &str) -> Option<f64> {
        self.by_key.get(&(case, imp)).map(|m| m.median_ns)
    }
}

/// The markdown section of one group: a median table and a ratio table.
pub fn markdown_section(group: &str, results: &[Measurement]) -> String {
    let t = Table::new(results);
    let peers: Vec<&str> = t.impls.iter().copied().filter(|&i| i != SUBJECT).collect();
    let has_subject = t.impls.contains(&SUBJECT);
    let samples = results.iter().map(|m| m.samples).max().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(out, "## {group}\n");
    let _ = writeln!(
        out,
        "Median time per operation, ns ({samples} samples per impl). \
         Raw numbers: [`{group}.csv`]({group}.csv).\n"
    );
    out.push_str("| case |");
    for imp in &t.impls {
        let _ = write!(out, " {imp} |");
    }
    if has_subject {
        for p in &peers {
            let _ = write!(out, " {SUBJECT}/{p} |");
        }
    }
    out.push_str("\n|---|");
    let ncols = t.impls.len() + if has_subject { peers.len() } else { 0 };
    out.push_str(&"---:|".repeat(ncols));
    out.push('\n');
    for case in &t.cases {
        let _ = write!(out, "| `{case}` |");
        for imp in &t.impls {
            match t.median(case, imp) {
                Some(v) => {
                    let _ = write!(out, " {} |", fmt_ns(v));
                }
                None => out.push_str(" – |"),
            }
        }
        if has_subject {
            for p in &peers {
                match (t.median(case, SUBJECT), t.median(case, p)) {
                    (Some(s), Some(v)) if v > 0.0 => {
                        let _ = write!(out, " {:.2} |", s / v);
                    }
                    _ => out.push_str(" – |"),
                }
            }
        }
        out.push('\n');
    }
    let _ = writeln!(out, "\n![{group} chart]({group}.svg)\n");
    out
}

const PALETTE: [&str; 9] = [
    "#d62728", // strata
    "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf",
];

/// "1 ns", "10 ns", "100 ns", "1 µs", … for 10^d ns.
fn decade_label(d: i32) -> String {
    let units = ["ns", "µs", "ms", "s"];
    if d < 0 {
        return format!("{} ns", 10f64.powi(d));
    }
    let (u, rest) = ((d / 3).min(3) as usize, d - 3 * (d / 3).min(3));
    format!("{} {}", 10u64.pow(rest as u32), units[u])
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A hand-written SVG chart of one group: horizontal grouped bars per case,
/// one colour per impl, log-scale time axis (lower is better).
pub fn svg_chart(group: &str, results: &[Measurement]) -> String {
    let t = Table::new(results);
    const LEFT: f64 = 230.0;
    const PLOT_W: f64 = 560.0;
    const RIGHT: f64 = 90.0;
    const BAR_H: f64 = 13.0;
    const BAR_GAP: f64 = 2.0;
    const CASE_GAP: f64 = 14.0;
    const TOP: f64 = 58.0;
    const BOTTOM: f64 = 36.0;

    let values: Vec<f64> = results
        .iter()
        .map(|m| m.median_ns)
        .filter(|v| *v > 0.0)
        .collect();
    let vmin = values.iter().copied().fold(f64::INFINITY, f64::min);
    let vmax = values.iter().copied().fold(0.0, f64::max);
    let (lo, hi) = if values.is_empty() {
        (0.0, 1.0)
    } else {
        let lo = (vmin * 0.8).log10().floor();
        // Not rounded up to a decade: the longest bar fills the plot.
        let hi = (vmax.log10() + 0.05).max(lo + 1.0);
        (lo, hi)
    };
    let x = |v: f64| LEFT + (v.max(10f64.powf(lo)).log10() - lo) / (hi - lo) * PLOT_W;

    let case_h = t.impls.len() as f64 * (BAR_H + BAR_GAP) - BAR_GAP;
    let plot_h = t.cases.len() as f64 * (case_h + CASE_GAP);
    let width = LEFT + PLOT_W + RIGHT;
    let height = TOP + plot_h + BOTTOM;
    let color = |i: usize| PALETTE[i % PALETTE.len()];

    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="15" font-weight="bold">{} — median time per operation (log scale, lower is better)</text>"#,
        xml_escape(group)
    );
    // Legend.
    let mut lx = LEFT;
    for (i, imp) in t.impls.iter().enumerate() {
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="32" width="12" height="12" fill="{}"/><text x="{}" y="42">{}</text>"#,
            color(i),
            lx + 16.0,
            xml_escape(imp)
        );
        lx += 16.0 + 8.0 * imp.chars().count() as f64 + 18.0;
    }
    // Grid: labelled decades, faint lines at 2× and 5×.
    let mut d = lo;
    while d <= hi {
        for (m, labelled) in [(1.0, true), (2.0, false), (5.0, false)] {
            let v = 10f64.powf(d) * m;
            if v.log10() > hi {
                break;
            }
            let gx = x(v);
            let stroke = if labelled { "#bbb" } else { "#eee" };
            let _ = writeln!(
                s,
                r#"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{:.1}" stroke="{stroke}"/>"#,
                TOP + plot_h
            );
            if labelled {
                let _ = writeln!(
                    s,
                    r##"<text x="{gx:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
                    TOP + plot_h + 16.0,
                    decade_label(d as i32)
                );
            }
        }
        d += 1.0;
    }
    // Bars.
    for (ci, case) in t.cases.iter().enumerate() {
        let y0 = TOP + CASE_GAP / 2.0 + ci as f64 * (case_h + CASE_GAP);
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end" dominant-baseline="middle">{}</text>"#,
            LEFT - 8.0,
            y0 + case_h / 2.0,
            xml_escape(case)
        );
        for (ii, imp) in t.impls.iter().enumerate() {
            let Some(v) = t.median(case, imp) else {
                continue;
            };
            let y = y0 + ii as f64 * (BAR_H + BAR_GAP);
            let w = (x(v) - LEFT).max(1.0);
            let _ = writeln!(
                s,
                r#"<rect x="{LEFT}" y="{y:.1}" width="{w:.1}" height="{BAR_H}" fill="{}"><title>{} {}: {}</title></rect><text x="{:.1}" y="{:.1}" font-size="10" dominant-baseline="middle">{}</text>"#,
                color(ii),
                xml_escape(case),
                xml_escape(imp),
                xml_escape(&fmt_time(v)),
                LEFT + w + 4.0,
                y + BAR_H / 2.0,
                xml_escape(&fmt_time(v))
            );
        }
    }
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="#444"/>"##,
        TOP + plot_h
    );
    s.push_str("</svg>\n");
    s
}

/// Regenerates `dir/report.md` and one `dir/GROUP.svg` per `dir/GROUP.csv`.
/// Groups listed in `order` come first, in that order; others follow by name.
pub fn regenerate_report(dir: &Path, order: &[&str]) -> io::Result<PathBuf> {
    let mut groups: Vec<(String, Vec<Measurement>)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("csv") {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let results = from_csv(&std::fs::read_to_string(&path)?);
        if !results.is_empty() {
            groups.push((stem.to_string(), results));
        }
    }
    let rank = |g: &str| order.iter().position(|o| *o == g).unwrap_or(usize::MAX);
    groups.sort_by(|a, b| (rank(&a.0), &a.0).cmp(&(rank(&b.0), &b.0)));

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut md = String::from("# strata-bench report\n\n");
    let _ = writeln!(
        md,
        "Generated by `strata-bench` from the `GROUP.csv` files in this directory \
         ({cores} CPUs available at generation time). Each group ran in one process, \
         strata and its peers interleaved sample by sample. Times are medians per \
         operation; a ratio is {SUBJECT}'s median over the peer's (lower is better, \
         below 1.00 means strata is faster).\n"
    );
    for (g, _) in &groups {
        let _ = writeln!(md, "- [{g}](#{})", g.to_lowercase());
    }
    md.push('\n');
    for (g, results) in &groups {
        std::fs::write(dir.join(format!("{g}.svg")), svg_chart(g, results))?;
        md.push_str(&markdown_section(g, results));
    }
    let path = dir.join("report.md");
    std::fs::write(&path, md)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Measurement> {
        vec![
            Measurement::new("a_case", "strata", vec![10.0, 12.0, 11.0]),
            Measurement::new("a_case", "peer", vec![20.0]),
            Measurement::new("b_case", "strata", vec![1500.0]),
            Measurement::new("b_case", "peer", vec![1000.0]),
        ]
    }

    #[test]
    fn decade_labels() {
        let l: Vec<String> = [-1, 0, 1, 2, 3, 5, 6, 9, 10].map(decade_label).into();
        assert_eq!(
            l,
            [
                "0.1 ns", "1 ns", "10 ns", "100 ns", "1 µs", "100 µs", "1 ms", "1 s", "10 s"
            ]
        );
    }

    #[test]
    fn csv_round_trip() {
        let csv = to_csv(&sample());
        assert!(csv.starts_with("case,impl,median_ns,min_ns,max_ns,samples\n"));
        assert!(csv.contains("a_case,strata,11.00,10.00,12.00,3\n"));
        let back = from_csv(&csv);
        assert_eq!(back.len(), 4);
        assert_eq!(back[3].median_ns, 1000.0);
    }

    #[test]
    fn markdown_has_ratios() {
        let md = markdown_section("g", &sample());
        assert!(
            md.contains("| case | strata | peer | strata/peer |"),
            "{md}"
        );
        assert!(md.contains("| `a_case` | 11.0 | 20.0 | 0.55 |"), "{md}");
        assert!(md.contains("| `b_case` | 1500 | 1000 | 1.50 |"), "{md}");
        assert!(md.contains("(g.svg)"));
    }

    #[test]
    fn svg_is_well_formed_enough() {
        let svg = svg_chart("g", &sample());
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<title>").count(), 4);
        assert!(svg.contains("1.00 µs"));
        assert!(svg.contains(">10 ns<") && svg.contains(">1 µs<"));
    }

    #[test]
    fn report_from_dir() {
        let dir = std::env::temp_dir().join(format!("strata-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        write_csv(&dir, "zeta", &sample()).unwrap();
        write_csv(&dir, "alpha", &sample()).unwrap();
        let path = regenerate_report(&dir, &["zeta"]).unwrap();
        let md = std::fs::read_to_string(path).unwrap();
        assert!(md.find("## zeta").unwrap() < md.find("## alpha").unwrap());
        assert!(dir.join("alpha.svg").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
