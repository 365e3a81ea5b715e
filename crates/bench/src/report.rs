//! Scenario results: a list of named figures, printed as a table or as JSON.

use serde::Serialize;

/// One measured figure.
#[derive(Debug, Serialize)]
pub struct Figure {
    /// What was measured.
    pub name: String,
    /// Its value.
    pub value: f64,
    /// Its unit.
    pub unit: &'static str,
}

/// The result of one scenario run.
#[derive(Debug, Serialize)]
pub struct Report {
    /// Scenario name.
    pub scenario: &'static str,
    /// The parameters it ran with.
    pub params: serde_json::Value,
    /// What it measured.
    pub figures: Vec<Figure>,
}

impl Report {
    /// An empty report for `scenario` run with `params`.
    pub fn new(scenario: &'static str, params: serde_json::Value) -> Self {
        Report {
            scenario,
            params,
            figures: Vec::new(),
        }
    }

    /// Adds a figure.
    pub fn add(&mut self, name: impl Into<String>, value: f64, unit: &'static str) {
        self.figures.push(Figure {
            name: name.into(),
            value,
            unit,
        });
    }

    /// Adds the server's RSS before and after a phase, in MiB.
    pub fn add_rss(&mut self, before: &crate::sys::ProcSample, after: &crate::sys::ProcSample) {
        self.add(
            "server RSS before",
            before.rss_bytes as f64 / 1048576.0,
            "MiB",
        );
        self.add(
            "server RSS after",
            after.rss_bytes as f64 / 1048576.0,
            "MiB",
        );
    }

    /// Adds p50, p90, p95, p99, p99.9 and max of a nanosecond histogram, in
    /// milliseconds (p90 and p95 show where two tails part).
    pub fn add_latencies(&mut self, prefix: &str, histogram: &hdrhistogram::Histogram<u64>) {
        if histogram.is_empty() {
            return;
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        for (name, quantile) in [
            ("p50", 0.50),
            ("p90", 0.90),
            ("p95", 0.95),
            ("p99", 0.99),
            ("p99.9", 0.999),
        ] {
            let value = ms(histogram.value_at_quantile(quantile));
            self.add(format!("{prefix} {name}"), value, "ms");
        }
        self.add(format!("{prefix} max"), ms(histogram.max()), "ms");
    }

    /// Human-readable table.
    pub fn to_text(&self) -> String {
        let width = self.figures.iter().map(|f| f.name.len()).max().unwrap_or(0);
        let mut out = format!("{} {}\n", self.scenario, self.params);
        for figure in &self.figures {
            let value = if figure.value.fract() == 0.0 && figure.value.abs() < 1e15 {
                format!("{}", figure.value as i64)
            } else {
                format!("{:.3}", figure.value)
            };
            out.push_str(&format!(
                "  {:width$}  {value:>14} {}\n",
                figure.name, figure.unit
            ));
        }
        out
    }
}
