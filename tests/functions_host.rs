//! The Functions envelope behind the host simulator (`common::host_sim`, a
//! stand-in for the Functions host written from its documented protocol),
//! in-process: the real `host::router` and `api_router` with the Storage
//! queue adapter on Azurite — the same queue the simulator's trigger polls —
//! and `FakeCompute`. The real binary behind the same simulator is
//! `tests/functions_binary.rs`.

mod common;

use common::azurite;
use common::fake_compute::FakeCompute;
use common::host_sim::{HostSim, Poll};
use dev8::config::QueueKind;
use dev8::host;
use dev8::platform::JobContext;
use dev8::startup::{Application, Overrides};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

struct FunctionsApp {
    sim: HostSim,
    origin: String,
    platform: Arc<JobContext>,
    compute: Arc<FakeCompute>,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn spawn_functions_app() -> FunctionsApp {
    let queue_name = azurite::unique_queue("jobs");
    let queue = Arc::new(azurite::storage_queue(&queue_name).await);
    let compute = Arc::new(FakeCompute::default());
    let mut settings = common::test_settings();
    settings.queue_backend = QueueKind::Storage;
    settings.queue_name = queue_name.clone();
    settings.reconcile_interval_ms = 200;
    let dir = tempfile::tempdir().unwrap();
    let overrides = Overrides {
        queue: Some(queue),
        compute: Some(compute.clone()),
        background: Some(false),
        ..Default::default()
    };
    let app = Application::build(settings, 0, dir.path(), overrides)
        .await
        .expect("app builds");
    let (listener, platform) = app.into_parts();
    let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(host::serve(listener, platform.clone(), async move {
        let _ = rx.await;
    }));
    let mut sim = HostSim::attach(&origin, &queue_name);
    // host.json waits 5 s before a failed message is visible again; the
    // simulator honours that value, shortened here to keep tests fast.
    assert_eq!(sim.config.visibility_timeout, Duration::from_secs(5));
    sim.config.visibility_timeout = Duration::from_secs(1);
    sim.wait_ready(Duration::from_secs(5)).await;
    FunctionsApp {
        sim,
        origin,
        platform,
        compute,
        _dir: dir,
        _stop: tx,
    }
}

async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(90), f)
        .await
        .expect("bounded in time");
}

#[tokio::test]
async fn the_full_lifecycle_runs_through_the_simulated_host() {
    bounded(async {
        let app = spawn_functions_app().await;
        let token = app.sim.user("ada@x.io", &app.origin).await;
        let id = app.sim.lifecycle(&token, Duration::from_secs(30)).await;
        let counts = app.compute.counts(&id);
        assert_eq!(
            (counts.creates, counts.deletes),
            (1, 1),
            "one set of resources, removed: {counts:?}"
        );
        assert_eq!(app.compute.resource_count(), 0);
    })
    .await;
}

