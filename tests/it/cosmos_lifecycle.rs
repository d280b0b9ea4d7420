//! `handler serve` with `DEV8_STORE=cosmos` and `DEV8_QUEUE_BACKEND=storage`:
//! two control-plane instances with their own empty data dirs share one
//! Cosmos database (the patched Cosmos-compatible server on loopback), one
//! Storage queue (Azurite, drained by both workers) and the signing keys, and
//! see the same users, sessions and environments. Compute is the in-test stateful
//! fake (`common::FakeCompute`), shared by both instances like a real cloud.

mod common;

use clap::Parser;
use common::{FakeCompute, fake_compute::FakeState, stores};
use dev8::auth::KeySet;
use dev8::compute::Compute;
use dev8::config::{Cli, Command};
use dev8::startup::{Application, Overrides};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

struct Instance {
    base: String,
    _data_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Instance {
    /// `handler serve` as the command line builds it, on `port`, with an
    /// empty data dir of its own.
    async fn start(
        port: u16,
        public_url: &str,
        keys: &str,
        db: &dev8::store::CosmosConfig,
        compute: &Arc<FakeCompute>,
    ) -> Self {
        let key =
            secrecy::ExposeSecret::expose_secret(db.key.as_ref().expect("key auth")).to_string();
        let port_s = port.to_string();
        // Both instances also share one Storage queue on Azurite (its
        // connection string comes from `AzureWebJobsStorage`, as in Azure).
        let queue = format!("q-{}", db.database.to_ascii_lowercase());
        let args = [
            "handler",
            "serve",
            "--port",
            &port_s,
            "--store",
            "cosmos",
            "--cosmos-endpoint",
            &db.endpoint,
            "--cosmos-key",
            &key,
            "--cosmos-database",
            &db.database,
            "--cosmos-create-containers",
            "true",
            "--signing-keys",
            keys,
            "--public-url",
            public_url,
            "--reconcile-interval-ms",
            "50",
            "--static-dir",
            "static-web",
            "--queue-backend",
            "storage",
            "--queue-name",
            &queue,
        ];
        let Command::Serve(serve) = Cli::try_parse_from(args).expect("serve arguments").command
        else {
            panic!("the arguments name the serve command");
        };
        let data_dir = tempfile::tempdir().expect("temp dir");
        let overrides = Overrides {
            compute: Some(compute.clone() as Arc<dyn Compute>),
            ..Default::default()
        };
        let app = Application::build(serve.settings, serve.port, data_dir.path(), overrides)
            .await
            .expect("building the app");
        let base = format!("http://127.0.0.1:{}", app.port());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        Instance {
            base,
            _data_dir: data_dir,
            stop: Some(tx),
            task,
        }
    }

    async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.task
            .await
            .expect("server task")
            .expect("server ran cleanly");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .unwrap()
        .port()
}

struct Client {
    http: reqwest::Client,
    origin: String,
}

impl Client {
    async fn send(
        &self,
        method: reqwest::Method,
        url: String,
        cookie: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value, Option<String>) {
        let mut req = self
            .http
            .request(method, url)
            .header("Origin", &self.origin);
        if let Some(c) = cookie {
            req = req.header("Cookie", c);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().to_string())
            .find(|c| !c.ends_with('='));
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, body, cookie)
    }
}

