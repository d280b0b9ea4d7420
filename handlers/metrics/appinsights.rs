//! Application Insights through OpenTelemetry: a meter provider whose
//! periodic reader and a tracer provider whose batch processor both hand
//! their data to `opentelemetry-application-insights`, which posts JSON
//! envelopes to the connection string's `IngestionEndpoint` (`/v2/track`).
//!
//! The exporter runs on the SDK's own threads, outside tokio; `Transport`
//! carries its requests over the tree's reqwest 0.12 (rustls, ring) by
//! spawning them onto the runtime that built it, so no second HTTP or TLS
//! stack is pulled in.

use super::{ReconcileRecord, RequestRecord};
use axum::body::Bytes;
use axum::http::{Request, Response};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::{Span as _, SpanKind, Status, Tracer as _, TracerProvider as _};
use opentelemetry_application_insights::HttpClient;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use secrecy::{ExposeSecret, SecretString};
use std::time::{Duration, SystemTime};

type HttpError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The exporter's HTTP client: reqwest 0.12 driven by the tokio runtime.
#[derive(Debug, Clone)]
struct Transport {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
    /// `host:port` of an `http://` loopback ingestion endpoint (tests).
    plain_http: Option<String>,
}

/// The authority of the connection string's `IngestionEndpoint` when it is
/// `http://` on a loopback address: a local stand-in, the only endpoint
/// that may be reached without TLS (as `COSMOS_ENDPOINT` allows http:// only
/// for a local emulator).
fn loopback_http_endpoint(connection_string: &str) -> Option<String> {
    let endpoint = connection_string.split(';').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("IngestionEndpoint")
            .then(|| v.trim())
    })?;
    let authority = endpoint.strip_prefix("http://")?.trim_end_matches('/');
    let authority = authority.split('/').next()?;
    let addr: std::net::SocketAddr = authority.parse().ok()?;
    addr.ip().is_loopback().then(|| authority.to_string())
}

#[async_trait::async_trait]
impl HttpClient for Transport {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let mut url = parts.uri.to_string();
        if let Some(authority) = &self.plain_http {
            // The exporter makes every endpoint https; a loopback stand-in
            // that the connection string names as http:// stays http.
            if let Some(rest) = url.strip_prefix(&format!("https://{authority}/")) {
                url = format!("http://{authority}/{rest}");
            }
        }
        let request = self
            .client
            .request(parts.method, url)
            .headers(parts.headers)
            .body(body)
            .build()?;
        let client = self.client.clone();
        // Awaited from the exporter's thread; the request itself runs on tokio.
        let answer = self
            .runtime
            .spawn(async move {
                let response = client.execute(request).await?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, headers, body))
            })
            .await??;
        let (status, headers, body) = answer;
        let mut response = Response::builder().status(status).body(body)?;
        *response.headers_mut() = headers;
        Ok(response)
    }
}

/// Where metrics and spans go when `APPLICATIONINSIGHTS_CONNECTION_STRING` is set.
pub struct Exporter {
    meters: SdkMeterProvider,
    tracers: SdkTracerProvider,
    tracer: SdkTracer,
}

/// How often metrics are sent (Application Insights aggregates per minute).
pub const METRIC_INTERVAL: Duration = Duration::from_secs(60);

impl Exporter {
    /// Build from a connection string. Must run inside a tokio runtime.
    pub fn from_connection_string(connection_string: &SecretString) -> anyhow::Result<Self> {
        let transport = Transport {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            runtime: tokio::runtime::Handle::try_current()?,
            plain_http: loopback_http_endpoint(connection_string.expose_secret()),
        };
        let exporter = opentelemetry_application_insights::Exporter::new_from_connection_string(
            connection_string.expose_secret(),
            transport,
        )
        // The message names the problem without echoing the key.
        .map_err(|e| anyhow::anyhow!("APPLICATIONINSIGHTS_CONNECTION_STRING is not valid: {e}"))?;
        let resource = Resource::builder().with_service_name("dev8").build();
        let meters = SdkMeterProvider::builder()
            .with_reader(
                PeriodicReader::builder(exporter.clone())
                    .with_interval(METRIC_INTERVAL)
                    .build(),
            )
            .with_resource(resource.clone())
            .build();
        let tracers = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = tracers.tracer("dev8");
        Ok(Exporter {
            meters,
            tracers,
            tracer,
        })
    }

