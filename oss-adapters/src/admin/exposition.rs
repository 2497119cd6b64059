//! The Prometheus text exposition format, version 0.0.4, written by hand: `# HELP` and
//! `# TYPE` lines, then one sample a line (`name{label="value",…} value`), histograms as
//! cumulative `_bucket` samples with `le` (ending with `+Inf`), `_sum` and `_count`.
//!
//! Durations are kept in integer nanoseconds and printed as exact decimal seconds, so no
//! float is formatted anywhere. Label values are escaped (`\\`, `\"`, `\n`) as the format
//! requires.

use std::fmt::Write as _;

use tollgate_engine::metrics::{HistogramSnapshot, LATENCY_BOUNDS_NS};

/// The `Content-Type` of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A page of metric families being written.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

/// What kind of metric a family is (its `# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Exposition {
    /// Starts a family: its help text and type. Every sample of the family follows.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample of an integer value.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.name_and_labels(name, labels, None);
        let _ = writeln!(self.text, " {value}");
    }

    /// A histogram's samples (`name_bucket`, `name_sum` in seconds, `name_count`).
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], histogram: &HistogramSnapshot) {
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (bound, count) in LATENCY_BOUNDS_NS.iter().zip(histogram.counts) {
            cumulative = cumulative.wrapping_add(count);
            self.name_and_labels(&bucket, labels, Some(&seconds(*bound)));
            let _ = writeln!(self.text, " {cumulative}");
        }
        self.name_and_labels(&bucket, labels, Some("+Inf"));
        let _ = writeln!(self.text, " {}", histogram.count());
        self.name_and_labels(&format!("{name}_sum"), labels, None);
        let _ = writeln!(self.text, " {}", seconds(histogram.sum_ns));
        self.sample(&format!("{name}_count"), labels, histogram.count());
    }

    fn name_and_labels(&mut self, name: &str, labels: &[(&str, &str)], le: Option<&str>) {
        self.text.push_str(name);
        let all = labels.iter().copied().chain(le.map(|le| ("le", le)));
        for (at, (label, value)) in all.enumerate() {
            self.text.push(if at == 0 { '{' } else { ',' });
            let _ = write!(self.text, "{label}=\"");
            for c in value.chars() {
                match c {
                    '\\' => self.text.push_str("\\\\"),
                    '"' => self.text.push_str("\\\""),
                    '\n' => self.text.push_str("\\n"),
                    c => self.text.push(c),
                }
            }
            self.text.push('"');
        }
        if !labels.is_empty() || le.is_some() {
            self.text.push('}');
        }
    }

    pub fn finish(self) -> String {
        self.text
    }
}

/// `ns` nanoseconds as decimal seconds without trailing zeros: 50,000 → `0.00005`.
fn seconds(ns: u64) -> String {
    let (whole, fraction) = (ns / 1_000_000_000, ns % 1_000_000_000);
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:09}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nanoseconds_print_as_exact_seconds() {
        for (ns, text) in
            [(0, "0"), (50_000, "0.00005"), (2_500_000, "0.0025"), (1_000_000_000, "1"), (5_000_000_001, "5.000000001")]
        {
            assert_eq!(seconds(ns), text, "{ns} ns");
        }
    }

    #[test]
    fn samples_escape_label_values_and_histograms_accumulate_their_buckets() {
        let mut page = Exposition::default();
        page.family("t_total", Kind::Counter, "A test.");
        page.sample("t_total", &[("path", "a\"b\\c\nd")], 3);
        page.sample("t_plain", &[], 4);
        let mut histogram = HistogramSnapshot::default();
        histogram.counts[0] = 2;
        histogram.counts[2] = 1;
        histogram.counts[tollgate_engine::metrics::BUCKETS - 1] = 1;
        histogram.sum_ns = 7_000_000_000;
        page.histogram("t_seconds", &[("shard", "0")], &histogram);
        let text = page.finish();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..4],
            ["# HELP t_total A test.", "# TYPE t_total counter", "t_total{path=\"a\\\"b\\\\c\\nd\"} 3", "t_plain 4"]
        );
        assert!(lines.contains(&"t_seconds_bucket{shard=\"0\",le=\"0.00005\"} 2"));
        assert!(lines.contains(&"t_seconds_bucket{shard=\"0\",le=\"0.0001\"} 2"));
        assert!(lines.contains(&"t_seconds_bucket{shard=\"0\",le=\"0.00025\"} 3"));
        assert!(lines.contains(&"t_seconds_bucket{shard=\"0\",le=\"5\"} 3"));
        assert!(lines.contains(&"t_seconds_bucket{shard=\"0\",le=\"+Inf\"} 4"));
        assert!(lines.contains(&"t_seconds_sum{shard=\"0\"} 7"));
        assert!(lines.contains(&"t_seconds_count{shard=\"0\"} 4"));
    }
}
