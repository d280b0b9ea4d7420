//! Usage and progress: the agent's periodic report (`POST .../report`), its
//! authorisation, what it may change (usage, never `lastActivityAt`), usage
//! cleared on stop, and progress during a create. Fast tier with
//! `FakeCompute` and a manual clock; the real agent measuring real
//! processes is in `usage_local` (full tier).

use crate::harness::{Answer, Auth, TestApp, User, spawn_app};
use dev8::auth::tokens::{TokenKind, claims};
use reqwest::Method;
use serde_json::{Value, json};

/// A usage report as an agent sends it.
fn usage_body() -> Value {
    json!({"usage": {
        "cpuPercent": 12.5,
        "memoryBytes": 300_000_000u64,
        "memoryLimitBytes": 2_147_483_648u64,
        "diskBytes": 50_000_000u64,
        "diskLimitBytes": 10_737_418_240u64
    }})
}

/// An agent token for `env_id` with this `jti` (the record's `agentTokenId`
/// makes it the current one).
fn agent_token(app: &TestApp, user_id: &str, env_id: &str, jti: &str) -> String {
    let p = &app.platform;
    let mut c = claims(
        TokenKind::Agent,
        p.policy.issuer(),
        user_id,
        env_id,
        app.now(),
        chrono::Duration::hours(1),
    );
    c.jti = jti.to_string();
    p.keys.sign(&c)
}

/// The current agent token of a running environment.
pub(crate) async fn current_token(app: &TestApp, u: &User, id: &str) -> String {
    let record = app
        .platform
        .store
        .environment(&u.id, id)
        .await
        .unwrap()
        .unwrap()
        .value;
    agent_token(app, &u.id, id, record.agent_token_id.as_deref().unwrap())
}

async fn running(app: &TestApp, u: &User, name: &str) -> String {
    let id = app.new_env(u, name).await;
    app.settle(10).await;
    assert_eq!(app.status_of(u, &id).await, "running");
    id
}

pub(crate) async fn report(app: &TestApp, id: &str, body: Value, auth: Auth<'_>) -> Answer {
    app.send(
        Method::POST,
        &format!("/api/environments/{id}/report"),
        Some(body),
        auth,
    )
    .await
}

