//! The Azure Functions custom-handler envelope (`handler functions`): what
//! the Functions host talks to on `127.0.0.1:$FUNCTIONS_CUSTOMHANDLER_PORT`.
//!
//! * `GET /` answers when the handler is ready;
//! * until it is (a token or store failure at start), the handler listens
//!   anyway: every function and `GET /` answer 503 `application/problem+json`
//!   naming the cause (secrets taken out), and initialisation is retried
//!   with backoff until it succeeds (`serve_when_ready`) — no crash loop;
//! * forwarded HTTP functions (`enableForwardingHttpRequest`) arrive with
//!   their original `/api/...` path and go to the same `api_router` as `serve`;
//! * the queue function (`POST /ReconcileJob`) and the timer function
//!   (`POST /IdleSweep`) arrive as `{"Data":{...},"Metadata":{...}}` and are
//!   answered with `{"Outputs":{"outcome":...},"Logs":[...],"ReturnValue":...}`
//!   as `application/json`, always with a body (see `Invocation::answer`). A non-2xx answer fails the
//!   invocation, so the host redelivers the message (and after
//!   `maxDequeueCount` moves it to `<queue>-poison`).
//!
//! Architecture invariant: this module unwraps and wraps envelopes and
//! nothing else. The job is `jobs::worker::handle_delivery` and the sweep is
//! `jobs::sweep::sweep`, the same functions `serve`'s worker and timer call.

pub mod logs;
pub mod manifest;
pub mod package;

use crate::config::{FunctionsArgs, QueueKind, StoreKind};
use crate::http::error::ApiError;
use crate::jobs::{sweep, worker};
use crate::platform::JobContext;
use crate::startup::{self, Overrides};
use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tracing::Instrument;

/// The queue-triggered function that runs the reconcile job.
pub const QUEUE_FUNCTION: &str = "ReconcileJob";
/// Its trigger binding's name: the key of the message in `Data`.
pub const QUEUE_BINDING: &str = "job";
/// The timer-triggered function that runs the sweep.
pub const TIMER_FUNCTION: &str = "IdleSweep";
/// Its trigger binding's name: the key of the timer info in `Data`.
pub const TIMER_BINDING: &str = "timer";
/// The key of the invocation's outcome in `Outputs`. The host binds only
/// outputs its function.json declares (the queue and timer functions declare
/// none), so this one is for the record; its presence keeps the host from
/// logging "Outputs not set" after every invocation.
pub const OUTCOME_OUTPUT: &str = "outcome";
/// The header the host sends with each invocation's id.
pub const INVOCATION_HEADER: &str = "x-azure-functions-invocationid";

/// Start `handler functions`: bind the host's port, then wire the platform
/// from settings (retried until it succeeds) and serve until `shutdown`.
pub async fn run(
    args: FunctionsArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if args.settings.queue_backend != QueueKind::Storage {
        // The queue trigger only sees the Storage queue: jobs sent elsewhere would never run.
        anyhow::bail!("handler functions needs DEV8_QUEUE_BACKEND=storage");
    }
    if args.settings.signing_keys.is_none() && args.settings.store != StoreKind::Sqlite {
        // Every instance would generate its own key and refuse the others' tokens.
        anyhow::bail!(
            "handler functions needs DEV8_SIGNING_KEYS (shared by every instance of the app)"
        );
    }
    if args.settings.secrets_key.is_none() && args.settings.store != StoreKind::Sqlite {
        // Every instance would seal with its own key and open none of the others' secrets.
        anyhow::bail!(
            "handler functions needs DEV8_SECRETS_KEY (shared by every instance of the app)"
        );
    }
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{}", args.port))?;
    let port = listener.local_addr()?.port();
    tracing::info!(port, "Functions custom handler listening");
    let secrets = args.settings.secret_values();
    let (settings, data_dir) = (args.settings, args.data_dir);
    let attempt = move || {
        let (settings, data_dir) = (settings.clone(), data_dir.clone());
        async move {
            let overrides = Overrides {
                background: Some(false),
                ..Default::default()
            };
            startup::wire(settings, port, &data_dir, overrides).await
        }
    };
    serve_when_ready(listener, attempt, secrets, Backoff::default(), shutdown).await
}

/// How `serve_when_ready` paces its attempts: `first`, doubled each time, at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

