//! A self-contained HTML report: a summary table, a latency-by-percentile plot (log-scale
//! percentile axis, as HdrHistogram plots are read) and a throughput-over-time plot, drawn as
//! inline SVG. No scripts, no external assets.

use std::fmt::Write as _;

use crate::{
    Error, Report,
    report::{group, human_us},
};

const W: f64 = 760.0;
const H: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 45.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 40.0;

/// Renders the report as one HTML document.
#[must_use]
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let title = format!("loadtest — {}", escape(&report.url));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n\
         <style>body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}\
         table{{border-collapse:collapse}}td,th{{padding:2px 12px;text-align:left}}\
         th{{color:#555;font-weight:normal}}svg{{background:#fafafa;border:1px solid #ddd}}\
         .axis{{stroke:#888}}.grid{{stroke:#e4e4e4}}text{{font-size:11px;fill:#444}}\
         .line{{fill:none;stroke:#1f6feb;stroke-width:2}}.bar{{fill:#2da44e}}</style>\n\
         </head><body>\n<h1>{title}</h1>\n"
    );
    summary_table(&mut out, report);
    out.push_str("<h2>Latency by percentile</h2>\n");
    latency_plot(&mut out, report);
    out.push_str("<h2>Throughput over time (responses per second)</h2>\n");
    throughput_plot(&mut out, report);
    out.push_str("</body></html>\n");
    out
}

/// Writes [`render`] to `path`.
///
/// # Errors
/// [`Error::Write`] when the file cannot be written.
pub fn write(report: &Report, path: &str) -> Result<(), Error> {
    std::fs::write(path, render(report)).map_err(|source| Error::Write {
        path: path.into(),
        source,
    })
}

fn summary_table(out: &mut String, r: &Report) {
    let mode = if r.open_loop {
        "open loop (latency from the intended send time)"
    } else {
        "closed loop"
    };
    let driver = r.driver.map_or_else(|| "-".into(), |d| d.to_string());
    let status: Vec<String> = r
        .status
        .iter()
        .map(|(s, n)| format!("{s}: {}", group(*n)))
        .collect();
    let e = &r.errors;
    let rows = [
        ("mode", mode.to_string()),
        (
            "threads / connections",
            format!("{} / {}", r.threads, r.connections),
        ),
        ("io driver", driver),
        ("requests", group(r.requests)),
        ("duration", format!("{:.2} s", r.duration.as_secs_f64())),
        ("requests/s", format!("{:.1}", r.rps())),
        ("status", status.join(", ")),
        (
            "errors",
            format!(
                "{} (connect {}, read {}, write {}, timeout {}, parse {})",
                e.total(),
                e.connect,
                e.read,
                e.write,
                e.timeout,
                e.parse
            ),
        ),
        (
            "latency",
            format!(
                "p50 {} · p90 {} · p99 {} · p99.9 {} · max {}",
                human_us(r.percentile_us(50.0)),
                human_us(r.percentile_us(90.0)),
                human_us(r.percentile_us(99.0)),
                human_us(r.percentile_us(99.9)),
                human_us(r.latency_us.max())
            ),
        ),
    ];
    out.push_str("<table>\n");
    for (k, v) in rows {
        let _ = writeln!(out, "<tr><th>{k}</th><td>{}</td></tr>", escape(&v));
    }
    out.push_str("</table>\n");
}

fn svg_open(out: &mut String, label: &str) {
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{label}\">"
    );
}

fn axes(out: &mut String) {
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{}\" x2=\"{}\" y2=\"{}\"/>\
         <line class=\"axis\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{}\"/>",
        H - BOTTOM,
        W - RIGHT,
        H - BOTTOM,
        H - BOTTOM
    );
}

/// Horizontal grid lines and labels for `0..=max` on the y axis.
fn y_grid(out: &mut String, max: f64, label: impl Fn(f64) -> String) {
    let plot_h = H - TOP - BOTTOM;
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = H - BOTTOM - plot_h * f64::from(i) / 4.0;
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            escape(&label(v))
        );
    }
}

