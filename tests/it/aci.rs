//! The ACI backend against a stateful fake of ARM (`fakes::arm`): ARM, ACI and
//! Azure Files cannot run here, so the fake implements their documented wire
//! contract, and the real `Application` (API, reconcile job, sweep) drives
//! the backend through it. The credential is a real
//! `azure_identity::ClientSecretCredential` whose token requests reach the
//! fake's Entra endpoint over loopback (see `fakes::arm::LoopbackTransport`).

use crate::fakes::arm::*;
use crate::harness::{Compute, TestApp, User};
use chrono::Duration as ChronoDuration;
use dev8::compute::aci::{AciSettings, Timing};
use dev8::compute::{Compute as _, ComputeError};
use dev8::config::{ComputeKind, Settings};
use dev8::jobs::{sweep, worker};
use dev8::queue::Job;
use dev8::startup::{Application, Overrides};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The app on ACI over a fresh ARM fake, and a signed-up user; every
/// environment's home on its share (`DEV8_ACI_LOCAL_DISK_GB=0`).
async fn spawn() -> (TestApp, User) {
    spawn_with_disk(0).await
}

/// The same with `DEV8_ACI_LOCAL_DISK_GB=gb` (the home-mode rule's disk).
pub(crate) async fn spawn_with_disk(gb: u32) -> (TestApp, User) {
    let t = TestApp::builder()
        .compute(Compute::Aci)
        .settings(move |s| s.aci.local_disk_gb = gb)
        .spawn()
        .await;
    let u = t.user("ada@example.com").await;
    (t, u)
}

/// Set a personal secret through the API.
async fn put_secret(t: &TestApp, u: &User, name: &str, value: &str) {
    let a = t
        .send(
            reqwest::Method::PUT,
            &format!("/api/secrets/{name}"),
            Some(json!({ "value": value })),
            crate::harness::Auth::Bearer(&u.token),
        )
        .await;
    assert_eq!(a.status, 201, "{}", a.body);
}

