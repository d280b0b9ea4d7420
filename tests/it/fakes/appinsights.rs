//! A stand-in for Application Insights' ingestion endpoint (the
//! connection string's `IngestionEndpoint`), from its published contract:
//! `POST {endpoint}/v2/track` (or `/v2.1/track`) with a JSON array of
//! telemetry envelopes (`name`, `time`, `iKey`, `tags`,
//! `data: {baseType, baseData}`), optionally gzip-encoded, answered with a
//! `TrackResponse` (`itemsReceived`, `itemsAccepted`, `errors`). It keeps
//! every envelope for the test to inspect and refuses anything malformed
//! with 400, as the service does.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::io::Read;
use std::sync::{Arc, Mutex};

pub struct Ingestion {
    pub url: String,
    items: Arc<Mutex<Vec<Value>>>,
}

impl Ingestion {
    /// The instrumentation key the test's connection string carries.
    pub const IKEY: &'static str = "00000000-0000-4000-8000-000000000014";

    pub async fn spawn() -> Self {
        let items = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/v2/track", post(track))
            .route("/v2.1/track", post(track))
            .with_state(items.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Ingestion { url, items }
    }

    /// A connection string pointing the exporter at this stand-in.
    pub fn connection_string(&self) -> String {
        format!(
            "InstrumentationKey={};IngestionEndpoint={}/;LiveEndpoint={}/",
            Self::IKEY,
            self.url,
            self.url
        )
    }

    /// Every envelope received so far.
    pub fn items(&self) -> Vec<Value> {
        self.items.lock().unwrap().clone()
    }
}

async fn track(
    State(items): State<Arc<Mutex<Vec<Value>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gzip = headers
        .get("content-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let mut text = Vec::new();
    if gzip {
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut text)
            .is_err()
        {
            return (StatusCode::BAD_REQUEST, "body is not gzip").into_response();
        }
    } else {
        text = body.to_vec();
    }
    let Ok(Value::Array(envelopes)) = serde_json::from_slice::<Value>(&text) else {
        return (StatusCode::BAD_REQUEST, "body is not a JSON array").into_response();
    };
    let well_formed = |e: &Value| {
        e["name"].is_string()
            && e["time"].is_string()
            && e["iKey"].is_string()
            && e["data"]["baseType"].is_string()
            && e["data"]["baseData"].is_object()
    };
    if let Some(bad) = envelopes.iter().find(|e| !well_formed(e)) {
        return (
            StatusCode::BAD_REQUEST,
            format!("malformed envelope: {bad}"),
        )
            .into_response();
    }
    let n = envelopes.len();
    items.lock().unwrap().extend(envelopes);
    axum::Json(json!({"itemsReceived": n, "itemsAccepted": n, "errors": []})).into_response()
}
