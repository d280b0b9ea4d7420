//! Transient Cosmos errors are retried, boundedly: the adapter is pointed at
//! an in-test proxy on loopback in front of the Cosmos-compatible server that
//! answers chosen document writes with 429 (with `x-ms-retry-after-ms`) or
//! 503 before letting them through (full tier).

use crate::peers::cosmos;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{Duration as Days, Utc};
use dev8::domain::Session;
use dev8::store::{CosmosStore, Store, StoreError};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the proxy answers the next document writes with, in order.
#[derive(Clone, Copy, Debug)]
enum Fault {
    Throttle { retry_after_ms: u64 },
    Unavailable,
}

#[derive(Clone)]
struct Proxy {
    upstream: String,
    own_url: String,
    http: reqwest::Client,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    /// Every fault applies again forever once the queue has this one left.
    repeat_last: Arc<Mutex<bool>>,
    writes_seen: Arc<Mutex<u32>>,
}

impl Proxy {
    fn inject(&self, faults: &[Fault], repeat_last: bool) {
        *self.faults.lock().unwrap() = faults.iter().copied().collect();
        *self.repeat_last.lock().unwrap() = repeat_last;
        *self.writes_seen.lock().unwrap() = 0;
    }

    fn writes_seen(&self) -> u32 {
        *self.writes_seen.lock().unwrap()
    }

    fn next_fault(&self) -> Option<Fault> {
        let mut q = self.faults.lock().unwrap();
        if q.len() == 1 && *self.repeat_last.lock().unwrap() {
            return q.front().copied();
        }
        q.pop_front()
    }
}

fn is_document_write(method: &Method, path: &str, headers: &HeaderMap) -> bool {
    let query = headers
        .get("x-ms-documentdb-isquery")
        .is_some_and(|v| v == "true")
        || headers.get("content-type").is_some_and(|v| {
            v.to_str()
                .unwrap_or_default()
                .starts_with("application/query+json")
        });
    (method == Method::POST && path.ends_with("/docs") && !query)
        || (method == Method::PUT && path.contains("/docs/"))
}

async fn forward(State(p): State<Proxy>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    if is_document_write(&parts.method, &path, &parts.headers) {
        *p.writes_seen.lock().unwrap() += 1;
        match p.next_fault() {
            Some(Fault::Throttle { retry_after_ms }) => {
                let mut r = (
                    StatusCode::TOO_MANY_REQUESTS,
                    r#"{"code":"TooManyRequests","message":"throttled"}"#,
                )
                    .into_response();
                r.headers_mut()
                    .insert("x-ms-retry-after-ms", HeaderValue::from(retry_after_ms));
                r.headers_mut()
                    .insert("x-ms-substatus", HeaderValue::from_static("3200"));
                r.headers_mut()
                    .insert("content-type", HeaderValue::from_static("application/json"));
                return r;
            }
            Some(Fault::Unavailable) => {
                let mut r = (
                    StatusCode::SERVICE_UNAVAILABLE,
                    r#"{"code":"ServiceUnavailable","message":"busy"}"#,
                )
                    .into_response();
                r.headers_mut()
                    .insert("content-type", HeaderValue::from_static("application/json"));
                return r;
            }
            None => {}
        }
    }
    let body = to_bytes(body, 16 << 20).await.expect("request body");
    let url = format!(
        "{}{}",
        p.upstream,
        parts
            .uri
            .path_and_query()
            .map(|x| x.as_str())
            .unwrap_or("/")
    );
    let mut up = p
        .http
        .request(parts.method.clone(), url)
        .body(body.to_vec());
    for (name, value) in parts.headers.iter() {
        if name != "host" && name != "content-length" {
            up = up.header(name, value);
        }
    }
    let resp = up.send().await.expect("upstream answers");
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut bytes = resp.bytes().await.expect("upstream body").to_vec();
    if parts.method == Method::GET && path == "/" {
        // The account metadata names the endpoints the SDK then uses: name
        // the proxy, or it would go around it.
        let text = String::from_utf8(bytes).expect("utf-8 metadata");
        bytes = text
            .replace(&format!("{}/", p.upstream), &format!("{}/", p.own_url))
            .into_bytes();
    }
    let mut out = Response::builder().status(status);
    for (name, value) in headers.iter() {
        if name != "content-length" && name != "transfer-encoding" && name != "connection" {
            out = out.header(name, value);
        }
    }
    out.body(Body::from(bytes)).expect("response")
}

async fn start_proxy() -> Proxy {
    let upstream = cosmos::cosmos_endpoint().trim_end_matches('/').to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let own_url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let proxy = Proxy {
        upstream,
        own_url,
        http: reqwest::Client::new(),
        faults: Default::default(),
        repeat_last: Default::default(),
        writes_seen: Default::default(),
    };
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(proxy.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    proxy
}

async fn store_behind(proxy: &Proxy) -> Arc<dyn Store> {
    let mut config = cosmos::cosmos_config();
    config.endpoint = proxy.own_url.clone();
    Arc::new(
        CosmosStore::connect(&config)
            .await
            .expect("connect through the proxy"),
    )
}

fn session() -> Session {
    let now = Utc::now();
    let id = dev8::domain::new_id();
    Session {
        id,
        user_id: "u1".into(),
        created_at: now,
        expires_at: now + Days::hours(1),
        revoked: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs the Cosmos-compatible server"]
async fn throttling_and_unavailability_are_retried_and_retry_after_is_honoured() {
    let proxy = start_proxy().await;
    let store = store_behind(&proxy).await;

    // Two 503s, then the write goes through.
    proxy.inject(&[Fault::Unavailable, Fault::Unavailable], false);
    let s = session();
    store
        .insert_session(&s)
        .await
        .expect("retried past two 503s");
    assert_eq!(
        store.session(&s.id).await.unwrap().map(|x| x.id),
        Some(s.id.clone())
    );
    assert!(
        proxy.writes_seen() >= 3,
        "the write was tried again: {}",
        proxy.writes_seen()
    );

    // A 429 asking for 400 ms: the retry waits at least that long.
    proxy.inject(
        &[Fault::Throttle {
            retry_after_ms: 400,
        }],
        false,
    );
    let started = Instant::now();
    store
        .insert_session(&session())
        .await
        .expect("retried past a 429");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "retry-after honoured: {:?}",
        started.elapsed()
    );
    assert_eq!(proxy.writes_seen(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs the Cosmos-compatible server"]
async fn retries_are_bounded() {
    let proxy = start_proxy().await;
    let store = store_behind(&proxy).await;

    proxy.inject(&[Fault::Unavailable], true);
    let started = Instant::now();
    let result = store.insert_session(&session()).await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    let (tries, took) = (proxy.writes_seen(), started.elapsed());
    eprintln!("bounded: 503 forever gave up after {tries} tries in {took:?}");
    assert!(
        (4..=24).contains(&tries) && took < Duration::from_secs(30),
        "503 forever: {tries} tries in {took:?}"
    );

    proxy.inject(&[Fault::Throttle { retry_after_ms: 10 }], true);
    let started = Instant::now();
    let result = store.insert_session(&session()).await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    let (tries, took) = (proxy.writes_seen(), started.elapsed());
    assert!(
        (4..=24).contains(&tries) && took < Duration::from_secs(30),
        "429 forever: {tries} tries in {took:?}"
    );
    eprintln!("bounded: 429 forever gave up after {tries} tries in {took:?}");
}
