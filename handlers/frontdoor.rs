//! `serve`'s front door for IDEs: requests whose `Host` is
//! `e-<id>.localhost:<serve's port>` go to that environment's agent (HTTP and
//! WebSocket), so an IDE's address never changes across stop and start.
//!
//! Only agents the local backend itself started are reachable: `Doors` is
//! the backend's in-memory map from environment id to the Unix socket of the
//! agent process it spawned (in a 0700 folder only `serve`'s user can
//! enter); nothing is derived from the `Host` but the key into that map.
//! Every other request for such a host — stopped, starting, unknown,
//! another account's, a malformed id — gets one page that says nothing about
//! the environment and starts nothing; it links to the dashboard's
//! `GET /api/environments/<id>/ide`. A leaf module: compute fills the map,
//! the wiring routes to it.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::net::UnixStream;

/// How long connecting to an agent's socket may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The not-running page's one script: every 5 s it asks its own address's
/// readiness (`/_dev8/healthz`, this same page while nothing runs) and,
/// once the IDE answers, reloads a second later (the control plane records
/// `running` the moment the agent is ready), so a tab left open comes back
/// to the IDE by itself. (No `<meta refresh>`: reloading a page under a
/// reader's eyes is an accessibility failure.)
const PAGE_SCRIPT: &str = "const t=setInterval(async()=>{try{const r=await fetch('/_dev8/healthz',\
{cache:'no-store',redirect:'manual'});if(r.ok){clearInterval(t);setTimeout(()=>location.reload(),1000)}}\
catch(e){}},5000)";

/// The page's Content-Security-Policy: nothing but its inline style and
/// its one script (by hash), and requests to its own address.
fn page_csp() -> &'static str {
    static CSP: OnceLock<String> = OnceLock::new();
    CSP.get_or_init(|| {
        use base64::Engine;
        use sha2::Digest;
        let hash = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha256::digest(PAGE_SCRIPT.as_bytes()));
        format!(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{hash}'; \
             connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
    })
}

/// The agents the local backend started, by environment id, and the port
/// their addresses name (`serve`'s own, known once it is bound).
#[derive(Default)]
pub struct Doors {
    port: OnceLock<u16>,
    sockets: Mutex<HashMap<String, PathBuf>>,
}

impl Doors {
    /// `serve`'s port; set once, when its listener is bound.
    pub fn set_port(&self, port: u16) {
        let _ = self.port.set(port);
    }

    pub fn port(&self) -> Option<u16> {
        self.port.get().copied()
    }

    /// The address browsers use for an environment: `http://e-<id>.localhost:<port>`.
    pub fn origin(&self, id: &str) -> Option<String> {
        self.port().map(|p| format!("http://e-{id}.localhost:{p}"))
    }

    /// An agent process was started for `id`, listening on `socket`.
    pub fn open(&self, id: &str, socket: &Path) {
        self.lock().insert(id.to_string(), socket.to_path_buf());
    }

    /// The agent listening on `socket` is gone (a newer one's door stays).
    pub fn close(&self, id: &str, socket: &Path) {
        let mut sockets = self.lock();
        if sockets.get(id).is_some_and(|s| s == socket) {
            sockets.remove(id);
        }
    }