#[tokio::test]
async fn a_failing_job_is_redelivered_then_poisoned_with_the_environment_in_error() {
    bounded(async {
        // `handler` installs this layer; here it is installed for this test's thread.
        use tracing_subscriber::prelude::*;
        let _logs = tracing::subscriber::set_default(
            tracing_subscriber::registry().with(dev8::host::logs::InvocationLogs),
        );
        let app = spawn_functions_app().await;
        let token = app.sim.user("ada@x.io", &app.origin).await;
        app.compute.set_down(true);
        let body = json!({"name": "doomed", "baseImage": "node", "preset": "small"});
        let a = app
            .sim
            .api(
                reqwest::Method::POST,
                "/api/environments",
                &token,
                Some(body),
            )
            .await;
        assert_eq!(a.status, 202);
        let id = a.body["environment"]["id"].as_str().unwrap().to_string();

        let mut outcomes = Vec::new();
        while outcomes.len() < 5 {
            match app.sim.poll_queue().await {
                (Poll::Empty, _) => tokio::time::sleep(Duration::from_millis(200)).await,
                (poll, Some(answer)) => {
                    assert_eq!(answer.status, 500, "a failed job answers non-2xx");
                    assert!(
                        answer
                            .logs
                            .iter()
                            .any(|l| l.contains(&answer.invocation_id) && l.contains("failed")),
                        "the failure is in Logs, tagged with the invocation id: {:?}",
                        answer.logs
                    );
                    let tag = format!("[{}] WARN reconcile failed", answer.invocation_id);
                    assert!(
                        answer
                            .logs
                            .iter()
                            .any(|l| l.starts_with(&tag) && l.contains("fake compute is down")),
                        "the job's own log lines are in Logs too: {:?}",
                        answer.logs
                    );
                    outcomes.push(poll);
                }
                (poll, None) => panic!("{poll:?} without an answer"),
            }
        }
        assert_eq!(
            outcomes,
            [
                Poll::Retried,
                Poll::Retried,
                Poll::Retried,
                Poll::Retried,
                Poll::Poisoned
            ]
        );
        assert_eq!(app.sim.queue.approximate_count().await, 0);
        let poisoned = app.sim.queue.poison().peek().await;
        assert_eq!(poisoned.len(), 1);
        let job = dev8::queue::Job::from_body(
            &String::from_utf8(
                base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &poisoned[0])
                    .unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let dev8::queue::Job::Reconcile { environment_id, .. } = job;
        assert_eq!(environment_id, id);

        let e = app
            .sim
            .api(
                reqwest::Method::GET,
                &format!("/api/environments/{id}"),
                &token,
                None,
            )
            .await;
        assert_eq!(e.body["environment"]["status"], "error", "{}", e.body);
        let reason = e.body["environment"]["statusReason"]
            .as_str()
            .unwrap_or_default();
        assert!(
            reason.contains("5 attempts"),
            "the reason says why: {reason}"
        );
    })
    .await;
}

#[tokio::test]
async fn an_undecodable_message_goes_to_poison_after_five_deliveries() {
    bounded(async {
        let app = spawn_functions_app().await;
        // Valid base64, but not a job.
        use base64::Engine;
        app.sim
            .queue
            .put_text(&base64::engine::general_purpose::STANDARD.encode("not a job"))
            .await;
        let polls = app
            .sim
            .pump_until(Duration::from_secs(30), || async {
                !app.sim.queue.poison().peek().await.is_empty()
            })
            .await;
        assert_eq!(
            polls,
            [
                Poll::Retried,
                Poll::Retried,
                Poll::Retried,
                Poll::Retried,
                Poll::Poisoned
            ]
        );
        assert_eq!(app.sim.queue.approximate_count().await, 0);
    })
    .await;
}

#[tokio::test]
async fn the_timer_runs_the_sweep_and_answers_in_the_envelope() {
    bounded(async {
        let app = spawn_functions_app().await;
        let token = app.sim.user("ada@x.io", &app.origin).await;
        let body = json!({"name": "idle", "baseImage": "node", "preset": "small"});
        let a = app
            .sim
            .api(
                reqwest::Method::POST,
                "/api/environments",
                &token,
                Some(body),
            )
            .await;
        let id = a.body["environment"]["id"].as_str().unwrap().to_string();
        app.sim
            .pump_until_status(&token, &id, Some("running"), Duration::from_secs(30))
            .await;

        // Make the environment idle past its timeout (the store is the truth the sweep reads).
        let me = app
            .sim
            .api(reqwest::Method::GET, "/api/auth/me", &token, None)
            .await;
        let user_id = me.body["user"]["id"].as_str().unwrap().to_string();
        let mut current = app
            .platform
            .store
            .environment(&user_id, &id)
            .await
            .unwrap()
            .unwrap();
        current.value.last_activity_at = chrono::Utc::now() - chrono::Duration::hours(3);
        app.platform
            .store
            .replace_environment(&current.value, &current.etag)
            .await
            .unwrap();

        let answer = app.sim.timer(true).await;
        assert_eq!(answer.status, 200, "{:?}", answer.logs);
        assert!(
            answer.logs.iter().any(|l| l.contains("past due")),
            "{:?}",
            answer.logs
        );
        assert!(
            answer.logs.iter().any(|l| l.contains("\"idleStopped\":1")),
            "{:?}",
            answer.logs
        );
        app.sim
            .pump_until_status(&token, &id, Some("stopped"), Duration::from_secs(30))
            .await;
    })
    .await;
}

#[tokio::test]
async fn protocol_edges_answer_json_envelopes() {
    bounded(async {
        let app = spawn_functions_app().await;
        let client = reqwest::Client::new();
        for (path, body, want) in [
            (
                format!("/{}", host::QUEUE_FUNCTION),
                "not json".to_string(),
                400,
            ),
            (
                format!("/{}", host::QUEUE_FUNCTION),
                json!({"Data": {}, "Metadata": {}}).to_string(),
                400,
            ),
            ("/NoSuchFunction".to_string(), "{}".to_string(), 404),
        ] {
            let r = client
                .post(format!("{}{path}", app.sim.handler))
                .header("x-azure-functions-invocationid", "3f1c-test")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), want, "{path}");
            assert_eq!(r.headers()["content-type"], "application/json", "{path}");
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["Outputs"], json!({}), "{path}: {v}");
            assert!(v["ReturnValue"].is_null(), "{path}: {v}");
            assert!(
                !v["Logs"].as_array().unwrap().is_empty(),
                "{path}: the reason is in Logs"
            );
        }
        // A forwarded request for an unknown API path is the API's own 404.
        let a = app
            .sim
            .http(reqwest::Method::GET, "/api/nothing-here", &[], None)
            .await;
        assert_eq!(
            (a.status, a.headers["content-type"].to_str().unwrap()),
            (404, "application/problem+json")
        );
    })
    .await;
}

#[tokio::test]
async fn serve_drains_the_storage_queue_with_its_in_process_worker() {
    bounded(async {
        // `handler serve` with DEV8_QUEUE_BACKEND=storage: no Functions host,
        // the in-process worker receives from the Azurite queue itself.
        let queue_name = azurite::unique_queue("serve");
        let queue = Arc::new(azurite::storage_queue(&queue_name).await);
        let compute = Arc::new(FakeCompute::default());
        let mut settings = common::test_settings();
        settings.queue_backend = QueueKind::Storage;
        settings.queue_name = queue_name.clone();
        settings.reconcile_interval_ms = 200;
        let dir = tempfile::tempdir().unwrap();
        let overrides = Overrides {
            queue: Some(queue),
            compute: Some(compute.clone()),
            background: Some(true),
            ..Default::default()
        };
        let app = Application::build(settings, 0, dir.path(), overrides)
            .await
            .unwrap();
        let origin = format!("http://127.0.0.1:{}", app.port());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        // The simulator is used as an HTTP client only here.
        let sim = HostSim::attach(&origin, &queue_name);
        let token = sim.user("ada@x.io", &origin).await;
        let body = json!({"name": "served", "baseImage": "node", "preset": "small"});
        let a = sim
            .api(
                reqwest::Method::POST,
                "/api/environments",
                &token,
                Some(body),
            )
            .await;
        let id = a.body["environment"]["id"].as_str().unwrap().to_string();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while sim.status_of(&token, &id).await.as_deref() != Some("running") {
            assert!(
                std::time::Instant::now() < deadline,
                "the worker did not run the job"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(compute.counts(&id).creates, 1);
        let _ = tx.send(());
        server.await.unwrap().unwrap();
    })
    .await;
}
