//! One sweep at scale on the embedded store: 100,000 environments (10,000
//! users with 10 each), 1,000 of them running, 100 of those idle past their
//! timeout. Prints the query plan of the sweep's scan (an index search, not a
//! table scan), the rows it reads, and the time of the first sweep (which
//! idle-stops 100) and of steady-state sweeps, each a minute after the
//! previous one as in `serve` (so a fifth of the running environments are
//! due their drift check, `DRIFT_CHECK_EVERY`). Goal: one sweep < 50 ms.
//! It also prints a sweep after a pause of five minutes or more (or the
//! first after an upgrade): every running environment is checked.
//!
//!     cargo bench --bench sweep_scale
//!
//! Compute is a no-op here (the sweep's own cost is measured); the queue is
//! the embedded one, as in `serve`. `DEV8_BENCH_ENVIRONMENTS` changes the
//! total (default 100,000, at most 1,000,000).

use async_trait::async_trait;
use chrono::{Duration, SecondsFormat, Utc};
use dev8::compute::{AgentParams, Compute, ComputeResult};
use dev8::config::Settings;
use dev8::domain::{DesiredState, Environment, NewEnvironment, Observed, Status, Template};
use dev8::jobs::sweep;
use dev8::startup::{Application, Overrides};
use dev8::store::{SqliteStore, Store};
use std::sync::Arc;
use std::time::Instant;

const RUNNING: usize = 1_000;
const IDLE: usize = 100;

struct NoCompute;

#[async_trait]
impl Compute for NoCompute {
    async fn observe(&self, _: &Environment) -> ComputeResult<Observed> {
        Ok(Observed::Stopped)
    }
    async fn start(&self, _: &Environment, _: &AgentParams) -> ComputeResult<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }
    async fn stop(&self, _: &Environment) -> ComputeResult<()> {
        Ok(())
    }
    async fn delete(&self, _: &Environment) -> ComputeResult<()> {
        Ok(())
    }
}

fn ts(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Write `total` environments straight into the store's file, in one transaction.
fn seed(path: &std::path::Path, total: usize) {
    let mut c = rusqlite::Connection::open(path).unwrap();
    let tx = c.transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO environments (id, user_id, name, status, last_activity_at, created_at, version, doc)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7)",
            )
            .unwrap();
        let now = Utc::now();
        for i in 0..total {
            let spec = NewEnvironment {
                name: format!("env-{}", i % 10),
                base_image: Template::Node,
                cpu_cores: 1,
                memory_gb: 2,
                storage_gb: 20,
                idle_timeout_minutes: 30,
                repository: None,
                dotfiles_repository: None,
                home_mode: Default::default(),
            };
            let created = now - Duration::days(1);
            let mut e =
                Environment::new(format!("e{i:07}"), format!("u{:06}", i / 10), spec, created);
            // Spread the running ones over the whole range of users.
            let running =
                i % (total / RUNNING).max(1) == 0 && i / (total / RUNNING).max(1) < RUNNING;
            if running {
                e.status = Status::Running;
                e.desired_state = DesiredState::Running;
                let idle = i / (total / RUNNING).max(1) < IDLE;
                e.last_activity_at = if idle {
                    now - Duration::hours(2)
                } else {
                    now - Duration::minutes(1)
                };
            } else {
                e.status = Status::Stopped;
                e.desired_state = DesiredState::Stopped;
            }
            e.status_changed_at = created;
            let doc = serde_json::to_string(&e).unwrap();
            insert
                .execute(rusqlite::params![
                    e.id,
                    e.user_id,
                    e.name,
                    e.status.as_str(),
                    ts(e.last_activity_at),
                    ts(e.created_at),
                    doc
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// As if the previous sweep started `ago` before now.
async fn mark_last_sweep(store: &SqliteStore, ago: Duration) {
    let value = serde_json::json!({ "startedAt": Utc::now() - ago });
    let current = store.document(sweep::LAST_SWEEP_KEY).await.unwrap();
    store
        .put_document(
            sweep::LAST_SWEEP_KEY,
            &value,
            current.as_ref().map(|c| &c.etag),
            None,
        )
        .await
        .unwrap();
}

fn ms(d: std::time::Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let smoke = !std::env::args().any(|a| a == "--bench");
    let total: usize = if smoke {
        2_000
    } else {
        std::env::var("DEV8_BENCH_ENVIRONMENTS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000)
            .clamp(RUNNING, 1_000_000)
    };
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("dev8.db");
    let store = Arc::new(SqliteStore::open(&db).unwrap());
    let t0 = Instant::now();
    seed(&db, total);
    println!(
        "sweep_scale: {total} environments ({RUNNING} running, {IDLE} of them idle), seeded in {}",
        ms(t0.elapsed())
    );
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute_batch("ANALYZE").unwrap();
        let mut plan = c
            .prepare(&format!(
                "EXPLAIN QUERY PLAN {}",
                dev8::store::ACTIVE_ENVIRONMENTS_SQL
            ))
            .unwrap();
        let rows: Vec<String> = plan
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        println!("  the sweep's scan: {}", rows.join("; "));
    }

    let mut settings = Settings::from_env().expect("settings");
    settings.public_url = None;
    settings.signing_keys = None;
    let overrides = Overrides {
        store: Some(store.clone()),
        compute: Some(Arc::new(NoCompute)),
        background: Some(false),
        ..Default::default()
    };
    let app = Application::build(settings, 0, data.path(), overrides)
        .await
        .expect("app builds");
    let jobs = app.jobs();

    let t = Instant::now();
    let active = store.active_environments().await.unwrap();
    println!(
        "  active_environments: {} rows in {}",
        active.len(),
        ms(t.elapsed())
    );
    let minute = Duration::seconds(60);
    mark_last_sweep(&store, minute).await;
    let t = Instant::now();
    let first = sweep::sweep(&jobs).await.unwrap();
    let first_took = t.elapsed();
    println!(
        "  first sweep: {} ({} idle-stopped, {} reconciles requested)",
        ms(first_took),
        first.idle_stopped,
        first.requeued
    );
    let mut steady = Vec::new();
    for _ in 0..5 {
        mark_last_sweep(&store, minute).await;
        let t = Instant::now();
        let r = sweep::sweep(&jobs).await.unwrap();
        steady.push((t.elapsed(), r.requeued));
    }
    steady.sort();
    let (median, requeued) = steady[steady.len() / 2];
    println!(
        "  steady sweep (median of 5): {} ({requeued} reconciles requested)",
        ms(median)
    );
    let worst = first_took.max(median);
    // The previous sweep is a whole period ago: every running environment is due.
    mark_last_sweep(&store, Duration::minutes(10)).await;
    let t = Instant::now();
    let all = sweep::sweep(&jobs).await.unwrap();
    println!(
        "  sweep after a pause of a period or more (every running environment checked): {} ({} reconciles requested)",
        ms(t.elapsed()),
        all.requeued
    );
    println!(
        "  goal: one sweep < 50 ms: {}",
        if worst < std::time::Duration::from_millis(50) {
            "met"
        } else {
            "NOT met"
        }
    );
}
