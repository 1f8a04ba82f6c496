//! A self-contained HTML report: when and with what command it was made, a summary table,
//! responses by status coloured by class, a latency-by-percentile plot (log-scale percentile
//! axis, as HdrHistogram plots are read, and log-scale latency axis, so that p50 and p99.9 are
//! both legible) and a throughput-over-time plot, drawn as inline SVG. No scripts, no external
//! assets.

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

/// When and how a report was made, shown at its top.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    /// UTC time, `2026-11-22 14:03:07 UTC`.
    pub at: String,
    /// The command line, shell-quoted.
    pub command: String,
}

impl Made {
    /// Now, by this process's command line.
    #[must_use]
    pub fn now() -> Self {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            at: utc(secs),
            command: std::env::args()
                .map(|a| shell_quote(&a))
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

/// `secs` since the Unix epoch as `YYYY-MM-DD hh:mm:ss UTC` (proleptic Gregorian calendar).
#[must_use]
pub fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `arg` as a POSIX shell word: as is when it is plain, else in single quotes.
#[must_use]
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,@%+".contains(&b));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// The colour of a status class (2xx green, 3xx blue, 4xx orange, 5xx red; errors grey).
fn class_colour(status: Option<u16>) -> &'static str {
    match status.map(|s| s / 100) {
        Some(1 | 2) => "#2da44e",
        Some(3) => "#1f6feb",
        Some(4) => "#d4a72c",
        Some(5) => "#cf222e",
        _ => "#8c959f",
    }
}

/// Renders the report as one HTML document.
#[must_use]
pub fn render(report: &Report, made: &Made) -> String {
    let mut out = String::new();
    let title = format!("loadtest — {}", escape(&report.url));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n\
         <style>body{{font:14px system-ui,sans-serif;margin:2em;color:#222}}\
         table{{border-collapse:collapse}}td,th{{padding:2px 12px;text-align:left}}\
         th{{color:#555;font-weight:normal}}svg{{background:#fafafa;border:1px solid #ddd}}\
         .axis{{stroke:#888}}.grid{{stroke:#e4e4e4}}text{{font-size:11px;fill:#444}}\
         .line{{fill:none;stroke:#1f6feb;stroke-width:2}}.bar{{fill:#2da44e}}\
         .made{{color:#555}}code{{background:#f3f3f3;padding:1px 4px}}\
         .swatch{{display:inline-block;width:10px;height:10px;margin-right:4px}}</style>\n\
         </head><body>\n<h1>{title}</h1>\n<p class=\"made\">Made {} with <code>{}</code></p>\n",
        escape(&made.at),
        escape(&made.command)
    );
    summary_table(&mut out, report);
    out.push_str("<h2>Responses by status</h2>\n");
    status_bar(&mut out, report);
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
pub fn write(report: &Report, made: &Made, path: &str) -> Result<(), Error> {
    std::fs::write(path, render(report, made)).map_err(|source| Error::Write {
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
        ("target", r.url.clone()),
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

/// One horizontal bar, split by status (and errors), coloured by class, with a legend.
fn status_bar(out: &mut String, r: &Report) {
    let mut parts: Vec<(Option<u16>, u64)> = r.status.iter().map(|(s, n)| (Some(*s), *n)).collect();
    parts.push((None, r.errors.total()));
    parts.retain(|(_, n)| *n > 0);
    let total: u64 = parts.iter().map(|(_, n)| n).sum();
    if total == 0 {
        out.push_str("<p>no responses</p>\n");
        return;
    }
    let (w, h) = (W - LEFT - RIGHT, 28.0);
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{}\" \
         viewBox=\"0 0 {W} {}\" role=\"img\" aria-label=\"responses by status\">",
        h + 10.0,
        h + 10.0
    );
    let mut x = LEFT;
    for (status, n) in &parts {
        #[allow(clippy::cast_precision_loss)]
        let part = w * (*n as f64) / (total as f64);
        let label = status.map_or_else(|| "errors".to_owned(), |s| s.to_string());
        let _ = writeln!(
            out,
            "<rect class=\"status\" x=\"{x:.1}\" y=\"5\" width=\"{part:.1}\" height=\"{h}\" \
             fill=\"{}\"><title>{label}: {}</title></rect>",
            class_colour(*status),
            group(*n)
        );
        x += part;
    }
    out.push_str("</svg>\n<p>");
    for (status, n) in &parts {
        let label = status.map_or_else(|| "errors".to_owned(), |s| s.to_string());
        #[allow(clippy::cast_precision_loss)]
        let share = 100.0 * (*n as f64) / (total as f64);
        let _ = write!(
            out,
            "<span class=\"swatch\" style=\"background:{}\"></span>{label}: {} ({share:.1} %) &nbsp; ",
            class_colour(*status),
            group(*n)
        );
    }
    out.push_str("</p>\n");
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
    // y = log10(latency): whole decades from below the fastest to above the slowest response.
    #[allow(clippy::cast_precision_loss)]
    let lo_ms = (r.latency_us.min().max(1) as f64 / 1000.0).max(0.001);
    #[allow(clippy::cast_precision_loss)]
    let hi_ms = (r.latency_us.max().max(1) as f64 / 1000.0).max(lo_ms);
    let y_lo = lo_ms.log10().floor();
    let y_hi = hi_ms.log10().ceil().max(y_lo + 1.0);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let y_of = |ms: f64| {
        let v = (ms.max(1e-6).log10() - y_lo) / (y_hi - y_lo);
        H - BOTTOM - plot_h * v.clamp(0.0, 1.0)
    };
    let mut exp = y_lo;
    while exp <= y_hi {
        let y = y_of(10f64.powf(exp));
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{} ms</text>",
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            trim_float(10f64.powf(exp))
        );
        exp += 1.0;
    }
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
        let y = y_of(ms);
        let _ = write!(points, "{x:.1},{y:.1} ");
    }
    let _ = writeln!(
        out,
        "<polyline class=\"line\" points=\"{}\"/>\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile (log scale)</text>\
         <text x=\"14\" y=\"{:.1}\" text-anchor=\"middle\" transform=\"rotate(-90 14 {:.1})\">\
         latency (log scale)</text>",
        points.trim_end(),
        LEFT + plot_w / 2.0,
        H - 4.0,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_commands_print_as_a_reader_expects() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_795_276_987), "2026-11-21 16:03:07 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(shell_quote("-R"), "-R");
        assert_eq!(
            shell_quote("http://127.0.0.1:8080/x"),
            "http://127.0.0.1:8080/x"
        );
        assert_eq!(shell_quote("Host: a b"), "'Host: a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
