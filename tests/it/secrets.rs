//! Personal secrets: the API lists names only, validates names and values
//! (400 naming the field, nothing stored), keeps values write-only (no
//! response, audit record or log line holds one), keeps each account's
//! secrets to itself, follows the cookie Origin rule, goes with the account,
//! and hands the agent the values as they are at each start. The full-tier
//! test runs the real agent and code-server and looks for the value
//! everywhere it must not be.

use crate::harness::logs::capture_process;
use crate::harness::{Auth, Clock, Compute, LocalOpts, TestApp, User, spawn_app};
use dev8::domain::SECRETS_PER_USER;
use dev8::procs;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

async fn put(app: &TestApp, u: &User, name: &str, body: Value) -> crate::harness::Answer {
    app.send(
        Method::PUT,
        &format!("/api/secrets/{name}"),
        Some(body),
        Auth::Bearer(&u.token),
    )
    .await
}

async fn names(app: &TestApp, u: &User) -> Vec<String> {
    let a = app.get("/api/secrets", u).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

async fn audit(app: &TestApp, u: &User) -> Vec<Value> {
    let a = app.get("/api/audit?limit=200", u).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["records"].as_array().unwrap().clone()
}

/// A value no other part of the system could produce by chance.
fn unique_value() -> String {
    format!("s3cret-{}", dev8::domain::new_id())
}

#[tokio::test]
async fn secrets_are_listed_by_name_and_their_values_never_come_back() {
    let captured = capture_process();
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let (first, second) = (unique_value(), unique_value());

    let created = put(&app, &u, "GITHUB_TOKEN", json!({"value": first})).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["secret"]["name"], "GITHUB_TOKEN");
    assert!(created.body["secret"]["updatedAt"].is_string());
    app.clock.advance(chrono::Duration::seconds(5));
    let replaced = put(&app, &u, "GITHUB_TOKEN", json!({"value": second})).await;
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    assert_ne!(
        replaced.body["secret"]["updatedAt"],
        created.body["secret"]["updatedAt"]
    );
    assert_eq!(
        put(&app, &u, "NPM_TOKEN", json!({"value": ""}))
            .await
            .status,
        201
    );

    let list = app.get("/api/secrets", &u).await;
    assert_eq!(names(&app, &u).await, ["GITHUB_TOKEN", "NPM_TOKEN"]);
    let deleted = app.delete("/api/secrets/NPM_TOKEN", &u).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(
        app.delete("/api/secrets/NPM_TOKEN", &u).await.problem(404),
        &Value::Null
    );
    assert_eq!(names(&app, &u).await, ["GITHUB_TOKEN"]);

    let records = audit(&app, &u).await;
    let of = |action: &str| -> Vec<&Value> {
        records.iter().filter(|r| r["action"] == action).collect()
    };
    let sets = of("secret.set");
    assert_eq!(sets.len(), 3);
    assert!(sets.iter().all(|r| r["outcome"] == "success"));
    assert_eq!(sets[0]["detail"], "NPM_TOKEN");
    assert_eq!(sets[1]["detail"], "GITHUB_TOKEN");
    let dels = of("secret.deleted");
    assert_eq!(dels.len(), 1);
    assert_eq!(dels[0]["detail"], "NPM_TOKEN");

    let me = app.get("/api/auth/me", &u).await;
    let everything = format!(
        "{} {} {} {} {} {}",
        created.body,
        replaced.body,
        list.body,
        me.body,
        json!(records),
        captured.text()
    );
    for value in [&first, &second] {
        assert!(!everything.contains(value.as_str()), "a value came back");
    }
    // The store holds the sealed value, bound to the name and the account.
    let stored = app.platform.store.secrets(&u.id).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert!(stored[0].sealed.starts_with("v1.") && !stored[0].sealed.contains(&second));
    assert!(format!("{stored:?}").find(&stored[0].sealed).is_none());
}