    pub(super) fn meter(&self) -> Meter {
        self.meters.meter("dev8")
    }

    /// A request span (`requests` in Application Insights, named by method and template).
    pub(super) fn request_span(&self, r: &RequestRecord) {
        let mut span = self
            .tracer
            .span_builder(format!("{} {}", r.method, r.template))
            .with_kind(SpanKind::Server)
            .with_start_time(r.started)
            .with_attributes([
                KeyValue::new("http.request.method", r.method),
                KeyValue::new("http.route", r.template),
                KeyValue::new("http.response.status_code", i64::from(r.code)),
                KeyValue::new("dev8.route", r.route),
            ])
            .start(&self.tracer);
        if r.code >= 500 {
            span.set_status(Status::error("server error"));
        }
        span.end_with_timestamp(r.started + r.elapsed);
    }

    /// A reconcile span (a `requests` row named `reconcile`; failed when the step failed).
    pub(super) fn reconcile_span(&self, r: &ReconcileRecord<'_>) {
        let outcome = match &r.result {
            Ok(o) => *o,
            Err(_) => "failed",
        };
        let mut span = self
            .tracer
            .span_builder("reconcile")
            .with_kind(SpanKind::Consumer)
            .with_start_time(r.started)
            .with_attributes([
                KeyValue::new("messaging.system", "dev8-jobs"),
                KeyValue::new("dev8.environment_id", r.environment_id.to_string()),
                KeyValue::new("dev8.delivery", i64::from(r.delivery)),
                KeyValue::new("dev8.outcome", outcome),
            ])
            .start(&self.tracer);
        if let Err(cause) = &r.result {
            span.set_status(Status::error(cause.clone()));
        }
        span.end_with_timestamp(r.started + r.elapsed);
    }

    pub(super) fn sweep_span(
        &self,
        started: SystemTime,
        elapsed: Duration,
        report: &[(&'static str, u64)],
    ) {
        let attributes = report.iter().map(|(k, v)| {
            KeyValue::new(
                format!("dev8.sweep.{k}"),
                i64::try_from(*v).unwrap_or(i64::MAX),
            )
        });
        let mut span = self
            .tracer
            .span_builder("sweep")
            .with_kind(SpanKind::Consumer)
            .with_start_time(started)
            .with_attributes(attributes)
            .start(&self.tracer);
        span.end_with_timestamp(started + elapsed);
    }

    /// Export now. The SDK blocks until its threads are done, and they need
    /// the runtime to send: so it waits off the async threads.
    pub(super) async fn flush(&self) {
        let (meters, tracers) = (self.meters.clone(), self.tracers.clone());
        let done = tokio::task::spawn_blocking(move || {
            if let Err(e) = tracers.force_flush() {
                tracing::warn!(error = %e, "exporting traces failed");
            }
            if let Err(e) = meters.force_flush() {
                tracing::warn!(error = %e, "exporting metrics failed");
            }
        });
        let _ = done.await;
    }

    pub(super) async fn shutdown(&self) {
        let (meters, tracers) = (self.meters.clone(), self.tracers.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let _ = tracers.shutdown();
            let _ = meters.shutdown();
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::loopback_http_endpoint;

    #[test]
    fn only_a_loopback_http_endpoint_stays_plain() {
        let cs = |e: &str| format!("InstrumentationKey=k;IngestionEndpoint={e};LiveEndpoint=x");
        assert_eq!(
            loopback_http_endpoint(&cs("http://127.0.0.1:4318/")).as_deref(),
            Some("127.0.0.1:4318")
        );
        assert_eq!(
            loopback_http_endpoint(&cs("http://[::1]:80")).as_deref(),
            Some("[::1]:80")
        );
        for e in [
            "https://127.0.0.1:4318/",
            "http://10.0.0.4:80/",
            "http://westeurope-5.in.applicationinsights.azure.com/",
            "http://localhost.evil.example:80/",
        ] {
            assert_eq!(loopback_http_endpoint(&cs(e)), None, "{e}");
        }
    }
}
