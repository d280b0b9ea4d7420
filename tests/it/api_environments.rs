//! The environment API over HTTP: validation, per-user isolation, quotas,
//! idempotent actions. Jobs are driven by hand with `FakeCompute`.

use crate::harness::{Auth, TestApp, spawn_app};
use dev8::http::ROUTES;
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn create_answers_202_with_location_and_runs_to_running() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let a = app
        .post(
            "/api/environments",
            json!({"name":"  my app ","baseImage":"python","preset":"medium"}),
            &u,
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    let env = &a.body["environment"];
    let id = env["id"].as_str().unwrap();
    assert_eq!(
        a.headers.get("location").unwrap(),
        &format!("/api/environments/{id}")
    );
    assert_eq!(env["status"], "creating");
    assert_eq!(env["desiredState"], "running");
    assert_eq!(env["name"], "my app");
    assert_eq!(
        (
            env["cpuCores"].as_u64(),
            env["memoryGB"].as_u64(),
            env["storageGB"].as_u64()
        ),
        (Some(2), Some(4), Some(50))
    );
    assert_eq!(env["idleTimeoutMinutes"], 30);
    assert_eq!(env["actions"], json!(["stop", "delete"]));
    // Fake compute (as local by default): the home is used in place.
    assert_eq!(env["homeMode"], "share");
    assert_eq!(env["snapshotIntervalMinutes"], Value::Null);
    let catalog = app.get("/api/templates", &u).await;
    assert_eq!(catalog.body["shareHome"], "folder", "not ACI: a folder");
    for hidden in ["userId", "lease", "chain", "compute", "agentTokenId"] {
        assert!(env.get(hidden).is_none(), "{hidden} leaked");
    }
    app.fake().set_boot_polls(2);
    app.settle(30).await;
    let got = app.env(&u, id).await;
    assert_eq!(got.body["environment"]["status"], "running");
    assert_eq!(
        got.body["environment"]["ideUrl"],
        format!("http://e-{id}.localhost/")
    );
    assert_eq!(
        got.body["environment"]["actions"],
        json!(["open", "stop", "delete"])
    );
    let st = app.get(&format!("/api/environments/{id}/status"), &u).await;
    assert_eq!(
        st.body,
        json!({"status":"running","desiredState":"running","statusReason":null,"ideUrl":format!("http://e-{id}.localhost/"),"actions":["open","stop","delete"],"progress":null})
    );
}

#[tokio::test]
async fn explicit_sizes_and_idle_timeout_are_accepted() {
    let app = TestApp::builder()
        .settings(|s| s.idle_timeout_minutes = 45)
        .spawn()
        .await;
    let u = app.user("ada@x.io").await;
    let a = app
        .post("/api/environments", json!({"name":"big","baseImage":"golang","cpuCores":8,"memoryGB":16,"storageGB":200,"idleTimeoutMinutes":480}), &u)
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.body["environment"]["idleTimeoutMinutes"], 480);
    let b = app
        .post(
            "/api/environments",
            json!({"name":"dflt","baseImage":"node","preset":"large"}),
            &u,
        )
        .await;
    assert_eq!(
        b.body["environment"]["idleTimeoutMinutes"], 45,
        "default from settings"
    );
}