#[tokio::test]
async fn bad_names_and_values_are_refused_by_field_and_nothing_is_stored() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let long_name = "A".repeat(129);
    for bad in [
        "lower",
        "1ABC",
        "A-B",
        &long_name,
        "PATH",
        "HOME",
        "DEV8_AGENT_TOKEN",
        "LD_PRELOAD",
    ] {
        let a = put(&app, &u, bad, json!({"value": "v"})).await;
        let errors = a.problem(400);
        assert!(errors["name"].is_string(), "{bad}: {}", a.body);
        assert!(errors.get("value").is_none());
    }
    let big = "x".repeat(32 * 1024 + 1);
    for (body, field) in [
        (json!({"value": big}), "value"),
        (json!({"value": 42}), "value"),
        (json!({"value": "a\u{0}b"}), "value"),
        (json!({}), "value"),
        (json!({"value": "ok", "note": "x"}), "note"),
    ] {
        let a = put(&app, &u, "TOKEN", body).await;
        assert!(a.problem(400)[field].is_string(), "{}", a.body);
        assert!(
            !a.body.to_string().contains("xxxxxxxx"),
            "the value is not echoed"
        );
    }
    let exactly = put(&app, &u, "BIG", json!({"value": "x".repeat(32 * 1024)})).await;
    assert_eq!(exactly.status, 201, "32 KB is allowed");
    assert_eq!(names(&app, &u).await, ["BIG"]);
    let sets = audit(&app, &u)
        .await
        .into_iter()
        .filter(|r| r["action"] == "secret.set")
        .count();
    assert_eq!(sets, 1, "refused requests write nothing");
}

#[tokio::test]
async fn an_account_keeps_at_most_its_share_of_secrets() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    for i in 0..SECRETS_PER_USER {
        assert_eq!(
            put(&app, &u, &format!("S{i}"), json!({"value": "v"}))
                .await
                .status,
            201
        );
    }
    let over = put(&app, &u, "ONE_MORE", json!({"value": "v"})).await;
    over.problem(403);
    assert_eq!(names(&app, &u).await.len(), SECRETS_PER_USER);
    // Replacing one is not adding one.
    assert_eq!(put(&app, &u, "S0", json!({"value": "w"})).await.status, 200);
}

#[tokio::test]
async fn other_users_neither_see_nor_delete_a_secret() {
    let app = spawn_app().await;
    let ada = app.user("ada@x.io").await;
    let bob = app.user("bob@x.io").await;
    assert_eq!(
        put(&app, &ada, "TOKEN", json!({"value": "ada's"}))
            .await
            .status,
        201
    );
    assert!(names(&app, &bob).await.is_empty());
    app.delete("/api/secrets/TOKEN", &bob).await.problem(404);
    // Bob's own secret by the same name is his, and Ada's stays hers.
    assert_eq!(
        put(&app, &bob, "TOKEN", json!({"value": "bob's"}))
            .await
            .status,
        201
    );
    assert_eq!(app.delete("/api/secrets/TOKEN", &bob).await.status, 204);
    assert_eq!(names(&app, &ada).await, ["TOKEN"]);
    let bobs = audit(&app, &bob).await;
    let bobs_sets = bobs.iter().filter(|r| r["action"] == "secret.set").count();
    assert_eq!(bobs_sets, 1, "Ada's record is not in Bob's log");
    app.send(Method::GET, "/api/secrets", None, Auth::None)
        .await
        .problem(401);
}

#[tokio::test]
async fn cookie_requests_need_the_dashboards_origin() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let path = "/api/secrets/TOKEN";
    let body = json!({"value": "v"});
    for origin in [None, Some("https://evil.example")] {
        let auth = Auth::Cookie(&u.cookie, origin);
        app.send(Method::PUT, path, Some(body.clone()), auth)
            .await
            .problem(403);
    }
    let ok = app
        .send(Method::PUT, path, Some(body), app.as_browser(&u))
        .await;
    assert_eq!(ok.status, 201, "{}", ok.body);
    app.send(Method::DELETE, path, None, Auth::Cookie(&u.cookie, None))
        .await
        .problem(403);
    assert_eq!(names(&app, &u).await, ["TOKEN"]);
    let gone = app
        .send(Method::DELETE, path, None, app.as_browser(&u))
        .await;
    assert_eq!(gone.status, 204);
}

