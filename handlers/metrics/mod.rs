//! What an operator sees: every metric Dev8 keeps, in one place, with its
//! name and labels. Callers say what happened (`http_request`, `reconcile`,
//! `job`, `idle_stop`, …) and `Metrics` records it:
//!
//! * always in a Prometheus registry of its own (one per `Application`),
//!   which `serve` exposes as `GET /metrics` in the Prometheus text format;
//! * and, when `APPLICATIONINSIGHTS_CONNECTION_STRING` is set, as the same
//!   OpenTelemetry instruments plus a span per request and per job, exported
//!   to Application Insights (`appinsights`).
//!
//! Architecture invariant: every label value comes from a closed set — a
//! route's function name from `http::ROUTES` (or `UNMATCHED_ROUTE`), an HTTP
//! status code, a `Status`, a `JobOutcome`. No id, path, email or token is
//! ever a label; ids may appear in traces only.
//!
//! Two gauges are refreshed rather than counted: `dev8_environments{status}`
//! is set from one store query (`Store::environment_counts`) on every
//! `/metrics` scrape and at the end of every sweep (Azure has no scrape, so
//! its value there is as fresh as the timer); `dev8_queue_depth` is set by
//! the worker after each message it handles and by every sweep (HTTP
//! handlers have no queue to ask).

pub mod appinsights;

use crate::domain::Status;
use appinsights::Exporter;
use opentelemetry::KeyValue;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use std::time::{Duration, SystemTime};

/// The route label of an `/api` request that matched no route.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// What became of one delivery of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobOutcome {
    /// Handled; the message is deleted.
    Done,
    /// Failed; the message will be delivered again.
    Retried,
    /// Failed on its last allowed delivery; the message goes to the poison queue.
    Poisoned,
}

impl JobOutcome {
    pub const ALL: [JobOutcome; 3] = [JobOutcome::Done, JobOutcome::Retried, JobOutcome::Poisoned];

    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Done => "done",
            JobOutcome::Retried => "retried",
            JobOutcome::Poisoned => "poisoned",
        }
    }
}

/// One finished API request, as the HTTP layer reports it.
#[derive(Debug, Clone, Copy)]
pub struct RequestRecord {
    /// The route's function name from `http::ROUTES`, or `UNMATCHED_ROUTE`.
    pub route: &'static str,
    /// The route's path template (`/api/environments/{id}`), never the raw path.
    pub template: &'static str,
    pub method: &'static str,
    pub code: u16,
    pub started: SystemTime,
    pub elapsed: Duration,
}

/// The status codes a route keeps its counter for at hand
/// (`RouteInstruments`); any other is looked up by label when it happens.
const COMMON_CODES: [u16; 12] = [200, 201, 202, 204, 302, 400, 401, 403, 404, 409, 429, 500];

/// One route's request instruments: its duration histogram and its
/// counters for the common status codes, each looked up by label on its
/// first use (so a route nobody called has no series, as before). After
/// that, counting a request through them hashes no label values and takes
/// no lock of the registry's.
pub struct RouteInstruments {
    route: &'static str,
    duration: std::sync::OnceLock<Histogram>,
    codes: [std::sync::OnceLock<IntCounter>; COMMON_CODES.len()],
}

/// One reconcile, as the worker reports it.
#[derive(Debug, Clone)]
pub struct ReconcileRecord<'a> {
    pub environment_id: &'a str,
    pub delivery: u32,
    /// `Ok(outcome)` (`Done`, `InProgress`, …) or `Err(cause)`.
    pub result: Result<&'static str, String>,
    pub started: SystemTime,
    pub elapsed: Duration,
}

/// Buckets for request and reconcile durations, in seconds.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The Prometheus side: names and labels exactly as documented.
struct Prom {
    registry: Registry,
    environments: IntGaugeVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    reconcile_duration: Histogram,
    jobs: IntCounterVec,
    queue_depth: IntGauge,
    idle_stops: IntCounter,
}