fn latency_plot(out: &mut String, r: &Report) {
    svg_open(out, "latency by percentile");
    let count = r.latency_us.len();
    if count == 0 {
        empty(out);
        return;
    }
    // x = log10(1 / (1 - q)): 0 at p0, 1 at p90, 2 at p99, 3 at p99.9 …
    #[allow(clippy::cast_precision_loss)]
    let x_max = (count as f64).log10().clamp(1.0, 6.0).ceil();
    #[allow(clippy::cast_precision_loss)]
    let y_max = nice((r.latency_us.max() as f64 / 1000.0).max(0.001));
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    y_grid(out, y_max, |v| format!("{} ms", trim_float(v)));
    let mut decade = 0.0;
    while decade <= x_max {
        let x = LEFT + plot_w * decade / x_max;
        let label = if decade == 0.0 {
            "0%".to_string()
        } else {
            let digits = decade as usize;
            format!("{}%", trim_float(100.0 - 100.0 / 10f64.powi(digits as i32)))
        };
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{x:.1}\" y1=\"{TOP}\" x2=\"{x:.1}\" y2=\"{}\"/>\
             <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
            H - BOTTOM,
            H - BOTTOM + 16.0
        );
        decade += 1.0;
    }
    let mut points = String::new();
    let steps = 400;
    for i in 0..=steps {
        let xv = x_max * f64::from(i) / f64::from(steps);
        let q = (1.0 - 10f64.powf(-xv)).min(1.0);
        #[allow(clippy::cast_precision_loss)]
        let ms = r.latency_us.value_at_quantile(q) as f64 / 1000.0;
        let x = LEFT + plot_w * xv / x_max;
        let y = H - BOTTOM - plot_h * (ms / y_max).min(1.0);
        let _ = write!(points, "{x:.1},{y:.1} ");
    }
    let _ = writeln!(
        out,
        "<polyline class=\"line\" points=\"{}\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile (log scale)</text>",
        points.trim_end(),
        LEFT + plot_w / 2.0,
        H - 4.0
    );
    axes(out);
    out.push_str("</svg>\n");
}

fn throughput_plot(out: &mut String, r: &Report) {
    svg_open(out, "throughput over time");
    if r.per_second.is_empty() {
        empty(out);
        return;
    }
    #[allow(clippy::cast_precision_loss)]
    let y_max = nice(r.per_second.iter().copied().max().unwrap_or(1).max(1) as f64);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    y_grid(out, y_max, |v| group(v as u64));
    #[allow(clippy::cast_precision_loss)]
    let n = r.per_second.len() as f64;
    let bar_w = plot_w / n;
    let label_every = (r.per_second.len() / 15).max(1);
    for (i, &count) in r.per_second.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let (x, h) = (
            LEFT + bar_w * i as f64,
            plot_h * (count as f64 / y_max).min(1.0),
        );
        let _ = writeln!(
            out,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\">\
             <title>{i} s: {count}</title></rect>",
            x + bar_w * 0.1,
            H - BOTTOM - h,
            (bar_w * 0.8).max(0.5)
        );
        if i % label_every == 0 {
            let _ = writeln!(
                out,
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{i}s</text>",
                x + bar_w / 2.0,
                H - BOTTOM + 16.0
            );
        }
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">seconds since the end of the warm-up</text>",
        LEFT + plot_w / 2.0,
        H - 4.0
    );
    axes(out);
    out.push_str("</svg>\n");
}

fn empty(out: &mut String) {
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">no responses</text></svg>",
        W / 2.0,
        H / 2.0
    );
}

/// The next "round" number at or above `v` (1, 2, 2.5, 5 × 10^k).
fn nice(v: f64) -> f64 {
    let exp = v.log10().floor();
    let base = 10f64.powf(exp);
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if v <= m * base {
            return m * base;
        }
    }
    10.0 * base
}

fn trim_float(v: f64) -> String {
    let s = format!("{v:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
