//! The Functions envelope behind the host simulator (`fakes::host_sim`, a
//! stand-in for the Functions host written from its documented protocol),
//! in-process: the real `host::router` and `api_router` with the Storage
//! queue adapter on Azurite — the same queue the simulator's trigger polls —
//! and `FakeCompute` (full tier: Azurite). The real binary behind the same
//! simulator is `functions_binary`.

use crate::fakes::host_sim::{HostSim, Poll};
use crate::harness::{Clock, Mode, Queue, TestApp};
use crate::peers::azurite;
use dev8::host;
use serde_json::json;
use std::time::Duration;

/// The app in functions mode on a fresh Azurite queue, and the simulated
/// host in front of it.
async fn spawn_functions_app() -> (TestApp, HostSim) {
    let queue_name = azurite::unique_queue("jobs");
    let app = TestApp::builder()
        .mode(Mode::Functions)
        .queue(Queue::Storage(queue_name.clone()))
        .clock(Clock::Offset)
        .settings(|s| s.reconcile_interval_ms = 200)
        .spawn()
        .await;
    let mut sim = HostSim::attach(&app.url, &queue_name);
    // host.json waits 5 s before a failed message is visible again; the
    // simulator honours that value, shortened here to keep tests fast.
    assert_eq!(sim.config.visibility_timeout, Duration::from_secs(5));
    sim.config.visibility_timeout = Duration::from_secs(1);
    sim.wait_ready(Duration::from_secs(5)).await;
    (app, sim)
}

async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(90), f)
        .await
        .expect("bounded in time");
}

#[tokio::test]
#[ignore = "full tier: needs Azurite"]
async fn the_full_lifecycle_runs_through_the_simulated_host() {
    bounded(async {
        let (app, sim) = spawn_functions_app().await;
        let token = sim.user("ada@x.io", &app.url).await;
        let id = sim.lifecycle(&token, Duration::from_secs(30)).await;
        let counts = app.fake().counts(&id);
        assert_eq!(
            (counts.creates, counts.deletes),
            (1, 1),
            "one set of resources, removed: {counts:?}"
        );
        assert_eq!(app.fake().resource_count(), 0);
    })
    .await;
}

