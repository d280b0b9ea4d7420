//! Shared test harness: `spawn_app()` runs the real router and jobs on
//! 127.0.0.1 with an in-memory store and queue, a manual clock and
//! `FakeCompute`, and gives typed request helpers. Tests drive jobs by hand
//! (`settle`) instead of sleeping.
#![allow(dead_code)]

pub mod azurite;
pub mod browser;
pub mod fake_compute;
pub mod github;
pub mod host_sim;
pub mod idp;
pub mod stores;

use chrono::Duration;
use dev8::clock::{Clock, ManualClock};
use dev8::config::{Settings, SignupPolicy};
use dev8::jobs::{sweep, worker};
use dev8::platform::JobContext;
use dev8::queue::{EmbeddedQueue, JobQueue};
use dev8::startup::{Application, Overrides};
use dev8::store::{SqliteStore, Store};
pub use fake_compute::FakeCompute;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;

pub struct TestApp {
    pub url: String,
    pub platform: Arc<JobContext>,
    pub clock: ManualClock,
    pub compute: Arc<FakeCompute>,
    pub queue: Arc<EmbeddedQueue>,
    pub client: reqwest::Client,
    _data_dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

/// Settings as `serve` would have them from an empty environment, with
/// `signup=open` so tests can make several users.
pub fn test_settings() -> Settings {
    let mut s = Settings::from_env().expect("default settings parse");
    s.signup = SignupPolicy::Open;
    s.signing_keys = None;
    s.public_url = None;
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings();
    configure(&mut settings);
    let data_dir = tempfile::tempdir().expect("temp dir");
    let clock = ManualClock::default();
    let clock_dyn: Arc<dyn Clock> = Arc::new(clock.clone());
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&data_dir.path().join("dev8.db")).expect("store"));
    let queue = Arc::new(EmbeddedQueue::in_memory("env-jobs", clock_dyn.clone()).expect("queue"));
    let compute = Arc::new(FakeCompute::default());
    let app = Application::build(
        settings,
        0,
        data_dir.path(),
        Overrides {
            store: Some(store),
            queue: Some(queue.clone()),
            compute: Some(compute.clone()),
            clock: Some(clock_dyn),
            background: Some(false),
        },
    )
    .await
    .expect("app builds");
    let url = format!("http://127.0.0.1:{}", app.port());
    let platform = app.jobs();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp {
        url,
        platform,
        clock,
        compute,
        queue,
        client,
        _data_dir: data_dir,
        _shutdown: tx,
    }
}

/// A signed-in API client (bearer token).
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub email: String,
    pub token: String,
}

/// The answer to a request: status, headers and the JSON body (or Null).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn content_type(&self) -> &str {
        self.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Assert a problem+json error with this status and return its field errors.
    #[track_caller]
    pub fn problem(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(
            self.content_type(),
            "application/problem+json",
            "body: {}",
            self.body
        );
        assert_eq!(self.body["status"], status);
        &self.body["errors"]
    }

    pub fn cookie(&self) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("dev8_session="))
            .map(|c| c.split(';').next().unwrap().to_string())
    }
}

impl TestApp {
    pub fn origin(&self) -> &str {
        &self.url
    }

    /// Send a request; `auth` is a bearer token, `cookie` a `name=value` pair.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        auth: Auth<'_>,
    ) -> Answer {
        let mut req = self.client.request(method, format!("{}{}", self.url, path));
        match auth {
            Auth::None => {}
            Auth::Bearer(t) => req = req.bearer_auth(t),
            Auth::Cookie(c, origin) => {
                req = req.header("cookie", c);
                if let Some(o) = origin {
                    req = req.header("origin", o);
                }
            }
            Auth::Origin(o) => req = req.header("origin", o),
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, user: &User) -> Answer {
        self.send(Method::GET, path, None, Auth::Bearer(&user.token))
            .await
    }

    pub async fn post(&self, path: &str, body: Value, user: &User) -> Answer {
        self.send(Method::POST, path, Some(body), Auth::Bearer(&user.token))
            .await
    }

    pub async fn sign_up(&self, email: &str, password: &str) -> Answer {
        self.send(
            Method::POST,
            "/api/auth/signup",
            Some(json!({"email": email, "password": password})),
            Auth::Origin(self.origin()),
        )
        .await
    }

    /// Sign up a fresh user and get a bearer token for them.
    pub async fn user(&self, email: &str) -> User {
        let a = self.sign_up(email, "correct-horse-battery").await;
        assert_eq!(a.status, 201, "sign-up: {}", a.body);
        let t = self
            .send(
                Method::POST,
                "/api/auth/token",
                Some(json!({"email": email, "password": "correct-horse-battery"})),
                Auth::None,
            )
            .await;
        assert_eq!(t.status, 200, "token: {}", t.body);
        User {
            id: a.body["user"]["id"].as_str().unwrap().to_string(),
            email: email.to_string(),
            token: t.body["token"].as_str().unwrap().to_string(),
        }
    }

    /// Create an environment (small Node.js unless `body` says otherwise).
    pub async fn create_env(&self, user: &User, name: &str) -> Value {
        let a = self
            .post(
                "/api/environments",
                json!({"name": name, "baseImage": "node", "preset": "small"}),
                user,
            )
            .await;
        assert_eq!(a.status, 202, "create: {}", a.body);
        a.body["environment"].clone()
    }

    /// Create a small Node.js environment and return its id.
    pub async fn new_env(&self, user: &User, name: &str) -> String {
        self.create_env(user, name).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn env(&self, user: &User, id: &str) -> Answer {
        self.get(&format!("/api/environments/{id}"), user).await
    }

    pub async fn status_of(&self, user: &User, id: &str) -> String {
        let a = self.env(user, id).await;
        a.body["environment"]["status"]
            .as_str()
            .unwrap_or("<gone>")
            .to_string()
    }

    /// Run every visible job, then move the clock a second and repeat, until
    /// the queue is empty or `rounds` pass. Returns the rounds used.
    pub async fn settle(&self, rounds: usize) -> usize {
        for round in 0..rounds {
            worker::drain(&self.platform, 100).await.expect("drain");
            if self.queue.approximate_len().await.unwrap() == 0 {
                return round;
            }
            self.clock.advance(Duration::seconds(1));
        }
        rounds
    }

    pub async fn sweep(&self) -> sweep::SweepReport {
        sweep::sweep(&self.platform).await.expect("sweep")
    }

    pub fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.now()
    }
}

#[derive(Clone, Copy)]
pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    /// A session cookie, with an optional Origin header.
    Cookie(&'a str, Option<&'a str>),
    /// No credentials, just an Origin header.
    Origin(&'a str),
}
