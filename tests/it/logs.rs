//! Logs never carry secrets: a whole flow (sign-up, sign-in, tokens, an
//! environment through its jobs, a failed sign-in) is run with every log
//! line of the process captured at TRACE level, then searched for each
//! secret it handled.

use crate::harness::logs::capture_process;
use crate::harness::{Auth, spawn_app};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn no_secret_reaches_the_logs() {
    let captured = capture_process();

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
    let agent_token = app.fake().agent_token(&id).expect("the agent got a token");

    let logs = captured.text();
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
