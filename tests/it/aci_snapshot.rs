//! Snapshot mode on ACI (docs/aci.md#snapshot-mode) against the ARM fake
//! (`fakes::arm`, with its stand-ins for the workspace account's Blob
//! containers and for the agent's final-snapshot endpoint): which
//! environments get it, the container group without the home share and
//! with the TLS container's own share (kept across a re-created group), and
//! a stop that stops the group only after the agent's final snapshot,
//! within its bound.

use crate::aci::{action, create, group_name, record, settle, spawn_with_disk, sweep_later};
use crate::fakes::arm::{ACCOUNT, ACCOUNT_KEY, fqdn_for};
use crate::harness::{TestApp, User};
use chrono::Duration as ChronoDuration;
use dev8::domain::{FINAL_SNAPSHOT_WAIT, STAGING_MARGIN_GB, Template};
use dev8::jobs::worker;
use dev8::queue::Job;
use serde_json::{Value, json};
use std::time::Duration;

/// The disk a Small (20 GB) Python environment needs for snapshot mode.
fn small_python_needs() -> u32 {
    20 + Template::Python.image_gb() + STAGING_MARGIN_GB
}

/// The app on ACI where Small Python environments get snapshot mode, and
/// one running.
async fn running_snapshot_env() -> (TestApp, User, String) {
    let (t, u) = spawn_with_disk(small_python_needs()).await;
    let id = create(&t, &u, "snap", "small").await;
    settle(&t).await;
    let env = record(&t, &u, &id).await;
    assert_eq!(
        (env["status"].as_str(), env["homeMode"].as_str()),
        (Some("running"), Some("snapshot")),
        "{env}"
    );
    (t, u, id)
}

