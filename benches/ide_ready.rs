//! Create -> the IDE's first workbench page through the whole stack (API,
//! queue, reconcile, local compute, `serve`'s front door at
//! `e-<id>.localhost:<serve's port>`, the agent on its Unix socket, ticket,
//! code-server) next to a
//! bare code-server start -> its first workbench page, alternating (A B A B)
//! in one run. Goal (issue 18): at most 1.15x the bare boot in every round.
//!
//!     cargo bench --bench ide_ready            (3 rounds; DEV8_BENCH_ROUNDS to change)
//!
//! It needs code-server (`scripts/setup.sh --no-build`, or `DEV8_CODE_SERVER`)
//! and is not part of the test command. It starts `serve` itself, apart from
//! the integration tests' harness.

use dev8::clock::SystemClock;
use dev8::compute::{LocalCompute, LocalOptions, local};
use dev8::config::{Settings, SignupPolicy};
use dev8::queue::{EmbeddedQueue, JobQueue};
use dev8::reconciles::QueueReconciles;
use dev8::startup::{Application, Overrides};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
/// on 127.0.0.1, its state in a temporary folder.
struct Serve {
    base: String,
    http: reqwest::Client,
    cookie: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _data: tempfile::TempDir,
}

impl Serve {
    async fn start() -> Serve {
        let data = tempfile::tempdir().expect("temp dir");
        let mut settings = Settings::from_env().expect("settings");
        settings.public_url = None;
        settings.signing_keys = None;
        settings.signup = SignupPolicy::Open;
        // serve's default reconcile interval, measured as users get it.
        settings.reconcile_interval_ms = 1000;
        settings.sweep_interval_seconds = 3600;
        settings.static_dir = Some(data.path().join("no-static"));
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
            compute: Some(compute),
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
            t0.elapsed() < Duration::from_secs(60),
            "no workbench page within 60 s at {url}"
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
    first_workbench_page(http, &format!("http://127.0.0.1:{port}/"), None, t0).await;
    let took = t0.elapsed();
    if let Some(pid) = child.id() {
        dev8::procs::signal_group(pid as i32, rustix::process::Signal::KILL);
    }
    let _ = child.kill().await;
    took
}

/// POST /api/environments, poll until the record is `running`, then open
/// the IDE as a person does (ticket -> cookie) until the workbench page
/// comes.
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
    loop {
        let (_, body) = app
            .call(
                reqwest::Method::GET,
                &format!("/api/environments/{id}"),
                None,
            )
            .await;
        let env = &body["environment"];
        if let (Some(url), true) = (env["ideUrl"].as_str(), env["status"] == "running") {
            // The address users get: serve's front door, never an agent's own port.
            let port = app.base.rsplit(':').next().unwrap();
            assert_eq!(
                url,
                format!("http://e-{id}.localhost:{port}/"),
                "the IDE is measured through the front door"
            );
            // Open the IDE as the dashboard's button does: a ticket, redeemed
            // for the agent's cookie, then the workbench page.
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
            first_workbench_page(&agent, url, Some(&cookie), t0).await;
            return (t0.elapsed(), id);
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "not ready within 60 s: {env}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// DELETE the environment and wait until its record is gone.
async fn delete(app: &Serve, id: &str) {
    let path = format!("/api/environments/{id}");
    let (status, _) = app.call(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 202);
    let t0 = Instant::now();
    while app.call(reqwest::Method::GET, &path, None).await.0 != 404 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "environment {id} not deleted within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("DEV8_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    // Warm the file cache once so neither side pays for a cold disk.
    bare_boot(&http).await;

    let app = Serve::start().await;
    let (mut bare, mut full) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        bare.push(bare_boot(&http).await);
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