/// Create a Python environment of `preset`.
pub(crate) async fn create(t: &TestApp, u: &User, name: &str, preset: &str) -> String {
    let a = t
        .post(
            "/api/environments",
            json!({"name": name, "baseImage": "python", "preset": preset}),
            u,
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    a.body["environment"]["id"].as_str().unwrap().to_string()
}

/// The record as the API shows it, Null once gone.
pub(crate) async fn record(t: &TestApp, u: &User, id: &str) -> Value {
    t.env(u, id).await.body["environment"].clone()
}

pub(crate) async fn action(t: &TestApp, u: &User, id: &str, action: &str) {
    let a = t.action(u, id, action).await;
    assert_eq!(a.status, 202, "{action}: {}", a.body);
}

/// Run visible jobs, move the clock a second, repeat until the queue is empty.
pub(crate) async fn settle(t: &TestApp) {
    assert!(
        t.settle(30).await < 30,
        "the queue did not settle in 30 rounds"
    );
}

/// Let a drift check become due and run the sweep.
pub(crate) async fn sweep_later(t: &TestApp) -> sweep::SweepReport {
    t.clock.advance(ChronoDuration::seconds(120));
    t.sweep().await
}

pub(crate) fn group_name(id: &str) -> String {
    format!("dev8-{id}")
}

#[tokio::test]
async fn full_lifecycle_create_run_stop_start_delete() {
    let (t, u) = spawn().await;
    let id = create(&t, &u, "web", "small").await;
    settle(&t).await;
    let env = record(&t, &u, &id).await;
    assert_eq!(env["status"], "running", "{env}");
    let name = group_name(&id);
    let fqdn = fqdn_for(&name);
    assert_eq!(env["ideUrl"], format!("https://{fqdn}/"));
    // Readiness was asked of the agent at the group's FQDN.
    assert!(t.arm().with(|s| s.readiness_hits.contains(&fqdn)));
    assert_eq!(
        t.arm().with(|s| s.groups_created.clone()),
        vec![name.clone()]
    );
    assert_eq!(
        t.arm().with(|s| s.shares_created.clone()),
        vec![name.clone()]
    );
    assert_eq!(t.arm().share(&name).unwrap().quota, 20);

    action(&t, &u, &id, "stop").await;
    settle(&t).await;
    assert_eq!(t.status_of(&u, &id).await, "stopped");
    assert_eq!(t.arm().count("POST", &format!("{name}/stop")), 1);
    assert_eq!(
        t.arm().group(&name).unwrap().state.as_deref(),
        Some("Stopped")
    );
    assert!(t.arm().share(&name).is_some(), "stop keeps the share");

    action(&t, &u, &id, "start").await;
    settle(&t).await;
    assert_eq!(t.status_of(&u, &id).await, "running");
    assert_eq!(t.arm().count("POST", &format!("{name}/start")), 1);
    // The restart updated the same group with a rotated agent token, then started it.
    assert_eq!(t.arm().with(|s| s.groups_created.len()), 1);
    let puts = t.arm().with(|s| s.group_puts.clone());
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

    action(&t, &u, &id, "delete").await;
    settle(&t).await;
    assert_eq!(t.status_of(&u, &id).await, "<gone>");
    assert!(t.arm().group(&name).is_none(), "group deleted");
    assert!(t.arm().share(&name).is_none(), "share deleted");
    // One token served the whole run (the credential caches it).
    assert_eq!(t.arm().with(|s| s.token_requests), 1);
}

#[tokio::test]
async fn container_group_body_follows_the_documented_schema() {
    let (t, u) = spawn().await;
    let id = create(&t, &u, "schema", "medium").await;
    settle(&t).await;
    let name = group_name(&id);
    let puts = t.arm().with(|s| s.group_puts.clone());
    assert_eq!(puts.len(), 1);
    let b = &puts[0];
    let log = t.arm().with(|s| s.log.clone());
    assert!(log.iter().any(|(m, p)| m == "PUT"
        && p.ends_with(&format!(
            "/providers/Microsoft.ContainerInstance/containerGroups/{name}"
        ))));

    assert_eq!(b["location"], REGION);
    assert_eq!(
        b["tags"],
        json!({"dev8-managed": "true", "dev8-environment-id": id, "dev8-user-id": u.id})
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
    // The agent is root here: it must drop to the image's user, never be
    // told the IDE may run as root (local compute's exception).
    assert_eq!(var("DEV8_IDE_AS_AGENT_USER"), Value::Null);
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
    // The size the agent measures usage against, and its source: the cgroup.
    for (name, value) in [
        ("DEV8_AGENT_SIZE_CPUS", "2"),
        ("DEV8_AGENT_SIZE_MEMORY_GB", "4"),
        ("DEV8_AGENT_SIZE_STORAGE_GB", "50"),
        ("DEV8_AGENT_USAGE_SOURCE", "cgroup"),
    ] {
        assert_eq!(var(name), json!({"name": name, "value": value}));
    }
    assert_eq!(
        var("DEV8_ENVIRONMENT_NAME"),
        json!({"name": "DEV8_ENVIRONMENT_NAME", "value": "schema"})
    );
    assert_eq!(vars.len(), 12);
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
                t.arm().url()
            ))
            .bearer_auth(t.arm().with(|s| s.tokens[0].clone()))
            .send()
            .await
            .unwrap();
        (r.status(), r.text().await.unwrap())
    };
    assert!(!view.contains(&token) && !view.contains(ACCOUNT_KEY));
    // And the share carries its quota and Dev8's mark.
    let share = t.arm().share(&name).unwrap();
    assert_eq!(share.quota, 50);
    assert_eq!(share.metadata["dev8environmentid"], id);
}

#[tokio::test]
async fn personal_secrets_reach_the_agent_as_secure_values_only() {
    let (t, u) = spawn().await;
    let value = "ghp-aci-secret-0123456789";
    put_secret(&t, &u, "GITHUB_TOKEN", value).await;
    let id = create(&t, &u, "sec", "medium").await;
    settle(&t).await;
    assert_eq!(t.status_of(&u, &id).await, "running");
    let puts = t.arm().with(|s| s.group_puts.clone());
    let vars = puts[0]["properties"]["containers"][0]["properties"]["environmentVariables"]
        .as_array()
        .unwrap()
        .clone();
    let var = vars
        .iter()
        .find(|v| v["name"] == "DEV8_SECRET_GITHUB_TOKEN")
        .expect("the secret is in the agent container's environment");
    assert_eq!(
        var,
        &json!({"name": "DEV8_SECRET_GITHUB_TOKEN", "secureValue": value})
    );
    // Only there: not in the TLS sidecar, not under another name, and ARM's
    // answers (which never return secure values) do not carry it.
    let count = puts[0].to_string().matches(value).count();
    assert_eq!(count, 1, "the value appears once in the body");
    let answers = t.arm().with(|s| {
        s.exchanges
            .iter()
            .map(|x| x.response.to_string())
            .collect::<String>()
    });
    assert!(!answers.contains(value), "an ARM answer carries the secret");
}