    /// The socket of the agent started for `id`, if one runs.
    pub fn socket(&self, id: &str) -> Option<PathBuf> {
        self.lock().get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, PathBuf>> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What the front door needs: the doors and where the dashboard is.
#[derive(Clone)]
pub struct FrontDoor {
    pub doors: Arc<Doors>,
    /// The dashboard's origin (`Policy::public_url`).
    pub dashboard: Arc<str>,
}

/// Whom a `Host` addresses.
#[derive(Debug, PartialEq, Eq)]
pub enum Addressed {
    /// Not an environment's address: the dashboard and API.
    Dashboard,
    /// `e-<id>.localhost:<port>` with a well-formed id.
    Environment(String),
    /// `e-<something>.localhost:<port>` where the something is no id.
    Malformed,
}

/// Read a `Host` header against `serve`'s own port. Host names compare
/// without case (ids are lower case). Nothing is allocated unless the host
/// names an environment: every request to `serve` passes through here.
pub fn addressed(host: &str, port: u16) -> Addressed {
    const SUFFIX: &str = ".localhost";
    let Some((name, given)) = host.rsplit_once(':') else {
        return Addressed::Dashboard;
    };
    // The port exactly as `serve`'s own is written: digits, no leading zero or sign.
    let same_port = given.bytes().all(|b| b.is_ascii_digit())
        && !given.starts_with('0')
        && given.parse::<u16>() == Ok(port);
    let at = name.len().wrapping_sub(SUFFIX.len());
    let Some(label) = name
        .get(at..)
        .filter(|s| same_port && s.eq_ignore_ascii_case(SUFFIX))
        .and_then(|_| name.get(..at))
    else {
        return Addressed::Dashboard;
    };
    let Some(id) = label
        .get(..2)
        .filter(|p| p.eq_ignore_ascii_case("e-"))
        .and_then(|_| label.get(2..))
    else {
        return Addressed::Dashboard;
    };
    let id = id.to_ascii_lowercase();
    if crate::domain::validation::is_id(&id) {
        Addressed::Environment(id)
    } else {
        Addressed::Malformed
    }
}

impl FrontDoor {
    /// The environment a request's `Host` names, or `None` for the
    /// dashboard and API (`Some(None)`: an environment's address with no
    /// well-formed id).
    fn whom(&self, req: &Request) -> Option<Option<String>> {
        let port = self.doors.port()?;
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        match addressed(host, port) {
            Addressed::Dashboard => None,
            Addressed::Malformed => Some(None),
            Addressed::Environment(id) => Some(Some(id)),
        }
    }

    /// An environment's address: its agent, or the not-running page.
    async fn answer(self, id: Option<String>, req: Request) -> Response {
        if let Some(socket) = id.as_deref().and_then(|id| self.doors.socket(id)) {
            match forward(&socket, req).await {
                Ok(r) => return r,
                // Started but not listening yet, or just gone: as not running.
                Err(e) => tracing::debug!(error = %e, "agent not reachable through the front door"),
            }
        }
        not_running(&self.dashboard, id.as_deref())
    }
}

/// The layer in front of `serve`'s router: an environment's address goes
/// to its agent or gets the not-running page; anything else passes on to
/// the route as it is, without a boxed future or a clone (axum clones each
/// route's service per request, so the door is two `Arc`s).
impl<S> tower::Layer<S> for FrontDoor {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Guarded<S> {
        Guarded {
            door: self.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct Guarded<S> {
    door: FrontDoor,
    inner: S,
}

impl<S> tower::Service<Request> for Guarded<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::Either<
        S::Future,
        futures::future::BoxFuture<'static, Result<Response, Self::Error>>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        use futures::FutureExt;
        match self.door.whom(&req) {
            None => futures::future::Either::Left(self.inner.call(req)),
            Some(id) => {
                let door = self.door.clone();
                futures::future::Either::Right(door.answer(id, req).map(Ok).boxed())
            }
        }
    }
}

/// The one page every non-running address answers: the same whether the
/// environment is stopped, starting, unknown or someone else's. It names
/// nothing but the id the browser already has, and starts nothing.
pub fn not_running(dashboard: &str, id: Option<&str>) -> Response {
    let dashboard = dashboard.trim_end_matches('/');
    let link = match id {
        Some(id) => format!("{dashboard}/api/environments/{id}/ide"),
        None => format!("{dashboard}/"),
    };
    let link = html_escape(&link);
    let page = format!(
        "<!doctype html><html lang=en><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width, initial-scale=1\">\
         <title>Dev8: this IDE is not running</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:34rem;margin:4rem auto;padding:0 1rem;color:#1f2328}}\
         a{{color:#0a58ca}}</style>\
         <main><h1>This IDE is not running</h1>\
         <p>Nothing answers at this address right now. If it is yours, open it from Dev8 to see its state and start it; \
         this page comes back to the IDE by itself once it runs.</p>\
         <p><a href=\"{link}\">Open in Dev8</a></p></main><script>{PAGE_SCRIPT}</script></html>"
    );
    let mut r = (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_str(page_csp()).unwrap_or(HeaderValue::from_static("default-src 'none'")),
    );
    r
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn is_upgrade(req: &Request) -> bool {
    req.headers().contains_key(header::UPGRADE)
}

/// Send one request to the agent on `socket` over a fresh connection and
/// give back its answer; an upgrade (WebSocket) becomes a byte tunnel
/// between the browser and the agent. The agent does its own checks
/// (session cookie, WebSocket Origin): the front door only chooses the door.
pub async fn forward(socket: &Path, mut req: Request) -> std::io::Result<Response> {
    let client_upgrade = is_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *req.uri_mut() = pq.parse::<Uri>().unwrap_or_else(|_| Uri::from_static("/"));
    let mut resp = send(socket, req).await?;
    if let Some(client) = client_upgrade
        && resp.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        let agent = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(client, agent) {
                Ok((client, agent)) => {
                    let (mut client, mut agent) = (TokioIo::new(client), TokioIo::new(agent));
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
                }
                Err(e) => tracing::debug!(error = %e, "front door upgrade failed"),
            }
        });
    }
    Ok(resp.map(Body::new))
}

/// One request to an agent's socket; the connection lives as long as the
/// answer (and its upgrade) needs it.
pub async fn send(
    socket: &Path,
    req: Request,
) -> std::io::Result<hyper::Response<hyper::body::Incoming>> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, UnixStream::connect(socket))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connecting"))??;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    sender
        .send_request(req)
        .await
        .map_err(std::io::Error::other)
}

