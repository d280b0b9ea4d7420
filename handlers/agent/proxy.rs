//! The reverse proxy to code-server over its Unix socket: plain HTTP through
//! a pooled client, WebSockets as a byte tunnel whose client half is read by
//! the activity observer on the way through.

use super::activity::{Activity, Kind, WsObserver};
use super::session::Ended;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, Request, Response, StatusCode, Uri, header};

use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Connects the HTTP client to code-server's socket, whatever the URI says.
#[derive(Clone)]
struct UnixConnector(Arc<PathBuf>);

impl tower::Service<Uri> for UnixConnector {
    type Response = TokioIo<UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let path = self.0.clone();
        Box::pin(async move { Ok(TokioIo::new(UnixStream::connect(&*path).await?)) })
    }
}

/// Hop-by-hop headers, never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub struct Upstream {
    socket: Arc<PathBuf>,
    client: Client<UnixConnector, Body>,
}

impl Upstream {
    pub fn new(socket: PathBuf) -> Self {
        let socket = Arc::new(socket);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(UnixConnector(socket.clone()));
        Upstream { socket, client }
    }

    fn uri(path_and_query: &str) -> Uri {
        format!("http://localhost{path_and_query}")
            .parse()
            .unwrap_or_else(|_| Uri::from_static("http://localhost/"))
    }

    /// Does code-server answer its health check?
    pub async fn healthy(&self) -> bool {
        let Ok(req) = Request::get(Self::uri("/healthz"))
            .header(header::HOST, "localhost")
            .body(Body::empty())
        else {
            return false;
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), self.client.request(req)).await,
            Ok(Ok(resp)) if resp.status().is_success()
        )
    }

    /// Forward an HTTP request (its headers already cleaned by the caller).
    pub async fn forward(&self, req: Request<Body>) -> Response<Body> {
        let (mut parts, body) = req.into_parts();
        let pq = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        parts.uri = Self::uri(&pq);
        strip_hop_by_hop(&mut parts.headers);
        match self.client.request(Request::from_parts(parts, body)).await {
            Ok(resp) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, Body::new(body))
            }
            Err(e) => {
                tracing::warn!(error = %e, "code-server did not answer");
                bad_gateway()
            }
        }
    }

    /// Open a WebSocket to code-server and tunnel the client's connection to
    /// it until either side closes or the session `ended`.
    pub async fn tunnel(
        &self,
        mut req: Request<Body>,
        activity: Arc<Activity>,
        ended: Ended,
    ) -> Response<Body> {
        let vscode = req
            .uri()
            .query()
            .is_some_and(|q| q.contains("reconnectionToken="));
        let client_side = hyper::upgrade::on(&mut req);
        let (parts, _) = req.into_parts();
        let mut up = Request::builder()
            .method(parts.method)
            .uri(parts.uri.path_and_query().map_or("/", |p| p.as_str()));
        for (name, value) in &parts.headers {
            // No compression upstream: the observer reads frames as sent, and
            // with no extension in code-server's answer none is agreed with the browser.
            if name != header::SEC_WEBSOCKET_EXTENSIONS {
                up = up.header(name, value);
            }
        }
        let Ok(up) = up.body(Empty::<Bytes>::new()) else {
            return bad_gateway();
        };
        let stream = match UnixStream::connect(&*self.socket).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "code-server socket refused the WebSocket");
                return bad_gateway();
            }
        };
        let Ok((mut sender, conn)) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
        else {
            return bad_gateway();
        };
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let mut resp = match sender.send_request(up).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "code-server refused the WebSocket");
                return bad_gateway();
            }
        };
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            let (parts, body) = resp.into_parts();
            return Response::from_parts(parts, Body::new(body));
        }
        let upstream_side = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client_side, upstream_side) {
                Ok((client, upstream)) => {
                    tokio::select! {
                        _ = pump(
                            TokioIo::new(client),
                            TokioIo::new(upstream),
                            WsObserver::new(vscode),
                            activity,
                        ) => {}
                        _ = ended.wait() => {
                            tracing::info!("IDE session ended; WebSocket closed");
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
        let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        for (name, value) in resp.headers() {
            out = out.header(name, value);
        }
        out.body(Body::empty()).unwrap_or_else(|_| bad_gateway())
    }
}

/// Copy both ways until either side closes; the client's bytes pass the observer.
async fn pump<C, U>(client: C, upstream: U, mut observer: WsObserver, activity: Arc<Activity>)
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut ur, mut uw) = tokio::io::split(upstream);
    let up = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match cr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let used = observer.feed(&buf[..n]);
            if used > 0 {
                tracing::debug!(
                    messages = used,
                    bytes = n,
                    "WebSocket messages counted as use"
                );
                activity.touch(Kind::WebSocket);
            }
            if uw.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = uw.shutdown().await;
    };
    let down = async {
        let _ = tokio::io::copy(&mut ur, &mut cw).await;
        let _ = cw.shutdown().await;
    };
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

pub(super) fn bad_gateway() -> Response<Body> {
    let mut r = Response::new(Body::from(
        "The IDE is not answering yet; reload in a moment.",
    ));
    *r.status_mut() = StatusCode::BAD_GATEWAY;
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}
