//! Prometheus metrics at `/metrics`, in the text exposition format.

use std::collections::BTreeMap;
use std::sync::Mutex;

const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0];

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
    rows_released: u64,
}

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn rows_released(&self, n: u64) {
        self.lock().rows_released += n;
    }

    /// Counts one request to `route` and how long its head took.
    pub fn request(&self, route: String, method: String, status: u16, seconds: f64) {
        let mut inner = self.lock();
        *inner
            .requests
            .entry((route.clone(), method, status))
            .or_default() += 1;
        let h = inner.latency.entry(route).or_default();
        h.count += 1;
        h.sum += seconds;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.buckets[i] += 1;
            }
        }
    }

    /// The text exposition of every metric; `audit_entries` comes from
    /// the service.
    pub fn render_text(&self, audit_entries: u64) -> String {
        let inner = self.lock();
        let mut out = String::new();
        out.push_str("# HELP veil_http_requests_total HTTP requests by route, method and status.\n# TYPE veil_http_requests_total counter\n");
        for ((route, method, status), n) in &inner.requests {
            out.push_str(&format!("veil_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}\n"));
        }
        out.push_str("# HELP veil_http_request_duration_seconds Time to the response head (streams continue after).\n# TYPE veil_http_request_duration_seconds histogram\n");
        for (route, h) in &inner.latency {
            for (bound, n) in BUCKETS.iter().zip(h.buckets) {
                out.push_str(&format!("veil_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}\n"));
            }
            out.push_str(&format!(
                "veil_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n",
                h.count
            ));
            out.push_str(&format!(
                "veil_http_request_duration_seconds_sum{{route=\"{route}\"}} {}\n",
                h.sum
            ));
            out.push_str(&format!(
                "veil_http_request_duration_seconds_count{{route=\"{route}\"}} {}\n",
                h.count
            ));
        }
        for (name, help, value) in [
            (
                "veil_rows_released_total",
                "Rows released in answers.",
                inner.rows_released,
            ),
            (
                "veil_audit_entries_total",
                "Audit entries written.",
                audit_entries,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n"
            ));
        }
        out
    }
}
