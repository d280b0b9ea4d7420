//! Usage and progress with real agents and code-server (full tier): the
//! agent's periodic report arrives soon after `running` and follows what
//! the environment's processes do; a reporting but untouched environment
//! still idles out; a create shows its steps.
//!
//! The workload runs as a process the test starts with the environment's
//! marker (`DEV8_ENVIRONMENT_ID`) in the workspace, as every process started
//! from code-server's terminal carries it: the agent's measurement sees
//! exactly what it would see of a terminal command. (It is not typed into
//! the workbench's terminal: that needs a driven browser.)

use crate::harness::{Clock, Compute, LocalOpts, TestApp, User};
use chrono::Duration as Minutes;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const REPORT: Duration = Duration::from_millis(500);

async fn reporting_app() -> TestApp {
    TestApp::builder()
        .compute(Compute::Local(LocalOpts {
            report_interval: REPORT,
            ..LocalOpts::default()
        }))
        .clock(Clock::Offset)
        .spawn()
        .await
}

async fn create(app: &TestApp, u: &User, name: &str) -> String {
    let r = app
        .post(
            "/api/environments",
            json!({"name": name, "baseImage": "node", "preset": "small", "idleTimeoutMinutes": 5}),
            u,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    r.body["environment"]["id"].as_str().unwrap().to_string()
}

/// Poll the environment until `ok` says its usage is what we wait for.
async fn wait_usage(
    app: &TestApp,
    u: &User,
    id: &str,
    within: Duration,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let usage = app.environment(u, id).await["usage"].clone();
        if !usage.is_null() && ok(&usage) {
            return usage;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {within:?}; last usage: {usage}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn n(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn usage_arrives_soon_after_running_and_follows_memory_and_files() {
    let app = reporting_app().await;
    let u = app.user("usage@example.com").await;
    let id = create(&app, &u, "usage").await;
    app.wait_status(&u, &id, "running", Duration::from_secs(60))
        .await;
    let running_at = Instant::now();
    let first = wait_usage(
        &app,
        &u,
        &id,
        Duration::from_secs(30),
        "first usage",
        |_| true,
    )
    .await;
    eprintln!(
        "first usage {:?} after running: {first}",
        running_at.elapsed()
    );
    // Limits are the environment's nominal size (small: 2 GB, 20 GB).
    assert_eq!(n(&first, "memoryLimitBytes"), 2 << 30);
    assert_eq!(n(&first, "diskLimitBytes"), 20 << 30);
    // code-server itself is running: its memory counts.
    assert!(n(&first, "memoryBytes") > 50 << 20, "{first}");
    assert!(first["cpuPercent"].as_f64().unwrap() >= 0.0);

    // A terminal command that holds 300 MB and writes a 64 MB file.
    let workspace = app.local().home(&id).join("workspace");
    let script = "const b = Buffer.alloc(300 * 1024 * 1024, 7); \
                  require('fs').writeFileSync('big.bin', Buffer.alloc(64 * 1024 * 1024, 1)); \
                  setInterval(() => b[0]++, 1000);";
    let mut work = tokio::process::Command::new(crate::peers::node())
        .args(["-e", script])
        .env(dev8::procs::MARKER, &id)
        .current_dir(&workspace)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let (mem0, disk0) = (n(&first, "memoryBytes"), n(&first, "diskBytes"));
    let grown = wait_usage(
        &app,
        &u,
        &id,
        Duration::from_secs(30),
        "usage to grow",
        |u| n(u, "memoryBytes") >= mem0 + (250 << 20) && n(u, "diskBytes") >= disk0 + (60 << 20),
    )
    .await;
    assert_ne!(grown["at"], first["at"]);

    // The work ends and its file is removed: the numbers come back down.
    work.kill().await.unwrap();
    let _ = work.wait().await;
    std::fs::remove_file(workspace.join("big.bin")).unwrap();
    wait_usage(
        &app,
        &u,
        &id,
        Duration::from_secs(30),
        "usage to fall",
        |u| {
            n(u, "memoryBytes") < n(&grown, "memoryBytes") - (200 << 20)
                && n(u, "diskBytes") < n(&grown, "diskBytes") - (50 << 20)
        },
    )
    .await;

    // Stopped: no usage.
    app.action(&u, &id, "stop").await;
    app.wait_status(&u, &id, "stopped", Duration::from_secs(30))
        .await;
    assert_eq!(app.environment(&u, &id).await["usage"], Value::Null);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn an_untouched_environment_that_keeps_reporting_still_idles_out() {
    let app = reporting_app().await;
    let u = app.user("idle-usage@example.com").await;
    let id = create(&app, &u, "idle").await;
    app.wait_status(&u, &id, "running", Duration::from_secs(60))
        .await;
    let first = wait_usage(
        &app,
        &u,
        &id,
        Duration::from_secs(30),
        "first usage",
        |_| true,
    )
    .await;
    let activity = app.environment(&u, &id).await["lastActivityAt"].clone();
    // Time passes; the agent keeps reporting (usage `at` keeps moving)...
    app.clock.advance(Minutes::minutes(5) + Minutes::seconds(1));
    let later = wait_usage(
        &app,
        &u,
        &id,
        Duration::from_secs(10),
        "a later report",
        |u| u["at"] != first["at"],
    )
    .await;
    // ...but reports are not use.
    let env = app.environment(&u, &id).await;
    assert_eq!(
        env["lastActivityAt"], activity,
        "a report moved lastActivityAt"
    );
    let time = |v: &Value| {
        v.as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    assert!(time(&later["at"]) > time(&activity) + Minutes::minutes(5));
    let report = dev8::jobs::sweep::sweep(&app.platform).await.unwrap();
    assert_eq!(report.idle_stopped, 1);
    let env = app
        .wait_status(&u, &id, "stopped", Duration::from_secs(30))
        .await;
    assert_eq!(env["stopCause"], "idle");
    assert_eq!(env["usage"], Value::Null);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs code-server"]
async fn a_create_shows_its_steps() {
    let app = reporting_app().await;
    let u = app.user("progress@example.com").await;
    let id = create(&app, &u, "steps").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut steps: Vec<String> = Vec::new();
    loop {
        let env = app.environment(&u, &id).await;
        if env["status"] == "running" {
            assert_eq!(env["progress"], Value::Null);
            break;
        }
        assert_eq!(env["status"], "creating", "{env}");
        if let Some(step) = env["progress"]["step"].as_str()
            && steps.last().map(String::as_str) != Some(step)
        {
            steps.push(step.to_string());
        }
        assert!(
            Instant::now() < deadline,
            "not running; steps seen {steps:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(steps.len() >= 2, "steps seen: {steps:?}");
    assert!(
        steps.contains(&"waiting for VS Code to answer".to_string()),
        "{steps:?}"
    );
    app.shutdown().await;
}