/// Where the handler is: still starting (why), or ready.
enum Readiness {
    Starting(String),
    Ready {
        router: Router,
        jobs: Arc<JobContext>,
    },
}

type SharedReadiness = Arc<RwLock<Readiness>>;

/// Serve on `listener` at once; wire the platform with `attempt`, again
/// after each failure (with `backoff`), until it succeeds. Meanwhile every
/// request is answered 503 `application/problem+json` naming the last
/// failure, with every value of `secrets` taken out.
pub async fn serve_when_ready<F, Fut>(
    listener: TcpListener,
    attempt: F,
    secrets: Vec<String>,
    backoff: Backoff,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = anyhow::Result<Arc<JobContext>>> + Send + 'static,
{
    let state: SharedReadiness = Arc::new(RwLock::new(Readiness::Starting(
        "initialisation has not finished".into(),
    )));
    let init = tokio::spawn(initialise(state.clone(), attempt, secrets, backoff));
    let app = Router::new().fallback(dispatch).with_state(state.clone());
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    init.abort();
    let jobs = match &*state.read().unwrap_or_else(|e| e.into_inner()) {
        Readiness::Ready { jobs, .. } => Some(jobs.clone()),
        Readiness::Starting(_) => None,
    };
    if let Some(jobs) = jobs {
        // Whatever Application Insights has not been sent yet goes now.
        jobs.metrics.shutdown().await;
    }
    served?;
    Ok(())
}

async fn initialise<F, Fut>(
    state: SharedReadiness,
    mut attempt: F,
    secrets: Vec<String>,
    backoff: Backoff,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Arc<JobContext>>>,
{
    let mut wait = backoff.first;
    for n in 1u32.. {
        match attempt().await {
            Ok(jobs) => {
                let router = router(jobs.clone());
                *state.write().unwrap_or_else(|e| e.into_inner()) =
                    Readiness::Ready { router, jobs };
                tracing::info!(attempts = n, "Functions custom handler ready");
                return;
            }
            Err(e) => {
                let cause = redact(&format!("{e:#}"), &secrets);
                tracing::error!(attempt = n, retry_in = ?wait, %cause, "not ready: initialisation failed");
                *state.write().unwrap_or_else(|e| e.into_inner()) = Readiness::Starting(cause);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(backoff.max);
            }
        }
    }
}

/// `text` with every value of `secrets` replaced by `[redacted]`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .filter(|s| !s.is_empty())
        .fold(text.to_string(), |t, s| t.replace(s.as_str(), "[redacted]"))
}

async fn dispatch(State(state): State<SharedReadiness>, req: Request) -> Response {
    let ready = match &*state.read().unwrap_or_else(|e| e.into_inner()) {
        Readiness::Ready { router, .. } => Ok(router.clone()),
        Readiness::Starting(cause) => Err(cause.clone()),
    };
    match ready {
        Ok(router) => match router.oneshot(req).await {
            Ok(r) => r,
            Err(never) => match never {},
        },
        Err(cause) => ApiError::NotReady(cause).into_response(),
    }
}

/// Serve the envelope on `listener` (tests call this with their own jobs context).
pub async fn serve(
    listener: TcpListener,
    jobs: Arc<JobContext>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(
        listener,
        router(jobs).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await?;
    Ok(())
}

/// The forwarded API plus readiness and the non-HTTP functions.
pub fn router(jobs: Arc<JobContext>) -> Router {
    let invocations = Router::new()
        .route("/", get(ready))
        .route(&format!("/{QUEUE_FUNCTION}"), post(queue_invocation))
        .route(&format!("/{TIMER_FUNCTION}"), post(timer_invocation))
        .fallback(unknown_function)
        .with_state(jobs.clone());
    crate::http::api_router(jobs.platform.clone()).merge(invocations)
}

async fn ready() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ready"}))).into_response()
}

async fn unknown_function() -> Response {
    Invocation::detached().fail(StatusCode::NOT_FOUND, "no such function in this handler")
}

/// One invocation's log: lines go to stdout (through tracing, inside a span
/// carrying the invocation id) and into the response's `Logs`, together with
/// whatever the job logs meanwhile (see `logs`).
struct Invocation {
    id: String,
    /// Lines kept here when no sink is set (outside `logs::capture`).
    logs: Vec<String>,
}

impl Invocation {
    fn new(headers: &HeaderMap) -> Self {
        let id = headers
            .get(INVOCATION_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-");
        // Only a plausible id is echoed (it goes to logs).
        let id = if id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            id
        } else {
            "-"
        };
        Invocation {
            id: id.to_string(),
            logs: Vec::new(),
        }
    }

    fn detached() -> Self {
        Invocation {
            id: "-".into(),
            logs: Vec::new(),
        }
    }

    fn push(&mut self, line: String) {
        if !logs::push(&line) {
            self.logs.push(format!("[{}] {line}", self.id));
        }
    }

    fn info(&mut self, line: String) {
        tracing::info!(target: logs::ENVELOPE_TARGET, "{line}");
        self.push(format!("INFO {line}"));
    }

    fn error(&mut self, line: String) {
        tracing::error!(target: logs::ENVELOPE_TARGET, "{line}");
        self.push(format!("ERROR {line}"));
    }

    /// The response payload. The host reads it on a 2xx answer and logs a
    /// warning when `Outputs` is empty ("Outputs not set on http response")
    /// or `ReturnValue` is null ("ReturnValue not set"); both carry the
    /// outcome, which binds to nothing (no output or `$return` binding).
    fn answer(mut self, status: StatusCode) -> Response {
        let mut lines = logs::take().unwrap_or_default();
        lines.append(&mut self.logs);
        let outcome = if status.is_success() {
            "done"
        } else {
            "failed"
        };
        let body = json!({
            "Outputs": {OUTCOME_OUTPUT: outcome},
            "Logs": lines,
            "ReturnValue": outcome,
        });
        (status, axum::Json(body)).into_response()
    }

    fn ok(self) -> Response {
        self.answer(StatusCode::OK)
    }

    fn fail(mut self, status: StatusCode, line: impl Into<String>) -> Response {
        self.error(line.into());
        self.answer(status)
    }
}

/// The request payload: `Data` keyed by binding name, `Metadata` from the trigger.
#[derive(Debug, Default, serde::Deserialize)]
pub struct Payload {
    #[serde(rename = "Data", default)]
    pub data: Map<String, Value>,
    #[serde(rename = "Metadata", default)]
    pub metadata: Map<String, Value>,
}

/// A queue message as the job sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub id: String,
    pub dequeue_count: u32,
    pub body: String,
}

