//! The environment agent (`handler agent`): runs next to code-server in every
//! environment and is the only way in. It starts and supervises code-server
//! on a Unix socket with `--auth none`, redeems IDE tickets for its own
//! session cookie, proxies HTTP and WebSocket traffic, answers readiness at
//! `/_dev8/healthz`, pushes activity that means use to the control plane,
//! and sends the periodic report (usage, `report`).
//! It depends on no store, queue or compute module: everything it knows
//! comes from its settings (environment variables, never arguments).

pub mod activity;
pub mod code_server;
pub mod extension;
pub mod final_snapshot;
pub mod proxy;
pub mod report;
pub mod session;
pub mod setup;
pub mod trust;
pub mod usage;

use crate::agent_env::Listen;
use crate::auth::KeySet;
use activity::{Activity, Kind, Reporter};
use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use code_server::{CodeServer, Running};
use secrecy::{ExposeSecret, SecretString};
use session::Sessions;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The agent's session cookie (with the `__Host-` prefix over https).
pub const COOKIE: &str = "dev8_ide";
/// Cookies never passed on to code-server: the agent's and the control plane's.
const PRIVATE_COOKIES: &[&str] = &[
    "dev8_ide",
    "__Host-dev8_ide",
    "dev8_session",
    "__Host-dev8_session",
];

/// Everything the agent is told at start.
pub struct AgentConfig {
    pub environment_id: String,
    /// The environment's name at this start: the IDE tab's title names it.
    pub environment_name: Option<String>,
    /// The agent token (`aud=agent:<id>`) for activity reports.
    pub token: SecretString,
    /// The control plane's public keys (JWKS JSON) for IDE tickets.
    pub jwks: String,
    /// The issuer tickets must name.
    pub issuer: String,
    /// Where browsers and the agent reach the control plane.
    pub control_plane_url: String,
    /// Where the agent listens: a Unix socket behind `serve`'s front door
    /// (local), loopback TCP behind the TLS sidecar (ACI).
    pub listen: Listen,
    /// The environment's own origin as browsers see it (`http://e-<id>.localhost:<port>`);
    /// `None` behind a TLS sidecar that serves only this environment's name
    /// (ACI): then the origin is `https://<Host>` of each request.
    pub origin: Option<String>,
    /// Run code-server as this user (the images' non-root `dev`).
    pub ide_user: Option<String>,
    /// Local compute: the IDE runs as the agent's own user, whoever that is.
    pub ide_as_agent_user: bool,
    /// The persistent home: workspace, code-server settings and extensions, dotfiles.
    pub home: PathBuf,
    /// code-server's `entry.js`.
    pub code_server: PathBuf,
    pub node: PathBuf,
    /// Activity is pushed at most this often.
    pub activity_interval: Duration,
    /// How often the environment's processes are sampled for CPU use.
    pub cpu_sample: Duration,
    /// How often the sign-in sessions behind the IDE sessions are checked.
    pub session_check: Duration,
    /// Shut down when standard input closes (the local backend's lifeline).
    pub stdin_lifeline: bool,
    /// The periodic report is sent this often.
    pub report_interval: Duration,
    /// Where usage is measured.
    pub usage_source: usage::Source,
    /// The environment's size (usage limits where nothing enforces one).
    pub size: usage::Size,
    /// What the first start sets up (repository, dotfiles).
    pub setup: setup::Plan,
    /// Snapshot mode: `home` is scratch space, kept in this store (`None`:
    /// the home is persistent by itself).
    pub snapshots: Option<SnapshotSettings>,
}

/// Where and how often the home is snapshotted (snapshot mode).
pub struct SnapshotSettings {
    pub store: SnapshotSource,
    pub interval: Duration,
}

/// A snapshot store opened, with the SAS the report renews (Blob store).
type OpenedStore = (
    Arc<dyn crate::snapshot::store::SnapshotStore>,
    Option<Arc<report::SnapshotSas>>,
);

