//! A stand-in for the Static Web App's linked backend: the proxy that puts
//! the Function App's API under the dashboard's origin. It forwards every
//! request as it came (method, path and query, headers, cookies, body) and
//! every answer as it came back (status, headers, every `Set-Cookie`), and
//! like the real one it sets its own `Authorization` header on every
//! request, whether or not the client sent one: it replaces the client's
//! value (Azure/static-web-apps#34, #158, #275; also with custom handlers).
//! Like App Service's front end behind it, it appends the address it was
//! connected from, with its port, to `X-Forwarded-For` (so an app behind it
//! trusts one hop). Redirects are passed back, not followed. Loopback only.
//! `set_down(true)` makes it answer every request 502 without forwarding,
//! as the front end does while the Function App behind it cannot be reached.

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::Response;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// What the proxy puts in `Authorization`: a token of its own, shaped like
/// the JWT the platform sends (RS256, not Dev8's EdDSA; not Dev8's issuer).
pub const SWA_AUTHORIZATION: &str = "Bearer eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.\
eyJpc3MiOiJodHRwczovL3N0YXRpY3dlYmFwcHMuZXhhbXBsZSIsImF1ZCI6ImxpbmtlZC1iYWNrZW5kIn0.\
c3dhLXNpZ25hdHVyZQ";

const FORWARDED_FOR: &str = "x-forwarded-for";

/// Headers that belong to one connection, not to the request.
const HOP_BY_HOP: [HeaderName; 5] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::HOST,
    header::CONTENT_LENGTH,
    header::UPGRADE,
];

/// A bound proxy that does not forward yet: the app's public URL (this
/// proxy's) must be known before the app starts.
pub struct Pending {
    listener: TcpListener,
    pub url: String,
}

/// The running proxy; stops when dropped.
pub struct SwaProxy {
    pub url: String,
    down: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl SwaProxy {
    /// While down, every request gets 502 and nothing reaches the app.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

impl Drop for SwaProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Upstream {
    base: String,
    down: Arc<AtomicBool>,
    client: reqwest::Client,
}

pub async fn bind() -> Pending {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the proxy");
    let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    Pending { listener, url }
}

impl Pending {
    /// Forward everything to `upstream` (`http://127.0.0.1:<port>`).
    pub fn forward_to(self, upstream: &str) -> SwaProxy {
        let down = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Upstream {
            base: upstream.trim_end_matches('/').to_string(),
            down: down.clone(),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .unwrap(),
        });
        let router = Router::new().fallback(forward).with_state(state);
        let task = tokio::spawn(async move {
            let service = router.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(self.listener, service).await;
        });
        SwaProxy {
            url: self.url,
            down,
            task,
        }
    }
}

async fn forward(
    State(up): State<Arc<Upstream>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    if up.down.load(Ordering::SeqCst) {
        return bad_gateway();
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = up
        .client
        .request(parts.method.clone(), format!("{}{path}", up.base));
    for (name, value) in &parts.headers {
        if HOP_BY_HOP.contains(name) || name == header::AUTHORIZATION || name == FORWARDED_FOR {
            continue;
        }
        out = out.header(name, value);
    }
    // The client's entries as they came, then the peer as `ip:port`.
    let mut forwarded: Vec<&str> = parts
        .headers
        .get_all(FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let seen = peer.to_string();
    forwarded.push(&seen);
    out = out.header(FORWARDED_FOR, forwarded.join(", "));
    // The platform's own token, on every request.
    out = out.header(header::AUTHORIZATION, SWA_AUTHORIZATION);
    let answer = match out.body(body).send().await {
        Ok(a) => a,
        Err(_) => return bad_gateway(),
    };
    let mut back = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        if !HOP_BY_HOP.contains(name) {
            back = back.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    back.body(Body::from(bytes)).unwrap()
}

fn bad_gateway() -> Response {
    Response::builder()
        .status(StatusCode::BAD_GATEWAY)
        .body(Body::empty())
        .unwrap()
}
