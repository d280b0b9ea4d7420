//! The ACI backend against a stateful fake of ARM (`arm_fake`): ARM, ACI and
//! Azure Files cannot run here, so the fake implements their documented wire
//! contract, and the real `Application` (API, reconcile job, sweep) drives
//! the backend through it. The credential is a real
//! `azure_identity::ClientSecretCredential` whose token requests reach the
//! fake's Entra endpoint over loopback (see `arm_fake::LoopbackTransport`).

mod arm_fake;

use arm_fake::*;
use chrono::Duration as ChronoDuration;
use dev8::clock::{Clock, ManualClock};
use dev8::compute::aci::{AciCompute, AciConfig, AciSettings, ReadinessProbe, Timing};
use dev8::compute::arm::RetryPolicy;
use dev8::compute::{Compute, ComputeError};
use dev8::config::{ComputeKind, Settings, SignupPolicy};
use dev8::jobs::{sweep, worker};
use dev8::platform::JobContext;
use dev8::queue::{EmbeddedQueue, Job, JobQueue};
use dev8::startup::{Application, Overrides};
use dev8::store::{SqliteStore, Store};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

const REGISTRY: &str = "dev8test.azurecr.io";
const PULL_IDENTITY: &str = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/dev8-rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/dev8-env-pull";

struct TestApp {
    url: String,
    platform: Arc<JobContext>,
    clock: ManualClock,
    queue: Arc<EmbeddedQueue>,
    fake: ArmFake,
    http: reqwest::Client,
    token: String,
    user_id: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn config(fake: &ArmFake) -> AciConfig {
    AciConfig {
        subscription_id: SUBSCRIPTION.into(),
        resource_group: RESOURCE_GROUP.into(),
        region: REGION.into(),
        storage_account: ACCOUNT.into(),
        registry: REGISTRY.into(),
        image_tag: "1.2.3".into(),
        pull_identity: PULL_IDENTITY.into(),
        arm_endpoint: fake.url(),
    }
}

fn backend(fake: &ArmFake) -> AciCompute {
    let probe_client = reqwest::Client::builder()
        .dns_resolver(Arc::new(Loopback))
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    AciCompute::new(
        config(fake),
        credential(fake),
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_secs(2),
        },
    )
    .unwrap()
    .with_readiness_probe(ReadinessProbe {
        client: probe_client,
        scheme: "http".into(),
        port: Some(fake.addr.port()),
    })
    .with_timing(Timing {
        poll_interval: Duration::from_millis(10),
        delete_budget: Duration::from_secs(1),
    })
}