impl Prom {
    fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let environments = IntGaugeVec::new(
            Opts::new("dev8_environments", "Environments by status"),
            &["status"],
        )?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "dev8_http_requests_total",
                "API requests by route name and status code",
            ),
            &["route", "code"],
        )?;
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "dev8_http_request_duration_seconds",
                "API request duration by route name",
            )
            .buckets(BUCKETS.to_vec()),
            &["route"],
        )?;
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "dev8_reconcile_duration_seconds",
                "Duration of one reconcile step",
            )
            .buckets(BUCKETS.to_vec()),
        )?;
        let jobs = IntCounterVec::new(
            Opts::new("dev8_jobs_total", "Job deliveries by outcome"),
            &["outcome"],
        )?;
        let queue_depth = IntGauge::new(
            "dev8_queue_depth",
            "Messages in the job queue, visible or not",
        )?;
        let idle_stops = IntCounter::new(
            "dev8_idle_stops_total",
            "Environments stopped for being idle",
        )?;
        registry.register(Box::new(environments.clone()))?;
        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_duration.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(queue_depth.clone()))?;
        registry.register(Box::new(idle_stops.clone()))?;
        // Every status and outcome is present from the start (a 0 is an answer).
        for s in Status::ALL {
            environments.with_label_values(&[s.as_str()]).set(0);
        }
        for o in JobOutcome::ALL {
            jobs.with_label_values(&[o.as_str()]);
        }
        Ok(Prom {
            registry,
            environments,
            http_requests,
            http_duration,
            reconcile_duration,
            jobs,
            queue_depth,
            idle_stops,
        })
    }
}

/// The OpenTelemetry side: the same instruments, and the tracer.
struct Otel {
    exporter: Exporter,
    environments: opentelemetry::metrics::Gauge<u64>,
    http_requests: opentelemetry::metrics::Counter<u64>,
    http_duration: opentelemetry::metrics::Histogram<f64>,
    reconcile_duration: opentelemetry::metrics::Histogram<f64>,
    jobs: opentelemetry::metrics::Counter<u64>,
    queue_depth: opentelemetry::metrics::Gauge<u64>,
    idle_stops: opentelemetry::metrics::Counter<u64>,
}

impl Otel {
    fn new(exporter: Exporter) -> Self {
        let m = exporter.meter();
        Otel {
            environments: m.u64_gauge("dev8_environments").build(),
            http_requests: m.u64_counter("dev8_http_requests_total").build(),
            http_duration: m
                .f64_histogram("dev8_http_request_duration_seconds")
                .with_unit("s")
                .with_boundaries(BUCKETS.to_vec())
                .build(),
            reconcile_duration: m
                .f64_histogram("dev8_reconcile_duration_seconds")
                .with_unit("s")
                .with_boundaries(BUCKETS.to_vec())
                .build(),
            jobs: m.u64_counter("dev8_jobs_total").build(),
            queue_depth: m.u64_gauge("dev8_queue_depth").build(),
            idle_stops: m.u64_counter("dev8_idle_stops_total").build(),
            exporter,
        }
    }
}

/// Every metric of one application.
pub struct Metrics {
    prom: Prom,
    otel: Option<Otel>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("exporting", &self.otel.is_some())
            .finish()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(None)
    }
}

impl Metrics {
    /// A fresh registry; with `exporter`, everything is also sent to Application Insights.
    pub fn new(exporter: Option<Exporter>) -> Self {
        Metrics {
            prom: Prom::new().expect("metric names and labels are valid"),
            otel: exporter.map(Otel::new),
        }
    }