/// A repository (with its ref) and the account's dotfiles reach the agent
/// as plain values (public URLs, not secrets); an environment without them
/// gets neither variable.
#[tokio::test]
async fn the_repository_and_dotfiles_reach_the_agent() {
    let (t, u) = spawn().await;
    let dotfiles = "https://github.com/octocat/dotfiles";
    let set =
        crate::repository::patch_settings(&t, &u, json!({"dotfilesRepository": dotfiles})).await;
    assert_eq!(set.status, 200, "{}", set.body);
    let url = "https://github.com/octocat/Hello-World";
    let a = t
        .post(
            "/api/environments",
            json!({"name": "repo", "baseImage": "python", "preset": "small",
                   "repository": {"url": url, "ref": "v1.0"}}),
            &u,
        )
        .await;
    assert_eq!(a.status, 202, "{}", a.body);
    settle(&t).await;
    let puts = t.arm().with(|s| s.group_puts.clone());
    let vars = puts[0]["properties"]["containers"][0]["properties"]["environmentVariables"]
        .as_array()
        .unwrap()
        .clone();
    let var = |n: &str| vars.iter().find(|v| v["name"] == n).cloned();
    for (name, value) in [
        ("DEV8_REPOSITORY_URL", url),
        ("DEV8_REPOSITORY_REF", "v1.0"),
        ("DEV8_DOTFILES_URL", dotfiles),
    ] {
        assert_eq!(var(name), Some(json!({"name": name, "value": value})));
    }
    // The sidecar gets none of it.
    let sidecar = puts[0]["properties"]["containers"][1].to_string();
    assert!(!sidecar.contains(url) && !sidecar.contains(dotfiles));

    // Without a repository: no repository variables (the dotfiles stay).
    let bare = create(&t, &u, "bare", "small").await;
    settle(&t).await;
    let puts = t.arm().with(|s| s.group_puts.clone());
    let body = puts
        .iter()
        .find(|b| b.to_string().contains(&bare))
        .expect("the second group")
        .to_string();
    assert!(!body.contains("DEV8_REPOSITORY_URL") && !body.contains("DEV8_REPOSITORY_REF"));
    assert!(body.contains(dotfiles));
}