/// The agent container's variables in a group body.
fn agent_vars(body: &Value) -> Vec<Value> {
    body.pointer("/properties/containers/0/properties/environmentVariables")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn var(vars: &[Value], name: &str) -> Value {
    vars.iter()
        .find(|v| v["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The TLS container's volume in a group body, resolved to its definition.
fn tls_volume(body: &Value) -> Value {
    let p = &body["properties"];
    let mount = &p["containers"][1]["properties"]["volumeMounts"][0];
    assert_eq!(mount["mountPath"], "/data");
    p["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .cloned()
        .unwrap()
}

/// The environment's history records of `action`.
async fn history(t: &TestApp, u: &User, id: &str, action: &str) -> Vec<Value> {
    let h = t.get(&format!("/api/audit?environmentId={id}"), u).await;
    h.body["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == action)
        .cloned()
        .collect()
}

#[tokio::test]
async fn the_home_mode_is_snapshot_exactly_when_home_image_and_margin_fit_the_disk() {
    let fits = small_python_needs();
    for (disk, mode, interval) in [
        (fits, "snapshot", Value::from(10)),
        (fits - 1, "share", Value::Null),
    ] {
        let (t, u) = spawn_with_disk(disk).await;
        let id = create(&t, &u, "mode", "small").await;
        let env = record(&t, &u, &id).await;
        assert_eq!(env["homeMode"], mode, "disk {disk} GB: {env}");
        assert_eq!(env["snapshotIntervalMinutes"], interval);
        // The list shows the same mode.
        let listed = t.get("/api/environments", &u).await;
        assert_eq!(listed.body["environments"][0]["homeMode"], mode);
        // On ACI a share home is a network share (the dashboard says so).
        let catalog = t.get("/api/templates", &u).await;
        assert_eq!(catalog.body["shareHome"], "network");
    }
}

#[tokio::test]
async fn a_snapshot_group_keeps_the_home_on_local_disk_and_only_certificates_on_a_share() {
    let (t, u, id) = running_snapshot_env().await;
    let name = group_name(&id);
    let tls_share = format!("{name}-tls");
    let puts = t.arm().with(|s| s.group_puts.clone());
    let b = &puts[0];
    let p = &b["properties"];
    assert_eq!(
        p["volumes"],
        json!([
            {"name": "home", "emptyDir": {}},
            {"name": "tls", "azureFile": {"shareName": tls_share, "storageAccountName": ACCOUNT,
                                          "storageAccountKey": ACCOUNT_KEY, "readOnly": false}}
        ])
    );
    assert_eq!(
        p["containers"][0]["properties"]["volumeMounts"],
        json!([{"name": "home", "mountPath": "/home/dev", "readOnly": false}])
    );
    assert_eq!(
        p["containers"][1]["properties"]["volumeMounts"],
        json!([{"name": "tls", "mountPath": "/data", "readOnly": false}])
    );
    // No home share; the certificates' share is the smallest there is.
    assert_eq!(
        t.arm().with(|s| s.shares_created.clone()),
        vec![tls_share.clone()]
    );
    assert_eq!(t.arm().share(&tls_share).unwrap().quota, 1);
    // The agent's snapshot store: its own container, a SAS for it as a
    // secure value only, and the interval.
    let container = format!("dev8-{id}");
    assert_eq!(
        t.arm().with(|s| s.containers_created.clone()),
        vec![container.clone()]
    );
    let vars = agent_vars(b);
    assert_eq!(
        var(&vars, "DEV8_AGENT_SNAPSHOT_URL"),
        json!({"name": "DEV8_AGENT_SNAPSHOT_URL", "value": format!("{}/{ACCOUNT}/{container}", t.arm().url())})
    );
    let sas = var(&vars, "DEV8_AGENT_SNAPSHOT_SAS");
    assert!(
        sas.get("value").is_none(),
        "the SAS must be a secureValue only"
    );
    let sas = sas["secureValue"].as_str().unwrap().to_string();
    assert!(sas.contains("sr=c") && sas.contains("sig="), "{sas}");
    assert_eq!(
        var(&vars, "DEV8_AGENT_SNAPSHOT_INTERVAL_MS"),
        json!({"name": "DEV8_AGENT_SNAPSHOT_INTERVAL_MS", "value": "600000"})
    );
    assert_eq!(
        var(&vars, "DEV8_AGENT_HOME")["value"],
        "/home/dev",
        "the home is the emptyDir"
    );
    // What ARM gives back carries no SAS.
    let answers = t.arm().with(|s| {
        s.exchanges
            .iter()
            .map(|x| x.response.to_string())
            .collect::<String>()
    });
    assert!(!answers.contains(&sas));

    // Deleting the environment deletes its certificates' share and its container.
    action(&t, &u, &id, "delete").await;
    settle(&t).await;
    assert_eq!(t.status_of(&u, &id).await, "<gone>");
    assert!(t.arm().share(&tls_share).is_none());
    assert!(t.arm().with(|s| s.containers.is_empty()));
}

#[tokio::test]
async fn a_recreated_group_mounts_the_same_certificate_share() {
    let (t, u, id) = running_snapshot_env().await;
    let name = group_name(&id);
    // Stop -> start re-creates the containers (an update of the group, then start).
    action(&t, &u, &id, "stop").await;
    settle(&t).await;
    assert_eq!(t.status_of(&u, &id).await, "stopped");
    assert!(
        t.arm().share(&format!("{name}-tls")).is_some(),
        "a stopped environment keeps its certificates"
    );
    action(&t, &u, &id, "start").await;
    settle(&t).await;
    assert_eq!(t.status_of(&u, &id).await, "running");
    // And a group deleted outside Dev8 comes back as a new group.
    t.arm().delete_group_outside(&name);
    sweep_later(&t).await;
    settle(&t).await;
    assert_eq!(t.status_of(&u, &id).await, "running");
    assert_eq!(t.arm().with(|s| s.groups_created.len()), 2);
    let puts = t.arm().with(|s| s.group_puts.clone());
    assert_eq!(puts.len(), 3);
    for b in &puts {
        assert_eq!(
            tls_volume(b),
            tls_volume(&puts[0]),
            "the same share each time"
        );
    }
    assert_eq!(
        tls_volume(&puts[0])["azureFile"]["shareName"],
        format!("{name}-tls")
    );
    assert_eq!(
        t.arm().with(|s| s.shares_created.len()),
        1,
        "the certificates' share was made once and kept"
    );
}

#[tokio::test]
async fn stop_takes_the_final_snapshot_before_the_group_stops() {
    let (t, u, id) = running_snapshot_env().await;
    let name = group_name(&id);
    let fqdn = fqdn_for(&name);
    // The snapshot takes two more requests after the first.
    t.arm().with(|s| s.final_snapshot_asks = Some(2));
    action(&t, &u, &id, "stop").await;
    worker::run_next(&t.platform).await.unwrap();
    let env = record(&t, &u, &id).await;
    assert_eq!(env["status"], "stopping");
    assert_eq!(env["progress"]["step"], "saving your files");
    assert_eq!(
        t.arm().group(&name).unwrap().state.as_deref(),
        Some("Running"),
        "not stopped while saving"
    );
    // The same job delivered twice more while it waits changes nothing.
    let body = Job::reconcile(&u.id, &id).to_body();
    t.queue().send(&body, Duration::ZERO).await.unwrap();
    t.queue().send(&body, Duration::ZERO).await.unwrap();
    settle(&t).await;
    assert_eq!(t.status_of(&u, &id).await, "stopped");
    assert_eq!(t.arm().with(|s| s.final_snapshots.clone()), vec![fqdn]);
    assert_eq!(
        t.arm().with(|s| s.stops.clone()),
        vec![(name.clone(), true)],
        "stopped once, after the final snapshot"
    );
    let env = record(&t, &u, &id).await;
    assert_eq!(env["progress"], Value::Null);
    assert!(
        history(&t, &u, &id, "environment.final_snapshot_missed")
            .await
            .is_empty()
    );
    // The next start is a fresh agent: its stop asks again.
    action(&t, &u, &id, "start").await;
    settle(&t).await;
    action(&t, &u, &id, "stop").await;
    settle(&t).await;
    assert_eq!(t.arm().with(|s| s.final_snapshots.len()), 2);
    assert_eq!(t.arm().with(|s| s.stops.len()), 2);
}

#[tokio::test]
async fn a_final_snapshot_that_never_finishes_is_given_up_after_its_bound_with_a_warning() {
    let (t, u, id) = running_snapshot_env().await;
    let name = group_name(&id);
    t.arm().with(|s| s.final_snapshot_asks = None);
    action(&t, &u, &id, "stop").await;
    // Within the bound the stop keeps waiting, whatever the rounds.
    for _ in 0..5 {
        worker::drain(&t.platform, 10).await.unwrap();
        t.clock.advance(ChronoDuration::seconds(30));
    }
    let env = record(&t, &u, &id).await;
    assert_eq!(env["status"], "stopping");
    assert_eq!(env["progress"]["step"], "saving your files");
    assert!(t.arm().with(|s| s.stops.is_empty()));
    // Past it, the group is stopped anyway, and the history says what may be lost.
    t.clock.advance(FINAL_SNAPSHOT_WAIT);
    settle(&t).await;
    assert_eq!(t.status_of(&u, &id).await, "stopped");
    assert_eq!(t.arm().with(|s| s.stops.clone()), vec![(name, false)]);
    let missed = history(&t, &u, &id, "environment.final_snapshot_missed").await;
    assert_eq!(missed.len(), 1, "one warning per stop");
    assert_eq!(missed[0]["outcome"], "failure");
    let detail = missed[0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("within 5 minutes")
            && detail.contains("since the last periodic snapshot may be lost"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_start_while_the_final_snapshot_is_taken_waits_for_it_then_starts_afresh() {
    let (t, u, id) = running_snapshot_env().await;
    let name = group_name(&id);
    t.arm().with(|s| s.final_snapshot_asks = Some(3));
    action(&t, &u, &id, "stop").await;
    worker::run_next(&t.platform).await.unwrap();
    action(&t, &u, &id, "start").await;
    settle(&t).await;
    assert_eq!(t.status_of(&u, &id).await, "running");
    assert_eq!(
        t.arm().with(|s| s.stops.clone()),
        vec![(name.clone(), true)],
        "the stop finished after its snapshot"
    );
    assert_eq!(t.arm().count("POST", &format!("{name}/start")), 1);
}

#[tokio::test]
#[ignore = "full tier: needs tools/specs-venv (scripts/ci-deps.sh)"]
async fn every_arm_body_in_snapshot_mode_follows_the_published_specs() {
    let (t, u, id) = running_snapshot_env().await;
    for step in ["stop", "start", "delete"] {
        action(&t, &u, &id, step).await;
        settle(&t).await;
    }
    assert_eq!(t.status_of(&u, &id).await, "<gone>");
    let exchanges = t.arm().with(|s| s.exchanges.clone());
    // The snapshot-mode group (emptyDir home, the TLS share) was among them.
    assert!(exchanges.iter().any(|x| {
        x.method == "PUT"
            && x.request
                .pointer("/properties/volumes/0/emptyDir")
                .is_some()
    }));
    let problems = crate::aci::spec_problems(&exchanges);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn an_aci_agents_snapshot_sas_is_renewed_through_its_report() {
    let (t, _u, id) = running_snapshot_env().await;
    let puts = t.arm().with(|s| s.group_puts.clone());
    let vars = agent_vars(puts.last().unwrap());
    let token = var(&vars, "DEV8_AGENT_TOKEN")["secureValue"]
        .as_str()
        .unwrap()
        .to_string();
    let report = |hours: i64| {
        let body = json!({
            "usage": {"cpuPercent": 1, "memoryBytes": 1, "memoryLimitBytes": 2,
                      "diskBytes": 1, "diskLimitBytes": 2},
            "snapshotSas": {"expiresOn": chrono::Utc::now() + ChronoDuration::hours(hours)}
        });
        let (t, id, token) = (&t, &id, &token);
        async move {
            t.send(
                reqwest::Method::POST,
                &format!("/api/environments/{id}/report"),
                Some(body),
                crate::harness::Auth::Bearer(token),
            )
            .await
        }
    };
    let keys_before = t.arm().count("POST", "/listKeys");
    // Past half its life: a new SAS for this environment's container only.
    let a = report(1).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let sas = a.body["snapshotSas"]["sas"].as_str().unwrap();
    assert!(sas.contains("sr=c") && sas.contains("sp=rwdl"), "{sas}");
    let expires_on: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(a.body["snapshotSas"]["expiresOn"].clone()).unwrap();
    let life = expires_on - chrono::Utc::now();
    assert!(
        life > ChronoDuration::minutes(235) && life <= ChronoDuration::minutes(240),
        "a fresh 4 h SAS: {life}"
    );
    // Another soon after signs with the key already read: one listKeys.
    assert!(report(1).await.body["snapshotSas"]["sas"].is_string());
    assert_eq!(t.arm().count("POST", "/listKeys"), keys_before + 1);
    // Plenty of life left: nothing new.
    assert!(report(3).await.body.get("snapshotSas").is_none());
}