    /// The registry in the Prometheus text format (`text/plain; version=0.0.4`).
    pub fn encode(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail on I/O; a malformed family would be our bug.
        if let Err(e) = TextEncoder::new().encode(&self.prom.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    /// The content type of `encode`'s output.
    pub fn content_type(&self) -> &'static str {
        prometheus::TEXT_FORMAT
    }

    /// `route`'s request instruments, to keep for counting its requests
    /// (`http_request_on`).
    pub fn route_instruments(&self, route: &'static str) -> RouteInstruments {
        RouteInstruments {
            route,
            duration: std::sync::OnceLock::new(),
            codes: Default::default(),
        }
    }

    /// Count one request (`http_request_on` with instruments looked up now).
    pub fn http_request(&self, r: RequestRecord) {
        self.http_request_on(&self.route_instruments(r.route), r);
    }

    /// Count one request of the route `on` holds the instruments of. With
    /// a common status code nothing is looked up by label.
    pub fn http_request_on(&self, on: &RouteInstruments, r: RequestRecord) {
        debug_assert_eq!(on.route, r.route);
        let looked_up;
        let counter = match COMMON_CODES.iter().position(|c| *c == r.code) {
            Some(i) => on.codes[i].get_or_init(|| {
                self.prom
                    .http_requests
                    .with_label_values(&[r.route, &r.code.to_string()])
            }),
            None => {
                looked_up = self
                    .prom
                    .http_requests
                    .with_label_values(&[r.route, &r.code.to_string()]);
                &looked_up
            }
        };
        counter.inc();
        on.duration
            .get_or_init(|| self.prom.http_duration.with_label_values(&[r.route]))
            .observe(r.elapsed.as_secs_f64());
        if let Some(o) = &self.otel {
            let route = KeyValue::new("route", r.route);
            o.http_duration
                .record(r.elapsed.as_secs_f64(), std::slice::from_ref(&route));
            o.http_requests
                .add(1, &[route, KeyValue::new("code", r.code.to_string())]);
            o.exporter.request_span(&r);
        }
    }

    pub fn reconcile(&self, r: &ReconcileRecord<'_>) {
        self.prom
            .reconcile_duration
            .observe(r.elapsed.as_secs_f64());
        if let Some(o) = &self.otel {
            o.reconcile_duration.record(r.elapsed.as_secs_f64(), &[]);
            o.exporter.reconcile_span(r);
        }
    }

    pub fn job(&self, outcome: JobOutcome) {
        self.prom.jobs.with_label_values(&[outcome.as_str()]).inc();
        if let Some(o) = &self.otel {
            o.jobs.add(1, &[KeyValue::new("outcome", outcome.as_str())]);
        }
    }

    pub fn queue_depth(&self, messages: u64) {
        self.prom
            .queue_depth
            .set(i64::try_from(messages).unwrap_or(i64::MAX));
        if let Some(o) = &self.otel {
            o.queue_depth.record(messages, &[]);
        }
    }

    pub fn idle_stop(&self) {
        self.prom.idle_stops.inc();
        if let Some(o) = &self.otel {
            o.idle_stops.add(1, &[]);
        }
    }

    /// Set the environments gauge; a status missing from `counts` has none.
    pub fn environments(&self, counts: &[(Status, u64)]) {
        for s in Status::ALL {
            let n = counts
                .iter()
                .filter(|(c, _)| *c == s)
                .map(|(_, n)| *n)
                .sum::<u64>();
            self.prom
                .environments
                .with_label_values(&[s.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
            if let Some(o) = &self.otel {
                o.environments
                    .record(n, &[KeyValue::new("status", s.as_str())]);
            }
        }
    }

    /// A sweep finished (a span in Application Insights; counters are kept elsewhere).
    pub fn sweep(&self, started: SystemTime, elapsed: Duration, report: &[(&'static str, u64)]) {
        if let Some(o) = &self.otel {
            o.exporter.sweep_span(started, elapsed, report);
        }
    }

    /// Send whatever is buffered to Application Insights now (tests, shutdown).
    pub async fn flush(&self) {
        if let Some(o) = &self.otel {
            o.exporter.flush().await;
        }
    }

    /// Flush and stop the exporter's threads.
    pub async fn shutdown(&self) {
        if let Some(o) = &self.otel {
            o.exporter.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_routes_kept_instruments_count_into_the_same_series() {
        let m = Metrics::default();
        let on = m.route_instruments("Health");
        let request = |code| RequestRecord {
            route: "Health",
            template: "/api/health",
            method: "GET",
            code,
            started: SystemTime::now(),
            elapsed: Duration::from_millis(1),
        };
        // A common code (kept at hand), an uncommon one (looked up), and the
        // same common code counted by a label lookup.
        for code in [200, 200, 418] {
            m.http_request_on(&on, request(code));
        }
        m.http_request(request(200));
        let text = m.encode();
        for line in [
            "dev8_http_requests_total{code=\"200\",route=\"Health\"} 3",
            "dev8_http_requests_total{code=\"418\",route=\"Health\"} 1",
            "dev8_http_request_duration_seconds_count{route=\"Health\"} 4",
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }

    #[test]
    fn names_and_labels_are_the_documented_ones() {
        let m = Metrics::default();
        m.http_request(RequestRecord {
            route: "EnvironmentGet",
            template: "/api/environments/{id}",
            method: "GET",
            code: 404,
            started: SystemTime::now(),
            elapsed: Duration::from_millis(3),
        });
        m.job(JobOutcome::Retried);
        m.idle_stop();
        m.queue_depth(4);
        m.environments(&[(Status::Running, 2)]);
        let text = m.encode();
        for line in [
            "# TYPE dev8_http_requests_total counter",
            "dev8_http_requests_total{code=\"404\",route=\"EnvironmentGet\"} 1",
            "# TYPE dev8_http_request_duration_seconds histogram",
            "dev8_http_request_duration_seconds_count{route=\"EnvironmentGet\"} 1",
            "# TYPE dev8_reconcile_duration_seconds histogram",
            "dev8_jobs_total{outcome=\"retried\"} 1",
            "dev8_jobs_total{outcome=\"poisoned\"} 0",
            "dev8_queue_depth 4",
            "dev8_idle_stops_total 1",
            "dev8_environments{status=\"running\"} 2",
            "dev8_environments{status=\"error\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }
}
