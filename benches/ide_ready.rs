//! Create -> IDE-ready through the whole stack (API, queue, reconcile, local
//! compute, agent, code-server) next to a bare code-server boot measured in
//! the same run. Goal: the overhead is at most 1 s.
//!
//!     cargo bench --bench ide_ready            (3 rounds; DEV8_BENCH_ROUNDS to change)

#[path = "../tests/helpers/mod.rs"]
mod helpers;

use helpers::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:>6} ms", d.as_millis())
}

/// Start code-server alone (as the agent would, minus the agent) and time
/// until `/healthz` answers.
async fn bare_boot(http: &reqwest::Client) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for d in ["home", "data", "ext", "work"] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new("node")
        .arg(code_server())
        .args([
            "--bind-addr",
            &format!("127.0.0.1:{port}"),
            "--auth",
            "none",
        ])
        .args([
            "--disable-telemetry",
            "--disable-update-check",
            "--disable-workspace-trust",
        ])
        .arg("--user-data-dir")
        .arg(dir.path().join("data"))
        .arg("--extensions-dir")
        .arg(dir.path().join("ext"))
        .arg(dir.path().join("work"))
        .env("HOME", dir.path().join("home"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts code-server");
    let url = format!("http://127.0.0.1:{port}/healthz");
    loop {
        if matches!(http.get(&url).send().await, Ok(r) if r.status().is_success()) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "code-server did not answer within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = t0.elapsed();
    let _ = child.kill().await;
    took
}

/// POST /api/environments, then poll until the record is `running` and the
/// agent's readiness answers through its `ideUrl`.
async fn create_to_ready(app: &TestApp, cookie: &str, name: &str) -> (Duration, String) {
    let t0 = Instant::now();
    let r = app
        .post(
            cookie,
            "/api/environments",
            json!({"name": name, "baseImage": "node", "preset": "small"}),
        )
        .await;
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["environment"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    loop {
        let env = app.environment(cookie, &id).await;
        if let (Some(url), true) = (env["ideUrl"].as_str(), env["status"] == "running") {
            let ok = agent_client(url)
                .get(format!("{url}_dev8/healthz"))
                .send()
                .await;
            if matches!(ok, Ok(r) if r.status().is_success()) {
                return (t0.elapsed(), id);
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "not ready within 60 s: {env}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let rounds: usize = std::env::var("DEV8_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    // Warm the file cache once so neither side pays for a cold disk.
    bare_boot(&http).await;

    let app = spawn_app_with(Options {
        reconcile_interval_ms: 1000,
        ..Options::default()
    })
    .await;
    let cookie = app.signup("bench@example.com").await;
    let (mut bare, mut full) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        bare.push(bare_boot(&http).await);
        let (took, id) = create_to_ready(&app, &cookie, &format!("bench-{round}")).await;
        full.push(took);
        let r = app
            .http
            .delete(format!("{}/api/environments/{id}", app.base))
            .header("cookie", &cookie)
            .header("origin", &app.base)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        app.wait_gone(&cookie, &id, Duration::from_secs(30)).await;
    }
    app.shutdown().await;

    println!("ide_ready: {rounds} rounds (reconcile interval 1000 ms, the serve default)");
    for (i, (b, f)) in bare.iter().zip(&full).enumerate() {
        println!(
            "  round {i}: bare code-server boot {}   create -> IDE ready {}",
            ms(*b),
            ms(*f)
        );
    }
    let (b, f) = (median(bare), median(full));
    let overhead = f.saturating_sub(b);
    println!(
        "  median: bare code-server boot {}   create -> IDE ready {}   overhead {}",
        ms(b),
        ms(f),
        ms(overhead)
    );
    println!(
        "  goal: overhead <= 1000 ms: {}",
        if overhead <= Duration::from_secs(1) {
            "met"
        } else {
            "NOT met"
        }
    );
}