/// The environment's name as the last group PUT gave it to the agent.
fn name_given_to_agent(t: &TestApp) -> Value {
    let puts = t.arm().with(|s| s.group_puts.clone());
    puts.last()
        .and_then(|b| b.pointer("/properties/containers/0/properties/environmentVariables"))
        .and_then(Value::as_array)
        .and_then(|v| v.iter().find(|e| e["name"] == "DEV8_ENVIRONMENT_NAME"))
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn the_name_reaches_the_agent_and_a_rename_applies_at_the_next_start() {
    let (t, u) = spawn().await;
    let id = create(&t, &u, "web-app", "small").await;
    settle(&t).await;
    // A plain value (not a secret): the IDE tab's title shows it.
    assert_eq!(
        name_given_to_agent(&t),
        json!({"name": "DEV8_ENVIRONMENT_NAME", "value": "web-app"})
    );
    let renamed = t
        .send(
            reqwest::Method::PATCH,
            &format!("/api/environments/{id}"),
            Some(json!({"name": "api server"})),
            crate::harness::Auth::Bearer(&u.token),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    settle(&t).await;
    assert_eq!(
        name_given_to_agent(&t)["value"],
        "web-app",
        "a running group is not touched by a rename"
    );
    action(&t, &u, &id, "stop").await;
    settle(&t).await;
    action(&t, &u, &id, "start").await;
    settle(&t).await;
    assert_eq!(t.status_of(&u, &id).await, "running");
    assert_eq!(name_given_to_agent(&t)["value"], "api server");
}

#[tokio::test]
async fn duplicate_delivery_makes_one_group_and_one_share() {
    let (t, u) = spawn().await;
    let id = create(&t, &u, "dup", "small").await;
    // The same job delivered twice more, all three run at once.
    let body = Job::reconcile(&u.id, &id).to_body();
    t.queue().send(&body, Duration::ZERO).await.unwrap();
    t.queue().send(&body, Duration::ZERO).await.unwrap();
    let (a, b, c) = tokio::join!(
        worker::run_next(&t.platform),
        worker::run_next(&t.platform),
        worker::run_next(&t.platform)
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();
    settle(&t).await;
    assert_eq!(t.status_of(&u, &id).await, "running");
    let name = group_name(&id);
    assert_eq!(
        t.arm().with(|s| s.groups_created.clone()),
        vec![name.clone()]
    );
    assert_eq!(
        t.arm().with(|s| s.shares_created.clone()),
        vec![name.clone()]
    );
    assert_eq!(t.arm().with(|s| s.group_puts.len()), 1);
    assert_eq!(
        t.arm().with(|s| s.groups.len()),
        1,
        "never two groups for one share"
    );
}

#[tokio::test]
async fn a_crash_between_share_and_group_recovers() {
    let (t, u) = spawn().await;
    // Every try of the group PUT fails for one delivery: the share exists, the group does not.
    t.arm().inject(
        Some(reqwest::Method::PUT),
        "/containerGroups/",
        500,
        None,
        4,
    );
    let id = create(&t, &u, "crash", "small").await;
    worker::run_next(&t.platform).await.unwrap();
    let name = group_name(&id);
    assert!(t.arm().share(&name).is_some());
    assert!(t.arm().group(&name).is_none());
    assert_eq!(
        t.arm().with(|s| s.faults_served),
        4,
        "bounded retries: four tries"
    );
    settle(&t).await;
    assert_eq!(t.status_of(&u, &id).await, "running");
    assert_eq!(t.arm().with(|s| s.shares_created.len()), 1);
    assert_eq!(t.arm().with(|s| s.groups_created.len()), 1);
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_honouring_retry_after() {
    let (t, u) = spawn().await;
    t.arm().inject(
        Some(reqwest::Method::GET),
        "/containerGroups/",
        429,
        Some(1),
        1,
    );
    t.arm()
        .inject(Some(reqwest::Method::PUT), "/shares/", 503, None, 1);
    t.arm()
        .inject(Some(reqwest::Method::POST), "/listKeys", 500, None, 1);
    let id = create(&t, &u, "throttled", "small").await;
    let started = Instant::now();
    worker::run_next(&t.platform).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "Retry-After was honoured"
    );
    assert_eq!(t.arm().with(|s| s.faults_served), 3);
    settle(&t).await;
    assert_eq!(t.status_of(&u, &id).await, "running");
}

#[tokio::test]
async fn group_deleted_outside_is_recreated_within_one_sweep() {
    let (t, u) = spawn().await;
    let id = create(&t, &u, "drift", "small").await;
    settle(&t).await;
    let name = group_name(&id);
    t.arm().delete_group_outside(&name);
    let report = sweep_later(&t).await;
    assert_eq!(report.requeued, 1);
    settle(&t).await;
    assert_eq!(t.status_of(&u, &id).await, "running");
    assert_eq!(t.arm().with(|s| s.groups_created.len()), 2);
    assert_eq!(
        t.arm().with(|s| s.shares_created.len()),
        1,
        "the home share was kept"
    );
}

#[tokio::test]
async fn group_stopped_outside_is_restarted_within_one_sweep() {
    let (t, u) = spawn().await;
    let id = create(&t, &u, "stopped", "small").await;
    settle(&t).await;
    let name = group_name(&id);
    t.arm().stop_group_outside(&name);
    sweep_later(&t).await;
    settle(&t).await;
    assert_eq!(t.status_of(&u, &id).await, "running");
    assert_eq!(t.arm().count("POST", &format!("{name}/start")), 1);
    assert_eq!(t.arm().with(|s| s.groups_created.len()), 1);
}

#[tokio::test]
async fn orphan_groups_are_removed_and_others_left_alone() {
    let (t, u) = spawn().await;
    let id = create(&t, &u, "mine", "small").await;
    settle(&t).await;
    let orphan = "dev8-01kaaaaaaaaaaaaaaaaaaaaaaa";
    t.arm().add_group_outside(
        orphan,
        json!({"dev8-managed": "true", "dev8-environment-id": "01kaaaaaaaaaaaaaaaaaaaaaaa", "dev8-user-id": u.id}),
    );
    t.arm()
        .add_group_outside("someone-elses", json!({"team": "data"}));
    t.arm().add_group_outside(
        "dev8-lookalike",
        json!({"dev8-managed": "true", "dev8-environment-id": "01kbbbbbbbbbbbbbbbbbbbbbbb", "dev8-user-id": u.id}),
    );
    let report = sweep::sweep(&t.platform).await.unwrap();
    assert_eq!(report.orphans_removed, 1);
    assert!(t.arm().group(orphan).is_none());
    assert!(t.arm().share(orphan).is_none());
    assert!(t.arm().group("someone-elses").is_some(), "not Dev8's");
    assert!(
        t.arm().group("dev8-lookalike").is_some(),
        "not named as Dev8 names it"
    );
    assert!(t.arm().group(&group_name(&id)).is_some(), "has a record");
    assert_eq!(t.status_of(&u, &id).await, "running");
}

#[tokio::test]
async fn sizes_are_checked_against_the_region_once() {
    let (t, u) = spawn().await;
    let small = create(&t, &u, "fits", "small").await;
    settle(&t).await;
    assert_eq!(t.status_of(&u, &small).await, "running");
    let large = create(&t, &u, "fits-too", "large").await;
    settle(&t).await;
    assert_eq!(t.status_of(&u, &large).await, "running");
    assert_eq!(
        t.arm().with(|s| s.capability_requests),
        1,
        "asked once, then cached"
    );
}

#[tokio::test]
async fn a_size_the_region_cannot_run_is_refused_with_a_reason() {
    let (t, u) = spawn().await;
    t.arm().with(|s| s.max_cpu = 1.0);
    let id = create(&t, &u, "too-big", "medium").await;
    settle(&t).await;
    let env = record(&t, &u, &id).await;
    assert_eq!(env["status"], "error", "{env}");
    let reason = env["statusReason"].as_str().unwrap();
    assert!(
        reason.contains("2 CPU / 4 GB") && reason.contains(REGION),
        "{reason}"
    );
    assert!(
        t.arm()
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
    let params = agent_params();
    compute.start(&env, &params).await.unwrap();
    // Creating: not answering yet; the step is the agent container's latest event.
    match compute.observe(&env).await.unwrap() {
        Observed::Starting(Some(note)) => {
            assert_eq!(note.step, dev8::domain::steps::PULLING_IMAGE);
            assert!(
                note.detail
                    .as_deref()
                    .unwrap_or("")
                    .starts_with("pulling image \""),
                "{note:?}"
            );
        }
        other => panic!("expected a starting step, got {other:?}"),
    }
    // Provisioned, but the agent does not answer: still starting.
    fake.with(|s| s.agent_ready = false);
    let step = |o: Observed| match o {
        Observed::Starting(Some(note)) => note.step,
        other => panic!("expected a starting step, got {other:?}"),
    };
    assert_eq!(
        step(compute.observe(&env).await.unwrap()),
        dev8::domain::steps::WAITING_FOR_IDE
    );
    // The agent answers that it is cloning the repository (its first
    // start's setup): the progress names that step, as locally.
    fake.with(|s| s.agent_setup_step = Some(dev8::domain::steps::CLONING_REPOSITORY));
    assert_eq!(
        step(compute.observe(&env).await.unwrap()),
        dev8::domain::steps::CLONING_REPOSITORY
    );
    // A step the control plane does not know is no step.
    fake.with(|s| s.agent_setup_step = Some("mining bitcoin"));
    assert_eq!(
        step(compute.observe(&env).await.unwrap()),
        dev8::domain::steps::WAITING_FOR_IDE
    );
    fake.with(|s| {
        s.agent_setup_step = None;
        s.agent_ready = true;
    });
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
        workspace_storage_account: None,
        image_registry: None,
        image_tag: "1".into(),
        acr_pull_identity: None,
        local_disk_gb: 50,
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

/// What an agent is started with, outside a reconcile.
fn agent_params() -> dev8::compute::AgentParams {
    dev8::compute::AgentParams {
        agent_token: "t".into(),
        jwks: "{}".into(),
        control_plane_url: "https://dev8.example".into(),
        issuer: "https://dev8.example".into(),
        user_secrets: Vec::new(),
    }
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
            repository: None,
            dotfiles_repository: None,
            home_mode: Default::default(),
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
    let params = agent_params();
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

/// The spec checker's cases for what crossed the fake: each request body and
/// each answer, with the model the spec gives that operation
/// (Microsoft.ContainerInstance and Microsoft.Storage, 2023-05-01). An
/// operation the spec defines without a request body must be sent none.
/// Every way the exchanges depart from the published specs (empty: none).
pub(crate) fn spec_problems(exchanges: &[Exchange]) -> Vec<String> {
    let (cases, mut problems) = spec_cases(exchanges);
    problems.extend(crate::specs::failures(&crate::specs::run(
        "arm_spec.py",
        &Value::Array(cases),
    )));
    problems
}

fn spec_cases(exchanges: &[Exchange]) -> (Vec<Value>, Vec<String>) {
    let mut cases = Vec::new();
    let mut problems = Vec::new();
    for (i, x) in exchanges.iter().enumerate() {
        let label = format!("#{i} {} {}", x.method, x.path);
        let after = x.path.split("/providers/").last().unwrap_or("");
        let seg: Vec<&str> = after.split('/').collect();
        let package = match seg.as_slice() {
            ["Microsoft.ContainerInstance"] => "resource",
            ["Microsoft.Storage", ..] => "storage",
            ["Microsoft.Authorization", ..] => "authorization",
            ["Microsoft.ManagedIdentity", ..] => "msi",
            ["Microsoft.DocumentDB", ..] => "cosmosdb",
            _ => "containerinstance",
        };
        // (model of the request body, model of a successful answer)
        let (request, response) = match (x.method.as_str(), seg.as_slice()) {
            ("PUT", ["Microsoft.ContainerInstance", "containerGroups", _]) => {
                (Some("ContainerGroup"), Some("ContainerGroup"))
            }
            ("GET", ["Microsoft.ContainerInstance", "containerGroups", _]) => {
                (None, Some("ContainerGroup"))
            }
            ("DELETE", ["Microsoft.ContainerInstance", "containerGroups", _]) => {
                (None, Some("ContainerGroup"))
            }
            ("GET", ["Microsoft.ContainerInstance", "containerGroups"]) => {
                (None, Some("ContainerGroupListResult"))
            }
            (
                "POST",
                [
                    "Microsoft.ContainerInstance",
                    "containerGroups",
                    _,
                    "start" | "stop",
                ],
            ) => (None, None),
            (
                "GET",
                [
                    "Microsoft.ContainerInstance",
                    "locations",
                    _,
                    "capabilities",
                ],
            ) => (None, Some("CapabilitiesListResult")),
            ("POST", ["Microsoft.Storage", "storageAccounts", _, "listKeys"]) => {
                (None, Some("StorageAccountListKeysResult"))
            }
            // What `handler doctor` reads (tests/it/doctor.rs).
            ("GET", ["Microsoft.ContainerInstance"]) => (None, Some("Provider")),
            ("GET", ["Microsoft.ContainerInstance", "locations", _, "usages"]) => {
                (None, Some("UsageListResult"))
            }
            ("GET", ["Microsoft.Authorization", "roleAssignments"]) => {
                (None, Some("RoleAssignmentListResult"))
            }
            ("GET", ["Microsoft.Authorization", "roleDefinitions", _]) => {
                (None, Some("RoleDefinition"))
            }
            ("GET", ["Microsoft.ManagedIdentity", "userAssignedIdentities"]) => {
                (None, Some("UserAssignedIdentitiesListResult"))
            }
            ("GET", ["Microsoft.ManagedIdentity", "userAssignedIdentities", _]) => {
                (None, Some("Identity"))
            }
            (
                "GET",
                [
                    "Microsoft.DocumentDB",
                    "databaseAccounts",
                    _,
                    "sqlDatabases",
                    _,
                    "containers",
                ],
            ) => (None, Some("SqlContainerListResult")),
            (
                "GET",
                [
                    "Microsoft.DocumentDB",
                    "databaseAccounts",
                    _,
                    "sqlRoleAssignments",
                ],
            ) => (None, Some("SqlRoleAssignmentListResult")),
            (
                "GET",
                [
                    "Microsoft.DocumentDB",
                    "databaseAccounts",
                    _,
                    "sqlRoleDefinitions",
                    _,
                ],
            ) => (None, Some("SqlRoleDefinitionGetResults")),
            (
                "GET",
                [
                    "Microsoft.Storage",
                    "storageAccounts",
                    _,
                    "queueServices",
                    "default",
                    "queues",
                    _,
                ],
            ) => (None, Some("StorageQueue")),
            (
                "PUT",
                [
                    "Microsoft.Storage",
                    "storageAccounts",
                    _,
                    "fileServices",
                    "default",
                    "shares",
                    _,
                ],
            ) => (Some("FileShare"), Some("FileShare")),
            (
                "GET",
                [
                    "Microsoft.Storage",
                    "storageAccounts",
                    _,
                    "fileServices",
                    "default",
                    "shares",
                    _,
                ],
            ) => (None, Some("FileShare")),
            (
                "DELETE",
                [
                    "Microsoft.Storage",
                    "storageAccounts",
                    _,
                    "fileServices",
                    "default",
                    "shares",
                    _,
                ],
            ) => (None, None),
            _ => {
                problems.push(format!(
                    "{label}: an operation the spec check does not know"
                ));
                continue;
            }
        };
        match request {
            Some(model) => cases.push(
                json!({"label": format!("{label} request"), "package": package,
                "model": model, "direction": "request", "body": x.request}),
            ),
            None if !x.request.is_null() => problems.push(format!(
                "{label}: the spec defines no request body, one was sent"
            )),
            None => {}
        }
        if x.response.is_null() {
            continue;
        }
        if x.status >= 400 {
            // Cosmos DB's resource provider answers errors flat (its
            // `ErrorResponse`: code, message); the others in ARM's envelope,
            // {"error": …}, whose body the spec names `CloudErrorBody` or
            // (Authorization, Resources) `ErrorResponse` around an `ErrorDetail`.
            let (model, body) = match package {
                "cosmosdb" => ("ErrorResponse", x.response.clone()),
                "authorization" | "resource" => ("ErrorResponse", x.response.clone()),
                _ => ("CloudErrorBody", x.response["error"].clone()),
            };
            if package != "cosmosdb" && x.response.as_object().map(|o| o.len()) != Some(1) {
                problems.push(format!("{label}: error body is not {{\"error\": …}}"));
            }
            cases.push(
                json!({"label": format!("{label} error"), "package": package,
                "model": model, "direction": "response", "body": body}),
            );
        } else if let Some(model) = response {
            cases.push(
                json!({"label": format!("{label} response"), "package": package,
                "model": model, "direction": "response", "body": x.response}),
            );
        } else {
            problems.push(format!(
                "{label}: the spec defines no response body, one was sent"
            ));
        }
    }
    (cases, problems)
}

#[tokio::test]
#[ignore = "full tier: needs tools/specs-venv (scripts/ci-deps.sh)"]
async fn every_arm_body_follows_the_published_specs() {
    let (t, u) = spawn().await;
    // Faults too, so that error answers are checked.
    t.arm()
        .inject(Some(reqwest::Method::PUT), "/shares/", 503, None, 1);
    // A personal secret, so the group body carries one more secureValue.
    put_secret(&t, &u, "NPM_TOKEN", "npm-secret-value").await;
    let id = create(&t, &u, "specs", "medium").await;
    settle(&t).await;
    assert_eq!(t.status_of(&u, &id).await, "running");
    sweep::sweep(&t.platform).await.unwrap();
    for step in ["stop", "start", "delete"] {
        action(&t, &u, &id, step).await;
        settle(&t).await;
    }
    assert_eq!(t.status_of(&u, &id).await, "<gone>");
    let exchanges = t.arm().with(|s| s.exchanges.clone());
    // Every kind of call the backend makes was seen.
    for (method, suffix) in [
        ("PUT", "/containerGroups/"),
        ("GET", "/containerGroups/"),
        ("GET", "/containerGroups"),
        ("DELETE", "/containerGroups/"),
        ("POST", "/start"),
        ("POST", "/stop"),
        ("GET", "/capabilities"),
        ("POST", "/listKeys"),
        ("PUT", "/shares/"),
        ("GET", "/shares/"),
        ("DELETE", "/shares/"),
    ] {
        assert!(
            exchanges.iter().any(
                |x| x.method == method && (x.path.contains(suffix) || x.path.ends_with(suffix))
            ),
            "no {method} …{suffix} was made"
        );
    }
    let problems = spec_problems(&exchanges);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
#[ignore = "full tier: needs tools/specs-venv (scripts/ci-deps.sh)"]
async fn the_spec_check_rejects_bodies_the_spec_does_not_allow() {
    let fake = ArmFake::spawn().await;
    let compute = backend(&fake);
    let env = sample_env();
    let names = dev8::compute::aci::Names::for_id(&env.id).unwrap();
    let params = agent_params();
    let good = compute.group_body(&env, &names, &params, ACCOUNT_KEY, None);
    let wrong = |f: &dyn Fn(&mut Value)| {
        let mut b = good.clone();
        f(&mut b);
        b
    };
    let case = |label: &str, package: &str, model: &str, direction: &str, body: Value| json!({"label": label, "package": package, "model": model, "direction": direction, "body": body});
    let cases = json!([
        case(
            "good",
            "containerinstance",
            "ContainerGroup",
            "request",
            good.clone()
        ),
        case(
            "unknown property",
            "containerinstance",
            "ContainerGroup",
            "request",
            wrong(&|b| b["properties"]["containers"][0]["properties"]["gpuCount"] = json!(1))
        ),
        case(
            "wrong type",
            "containerinstance",
            "ContainerGroup",
            "request",
            wrong(&|b| b["properties"]["ipAddress"]["ports"][0]["port"] = json!("443"))
        ),
        case(
            "missing required",
            "containerinstance",
            "ContainerGroup",
            "request",
            wrong(&|b| {
                b["properties"].as_object_mut().unwrap().remove("osType");
            })
        ),
        case(
            "bad enum",
            "containerinstance",
            "ContainerGroup",
            "request",
            wrong(&|b| b["properties"]["restartPolicy"] = json!("Sometimes"))
        ),
        case(
            "read-only sent",
            "containerinstance",
            "ContainerGroup",
            "request",
            wrong(&|b| b["properties"]["provisioningState"] = json!("Succeeded"))
        ),
        case(
            "share quota as text",
            "storage",
            "FileShare",
            "request",
            json!({"properties": {"shareQuota": "20", "enabledProtocols": "SMB"}})
        ),
        case(
            "share protocol",
            "storage",
            "FileShare",
            "request",
            json!({"properties": {"shareQuota": 20, "enabledProtocols": "FTP"}})
        ),
        case(
            "keys answer",
            "storage",
            "StorageAccountListKeysResult",
            "response",
            json!({"keys": [{"keyName": "key1", "value": "k", "permissions": "All"}]})
        ),
    ]);
    let answer = crate::specs::run("arm_spec.py", &cases);
    let errors = |label: &str| -> Vec<String> {
        answer
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["label"] == label)
            .map(|r| serde_json::from_value(r["errors"].clone()).unwrap())
            .unwrap()
    };
    assert_eq!(errors("good"), Vec::<String>::new());
    for (label, expected) in [
        ("unknown property", "gpuCount: property unknown to the spec"),
        ("wrong type", "port: expected a number"),
        (
            "missing required",
            "missing required property properties.osType",
        ),
        (
            "bad enum",
            "'Sometimes' is not one of ContainerGroupRestartPolicy",
        ),
        (
            "read-only sent",
            "provisioningState: read-only property sent",
        ),
        ("share quota as text", "shareQuota: expected a number"),
        ("share protocol", "'FTP' is not one of EnabledProtocols"),
        ("keys answer", "'All' is not one of KeyPermission"),
    ] {
        let found = errors(label);
        assert!(
            found.iter().any(|e| e.contains(expected)),
            "{label}: expected an error containing {expected:?}, got {found:?}"
        );
    }
}