#[tokio::test]
#[ignore = "full tier: needs Azurite"]
async fn a_failing_job_is_redelivered_then_poisoned_with_the_environment_in_error() {
    bounded(async {
        // `handler` installs this layer; here it is installed for this test's thread.
        use tracing_subscriber::prelude::*;
        let _logs = tracing::subscriber::set_default(
            tracing_subscriber::registry().with(dev8::host::logs::InvocationLogs),
        );
        let (app, sim) = spawn_functions_app().await;
        let token = sim.user("ada@x.io", &app.url).await;
        app.fake().set_down(true);
        let body = json!({"name": "doomed", "baseImage": "node", "preset": "small"});
        let a = sim
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
            match sim.poll_queue().await {
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
        assert_eq!(sim.queue.approximate_count().await, 0);
        let poisoned = sim.queue.poison().peek().await;
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

        let e = sim
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
#[ignore = "full tier: needs Azurite"]
async fn an_undecodable_message_goes_to_poison_after_five_deliveries() {
    bounded(async {
        let (_app, sim) = spawn_functions_app().await;
        // Valid base64, but not a job.
        use base64::Engine;
        sim.queue
            .put_text(&base64::engine::general_purpose::STANDARD.encode("not a job"))
            .await;
        let polls = sim
            .pump_until(Duration::from_secs(30), || async {
                !sim.queue.poison().peek().await.is_empty()
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
        assert_eq!(sim.queue.approximate_count().await, 0);
    })
    .await;
}

#[tokio::test]
#[ignore = "full tier: needs Azurite"]
async fn the_timer_runs_the_sweep_and_answers_in_the_envelope() {
    bounded(async {
        let (app, sim) = spawn_functions_app().await;
        let token = sim.user("ada@x.io", &app.url).await;
        let body = json!({"name": "idle", "baseImage": "node", "preset": "small"});
        let a = sim
            .api(
                reqwest::Method::POST,
                "/api/environments",
                &token,
                Some(body),
            )
            .await;
        let id = a.body["environment"]["id"].as_str().unwrap().to_string();
        sim.pump_until_status(&token, &id, Some("running"), Duration::from_secs(30))
            .await;

        // Make the environment idle past its timeout (the store is the truth the sweep reads).
        let me = sim
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

        let answer = sim.timer(true).await;
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
        sim.pump_until_status(&token, &id, Some("stopped"), Duration::from_secs(30))
            .await;
    })
    .await;
}

#[tokio::test]
#[ignore = "full tier: needs Azurite"]
async fn protocol_edges_answer_json_envelopes() {
    bounded(async {
        let (_app, sim) = spawn_functions_app().await;
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
                .post(format!("{}{path}", sim.handler))
                .header("x-azure-functions-invocationid", "3f1c-test")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), want, "{path}");
            assert_eq!(r.headers()["content-type"], "application/json", "{path}");
            let v: serde_json::Value = r.json().await.unwrap();
            assert_eq!(v["Outputs"], json!({"outcome": "failed"}), "{path}: {v}");
            assert_eq!(v["ReturnValue"], "failed", "{path}: {v}");
            assert!(
                !v["Logs"].as_array().unwrap().is_empty(),
                "{path}: the reason is in Logs"
            );
        }
        // A forwarded request for an unknown API path is the API's own 404.
        let a = sim
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
#[ignore = "full tier: needs Azurite"]
async fn serve_drains_the_storage_queue_with_its_in_process_worker() {
    bounded(async {
        // `handler serve` with DEV8_QUEUE_BACKEND=storage: no Functions host,
        // the in-process worker receives from the Azurite queue itself.
        let queue_name = azurite::unique_queue("serve");
        let app = TestApp::builder()
            .queue(Queue::Storage(queue_name.clone()))
            .clock(Clock::Offset)
            .background(true)
            .settings(|s| s.reconcile_interval_ms = 200)
            .spawn()
            .await;
        let origin = app.url.clone();
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
        assert_eq!(app.fake().counts(&id).creates, 1);
        app.shutdown().await;
    })
    .await;
}

/// The host logs "Outputs not set" / "ReturnValue not set" for every 2xx
/// invocation answer with empty `Outputs` or a null `ReturnValue`
/// (`fakes::host_sim::host_warnings`, from the host's source); the queue and
/// timer answers carry the outcome so it logs neither. In-process, with the
/// embedded queue: the envelope's answers do not depend on the queue.
#[tokio::test]
async fn queue_and_timer_answers_give_the_host_nothing_to_warn_about() {
    use crate::fakes::host_sim::host_warnings;
    let app = TestApp::builder().mode(Mode::Functions).spawn().await;
    let job =
        json!({"v": 1, "kind": "reconcile", "userId": "u1", "environmentId": "e1"}).to_string();
    for (function, payload) in [
        (
            host::TIMER_FUNCTION,
            json!({"Data": {"timer": {"IsPastDue": false}}, "Metadata": {}}),
        ),
        (
            host::QUEUE_FUNCTION,
            json!({"Data": {"job": serde_json::to_string(&job).unwrap()},
                   "Metadata": {"Id": "m1", "DequeueCount": "1"}}),
        ),
    ] {
        let r = app
            .client
            .post(format!("{}/{function}", app.url))
            .header("x-azure-functions-invocationid", "3f1c-test")
            .json(&payload)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, 200, "{function}: {body}");
        assert_eq!(
            host_warnings(status, &body),
            Vec::<String>::new(),
            "{function}: {body}"
        );
    }
    // Nothing binds the outcome: the two functions declare no output bindings.
    for function in [host::TIMER_FUNCTION, host::QUEUE_FUNCTION] {
        let path =
            crate::fakes::host_sim::app_root().join(format!("functions/{function}/function.json"));
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for b in manifest["bindings"].as_array().unwrap() {
            assert_ne!(
                b["direction"], "out",
                "{function} declares an output binding: {b}"
            );
        }
    }
}

/// A store that cannot open at start (the SQLite file's path is taken by a
/// folder) does not stop the handler: it listens at once, `GET /` and every
/// function answer 503 `application/problem+json` naming the cause, and
/// the real wiring (`startup::wire`) is retried with backoff; once the path
/// is free, the next attempt succeeds and the same port serves the API.
/// Fast tier: SQLite and the in-memory queue.
#[tokio::test]
async fn a_store_failure_at_start_answers_not_ready_with_its_cause_until_a_retry_succeeds() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let blocked = dir.path().join("dev8.db");
        std::fs::create_dir_all(blocked.join("in-the-way")).unwrap();
        let keys = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
        let mut settings = crate::harness::test_settings();
        settings.signing_keys = Some(keys.to_string().into());
        let secrets = settings.secret_values();
        assert!(secrets.iter().any(|s| s == keys));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let attempts = Arc::new(AtomicU32::new(0));
        let (counter, data) = (attempts.clone(), dir.path().to_path_buf());
        let attempt = move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let (settings, data) = (settings.clone(), data.clone());
            async move {
                let overrides = dev8::startup::Overrides {
                    background: Some(false),
                    ..Default::default()
                };
                dev8::startup::wire(settings, port, &data, overrides).await
            }
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(host::serve_when_ready(
            listener,
            attempt,
            secrets,
            host::Backoff {
                first: Duration::from_millis(20),
                max: Duration::from_millis(200),
            },
            async {
                let _ = stopped.await;
            },
        ));
        while attempts.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let client = reqwest::Client::new();
        for (method, path) in [
            (reqwest::Method::GET, "/"),
            (reqwest::Method::GET, "/api/health"),
            (reqwest::Method::POST, "/api/auth/signup"),
            (reqwest::Method::POST, "/ReconcileJob"),
            (reqwest::Method::POST, "/IdleSweep"),
        ] {
            let r = client
                .request(method.clone(), format!("{url}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 503, "{method} {path}");
            assert_eq!(
                r.headers()["content-type"],
                "application/problem+json",
                "{method} {path}"
            );
            let body: serde_json::Value = r.json().await.unwrap();
            let detail = body["detail"].as_str().unwrap();
            assert!(
                detail.starts_with("the handler is not ready: opening ")
                    && detail.contains("dev8.db"),
                "{method} {path}: {body}"
            );
            assert!(!body.to_string().contains("AAECAwQFBgcICQ"), "{body}");
        }
        // The store becomes available: a later attempt wires the platform.
        std::fs::remove_dir_all(&blocked).unwrap();
        // (The host's readiness wait, as `HostSim::wait_ready` does it; the
        // simulator itself needs Azurite for its queue.)
        while client.get(format!("{url}/")).send().await.unwrap().status() != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let settled = attempts.load(Ordering::SeqCst);
        let health = client
            .get(format!("{url}/api/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(health.status(), 200);
        let signup = client
            .post(format!("{url}/api/auth/signup"))
            .header("origin", &url)
            .json(&json!({"email": "ada@x.io", "password": "correct-horse-battery"}))
            .send()
            .await
            .unwrap();
        assert_eq!(signup.status(), 201);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            settled,
            "no attempt after success"
        );
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    })
    .await;
}
