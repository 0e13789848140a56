//! The figures a scenario prints at its end, and readings of Prometheus text.

use std::time::Duration;

/// What a scenario measured.
#[derive(Debug, Default)]
pub struct Figures {
    /// Scenario name.
    pub scenario: String,
    /// Distinct events that should reach the store.
    pub events: u64,
    /// Faults injected, one description each.
    pub faults: Vec<String>,
    /// Events missing from the store.
    pub lost: u64,
    /// Extra copies in the store (copies beyond the first of one key).
    pub duplicated: u64,
    /// Events dead-lettered by the broker.
    pub dead_lettered: u64,
    /// Deliveries beyond one per event (redeliveries the sinks absorbed).
    pub redelivered: u64,
    /// Named latency quantiles.
    pub latencies: Vec<(String, Duration)>,
    /// Peak RSS per process, KiB.
    pub rss_kb: Vec<(String, u64)>,
    /// Anything else worth printing.
    pub notes: Vec<String>,
    /// Wall time of the scenario.
    pub wall: Duration,
}

impl Figures {
    /// Empty figures of `scenario`.
    pub fn new(scenario: &str) -> Self {
        Self {
            scenario: scenario.to_owned(),
            ..Self::default()
        }
    }

    /// Prints them (one block, greppable by `FIGURES`).
    pub fn print(&self) {
        let faults = if self.faults.is_empty() {
            "none".to_owned()
        } else {
            self.faults.join("; ")
        };
        let lat: Vec<String> = self
            .latencies
            .iter()
            .map(|(k, v)| format!("{k}={:.1}ms", v.as_secs_f64() * 1000.0))
            .collect();
        let rss: Vec<String> = self
            .rss_kb
            .iter()
            .map(|(k, v)| format!("{k}={:.1}MiB", *v as f64 / 1024.0))
            .collect();
        println!(
            "FIGURES {}: events={} lost={} duplicated={} dead_lettered={} redelivered={} wall={:.1}s\n  faults: {faults}\n  latency: {}\n  peak RSS: {}{}",
            self.scenario,
            self.events,
            self.lost,
            self.duplicated,
            self.dead_lettered,
            self.redelivered,
            self.wall.as_secs_f64(),
            if lat.is_empty() {
                "-".into()
            } else {
                lat.join(" ")
            },
            if rss.is_empty() {
                "-".into()
            } else {
                rss.join(" ")
            },
            self.notes
                .iter()
                .map(|n| format!("\n  {n}"))
                .collect::<String>()
        );
    }
}

fn labels_match(line: &str, name: &str, labels: &[(&str, &str)]) -> bool {
    let Some(rest) = line.strip_prefix(name) else {
        return false;
    };
    if !(rest.starts_with(' ') || rest.starts_with('{')) {
        return false;
    }
    labels
        .iter()
        .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
}

/// Sum of the samples of `name` whose labels include `labels`.
pub fn metric_sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && labels_match(l, name, labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The upper bound of the histogram bucket holding quantile `q` of `name` (`<name>_bucket`).
pub fn histogram_quantile(text: &str, name: &str, q: f64) -> Option<Duration> {
    let bucket = format!("{name}_bucket");
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with(&bucket))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let (le, _) = buckets.iter().find(|(_, c)| *c >= q * total)?;
    le.is_finite().then(|| Duration::from_secs_f64(*le))
}

/// The `q` quantile of measured durations.
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort();
    let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[i]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sums_and_quantiles() {
        let t = "# HELP x\nsink_requests_total{code=\"202\"} 10\nsink_requests_total{code=\"503\"} 3\n\
                 d_bucket{le=\"0.01\"} 50\nd_bucket{le=\"0.1\"} 99\nd_bucket{le=\"1\"} 100\nd_bucket{le=\"+Inf\"} 100\n";
        assert_eq!(metric_sum(t, "sink_requests_total", &[]), 13.0);
        assert_eq!(
            metric_sum(t, "sink_requests_total", &[("code", "503")]),
            3.0
        );
        assert_eq!(
            histogram_quantile(t, "d", 0.5),
            Some(Duration::from_millis(10))
        );
        assert_eq!(
            histogram_quantile(t, "d", 0.99),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            histogram_quantile(t, "d", 1.0),
            Some(Duration::from_secs(1))
        );
        let mut s: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&mut s, 0.99), Duration::from_millis(99));
    }
}
