//! `handler serve` as a child process for the benches (`#[path]`-included):
//! this build's binary (or `DEV8_BENCH_HANDLER`, to measure another build in
//! the same run), a fresh data dir, open sign-up, one user signed in with a
//! bearer token. Killed on drop.

// Each bench uses part of it.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct ChildServe {
    pub child: Child,
    pub port: u16,
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
    pub user_id: String,
    pub data_dir: PathBuf,
}

/// The `handler` binary to run: `DEV8_BENCH_HANDLER` or this build's.
pub fn handler_exe() -> PathBuf {
    std::env::var_os("DEV8_BENCH_HANDLER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_handler")))
}

impl ChildServe {
    /// Start `serve` with its state under `data/serve`, `code_server` as
    /// code-server's entry, and `env` on top; sign up and take a token.
    pub async fn start(data: &Path, code_server: &Path, env: &[(&str, &str)]) -> ChildServe {
        let mut serve = Self::launch(data, code_server, env).await;
        serve.sign_up().await;
        serve
    }

    /// `start` without signing anyone up.
    pub async fn launch(data: &Path, code_server: &Path, env: &[(&str, &str)]) -> ChildServe {
        let data_dir = data.join("serve");
        let mut cmd = Command::new(handler_exe());
        cmd.arg("serve")
            .args(["--port", "0"])
            .arg("--data-dir")
            .arg(&data_dir)
            .env("DEV8_SIGNUP", "open")
            .env("DEV8_LOG", "warn")
            .env("DEV8_CODE_SERVER", code_server)
            .env_remove("DEV8_PUBLIC_URL")
            .env_remove("DEV8_SIGNING_KEYS")
            .env_remove("DEV8_SECRETS_KEY")
            .env_remove("DEV8_STORE")
            .env_remove("DEV8_COMPUTE")
            .stdout(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("handler serve starts");
        // "Dev8 dashboard: http://127.0.0.1:PORT/" among its log lines; the
        // rest of its output is drained so it never blocks on a full pipe.
        let out = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("Dev8 dashboard: ") {
                    let _ = tx.send(url.trim().trim_end_matches('/').to_string());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("serve prints its URL within 60 s");
        let port: u16 = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {url:?}"));
        ChildServe {
            child,
            port,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            token: String::new(),
            user_id: String::new(),
            data_dir,
        }
    }

    /// Sign the bench's user up and take a bearer token.
    pub async fn sign_up(&mut self) {
        let creds = Self::creds();
        let r = self
            .http
            .post(format!("{}/api/auth/signup", self.base))
            .header("origin", &self.base)
            .json(&creds)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "signup");
        let r = self.post("/api/auth/token", creds).await;
        self.token = r["token"].as_str().expect("a token").to_string();
        let me = self.get("/api/auth/me").await;
        self.user_id = me["user"]["id"].as_str().expect("user id").to_string();
    }

    fn creds() -> Value {
        json!({"email": "bench@example.com", "password": "correct horse battery staple"})
    }

    /// Sign in again with the password (one more argon2id hash); the token
    /// it gives is dropped.
    pub async fn sign_in(&self) {
        let r = self.post("/api/auth/token", Self::creds()).await;
        assert!(r["token"].is_string(), "sign-in: {r}");
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let req = self.http.post(format!("{}{path}", self.base)).json(&body);
        req.send().await.unwrap().json().await.unwrap()
    }

    /// GET `path` with the bearer token; the JSON body.
    pub async fn get(&self, path: &str) -> Value {
        let req = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        req.send().await.unwrap().json().await.unwrap()
    }

    /// The request for `method path` with the bearer token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildServe {
    fn drop(&mut self) {
        // SIGTERM first: serve stops its agents on a graceful shutdown.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
