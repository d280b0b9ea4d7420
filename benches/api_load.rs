//! API throughput and latency next to a floor, in one run:
//!
//! * **Dev8**: `handler serve` (this build's binary, a child process) with a
//!   fresh data dir, one user, 10 environments and a bearer token;
//! * **floor**: a bare axum server (this bench re-executed as a child
//!   process) answering the same JSON bodies with no auth and no store.
//!
//! The same load generator (below: keep-alive HTTP/1.1 connections on
//! loopback, each sending its next request when the previous answer is read)
//! drives both, alternating floor, Dev8, floor, Dev8, … per endpoint, and
//! prints req/s, p50 and p99 of each run, the medians and the ratios:
//! authenticated `GET /api/environments` and `GET /api/health`.
//!
//!     cargo bench --bench api_load
//!
//! `DEV8_BENCH_SECONDS` (default 5, at most 60) per run, `DEV8_BENCH_ROUNDS`
//! (default 2, at most 10) A/B pairs per endpoint, `DEV8_BENCH_CONNECTIONS`
//! (default 64, at most 512). Everything is bounded and stops by itself.
//! Nothing starts code-server: the environments are seeded stopped.

use dev8::domain::{DesiredState, Environment, NewEnvironment, Status, Template, new_id};
use dev8::store::{SqliteStore, Store};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/child_serve.rs"]
mod child_serve;
use child_serve::ChildServe;

/// The role of a re-executed bench: serve the floor, reading bodies from this file.
const FLOOR_BODIES: &str = "DEV8_API_LOAD_FLOOR_BODIES";

fn env_num(name: &str, default: u64, max: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .clamp(1, max)
}

fn main() {
    if let Ok(bodies) = std::env::var(FLOOR_BODIES) {
        return floor::serve(PathBuf::from(bodies));
    }
    // `cargo test --benches` runs benches with no `--bench`: a short smoke run.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let seconds = if smoke {
        1
    } else {
        env_num("DEV8_BENCH_SECONDS", 5, 60)
    };
    let rounds = if smoke {
        1
    } else {
        env_num("DEV8_BENCH_ROUNDS", 2, 10)
    };
    let connections = env_num("DEV8_BENCH_CONNECTIONS", 64, 512) as usize;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(Duration::from_secs(seconds), rounds, connections));
}

async fn run(seconds: Duration, rounds: u64, connections: usize) {
    let data = tempfile::tempdir().expect("temp dir");
    let dev8 = Dev8::start(data.path()).await;
    let bodies = data.path().join("floor-bodies.json");
    std::fs::write(
        &bodies,
        serde_json::to_vec(&json!({
            "environments": dev8.list_body.clone(),
            "health": dev8.health_body.clone(),
        }))
        .unwrap(),
    )
    .unwrap();
    let floor = Floor::spawn(&bodies);

    println!(
        "api_load: {rounds} x (floor, Dev8) per endpoint, {} s each, {connections} connections, loopback",
        seconds.as_secs()
    );
    let endpoints = [
        (
            "GET /api/environments (bearer, 10 environments)",
            "/api/environments",
            true,
        ),
        ("GET /api/health", "/api/health", false),
    ];
    let mut summary = Vec::new();
    for (label, path, auth) in endpoints {
        let token = auth.then_some(dev8.token.as_str());
        // Warm both (connections, caches, the allocator) before measuring.
        load(
            floor.port,
            path,
            None,
            connections,
            Duration::from_millis(500),
        )
        .await;
        load(
            dev8.port,
            path,
            token,
            connections,
            Duration::from_millis(500),
        )
        .await;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        println!("{label}");
        for round in 0..rounds {
            let f = load(floor.port, path, None, connections, seconds).await;
            println!("  round {round} floor {f}");
            let d = load(dev8.port, path, token, connections, seconds).await;
            println!("  round {round} Dev8  {d}");
            a.push(f);
            b.push(d);
        }
        let (f, d) = (Run::median(&a), Run::median(&b));
        println!(
            "  median: floor {:>7.0} req/s p99 {:>6.2} ms | Dev8 {:>7.0} req/s p99 {:>6.2} ms | Dev8/floor req/s {:.2}, p99 {:.2}x",
            f.rps,
            f.p99_ms,
            d.rps,
            d.p99_ms,
            d.rps / f.rps,
            d.p99_ms / f.p99_ms
        );
        summary.push((path, f, d));
    }
    for (path, f, d) in &summary {
        let ratio = d.rps / f.rps;
        let verdict = if *path == "/api/health" {
            format!("goal >= 0.85 of the floor's req/s: {}", met(ratio >= 0.85))
        } else {
            let p99 = d.p99_ms / f.p99_ms;
            format!(
                "goal >= 0.50 of the floor's req/s and p99 <= 2x: {}",
                met(ratio >= 0.5 && p99 <= 2.0)
            )
        };
        println!("{path}: {verdict}");
    }
    drop(floor);
    drop(dev8.serve);
}

fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

/// One measured run: throughput and latency percentiles.
#[derive(Clone, Copy)]
struct Run {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

impl Run {
    /// The run with the median req/s (the lower middle for an even count).
    fn median(runs: &[Run]) -> Run {
        let mut v = runs.to_vec();
        v.sort_by(|a, b| a.rps.total_cmp(&b.rps));
        v[(v.len() - 1) / 2]
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>7.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
            self.rps, self.p50_ms, self.p99_ms
        )?;
        if self.errors > 0 {
            write!(f, "  ({} non-200 answers or errors)", self.errors)?;
        }
        Ok(())
    }
}

