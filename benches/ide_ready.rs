//! How long until the IDE's first workbench page, next to a bare
//! code-server start -> its first workbench page, alternating (A B A B) in
//! one run. Two parts:
//!
//! * `create`: create -> the workbench page through the whole stack (API,
//!   queue, reconcile, local compute, `serve`'s front door at
//!   `e-<id>.localhost:<serve's port>`, the agent on its Unix socket, ticket,
//!   code-server). Goal (issue 18): at most 1.15x the bare boot in every
//!   round.
//! * `restart` (issue 21): start -> the workbench page after a stop, through
//!   the same path, for an environment with a direct home (`share`: a
//!   persistent folder) and one in snapshot mode (`DEV8_LOCAL_HOME_MODE=
//!   snapshot`: a scratch home wiped at every start, which the agent
//!   restores from a folder store before code-server starts), each in a
//!   `serve` of its own. Both homes hold the same working set, written once
//!   while running: a `node_modules`-like tree under
//!   `~/workspace/bench-app` (packages of 50 files: a `package.json`, source
//!   text in `lib/`, 30% of the bytes in incompressible `build/Release/*.node`
//!   binaries), checked after every start (file count, bytes, one file's
//!   content), so an empty home cannot pass for a fast one. Each stop is
//!   timed too (snapshot mode's includes the final snapshot). No goal is
//!   asserted: issue 21 asks for the figures.
//!
//! Settings (environment): `DEV8_BENCH_PART` = `create` | `restart` | `all`
//! (default `all`), `DEV8_BENCH_ROUNDS` (default 3, per part),
//! `DEV8_BENCH_HOME_MB` (the working set's size, default 200) and
//! `DEV8_BENCH_HOME_FILES` (its files, default 10,000).
//!
//!     cargo bench --bench ide_ready            (both parts, 3 rounds each)
//!     DEV8_BENCH_PART=restart DEV8_BENCH_HOME_MB=20 DEV8_BENCH_HOME_FILES=1000 \
//!         cargo bench --bench ide_ready
//!
//! It needs code-server (`scripts/setup.sh --no-build`, or `DEV8_CODE_SERVER`)
//! and is not part of the test command. It starts `serve` itself, apart from
//! the integration tests' harness.

use dev8::clock::SystemClock;
use dev8::compute::{HomeMode, LocalCompute, LocalOptions, local};
use dev8::config::{Settings, SignupPolicy};
use dev8::queue::{EmbeddedQueue, JobQueue};
use dev8::reconciles::QueueReconciles;
use dev8::snapshot::{MANIFEST, Manifest};
use dev8::startup::{Application, Overrides};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "support/home.rs"]
mod home;
use home::{WorkingSet, setting};

/// How long a create (or a bare start) may take to its workbench page.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long a start with a restore, or a stop with a final snapshot, may
/// take (a big home in a debug build is slow).
const SLOW_STEP: Duration = Duration::from_secs(300);
/// Where the working set goes, relative to the home.
const WORKING_SET: &str = "workspace/bench-app";