/// Poll `GET url` until `done` holds for the body, for at most 30 s.
async fn wait_for(
    c: &Client,
    url: String,
    cookie: &str,
    what: &str,
    done: impl Fn(StatusCode, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body, _) = c
            .send(reqwest::Method::GET, url.clone(), Some(cookie), None)
            .await;
        if done(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last answer {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_users_sessions_and_environments() {
    let db = stores::cosmos_config();
    let keys = KeySet::generate().to_setting();
    let compute = Arc::new(FakeCompute::default());
    // Both instances sit behind one public URL (a load balancer's): it is the
    // token issuer and the Origin the CSRF check expects.
    let port_a = free_port();
    let public_url = format!("http://127.0.0.1:{port_a}");
    let a = Instance::start(port_a, &public_url, &keys, &db, &compute).await;
    let b = Instance::start(0, &public_url, &keys, &db, &compute).await;
    let c = Client {
        http: reqwest::Client::new(),
        origin: public_url.clone(),
    };
    use reqwest::Method as M;

    // Sign up on A; the session works on B.
    let creds = json!({"email": "ada@example.com", "password": "correct horse battery staple"});
    let (status, body, cookie) = c
        .send(
            M::POST,
            format!("{}/api/auth/signup", a.base),
            None,
            Some(creds.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let cookie = cookie.expect("a session cookie");
    let (status, me, _) = c
        .send(
            M::GET,
            format!("{}/api/auth/me", b.base),
            Some(&cookie),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the session from A works on B: {me}"
    );
    assert_eq!(me["user"]["email"], "ada@example.com");

    // Sign-up policy `first` is shared too: B refuses a second account.
    let other = json!({"email": "bob@example.com", "password": "correct horse battery staple"});
    let (status, _, _) = c
        .send(
            M::POST,
            format!("{}/api/auth/signup", b.base),
            None,
            Some(other),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Create on B (B's worker reconciles it); A sees it running.
    let spec = json!({"name": "app", "baseImage": "node", "preset": "small"});
    let (status, created, _) = c
        .send(
            M::POST,
            format!("{}/api/environments", b.base),
            Some(&cookie),
            Some(spec.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    let id = created["environment"]["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let (status, _, _) = c
        .send(
            M::POST,
            format!("{}/api/environments", a.base),
            Some(&cookie),
            Some(spec),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "the name is taken, whichever instance is asked"
    );
    let env_url = |base: &str| format!("{base}/api/environments/{id}");
    wait_for(&c, env_url(&a.base), &cookie, "running on A", |s, b| {
        s == StatusCode::OK && b["environment"]["status"] == "running"
    })
    .await;
    assert_eq!(compute.state(&id), Some(FakeState::Running));
    let (_, list, _) = c
        .send(
            M::GET,
            format!("{}/api/environments", a.base),
            Some(&cookie),
            None,
        )
        .await;
    assert_eq!(list["environments"].as_array().map(Vec::len), Some(1));

    // Stop through A, seen stopped on B; start through B, seen running on A.
    let (status, _, _) = c
        .send(
            M::POST,
            format!("{}/stop", env_url(&a.base)),
            Some(&cookie),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_for(&c, env_url(&b.base), &cookie, "stopped on B", |_, b| {
        b["environment"]["status"] == "stopped"
    })
    .await;
    assert!(
        compute.state(&id) == Some(FakeState::Stopped) && compute.resource_count() == 1,
        "stop keeps the workspace"
    );
    let (status, _, _) = c
        .send(
            M::POST,
            format!("{}/start", env_url(&b.base)),
            Some(&cookie),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_for(
        &c,
        env_url(&a.base),
        &cookie,
        "running again on A",
        |_, b| b["environment"]["status"] == "running",
    )
    .await;

    // Delete through A: gone everywhere, resources included.
    let (status, _, _) = c
        .send(M::DELETE, env_url(&a.base), Some(&cookie), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    wait_for(
        &c,
        env_url(&b.base),
        &cookie,
        "deleted (404) on B",
        |s, _| s == StatusCode::NOT_FOUND,
    )
    .await;
    assert!(
        compute.resource_count() == 0,
        "delete removes the resources"
    );

    // Sign in on B by email; sign out on A revokes that session on B too.
    let (status, _, cookie_b) = c
        .send(
            M::POST,
            format!("{}/api/auth/signin", b.base),
            None,
            Some(creds),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let cookie_b = cookie_b.expect("a session cookie from B");
    let (status, _, _) = c
        .send(
            M::POST,
            format!("{}/api/auth/signout", a.base),
            Some(&cookie_b),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = c
        .send(
            M::GET,
            format!("{}/api/auth/me", b.base),
            Some(&cookie_b),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a revoked session is refused by every instance"
    );
    let (status, _, _) = c
        .send(
            M::GET,
            format!("{}/api/auth/me", b.base),
            Some(&cookie),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "the other session lives on");

    a.shutdown().await;
    b.shutdown().await;
}