/// `GET <path_and_query>` on an agent's socket within `timeout`: its status
/// and its body (an agent's readiness answer names the step it is at).
pub async fn probe(
    socket: &Path,
    path_and_query: &str,
    timeout: Duration,
) -> std::io::Result<(StatusCode, axum::body::Bytes)> {
    use http_body_util::BodyExt;
    let req = Request::get(path_and_query)
        .header(header::HOST, "localhost")
        .body(Body::empty())
        .map_err(std::io::Error::other)?;
    tokio::time::timeout(timeout, async {
        let answer = send(socket, req).await?;
        let status = answer.status();
        let body = http_body_util::Limited::new(answer.into_body(), 64 * 1024)
            .collect()
            .await
            .map_err(std::io::Error::other)?
            .to_bytes();
        Ok((status, body))
    })
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "01jd5xq8w9r3m4n5p6q7r8s9t0";

    #[test]
    fn only_an_e_dash_localhost_name_on_our_own_port_is_an_environment() {
        assert_eq!(
            addressed(&format!("e-{ID}.localhost:4000"), 4000),
            Addressed::Environment(ID.into())
        );
        assert_eq!(
            addressed(&format!("E-{}.LOCALHOST:4000", ID.to_uppercase()), 4000),
            Addressed::Environment(ID.into())
        );
        assert_eq!(
            addressed(&format!("e-{ID}.localhost:4001"), 4000),
            Addressed::Dashboard
        );
        assert_eq!(addressed("127.0.0.1:4000", 4000), Addressed::Dashboard);
        assert_eq!(addressed("localhost:4000", 4000), Addressed::Dashboard);
        assert_eq!(addressed("www.localhost:4000", 4000), Addressed::Dashboard);
        // The port only as `serve` writes its own; no port; names that are
        // not ASCII (read by byte offsets: nothing may panic).
        for other in [
            format!("e-{ID}.localhost:04000"),
            format!("e-{ID}.localhost:+4000"),
            format!("e-{ID}.localhost"),
            format!("e-{ID}.localhost:"),
            ":4000".into(),
            "é.localhost:4000".into(),
            "éé:4000".into(),
            "é:4000".into(),
        ] {
            assert_eq!(addressed(&other, 4000), Addressed::Dashboard, "{other}");
        }
        assert_eq!(addressed("e-é.localhost:4000", 4000), Addressed::Malformed);
        for bad in [
            "e-..%2f.localhost:4000",
            "e-.localhost:4000",
            "e-x.y.localhost:4000",
        ] {
            assert_eq!(addressed(bad, 4000), Addressed::Malformed, "{bad}");
        }
    }

    #[test]
    fn a_door_closes_only_for_the_agent_it_was_opened_for() {
        let doors = Doors::default();
        doors.open(ID, Path::new("/run/a.sock"));
        doors.open(ID, Path::new("/run/b.sock"));
        doors.close(ID, Path::new("/run/a.sock"));
        assert_eq!(doors.socket(ID), Some(PathBuf::from("/run/b.sock")));
        doors.close(ID, Path::new("/run/b.sock"));
        assert_eq!(doors.socket(ID), None);
    }
}