/// The store of the home's snapshots.
pub enum SnapshotSource {
    /// A folder (local compute's folder store).
    Folder(PathBuf),
    /// The environment's Blob container, through its SAS (renewed through
    /// the periodic report's answer).
    Blob { url: String, sas: SecretString },
}

impl SnapshotSource {
    /// The store, and the Blob store's SAS to renew.
    fn open(&self) -> anyhow::Result<OpenedStore> {
        Ok(match self {
            SnapshotSource::Folder(dir) => (
                Arc::new(crate::snapshot::store::FolderStore::new(dir)),
                None,
            ),
            SnapshotSource::Blob { url, sas } => {
                let expires_on = crate::snapshot::blob::sas_expiry(sas.expose_secret())
                    .context("the snapshot SAS names no expiry (se)")?;
                let store = Arc::new(crate::snapshot::blob::BlobStore::new(url, sas.clone())?);
                (
                    store.clone(),
                    Some(Arc::new(report::SnapshotSas::new(store, expires_on))),
                )
            }
        })
    }
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("environment_id", &self.environment_id)
            .field("listen", &self.listen)
            .field("origin", &self.origin)
            .field("home", &self.home)
            .field("snapshot_mode", &self.snapshots.is_some())
            .finish_non_exhaustive()
    }
}

struct Agent {
    environment_id: String,
    origin: Option<String>,
    ide_url: String,
    secure: bool,
    sessions: Arc<Sessions>,
    upstream: proxy::Upstream,
    activity: Arc<Activity>,
    /// The first start's setup step in progress (the readiness answer names it).
    setup_step: std::sync::Mutex<Option<&'static str>>,
    /// The script that seeds the starter project as trusted in the browser
    /// (`trust.rs`); `None` for an environment created from a repository.
    trust_script: Option<String>,
    /// The final snapshot a stop asks for (snapshot mode).
    finals: final_snapshot::Finals,
}

impl Agent {
    fn cookie_name(&self) -> &'static str {
        if self.secure {
            "__Host-dev8_ide"
        } else {
            COOKIE
        }
    }

    /// This environment's origin: configured, or (behind the TLS sidecar,
    /// which serves only this environment's name) `https://<Host>`.
    fn own_origin(&self, headers: &HeaderMap) -> Option<String> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        expected_origin(self.origin.as_deref(), host)
    }

    /// The request's live session, as its end (for a WebSocket to close on).
    fn session_of(&self, headers: &HeaderMap) -> Option<session::Ended> {
        let jar = axum_extra::extract::CookieJar::from_headers(headers);
        self.sessions.check(jar.get(self.cookie_name())?.value())
    }
}

/// The origin a WebSocket must come from: the configured one, or behind the
/// TLS sidecar (which answers only for this environment's name) `https://<Host>`.
fn expected_origin(configured: Option<&str>, host: Option<&str>) -> Option<String> {
    match configured {
        Some(o) => Some(o.to_string()),
        None => host
            .filter(|h| !h.is_empty())
            .map(|h| format!("https://{h}")),
    }
}

