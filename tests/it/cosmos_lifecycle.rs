//! `handler serve` with `DEV8_STORE=cosmos` and `DEV8_QUEUE_BACKEND=storage`:
//! two control-plane instances with their own empty data dirs share one
//! Cosmos database (the patched Cosmos-compatible server on loopback), one
//! Storage queue (Azurite, drained by both workers) and the signing keys, and
//! see the same users, sessions and environments (full tier). Compute is the
//! in-test stateful fake (`fakes::compute`), shared by both instances like a
//! real cloud.

use crate::fakes::compute::{FakeCompute, FakeState};
use crate::harness::{Answer, Auth, Clock, Compute, Queue, TestApp};
use crate::peers::cosmos;
use clap::Parser;
use dev8::auth::KeySet;
use dev8::config::{Cli, Command};
use reqwest::{Method as M, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `handler serve` as the command line builds it, on `port`, with an empty
/// data dir of its own and the shared fake cloud as compute.
async fn instance(
    port: u16,
    public_url: &str,
    keys: &str,
    db: &dev8::store::CosmosConfig,
    compute: &Arc<FakeCompute>,
) -> TestApp {
    let key = secrecy::ExposeSecret::expose_secret(db.key.as_ref().expect("key auth")).to_string();
    let port_s = port.to_string();
    // Both instances also share one Storage queue on Azurite (its
    // connection string comes from `AzureWebJobsStorage`, as in Azure).
    let queue = format!("q-{}", db.database.to_ascii_lowercase());
    let args = [
        "handler",
        "serve",
        "--port",
        &port_s,
        "--store",
        "cosmos",
        "--cosmos-endpoint",
        &db.endpoint,
        "--cosmos-key",
        &key,
        "--cosmos-database",
        &db.database,
        "--cosmos-create-containers",
        "true",
        "--signing-keys",
        keys,
        "--public-url",
        public_url,
        "--reconcile-interval-ms",
        "50",
        "--static-dir",
        "static-web",
        "--queue-backend",
        "storage",
        "--queue-name",
        &queue,
    ];
    let Command::Serve(serve) = Cli::try_parse_from(args).expect("serve arguments").command else {
        panic!("the arguments name the serve command");
    };
    TestApp::builder()
        .settings(move |s| *s = serve.settings)
        .port(serve.port)
        .queue(Queue::FromSettings)
        .compute(Compute::SharedFake(compute.clone()))
        .clock(Clock::Offset)
        .background(true)
        .spawn()
        .await
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// Poll `GET path` on `app` until `done` holds for the answer, for at most 30 s.
async fn wait_for(
    app: &TestApp,
    path: &str,
    auth: Auth<'_>,
    what: &str,
    done: impl Fn(StatusCode, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let Answer { status, body, .. } = app.send(M::GET, path, None, auth).await;
        if done(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last answer {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full tier: needs the Cosmos-compatible server and Azurite"]
async fn two_instances_share_users_sessions_and_environments() {
    let db = cosmos::cosmos_config();
    let keys = KeySet::generate().to_setting();
    let compute = Arc::new(FakeCompute::default());
    // Both instances sit behind one public URL (a load balancer's): it is the
    // token issuer and the Origin the CSRF check expects.
    let port_a = free_port();
    let public_url = format!("http://127.0.0.1:{port_a}");
    let a = instance(port_a, &public_url, &keys, &db, &compute).await;
    let b = instance(0, &public_url, &keys, &db, &compute).await;
    let origin = Auth::Origin(&public_url);

    // Sign up on A; the session works on B.
    let creds = json!({"email": "ada@example.com", "password": "correct horse battery staple"});
    let signup = a
        .send(M::POST, "/api/auth/signup", Some(creds.clone()), origin)
        .await;
    assert_eq!(signup.status, StatusCode::CREATED, "{}", signup.body);
    let cookie = signup.cookie().expect("a session cookie");
    let session = Auth::Cookie(&cookie, Some(&public_url));
    let me = b.send(M::GET, "/api/auth/me", None, session).await;
    assert_eq!(
        me.status,
        StatusCode::OK,
        "the session from A works on B: {}",
        me.body
    );
    assert_eq!(me.body["user"]["email"], "ada@example.com");

    // Sign-up policy `first` is shared too: B refuses a second account.
    let other = json!({"email": "bob@example.com", "password": "correct horse battery staple"});
    let refused = b
        .send(M::POST, "/api/auth/signup", Some(other), origin)
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // Create on B (B's worker reconciles it); A sees it running.
    let spec = json!({"name": "app", "baseImage": "node", "preset": "small"});
    let created = b
        .send(M::POST, "/api/environments", Some(spec.clone()), session)
        .await;
    assert_eq!(created.status, StatusCode::ACCEPTED, "{}", created.body);
    let id = created.body["environment"]["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let taken = a
        .send(M::POST, "/api/environments", Some(spec), session)
        .await;
    assert_eq!(
        taken.status,
        StatusCode::CONFLICT,
        "the name is taken, whichever instance is asked"
    );
    let env_path = format!("/api/environments/{id}");
    wait_for(&a, &env_path, session, "running on A", |s, b| {
        s == StatusCode::OK && b["environment"]["status"] == "running"
    })
    .await;
    assert_eq!(compute.state(&id), Some(FakeState::Running));
    let list = a.send(M::GET, "/api/environments", None, session).await;
    assert_eq!(list.body["environments"].as_array().map(Vec::len), Some(1));

    // Stop through A, seen stopped on B; start through B, seen running on A.
    let stop = a
        .send(M::POST, &format!("{env_path}/stop"), None, session)
        .await;
    assert_eq!(stop.status, StatusCode::ACCEPTED);
    wait_for(&b, &env_path, session, "stopped on B", |_, b| {
        b["environment"]["status"] == "stopped"
    })
    .await;
    assert!(
        compute.state(&id) == Some(FakeState::Stopped) && compute.resource_count() == 1,
        "stop keeps the workspace"
    );
    let start = b
        .send(M::POST, &format!("{env_path}/start"), None, session)
        .await;
    assert_eq!(start.status, StatusCode::ACCEPTED);
    wait_for(&a, &env_path, session, "running again on A", |_, b| {
        b["environment"]["status"] == "running"
    })
    .await;

    // Its history, from the one partition, newest first, on either instance.
    let history = format!("/api/audit?environmentId={id}");
    let h = a.send(M::GET, &history, None, session).await;
    assert_eq!(h.status, StatusCode::OK, "{}", h.body);
    let actions: Vec<&str> = h.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "environment.start",
            "environment.stop",
            "environment.create"
        ]
    );
    let unknown = b
        .send(
            M::GET,
            "/api/audit?environmentId=01jzzzzzzzzzzzzzzzzzzzzzzz",
            None,
            session,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // Delete through A: gone everywhere, resources included.
    let delete = a.send(M::DELETE, &env_path, None, session).await;
    assert_eq!(delete.status, StatusCode::ACCEPTED);
    wait_for(&b, &env_path, session, "deleted (404) on B", |s, _| {
        s == StatusCode::NOT_FOUND
    })
    .await;
    assert!(
        compute.resource_count() == 0,
        "delete removes the resources"
    );
    let forgotten = b.send(M::GET, &history, None, session).await;
    assert_eq!(
        forgotten.status,
        StatusCode::NOT_FOUND,
        "{}",
        forgotten.body
    );

    // Sign in on B by email; sign out on A revokes that session on B too.
    let signin = b
        .send(M::POST, "/api/auth/signin", Some(creds), origin)
        .await;
    assert_eq!(signin.status, StatusCode::OK);
    let cookie_b = signin.cookie().expect("a session cookie from B");
    let session_b = Auth::Cookie(&cookie_b, Some(&public_url));
    let out = a.send(M::POST, "/api/auth/signout", None, session_b).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let revoked = b.send(M::GET, "/api/auth/me", None, session_b).await;
    assert_eq!(
        revoked.status,
        StatusCode::UNAUTHORIZED,
        "a revoked session is refused by every instance"
    );
    let alive = b.send(M::GET, "/api/auth/me", None, session).await;
    assert_eq!(alive.status, StatusCode::OK, "the other session lives on");

    a.shutdown().await;
    b.shutdown().await;
}