#[tokio::test]
async fn every_validation_error_is_reported_by_field_and_nothing_is_stored() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let ok = json!({"name":"n","baseImage":"node","cpuCores":1,"memoryGB":2,"storageGB":20});
    let with = |k: &str, v: Value| {
        let mut b = ok.clone();
        b[k] = v;
        b
    };
    let cases: Vec<(&str, Value)> = vec![
        ("name", with("name", json!(""))),
        ("name", with("name", json!("   "))),
        ("name", with("name", json!("x".repeat(51)))),
        ("name", with("name", json!("bad\u{0000}name"))),
        ("name", with("name", json!(7))),
        ("homeMode", with("homeMode", json!("snapshot"))),
        ("baseImage", with("baseImage", json!("ruby"))),
        ("baseImage", with("baseImage", Value::Null)),
        ("cpuCores", with("cpuCores", json!(0))),
        ("cpuCores", with("cpuCores", json!(9))),
        ("cpuCores", with("cpuCores", json!(1.5))),
        ("memoryGB", with("memoryGB", json!(1))),
        ("memoryGB", with("memoryGB", json!(17))),
        ("storageGB", with("storageGB", json!(19))),
        ("storageGB", with("storageGB", json!(201))),
        ("idleTimeoutMinutes", with("idleTimeoutMinutes", json!(4))),
        ("idleTimeoutMinutes", with("idleTimeoutMinutes", json!(481))),
        (
            "preset",
            json!({"name":"n","baseImage":"node","preset":"huge"}),
        ),
        (
            "cpuCores",
            json!({"name":"n","baseImage":"node","preset":"small","cpuCores":2}),
        ),
        (
            "storageGB",
            json!({"name":"n","baseImage":"node","cpuCores":1,"memoryGB":2}),
        ),
        ("userId", with("userId", json!("someone"))),
        ("status", with("status", json!("running"))),
        ("ideUrl", with("ideUrl", json!("http://evil"))),
        ("desiredState", with("desiredState", json!("running"))),
        ("id", with("id", json!("chosen"))),
        ("color", with("color", json!("red"))),
    ];
    for (field, body) in cases {
        let a = app.post("/api/environments", body.clone(), &u).await;
        let errs = a.problem(400);
        assert!(
            errs[field].is_string(),
            "expected an error for {field} from {body}: {}",
            a.body
        );
    }
    let list = app.get("/api/environments", &u).await;
    assert_eq!(list.body["environments"], json!([]));
    assert_eq!(app.queue_len().await, 0, "nothing was enqueued");
}

