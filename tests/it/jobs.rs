//! The reconcile job, the worker and the sweep, driven by hand with a manual
//! clock and `FakeCompute` (a stateful stand-in for the compute backends).

use crate::harness::{Auth, TestApp, User, refusals_off_loopback, spawn_app};
use chrono::Duration;
use dev8::domain::{DRIFT_CHECK_EVERY, DesiredState, Status};
use dev8::jobs::reconcile::{Outcome, reconcile};
use dev8::jobs::worker::{self, RunOutcome, handle_delivery};
use dev8::queue::Job;
use reqwest::Method;

async fn setup() -> (TestApp, User) {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    (app, u)
}

async fn record(app: &TestApp, u: &User, id: &str) -> dev8::domain::Environment {
    app.platform
        .store
        .environment(&u.id, id)
        .await
        .unwrap()
        .expect("record exists")
        .value
}

#[tokio::test]
async fn a_reconcile_in_progress_keeps_exactly_one_follow_up() {
    let (app, u) = setup().await;
    app.fake().set_boot_polls(5);
    let id = app.new_env(&u, "a").await;
    // Duplicates of the API's message, as a redelivering queue might produce.
    let body = Job::reconcile(&u.id, &id).to_body();
    for _ in 0..3 {
        app.queue()
            .send(&body, std::time::Duration::ZERO)
            .await
            .unwrap();
    }
    for _ in 0..20 {
        worker::drain(&app.platform, 100).await.unwrap();
        assert!(app.queue_len().await <= 1, "follow-ups multiplied");
        app.clock.advance(Duration::seconds(1));
    }
    assert_eq!(app.status_of(&u, &id).await, "running");
    assert_eq!(
        app.queue_len().await,
        0,
        "the chain ends when the work is done"
    );
    let c = app.fake().counts(&id);
    assert_eq!((c.creates, c.starts), (1, 1), "one set of resources: {c:?}");
}

#[tokio::test]
async fn concurrent_deliveries_take_one_lease_and_act_once() {
    let (app, u) = setup().await;
    let id = app.new_env(&u, "a").await;
    app.fake()
        .set_start_delay(std::time::Duration::from_millis(200));
    let p = &app.platform;
    let (a, b, c) = tokio::join!(
        reconcile(p, &u.id, &id, None, "delivery-a"),
        reconcile(p, &u.id, &id, None, "delivery-b"),
        reconcile(p, &u.id, &id, None, "delivery-c"),
    );
    let outcomes = [a.unwrap(), b.unwrap(), c.unwrap()];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == Outcome::InProgress)
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == Outcome::Busy).count(),
        2,
        "{outcomes:?}"
    );
    assert_eq!(app.fake().counts(&id).starts, 1);
    app.fake().set_start_delay(std::time::Duration::ZERO);
    app.settle(20).await;
    assert_eq!(app.status_of(&u, &id).await, "running");
    assert_eq!(app.fake().counts(&id).creates, 1);
}

#[tokio::test]
async fn a_lease_left_by_a_crashed_delivery_expires() {
    let (app, u) = setup().await;
    let id = app.new_env(&u, "a").await;
    // Someone took the lease and died.
    let v = app
        .platform
        .store
        .environment(&u.id, &id)
        .await
        .unwrap()
        .unwrap();
    let mut env = v.value;
    env.lease = Some(dev8::domain::Lease {
        owner: "dead".into(),
        until: app.now() + Duration::minutes(2),
    });
    app.platform
        .store
        .replace_environment(&env, &v.etag)
        .await
        .unwrap();
    assert_eq!(
        reconcile(&app.platform, &u.id, &id, None, "me")
            .await
            .unwrap(),
        Outcome::Busy
    );
    app.clock.advance(Duration::minutes(3));
    assert_eq!(
        reconcile(&app.platform, &u.id, &id, None, "me")
            .await
            .unwrap(),
        Outcome::InProgress
    );
}

#[tokio::test]
async fn five_failed_deliveries_poison_the_message_and_leave_a_reason() {
    let (app, u) = setup().await;
    app.fake().set_down(true);
    let id = app.new_env(&u, "a").await;
    for attempt in 1..=5u32 {
        assert_eq!(
            worker::run_next(&app.platform).await.unwrap(),
            RunOutcome::Done,
            "attempt {attempt}"
        );
        assert_eq!(
            worker::run_next(&app.platform).await.unwrap(),
            RunOutcome::Empty,
            "backing off"
        );
        app.clock
            .advance(Duration::from_std(worker::backoff(attempt)).unwrap());
    }
    assert_eq!(app.queue_len().await, 0);
    let poisoned = app.queue().poisoned().await.unwrap();
    assert_eq!(poisoned, vec![Job::reconcile(&u.id, &id).to_body()]);
    let env = record(&app, &u, &id).await;
    assert_eq!(env.status, Status::Error);
    let reason = env.status_reason.unwrap();
    assert!(
        reason.contains("5 attempts") && reason.contains("fake compute is down"),
        "{reason}"
    );
    assert!(env.lease.is_none());
    // The user can try again once the backend is back.
    app.fake().set_down(false);
    assert_eq!(
        app.post(
            &format!("/api/environments/{id}/start"),
            serde_json::json!({}),
            &u
        )
        .await
        .status,
        202
    );
    app.settle(20).await;
    assert_eq!(app.status_of(&u, &id).await, "running");
}