/// Unwrap the queue trigger's payload. The host passes the message text
/// JSON-encoded a second time (`"\"{\\\"v\\\":1,...}\""`); a plain string
/// or a JSON value (other host versions) is taken as it is. `Metadata`
/// values may be strings (`"DequeueCount":"1"`) or numbers.
pub fn queue_message(payload: &Payload) -> Result<QueueMessage, String> {
    let body = match payload.data.get(QUEUE_BINDING) {
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::String(inner)) => inner,
            _ => s.clone(),
        },
        Some(Value::Null) | None => return Err(format!("Data has no '{QUEUE_BINDING}' message")),
        Some(other) => other.to_string(),
    };
    let meta = |k: &str| match payload.metadata.get(k) {
        Some(Value::String(s)) => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let id = meta("Id")
        .filter(|s| !s.is_empty())
        .ok_or("Metadata has no message Id")?;
    let dequeue_count = meta("DequeueCount")
        .and_then(|s| s.parse::<u32>().ok())
        .filter(|n| *n >= 1)
        .ok_or("Metadata has no valid DequeueCount")?;
    Ok(QueueMessage {
        id,
        dequeue_count,
        body,
    })
}

fn parse_payload(body: &Bytes) -> Result<Payload, String> {
    serde_json::from_slice(body)
        .map_err(|e| format!("the invocation body is not a Functions payload: {e}"))
}

