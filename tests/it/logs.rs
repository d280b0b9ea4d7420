//! Logs never carry secrets: a whole flow (sign-up, sign-in, tokens, an
//! environment through its jobs, a failed sign-in) is run with every log
//! line captured at TRACE level, then searched for each secret it handled.

mod common;

use common::{Auth, spawn_app};
use reqwest::Method;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_reaches_the_logs() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let app = spawn_app().await;
    let password = "correct-horse-battery";
    let u = app.user("ada@x.io").await;
    let signin = app
        .send(
            Method::POST,
            "/api/auth/signin",
            Some(json!({"email":"ada@x.io","password": password})),
            Auth::Origin(app.origin()),
        )
        .await;
    let cookie = signin.cookie().unwrap();
    let wrong = "wrong-password-xyz";
    app.send(
        Method::POST,
        "/api/auth/token",
        Some(json!({"email":"ada@x.io","password": wrong})),
        Auth::None,
    )
    .await;
    let id = app.new_env(&u, "a").await;
    app.settle(10).await;
    assert_eq!(app.status_of(&u, &id).await, "running");
    app.send(
        Method::GET,
        "/api/environments?ticket=secret-query",
        None,
        Auth::Bearer(&u.token),
    )
    .await;
    let agent_token = app.compute.agent_token(&id).expect("the agent got a token");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("environment created"),
        "logging works at all:\n{logs}"
    );
    assert!(
        logs.contains("/api/environments"),
        "request paths are logged"
    );
    let session_cookie_value = cookie.split_once('=').unwrap().1.to_string();
    let signing_seed = app.platform.keys.to_setting();
    let seed = signing_seed.split_once(':').unwrap().1;
    for (what, secret) in [
        ("password", password),
        ("wrong password", wrong),
        ("bearer token", u.token.as_str()),
        ("session cookie", session_cookie_value.as_str()),
        ("agent token", agent_token.as_str()),
        ("signing key", seed),
        ("query string", "secret-query"),
    ] {
        assert!(!logs.contains(secret), "the {what} is in the logs");
    }
}
