//! The audit log: each action writes exactly one record with the right
//! fields, `GET /api/audit` returns only the caller's own records, newest
//! first and paged, and jobs never double their records when redelivered.

use crate::harness::{Auth, TestApp, User, spawn_app};
use chrono::Duration;
use dev8::jobs::worker::handle_delivery;
use dev8::queue::{Job, MAX_DELIVERIES};
use reqwest::Method;
use serde_json::{Value, json};

async fn records(app: &TestApp, u: &User) -> Vec<Value> {
    let a = app.get("/api/audit?limit=200", u).await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["records"].as_array().unwrap().clone()
}

fn of<'a>(records: &'a [Value], action: &str) -> Vec<&'a Value> {
    records.iter().filter(|r| r["action"] == action).collect()
}

/// Move the manual clock so records get distinct times.
fn tick(app: &TestApp) {
    app.clock.advance(Duration::seconds(1));
}

#[tokio::test]
async fn each_action_writes_exactly_one_record_with_the_right_fields() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await; // sign-up, then a token sign-in
    tick(&app);
    let signin = app
        .send(
            Method::POST,
            "/api/auth/signin",
            Some(json!({"email": "ada@x.io", "password": "correct-horse-battery"})),
            Auth::Origin(app.origin()),
        )
        .await;
    let cookie = signin.cookie().unwrap();
    tick(&app);
    let wrong = app
        .send(
            Method::POST,
            "/api/auth/signin",
            Some(json!({"email": "ada@x.io", "password": "wrong-password-here"})),
            Auth::Origin(app.origin()),
        )
        .await;
    assert_eq!(wrong.status, 401);
    tick(&app);
    let id = app.create_env(&u, "a").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.settle(10).await;
    tick(&app);
    for action in ["stop", "start"] {
        let a = app
            .post(&format!("/api/environments/{id}/{action}"), json!({}), &u)
            .await;
        assert_eq!(a.status, 202, "{}", a.body);
        app.settle(10).await;
        tick(&app);
    }
    let del = app
        .send(
            Method::DELETE,
            &format!("/api/environments/{id}"),
            None,
            Auth::Bearer(&u.token),
        )
        .await;
    assert_eq!(del.status, 202);
    tick(&app);
    let out = app
        .send(
            Method::POST,
            "/api/auth/signout",
            None,
            Auth::Cookie(&cookie, Some(app.origin())),
        )
        .await;
    assert_eq!(out.status, 204);

    let all = records(&app, &u).await;
    let actions: Vec<&str> = all.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "auth.signout",
            "environment.delete",
            "environment.start",
            "environment.stop",
            "environment.create",
            "auth.signin",
            "auth.signin",
            "auth.signin",
            "auth.signup",
        ],
        "newest first, one per action"
    );
    for r in &all {
        assert_eq!(r["userId"], u.id.as_str());
        assert_eq!(r["clientAddress"], "127.0.0.1");
        assert!(r["at"].is_string() && r["id"].is_string());
    }
    for action in [
        "environment.create",
        "environment.stop",
        "environment.start",
        "environment.delete",
    ] {
        assert_eq!(
            of(&all, action)[0]["environmentId"],
            id.as_str(),
            "{action}"
        );
        assert_eq!(of(&all, action)[0]["outcome"], "success");
    }
    let signins = of(&all, "auth.signin");
    assert_eq!(signins[0]["outcome"], "failure");
    assert_eq!(signins[1]["outcome"], "success");
    assert_eq!(of(&all, "auth.signup")[0]["outcome"], "success");
    // No secrets: neither passwords nor tokens appear anywhere.
    let text = serde_json::to_string(&all).unwrap();
    for secret in [
        "correct-horse-battery",
        "wrong-password-here",
        &u.token,
        &cookie,
    ] {
        assert!(!text.contains(secret));
    }
}

