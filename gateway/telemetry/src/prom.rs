//! The Prometheus text exposition format (version 0.0.4), written once for every `/metrics`
//! of Tollgate (the gateway's data plane and admin API, the ledger).
//!
//! A family is its `# HELP` and `# TYPE` lines ([`family`]), then its samples ([`sample`]):
//! `name{label="value",…} value`. Help text escapes `\` and line feeds, label values escape
//! `\`, `"` and line feeds, as the format requires; names and label names are the caller's
//! constants and are written as they are. Values are written with their `Display` (pass
//! `format_args!("{:.3}", x)` for a fixed precision).
//!
//! It writes into a `String` the caller owns and never fails (writing to a `String` cannot).

use std::fmt::{self, Write as _};

/// The type of a metric family (`# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// A value that only goes up (resets on restart).
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Buckets (`_bucket{le=…}`), `_sum` and `_count`.
    Histogram,
}

impl MetricType {
    /// The word of the `# TYPE` line.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Appends `text` with `\` and line feeds escaped (and `"` too when `quote`).
fn escaped(out: &mut String, text: &str, quote: bool) {
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// Appends a family's `# HELP name help` and `# TYPE name type` lines.
pub fn family(out: &mut String, name: &str, help: &str, kind: MetricType) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    escaped(out, help, false);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind.as_str());
    out.push('\n');
}

/// Appends one sample line: `name value`, or `name{label="value",…} value`.
pub fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, text)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(label);
            out.push_str("=\"");
            escaped(out, text, true);
            out.push('"');
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Appends a family of one unlabelled sample.
pub fn single(
    out: &mut String,
    name: &str,
    help: &str,
    kind: MetricType,
    value: impl fmt::Display,
) {
    family(out, name, help, kind);
    sample(out, name, &[], value);
}

/// Appends a counter of one unlabelled sample.
pub fn counter(out: &mut String, name: &str, help: &str, value: impl fmt::Display) {
    single(out, name, help, MetricType::Counter, value);
}

/// Appends a gauge of one unlabelled sample.
pub fn gauge(out: &mut String, name: &str, help: &str, value: impl fmt::Display) {
    single(out, name, help, MetricType::Gauge, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_family_is_help_type_and_samples() {
        let mut out = String::new();
        counter(&mut out, "t_total", "Things done.", 3);
        gauge(&mut out, "t_seconds", "Age.", format_args!("{:.3}", 1.5));
        family(&mut out, "t_by", "By core.", MetricType::Counter);
        sample(&mut out, "t_by", &[("core", "0")], 7_u64);
        sample(&mut out, "t_by", &[("core", "1"), ("class", "2xx")], 0.25);
        assert_eq!(
            out,
            "# HELP t_total Things done.\n# TYPE t_total counter\nt_total 3\n\
             # HELP t_seconds Age.\n# TYPE t_seconds gauge\nt_seconds 1.500\n\
             # HELP t_by By core.\n# TYPE t_by counter\n\
             t_by{core=\"0\"} 7\nt_by{core=\"1\",class=\"2xx\"} 0.25\n"
        );
    }

    #[test]
    fn help_escapes_backslash_and_line_feed_only() {
        let mut out = String::new();
        family(&mut out, "t", "a \\ b\nc \"quoted\"", MetricType::Histogram);
        assert_eq!(
            out,
            "# HELP t a \\\\ b\\nc \"quoted\"\n# TYPE t histogram\n"
        );
    }

    #[test]
    fn label_values_escape_backslash_quote_and_line_feed() {
        let mut out = String::new();
        sample(&mut out, "t", &[("path", "a\\b\"c\nd\re")], 1);
        assert_eq!(out, "t{path=\"a\\\\b\\\"c\\nd\re\"} 1\n");
        // One sample line whatever the value holds.
        assert_eq!(out.lines().count(), 1);
    }
}