#[tokio::test]
async fn a_refused_start_is_an_error_with_the_backends_reason() {
    let (app, u) = setup().await;
    app.fake().refuse_starts(Some("image not found: dev8/node"));
    let id = app.new_env(&u, "a").await;
    app.settle(10).await;
    let e = app.env(&u, &id).await.body["environment"].clone();
    assert_eq!(e["status"], "error");
    assert_eq!(e["statusReason"], "image not found: dev8/node");
    assert_eq!(e["actions"], serde_json::json!(["start", "stop", "delete"]));
}

#[tokio::test]
async fn deletion_finishes_from_error() {
    let (app, u) = setup().await;
    app.fake().refuse_starts(Some("no capacity"));
    let id = app.new_env(&u, "a").await;
    app.settle(10).await;
    assert_eq!(app.status_of(&u, &id).await, "error");
    let d = app
        .send(
            Method::DELETE,
            &format!("/api/environments/{id}"),
            None,
            Auth::Bearer(&u.token),
        )
        .await;
    assert_eq!(d.status, 202);
    app.settle(10).await;
    app.env(&u, &id).await.problem(404);
    let slots = app
        .platform
        .store
        .document(&format!("quota:user:{}", u.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        slots.value["environments"],
        serde_json::json!({}),
        "the quota slot was given back"
    );
}

#[tokio::test]
async fn deletion_keeps_retrying_with_backoff_and_never_errors() {
    let (app, u) = setup().await;
    let id = app.new_env(&u, "a").await;
    app.settle(10).await;
    app.fake().set_down(true);
    app.send(
        Method::DELETE,
        &format!("/api/environments/{id}"),
        None,
        Auth::Bearer(&u.token),
    )
    .await;
    for attempt in 1..=5u32 {
        worker::run_next(&app.platform).await.unwrap();
        app.clock
            .advance(Duration::from_std(worker::backoff(attempt)).unwrap());
    }
    let env = record(&app, &u, &id).await;
    assert_eq!(env.status, Status::Deleting, "deletion never ends in error");
    assert!(env.status_reason.as_deref().unwrap().contains("retried"));
    assert_eq!(app.queue().poisoned().await.unwrap().len(), 1);
    // The sweep waits for the backoff, then restarts the chain.
    assert_eq!(app.sweep().await.requeued, 0);
    app.clock.advance(Duration::seconds(61));
    app.fake().set_down(false);
    assert_eq!(app.sweep().await.requeued, 1);
    app.settle(10).await;
    app.env(&u, &id).await.problem(404);
    assert!(app.fake().state(&id).is_none());
}

#[tokio::test]
async fn a_lost_message_is_repaired_by_the_sweep() {
    let (app, u) = setup().await;
    app.fake().set_boot_polls(3);
    let id = app.new_env(&u, "a").await;
    worker::run_next(&app.platform).await.unwrap();
    // The follow-up vanishes (say, an operator cleared the queue).
    app.clock.advance(Duration::seconds(1));
    let d = app
        .queue()
        .receive(std::time::Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    app.queue().delete(&d).await.unwrap();
    app.clock.advance(Duration::seconds(30));
    assert_eq!(
        app.sweep().await.requeued,
        0,
        "the follow-up is not overdue yet"
    );
    app.clock.advance(Duration::seconds(90));
    assert_eq!(app.sweep().await.requeued, 1);
    app.settle(20).await;
    assert_eq!(app.status_of(&u, &id).await, "running");
    assert_eq!(app.fake().counts(&id).creates, 1);
}

#[tokio::test]
async fn a_status_stuck_past_its_deadline_becomes_an_error_with_a_reason() {
    let (app, u) = setup().await;
    app.fake().set_boot_polls(u32::MAX);
    let id = app.new_env(&u, "a").await;
    app.settle(5).await;
    assert_eq!(app.status_of(&u, &id).await, "creating");
    app.clock.advance(Duration::minutes(16));
    let r = app.sweep().await;
    assert_eq!(r.timed_out, 1);
    let e = record(&app, &u, &id).await;
    assert_eq!(e.status, Status::Error);
    assert!(
        e.status_reason
            .unwrap()
            .starts_with("Timed out: still creating")
    );
    // Nothing keeps it in a transitional status afterwards.
    app.settle(5).await;
    assert_eq!(app.status_of(&u, &id).await, "error");
}

/// What the API says of the idle stop: `lastActivityAt`, `idleStopAt`, `idleWarningAt`.
async fn idle_times(app: &TestApp, u: &User, id: &str) -> [chrono::DateTime<chrono::Utc>; 3] {
    let e = app.env(u, id).await.body["environment"].clone();
    ["lastActivityAt", "idleStopAt", "idleWarningAt"]
        .map(|k| e[k].as_str().unwrap().parse().unwrap())
}

/// Let the stop run; the environment is stopped, for inactivity. Its JSON.
async fn settled_idle_stop(app: &TestApp, u: &User, id: &str) -> serde_json::Value {
    app.settle(10).await;
    let e = app.env(u, id).await.body["environment"].clone();
    assert_eq!(
        (e["status"].as_str(), e["stopCause"].as_str()),
        (Some("stopped"), Some("idle"))
    );
    e
}

#[tokio::test]
async fn idle_environments_are_stopped_for_inactivity() {
    let (app, u) = setup().await;
    let id = app.new_env(&u, "a").await;
    app.settle(10).await;
    // The dashboard learns when it will stop, and when to warn (5 minutes before).
    let [last, stop_at, warn_at] = idle_times(&app, &u, &id).await;
    assert_eq!(stop_at, last + Duration::minutes(30));
    assert_eq!(warn_at, last + Duration::minutes(25));
    app.clock.advance(Duration::minutes(29));
    assert_eq!(app.sweep().await.idle_stopped, 0);
    app.clock.advance(Duration::minutes(2));
    assert_eq!(app.sweep().await.idle_stopped, 1);
    let e = settled_idle_stop(&app, &u, &id).await;
    assert!(e["idleStopAt"].is_null() && e["idleWarningAt"].is_null());
    assert!(e["statusReason"].as_str().unwrap().contains("30 minutes"));
    assert_eq!(app.fake().counts(&id).stops, 1);
    // The running slot went back: the user may start another.
    let slots = app
        .platform
        .store
        .document(&format!("quota:user:{}", u.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(slots.value["running"], serde_json::json!({}));
}

#[tokio::test]
async fn the_test_idle_minute_lets_a_real_sweep_stop_within_seconds_and_is_refused_elsewhere() {
    // A minute of 2 s: a 6-minute timeout is 12 s, its warning (a third
    // before) 8 s in.
    let app = TestApp::builder()
        .settings(|s| s.test_idle_minute_seconds = Some(2))
        .spawn()
        .await;
    let u = app.user("ada@x.io").await;
    let created = app
        .post(
            "/api/environments",
            serde_json::json!({"name": "a", "baseImage": "node", "preset": "small", "idleTimeoutMinutes": 6}),
            &u,
        )
        .await;
    assert_eq!(created.status, 202, "{}", created.body);
    let id = created.body["environment"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.settle(10).await;
    let [last, stop_at, warn_at] = idle_times(&app, &u, &id).await;
    assert_eq!(stop_at, last + Duration::seconds(12));
    assert_eq!(warn_at, last + Duration::seconds(8));
    let now = app.clock.now();
    app.clock.advance(last + Duration::seconds(11) - now);
    assert_eq!(app.sweep().await.idle_stopped, 0);
    app.clock.advance(Duration::seconds(1));
    assert_eq!(app.sweep().await.idle_stopped, 1);
    settled_idle_stop(&app, &u, &id).await;

    // Anywhere but local compute on loopback, serve does not start with it.
    for err in refusals_off_loopback(|s| s.test_idle_minute_seconds = Some(2)).await {
        assert!(err.contains("DEV8_TEST_IDLE_MINUTE_SECONDS"), "{err}");
    }
}

#[tokio::test]
async fn recent_activity_keeps_an_environment_running() {
    let (app, u) = setup().await;
    let id = app.new_env(&u, "a").await;
    app.settle(10).await;
    app.clock.advance(Duration::minutes(25));
    let v = app
        .platform
        .store
        .environment(&u.id, &id)
        .await
        .unwrap()
        .unwrap();
    let mut env = v.value;
    env.last_activity_at = app.now();
    app.platform
        .store
        .replace_environment(&env, &v.etag)
        .await
        .unwrap();
    app.clock.advance(Duration::minutes(25));
    assert_eq!(app.sweep().await.idle_stopped, 0);
    assert_eq!(app.status_of(&u, &id).await, "running");
}

#[tokio::test]
async fn drift_is_noticed_by_the_sweep_and_repaired() {
    let (app, u) = setup().await;
    let id = app.new_env(&u, "a").await;
    app.settle(10).await;
    app.fake().vanish(&id);
    assert_eq!(
        app.sweep().await.requeued,
        1,
        "running environments get a drift check"
    );
    app.settle(10).await;
    assert_eq!(app.status_of(&u, &id).await, "running");
    assert_eq!(
        app.fake().counts(&id).creates,
        2,
        "recreated after it vanished"
    );
}

/// A running environment gets one drift check per `DRIFT_CHECK_EVERY`, not
/// one per sweep, and compute that vanished is still noticed (and
/// repaired) within that period plus one sweep interval.
#[tokio::test]
async fn vanished_compute_is_noticed_within_the_drift_check_bound() {
    let (app, u) = setup().await;
    let id = app.new_env(&u, "a").await;
    app.settle(10).await;
    // The first sweep knows no earlier one: every running environment is checked.
    assert_eq!(app.sweep().await.requeued, 1);
    app.settle(5).await;
    let sweep_every = Duration::seconds(60);
    let per_period = DRIFT_CHECK_EVERY.num_seconds() / sweep_every.num_seconds();
    let mut checks = 0;
    for _ in 0..2 * per_period {
        app.clock.advance(sweep_every);
        checks += app.sweep().await.requeued;
        app.settle(5).await;
    }
    assert_eq!(checks, 2, "one drift check per period, not one per sweep");
    assert_eq!(app.fake().counts(&id).creates, 1);

    app.fake().vanish(&id);
    let mut waited = Duration::zero();
    loop {
        app.clock.advance(sweep_every);
        waited += sweep_every;
        if app.sweep().await.requeued == 1 {
            break;
        }
        assert!(
            waited < DRIFT_CHECK_EVERY + sweep_every,
            "not noticed within {DRIFT_CHECK_EVERY} and a sweep"
        );
    }
    app.settle(10).await;
    assert_eq!(app.status_of(&u, &id).await, "running");
    assert_eq!(
        app.fake().counts(&id).creates,
        2,
        "recreated after it vanished"
    );
}

#[tokio::test]
async fn a_stop_during_start_wins() {
    let (app, u) = setup().await;
    app.fake().set_boot_polls(5);
    let id = app.new_env(&u, "a").await;
    worker::drain(&app.platform, 10).await.unwrap();
    app.post(
        &format!("/api/environments/{id}/stop"),
        serde_json::json!({}),
        &u,
    )
    .await;
    app.settle(20).await;
    let e = record(&app, &u, &id).await;
    assert_eq!(
        (e.status, e.desired_state),
        (Status::Stopped, DesiredState::Stopped)
    );
    assert!(e.chain.is_none() && e.lease.is_none());
}

#[tokio::test]
async fn undecodable_messages_end_in_the_poison_queue() {
    let (app, _u) = setup().await;
    assert!(
        handle_delivery(&app.platform, "{\"v\":9}", "m1", 1)
            .await
            .is_err()
    );
    app.queue()
        .send("not json", std::time::Duration::ZERO)
        .await
        .unwrap();
    for n in 1..=5u32 {
        worker::run_next(&app.platform).await.unwrap();
        app.clock
            .advance(Duration::from_std(worker::backoff(n)).unwrap());
    }
    assert_eq!(
        app.queue().poisoned().await.unwrap(),
        vec!["not json".to_string()]
    );
}

#[tokio::test]
async fn a_job_for_a_deleted_record_is_done_quietly() {
    let (app, u) = setup().await;
    assert_eq!(
        reconcile(&app.platform, &u.id, "gone", None, "m")
            .await
            .unwrap(),
        Outcome::Gone
    );
    handle_delivery(
        &app.platform,
        &Job::reconcile(&u.id, "gone").to_body(),
        "m",
        1,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_drift_check_of_a_healthy_environment_writes_nothing() {
    let (app, u) = setup().await;
    let id = app.new_env(&u, "a").await;
    app.settle(10).await;
    let before = app
        .platform
        .store
        .environment(&u.id, &id)
        .await
        .unwrap()
        .unwrap();
    app.clock.advance(Duration::minutes(1));
    assert_eq!(app.sweep().await.requeued, 1);
    app.settle(5).await;
    let after = app
        .platform
        .store
        .environment(&u.id, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        before.etag, after.etag,
        "no write for a check that found nothing to do"
    );
}