/// Run the agent until `shutdown` resolves (or, with the lifeline, standard input closes).
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let jwks: serde_json::Value =
        serde_json::from_str(&config.jwks).context("the JWKS is not JSON")?;
    let keys = KeySet::verifier_from_jwks(&jwks).context("reading the control plane's keys")?;
    let control_keys = KeySet::verifier_from_jwks(&jwks)?;
    anyhow::ensure!(
        config.code_server.is_file(),
        "code-server not found at {}",
        config.code_server.display()
    );
    let run_dir = runtime_dir()?;
    let user = config
        .ide_user
        .as_deref()
        .map(code_server::IdeUser::resolve)
        .transpose()?;
    code_server::never_as_root(
        rustix::process::geteuid().is_root(),
        user.is_some(),
        config.ide_as_agent_user,
    )?;
    let cs = Arc::new(CodeServer {
        node: config.node.clone(),
        entry: config.code_server.clone(),
        home: config.home.clone(),
        socket: run_dir.path.join("code-server.sock"),
        environment_id: config.environment_id.clone(),
        user,
        open: Default::default(),
    });
    // Snapshot mode: the home comes back before code-server sees it; when
    // snapshots exist and none can be read, the agent does not start (never
    // a silently empty home).
    let (keeper, snapshot_sas) = match config.snapshots.as_ref() {
        Some(s) => {
            let (store, sas) = s.store.open().context("opening the snapshot store")?;
            let keeper = Arc::new(crate::snapshot::keeper::Keeper::new(
                config.home.clone(),
                store,
                s.interval,
                config.size.disk_bytes,
            ));
            keeper.restore().await.context("restoring the home")?;
            (Some(keeper), sas)
        }
        None => (None, None),
    };
    cs.prepare()
        .with_context(|| format!("preparing {}", config.home.display()))?;
    match extension::install(
        &cs.user_data_dir(),
        user,
        config.environment_name.as_deref(),
    ) {
        Ok(folder) => tracing::debug!(folder = %folder.display(), "Dev8's extension installed"),
        // Without it the IDE still works; only editor input then goes unseen.
        Err(e) => tracing::warn!(error = %e, "could not install Dev8's extension"),
    }
    let listener = Listener::bind(&config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let control = config.control_plane_url.trim_end_matches('/').to_string();
    let origin = config
        .origin
        .as_ref()
        .map(|o| o.trim_end_matches('/').to_string());
    let agent = Arc::new(Agent {
        ide_url: format!("{control}/api/environments/{}/ide", config.environment_id),
        environment_id: config.environment_id.clone(),
        // Behind the TLS sidecar (no configured origin) browsers always use https.
        secure: origin.as_deref().is_none_or(|o| o.starts_with("https://")),
        origin,
        sessions: Arc::new(Sessions::new(
            keys,
            &config.environment_id,
            &config.issuer,
            config.session_check,
        )),
        upstream: proxy::Upstream::new(cs.socket.clone()),
        activity: Arc::new(Activity::default()),
        setup_step: std::sync::Mutex::new(None),
        // Only the starter project is pre-trusted: with a repository, VS
        // Code opens its clone, which must open in Restricted Mode.
        trust_script: config
            .setup
            .repository_url
            .is_none()
            .then(|| trust::script(&cs.workspace()))
            .flatten(),
        finals: final_snapshot::Finals::new(
            control_keys,
            &config.environment_id,
            &config.issuer,
            keeper.is_some(),
        ),
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    let running = Arc::new(Running::default());
    // The first start's setup comes before code-server, so VS Code opens
    // on the cloned repository; the periodic report carries its outcome.
    let setup_outcome = Arc::new(std::sync::OnceLock::<setup::Outcome>::new());
    let supervisor = tokio::spawn({
        let (cs, running, stop, agent, plan, outcome_slot) = (
            cs.clone(),
            running.clone(),
            stop_rx.clone(),
            agent.clone(),
            config.setup.clone(),
            setup_outcome.clone(),
        );
        async move {
            let set_step = |s| *agent.setup_step.lock().expect("setup step lock") = Some(s);
            // A stop during the setup ends it (its git or script is killed
            // with it; no marker is written, so the next start sets up again).
            let mut stopped = stop.clone();
            let outcome = tokio::select! {
                outcome = setup::run_once(&plan, &cs, set_step) => outcome,
                _ = stopped.wait_for(|s| *s) => return,
            };
            *agent.setup_step.lock().expect("setup step lock") = None;
            if let Some(folder) = &outcome.folder {
                let _ = cs.open.set(cs.workspace().join(folder));
            }
            let _ = outcome_slot.set(outcome);
            code_server::supervise(cs, running, stop, Duration::from_secs(5)).await
        }
    });
    let cpu = tokio::spawn(activity::watch_cpu(
        agent.activity.clone(),
        config.environment_id.clone(),
        code_server_dirs(&cs),
        config.cpu_sample,
        stop_rx.clone(),
    ));
    let report_token = config.token.clone();
    let reporter = Reporter {
        url: format!(
            "{control}/api/environments/{}/activity",
            config.environment_id
        ),
        token: config.token.clone(),
        every: config.activity_interval,
    };
    let checker = session::Checker {
        url: format!(
            "{control}/api/environments/{}/sessions",
            config.environment_id
        ),
        token: config.token.clone(),
        every: config.session_check,
    };
    let channel = tokio::spawn({
        let (socket, activity, stop) = (
            cs.activity_socket(),
            agent.activity.clone(),
            stop_rx.clone(),
        );
        async move {
            if let Err(e) = extension::serve(socket, user, activity, stop).await {
                tracing::warn!(error = %e, "the extension's channel failed");
            }
        }
    });
    let pusher = tokio::spawn(activity::push_loop(
        agent.activity.clone(),
        reporter,
        stop_rx.clone(),
    ));
    let session_checks = tokio::spawn(session::check_loop(
        agent.sessions.clone(),
        checker,
        stop_rx.clone(),
    ));
    let meter = usage::Meter::new(
        config.usage_source.clone(),
        &config.environment_id,
        &config.home,
        config.size,
    );
    let report_target = report::ReportTarget {
        url: format!(
            "{control}/api/environments/{}/report",
            config.environment_id
        ),
        token: report_token,
        every: config.report_interval,
        snapshot_sas,
    };
    let reporter_task = tokio::spawn(report::report_loop(
        agent.activity.clone(),
        setup_outcome,
        meter,
        proxy::Upstream::new(cs.socket.clone()),
        report_target,
        keeper.clone(),
        stop_rx.clone(),
    ));
    let periodic = tokio::spawn({
        let (keeper, stop) = (keeper.clone(), stop_rx.clone());
        async move {
            if let Some(k) = keeper {
                k.periodic(stop).await;
            }
        }
    });

    let router = Router::new()
        .route("/_dev8/healthz", get(healthz))
        .route("/_dev8/session", get(redeem))
        .route("/_dev8/final-snapshot", post(ask_final_snapshot))
        .fallback(proxy_request)
        .with_state(agent.clone());
    // The server outlives the IDE: after a final snapshot it still answers
    // how it went, until the group is stopped.
    let (server_stop_tx, mut server_stop) = watch::channel(false);
    let stopped = async move {
        let _ = server_stop.wait_for(|s| *s).await;
    };
    let server = tokio::spawn(async move {
        match listener {
            Listener::Tcp(l) => axum::serve(l, router).with_graceful_shutdown(stopped).await,
            Listener::Unix(l) => axum::serve(l, router).with_graceful_shutdown(stopped).await,
        }
    });
    tracing::info!(environment = %agent.environment_id, listen = %config.listen, "agent listening");

    let lifeline = async move {
        if config.stdin_lifeline {
            let mut stdin = tokio::io::stdin();
            let mut buf = [0u8; 64];
            while matches!(tokio::io::AsyncReadExt::read(&mut stdin, &mut buf).await, Ok(n) if n > 0)
            {
            }
            tracing::info!("the control plane went away; stopping");
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(shutdown, lifeline);
    let asked = tokio::select! {
        _ = &mut shutdown => { tracing::info!("stopping"); false }
        _ = &mut lifeline => false,
        _ = agent.finals.asked() => true,
    };
    let _ = stop_tx.send(true);
    let _ = supervisor.await;
    let _ = tokio::join!(
        cpu,
        pusher,
        session_checks,
        reporter_task,
        channel,
        periodic
    );
    // Whatever the IDE started (terminals, background jobs) ends with the environment.
    let killed = crate::procs::kill_marked(&agent.environment_id, &[]);
    if killed > 0 {
        tracing::info!(killed, "ended the environment's remaining processes");
    }
    // The final snapshot, with nothing left writing to the home.
    if let Some(k) = &keeper {
        let outcome = match k.take().await {
            Ok(()) => final_snapshot::State::Saved {
                last_at: k.status().last_at,
            },
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "the final snapshot failed; the previous one is kept");
                final_snapshot::State::Failed {
                    error: format!("{e:#}"),
                }
            }
        };
        agent.finals.finish(outcome);
    }
    if asked {
        // Asked by the control plane: it learns the outcome from the next
        // request, then stops the group.
        tokio::select! {
            _ = &mut shutdown => tracing::info!("stopping"),
            _ = &mut lifeline => {}
        }
    }
    let _ = server_stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    Ok(())
}

enum Listener {
    Tcp(tokio::net::TcpListener),
    Unix(tokio::net::UnixListener),
}

impl Listener {
    /// Bind where the agent is told to listen. A socket left by an earlier
    /// agent of this environment is replaced, and the new one is for its
    /// owner only (its folder is already private to `serve`'s user).
    async fn bind(listen: &Listen) -> std::io::Result<Listener> {
        match listen {
            Listen::Tcp(addr) => Ok(Listener::Tcp(tokio::net::TcpListener::bind(addr).await?)),
            Listen::Unix(path) => {
                use std::os::unix::fs::PermissionsExt;
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                let l = tokio::net::UnixListener::bind(path)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
                Ok(Listener::Unix(l))
            }
        }
    }
}

/// code-server's package folder, as configured and with symlinks resolved.
fn code_server_dirs(cs: &CodeServer) -> Vec<String> {
    let dir = cs.package_dir();
    let mut dirs = vec![dir.to_string_lossy().into_owned()];
    if let Ok(real) = dir.canonicalize() {
        dirs.push(real.to_string_lossy().into_owned());
    }
    dirs
}

/// A private folder for code-server's socket (removed on drop). Short paths
/// matter: a Unix socket path is limited to about 100 bytes.
struct RuntimeDir {
    path: PathBuf,
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

fn runtime_dir() -> anyhow::Result<RuntimeDir> {
    use std::os::unix::fs::DirBuilderExt;
    let path = std::env::temp_dir().join(format!("dev8-{}", crate::domain::new_id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    Ok(RuntimeDir { path })
}

fn no_store(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// The longest `GET /_dev8/healthz?wait=<ms>` holds its answer.
pub const MAX_READY_WAIT: Duration = Duration::from_secs(30);
/// While a readiness request waits, code-server's socket is tried this
/// often (on this machine: a failed connect to a missing socket is cheap).
const READY_PROBE: Duration = Duration::from_millis(10);

/// Is code-server answering? With `?wait=<ms>` (at most `MAX_READY_WAIT`)
/// the answer is held until it does or the time is up, so the control
/// plane learns of readiness the moment it happens without polling.
async fn healthz(
    State(agent): State<Arc<Agent>>,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let wait = q
        .get("wait")
        .and_then(|w| w.parse::<u64>().ok())
        .map_or(Duration::ZERO, |ms| {
            Duration::from_millis(ms).min(MAX_READY_WAIT)
        });
    let deadline = tokio::time::Instant::now() + wait;
    let ready = loop {
        if agent.upstream.healthy().await {
            break true;
        }
        if tokio::time::Instant::now() + READY_PROBE > deadline {
            break false;
        }
        tokio::time::sleep(READY_PROBE).await;
    };
    let r = if ready {
        (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ready"})),
        )
            .into_response()
    } else {
        let step = *agent.setup_step.lock().expect("setup step lock");
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "starting", "step": step})),
        )
            .into_response()
    };
    no_store(r)
}

/// `POST /_dev8/final-snapshot` (see `final_snapshot`).
async fn ask_final_snapshot(State(agent): State<Arc<Agent>>, headers: HeaderMap) -> Response {
    no_store(agent.finals.ask(&headers))
}

/// `GET /_dev8/session?ticket=...`: redeem a ticket, set the cookie, 303 to `/`.
async fn redeem(State(agent): State<Arc<Agent>>, req: Request) -> Response {
    let ticket = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("ticket=")))
        .unwrap_or_default();
    match agent.sessions.redeem(ticket) {
        Ok(id) => {
            let mut cookie = format!(
                "{}={id}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
                agent.cookie_name(),
                session::SESSION_TTL.as_secs()
            );
            if agent.secure {
                cookie.push_str("; Secure");
            }
            let mut r = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            no_store(r)
        }
        Err(e) => {
            tracing::info!(reason = %e, "IDE ticket refused");
            let page = format!(
                "<!doctype html><meta charset=utf-8><title>Link expired</title>\
                 <p>This link to the IDE has expired or was already used.</p>\
                 <p><a href=\"{}\">Open the IDE again</a></p>",
                agent.ide_url
            );
            no_store(
                (
                    StatusCode::FORBIDDEN,
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    page,
                )
                    .into_response(),
            )
        }
    }
}