#[tokio::test]
async fn only_the_environments_current_agent_token_may_report() {
    let app = spawn_app().await;
    let ada = app.user("ada@x.io").await;
    let bob = app.user("bob@x.io").await;
    let id = running(&app, &ada, "a").await;
    let other = running(&app, &bob, "b").await;
    let before = app.environment(&ada, &id).await;

    // No token, a user's session (bearer or browser), a stale agent token,
    // another environment's current agent token: all refused.
    report(&app, &id, usage_body(), Auth::None)
        .await
        .problem(401);
    report(&app, &id, usage_body(), Auth::Bearer(&ada.token))
        .await
        .problem(401);
    report(&app, &id, usage_body(), app.as_browser(&ada))
        .await
        .problem(401);
    let stale = agent_token(&app, &ada.id, &id, "not-the-current-one");
    report(&app, &id, usage_body(), Auth::Bearer(&stale))
        .await
        .problem(401);
    let bobs = current_token(&app, &bob, &other).await;
    report(&app, &id, usage_body(), Auth::Bearer(&bobs))
        .await
        .problem(401);
    // Nothing changed.
    assert_eq!(app.environment(&ada, &id).await, before);
    assert_eq!(before["usage"], Value::Null);

    // The current token is accepted and its answer is a JSON object.
    let token = current_token(&app, &ada, &id).await;
    let r = report(&app, &id, usage_body(), Auth::Bearer(&token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["usageRecorded"], json!(true));
    // Bob's environment got nothing from any of this.
    assert_eq!(app.environment(&bob, &other).await["usage"], Value::Null);
}

#[tokio::test]
async fn a_report_keeps_usage_and_never_moves_last_activity() {
    let app = spawn_app().await;
    let ada = app.user("ada@x.io").await;
    let id = running(&app, &ada, "a").await;
    let token = current_token(&app, &ada, &id).await;
    let before = app.environment(&ada, &id).await;
    app.clock.advance(chrono::Duration::minutes(7));
    let r = report(&app, &id, usage_body(), Auth::Bearer(&token)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let after = app.environment(&ada, &id).await;
    assert_eq!(after["lastActivityAt"], before["lastActivityAt"]);
    assert_eq!(after["updatedAt"], before["updatedAt"]);
    // The answer carries the idle times, as the activity post's does: a
    // changed idle timeout reaches the agent within one report interval.
    assert_eq!(r.body["idleStopAt"], after["idleStopAt"], "{}", r.body);
    assert!(r.body["idleStopAt"].is_string(), "{}", r.body);
    assert!(r.body["now"].is_string(), "{}", r.body);
    let usage = &after["usage"];
    assert_eq!(usage["cpuPercent"], 12.5);
    assert_eq!(usage["memoryBytes"], 300_000_000u64);
    assert_eq!(usage["memoryLimitBytes"], 2_147_483_648u64);
    assert_eq!(usage["diskBytes"], 50_000_000u64);
    assert_eq!(usage["diskLimitBytes"], 10_737_418_240u64);
    assert_eq!(
        usage["at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap(),
        app.now()
    );
    // A report without usage (a newer agent's other sections) changes nothing.
    let r = report(
        &app,
        &id,
        json!({"somethingNew": {"x": 1}}),
        Auth::Bearer(&token),
    )
    .await;
    assert_eq!(r.body["usageRecorded"], json!(false));
    assert_eq!(app.environment(&ada, &id).await, after);
}

#[tokio::test]
async fn bad_usage_is_refused_by_field_and_changes_nothing() {
    let app = spawn_app().await;
    let ada = app.user("ada@x.io").await;
    let id = running(&app, &ada, "a").await;
    let token = current_token(&app, &ada, &id).await;
    let before = app.environment(&ada, &id).await;
    let r = report(
        &app,
        &id,
        json!({"usage": {"cpuPercent": -1, "memoryBytes": "lots", "memoryLimitBytes": 0,
                         "diskBytes": 1, "diskLimitBytes": 1.5}}),
        Auth::Bearer(&token),
    )
    .await;
    let errors = r.problem(400);
    for field in [
        "usage.cpuPercent",
        "usage.memoryBytes",
        "usage.memoryLimitBytes",
        "usage.diskLimitBytes",
    ] {
        assert!(errors.get(field).is_some(), "{field} not named: {errors}");
    }
    assert!(errors.get("usage.diskBytes").is_none());
    let r = report(&app, &id, json!({"usage": [1]}), Auth::Bearer(&token)).await;
    assert!(r.problem(400).get("usage").is_some());
    assert_eq!(app.environment(&ada, &id).await, before);
}

#[tokio::test]
async fn usage_is_null_after_stop_and_not_kept_while_stopped() {
    let app = spawn_app().await;
    let ada = app.user("ada@x.io").await;
    let id = running(&app, &ada, "a").await;
    let token = current_token(&app, &ada, &id).await;
    report(&app, &id, usage_body(), Auth::Bearer(&token)).await;
    assert!(app.environment(&ada, &id).await["usage"].is_object());

    assert_eq!(app.action(&ada, &id, "stop").await.status, 202);
    // Stopping already: no usage shown.
    assert_eq!(app.environment(&ada, &id).await["usage"], Value::Null);
    app.settle(10).await;
    assert_eq!(app.status_of(&ada, &id).await, "stopped");
    let stopped = app.environment(&ada, &id).await;
    assert_eq!(stopped["usage"], Value::Null);
    // The stopped environment's agent token no longer counts.
    report(&app, &id, usage_body(), Auth::Bearer(&token))
        .await
        .problem(401);
    // Started again: waiting to start, and no usage until the new agent reports.
    let started = app.action(&ada, &id, "start").await;
    assert_eq!(started.status, 202);
    assert_eq!(
        started.body["environment"]["progress"]["step"],
        "waiting to start"
    );
    app.settle(10).await;
    assert_eq!(app.status_of(&ada, &id).await, "running");
    assert_eq!(app.environment(&ada, &id).await["usage"], Value::Null);
}

#[tokio::test]
async fn progress_names_the_steps_of_a_create_and_is_null_once_running() {
    let app = spawn_app().await;
    app.fake().set_boot_polls(2);
    let ada = app.user("ada@x.io").await;
    let created = app.create_env(&ada, "a").await;
    assert_eq!(created["progress"]["step"], "waiting to start");
    let id = created["id"].as_str().unwrap().to_string();
    let mut steps = Vec::new();
    for _ in 0..10 {
        let env = app.environment(&ada, &id).await;
        let status = app
            .get(&format!("/api/environments/{id}/status"), &ada)
            .await
            .body;
        assert_eq!(status["progress"], env["progress"]);
        if env["status"] == "running" {
            assert_eq!(env["progress"], Value::Null);
            break;
        }
        if let Some(step) = env["progress"]["step"].as_str()
            && steps.last().map(String::as_str) != Some(step)
        {
            assert!(env["progress"]["at"].is_string());
            steps.push(step.to_string());
        }
        dev8::jobs::worker::drain(&app.platform, 1).await.unwrap();
        app.clock.advance(chrono::Duration::seconds(1));
    }
    assert_eq!(app.status_of(&ada, &id).await, "running");
    assert_eq!(
        steps,
        [
            "waiting to start",
            "starting VS Code",
            "waiting for VS Code to answer"
        ]
    );
}

#[tokio::test]
async fn a_report_between_the_sweeps_read_and_its_write_does_not_keep_it_running() {
    let app = spawn_app().await;
    let ada = app.user("ada@x.io").await;
    let id = running(&app, &ada, "a").await;
    let token = current_token(&app, &ada, &id).await;
    app.clock.advance(chrono::Duration::minutes(31));
    // What the sweep read...
    let seen = app
        .platform
        .store
        .environment(&ada.id, &id)
        .await
        .unwrap()
        .unwrap();
    // ...then a report changes the record (and its ETag) before the sweep writes.
    let r = report(&app, &id, usage_body(), Auth::Bearer(&token)).await;
    assert_eq!(r.body["usageRecorded"], json!(true));
    let batch = dev8::reconciles::Batch::default();
    assert!(
        dev8::lifecycle::idle_stop(&app.platform, seen, &batch)
            .await
            .unwrap()
    );
    // Its reconcile request waits in the sweep's batch.
    assert_eq!(
        batch.send(app.platform.reconciles.as_ref()).await.unwrap(),
        1
    );
    let env = app.environment(&ada, &id).await;
    assert_eq!(env["stopCause"], "idle");
    assert_eq!(env["usage"], Value::Null);
}

#[tokio::test]
async fn snapshot_mode_reports_its_last_snapshot_and_warning_and_bad_fields_are_named() {
    let app = spawn_app().await;
    let ada = app.user("ada@x.io").await;
    let id = running(&app, &ada, "a").await;
    let token = current_token(&app, &ada, &id).await;
    let before = app.environment(&ada, &id).await;
    let with_snapshot = |snapshot: Value| {
        let mut body = usage_body();
        body["usage"]["snapshot"] = snapshot;
        body
    };
    let r = report(
        &app,
        &id,
        with_snapshot(json!({"lastAt": "yesterday", "storedBytes": -3,
                             "intervalSeconds": 0, "warning": "w".repeat(1001)})),
        Auth::Bearer(&token),
    )
    .await;
    let errors = r.problem(400);
    for field in ["lastAt", "storedBytes", "intervalSeconds", "warning"] {
        let name = format!("usage.snapshot.{field}");
        assert!(errors.get(&name).is_some(), "{name} not named: {errors}");
    }
    assert_eq!(app.environment(&ada, &id).await, before, "nothing changed");

    let warning =
        "restored the snapshot of 2026-12-02 04:00 UTC because the newer one could not be read";
    let r = report(
        &app,
        &id,
        with_snapshot(
            json!({"lastAt": "2026-12-02T04:00:00Z", "storedBytes": 1234,
                             "intervalSeconds": 600, "warning": warning}),
        ),
        Auth::Bearer(&token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let shown = &app.environment(&ada, &id).await["usage"]["snapshot"];
    assert_eq!(shown["lastAt"], "2026-12-02T04:00:00Z");
    assert_eq!(shown["storedBytes"], 1234);
    assert_eq!(shown["intervalSeconds"], 600);
    assert_eq!(shown["warning"], warning);
    // Direct mode reports no snapshot section, and shows none.
    report(&app, &id, usage_body(), Auth::Bearer(&token)).await;
    assert!(
        app.environment(&ada, &id).await["usage"]
            .get("snapshot")
            .is_none()
    );
}

#[tokio::test]
async fn a_sas_past_half_its_life_is_renewed_in_the_answer_and_never_for_a_stopping_environment() {
    // Environments keep snapshots in Blob storage (the account is only used
    // to mint: no Blob service is reached).
    let app = crate::harness::TestApp::builder()
        .settings(|s| {
            s.local_snapshot_blob_endpoint = Some("http://127.0.0.1:9/devstoreaccount1".into());
            s.local_snapshot_blob_key = Some(
                "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
                    .into(),
            );
            s.snapshot_sas_protocol = dev8::storage_sas::SasProtocol::HttpsAndHttp;
        })
        .spawn()
        .await;
    let ada = app.user("ada@x.io").await;
    let id = running(&app, &ada, "a").await;
    let token = current_token(&app, &ada, &id).await;
    let with_expiry = |expires_on: Value| {
        let mut body = usage_body();
        body["snapshotSas"] = json!({ "expiresOn": expires_on });
        body
    };
    let now = chrono::Utc::now();

    // Three of four hours left: nothing new.
    let r = report(
        &app,
        &id,
        with_expiry(json!(now + chrono::Duration::hours(3))),
        Auth::Bearer(&token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("snapshotSas").is_none(), "{}", r.body);

    // One hour left: a new SAS for this environment's container, 4 h.
    let r = report(
        &app,
        &id,
        with_expiry(json!(now + chrono::Duration::hours(1))),
        Auth::Bearer(&token),
    )
    .await;
    let renewed = &r.body["snapshotSas"];
    let expires_on: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(renewed["expiresOn"].clone()).unwrap();
    let life = expires_on - now;
    assert!(
        life > chrono::Duration::minutes(239) && life <= chrono::Duration::minutes(241),
        "{life}"
    );
    let sas = renewed["sas"].as_str().unwrap();
    let account = app
        .platform
        .snapshot_grants
        .as_ref()
        .unwrap()
        .account()
        .await
        .unwrap();
    let expected = account
        .mint(&id, expires_on - chrono::Duration::hours(4))
        .unwrap();
    use secrecy::ExposeSecret;
    assert_eq!(
        sas,
        expected.sas.expose_secret(),
        "signed for dev8-<id>, rwdl"
    );

    // A bad expiry is named and changes nothing.
    let before = app.environment(&ada, &id).await;
    let r = report(&app, &id, with_expiry(json!("soon")), Auth::Bearer(&token)).await;
    assert!(r.problem(400).get("snapshotSas.expiresOn").is_some());
    assert_eq!(app.environment(&ada, &id).await, before);

    // Stopping: the agent's token still counts, but no new SAS.
    assert_eq!(app.action(&ada, &id, "stop").await.status, 202);
    let r = report(
        &app,
        &id,
        with_expiry(json!(now + chrono::Duration::minutes(10))),
        Auth::Bearer(&token),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("snapshotSas").is_none(), "{}", r.body);
}
