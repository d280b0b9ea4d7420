//! What `functions/<Name>/function.json` must say for every function this
//! handler serves, derived from `http::ROUTES` and the envelope's own
//! functions. The committed files are checked against this by the tidy test
//! (`tests/it/functions_tidy.rs`), which can also rewrite them
//! (`DEV8_BLESS=1 cargo test --test it functions_tidy`).

use super::{QUEUE_BINDING, QUEUE_FUNCTION, TIMER_BINDING, TIMER_FUNCTION};
use crate::http::{ROUTES, RouteSpec};
use serde_json::{Value, json};

/// The Functions host's route prefix (host.json `extensions.http.routePrefix`).
pub const ROUTE_PREFIX: &str = "api";

/// The function route for an API path: the path without `/api/`.
pub fn function_route(path: &str) -> &str {
    path.strip_prefix("/api/")
        .unwrap_or(path.trim_start_matches('/'))
}

/// An HTTP function: trigger + http output only (so the host forwards the
/// request as-is), anonymous (the app authenticates), one method.
pub fn http_function(spec: &RouteSpec) -> Value {
    json!({
        "bindings": [
            {
                "type": "httpTrigger",
                "direction": "in",
                "name": "req",
                "authLevel": "anonymous",
                "methods": [spec.method.to_ascii_lowercase()],
                "route": function_route(spec.path),
            },
            {"type": "http", "direction": "out", "name": "res"}
        ]
    })
}

/// The queue-triggered reconcile job.
pub fn queue_function() -> Value {
    json!({
        "bindings": [{
            "type": "queueTrigger",
            "direction": "in",
            "name": QUEUE_BINDING,
            "queueName": "%DEV8_QUEUE_NAME%",
            "connection": "AzureWebJobsStorage",
        }]
    })
}

/// The timer-triggered sweep.
pub fn timer_function() -> Value {
    json!({
        "bindings": [{
            "type": "timerTrigger",
            "direction": "in",
            "name": TIMER_BINDING,
            "schedule": "%DEV8_SWEEP_SCHEDULE%",
            "runOnStartup": false,
            "useMonitor": true,
        }]
    })
}

/// Every function, by name, with its function.json.
pub fn functions() -> Vec<(String, Value)> {
    let mut all: Vec<(String, Value)> = ROUTES
        .iter()
        .map(|r| (r.function.to_string(), http_function(r)))
        .collect();
    all.push((QUEUE_FUNCTION.to_string(), queue_function()));
    all.push((TIMER_FUNCTION.to_string(), timer_function()));
    all
}

/// A function.json as committed: pretty JSON and a final newline.
pub fn render(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("JSON renders");
    s.push('\n');
    s
}