fn is_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Remove the agent's and the control plane's cookies from the request.
fn strip_private_cookies(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .filter(|c| !PRIVATE_COOKIES.contains(&c.split('=').next().unwrap_or("").trim()))
        .map(str::to_string)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
}

async fn proxy_request(State(agent): State<Arc<Agent>>, mut req: Request) -> Response {
    let ws = is_websocket(req.headers());
    let ended;
    if ws {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok());
        if origin.is_none() || origin != agent.own_origin(req.headers()).as_deref() {
            tracing::info!("WebSocket from a foreign origin refused");
            return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused").into_response();
        }
        let Some(end) = agent.session_of(req.headers()) else {
            return (StatusCode::UNAUTHORIZED, "no IDE session").into_response();
        };
        ended = Some(end);
    } else if agent.session_of(req.headers()).is_some() {
        ended = None;
    } else {
        return no_store(
            (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, agent.ide_url.as_str())],
            )
                .into_response(),
        );
    }
    if !ws && activity::is_use(req.method(), req.uri().path(), req.headers()) {
        tracing::debug!(method = %req.method(), path = %req.uri().path(), "request counted as use");
        agent.activity.touch(Kind::Page);
    }
    strip_private_cookies(req.headers_mut());
    tracing::debug!(method = %req.method(), path = %req.uri().path(), "proxy");
    if let Some(ended) = ended {
        return agent
            .upstream
            .tunnel(req, agent.activity.clone(), ended)
            .await;
    }
    let Some(script) = agent.trust_script.as_deref() else {
        return agent.upstream.forward(req.map(Body::new)).await;
    };
    if req.uri().path() == trust::SCRIPT_PATH {
        return trust::script_response(script);
    }
    if req.method() != axum::http::Method::GET || !trust::may_be_workbench(req.uri().path()) {
        return agent.upstream.forward(req.map(Body::new)).await;
    }
    // The workbench page is read (uncompressed) to hold its main module.
    req.headers_mut().remove(header::ACCEPT_ENCODING);
    trust::hold_in(agent.upstream.forward(req.map(Body::new)).await).await
}