async fn queue_invocation(
    State(p): State<Arc<JobContext>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inv = Invocation::new(&headers);
    let id = inv.id.clone();
    let span =
        tracing::info_span!("invocation", function = QUEUE_FUNCTION, invocation_id = %inv.id);
    let work = async move {
        let message = match parse_payload(&body).and_then(|p| queue_message(&p)) {
            Ok(m) => m,
            Err(e) => return inv.fail(StatusCode::BAD_REQUEST, e),
        };
        inv.info(format!(
            "message {} delivery {}",
            message.id, message.dequeue_count
        ));
        match worker::handle_delivery(&p, &message.body, &message.id, message.dequeue_count).await {
            Ok(()) => {
                inv.info(format!("message {} done", message.id));
                inv.ok()
            }
            Err(e) => {
                // Non-2xx: the host makes the message visible again, or moves it to poison
                // after maxDequeueCount; handle_delivery already marked the environment.
                inv.fail(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("message {} failed: {e:#}", message.id),
                )
            }
        }
    };
    logs::capture(&id, work.instrument(span)).await
}

async fn timer_invocation(
    State(p): State<Arc<JobContext>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut inv = Invocation::new(&headers);
    let id = inv.id.clone();
    let span =
        tracing::info_span!("invocation", function = TIMER_FUNCTION, invocation_id = %inv.id);
    let work = async move {
        let payload = match parse_payload(&body) {
            Ok(p) => p,
            Err(e) => return inv.fail(StatusCode::BAD_REQUEST, e),
        };
        let past_due = payload
            .data
            .get(TIMER_BINDING)
            .and_then(|t| t.get("IsPastDue"))
            .and_then(Value::as_bool);
        if past_due == Some(true) {
            inv.info("timer is past due; sweeping now".into());
        }
        match sweep::sweep(&p).await {
            Ok(report) => {
                inv.info(format!(
                    "sweep: {}",
                    serde_json::to_string(&report).unwrap_or_default()
                ));
                inv.ok()
            }
            Err(e) => inv.fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("sweep failed: {e:#}"),
            ),
        }
    };
    logs::capture(&id, work.instrument(span)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(v: Value) -> Payload {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn unwraps_the_double_encoded_message_and_string_metadata() {
        let body = r#"{"v":1,"kind":"reconcile","userId":"u","environmentId":"e"}"#;
        let p = payload(json!({
            "Data": {"job": serde_json::to_string(body).unwrap()},
            "Metadata": {"Id": "m1", "DequeueCount": "2", "v": "1", "kind": "reconcile", "sys": {"MethodName": "ReconcileJob"}}
        }));
        assert_eq!(
            queue_message(&p).unwrap(),
            QueueMessage {
                id: "m1".into(),
                dequeue_count: 2,
                body: body.into()
            }
        );
        // Not double-encoded, numeric count: taken as it is.
        let p =
            payload(json!({"Data": {"job": body}, "Metadata": {"Id": "m1", "DequeueCount": 1}}));
        assert_eq!(queue_message(&p).unwrap().body, body);
        let p = payload(
            json!({"Data": {"job": {"v": 1}}, "Metadata": {"Id": "m1", "DequeueCount": "1"}}),
        );
        assert_eq!(queue_message(&p).unwrap().body, r#"{"v":1}"#);
    }

    #[test]
    fn refuses_payloads_without_message_or_metadata() {
        for v in [
            json!({"Data": {}, "Metadata": {"Id": "m", "DequeueCount": "1"}}),
            json!({"Data": {"job": "x"}, "Metadata": {"DequeueCount": "1"}}),
            json!({"Data": {"job": "x"}, "Metadata": {"Id": "m", "DequeueCount": "zero"}}),
            json!({"Data": {"job": "x"}, "Metadata": {"Id": "m", "DequeueCount": "0"}}),
        ] {
            assert!(queue_message(&payload(v.clone())).is_err(), "{v}");
        }
    }

    #[test]
    fn a_not_ready_cause_keeps_no_secret_or_piece_of_one() {
        let mut settings = crate::config::Settings::from_env().unwrap();
        let key = "c2VjcmV0LWtleS1kby1ub3QtbG9n";
        settings.storage.connection_string = Some(
            format!("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={key}").into(),
        );
        settings.signing_keys = Some("k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8".into());
        let secrets = settings.secret_values();
        let cause = format!(
            "connecting to the Storage queue: DefaultEndpointsProtocol=https, bad key {key} in AccountKey={key}; seed AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8 of k1"
        );
        let shown = redact(&cause, &secrets);
        // The values go; setting names and key ids stay readable.
        assert_eq!(
            shown,
            "connecting to the Storage queue: DefaultEndpointsProtocol=https, bad key [redacted] in AccountKey=[redacted]; seed [redacted] of k1"
        );
    }
}
