//! Shared test helpers: the real app on 127.0.0.1 with temporary state, the
//! local compute backend running real code-server, and typed requests.
#![allow(dead_code)]

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use dev8::clock::Clock;
use dev8::compute::{LocalCompute, LocalOptions};
use dev8::config::{Settings, SignupPolicy};
use dev8::platform::JobContext;
use dev8::queue::{EmbeddedQueue, JobQueue};
use dev8::startup::{Application, Overrides};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "correct horse battery staple";

/// code-server's entry: `DEV8_CODE_SERVER` or the project's tools folder.
/// Missing code-server fails the test (CI installs it; locally run scripts/setup.sh).
pub fn code_server() -> PathBuf {
    let explicit = std::env::var_os("DEV8_CODE_SERVER").map(PathBuf::from);
    let path = explicit.unwrap_or_else(|| {
        dev8::compute::local::tools_entry(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
    });
    assert!(
        path.is_file(),
        "code-server is not installed at {}: run `scripts/setup.sh --no-build` (or set DEV8_CODE_SERVER)",
        path.display()
    );
    path
}

/// The wall clock plus an offset the test moves forward (queue delays,
/// leases and idle timeouts follow it; tokens stay valid in real time).
#[derive(Debug, Default, Clone)]
pub struct OffsetClock(Arc<Mutex<ChronoDuration>>);

impl OffsetClock {
    pub fn advance(&self, by: ChronoDuration) {
        *self.0.lock().unwrap() += by;
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + *self.0.lock().unwrap()
    }
}

pub struct TestApp {
    pub base: String,
    pub platform: Arc<JobContext>,
    pub compute: Arc<LocalCompute>,
    pub clock: OffsetClock,
    pub data: tempfile::TempDir,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub struct Options {
    pub activity_interval: Duration,
    pub cpu_sample: Duration,
    /// `DEV8_RECONCILE_INTERVAL_MS` (serve's default is 1000).
    pub reconcile_interval_ms: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            activity_interval: Duration::from_secs(60),
            cpu_sample: Duration::from_secs(15),
            reconcile_interval_ms: 200,
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(opts: Options) -> TestApp {
    spawn_in(tempfile::tempdir().expect("temp dir"), opts).await
}

/// Start the app on an existing data dir (a restart of `serve`).
pub async fn spawn_in(data: tempfile::TempDir, opts: Options) -> TestApp {
    let mut settings = Settings::from_env().expect("settings");
    settings.public_url = None;
    settings.signing_keys = None;
    settings.signup = SignupPolicy::Open;
    settings.reconcile_interval_ms = opts.reconcile_interval_ms;
    settings.sweep_interval_seconds = 3600;
    settings.static_dir = data.path().join("no-static");
    let clock = OffsetClock::default();
    let queue: Arc<dyn JobQueue> = Arc::new(
        EmbeddedQueue::open(
            &data.path().join("queue.db"),
            "env-jobs",
            Arc::new(clock.clone()),
        )
        .expect("queue"),
    );
    let local = LocalOptions {
        data_dir: data.path().to_path_buf(),
        code_server: code_server(),
        agent_exe: PathBuf::from(env!("CARGO_BIN_EXE_handler")),
        node: dev8::compute::local::find_node().expect("node on PATH"),
        activity_interval: opts.activity_interval,
        cpu_sample: opts.cpu_sample,
    };
    let reconciles = Arc::new(dev8::reconciles::QueueReconciles::new(queue.clone()));
    let compute = Arc::new(LocalCompute::new(local, reconciles).expect("local compute"));
    let overrides = Overrides {
        queue: Some(queue),
        compute: Some(compute.clone()),
        clock: Some(Arc::new(clock.clone())),
        background: Some(true),
        ..Default::default()
    };
    let app = Application::build(settings, 0, data.path(), overrides)
        .await
        .expect("app builds");
    let base = format!("http://127.0.0.1:{}", app.port());
    let platform = app.jobs();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp {
        base,
        platform,
        compute,
        clock,
        data,
        http,
        stop: Some(tx),
        task: Some(task),
    }
}

impl TestApp {
    /// Shut down like `serve` on SIGTERM (agents stopped); returns the data dir.
    pub async fn shutdown(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(30), t)
                .await
                .expect("shutdown in time")
                .unwrap()
                .unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.data, dir)
    }

    /// Sign up a new user; returns their session cookie (`name=value`).
    pub async fn signup(&self, email: &str) -> String {
        let r = self
            .http
            .post(format!("{}/api/auth/signup", self.base))
            .header("origin", &self.base)
            .json(&json!({"email": email, "password": PASSWORD, "name": "Tester"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
        let set = r.headers().get("set-cookie").unwrap().to_str().unwrap();
        set.split(';').next().unwrap().to_string()
    }

    /// Sign in an existing user; returns their session cookie.
    pub async fn signin(&self, email: &str) -> String {
        let r = self
            .http
            .post(format!("{}/api/auth/signin", self.base))
            .header("origin", &self.base)
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let set = r.headers().get("set-cookie").unwrap().to_str().unwrap();
        set.split(';').next().unwrap().to_string()
    }

    pub async fn post(&self, cookie: &str, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .header("origin", &self.base)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, cookie: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .header("cookie", cookie)
            .send()
            .await
            .unwrap()
    }

    pub async fn create(&self, cookie: &str, name: &str, template: &str) -> String {
        let r = self
            .post(
                cookie,
                "/api/environments",
                json!({"name": name, "baseImage": template, "preset": "small"}),
            )
            .await;
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        r.json::<Value>().await.unwrap()["environment"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn environment(&self, cookie: &str, id: &str) -> Value {
        let r = self.get(cookie, &format!("/api/environments/{id}")).await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["environment"].clone()
    }

    /// Poll until the environment has `status`; panics after `within`.
    pub async fn wait_status(
        &self,
        cookie: &str,
        id: &str,
        status: &str,
        within: Duration,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let env = self.environment(cookie, id).await;
            if env["status"] == status {
                return env;
            }
            assert!(
                Instant::now() < deadline,
                "environment {id} not {status} within {within:?}: {env}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Poll until the environment's record is gone.
    pub async fn wait_gone(&self, cookie: &str, id: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while self
            .get(cookie, &format!("/api/environments/{id}"))
            .await
            .status()
            != 404
        {
            assert!(
                Instant::now() < deadline,
                "environment {id} not deleted within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A fresh IDE ticket URL through `POST .../open`.
    pub async fn open_url(&self, cookie: &str, id: &str) -> String {
        let r = self
            .post(cookie, &format!("/api/environments/{id}/open"), json!({}))
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        r.json::<Value>().await.unwrap()["url"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// A client for one environment's agent: `e-<id>.localhost` resolves to
/// loopback (the machine's resolver may not), no redirects followed.
pub fn agent_client(ide_url: &str) -> reqwest::Client {
    let url = reqwest::Url::parse(ide_url).unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], url.port().unwrap()));
    reqwest::Client::builder()
        .resolve(url.host_str().unwrap(), addr)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap()
}

/// Redeem a ticket URL; returns the agent's session cookie (`name=value`).
pub async fn redeem(client: &reqwest::Client, ticket_url: &str) -> String {
    let r = client.get(ticket_url).send().await.unwrap();
    assert_eq!(r.status(), 303, "ticket refused: {}", r.status());
    assert_eq!(r.headers()["location"], "/");
    assert_eq!(r.headers()["referrer-policy"], "no-referrer");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let set = r.headers()["set-cookie"].to_str().unwrap();
    assert!(set.contains("HttpOnly"), "{set}");
    set.split(';').next().unwrap().to_string()
}

/// The origin part of an IDE URL (`http://e-<id>.localhost:<port>`).
pub fn origin_of(ide_url: &str) -> String {
    ide_url.trim_end_matches('/').to_string()
}
