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

/// A request that fails on the server is logged once, at ERROR, with its
/// route's name, its method, its status and the cause — while the answer
/// names no cause. The failure is a real one: the
/// database loses a table under the running process (another connection
/// drops it), so the store's query fails as it would on a broken disk.
#[tokio::test]
async fn a_failed_request_is_logged_with_its_route_method_and_cause() {
    let captured = capture_process();
    let app = spawn_app().await;
    let u = app.user("grace@x.io").await;
    assert_eq!(app.get("/api/environments", &u).await.status, 200);

    let db = rusqlite::Connection::open(app.data_dir().join("dev8.db")).unwrap();
    db.execute_batch("DROP TABLE environments").unwrap();
    drop(db);
    let r = app.get("/api/environments", &u).await;
    // A store that fails is a backing service unavailable.
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(
        r.body["detail"],
        "a backing service is unavailable; try again shortly"
    );
    assert!(!r.body.to_string().contains("environments"), "{}", r.body);

    let logs = captured.text();
    // Other tests share the process's log: this failure is the only one
    // whose cause names the dropped table.
    let failed: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("no such table: environments"))
        .collect();
    assert_eq!(failed.len(), 1, "one line per failure:\n{logs}");
    assert!(
        !logs.contains("response failed"),
        "tower-http's own line too"
    );
    let line = failed[0];
    for part in [
        "ERROR",
        "request failed",
        "route=\"EnvironmentsList\"",
        "method=\"GET\"",
        "status=503",
        "no such table: environments",
    ] {
        assert!(line.contains(part), "{part} missing from: {line}");
    }
    app.shutdown().await;
}
