//! Prometheus metrics, and a small HTTP/1.0 responder that serves them on
//! `GET /metrics` (any path answers; there is only one document).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The labels of an RTAS call count.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RtasLabels {
    call: &'static str,
    status: i32,
}

/// The labels of the request latency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    op: &'static str,
}

/// eehd's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    rtas_calls: Family<RtasLabels, Counter>,
    pe_freezes: Counter,
    recoveries: Counter,
    permanent_failures: Counter,
    connected_vms: Gauge,
    request_seconds: Family<RequestLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("eehd");
        let rtas_calls = Family::<RtasLabels, Counter>::default();
        let pe_freezes = Counter::default();
        let recoveries = Counter::default();
        let permanent_failures = Counter::default();
        let connected_vms = Gauge::default();
        // 5 µs to about 1.3 s in 19 doublings.
        let request_seconds = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(5e-6, 2.0, 19))
        });
        registry.register("rtas_calls", "RTAS EEH calls served, by call and PAPR status", rtas_calls.clone());
        registry.register("pe_freezes", "PE freezes seen on the host", pe_freezes.clone());
        registry.register("pe_recoveries", "PEs that became usable again after a freeze or reset", recoveries.clone());
        registry.register("pe_permanent_failures", "PEs that failed permanently", permanent_failures.clone());
        registry.register("connected_vms", "Sessions open for a VM", connected_vms.clone());
        registry.register("request_seconds", "Time to answer a request, by op", request_seconds.clone());
        Metrics { registry, rtas_calls, pe_freezes, recoveries, permanent_failures, connected_vms, request_seconds }
    }
}

impl Metrics {
    /// Counts an RTAS call.
    pub fn rtas_call(&self, call: &'static str, status: i32) {
        self.rtas_calls.get_or_create(&RtasLabels { call, status }).inc();
    }

    /// Counts a freeze.
    pub fn freeze(&self) {
        self.pe_freezes.inc();
    }

    /// Counts a recovery.
    pub fn recovery(&self) {
        self.recoveries.inc();
    }

    /// Counts a permanent failure.
    pub fn permanent_failure(&self) {
        self.permanent_failures.inc();
    }

    /// A VM session opened (`+1`) or closed (`-1`).
    pub fn vm_sessions(&self, delta: i64) {
        self.connected_vms.inc_by(delta);
    }

    /// Records how long a request took.
    pub fn request(&self, op: &'static str, took: Duration) {
        self.request_seconds.get_or_create(&RequestLabels { op }).observe(took.as_secs_f64());
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// Serves `metrics` on `listener` until the process ends, one connection
/// at a time (scrapes are rare and small).
pub fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    for stream in listener.incoming().flatten() {
        if let Err(error) = answer(stream, &metrics) {
            tracing::debug!("metrics scrape failed: {error}");
        }
    }
}

fn answer(stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    // The request line, then headers up to the blank line.
    reader.read_line(&mut line)?;
    let get = line.starts_with("GET ");
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let (status, body) = if get { ("200 OK", metrics.render()) } else { ("405 Method Not Allowed", String::new()) };
    let mut out = &stream;
    write!(
        out,
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let metrics = Metrics::default();
        metrics.rtas_call("ibm,read-slot-reset-state2", 0);
        metrics.freeze();
        metrics.vm_sessions(2);
        metrics.request("rtas", Duration::from_micros(30));
        let text = metrics.render();
        for needle in [
            "eehd_rtas_calls_total{call=\"ibm,read-slot-reset-state2\",status=\"0\"} 1",
            "eehd_pe_freezes_total 1",
            "eehd_pe_recoveries_total 0",
            "eehd_pe_permanent_failures_total 0",
            "eehd_connected_vms 2",
            "eehd_request_seconds_count{op=\"rtas\"} 1",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}