#[tokio::test]
async fn only_the_callers_own_records_are_returned_in_pages() {
    let app = spawn_app().await;
    let ada = app.user("ada@x.io").await;
    let bob = app.user("bob@x.io").await;
    for i in 0..5 {
        tick(&app);
        app.create_env(&ada, &format!("e{i}")).await;
    }
    let bobs = records(&app, &bob).await;
    assert!(bobs.iter().all(|r| r["userId"] == bob.id.as_str()));
    assert_eq!(bobs.len(), 2, "bob's sign-up and sign-in only");
    // A failed sign-in with an unknown email is nobody's to see.
    app.send(
        Method::POST,
        "/api/auth/signin",
        Some(json!({"email": "nobody@x.io", "password": "whatever-it-is"})),
        Auth::Origin(app.origin()),
    )
    .await;
    assert_eq!(records(&app, &bob).await.len(), 2);

    let mut seen = Vec::new();
    let mut path = "/api/audit?limit=3".to_string();
    for _ in 0..10 {
        let page = app.get(&path, &ada).await;
        assert_eq!(page.status, 200, "{}", page.body);
        for r in page.body["records"].as_array().unwrap() {
            assert_eq!(r["userId"], ada.id.as_str());
            seen.push(r["id"].as_str().unwrap().to_string());
        }
        match page.body["next"].as_str() {
            Some(next) => path = format!("/api/audit?limit=3&before={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "5 creates + sign-up + sign-in, no repeats");
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len());
    app.get("/api/audit?limit=0", &ada).await.problem(400);
    app.get("/api/audit?before=garbage", &ada)
        .await
        .problem(400);
    app.send(Method::GET, "/api/audit", None, Auth::None)
        .await
        .problem(401);
}

#[tokio::test]
async fn an_idle_stop_writes_one_record() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let id = app.create_env(&u, "a").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.settle(10).await;
    app.clock.advance(Duration::minutes(31));
    assert_eq!(app.sweep().await.idle_stopped, 1);
    assert_eq!(app.sweep().await.idle_stopped, 0);
    app.settle(10).await;
    app.sweep().await;
    let all = records(&app, &u).await;
    let idle = of(&all, "environment.idle_stop");
    assert_eq!(idle.len(), 1);
    assert_eq!(idle[0]["environmentId"], id.as_str());
    assert!(idle[0]["clientAddress"].is_null());
    // The history says after how long.
    assert_eq!(
        idle[0]["detail"],
        "no use for 31 min 0 s (idle timeout 30 minutes)"
    );
}

#[tokio::test]
async fn a_redelivered_failing_job_does_not_double_its_record() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let id = app.create_env(&u, "a").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.fake().set_down(true);
    let body = Job::reconcile(&u.id, &id).to_body();
    for _ in 0..2 {
        // The last allowed delivery, delivered twice (a lost completion).
        assert!(
            handle_delivery(&app.platform, &body, "message-1", MAX_DELIVERIES)
                .await
                .is_err()
        );
    }
    let all = records(&app, &u).await;
    let failures = of(&all, "job.failure");
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["outcome"], "failure");
    assert_eq!(failures[0]["environmentId"], id.as_str());
    assert_eq!(app.status_of(&u, &id).await, "error");

    // A permanent refusal is a job failure too, recorded once per message.
    app.fake().set_down(false);
    app.fake().refuse_starts(Some("image not allowed"));
    let b = app.create_env(&u, "b").await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = Job::reconcile(&u.id, &b).to_body();
    handle_delivery(&app.platform, &body, "message-2", 1)
        .await
        .unwrap();
    let all = records(&app, &u).await;
    let refused: Vec<_> = of(&all, "job.failure")
        .into_iter()
        .filter(|r| r["environmentId"] == b.as_str())
        .collect();
    assert_eq!(refused.len(), 1, "{all:#?}");
}

