//! The summary: medians, the table on stdout, the JSON file.

use std::fmt::Write;

/// The value at quantile `q` (0..=1) of `values` (sorted in place), or 0.
pub(super) fn percentile(values: &mut [u64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_unstable();
    let rank = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len());
    values[rank - 1] as f64
}

pub(super) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Every figure `hookd bench` reports.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub(super) struct Summary {
    pub(super) publish_per_s: f64,
    pub(super) e2e_per_s: f64,
    pub(super) fanout_e2e_per_s: f64,
    pub(super) ack_p50_ms: f64,
    pub(super) ack_p99_ms: f64,
    pub(super) e2e_p50_ms: f64,
    pub(super) e2e_p99_ms: f64,
    pub(super) e2e_max_ms: f64,
    pub(super) isolation_ratio: f64,
    pub(super) peak_rss_mb: f64,
    pub(super) ceiling_per_s: f64,
    pub(super) e2e_vs_ceiling: f64,
    pub(super) lost: u64,
    pub(super) duplicates: u64,
    pub(super) config: serde_json::Value,
    #[serde(skip)]
    pub(super) publish_single_per_s: f64,
    #[serde(skip)]
    pub(super) publish_batch_per_s: f64,
    #[serde(skip)]
    pub(super) backlog_added_mb: Option<f64>,
    #[serde(skip)]
    pub(super) bad_signatures: u64,
    /// hookd's CPU time per delivery (µs), medians: end to end, fan-out.
    #[serde(skip)]
    pub(super) e2e_cpu_us: f64,
    #[serde(skip)]
    pub(super) fanout_cpu_us: f64,
}

impl Summary {
    pub(super) fn table(&self) -> String {
        let mut out = String::new();
        let mut row = |name: &str, value: String, target: &str| {
            let _ = writeln!(out, "{name:<34} {value:>14}   {target}");
        };
        row(
            "ceiling (plain hyper loop)",
            format!("{:.0}/s", self.ceiling_per_s),
            "",
        );
        row(
            "publish, single calls x64",
            format!("{:.0}/s", self.publish_single_per_s),
            "",
        );
        row(
            "publish, batches of 100",
            format!("{:.0}/s", self.publish_batch_per_s),
            "",
        );
        row(
            "end to end, 1 endpoint",
            format!("{:.0}/s", self.e2e_per_s),
            "target >= 25000/s",
        );
        row(
            "end to end vs ceiling",
            format!("{:.2}", self.e2e_vs_ceiling),
            "target >= 0.5",
        );
        row(
            "fan-out to 10, deliveries",
            format!("{:.0}/s", self.fanout_e2e_per_s),
            "target >= 40000/s",
        );
        row(
            "hookd CPU/delivery, e2e / fan-out",
            format!("{:.0} / {:.0} µs", self.e2e_cpu_us, self.fanout_cpu_us),
            "",
        );
        row(
            "publish ack p50 / p99",
            format!("{:.2} / {:.2} ms", self.ack_p50_ms, self.ack_p99_ms),
            "target p99 <= 2 ms",
        );
        row(
            "publish to receive p50 / p99 / max",
            format!(
                "{:.2} / {:.2} / {:.1} ms",
                self.e2e_p50_ms, self.e2e_p99_ms, self.e2e_max_ms
            ),
            "target p99 <= 3 ms",
        );
        row(
            "isolation ratio",
            format!("{:.3}", self.isolation_ratio),
            "target >= 0.95",
        );
        row(
            "peak RSS during end to end",
            format!("{:.1} MiB", self.peak_rss_mb),
            "target <= 64 MiB",
        );
        if let Some(added) = self.backlog_added_mb {
            row(
                "RSS added by 1M retry backlog",
                format!("{added:.1} MiB"),
                "target < 100 MiB",
            );
        }
        row(
            "lost / duplicates",
            format!("{} / {}", self.lost, self.duplicates),
            "target 0 / 0",
        );
        row(
            "bad signatures (sampled)",
            self.bad_signatures.to_string(),
            "target 0",
        );
        out
    }
}