/// code-server's entry: `DEV8_CODE_SERVER` or the project's tools folder.
fn code_server() -> PathBuf {
    let path = std::env::var_os("DEV8_CODE_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| local::tools_entry(Path::new(env!("CARGO_MANIFEST_DIR"))));
    assert!(
        path.is_file(),
        "code-server is not installed at {}: run `scripts/setup.sh --no-build` (or set DEV8_CODE_SERVER)",
        path.display()
    );
    path
}

/// `handler serve` with local compute (this build's `handler` as the agent)
/// on 127.0.0.1, its state in a temporary folder, new environments' homes
/// in `home_mode`.
struct Serve {
    base: String,
    http: reqwest::Client,
    cookie: String,
    /// Where its environments' homes and snapshots are.
    compute: Arc<LocalCompute>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _data: tempfile::TempDir,
}

impl Serve {
    async fn start(home_mode: HomeMode) -> Serve {
        let data = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings::from_env().expect("settings");
        settings.public_url = None;
        settings.signing_keys = None;
        settings.signup = SignupPolicy::Open;
        // serve's default reconcile interval, measured as users get it.
        settings.reconcile_interval_ms = 1000;
        settings.sweep_interval_seconds = 3600;
        settings.static_dir = Some(data.path().join("no-static"));
        settings.local_home_mode = home_mode;
        let queue: Arc<dyn JobQueue> = Arc::new(
            EmbeddedQueue::open(
                &data.path().join("queue.db"),
                &settings.queue_name,
                Arc::new(SystemClock),
            )
            .expect("queue"),
        );
        let options = LocalOptions {
            data_dir: data.path().to_path_buf(),
            code_server: code_server(),
            agent_exe: PathBuf::from(env!("CARGO_BIN_EXE_handler")),
            node: local::find_node().expect("node on PATH"),
            activity_interval: Duration::from_secs(60),
            cpu_sample: Duration::from_secs(15),
            session_check: dev8::agent_env::DEFAULT_SESSION_CHECK,
            report_interval: Duration::from_secs(60),
            snapshot_interval: dev8::agent_env::DEFAULT_SNAPSHOT_INTERVAL,
            snapshot_blob: None,
        };
        let reconciles = Arc::new(QueueReconciles::new(queue.clone()));
        let compute = Arc::new(LocalCompute::new(options, reconciles).expect("local compute"));
        let overrides = Overrides {
            queue: Some(queue),
            compute: Some(compute.clone()),
            ..Default::default()
        };
        let app = Application::build(settings, 0, data.path(), overrides)
            .await
            .expect("app builds");
        let base = format!("http://127.0.0.1:{}", app.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let r = http
            .post(format!("{base}/api/auth/signup"))
            .header("origin", &base)
            .json(
                &json!({"email": "bench@example.com", "password": "correct horse battery staple"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let cookie = r.headers()["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_string();
        Serve {
            base,
            http,
            cookie,
            compute,
            stop,
            task,
            _data: data,
        }
    }

    /// A request from the dashboard (session cookie, our Origin).
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .header("origin", &self.base);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// POST an environment's `action` (`start`, `stop`); it must be accepted.
    async fn act(&self, id: &str, action: &str) {
        let path = format!("/api/environments/{id}/{action}");
        let (status, body) = self.call(reqwest::Method::POST, &path, None).await;
        assert_eq!(status, 202, "{action} refused: {body}");
    }

    /// GET the environment every 10 ms until `done` holds for the answer
    /// (status code, body); panic after `within` or on `error`.
    async fn wait_for(
        &self,
        id: &str,
        what: &str,
        within: Duration,
        done: impl Fn(u16, &Value) -> bool,
    ) -> Value {
        let path = format!("/api/environments/{id}");
        let t0 = Instant::now();
        loop {
            let (status, body) = self.call(reqwest::Method::GET, &path, None).await;
            if done(status, &body) {
                return body;
            }
            assert_ne!(
                body["environment"]["status"], "error",
                "environment {id} failed while waiting until {what}"
            );
            assert!(
                t0.elapsed() < within,
                "environment {id} not {what} within {} s: {body}",
                within.as_secs()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn shutdown(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("shutdown in time")
            .unwrap()
            .unwrap();
    }
}

/// A client for one environment's agent: `e-<id>.localhost` resolves to
/// loopback. Redirects are not followed (the ticket's answer is read).
fn agent_client(ide_url: &str) -> reqwest::Client {
    let url = reqwest::Url::parse(ide_url).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], url.port().unwrap()));
    reqwest::Client::builder()
        .resolve(url.host_str().unwrap(), addr)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// GET `url` (following code-server's redirects within its origin) until
/// it answers code-server's workbench page.
async fn first_workbench_page(
    http: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
    t0: Instant,
    within: Duration,
) {
    loop {
        let mut next = url.to_string();
        for _ in 0..5 {
            let mut req = http.get(&next);
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            let Ok(r) = req.send().await else { break };
            if r.status().is_redirection() {
                let to = r.headers()["location"].to_str().unwrap().to_string();
                next = reqwest::Url::parse(&next)
                    .unwrap()
                    .join(&to)
                    .unwrap()
                    .to_string();
                continue;
            }
            if r.status().is_success() && r.text().await.is_ok_and(|b| b.contains("workbench")) {
                return;
            }
            break;
        }
        assert!(
            t0.elapsed() < within,
            "no workbench page within {} s at {url}",
            within.as_secs()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:>6} ms", d.as_millis())
}

/// Start code-server alone (as the agent would, minus the agent) and time
/// until its first workbench page.
async fn bare_boot(http: &reqwest::Client) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for d in ["home", "data", "ext", "work"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new("node")
        .arg(code_server())
        .args([
            "--bind-addr",
            &format!("127.0.0.1:{port}"),
            "--auth",
            "none",
        ])
        .args([
            "--disable-telemetry",
            "--disable-update-check",
            "--disable-workspace-trust",
        ])
        .arg("--user-data-dir")
        .arg(dir.path().join("data"))
        .arg("--extensions-dir")
        .arg(dir.path().join("ext"))
        .arg(dir.path().join("work"))
        .env("HOME", dir.path().join("home"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        // Its own process group: code-server's entry runs the server as a
        // child, which killing `node` alone would leave running (and eating
        // the CPU of every later measurement).
        .process_group(0)
        .spawn()
        .expect("node starts code-server");
    let _group = KillGroup(child.id());
    first_workbench_page(
        http,
        &format!("http://127.0.0.1:{port}/"),
        None,
        t0,
        READY_WITHIN,
    )
    .await;
    let took = t0.elapsed();
    let _ = child.kill().await;
    took
}

/// Kills the process group it names when dropped: at the end of a bare
/// boot, and when waiting for it panics.
struct KillGroup(Option<u32>);

impl Drop for KillGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            dev8::procs::signal_group(pid as i32, rustix::process::Signal::KILL);
        }
    }
}

/// Wait until the environment is `running`, then open the IDE as the
/// dashboard's button does (a ticket, redeemed for the agent's cookie)
/// until the workbench page comes; `t0` is when the person asked.
async fn open_when_running(app: &Serve, id: &str, t0: Instant, within: Duration) {
    let body = app
        .wait_for(id, "running", within, |_, b| {
            b["environment"]["status"] == "running" && b["environment"]["ideUrl"].is_string()
        })
        .await;
    let url = body["environment"]["ideUrl"].as_str().unwrap();
    // The address users get: serve's front door, never an agent's own port.
    let port = app.base.rsplit(':').next().unwrap();
    assert_eq!(
        url,
        format!("http://e-{id}.localhost:{port}/"),
        "the IDE is measured through the front door"
    );
    let r = app
        .http
        .get(format!("{}/api/environments/{id}/ide", app.base))
        .header("cookie", &app.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let ticket = r.headers()["location"].to_str().unwrap().to_string();
    let agent = agent_client(url);
    let r = agent.get(&ticket).send().await.unwrap();
    assert_eq!(r.status(), 303, "ticket refused");
    let set = r.headers()["set-cookie"].to_str().unwrap();
    let cookie = set.split(';').next().unwrap().to_string();
    first_workbench_page(&agent, url, Some(&cookie), t0, within).await;
}

/// POST /api/environments, then as `open_when_running`: the time from the
/// create to the workbench page.
async fn create_to_ready(app: &Serve, name: &str) -> (Duration, String) {
    let t0 = Instant::now();
    let (status, created) = app
        .call(
            reqwest::Method::POST,
            "/api/environments",
            Some(json!({"name": name, "baseImage": "node", "preset": "small"})),
        )
        .await;
    assert_eq!(status, 202);
    let id = created["environment"]["id"].as_str().unwrap().to_string();
    open_when_running(app, &id, t0, READY_WITHIN).await;
    (t0.elapsed(), id)
}

/// POST start on a stopped environment, then as `open_when_running`: the
/// time from the start to the workbench page (a restore included).
async fn start_to_ready(app: &Serve, id: &str) -> Duration {
    let t0 = Instant::now();
    app.act(id, "start").await;
    open_when_running(app, id, t0, SLOW_STEP).await;
    t0.elapsed()
}

/// POST stop and wait until the record says `stopped` (the agent has
/// exited; in snapshot mode after its final snapshot).
async fn stop(app: &Serve, id: &str) -> Duration {
    let t0 = Instant::now();
    app.act(id, "stop").await;
    app.wait_for(id, "stopped", SLOW_STEP, |_, b| {
        b["environment"]["status"] == "stopped"
    })
    .await;
    t0.elapsed()
}

/// DELETE the environment and wait until its record is gone.
async fn delete(app: &Serve, id: &str) {
    let path = format!("/api/environments/{id}");
    let (status, _) = app.call(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 202);
    app.wait_for(id, "deleted", Duration::from_secs(30), |status, _| {
        status == 404
    })
    .await;
}

/// The create part: create -> workbench page next to the bare boot.
async fn create_part(http: &reqwest::Client, rounds: usize) {
    let app = Serve::start(HomeMode::Share).await;
    let (mut bare, mut full) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        bare.push(bare_boot(http).await);
        let (took, id) = create_to_ready(&app, &format!("bench-{round}")).await;
        full.push(took);
        delete(&app, &id).await;
    }
    app.shutdown().await;

    println!("ide_ready: {rounds} rounds (reconcile interval 1000 ms, the serve default)");
    let mut worst = 0.0f64;
    for (i, (b, f)) in bare.iter().zip(&full).enumerate() {
        let ratio = f.as_secs_f64() / b.as_secs_f64();
        worst = worst.max(ratio);
        println!(
            "  round {i}: bare code-server -> workbench page {}   create -> workbench page {}   ratio {ratio:.2}x",
            ms(*b),
            ms(*f)
        );
    }
    let (b, f) = (median(bare), median(full));
    let overhead = f.saturating_sub(b);
    println!(
        "  median: bare code-server -> workbench page {}   create -> workbench page {}   overhead {}",
        ms(b),
        ms(f),
        ms(overhead)
    );
    println!(
        "  goal (issue 18): <= 1.15x the bare boot in every round: {} (worst {worst:.2}x)",
        if worst <= 1.15 { "met" } else { "NOT met" }
    );
    println!(
        "  goal: overhead <= 1000 ms: {}",
        if overhead <= Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        }
    );
}

/// One side of the restart part: an environment, stopped, with the working
/// set in its home, in a `serve` of its own.
struct Side {
    app: Serve,
    id: String,
    set: WorkingSet,
    starts: Vec<Duration>,
    stops: Vec<Duration>,
}

impl Side {
    /// Create the environment, write the working set into its running home,
    /// stop it.
    async fn prepare(home_mode: HomeMode, bytes: usize, files: usize) -> Side {
        let app = Serve::start(home_mode).await;
        let (_, id) = create_to_ready(&app, "restart").await;
        assert_eq!(
            app.compute.snapshot_dir(&id).is_dir(),
            home_mode == HomeMode::Snapshot,
            "environment {id} is not in {home_mode:?} mode"
        );
        let home = app.compute.home(&id);
        let set = WorkingSet::write(&home, Path::new(WORKING_SET), bytes, files);
        set.check(&home, "as written");
        stop(&app, &id).await;
        Side {
            app,
            id,
            set,
            starts: Vec::new(),
            stops: Vec::new(),
        }
    }

    /// Start -> workbench page, check the working set, stop.
    async fn round(&mut self, what: &str) {
        self.starts.push(start_to_ready(&self.app, &self.id).await);
        self.set.check(
            &self.app.compute.home(&self.id),
            &format!("{what} after a start"),
        );
        self.stops.push(stop(&self.app, &self.id).await);
    }
}

/// The newest complete snapshot in a folder store.
fn newest_snapshot(store: &Path) -> Option<Manifest> {
    std::fs::read_dir(store)
        .ok()?
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join(MANIFEST)).ok())
        .map(|b| serde_json::from_slice::<Manifest>(&b).expect("a manifest"))
        .max_by(|a, b| a.id.cmp(&b.id))
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / f64::from(1 << 20))
}

fn ratio(a: Duration, b: Duration) -> String {
    format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64())
}

/// The restart part: start -> workbench page after a stop, a direct home
/// next to a snapshot home, next to the bare boot.
async fn restart_part(http: &reqwest::Client, rounds: usize) {
    let bytes = setting("DEV8_BENCH_HOME_MB", 200) << 20;
    let files = setting("DEV8_BENCH_HOME_FILES", 10_000);
    let mut direct = Side::prepare(HomeMode::Share, bytes, files).await;
    let mut snap = Side::prepare(HomeMode::Snapshot, bytes, files).await;
    let mut bare = Vec::new();
    for _ in 0..rounds {
        bare.push(bare_boot(http).await);
        direct.round("direct home").await;
        snap.round("snapshot home").await;
    }
    let stored = newest_snapshot(&snap.app.compute.snapshot_dir(&snap.id))
        .expect("the snapshot home's store holds a snapshot");
    direct.app.shutdown().await;
    snap.app.shutdown().await;

    println!(
        "ide_ready, start -> workbench page after a stop: {rounds} rounds, a direct home next to a snapshot home (folder store)"
    );
    println!(
        "  working set: {} files, {} under ~/{WORKING_SET} (node_modules-like, 30% of it incompressible binaries); checked after every start",
        direct.set.files,
        mb(direct.set.bytes)
    );
    println!(
        "  newest snapshot: {} stored for {} of content ({} entries, parts: {})",
        mb(stored.stored_bytes()),
        mb(stored.content_bytes),
        stored.entries,
        stored.parts.len()
    );
    for (i, b) in bare.iter().enumerate() {
        let (d, s) = (direct.starts[i], snap.starts[i]);
        println!(
            "  round {i}: bare code-server -> workbench page {}   direct start {}   snapshot start (restore) {}   snapshot/direct {}   direct/bare {}   snapshot/bare {}",
            ms(*b),
            ms(d),
            ms(s),
            ratio(s, d),
            ratio(d, *b),
            ratio(s, *b)
        );
        println!(
            "           stop -> stopped: direct {}   snapshot (final snapshot) {}",
            ms(direct.stops[i]),
            ms(snap.stops[i])
        );
    }
    let (b, d, s) = (median(bare), median(direct.starts), median(snap.starts));
    println!(
        "  median: bare code-server -> workbench page {}   direct start {}   snapshot start (restore) {}   snapshot/direct {}   direct/bare {}   snapshot/bare {}",
        ms(b),
        ms(d),
        ms(s),
        ratio(s, d),
        ratio(d, b),
        ratio(s, b)
    );
    println!(
        "  median stop -> stopped: direct {}   snapshot (final snapshot) {}",
        ms(median(direct.stops)),
        ms(median(snap.stops))
    );
    println!("  no goal is asserted for this part (issue 21 asks only for the figures)");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let part = std::env::var("DEV8_BENCH_PART").unwrap_or_else(|_| "all".into());
    let (create, restart) = match part.as_str() {
        "all" => (true, true),
        "create" => (true, false),
        "restart" => (false, true),
        other => panic!("DEV8_BENCH_PART is create, restart or all, not {other:?}"),
    };
    let rounds = setting("DEV8_BENCH_ROUNDS", 3).max(1);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    // Warm the file cache once so neither side pays for a cold disk.
    bare_boot(&http).await;

    if create {
        create_part(&http, rounds).await;
    }
    if restart {
        restart_part(&http, rounds).await;
    }
}