#[tokio::test]
async fn deleting_the_account_deletes_its_secrets() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    put(&app, &u, "A", json!({"value": "1"})).await;
    put(&app, &u, "B", json!({"value": "2"})).await;
    let del = app
        .send(Method::DELETE, "/api/auth/me", None, Auth::Bearer(&u.token))
        .await;
    assert_eq!(del.status, 204, "{}", del.body);
    assert!(app.platform.store.secrets(&u.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn each_start_hands_the_agent_the_secrets_as_they_are_then() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    put(&app, &u, "TOKEN", json!({"value": "one"})).await;
    let id = app.new_env(&u, "a").await;
    app.settle(10).await;
    assert_eq!(app.status_of(&u, &id).await, "running");
    let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
    assert_eq!(
        app.fake().agent_secrets(&id).unwrap(),
        [pair("TOKEN", "one")]
    );

    // Changes apply at the next start, not to the running environment.
    put(&app, &u, "TOKEN", json!({"value": "two"})).await;
    put(&app, &u, "OTHER", json!({"value": "x"})).await;
    assert_eq!(
        app.fake().agent_secrets(&id).unwrap(),
        [pair("TOKEN", "one")]
    );
    for action in ["stop", "start"] {
        assert_eq!(app.action(&u, &id, action).await.status, 202);
        app.settle(10).await;
    }
    assert_eq!(app.status_of(&u, &id).await, "running");
    assert_eq!(
        app.fake().agent_secrets(&id).unwrap(),
        [pair("OTHER", "x"), pair("TOKEN", "two")]
    );
}

/// Every file under `dir`, recursively (symlinks not followed).
fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn a_secret_reaches_the_ides_processes_and_nowhere_else() {
    let captured = capture_process();
    let app = TestApp::builder()
        .compute(Compute::Local(LocalOpts::default()))
        .clock(Clock::Offset)
        .spawn()
        .await;
    let u = app.user("secrets@example.com").await;
    let value = unique_value();
    let set = put(&app, &u, "MY_API_TOKEN", json!({"value": value})).await;
    assert_eq!(set.status, 201, "{}", set.body);
    let id = app.new_env(&u, "s").await;
    app.wait_status(&u, &id, "running", Duration::from_secs(60))
        .await;

    // code-server (the agent's child) and what it starts carry the secret
    // under its own name, and none of the agent's own variables.
    let agent = app.local().agent_pid(&id).expect("the agent runs");
    let code_server = procs::marked(&id, &[agent])
        .into_iter()
        .find(|p| procs::stat(*p).is_some_and(|s| s.ppid == agent))
        .expect("code-server is the agent's child");
    let started: Vec<i32> = procs::marked(&id, &[agent, code_server])
        .into_iter()
        .filter(|p| procs::stat(*p).is_some_and(|s| s.ppid == code_server))
        .collect();
    assert!(!started.is_empty(), "code-server started a process");
    let wanted = format!("MY_API_TOKEN={value}");
    for pid in started.iter().chain([&code_server]) {
        let environ = procs::environ(*pid);
        assert!(environ.contains(&wanted), "pid {pid} lacks the secret");
        assert!(
            environ
                .iter()
                .all(|v| !v.starts_with("DEV8_AGENT_TOKEN=") && !v.starts_with("DEV8_SECRET_")),
            "pid {pid} got the agent's own variables"
        );
    }
    // No command line anywhere holds it.
    for pid in procs::pids() {
        assert!(
            !procs::cmdline(pid).contains(&value),
            "the command line of {pid}"
        );
    }
    // No /api answer holds it.
    let mut answers = String::new();
    for path in [
        "/api/secrets",
        "/api/environments",
        "/api/audit?limit=200",
        "/api/auth/me",
    ] {
        answers.push_str(&app.get(path, &u).await.body.to_string());
    }
    answers.push_str(&app.environment(&u, &id).await.to_string());
    assert!(answers.contains("MY_API_TOKEN") && !answers.contains(&value));

    // Stop it, shut down, then no file under the data dir (database, WAL,
    // queue, homes, workspace, keys) holds it in plain text.
    assert_eq!(app.action(&u, &id, "stop").await.status, 202);
    app.wait_status(&u, &id, "stopped", Duration::from_secs(30))
        .await;
    let data = app.shutdown().await;
    let files = files_under(data.path());
    assert!(
        files.iter().any(|f| f.ends_with("dev8.db")),
        "the database is there"
    );
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !contains(&bytes, value.as_bytes()),
            "{} holds the secret",
            f.display()
        );
    }
    let logs = captured.text();
    assert!(logs.contains("/api/secrets"), "logging works at all");
    assert!(!logs.contains(&value), "a log line holds the secret");
}