#[tokio::test]
async fn malformed_bodies_are_4xx_problems_never_5xx() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let url = format!("{}/api/environments", app.url);
    let send = |body: Vec<u8>, ct: Option<&str>| {
        let mut r = app.client.post(&url).bearer_auth(&u.token).body(body);
        if let Some(ct) = ct {
            r = r.header("content-type", ct);
        }
        r.send()
    };
    let cases: Vec<(Vec<u8>, Option<&str>, u16)> = vec![
        (b"{not json".to_vec(), Some("application/json"), 400),
        (b"[1,2]".to_vec(), Some("application/json"), 400),
        (b"\"str\"".to_vec(), Some("application/json"), 400),
        (b"".to_vec(), Some("application/json"), 400),
        (br#"{"name":"x"}"#.to_vec(), Some("text/plain"), 415),
        (br#"{"name":"x"}"#.to_vec(), None, 415),
        (
            format!(r#"{{"name":"{}"}}"#, "x".repeat(70_000)).into_bytes(),
            Some("application/json"),
            413,
        ),
    ];
    for (body, ct, want) in cases {
        let r = send(body, ct).await.unwrap();
        assert_eq!(r.status().as_u16(), want, "content type {ct:?}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
    }
    let unknown = app.get("/api/nothing-here", &u).await;
    unknown.problem(404);
    assert_eq!(
        app.get("/api/environments", &u).await.body["environments"],
        json!([])
    );
}

#[tokio::test]
async fn names_are_unique_per_user_only() {
    let app = spawn_app().await;
    let ada = app.user("ada@x.io").await;
    let bob = app.user("bob@x.io").await;
    app.create_env(&ada, "web").await;
    let dup = app
        .post(
            "/api/environments",
            json!({"name":"web","baseImage":"node","preset":"small"}),
            &ada,
        )
        .await;
    assert!(dup.problem(409)["name"].is_string());
    app.create_env(&bob, "web").await;
    // The refused create gave back its quota slot.
    let slots = app
        .platform
        .store
        .document(&format!("quota:user:{}", ada.id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(slots.value["environments"].as_object().unwrap().len(), 1);
}

#[tokio::test]
async fn names_are_unique_regardless_of_case_and_409_names_the_field() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let web = app.new_env(&u, "web-app").await;
    let other = app.new_env(&u, "other").await;
    let dup = app
        .post(
            "/api/environments",
            json!({"name":"Web-App","baseImage":"node","preset":"small"}),
            &u,
        )
        .await;
    assert!(dup.problem(409)["name"].is_string(), "{}", dup.body);
    let (a, token) = (&app, u.token.as_str());
    let patch = |id: &str, body: Value| {
        let path = format!("/api/environments/{id}");
        async move {
            a.send(Method::PATCH, &path, Some(body), Auth::Bearer(token))
                .await
        }
    };
    let onto = patch(&other, json!({"name":"WEB-APP"})).await;
    assert!(onto.problem(409)["name"].is_string(), "{}", onto.body);
    assert_eq!(
        app.environment(&u, &other).await["name"],
        "other",
        "a refused rename changes nothing"
    );
    let recased = patch(&web, json!({"name":"Web-App"})).await;
    assert_eq!(recased.status, 200, "{}", recased.body);
    assert_eq!(recased.body["environment"]["name"], "Web-App");
}

#[tokio::test]
async fn patch_renames_and_changes_the_idle_timeout() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let id = app.new_env(&u, "a").await;
    app.create_env(&u, "b").await;
    let path = format!("/api/environments/{id}");
    let patch = |body: Value| app.send(Method::PATCH, &path, Some(body), Auth::Bearer(&u.token));
    let ok = patch(json!({"name":"renamed","idleTimeoutMinutes":5})).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        (
            ok.body["environment"]["name"].as_str(),
            ok.body["environment"]["idleTimeoutMinutes"].as_u64()
        ),
        (Some("renamed"), Some(5))
    );
    assert!(patch(json!({"name":"b"})).await.problem(409)["name"].is_string());
    assert!(
        patch(json!({"idleTimeoutMinutes":481})).await.problem(400)["idleTimeoutMinutes"]
            .is_string()
    );
    assert!(patch(json!({"status":"stopped"})).await.problem(400)["status"].is_string());
    patch(json!({})).await.problem(400);
    assert_eq!(
        app.env(&u, &id).await.body["environment"]["name"],
        "renamed"
    );
}

#[tokio::test]
async fn start_and_stop_are_idempotent_and_refused_once_deleting() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let id = app.new_env(&u, "a").await;
    app.settle(20).await;
    let act = async |verb: &str| {
        app.post(&format!("/api/environments/{id}/{verb}"), json!({}), &u)
            .await
    };
    let again = act("start").await;
    assert_eq!(again.status, 202);
    assert_eq!(again.body["environment"]["status"], "running");
    assert_eq!(
        app.queue_len().await,
        0,
        "starting a running environment changes nothing"
    );

    let stop = act("stop").await;
    assert_eq!(
        (
            stop.status.as_u16(),
            stop.body["environment"]["status"].as_str()
        ),
        (202, Some("stopping"))
    );
    assert_eq!(act("stop").await.status, 202);
    app.settle(20).await;
    let e = app.env(&u, &id).await.body["environment"].clone();
    assert_eq!(
        (
            e["status"].as_str(),
            e["stopCause"].as_str(),
            e["ideUrl"].as_null()
        ),
        (Some("stopped"), Some("user"), Some(()))
    );
    assert_eq!(e["actions"], json!(["start", "delete"]));

    let start = act("start").await;
    assert_eq!(start.body["environment"]["status"], "starting");
    app.settle(20).await;
    assert_eq!(app.status_of(&u, &id).await, "running");
    assert_eq!(
        app.fake().counts(&id).creates,
        1,
        "restart reuses the resources"
    );

    let del = app
        .send(
            Method::DELETE,
            &format!("/api/environments/{id}"),
            None,
            Auth::Bearer(&u.token),
        )
        .await;
    assert_eq!(
        (
            del.status.as_u16(),
            del.body["environment"]["status"].as_str()
        ),
        (202, Some("deleting"))
    );
    act("start").await.problem(409);
    act("stop").await.problem(409);
    app.settle(20).await;
    app.env(&u, &id).await.problem(404);
    assert!(app.fake().state(&id).is_none());
}

/// Routes authenticated by an environment's agent token instead of a session.
const AGENT_ROUTES: &[&str] = &[
    "EnvironmentActivity",
    "EnvironmentSessions",
    "EnvironmentReport",
];

/// Every route with an `{id}` answers 404 for another user's environment and
/// changes nothing. Driven by the route table: a new route is covered (and
/// must pass) without editing this test.
#[tokio::test]
async fn another_users_environment_is_404_on_every_route() {
    let app = spawn_app().await;
    let ada = app.user("ada@x.io").await;
    let eve = app.user("eve@x.io").await;
    let id = app.new_env(&ada, "private").await;
    app.settle(20).await;
    let before = app
        .platform
        .store
        .environment(&ada.id, &id)
        .await
        .unwrap()
        .unwrap();
    let queued = app.queue_len().await;
    let mut covered = 0;
    for route in ROUTES.iter().filter(|r| r.path.contains("{id}")) {
        let path = route.path.replace("{id}", &id);
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        let body = matches!(route.method, "POST" | "PATCH" | "PUT")
            .then(|| json!({"name":"stolen","idleTimeoutMinutes":5}));
        let a = app
            .send(method, &path, body, Auth::Bearer(&eve.token))
            .await;
        // Routes that take an agent token, not a user session, refuse a
        // user's token outright (401); every user route says "not found".
        let want: &[u16] = if AGENT_ROUTES.contains(&route.function) {
            &[401, 404]
        } else {
            &[404]
        };
        assert!(
            want.contains(&a.status.as_u16()),
            "{} {} answered {} {}",
            route.method,
            route.path,
            a.status,
            a.body
        );
        covered += 1;
    }
    assert!(covered >= 6, "the route table lost environment routes");
    let after = app
        .platform
        .store
        .environment(&ada.id, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before, after, "nothing changed");
    assert_eq!(app.queue_len().await, queued, "nothing was enqueued");
    assert_eq!(
        app.get("/api/environments", &eve).await.body["environments"],
        json!([])
    );
    // Unknown ids are 404 too, not 400 or 500.
    app.get("/api/environments/does-not-exist", &ada)
        .await
        .problem(404);
}

#[tokio::test]
async fn listing_is_most_recently_used_first_and_per_user() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let other = app.user("bob@x.io").await;
    app.create_env(&other, "theirs").await;
    for name in ["first", "second", "third"] {
        app.create_env(&u, name).await;
        app.clock.advance(chrono::Duration::seconds(5));
    }
    let names: Vec<String> = app.get("/api/environments", &u).await.body["environments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["third", "second", "first"]);
}

#[tokio::test]
async fn parallel_creates_never_exceed_the_quotas() {
    let app = TestApp::builder()
        .settings(|s| {
            s.max_environments_per_user = 10;
            s.max_running_per_user = 5;
        })
        .spawn()
        .await;
    let u = app.user("ada@x.io").await;
    let creates = (0..20).map(|i| {
        let (app, u) = (&app, &u);
        async move {
            app.post(
                "/api/environments",
                json!({"name": format!("env-{i}"), "baseImage":"node","preset":"small"}),
                u,
            )
            .await
        }
    });
    let answers = futures::future::join_all(creates).await;
    let ok = answers.iter().filter(|a| a.status == 202).count();
    for a in answers.iter().filter(|a| a.status != 202) {
        assert_eq!(a.body["title"], "Quota exceeded", "{}", a.body);
    }
    assert_eq!(ok, 5, "five may run at once");
    let listed = app.get("/api/environments", &u).await.body["environments"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(listed, 5);

    // Stopped environments still count toward the 10 environments.
    app.settle(20).await;
    for e in app.get("/api/environments", &u).await.body["environments"]
        .as_array()
        .unwrap()
    {
        app.post(
            &format!("/api/environments/{}/stop", e["id"].as_str().unwrap()),
            json!({}),
            &u,
        )
        .await;
    }
    app.settle(20).await;
    let more = (0..10).map(|i| {
        let (app, u) = (&app, &u);
        async move {
            app.post(
                "/api/environments",
                json!({"name": format!("more-{i}"), "baseImage":"node","preset":"small"}),
                u,
            )
            .await
        }
    });
    let answers = futures::future::join_all(more).await;
    assert_eq!(
        answers.iter().filter(|a| a.status == 202).count(),
        5,
        "10 environments in all"
    );

    // Starting a stopped one is refused while 5 run.
    let stopped = app.get("/api/environments", &u).await.body["environments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == "stopped")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let start = app
        .post(&format!("/api/environments/{stopped}/start"), json!({}), &u)
        .await;
    assert_eq!(start.problem(403).as_null(), Some(()));
    assert_eq!(
        app.env(&u, &stopped).await.body["environment"]["desiredState"],
        "stopped"
    );
}

/// Anything in an `{id}` that is not a well-formed id is 404 problem+json at
/// the edge: before the caller is even looked at (so without credentials
/// too, and without a store call), on every route of the table.
#[tokio::test]
async fn malformed_ids_are_404_at_the_edge() {
    let app = spawn_app().await;
    let ada = app.user("ada@x.io").await;
    let long = "a".repeat(300);
    let upper = "01J0000000000000000000000A";
    let malformed = [
        "does-not-exist",
        "x",
        long.as_str(),
        upper,
        "01j00000000000000000000000%00",
        "81j0000000000000000000000a",
        "01j000000000000000000000u",
        "%E2%80%AE01j0000000000000000000000",
    ];
    for route in ROUTES.iter().filter(|r| r.path.contains("{id}")) {
        let method = Method::from_bytes(route.method.as_bytes()).unwrap();
        for id in malformed {
            let path = route.path.replace("{id}", id);
            for auth in [Auth::None, Auth::Bearer(&ada.token)] {
                let a = app.send(method.clone(), &path, None, auth).await;
                assert_eq!(a.status, 404, "{} {path}: {}", route.method, a.body);
                assert_eq!(
                    a.headers["content-type"], "application/problem+json",
                    "{} {path}",
                    route.method
                );
            }
        }
    }
    // A well-formed id still needs a caller.
    let unknown = "/api/environments/01j0000000000000000000000a";
    app.send(Method::GET, unknown, None, Auth::None)
        .await
        .problem(401);
    app.get(unknown, &ada).await.problem(404);
}

#[tokio::test]
async fn the_platform_wide_running_limit_holds_across_users() {
    let app = TestApp::builder()
        .settings(|s| s.max_running_total = 3)
        .spawn()
        .await;
    let mut users = Vec::new();
    for i in 0..3 {
        users.push(app.user(&format!("u{i}@x.io")).await);
    }
    let creates = (0..9).map(|i| {
        let (app, u) = (&app, &users[i % 3]);
        async move {
            app.post(
                "/api/environments",
                json!({"name": format!("e{i}"), "baseImage":"node","preset":"small"}),
                u,
            )
            .await
        }
    });
    let answers = futures::future::join_all(creates).await;
    assert_eq!(answers.iter().filter(|a| a.status == 202).count(), 3);
}

#[tokio::test]
async fn a_slot_leaked_by_a_crash_heals_itself() {
    let app = TestApp::builder()
        .settings(|s| s.max_running_per_user = 1)
        .spawn()
        .await;
    let u = app.user("ada@x.io").await;
    // A reservation whose environment was never written (a crash in between).
    app.platform
        .policy
        .quotas
        .reserve(
            app.platform.store.as_ref(),
            &u.id,
            "ghost",
            dev8::quota::Slot::NewEnvironment,
            app.now(),
        )
        .await
        .unwrap();
    let early = app
        .post(
            "/api/environments",
            json!({"name":"early","baseImage":"node","preset":"small"}),
            &u,
        )
        .await;
    early.problem(403);
    app.clock
        .advance(dev8::quota::PRUNE_AFTER + chrono::Duration::seconds(1));
    let a = app
        .post(
            "/api/environments",
            json!({"name":"real","baseImage":"node","preset":"small"}),
            &u,
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
}

#[tokio::test]
async fn browsers_get_the_dashboard_and_api_paths_stay_json() {
    let app = spawn_app().await;
    let page = app
        .client
        .get(format!("{}/environments/xyz", app.url))
        .send()
        .await
        .unwrap();
    // An unknown path is 404 with the dashboard's page, which shows its
    // not-found view; the page itself is 200.
    assert_eq!(page.status(), 404);
    let home = app
        .client
        .get(format!("{}/", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(home.status(), 200);
    assert!(home.text().await.unwrap().contains("<html"));
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(page.text().await.unwrap().contains("<html"));
    let api = app
        .send(Method::GET, "/api/environments", None, Auth::None)
        .await;
    api.problem(401);
}

/// Reads run on their own connections (`db::Db::read`) next to the one
/// writer: concurrent writes and reads lose nothing, and a write is visible
/// to every read that starts after it was answered.
#[tokio::test]
async fn concurrent_writes_and_reads_lose_nothing() {
    let app = spawn_app().await;
    let u = app.user("ada@x.io").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(app.new_env(&u, &format!("env-{i}")).await);
    }
    let writes = ids.iter().enumerate().flat_map(|(i, id)| {
        let (app, u) = (&app, &u);
        // Two writers per record: both must land (through the read-modify-write loop).
        [
            json!({"name": format!("renamed-{i}")}),
            json!({"idleTimeoutMinutes": 60 + i}),
        ]
        .into_iter()
        .map(move |body| async move {
            app.send(
                Method::PATCH,
                &format!("/api/environments/{id}"),
                Some(body),
                Auth::Bearer(&u.token),
            )
            .await
            .status
        })
    });
    let reads = (0..20).map(|_| {
        let (app, u) = (&app, &u);
        async move { app.get("/api/environments", u).await.status }
    });
    let (written, read) = tokio::join!(
        futures::future::join_all(writes),
        futures::future::join_all(reads)
    );
    assert!(written.iter().all(|s| *s == 200), "{written:?}");
    assert!(read.iter().all(|s| *s == 200), "{read:?}");
    for (i, id) in ids.iter().enumerate() {
        let e = app.environment(&u, id).await;
        assert_eq!(e["name"], format!("renamed-{i}"));
        assert_eq!(e["idleTimeoutMinutes"], 60 + i);
    }
}

/// The sign-in session (`sid`) behind a user's bearer token or cookie value.
fn sid_of(app: &TestApp, token: &str) -> String {
    let p = &app.platform;
    let token = token.rsplit('=').next().unwrap();
    p.keys
        .verify(
            token,
            dev8::auth::tokens::TokenKind::Session,
            dev8::auth::tokens::SESSION_AUDIENCE,
            p.policy.issuer(),
        )
        .unwrap()
        .sid
        .unwrap()
}

/// `POST .../sessions`: the agent's check of the sign-in sessions behind its
/// IDE sessions. Only the environment's current agent token may ask; only
/// live sessions of the environment's owner are named in the answer, so
/// another user's (or an unknown) session id says nothing; sign-out and
/// account deletion show at once; bad input is a problem naming the field.
#[tokio::test]
async fn the_session_check_answers_about_the_owners_live_sessions_only() {
    let app = spawn_app().await;
    let ada = app.user("ada@x.io").await;
    let bob = app.user("bob@x.io").await;
    let id = app.new_env(&ada, "mine").await;
    let bobs = app.new_env(&bob, "his").await;
    app.settle(20).await;
    let agent = app.fake().agent_token(&id).expect("the agent got a token");
    let bobs_agent = app.fake().agent_token(&bobs).unwrap();
    let (ada_token, ada_cookie, bob_sid) = (
        sid_of(&app, &ada.token),
        sid_of(&app, &ada.cookie),
        sid_of(&app, &bob.token),
    );
    assert_ne!(ada_token, ada_cookie);
    let path = format!("/api/environments/{id}/sessions");
    let ask = async |path: &str, token: &str, body: Value| {
        app.send(Method::POST, path, Some(body), Auth::Bearer(token))
            .await
    };
    let all =
        json!({"sessions": [ada_token, ada_cookie, bob_sid, "bm90LWEtc2Vzc2lvbg", ada_token]});

    let a = ask(&path, &agent, all.clone()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({"live": [ada_token, ada_cookie]}));
    // Bob's agent learns nothing about Ada's sessions, and a user's own token is no agent's.
    let a = ask(
        &format!("/api/environments/{bobs}/sessions"),
        &bobs_agent,
        all.clone(),
    )
    .await;
    assert_eq!(a.body, json!({"live": [bob_sid]}));
    assert_eq!(ask(&path, &bobs_agent, all.clone()).await.status, 401);
    assert_eq!(ask(&path, &ada.token, all.clone()).await.status, 401);
    let a = app
        .send(Method::POST, &path, Some(all.clone()), Auth::None)
        .await;
    a.problem(401);

    // Bad input names the field.
    for (body, field) in [
        (json!({}), "sessions"),
        (json!({"sessions": "x"}), "sessions"),
        (json!({"sessions": [1]}), "sessions"),
        (json!({"sessions": ["has space"]}), "sessions"),
        (json!({"sessions": vec!["a"; 1001]}), "sessions"),
        (json!({"sessions": [], "extra": 1}), "extra"),
    ] {
        let a = ask(&path, &agent, body.clone()).await;
        assert!(a.problem(400).get(field).is_some(), "{body}: {}", a.body);
    }

    // Sign-out ends the cookie's session at once.
    let out = app
        .send(
            Method::POST,
            "/api/auth/signout",
            None,
            app.as_browser(&ada),
        )
        .await;
    assert_eq!(out.status, 204);
    let a = ask(&path, &agent, all.clone()).await;
    assert_eq!(a.body, json!({"live": [ada_token]}));

    // A rotated agent token (stop, start) is refused; the new one answers.
    assert_eq!(app.action(&ada, &id, "stop").await.status, 202);
    app.settle(20).await;
    assert_eq!(ask(&path, &agent, all.clone()).await.status, 401);
    assert_eq!(app.action(&ada, &id, "start").await.status, 202);
    app.settle(20).await;
    let agent = app.fake().agent_token(&id).unwrap();
    assert_eq!(
        ask(&path, &agent, all.clone()).await.body,
        json!({"live": [ada_token]})
    );

    // Account deletion: nothing of Ada's is live any more.
    let del = app
        .send(
            Method::DELETE,
            "/api/auth/me",
            None,
            Auth::Bearer(&ada.token),
        )
        .await;
    assert_eq!(del.status, 204, "{}", del.body);
    let a = ask(&path, &agent, all.clone()).await;
    assert!(
        [401, 404].contains(&a.status.as_u16()) || a.body == json!({"live": []}),
        "{} {}",
        a.status,
        a.body
    );
    let a = ask(
        &format!("/api/environments/{bobs}/sessions"),
        &bobs_agent,
        all,
    )
    .await;
    assert_eq!(a.body, json!({"live": [bob_sid]}));
}