async fn spawn() -> TestApp {
    let fake = ArmFake::spawn().await;
    let mut settings = Settings::from_env().expect("settings");
    settings.signup = SignupPolicy::Open;
    settings.signing_keys = None;
    settings.public_url = None;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let clock_dyn: Arc<dyn Clock> = Arc::new(clock.clone());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("dev8.db")).unwrap());
    let queue = Arc::new(EmbeddedQueue::in_memory("env-jobs", clock_dyn.clone()).unwrap());
    let app = Application::build(
        settings,
        0,
        dir.path(),
        Overrides {
            store: Some(store),
            queue: Some(queue.clone()),
            compute: Some(Arc::new(backend(&fake))),
            clock: Some(clock_dyn),
            background: Some(false),
        },
    )
    .await
    .expect("app builds");
    let url = format!("http://127.0.0.1:{}", app.port());
    let platform = app.jobs();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::new();
    let email = "ada@example.com";
    let password = "correct-horse-battery";
    let signup: Value = http
        .post(format!("{url}/api/auth/signup"))
        .header("origin", &url)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token: Value = http
        .post(format!("{url}/api/auth/token"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    TestApp {
        url,
        platform,
        clock,
        queue,
        fake,
        http,
        token: token["token"].as_str().expect("token").to_string(),
        user_id: signup["user"]["id"].as_str().expect("user id").to_string(),
        _dir: dir,
        _stop: tx,
    }
}

impl TestApp {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn create(&self, name: &str, preset: &str) -> String {
        let (status, body) = self
            .call(
                reqwest::Method::POST,
                "/api/environments",
                Some(json!({"name": name, "baseImage": "python", "preset": preset})),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        body["environment"]["id"].as_str().unwrap().to_string()
    }

    async fn env(&self, id: &str) -> Value {
        let (status, body) = self
            .call(
                reqwest::Method::GET,
                &format!("/api/environments/{id}"),
                None,
            )
            .await;
        if status == 404 {
            return Value::Null;
        }
        body["environment"].clone()
    }

    async fn status(&self, id: &str) -> String {
        self.env(id).await["status"]
            .as_str()
            .unwrap_or("<gone>")
            .to_string()
    }

    async fn action(&self, id: &str, action: &str) {
        let (method, path) = match action {
            "delete" => (reqwest::Method::DELETE, format!("/api/environments/{id}")),
            a => (reqwest::Method::POST, format!("/api/environments/{id}/{a}")),
        };
        let (status, body) = self.call(method, &path, None).await;
        assert_eq!(status, 202, "{action}: {body}");
    }

    /// Run visible jobs, move the clock a second, repeat until the queue is empty.
    async fn settle(&self, rounds: usize) {
        for _ in 0..rounds {
            worker::drain(&self.platform, 100).await.expect("drain");
            if self.queue.approximate_len().await.unwrap() == 0 {
                return;
            }
            self.clock.advance(ChronoDuration::seconds(1));
        }
        panic!("the queue did not settle in {rounds} rounds");
    }

    /// Let a drift check become due and run the sweep.
    async fn sweep_later(&self) -> sweep::SweepReport {
        self.clock.advance(ChronoDuration::seconds(120));
        sweep::sweep(&self.platform).await.expect("sweep")
    }
}

fn group_name(id: &str) -> String {
    format!("dev8-{id}")
}

#[tokio::test]
async fn full_lifecycle_create_run_stop_start_delete() {
    let t = spawn().await;
    let id = t.create("web", "small").await;
    t.settle(30).await;
    let env = t.env(&id).await;
    assert_eq!(env["status"], "running", "{env}");
    let name = group_name(&id);
    let fqdn = fqdn_for(&name);
    assert_eq!(env["ideUrl"], format!("https://{fqdn}/"));
    // Readiness was asked of the agent at the group's FQDN.
    assert!(t.fake.with(|s| s.readiness_hits.contains(&fqdn)));
    assert_eq!(
        t.fake.with(|s| s.groups_created.clone()),
        vec![name.clone()]
    );
    assert_eq!(
        t.fake.with(|s| s.shares_created.clone()),
        vec![name.clone()]
    );
    assert_eq!(t.fake.share(&name).unwrap().quota, 20);

    t.action(&id, "stop").await;
    t.settle(30).await;
    assert_eq!(t.status(&id).await, "stopped");
    assert_eq!(t.fake.count("POST", &format!("{name}/stop")), 1);
    assert_eq!(
        t.fake.group(&name).unwrap().state.as_deref(),
        Some("Stopped")
    );
    assert!(t.fake.share(&name).is_some(), "stop keeps the share");

    t.action(&id, "start").await;
    t.settle(30).await;
    assert_eq!(t.status(&id).await, "running");
    assert_eq!(t.fake.count("POST", &format!("{name}/start")), 1);
    // The restart updated the same group with a rotated agent token, then started it.
    assert_eq!(t.fake.with(|s| s.groups_created.len()), 1);
    let puts = t.fake.with(|s| s.group_puts.clone());
    assert_eq!(puts.len(), 2);
    let token = |b: &Value| {
        b.pointer("/properties/containers/0/properties/environmentVariables")
            .and_then(Value::as_array)
            .and_then(|v| v.iter().find(|e| e["name"] == "DEV8_AGENT_TOKEN"))
            .map(|e| e["secureValue"].clone())
            .unwrap()
    };
    assert_ne!(
        token(&puts[0]),
        token(&puts[1]),
        "the agent token was rotated"
    );

    t.action(&id, "delete").await;
    t.settle(30).await;
    assert_eq!(t.status(&id).await, "<gone>");
    assert!(t.fake.group(&name).is_none(), "group deleted");
    assert!(t.fake.share(&name).is_none(), "share deleted");
    // One token served the whole run (the credential caches it).
    assert_eq!(t.fake.with(|s| s.token_requests), 1);
}

#[tokio::test]
async fn container_group_body_follows_the_documented_schema() {
    let t = spawn().await;
    let id = t.create("schema", "medium").await;
    t.settle(30).await;
    let name = group_name(&id);
    let puts = t.fake.with(|s| s.group_puts.clone());
    assert_eq!(puts.len(), 1);
    let b = &puts[0];
    let log = t.fake.with(|s| s.log.clone());
    assert!(log.iter().any(|(m, p)| m == "PUT"
        && p.ends_with(&format!(
            "/providers/Microsoft.ContainerInstance/containerGroups/{name}"
        ))));

    assert_eq!(b["location"], REGION);
    assert_eq!(
        b["tags"],
        json!({"dev8-managed": "true", "dev8-environment-id": id, "dev8-user-id": t.user_id})
    );
    // The pull-only identity is attached and used for the registry; nothing else.
    assert_eq!(
        b["identity"],
        json!({"type": "UserAssigned", "userAssignedIdentities": {PULL_IDENTITY: {}}})
    );
    let p = &b["properties"];
    assert_eq!(
        p["imageRegistryCredentials"],
        json!([{"server": REGISTRY, "identity": PULL_IDENTITY}])
    );
    assert!(!p.to_string().contains("password"), "no registry password");
    assert_eq!(p["osType"], "Linux");
    assert_eq!(p["sku"], "Standard");
    assert_eq!(p["restartPolicy"], "Always");
    assert_eq!(
        p["ipAddress"],
        json!({"type": "Public", "ports": [{"protocol": "TCP", "port": 443}],
               "dnsNameLabel": name, "autoGeneratedDomainNameLabelScope": "TenantReuse"})
    );
    assert_eq!(
        p["volumes"],
        json!([{"name": "home", "azureFile": {"shareName": name, "storageAccountName": ACCOUNT,
                "storageAccountKey": ACCOUNT_KEY, "readOnly": false}}])
    );

    let containers = p["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    let agent = &containers[0];
    assert_eq!(agent["name"], "agent");
    let a = &agent["properties"];
    assert_eq!(a["image"], format!("{REGISTRY}/dev8/python:1.2.3"));
    assert_eq!(a["ports"], json!([]), "the agent exposes nothing itself");
    assert_eq!(
        a["volumeMounts"],
        json!([{"name": "home", "mountPath": "/home/dev", "readOnly": false}])
    );
    assert_eq!(
        a["resources"],
        json!({"requests": {"cpu": 1.9, "memoryInGB": 3.8}, "limits": {"cpu": 2.0, "memoryInGB": 4.0}})
    );
    let vars = a["environmentVariables"].as_array().unwrap();
    let var = |n: &str| {
        vars.iter()
            .find(|v| v["name"] == n)
            .cloned()
            .unwrap_or(Value::Null)
    };
    for secret in [
        "DEV8_AGENT_TOKEN",
        "DEV8_AGENT_JWKS",
        "DEV8_CONTROL_PLANE_URL",
        "DEV8_AGENT_ISSUER",
    ] {
        let v = var(secret);
        assert!(
            v["secureValue"].as_str().is_some_and(|s| !s.is_empty()),
            "{secret}: {v}"
        );
        assert!(
            v.get("value").is_none(),
            "{secret} must be a secureValue only"
        );
    }
    assert_eq!(var("DEV8_CONTROL_PLANE_URL")["secureValue"], t.url);
    assert_eq!(
        var("DEV8_ENVIRONMENT_ID"),
        json!({"name": "DEV8_ENVIRONMENT_ID", "value": id})
    );
    assert_eq!(
        var("DEV8_AGENT_LISTEN"),
        json!({"name": "DEV8_AGENT_LISTEN", "value": "127.0.0.1:8080"})
    );
    assert_eq!(
        var("DEV8_AGENT_HOME"),
        json!({"name": "DEV8_AGENT_HOME", "value": "/home/dev"}),
        "the agent's home is the mounted share"
    );
    assert_eq!(vars.len(), 7);
    // The agent token is a real agent token for this environment.
    let token = var("DEV8_AGENT_TOKEN")["secureValue"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(token.split('.').count(), 3);

    let tls = &containers[1];
    assert_eq!(tls["name"], "tls");
    let tp = &tls["properties"];
    assert_eq!(tp["image"], format!("{REGISTRY}/dev8/proxy:1.2.3"));
    assert_eq!(tp["ports"], json!([{"protocol": "TCP", "port": 443}]));
    assert_eq!(
        tp["environmentVariables"],
        json!([{"name": "DEV8_DNS_LABEL", "value": name}, {"name": "DEV8_UPSTREAM", "value": "127.0.0.1:8080"}])
    );
    assert_eq!(
        tp["volumeMounts"],
        json!([{"name": "home", "mountPath": "/data", "readOnly": false}])
    );
    // Group requests add up to the environment's size exactly.
    let sum = |k: &str| {
        containers
            .iter()
            .map(|c| {
                c["properties"]["resources"]["requests"][k]
                    .as_f64()
                    .unwrap()
            })
            .sum::<f64>()
    };
    assert!((sum("cpu") - 2.0).abs() < 1e-9);
    assert!((sum("memoryInGB") - 4.0).abs() < 1e-9);

    // What ARM gives back carries no secret.
    let (_, view) = {
        let r = reqwest::Client::new()
            .get(format!(
                "{}/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.ContainerInstance/containerGroups/{name}?api-version={ACI_API}",
                t.fake.url()
            ))
            .bearer_auth(t.fake.with(|s| s.tokens[0].clone()))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    };
    assert!(!view.contains(&token) && !view.contains(ACCOUNT_KEY));
    // And the share carries its quota and Dev8's mark.
    let share = t.fake.share(&name).unwrap();
    assert_eq!(share.quota, 50);
    assert_eq!(share.metadata["dev8environmentid"], id);
}

#[tokio::test]
async fn duplicate_delivery_makes_one_group_and_one_share() {
    let t = spawn().await;
    let id = t.create("dup", "small").await;
    // The same job delivered twice more, all three run at once.
    let body = Job::reconcile(&t.user_id, &id).to_body();
    t.queue.send(&body, Duration::ZERO).await.unwrap();
    t.queue.send(&body, Duration::ZERO).await.unwrap();
    let (a, b, c) = tokio::join!(
        worker::run_next(&t.platform),
        worker::run_next(&t.platform),
        worker::run_next(&t.platform)
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    t.settle(30).await;
    assert_eq!(t.status(&id).await, "running");
    let name = group_name(&id);
    assert_eq!(
        t.fake.with(|s| s.groups_created.clone()),
        vec![name.clone()]
    );
    assert_eq!(
        t.fake.with(|s| s.shares_created.clone()),
        vec![name.clone()]
    );
    assert_eq!(t.fake.with(|s| s.group_puts.len()), 1);
    assert_eq!(
        t.fake.with(|s| s.groups.len()),
        1,
        "never two groups for one share"
    );
}

#[tokio::test]
async fn a_crash_between_share_and_group_recovers() {
    let t = spawn().await;
    // Every try of the group PUT fails for one delivery: the share exists, the group does not.
    t.fake.inject(
        Some(reqwest::Method::PUT),
        "/containerGroups/",
        500,
        None,
        4,
    );
    let id = t.create("crash", "small").await;
    worker::run_next(&t.platform).await.unwrap();
    let name = group_name(&id);
    assert!(t.fake.share(&name).is_some());
    assert!(t.fake.group(&name).is_none());
    assert_eq!(
        t.fake.with(|s| s.faults_served),
        4,
        "bounded retries: four tries"
    );
    t.settle(30).await;
    assert_eq!(t.status(&id).await, "running");
    assert_eq!(t.fake.with(|s| s.shares_created.len()), 1);
    assert_eq!(t.fake.with(|s| s.groups_created.len()), 1);
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_honouring_retry_after() {
    let t = spawn().await;
    t.fake.inject(
        Some(reqwest::Method::GET),
        "/containerGroups/",
        429,
        Some(1),
        1,
    );
    t.fake
        .inject(Some(reqwest::Method::PUT), "/shares/", 503, None, 1);
    t.fake
        .inject(Some(reqwest::Method::POST), "/listKeys", 500, None, 1);
    let id = t.create("throttled", "small").await;
    let started = Instant::now();
    worker::run_next(&t.platform).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After was honoured"
    );
    assert_eq!(t.fake.with(|s| s.faults_served), 3);
    t.settle(30).await;
    assert_eq!(t.status(&id).await, "running");
}

#[tokio::test]
async fn group_deleted_outside_is_recreated_within_one_sweep() {
    let t = spawn().await;
    let id = t.create("drift", "small").await;
    t.settle(30).await;
    let name = group_name(&id);
    t.fake.delete_group_outside(&name);
    let report = t.sweep_later().await;
    assert_eq!(report.requeued, 1);
    t.settle(30).await;
    assert_eq!(t.status(&id).await, "running");
    assert_eq!(t.fake.with(|s| s.groups_created.len()), 2);
    assert_eq!(
        t.fake.with(|s| s.shares_created.len()),
        1,
        "the home share was kept"
    );
}

#[tokio::test]
async fn group_stopped_outside_is_restarted_within_one_sweep() {
    let t = spawn().await;
    let id = t.create("stopped", "small").await;
    t.settle(30).await;
    let name = group_name(&id);
    t.fake.stop_group_outside(&name);
    t.sweep_later().await;
    t.settle(30).await;
    assert_eq!(t.status(&id).await, "running");
    assert_eq!(t.fake.count("POST", &format!("{name}/start")), 1);
    assert_eq!(t.fake.with(|s| s.groups_created.len()), 1);
}

#[tokio::test]
async fn orphan_groups_are_removed_and_others_left_alone() {
    let t = spawn().await;
    let id = t.create("mine", "small").await;
    t.settle(30).await;
    let orphan = "dev8-01kaaaaaaaaaaaaaaaaaaaaaaa";
    t.fake.add_group_outside(
        orphan,
        json!({"dev8-managed": "true", "dev8-environment-id": "01kaaaaaaaaaaaaaaaaaaaaaaa", "dev8-user-id": t.user_id}),
    );
    t.fake
        .add_group_outside("someone-elses", json!({"team": "data"}));
    t.fake.add_group_outside(
        "dev8-lookalike",
        json!({"dev8-managed": "true", "dev8-environment-id": "01kbbbbbbbbbbbbbbbbbbbbbbb", "dev8-user-id": t.user_id}),
    );
    let report = sweep::sweep(&t.platform).await.unwrap();
    assert_eq!(report.orphans_removed, 1);
    assert!(t.fake.group(orphan).is_none());
    assert!(t.fake.share(orphan).is_none());
    assert!(t.fake.group("someone-elses").is_some(), "not Dev8's");
    assert!(
        t.fake.group("dev8-lookalike").is_some(),
        "not named as Dev8 names it"
    );
    assert!(t.fake.group(&group_name(&id)).is_some(), "has a record");
    assert_eq!(t.status(&id).await, "running");
}

#[tokio::test]
async fn sizes_are_checked_against_the_region_once() {
    let t = spawn().await;
    let small = t.create("fits", "small").await;
    t.settle(30).await;
    assert_eq!(t.status(&small).await, "running");
    let large = t.create("fits-too", "large").await;
    t.settle(30).await;
    assert_eq!(t.status(&large).await, "running");
    assert_eq!(
        t.fake.with(|s| s.capability_requests),
        1,
        "asked once, then cached"
    );
}

#[tokio::test]
async fn a_size_the_region_cannot_run_is_refused_with_a_reason() {
    let t = spawn().await;
    t.fake.with(|s| s.max_cpu = 1.0);
    let id = t.create("too-big", "medium").await;
    t.settle(30).await;
    let env = t.env(&id).await;
    assert_eq!(env["status"], "error", "{env}");
    let reason = env["statusReason"].as_str().unwrap();
    assert!(
        reason.contains("2 CPU / 4 GB") && reason.contains(REGION),
        "{reason}"
    );
    assert!(
        t.fake
            .with(|s| s.shares_created.is_empty() && s.groups_created.is_empty())
    );
}

#[tokio::test]
async fn bounded_retries_end_in_a_transient_error() {
    let fake = ArmFake::spawn().await;
    let compute = backend(&fake);
    fake.inject(None, "/containerGroups/", 500, None, 100);
    let env = sample_env();
    let err = compute.observe(&env).await.unwrap_err();
    assert!(matches!(err, ComputeError::Transient(_)), "{err:?}");
    assert_eq!(fake.with(|s| s.faults_served), 4);
}

#[tokio::test]
async fn observe_maps_provider_states() {
    let fake = ArmFake::spawn().await;
    fake.with(|s| s.boot_polls = 1);
    let compute = backend(&fake);
    let env = sample_env();
    use dev8::domain::Observed;
    assert_eq!(compute.observe(&env).await.unwrap(), Observed::Absent);
    let params = dev8::compute::AgentParams {
        agent_token: "t".into(),
        jwks: "{}".into(),
        control_plane_url: "https://dev8.example".into(),
        issuer: "https://dev8.example".into(),
    };
    compute.start(&env, &params).await.unwrap();
    // Creating: not answering yet.
    assert_eq!(compute.observe(&env).await.unwrap(), Observed::Starting);
    // Provisioned, but the agent does not answer: still starting.
    fake.with(|s| s.agent_ready = false);
    assert_eq!(compute.observe(&env).await.unwrap(), Observed::Starting);
    fake.with(|s| s.agent_ready = true);
    assert!(matches!(
        compute.observe(&env).await.unwrap(),
        Observed::Running { .. }
    ));
    compute.stop(&env).await.unwrap();
    assert_eq!(compute.observe(&env).await.unwrap(), Observed::Stopped);
    // A failed group is reported with a reason and retired; the share stays.
    let name = group_name(&env.id);
    fake.with(|s| s.groups.get_mut(&name).unwrap().provisioning = "Failed".into());
    assert!(matches!(
        compute.observe(&env).await.unwrap(),
        Observed::Failed { .. }
    ));
    assert_eq!(compute.observe(&env).await.unwrap(), Observed::Deleting);
    assert_eq!(compute.observe(&env).await.unwrap(), Observed::Stopped);
    compute.delete(&env).await.unwrap();
    assert_eq!(compute.observe(&env).await.unwrap(), Observed::Absent);
}

#[tokio::test]
async fn startup_wires_aci_from_settings_and_names_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::from_env().unwrap();
    settings.compute = ComputeKind::Aci;
    settings.aci = AciSettings {
        subscription_id: None,
        resource_group: None,
        region: Some(REGION.into()),
        client_id: None,
        workspace_storage_account: None,
        image_registry: None,
        image_tag: "1".into(),
        acr_pull_identity: None,
        arm_endpoint: "https://management.azure.com".into(),
    };
    let err = Application::build(settings.clone(), 0, dir.path(), Overrides::default())
        .await
        .err()
        .expect("refused");
    let msg = format!("{err:#}");
    for name in [
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_RESOURCE_GROUP",
        "DEV8_WORKSPACE_STORAGE_ACCOUNT",
        "DEV8_IMAGE_REGISTRY",
        "DEV8_ACR_PULL_IDENTITY",
    ] {
        assert!(msg.contains(name), "{msg}");
    }
    settings.aci.subscription_id = Some(SUBSCRIPTION.into());
    settings.aci.resource_group = Some(RESOURCE_GROUP.into());
    settings.aci.workspace_storage_account = Some(ACCOUNT.into());
    settings.aci.image_registry = Some(REGISTRY.into());
    settings.aci.acr_pull_identity = Some(PULL_IDENTITY.into());
    let app = Application::build(settings, 0, dir.path(), Overrides::default())
        .await
        .expect("builds with every setting");
    assert!(app.port() > 0);
}

fn sample_env() -> dev8::domain::Environment {
    dev8::domain::Environment::new(
        "01kcccccccccccccccccccccccc".into(),
        "u1".into(),
        dev8::domain::NewEnvironment {
            name: "probe".into(),
            base_image: dev8::domain::Template::Node,
            cpu_cores: 1,
            memory_gb: 2,
            storage_gb: 10,
            idle_timeout_minutes: 30,
        },
        chrono::Utc::now(),
    )
}

#[tokio::test]
async fn unreadable_capabilities_fall_back_to_the_conservative_table() {
    let fake = ArmFake::spawn().await;
    fake.inject(Some(reqwest::Method::GET), "/capabilities", 403, None, 1);
    let compute = backend(&fake);
    let caps = compute.capabilities().await.unwrap();
    assert_eq!(caps, dev8::compute::aci::FALLBACK_CAPABILITIES);
    // Kept: not asked again.
    compute.capabilities().await.unwrap();
    assert_eq!(fake.count("GET", "/capabilities"), 1);
}

#[tokio::test]
async fn a_slow_group_deletion_leaves_the_share_to_the_next_reconcile() {
    use dev8::domain::Observed;
    let fake = ArmFake::spawn().await;
    fake.with(|s| {
        s.boot_polls = 0;
        s.delete_polls = 20;
    });
    let compute = backend(&fake).with_timing(Timing {
        poll_interval: Duration::from_millis(10),
        delete_budget: Duration::from_millis(50),
    });
    let env = sample_env();
    let params = dev8::compute::AgentParams {
        agent_token: "t".into(),
        jwks: "{}".into(),
        control_plane_url: "https://dev8.example".into(),
        issuer: "https://dev8.example".into(),
    };
    compute.start(&env, &params).await.unwrap();
    let name = group_name(&env.id);
    compute.delete(&env).await.unwrap();
    // The group is still going away: the share must wait (it is mounted).
    assert_eq!(fake.group(&name).unwrap().provisioning, "Deleting");
    assert!(fake.share(&name).is_some());
    assert_eq!(compute.observe(&env).await.unwrap(), Observed::Deleting);
    let mut seen = Observed::Deleting;
    for _ in 0..30 {
        seen = compute.observe(&env).await.unwrap();
        if seen != Observed::Deleting {
            break;
        }
    }
    assert_eq!(seen, Observed::Stopped, "group gone, share left");
    compute.delete(&env).await.unwrap();
    assert_eq!(compute.observe(&env).await.unwrap(), Observed::Absent);
}
