//! `serve`'s background worker and graceful shutdown: a job in progress runs
//! to completion, and what it scheduled is still in the (file-backed) queue
//! afterwards, so nothing is lost across a restart.

mod common;

use common::FakeCompute;
use dev8::clock::{Clock, ManualClock};
use dev8::queue::{EmbeddedQueue, JobQueue};
use dev8::startup::{Application, Overrides};
use dev8::store::{SqliteStore, Store};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test]
async fn shutdown_waits_for_the_job_in_progress_and_keeps_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let clock_dyn: Arc<dyn Clock> = Arc::new(clock.clone());
    let queue_path = dir.path().join("queue.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("dev8.db")).unwrap());
    let queue = Arc::new(EmbeddedQueue::open(&queue_path, "env-jobs", clock_dyn.clone()).unwrap());
    let compute = Arc::new(FakeCompute::default());
    compute.set_start_delay(Duration::from_millis(600));
    compute.set_boot_polls(10);
    let app = Application::build(
        common::test_settings(),
        0,
        dir.path(),
        Overrides {
            store: Some(store.clone()),
            queue: Some(queue.clone()),
            compute: Some(compute.clone()),
            clock: Some(clock_dyn.clone()),
            background: Some(true),
        },
    )
    .await
    .unwrap();
    let url = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));

    let client = reqwest::Client::new();
    let signup = client
        .post(format!("{url}/api/auth/signup"))
        .header("origin", &url)
        .json(&json!({"email":"ada@x.io","password":"correct-horse-battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signup.status(), 201);
    let cookie = signup.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let created = client
        .post(format!("{url}/api/environments"))
        .header("origin", &url)
        .header("cookie", &cookie)
        .json(&json!({"name":"a","baseImage":"node","preset":"small"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202);
    let id = created.json::<serde_json::Value>().await.unwrap()["environment"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    // Wait until the worker is inside the (slow) start, then ask to stop.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while compute.counts(&id).starts == 0 && compute.state(&id).is_none() {
        let leased = store
            .active_environments()
            .await
            .unwrap()
            .iter()
            .any(|v| v.value.lease.is_some());
        if leased {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never picked the job up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    assert_eq!(compute.counts(&id).starts, 1, "the start ran to completion");
    let env = store
        .active_environments()
        .await
        .unwrap()
        .pop()
        .unwrap()
        .value;
    assert!(env.lease.is_none(), "the lease was given back");
    drop(queue);
    let reopened = EmbeddedQueue::open(&queue_path, "env-jobs", clock_dyn).unwrap();
    assert_eq!(
        reopened.approximate_len().await.unwrap(),
        1,
        "the follow-up survived the shutdown"
    );
}