/// Drive `path` on 127.0.0.1:`port` from `connections` keep-alive
/// connections for `length`; every answer must be a 200.
async fn load(
    port: u16,
    path: &str,
    bearer: Option<&str>,
    connections: usize,
    length: Duration,
) -> Run {
    let started = Instant::now();
    let deadline = started + length;
    let auth = bearer.map(|t| format!("Bearer {t}"));
    let tasks: Vec<_> = (0..connections)
        .map(|_| {
            let (path, auth) = (path.to_string(), auth.clone());
            tokio::spawn(async move { connection(port, &path, auth.as_deref(), deadline).await })
        })
        .collect();
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for t in tasks {
        let (l, e) = t.await.expect("load task");
        latencies.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(f64::NAN, |us| *us as f64 / 1000.0)
    };
    Run {
        rps: latencies.len() as f64 / elapsed,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
    }
}

/// One connection's loop: the latency (µs) of every 200, and the count of anything else.
async fn connection(
    port: u16,
    path: &str,
    auth: Option<&str>,
    deadline: Instant,
) -> (Vec<u32>, u64) {
    let (mut latencies, mut errors) = (Vec::with_capacity(4096), 0);
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    stream.set_nodelay(true).ok();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    while Instant::now() < deadline {
        let mut req = hyper::Request::get(path).header(hyper::header::HOST, "127.0.0.1");
        if let Some(a) = auth {
            req = req.header(hyper::header::AUTHORIZATION, a);
        }
        let req = req.body(Empty::<Bytes>::new()).unwrap();
        let t0 = Instant::now();
        let ok = match send.send_request(req).await {
            Ok(resp) => {
                let status = resp.status();
                resp.into_body().collect().await.is_ok() && status == 200
            }
            Err(_) => break,
        };
        if ok {
            latencies.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
        } else {
            errors += 1;
        }
    }
    (latencies, errors)
}

/// `handler serve` as a child process, seeded.
struct Dev8 {
    serve: ChildServe,
    port: u16,
    token: String,
    list_body: Value,
    health_body: Value,
}

impl Dev8 {
    async fn start(data: &std::path::Path) -> Dev8 {
        // Local compute wants code-server's entry to exist; nothing starts here.
        let exe = std::env::current_exe().unwrap();
        let serve = ChildServe::start(data, &exe, &[("DEV8_SWEEP_INTERVAL_SECONDS", "3600")]).await;
        // Ten stopped environments, written to the same database file (WAL
        // lets a second connection write next to the server's).
        let store = SqliteStore::open(&serve.data_dir.join("dev8.db")).expect("store");
        for i in 0..10 {
            store
                .insert_environment(&stopped_environment(&serve.user_id, i))
                .await
                .expect("seed");
        }
        drop(store);
        let list_body = serve.get("/api/environments").await["environments"].clone();
        assert_eq!(list_body.as_array().map(Vec::len), Some(10), "seeded list");
        let health_body = serve.get("/api/health").await;
        Dev8 {
            port: serve.port,
            token: serve.token.clone(),
            serve,
            list_body,
            health_body,
        }
    }
}

fn stopped_environment(user_id: &str, i: usize) -> Environment {
    let spec = NewEnvironment {
        name: format!("bench-{i}"),
        base_image: Template::Node,
        cpu_cores: 2,
        memory_gb: 4,
        storage_gb: 20,
        idle_timeout_minutes: 30,
        repository: None,
        dotfiles_repository: None,
        home_mode: Default::default(),
    };
    let mut e = Environment::new(
        new_id(),
        user_id.into(),
        spec,
        chrono::Utc::now() - chrono::Duration::minutes(i as i64),
    );
    e.status = Status::Stopped;
    e.desired_state = DesiredState::Stopped;
    e
}

/// The floor as a child process (killed on drop).
struct Floor {
    child: Child,
    port: u16,
}

impl Floor {
    fn spawn(bodies: &std::path::Path) -> Floor {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(FLOOR_BODIES, bodies)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("floor starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("floor prints its port");
        let port = line.trim().parse().expect("floor port");
        Floor { child, port }
    }
}

impl Drop for Floor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The bare server: the same JSON bodies, built per request as Dev8 builds
/// them (a JSON value serialized), with no auth and no store. Tokio's
/// default runtime, as `handler` has; it exits when its parent does.
mod floor {
    use axum::{Json, Router, routing::get};
    use serde_json::{Value, json};
    use std::path::PathBuf;
    use std::sync::Arc;

    pub fn serve(bodies: PathBuf) {
        let all: Value = serde_json::from_slice(&std::fs::read(bodies).unwrap()).unwrap();
        let list = Arc::new(all["environments"].clone());
        let health = Arc::new(all["health"].clone());
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async move {
                let app = Router::new()
                    .route(
                        "/api/environments",
                        get(move || {
                            let list = list.clone();
                            async move { Json(json!({"environments": (*list).clone()})) }
                        }),
                    )
                    .route(
                        "/api/health",
                        get(move || {
                            let health = health.clone();
                            async move { Json((*health).clone()) }
                        }),
                    );
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                println!("{}", listener.local_addr().unwrap().port());
                // Exit with the parent: its end of stdin closes when it goes.
                tokio::spawn(async {
                    let mut sink = Vec::new();
                    let _ =
                        tokio::io::AsyncReadExt::read_to_end(&mut tokio::io::stdin(), &mut sink)
                            .await;
                    std::process::exit(0);
                });
                axum::serve(listener, app).await.unwrap();
            });
    }
}
