//! Typed requests against a `TestApp`: sign-up, users, environments, and the
//! hand-driven jobs (`settle`, `sweep`). Requests go to 127.0.0.1 and follow
//! no redirects.

use super::app::TestApp;
use chrono::Duration;
use dev8::jobs::{sweep, worker};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Instant;

/// The password every test user signs up with.
pub const PASSWORD: &str = "correct-horse-battery";

/// A signed-up user: a bearer token (what API clients use, and what the
/// helpers below send) and the session cookie (`name=value`) a browser got
/// at sign-up or sign-in.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub token: String,
    pub cookie: String,
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

    /// The session cookie this answer set (`dev8_session=value`).
    pub fn cookie(&self) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("dev8_session="))
            .map(|c| c.split(';').next().unwrap().to_string())
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

impl TestApp {
    /// The app's own origin (what the dashboard's requests carry).
    pub fn origin(&self) -> &str {
        &self.url
    }

    /// The user's session cookie with our Origin: a request from the dashboard.
    pub fn as_browser<'a>(&'a self, user: &'a User) -> Auth<'a> {
        Auth::Cookie(&user.cookie, Some(self.origin()))
    }

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
            Auth::Bearer(t) => req = req.header(self.bearer_header, format!("Bearer {t}")),
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

    pub async fn delete(&self, path: &str, user: &User) -> Answer {
        self.send(Method::DELETE, path, None, Auth::Bearer(&user.token))
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

    /// Sign up a fresh user (with `PASSWORD`) and get a bearer token for them.
    pub async fn user(&self, email: &str) -> User {
        let a = self.sign_up(email, PASSWORD).await;
        assert_eq!(a.status, 201, "sign-up: {}", a.body);
        self.signed_in(email, a).await
    }

    /// Sign an existing user in again (a restarted app on a new port is a
    /// new issuer: old tokens do not hold there).
    pub async fn sign_in(&self, email: &str) -> User {
        let a = self
            .send(
                Method::POST,
                "/api/auth/signin",
                Some(json!({"email": email, "password": PASSWORD})),
                Auth::Origin(self.origin()),
            )
            .await;
        assert_eq!(a.status, 200, "sign-in: {}", a.body);
        self.signed_in(email, a).await
    }

    /// An API token (`POST /api/auth/token`) for an account with `PASSWORD`.
    pub async fn api_token(&self, email: &str) -> String {
        let t = self
            .send(
                Method::POST,
                "/api/auth/token",
                Some(json!({"email": email, "password": PASSWORD})),
                Auth::None,
            )
            .await;
        assert_eq!(t.status, 200, "token: {}", t.body);
        t.body["token"].as_str().unwrap().to_string()
    }

    async fn signed_in(&self, email: &str, a: Answer) -> User {
        User {
            id: a.body["user"]["id"].as_str().unwrap().to_string(),
            token: self.api_token(email).await,
            cookie: a.cookie().expect("a session cookie"),
        }
    }

    /// Create a small Node.js environment.
    pub async fn create_env(&self, user: &User, name: &str) -> Value {
        self.create_env_from(user, name, "node").await
    }

    async fn create_env_from(&self, user: &User, name: &str, template: &str) -> Value {
        let a = self
            .post(
                "/api/environments",
                json!({"name": name, "baseImage": template, "preset": "small"}),
                user,
            )
            .await;
        assert_eq!(a.status, 202, "create: {}", a.body);
        a.body["environment"].clone()
    }

    /// Create a small Node.js environment and return its id.
    pub async fn new_env(&self, user: &User, name: &str) -> String {
        self.new_env_from(user, name, "node").await
    }

    /// Create a small environment from `template` and return its id.
    pub async fn new_env_from(&self, user: &User, name: &str, template: &str) -> String {
        self.create_env_from(user, name, template).await["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub async fn env(&self, user: &User, id: &str) -> Answer {
        self.get(&format!("/api/environments/{id}"), user).await
    }

    /// The environment's record as the API shows it (which must exist).
    pub async fn environment(&self, user: &User, id: &str) -> Value {
        let a = self.env(user, id).await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body["environment"].clone()
    }

    /// The environment's `lastActivityAt`.
    pub async fn last_activity(&self, user: &User, id: &str) -> chrono::DateTime<chrono::Utc> {
        self.environment(user, id).await["lastActivityAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    /// Poll (in real time) until an agent's report moved `lastActivityAt` to
    /// `at` or later; `Err` after `within`.
    pub async fn wait_activity_since(
        &self,
        user: &User,
        id: &str,
        at: chrono::DateTime<chrono::Utc>,
        within: std::time::Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + within;
        while self.last_activity(user, id).await < at {
            if Instant::now() >= deadline {
                return Err(format!("no use reported since {at}"));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(())
    }

    pub async fn status_of(&self, user: &User, id: &str) -> String {
        let a = self.env(user, id).await;
        a.body["environment"]["status"]
            .as_str()
            .unwrap_or("<gone>")
            .to_string()
    }

    /// `start`, `stop`, `open` (POST `.../{action}`) or `delete`.
    pub async fn action(&self, user: &User, id: &str, action: &str) -> Answer {
        match action {
            "delete" => self.delete(&format!("/api/environments/{id}"), user).await,
            a => {
                self.post(&format!("/api/environments/{id}/{a}"), json!({}), user)
                    .await
            }
        }
    }

    /// A fresh IDE ticket URL through `POST .../open`.
    pub async fn open_url(&self, user: &User, id: &str) -> String {
        let a = self.action(user, id, "open").await;
        assert_eq!(a.status, 200, "{}", a.body);
        a.body["url"].as_str().unwrap().to_string()
    }

    /// Poll (in real time) until the environment has `status`; panics after `within`.
    pub async fn wait_status(
        &self,
        user: &User,
        id: &str,
        status: &str,
        within: std::time::Duration,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let env = self.environment(user, id).await;
            if env["status"] == status {
                return env;
            }
            assert!(
                Instant::now() < deadline,
                "environment {id} not {status} within {within:?}: {env}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Poll (in real time) until the environment's record is gone.
    pub async fn wait_gone(&self, user: &User, id: &str, within: std::time::Duration) {
        let deadline = Instant::now() + within;
        while self.env(user, id).await.status != 404 {
            assert!(
                Instant::now() < deadline,
                "environment {id} not deleted within {within:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Messages in the queue, visible or not.
    pub async fn queue_len(&self) -> u64 {
        self.queue().approximate_len().await.unwrap()
    }

    /// Run every visible job, then move the clock a second and repeat, until
    /// the queue is empty or `rounds` pass. Returns the rounds used.
    pub async fn settle(&self, rounds: usize) -> usize {
        for round in 0..rounds {
            worker::drain(&self.platform, 100).await.expect("drain");
            if self.queue_len().await == 0 {
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