#[tokio::test]
async fn the_store_treats_a_duplicate_audit_id_as_success_and_identities_as_unique() {
    use dev8::domain::{AuditOutcome, AuditRecord, Identity};
    use dev8::store::{AuditCursor, CONFLICT_IDENTITY, StoreError};
    let app = spawn_app().await;
    let store = &app.platform.store;
    let rec = AuditRecord {
        id: "fixed-id".into(),
        user_id: "u1".into(),
        at: app.now(),
        action: "job.failure".into(),
        outcome: AuditOutcome::Failure,
        environment_id: Some("e1".into()),
        client_address: None,
        detail: None,
        idle_timeout_minutes: None,
        reason: None,
        desired_state: None,
    };
    store.insert_audit(&rec).await.unwrap();
    store.insert_audit(&rec).await.unwrap();
    assert_eq!(
        store.audit_records("u1", None, None, 10).await.unwrap(),
        vec![rec.clone()]
    );
    let older = AuditCursor {
        at: rec.at,
        id: rec.id.clone(),
    };
    assert!(
        store
            .audit_records("u1", None, Some(&older), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .audit_records("u2", None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let identity = Identity {
        id: "i1".into(),
        user_id: "u1".into(),
        provider: "oidc".into(),
        issuer: "https://issuer".into(),
        subject: "s".into(),
        email: None,
        email_verified: false,
        created_at: app.now(),
    };
    store.insert_identity(&identity).await.unwrap();
    let twin = Identity {
        id: "i2".into(),
        user_id: "u2".into(),
        ..identity.clone()
    };
    assert!(matches!(
        store.insert_identity(&twin).await,
        Err(StoreError::Conflict(w)) if w == CONFLICT_IDENTITY
    ));
    assert_eq!(
        store
            .identity_by_subject("https://issuer", "s")
            .await
            .unwrap(),
        Some(identity.clone())
    );
    assert!(matches!(
        store.delete_identity("u2", "i1").await,
        Err(StoreError::NotFound)
    ));
    store.delete_identity("u1", "i1").await.unwrap();
    assert!(store.identities("u1").await.unwrap().is_empty());
}

#[tokio::test]
async fn opening_the_ide_writes_one_record_per_open() {
    let app = spawn_app().await;
    let u = app.user("ide@x.io").await;
    let id = app.new_env(&u, "a").await;
    app.settle(20).await;
    // The page navigation (303 to the agent) and the API clients' route.
    let nav = app
        .send(
            reqwest::Method::GET,
            &format!("/api/environments/{id}/ide"),
            None,
            Auth::Bearer(&u.token),
        )
        .await;
    assert_eq!(nav.status, 303);
    tick(&app);
    let open = app
        .post(
            &format!("/api/environments/{id}/open"),
            serde_json::json!({}),
            &u,
        )
        .await;
    assert_eq!(open.status, 200, "{}", open.body);
    let all = records(&app, &u).await;
    let opens = of(&all, "ide.open");
    assert_eq!(opens.len(), 2, "one record per open");
    for r in opens {
        assert_eq!(r["environmentId"], id.as_str());
        assert_eq!(r["outcome"], "success");
        let text = r.to_string();
        assert!(!text.contains("ticket"), "no ticket in the record: {text}");
    }
}

/// `GET /api/audit?environmentId=` as the dashboard reads it.
async fn history(app: &TestApp, u: &User, id: &str) -> Vec<Value> {
    let a = app
        .get(&format!("/api/audit?environmentId={id}&limit=200"), u)
        .await;
    assert_eq!(a.status, 200, "{}", a.body);
    a.body["records"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_environments_history_is_its_own_records_newest_first_in_pages() {
    let app = spawn_app().await;
    let ada = app.user("ada@x.io").await;
    let bob = app.user("bob@x.io").await;
    let id = app.new_env(&ada, "a").await;
    let other = app.new_env(&ada, "b").await;
    app.settle(10).await;
    for action in ["stop", "start", "stop", "start"] {
        tick(&app);
        assert_eq!(app.action(&ada, &id, action).await.status, 202);
        app.settle(10).await;
    }
    tick(&app);
    assert_eq!(app.action(&ada, &other, "stop").await.status, 202);

    let all = history(&app, &ada, &id).await;
    let actions: Vec<&str> = all.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "environment.start",
            "environment.stop",
            "environment.start",
            "environment.stop",
            "environment.create",
        ],
        "this environment's records only, newest first"
    );
    assert!(all.iter().all(|r| r["environmentId"] == id.as_str()));

    // Paged exactly like the account's log.
    let mut seen = Vec::new();
    let mut path = format!("/api/audit?environmentId={id}&limit=2");
    for _ in 0..5 {
        let page = app.get(&path, &ada).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let records = page.body["records"].as_array().unwrap();
        assert!(records.len() <= 2);
        seen.extend(records.iter().map(|r| r["id"].clone()));
        match page.body["next"].as_str() {
            Some(next) => path = format!("/api/audit?environmentId={id}&limit=2&before={next}"),
            None => break,
        }
    }
    let ids: Vec<Value> = all.iter().map(|r| r["id"].clone()).collect();
    assert_eq!(seen, ids, "the pages join up to the whole history");

    // Another user's environment and an unknown one are not found, and a
    // malformed id is bad input naming the field.
    app.get(&format!("/api/audit?environmentId={id}"), &bob)
        .await
        .problem(404);
    app.get("/api/audit?environmentId=01jzzzzzzzzzzzzzzzzzzzzzzz", &ada)
        .await
        .problem(404);
    let bad = app.get("/api/audit?environmentId=..%2Fx", &ada).await;
    assert!(
        bad.problem(400)["environmentId"].is_string(),
        "{}",
        bad.body
    );
    app.get(&format!("/api/audit?environmentId={id}&limit=0"), &ada)
        .await
        .problem(400);
}

#[tokio::test]
async fn a_forgotten_environments_history_is_gone_but_the_account_keeps_it() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let id = app.new_env(&u, "a").await;
    app.settle(10).await;
    assert_eq!(app.action(&u, &id, "delete").await.status, 202);
    // While deleting, the history is still there.
    assert_eq!(history(&app, &u, &id).await.len(), 2);
    app.settle(20).await;
    assert_eq!(app.env(&u, &id).await.status, 404, "forgotten");
    app.get(&format!("/api/audit?environmentId={id}"), &u)
        .await
        .problem(404);
    let all = records(&app, &u).await;
    assert_eq!(
        all.iter()
            .filter(|r| r["environmentId"] == id.as_str())
            .count(),
        2,
        "create and delete stay in the account's log"
    );
}

#[tokio::test]
async fn history_records_carry_what_their_sentences_need() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    // An idle stop names the timeout it honoured.
    let idle = app
        .post(
            "/api/environments",
            json!({"name": "idle", "baseImage": "node", "preset": "small", "idleTimeoutMinutes": 45}),
            &u,
        )
        .await;
    assert_eq!(idle.status, 202, "{}", idle.body);
    let idle = idle.body["environment"]["id"].as_str().unwrap().to_string();
    app.settle(10).await;
    app.clock.advance(Duration::minutes(46));
    assert_eq!(app.sweep().await.idle_stopped, 1);
    let h = history(&app, &u, &idle).await;
    assert_eq!(h[0]["action"], "environment.idle_stop");
    assert_eq!(h[0]["idleTimeoutMinutes"], 45);

    // A refused start carries its cause and what it was heading for.
    app.fake().refuse_starts(Some("image not allowed"));
    let refused = app.new_env(&u, "refused").await;
    // Records made at one instant are ordered by id, not by cause; the
    // manual clock moves as a real one would between the two.
    tick(&app);
    app.settle(10).await;
    let h = history(&app, &u, &refused).await;
    assert_eq!(h[0]["action"], "job.failure");
    assert_eq!(h[0]["outcome"], "failure");
    assert_eq!(h[0]["reason"], "image not allowed");
    assert_eq!(h[0]["desiredState"], "running");
    app.fake().refuse_starts(None);

    // The last failed delivery: the cause as the environment shows it.
    let broken = app.new_env(&u, "broken").await;
    tick(&app);
    app.fake().set_down(true);
    let body = Job::reconcile(&u.id, &broken).to_body();
    assert!(
        handle_delivery(&app.platform, &body, "message-9", MAX_DELIVERIES)
            .await
            .is_err()
    );
    let env = app.environment(&u, &broken).await;
    let h = history(&app, &u, &broken).await;
    assert_eq!(h[0]["action"], "job.failure");
    assert_eq!(h[0]["reason"], env["statusReason"]);
    assert!(h[0]["reason"].as_str().unwrap().starts_with("Failed after"));
    assert_eq!(h[0]["desiredState"], "running");
    app.fake().set_down(false);

    // A status past its deadline: one failure record, however many sweeps.
    app.fake().set_boot_polls(u32::MAX);
    let stuck = app.new_env(&u, "stuck").await;
    app.settle(5).await;
    app.clock.advance(Duration::minutes(16));
    assert_eq!(app.sweep().await.timed_out, 1);
    app.sweep().await;
    let h = history(&app, &u, &stuck).await;
    let failures = of(&h, "job.failure");
    assert_eq!(failures.len(), 1, "{h:#?}");
    assert_eq!(failures[0]["desiredState"], "running");
    assert_eq!(
        failures[0]["reason"],
        app.environment(&u, &stuck).await["statusReason"]
    );
    // Ordinary records carry none of these fields.
    let create = of(&h, "environment.create")[0];
    for field in ["idleTimeoutMinutes", "reason", "desiredState"] {
        assert!(create.get(field).is_none(), "{field}: {create}");
    }
}

/// A change of the dotfiles repository — code that will run in every new
/// environment — is audited with the new URL (or none when removed); the
/// same value set again, and a refused value, write nothing.
#[tokio::test]
async fn a_dotfiles_change_is_audited_once_per_change() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let patch = |body: Value| {
        let (app, u) = (&app, &u);
        async move {
            tick(app);
            crate::repository::patch_settings(app, u, body).await
        }
    };
    let url = "https://github.com/ada/dotfiles";
    assert_eq!(patch(json!({"dotfilesRepository": url})).await.status, 200);
    assert_eq!(patch(json!({"dotfilesRepository": url})).await.status, 200);
    patch(json!({"dotfilesRepository": "http://github.com/ada/x"}))
        .await
        .problem(400);
    assert_eq!(patch(json!({"dotfilesRepository": null})).await.status, 200);
    let all = records(&app, &u).await;
    let changes = of(&all, "settings.dotfiles");
    assert_eq!(changes.len(), 2, "{changes:?}");
    // Newest first: the removal, then the URL.
    assert_eq!(changes[0]["outcome"], "success");
    assert!(changes[0].get("detail").is_none_or(Value::is_null));
    assert_eq!(changes[1]["detail"], url);
}