impl From<crate::config::AgentArgs> for AgentConfig {
    fn from(a: crate::config::AgentArgs) -> Self {
        AgentConfig {
            environment_id: a.environment_id,
            environment_name: a.environment_name.filter(|n| !n.trim().is_empty()),
            token: a.agent_token,
            jwks: a.jwks,
            issuer: a.issuer,
            control_plane_url: a.control_plane_url,
            listen: a.listen,
            origin: a.origin,
            ide_user: a.ide_user,
            ide_as_agent_user: a.ide_as_agent_user,
            home: a.home,
            code_server: a.code_server,
            node: a.node,
            activity_interval: std::time::Duration::from_millis(a.activity_interval_ms.max(10)),
            cpu_sample: std::time::Duration::from_millis(a.cpu_sample_ms.max(10)),
            session_check: std::time::Duration::from_millis(a.session_check_ms.max(10)),
            stdin_lifeline: a.stdin_lifeline,
            report_interval: std::time::Duration::from_millis(a.report_interval_ms.max(10)),
            usage_source: usage::Source::parse(&a.usage_source).unwrap_or(usage::Source::Processes),
            size: usage::Size {
                cpus: f64::from(a.size_cpus.max(1)),
                memory_bytes: u64::from(a.size_memory_gb) << 30,
                disk_bytes: u64::from(a.size_storage_gb) << 30,
            },
            setup: setup::Plan {
                repository_url: a.repository_url.filter(|u| !u.is_empty()),
                repository_ref: a.repository_ref.filter(|r| !r.is_empty()),
                dotfiles_url: a.dotfiles_url.filter(|u| !u.is_empty()),
            },
            snapshots: match (a.snapshot_url, a.snapshot_sas, a.snapshot_dir) {
                (None, None, None) => None,
                (None, None, Some(dir)) => Some(SnapshotSource::Folder(dir)),
                // Half a Blob store (a URL without a SAS or the other way
                // round) fails at start: never a scratch home kept nowhere.
                (url, sas, _) => Some(SnapshotSource::Blob {
                    url: url.unwrap_or_default(),
                    sas: sas.unwrap_or_else(|| SecretString::from(String::new())),
                }),
            }
            .map(|store| SnapshotSettings {
                store,
                interval: Duration::from_millis(a.snapshot_interval_ms.max(10)),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_a_blob_store_does_not_open() {
        let blob = |url: &str, sas: &str| SnapshotSource::Blob {
            url: url.into(),
            sas: SecretString::from(sas.to_string()),
        };
        let sas = "sv=2020-12-06&sr=c&sp=rwdl&se=2030-01-01T00%3A00%3A00Z&sig=x";
        let (_, renewable) = blob("http://127.0.0.1:9/a/c", sas).open().unwrap();
        assert_eq!(
            renewable.unwrap().expires_on(),
            "2030-01-01T00:00:00Z"
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
        );
        assert!(blob("http://127.0.0.1:9/a/c", "").open().is_err(), "no SAS");
        assert!(blob("", sas).open().is_err(), "no URL");
    }

    #[test]
    fn private_cookies_are_stripped_and_others_kept() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("dev8_ide=s; vscode-tkn=abc; dev8_session=x"),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static("__Host-dev8_session=y"),
        );
        strip_private_cookies(&mut h);
        assert_eq!(
            h.get_all(header::COOKIE).iter().collect::<Vec<_>>(),
            vec!["vscode-tkn=abc"]
        );
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("__Host-dev8_ide=s"),
        );
        strip_private_cookies(&mut h);
        assert!(h.get(header::COOKIE).is_none());
    }
}

#[cfg(test)]
mod origin_tests {
    use super::expected_origin;

    #[test]
    fn the_configured_origin_wins_and_otherwise_the_host_over_https() {
        let local = Some("http://e-1.localhost:4000");
        assert_eq!(
            expected_origin(local, Some("evil.example")).as_deref(),
            local
        );
        assert_eq!(
            expected_origin(None, Some("dev8-x.abc.westeurope.azurecontainer.io")).as_deref(),
            Some("https://dev8-x.abc.westeurope.azurecontainer.io")
        );
        assert_eq!(
            expected_origin(None, None),
            None,
            "no Host: nothing matches"
        );
        assert_eq!(expected_origin(None, Some("")), None);
    }
}
